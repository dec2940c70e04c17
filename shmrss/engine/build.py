"""Each design's compiled engine: the ``loops`` template specialised to it, compiled in parallel.

``engine_for(design, groups)`` is the package ``shmrss/engine/loops``
specialised to the design (``shmrss.specialise``) with the entry points of
``groups`` compiled (or loaded from numba's disk cache): a run without a
reader, OOM, reclaimer or faults never compiles their loops.

``prepare_engines(designs, groups)`` compiles the engines a run will use that
are not cached yet in forked workers, one per usable CPU, before the run
loads them one after another: a cold ``--design all`` costs the longest
compile, not the sum of them. Each group leaves a stamp beside the cache
once compiled, so a warm run forks no worker.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing as mp
import time
from pathlib import Path
from types import ModuleType

from loguru import logger

from shmrss.compile_cache import cache_dir, fall_back, no_space
from shmrss.procs import die_with_parent
from shmrss.runsignals import ignore_in_child
from shmrss.specialise import compile_entries, copy_name, forget, sources, specialised

TEMPLATE = Path(__file__).resolve().parent / "loops"
PREFIX = "shmrss_engine"
ALL_GROUPS = ("run", "reader", "oom", "reclaimer", "faults")  # loops.ENTRY_GROUPS, for a caller that uses all
_compiled: dict[str, set[str]] = {}  # copy name -> its groups compiled in this process


def engine_for(design: str, groups: tuple[str, ...] = ("run",)) -> ModuleType:
    """The compiled engine of ``design`` with the entry points of ``groups`` ready to call."""
    from shmrss import designs

    designs.get(design)
    t0 = time.perf_counter()
    try:
        mod = _compile_groups(design, groups)
    except OSError as e:  # numba could not save machine code, or a stamp: the disk is full
        if not no_space(e):
            raise
        fall_back(cache_dir(), e)
        forget(TEMPLATE, design)
        _compiled.pop(copy_name(TEMPLATE, design, PREFIX), None)
        mod = _compile_groups(design, groups)
    took = time.perf_counter() - t0
    if took > 1.0:
        logger.info("compiled the {} engine in {:.1f} s (cached for later runs)", design, took)
    return mod


def _compile_groups(design: str, groups: tuple[str, ...]):
    mod = specialised(TEMPLATE, design, PREFIX)
    done = _compiled.setdefault(copy_name(TEMPLATE, design, PREFIX), set())
    for group in groups:
        if group not in done:
            compile_entries(mod, mod.ENTRY_GROUPS[group])
            done.add(group)
            _stamp(design, group).touch()
    return mod


def _stamp(design: str, group: str) -> Path:
    """A file saying ``group`` of the design's copy was compiled by this numba on this CPU model: numba's
    cache holds machine code per both, so another one means compiling again (and in parallel)."""
    return cache_dir() / f"{copy_name(TEMPLATE, design, PREFIX)}.{group}.{_toolchain_tag()}.ok"


@functools.lru_cache(maxsize=1)
def _toolchain_tag() -> str:
    import numba

    from shmrss.host_meta import cpu_model

    return hashlib.sha256(f"{numba.__version__} {cpu_model()}".encode()).hexdigest()[:8]


def _compiled_on_disk(design: str, groups: tuple[str, ...]) -> bool:
    return all(_stamp(design, g).exists() for g in groups)


def _compile_child(design: str, groups: tuple[str, ...]) -> None:
    """A compile worker: only the parent decides when the compile stops (it kills its workers)."""
    ignore_in_child()
    die_with_parent()
    engine_for(design, groups)


def _load_compiled(design: str, groups: tuple[str, ...]) -> None:
    """Load a design a worker compiled (if it failed, the parent compiles it later, showing the error)."""
    if _compiled_on_disk(design, groups):
        engine_for(design, groups)


def usable_cpus() -> int:
    """How many compile workers the host gives room for: the usable CPUs (affinity, cpuset), capped by a
    cgroup CPU quota (read as the topology reads them)."""
    from shmrss.topology import TopologyError, read_topology

    try:
        topo = read_topology()
    except TopologyError:
        return 1
    n = len(topo.usable)
    return max(1, min(n, int(topo.quota_cpus))) if topo.quota_cpus else n


def _compile_in_children(todo: list[str], groups: tuple[str, ...], workers: int, on_done=None) -> None:
    """Compile ``todo`` in forked children, ``workers`` at a time, ``on_done(design)`` in the parent as each
    one ends (it loads the compiled code while the last children still compile). A child that fails leaves
    its design to the parent, which then compiles it itself and shows the real error; an exception here
    (a signal) kills every child first."""
    ctx = mp.get_context("fork")
    pending, running = list(todo), {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                design = pending.pop(0)
                running[design] = ctx.Process(target=_compile_child, args=(design, groups), daemon=True)
                running[design].start()
            next(iter(running.values())).join(0.05)
            for design in [d for d, c in running.items() if c.exitcode is not None]:
                del running[design]
                if on_done is not None:
                    on_done(design)
    finally:
        for child in running.values():
            child.kill()
            child.join()


def _compile_cost(design: str) -> int:
    """How much source a design's copy compiles in: the longest first keeps both CPUs busy to the end."""
    return sum(f.stat().st_size for f in sources(TEMPLATE, design.replace("-", "_")))


def prepare_engines(designs: list[str], groups: tuple[str, ...] = ("run",), workers: int | None = None) -> None:
    """Compile the engines of ``designs`` not yet on disk in parallel, then load them all."""
    todo = sorted((d for d in dict.fromkeys(designs)
                   if not set(groups) <= _compiled.get(copy_name(TEMPLATE, d, PREFIX), set())
                   and not _compiled_on_disk(d, groups)),
                  key=_compile_cost, reverse=True)
    workers = min(len(todo), workers or usable_cpus())
    if workers > 1:
        t0 = time.perf_counter()
        logger.info("compiling the {} engines on {} CPUs (cached for later runs)", ", ".join(todo), workers)
        _compile_in_children(todo, groups, workers, on_done=lambda d: _load_compiled(d, groups))
        logger.info("compiled {} engines in {:.1f} s", len(todo), time.perf_counter() - t0)
    for d in designs:
        engine_for(d, groups)
