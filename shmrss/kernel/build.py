"""Compile a C counter library with the shim into a shared object, cached, and load it.

``build(lib)`` turns a ``Library`` (its C sources, include directories, headers
copied from a kernel tree, ``CONFIG_*`` defines) into ``<cache>/kernel/<hash>/lib.so``;
the hash covers every source, header, define, the shim, the route and the
compiler's ``--version``, so an edit or another compiler rebuilds.

Two routes (``route()``, docs/kernel-c.md): with clang installed, "inlined":
clang bitcode (``bitcode``), whose shared object is built from the same module
as the copy the numba loop inlines (``inline.ll`` beside ``lib.so``); without
clang, or with ``SHMRSS_KERNEL_ROUTE=called``, "called": gcc -O2, the loop calls
the shared object through an address. Every ``linux/*.h`` or ``asm/*.h`` the sources
include and the kernel tree does not provide becomes a stub including the shim.

File statics that the library writes after the CPUs fork (``LIST_HEAD``,
``DEFINE_SPINLOCK``, ``DEFINE_RAW_SPINLOCK``) are moved into the segment's shared
area: each is ``-D``-defined as a slot there, and a generated ``shim_init_statics``
initialises them, so every process sees one list and one lock, as the kernel's CPUs do.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shmrss.compile_cache import cache_dir
from shmrss.kernel import bitcode

SHIM_DIR = Path(__file__).resolve().parent / "c"
SHIM_SOURCES = ("shmrss_shim.h", "shmrss_glue.h", "shim.c")
STATICS_OFF, SLOT_BYTES, SHARED_BYTES = 256, 64, 1024  # shmrss_glue.h
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]((?:linux|asm|asm-generic)/[\w./-]+\.h)[>"]', re.M)
_STATIC = re.compile(r"\b(LIST_HEAD|DEFINE_SPINLOCK|DEFINE_RAW_SPINLOCK)\((\w+)\)")
_TYPES = {"LIST_HEAD": "struct list_head", "DEFINE_SPINLOCK": "spinlock_t", "DEFINE_RAW_SPINLOCK": "raw_spinlock_t"}
_INIT = {"LIST_HEAD": "INIT_LIST_HEAD(&{});", "DEFINE_SPINLOCK": "raw_spin_lock_init(&{});",
         "DEFINE_RAW_SPINLOCK": "raw_spin_lock_init(&{});"}
# -Bsymbolic: calls and loads inside the library bind to it (no PLT/GOT indirection a kernel build lacks)
CFLAGS = ("-O2", "-fPIC", "-fno-semantic-interposition", "-shared", "-Wl,-z,defs", "-Wl,-Bsymbolic", "-std=gnu11", "-fno-strict-aliasing",
          "-Wno-attributes")
_ERROR = re.compile(r" error: |undefined reference")
_loaded: dict[Path, ctypes.CDLL] = {}
ROUTE_ENV = "SHMRSS_KERNEL_ROUTE"  # auto (default), called or inlined


class BuildError(Exception):
    """A library that cannot be built or loaded; the message is one line (the compiler's first error)."""


@dataclass(frozen=True)
class Library:
    name: str
    sources: tuple[Path, ...]  # compiled with the shim
    includes: tuple[Path, ...] = ()
    kernel_headers: tuple[tuple[str, Path], ...] = ()  # (linux/x.h, file): copied into the build's include
    defines: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=1)
def compiler() -> tuple[str, str]:
    """gcc's path and first ``--version`` line, or BuildError."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("gcc not found: a C design needs a C compiler (apt-get install gcc)")
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False).stdout
    return gcc, (out.splitlines() or ["gcc"])[0]


def route() -> str:
    """"inlined" when clang is installed (or demanded), else "called"; ``$SHMRSS_KERNEL_ROUTE`` chooses."""
    want = os.environ.get(ROUTE_ENV, "auto") or "auto"
    if want not in ("auto", "called", "inlined"):
        raise BuildError(f"{ROUTE_ENV}={want}: expected auto, called or inlined")
    if want == "called":
        return "called"
    if bitcode.clang() is None:
        if want == "inlined":
            raise BuildError(f"{ROUTE_ENV}=inlined needs clang (apt-get install clang)")
        return "called"
    return "inlined"


@functools.lru_cache(maxsize=1)
def _inlining_compiler() -> str:
    import llvmlite.binding as ll

    found = bitcode.clang()
    clang = found[1] if found else "clang"
    return f"{clang} (bitcode); LLVM {'.'.join(map(str, ll.llvm_version_info))} (llvmlite: lib.so and the loop)"


def route_compiler(which: str | None = None) -> str:
    """The compiler(s) of ``which`` route (the current one by default), as the result records them."""
    return _inlining_compiler() if (which or route()) == "inlined" else compiler()[1]


def _statics(lib: Library) -> list[tuple[str, str]]:
    """(kind, name) of every file static the library's sources define with a kernel macro."""
    found: list[tuple[str, str]] = []
    for src in lib.sources:
        for kind, name in _STATIC.findall(src.read_text(errors="replace")):
            if (kind, name) not in found:
                found.append((kind, name))
    if STATICS_OFF + SLOT_BYTES * len(found) > SHARED_BYTES:
        raise BuildError(f"{lib.name}: more file statics than the shared area holds ({len(found)})")
    return found


def _digest(lib: Library, statics, version: str) -> str:
    h = hashlib.sha256(f"{version} {CFLAGS} {lib.defines} {statics}".encode())
    for f in (*(SHIM_DIR / s for s in SHIM_SOURCES), *lib.sources, *(p for _, p in lib.kernel_headers)):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    for d in lib.includes:
        for f in sorted(d.rglob("*.h")):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _stubs(lib: Library, inc: Path) -> None:
    """The build's include dir: the kernel headers copied, a stub for every other kernel header named."""
    for rel, src in lib.kernel_headers:
        (inc / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, inc / rel)
    todo = [*lib.sources, *(inc / rel for rel, _ in lib.kernel_headers)]
    seen: set[str] = set()
    while todo:
        for rel in _INCLUDE.findall(todo.pop().read_text(errors="replace")):
            if rel in seen:
                continue
            seen.add(rel)
            path = inc / rel
            if path.exists():
                todo.append(path)
            elif not any((d / rel).exists() for d in lib.includes):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text('#include "shmrss_shim.h"\n')


def _flags(lib: Library, statics, inc: Path) -> list[str]:
    flags = [*CFLAGS, f"-I{inc}", *(f"-I{d}" for d in lib.includes), f"-I{SHIM_DIR}"]
    flags += [f"-D{k}={v}" for k, v in lib.defines]
    for i, (kind, name) in enumerate(statics):
        off = STATICS_OFF + SLOT_BYTES * i
        flags.append(f"-D{name}=(*({_TYPES[kind]} *)(shim_base + shim_shared_off + {off}))")
    return flags


def build(lib: Library) -> Path:
    """``lib`` compiled into a shared object (reused from the cache when nothing changed); on the inlined
    route ``inline.ll`` and ``symbols.txt`` lie beside it."""
    how = route()
    gcc, version = compiler()
    for src in lib.sources:
        if not src.is_file():
            raise BuildError(f"{lib.name}: {src} not found")
    statics = _statics(lib)
    digest = _digest(lib, statics, f"{how} {version} {route_compiler(how)}")
    out_dir = cache_dir() / "kernel" / f"{lib.name}-{digest}"
    so = out_dir / "lib.so"
    if _complete(out_dir, how):
        return so
    # this process's own: two runs (or test workers) building one library at once must not share it
    tmp = out_dir.with_name(f"{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "include").mkdir(parents=True)
    _stubs(lib, tmp / "include")
    init = "".join(_INIT[kind].format(name) for kind, name in statics)
    (tmp / "statics.c").write_text('#include "shmrss_shim.h"\n#include "shmrss_glue.h"\n'
                                   f"void shim_init_statics(void) {{ {init} }}\n")
    # one translation unit of the library and its glue, so the glue's call into the library can be inlined
    # as the kernel's inline callers (add_mm_counter) are into theirs
    (tmp / "unity.c").write_text("".join(f'#include "{src}"\n' for src in lib.sources))
    units = [SHIM_DIR / "shim.c", tmp / "statics.c", tmp / "unity.c"]
    flags = _flags(lib, statics, tmp / "include")
    if how == "inlined":
        try:
            bitcode.build_into(tmp, [f for f in flags if f != "-shared" and not f.startswith("-Wl,")], units,
                               f"shmrss_{digest}_")
        except bitcode.BitcodeError as e:
            raise BuildError(f"{lib.name}: {e}") from None
    else:
        _gcc(lib, gcc, flags, units, tmp / "lib.so")
    _publish(tmp, out_dir, how)
    return so


def _complete(out_dir: Path, how: str) -> bool:
    """A finished build of route ``how``: its shared object, and on the inlined route the copy to inline."""
    return (out_dir / "lib.so").is_file() and (how == "called" or (out_dir / "inline.ll").is_file())


def _publish(tmp: Path, out_dir: Path, how: str) -> None:
    """Rename the finished build into place; a complete one another process placed first is kept."""
    if out_dir.is_dir() and not _complete(out_dir, how):
        shutil.rmtree(out_dir, ignore_errors=True)  # an incomplete one, e.g. of an older shmrss
    try:
        tmp.rename(out_dir)
    except OSError:
        if not (out_dir / "lib.so").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _gcc(lib: Library, gcc: str, flags: list[str], units: list[Path], so: Path) -> None:
    done = subprocess.run([gcc, *flags, "-o", str(so), *map(str, units)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.splitlines()
        errors = [ln for ln in lines if _ERROR.search(ln) and "collect2" not in ln]
        errors = errors or lines or ["?"]
        raise BuildError(f"{lib.name}: gcc failed: {errors[0].strip()}")


def load(so: Path) -> ctypes.CDLL:
    """The shared object, loaded once per process (kept loaded: the engine calls its addresses)."""
    if so not in _loaded:
        try:
            _loaded[so] = ctypes.CDLL(str(so))
        except OSError as e:
            raise BuildError(f"{so}: cannot load: {e}") from None
    return _loaded[so]


def address(lib: ctypes.CDLL, name: str, owner: str) -> int:
    """The address of function ``name`` in ``lib``, typed ``long f(long, long, long, long)``."""
    try:
        fn = getattr(lib, name)
    except AttributeError:
        raise BuildError(f"{owner}: function {name} not found in the library") from None
    fn.argtypes = [ctypes.c_long] * 4
    fn.restype = ctypes.c_long
    return ctypes.cast(fn, ctypes.c_void_p).value


def function(lib: ctypes.CDLL, name: str):
    """``name`` callable from Python with four longs."""
    address(lib, name, "library")
    return getattr(lib, name)
