"""The one way a design is compiled into code that calls it directly: a template copied per design.

A template is a module (one file) or a package (a directory) whose one line
marked ``# DESIGN-IMPORT`` binds the design's functions, for example::

    add, read_approx = bind("atomic", ("add", "read_approx"))  # DESIGN-IMPORT

``specialised(template, design)`` writes a copy of the template into the
private compile cache with that line naming ``design`` and imports it, so
numba inlines the design's functions into the template's loops (no dispatch
per event) and caches the machine code on disk beside the copy.

numba's cache notices an edit only to the file a function is defined in, not
to a function it inlined from another file. So the copy is named by a hash of
every source it compiles in: the template's files, the design's module and
every ``shmrss`` module they import, transitively. Editing one design changes
the name of that design's copies only; every other design keeps its cache.
The engine (``shmrss.engine``), the monitor's reads, the fork/exit loop and
the tests' design driver all come through here.

A C design whose add the loop inlines (``shmrss.kernel.inline``) compiles in C
that no Python file shows: its copies are named with the library's build too
(``inline.key``: its hash covers the C sources, the shim, the spec, the route and
the compiler), so another library or route never loads this one's machine code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

from shmrss.compile_cache import cache_dir, fall_back, no_space
from shmrss.kernel import inline

MARK = "# DESIGN-IMPORT"
_TEMPLATE_DESIGN = '"atomic"'  # the design a template's marked line names, as written
_PKG = Path(__file__).resolve().parent
_loaded: dict[tuple[str, str], ModuleType] = {}


def _template_files(template: Path) -> list[Path]:
    return sorted(template.glob("*.py")) if template.is_dir() else [template]


def _module_file(name: str) -> Path | None:
    """The source of module ``shmrss.a.b`` (a file or a package's ``__init__``), None if not ours."""
    parts = name.split(".")
    if parts[0] != "shmrss":
        return None
    base = _PKG.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@functools.lru_cache(maxsize=None)
def _imports(path: Path) -> frozenset[Path]:
    """The files of the ``shmrss`` modules ``path`` imports (``from shmrss.x import y``: y if a module)."""
    out: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for n in names:
            f = _module_file(n)
            if f is not None:
                out.add(f)
    return frozenset(out)


def sources(template: Path, design_module: str) -> list[Path]:
    """Every file the specialised copy compiles in: the template, the design, and what they import."""
    todo = [*_template_files(template), _PKG / "designs" / f"{design_module}.py"]
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imports(f) - seen)
    return sorted(seen)


@functools.lru_cache(maxsize=None)  # per process: the sources do not change under a running shmrss
def _digest(template: Path, design_module: str, c_build: str = "") -> str:
    h = hashlib.sha256(f"{design_module}{c_build}".encode())
    for f in sources(template, design_module):
        h.update(str(f.relative_to(f.parents[1])).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _rewrite(text: str, design: str, where: Path) -> str:
    """The template's text with its marked line naming ``design``."""
    lines = text.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if MARK in line and _TEMPLATE_DESIGN in line]
    if len(marked) > 1:
        raise RuntimeError(f"{where} has {len(marked)} {MARK} lines; a template has one")
    for i in marked:
        lines[i] = lines[i].replace(_TEMPLATE_DESIGN, f'"{design}"', 1)
    return "".join(lines)


def write_source(dest: Path, text: str) -> None:
    """``dest`` holds ``text``: written whole or not at all, and an identical file left untouched (its mtime
    is in numba's cache index), whichever process writes it first."""
    if dest.exists() and dest.read_text() == text:
        return
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
    except OSError:  # a full disk: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
    try:
        os.link(tmp, dest)
    except FileExistsError:
        if dest.read_text() != text:
            tmp.replace(dest)  # damaged: replaced atomically
    tmp.unlink(missing_ok=True)


def _write_copy(template: Path, design: str, dest: Path) -> Path:
    """Write the specialised copy at ``dest`` (``.py`` file or package directory) unless it is there."""
    files = _template_files(template)
    texts = {f.name: _rewrite(f.read_text(), design, f) for f in files}
    if sum(MARK in t and f'"{design}"' in t for t in texts.values()) != 1:
        raise RuntimeError(f"template {template} needs one line with both {_TEMPLATE_DESIGN} and {MARK}")
    if not template.is_dir():
        write_source(dest, texts[template.name])
        return dest
    if dest.is_dir() and all((dest / n).is_file() and (dest / n).read_text() == t for n, t in texts.items()):
        return dest / "__init__.py"
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        for n, t in texts.items():
            (tmp / n).write_text(t)
    except OSError:  # a full disk: leave nothing half-written behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():  # damaged (a file missing or changed): moved aside, then replaced
        aside = dest.with_name(f"{dest.name}.{os.getpid()}.old")
        dest.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        tmp.rename(dest)  # atomic; when another process won the race its copy is the same text
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / "__init__.py"


def copy_name(template: Path, design: str, prefix: str) -> str:
    """The importable name of ``template`` specialised to ``design`` (changes with any source it inlines)."""
    module = design.replace("-", "_")
    return f"{prefix}_{module}_{_digest(template, module, inline.key(design))}"


def specialised(template: Path, design: str, prefix: str, subdir: str = "") -> ModuleType:
    """``template`` specialised to ``design``, imported once per process (compiled or loaded from cache)."""
    name = copy_name(template, design, prefix)
    key = (str(template), design, name)
    if key in _loaded:
        return _loaded[key]
    try:
        dest, path = _place(template, design, name, cache_dir(), subdir)
    except OSError as e:
        if not no_space(e):
            raise
        dest, path = _place(template, design, name, fall_back(cache_dir(), e), subdir)
    mod = import_file(name, path, dest if template.is_dir() else None)
    _loaded[key] = mod
    return mod


def import_file(name: str, path: Path, package: Path | None = None) -> ModuleType:
    """The file ``path`` imported as module ``name`` (a package whose directory is ``package``, if given);
    a failed import leaves no half-made ``name`` in sys.modules."""
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(package)] if package is not None else None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _place(template: Path, design: str, name: str, root: Path, subdir: str) -> tuple[Path, Path]:
    """Write the copy under ``root``: (its file or package directory, the file to import)."""
    where = root / subdir if subdir else root
    where.mkdir(mode=0o700, exist_ok=True)
    dest = where / (name if template.is_dir() else f"{name}.py")
    return dest, _write_copy(template, design, dest)


def forget(template: Path, design: str) -> None:
    """Drop this process's loaded copy, so the next ``specialised`` writes and imports it again (in the
    fallback cache, after numba could not save its machine code for want of space)."""
    for mod in [_loaded.pop(k) for k in list(_loaded) if k[:2] == (str(template), design)]:
        # and its submodules, which the new copy's package would otherwise reuse
        for name in [n for n in sys.modules if n == mod.__name__ or n.startswith(mod.__name__ + ".")]:
            del sys.modules[name]


def entry(signature: str, **options):
    """A compiled entry point of a template, compiled only when a run needs it (``compile_entries``).

    ``@njit(signature)`` would compile at import, every entry of every copy a process loads; this
    keeps the signature beside a lazy dispatcher instead, with numba's disk cache on."""
    from numba import njit

    def wrap(func):
        dispatcher = njit(cache=True, **options)(func)
        dispatcher.entry_signature = signature
        return dispatcher

    return wrap


def compile_entries(module: ModuleType, names) -> None:
    """Compile (or load from the disk cache) the entries ``names`` of a specialised copy, by signature,
    so forked children inherit machine code and a call with other types fails instead of recompiling."""
    for name in names:
        dispatcher = getattr(module, name)
        if getattr(dispatcher, "entry_ready", False):
            continue
        dispatcher.compile(dispatcher.entry_signature)
        dispatcher.disable_compile()
        dispatcher.entry_ready = True
