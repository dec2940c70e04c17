"""The inlined route's build: clang bitcode, one module, a shared object and the copy the numba loop inlines.

``build_into(tmp, cmd_flags, sources, prefix)`` compiles each translation unit
with ``clang -O2 -emit-llvm`` (the same shim, flags and defines as the gcc
route), links them into one LLVM module with llvmlite (numba's LLVM reads
clang 14's bitcode), gives every file static external linkage (the loop's copy
must reach the very variables the shared object's calls write: ``shim_base``,
``percpu_counter_batch``, the cpuhp callbacks), and writes two files:

- ``lib.so``: that module's machine code (llvmlite emits the object, gcc links
  it), the library every call from Python and the engine's non-inlined calls use;
- ``inline.ll``: the same module with each definition renamed ``<prefix><name>``
  and made ``available_externally``: a body the numba loop may inline, whose
  symbols resolve to ``lib.so``'s (``shmrss.kernel.inline`` registers them), so
  nothing of it is emitted twice and every process shares one state.

``symbols.txt`` lists the renamed names, one a line.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

_ERROR = re.compile(r" error: |undefined reference")
_CTORS = re.compile(r"^@llvm\.(global_ctors|global_dtors|used|compiler\.used) ", re.M)


class BitcodeError(Exception):
    """clang or the link failed; the message is one line (the first error)."""


@functools.lru_cache(maxsize=1)
def clang() -> tuple[str, str] | None:
    """clang's path and first ``--version`` line, or None when it is not installed."""
    path = shutil.which("clang")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    return path, (out.splitlines() or ["clang"])[0]


def llvm():
    """llvmlite's binding, with the native target, asm printer and asm parser (the shim's inline asm)."""
    import llvmlite.binding as ll

    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    ll.initialize_native_asmparser()
    return ll


def _first_error(stderr: str) -> str:
    lines = stderr.splitlines()
    return ([ln for ln in lines if _ERROR.search(ln)] or lines or ["?"])[0].strip()


def _compile(cc: str, flags: list[str], sources: list[Path], tmp: Path) -> list[Path]:
    out = []
    for i, src in enumerate(sources):
        bc = tmp / f"{i}-{src.stem}.bc"
        done = subprocess.run([cc, *flags, "-Wno-macro-redefined", "-emit-llvm", "-c", "-o", str(bc), str(src)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BitcodeError(f"clang failed: {_first_error(done.stderr)}")
        out.append(bc)
    return out


def _linked(ll, bcs: list[Path]):
    mod = ll.parse_bitcode(bcs[0].read_bytes())
    for bc in bcs[1:]:
        mod.link_in(ll.parse_bitcode(bc.read_bytes()))
    for v in (*mod.functions, *mod.global_variables):
        if not v.is_declaration and v.linkage == ll.Linkage.internal:
            v.linkage = ll.Linkage.external  # statics keep their (unique after linking) names, now exported
    mod.verify()
    return mod


def _shared_object(ll, mod, tmp: Path) -> None:
    tm = ll.Target.from_triple(mod.triple).create_target_machine(opt=2, reloc="pic", codemodel="default")
    (tmp / "lib.o").write_bytes(tm.emit_object(mod))
    gcc = shutil.which("gcc") or shutil.which("cc") or "cc"
    done = subprocess.run([gcc, "-shared", "-Wl,-z,defs", "-Wl,-Bsymbolic", "-o", str(tmp / "lib.so"),
                           str(tmp / "lib.o")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BitcodeError(f"link failed: {_first_error(done.stderr)}")


def _inline_copy(ll, mod, prefix: str, tmp: Path) -> None:
    copy = ll.parse_bitcode(mod.as_bitcode())
    names = []
    for v in (*copy.functions, *copy.global_variables):
        if v.is_declaration or v.name.startswith("llvm.") or v.linkage == ll.Linkage.private:
            continue  # private: string constants, copied as they are
        names.append(v.name)
        v.name = prefix + v.name
        v.linkage = ll.Linkage.available_externally
    # constructors stay the shared object's (they ran when it loaded); dso_local: the symbols are lib.so's
    text = "\n".join(ln for ln in str(copy).splitlines() if not _CTORS.match(ln)).replace(" dso_local ", " ")
    ll.parse_assembly(text).verify()
    (tmp / "inline.ll").write_text(text)
    (tmp / "symbols.txt").write_text("".join(f"{n}\n" for n in names))


def build_into(tmp: Path, flags: list[str], sources: list[Path], prefix: str) -> None:
    """Write ``lib.so``, ``inline.ll`` and ``symbols.txt`` into ``tmp`` (``clang()`` names the compiler)."""
    found = clang()
    if found is None:
        raise BitcodeError("clang not found")
    ll = llvm()
    mod = _linked(ll, _compile(found[0], flags, sources, tmp))
    _shared_object(ll, mod, tmp)
    _inline_copy(ll, mod, prefix, tmp)
