"""The inlined route at run time: which C designs' code the numba loop inlines, and the module it links.

A C design's library built on the inlined route (``build``: ``inline.ll`` beside
``lib.so``) is ``activate``d when it is loaded: every renamed symbol of the copy
is registered with LLVM (``add_symbol``) at the address of its original in the
loaded ``lib.so``, so code compiled now, and machine code numba loads from its
disk cache later, reaches the shared object's variables and functions by name
(never by an address compiled in: numba could not cache that).

``key(design)`` names the active build (``""`` on the called route): the
specialised copies of a design are named with it (``shmrss.specialise``), so the
disk cache of a loop holds one library's inlined code and another library, or
the called route, compiles anew. ``linking_library`` is the copy as a numba code
library that ``ccall.entry_call`` links into the function it lowers.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

_ACTIVE: dict[str, Path] = {}  # design -> the build directory whose inline.ll its loop links
_LINKING: dict[tuple[int, Path], object] = {}
_REGISTERED: set[Path] = set()


def prefix(build_dir: Path) -> str:
    """The prefix of the copy's names: ``shmrss_<the build's hash>_`` (``build.build`` chose it)."""
    return f"shmrss_{build_dir.name.rsplit('-', 1)[1]}_"


def activate(design: str, so: Path, lib: ctypes.CDLL) -> None:
    """Register the copy's symbols at ``lib``'s addresses and make ``design``'s loops inline it; a build on
    the called route (no ``inline.ll``) deactivates ``design``."""
    d = so.parent
    if not (d / "inline.ll").is_file():
        _ACTIVE.pop(design, None)
        return
    if d not in _REGISTERED:
        import llvmlite.binding as ll

        pfx = prefix(d)
        for name in (d / "symbols.txt").read_text().split():
            ll.add_symbol(pfx + name, ctypes.cast(lib[name], ctypes.c_void_p).value)
        _REGISTERED.add(d)
    _ACTIVE[design] = d


@contextlib.contextmanager
def called(design: str):
    """Loops compiled inside call ``design``'s C through the address in the segment (e.g. verify's copies:
    its segment is bound to verify's own build of the library, which the inlined copy is not)."""
    active = _ACTIVE.pop(design, None)
    try:
        yield
    finally:
        if active is not None:
            _ACTIVE[design] = active


def key(design: str) -> str:
    """The active build's directory name for ``design``, ``""`` when its loops call (or it is no C design)."""
    d = _ACTIVE.get(design)
    return d.name if d is not None else ""


def route(design: str) -> str:
    return "inlined" if design in _ACTIVE else "called"


def symbol(design: str, name: str) -> str | None:
    """The copy's name of C function ``name`` for ``design``, None on the called route."""
    d = _ACTIVE.get(design)
    return prefix(d) + name if d is not None else None


def linking_library(codegen, design: str):
    """``design``'s copy as a numba code library to link (parsed once per codegen): never finalized itself,
    so its ``available_externally`` bodies reach the linking function's optimizer whole, and are inlined
    there (a finalized library would have dropped them) and emitted nowhere."""
    from shmrss.kernel import bitcode

    d = _ACTIVE[design]
    k = (id(codegen), d)
    if k not in _LINKING:
        ll = bitcode.llvm()
        mod = ll.parse_assembly((d / "inline.ll").read_text())
        mod.triple = codegen._llvm_module.triple
        mod.data_layout = str(codegen.target_data)
        lib = codegen.create_library(f"shmrss-inline-{d.name}")
        lib._finalized = True  # what add_linking_library asks of it; its module is what it links
        lib._shared_module = mod
        _LINKING[k] = lib
    return _LINKING[k]
