"""``--design c:SPEC.toml``: a user's counter library, named by a spec, built with the shim.

The spec (TOML) names the C sources and include dirs (relative to the spec, and
inside its directory), ``CONFIG_*``-style defines, and the library's functions::

    name = "mycounter"
    sources = ["mycounter.c"]
    include = []
    defines = { CONFIG_SMP = 1 }
    percpu_bytes = 16            # optional: per-CPU bytes one counter object allocates (default 16)
    [functions]
    size = "mc_size"             # long mc_size(int nr_possible_cpus)
    init = "mc_init"             # int  mc_init(void *obj, int nr_possible_cpus): 0 on success
    add = "mc_add"               # void mc_add(void *obj, long delta), on the current emulated CPU
    read_approx = "mc_read"      # long mc_read(void *obj)
    read_precise = "mc_sum"      # long mc_sum(void *obj)
    destroy = "mc_destroy"       # optional
    bound = "mc_bound"           # optional: max |approx - truth| when settled

``load()`` builds and loads the spec ``$SHMRSS_C_SPEC`` names (the CLI sets it from
``c:PATH``), once per process. Every problem is a ``SpecError`` with one line.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from shmrss.kernel import build, inline

ENV = "SHMRSS_C_SPEC"
REQUIRED = {"size": "SPEC_SIZE", "init": "SPEC_INIT", "add": "SPEC_ADD", "read_approx": "SPEC_READ",
            "read_precise": "SPEC_SUM"}
OPTIONAL = {"destroy": "SPEC_DESTROY", "bound": "SPEC_BOUND"}
ENTRIES = ("cg_add", "cg_sum", "cg_init", "cg_destroy", "cg_offline", "cg_read", "cg_bound")  # c's global words
GLUE = build.SHIM_DIR / "glue_spec.c"
_IDENT = re.compile(r"[A-Za-z_]\w*")


class SpecError(Exception):
    """A spec that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    library: build.Library
    percpu_bytes: int


def _inside(spec: Path, rel: object, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise SpecError(f"{spec}: {what} must be a relative path string")
    p = (spec.parent / rel).resolve()
    if Path(rel).is_absolute() or not p.is_relative_to(spec.parent.resolve()):
        raise SpecError(f"{spec}: {what} {rel!r} is outside the spec's directory")
    return p


def _functions(spec: Path, table: object) -> list[tuple[str, str]]:
    if not isinstance(table, dict):
        raise SpecError(f"{spec}: no [functions] table")
    unknown = set(table) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise SpecError(f"{spec}: unknown function key {sorted(unknown)[0]!r}")
    missing = [k for k in REQUIRED if k not in table]
    if missing:
        raise SpecError(f"{spec}: [functions] lacks {', '.join(missing)}")
    defines = []
    for key, macro in {**REQUIRED, **OPTIONAL}.items():
        if key in table:
            if not isinstance(table[key], str) or not _IDENT.fullmatch(table[key]):
                raise SpecError(f"{spec}: functions.{key} must be a C identifier")
            defines.append((macro, table[key]))
    return defines


def parse(path: Path) -> Spec:
    """The spec at ``path``, checked (files inside its directory, the required functions named)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec {path} not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"spec {path}: {e}") from None
    name = data.get("name")
    if not isinstance(name, str) or not _IDENT.fullmatch(name.replace("-", "_")):
        raise SpecError(f"{path}: name must be a word")
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise SpecError(f"{path}: sources must list the C files")
    srcs = tuple(_inside(path, s, "source") for s in sources)
    incs = tuple(_inside(path, s, "include dir") for s in data.get("include", []))
    defs = data.get("defines", {})
    if not isinstance(defs, dict) or not all(_IDENT.fullmatch(k) and isinstance(v, (int, str)) for k, v in defs.items()):
        raise SpecError(f"{path}: defines must map C identifiers to integers or strings")
    pb = data.get("percpu_bytes", 16)
    if not isinstance(pb, int) or not 0 <= pb <= 4096:
        raise SpecError(f"{path}: percpu_bytes must be an integer 0..4096")
    defines = tuple((k, str(v)) for k, v in defs.items()) + tuple(_functions(path, data.get("functions")))
    lib = build.Library(name=f"c-{name}", sources=(*srcs, GLUE), includes=incs, defines=defines)
    return Spec(path=path, name=name, library=lib, percpu_bytes=pb)


@functools.lru_cache(maxsize=4)
def _loaded(text: str, route: str):
    spec = parse(Path(text))
    so = build.build(spec.library)
    return spec, build.load(so), so


def load():
    """(the spec, its loaded library) for ``$SHMRSS_C_SPEC``; SpecError/BuildError."""
    text = os.environ.get(ENV)
    if not text:
        raise SpecError("no c: spec named")
    spec, lib, so = _loaded(text, build.route())
    inline.activate("c", so, lib)  # the loops compiled from now on inline this build's add
    return spec, lib


def addresses() -> list[int]:
    spec, lib = load()
    return [build.address(lib, n, spec.name) for n in ENTRIES]


def call(name: str, *args: int) -> int:
    spec, lib = load()
    return build.function(lib, name)(*args, *([0] * (4 - len(args))))


def preflight() -> None:
    """Build and load the spec's library, then init one object on one CPU in scratch memory: a library
    whose ``size`` or per-CPU demand does not fit what the spec states is refused before a run starts
    (in a run a failed ``alloc_percpu`` would leave a NULL per-CPU pointer for ``add`` to write through)."""
    import numpy as np

    from shmrss.layout import OWNER_PARENT

    s, _ = load()
    size = call("cg_size", 1)
    if not 0 < size <= 1 << 12:
        raise SpecError(f"{s.path}: {s.name}'s size(1) returned {size} (1 to 4096 bytes)")
    scratch = np.zeros(1 << 12, dtype=np.int64)  # shared area | object | the CPU's unit from byte 16384
    base, unit = scratch.ctypes.data, -(-s.percpu_bytes // 8) * 8
    call("cg_setup", base, 0, 0, 1 | 1 << 16 | OWNER_PARENT << 32)
    if call("cg_init", base, 8192, 16384, unit) != 0:
        raise SpecError(f"{s.path}: {s.name}'s init failed on one CPU with percpu_bytes = {s.percpu_bytes} "
                        "(does it allocate more per-CPU memory than that?)")
    call("cg_destroy", base, 8192)


def require(design_text: str) -> str:
    """``design_text`` with its ``c:PATH`` entry replaced by ``c`` and the spec built and loaded."""
    names = [n.strip() for n in design_text.split(",")]
    if "c" in names:
        raise SpecError("design c needs its spec: --design c:SPEC.toml")
    specs = [n for n in names if n.startswith("c:")]
    if not specs:
        return design_text
    if len(specs) > 1:
        raise SpecError("one c: spec per run")
    os.environ[ENV] = str(Path(specs[0][2:]).expanduser().resolve())
    preflight()
    return ",".join("c" if n.startswith("c:") else n for n in names)


def provenance() -> dict:
    """The result's ``kernel_c``: the spec, its library's name, the compiler, called or inlined."""
    s, _ = load()
    how = inline.route("c")
    return {"source": str(s.path), "name": s.name, "kernel": None, "compiler": build.route_compiler(how),
            "flags": "-O2", "call": how}
