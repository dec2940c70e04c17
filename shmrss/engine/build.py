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

import hashlib
import multiprocessing as mp
import os
import time
from pathlib import Path
from types import ModuleType

from loguru import logger

from shmrss.compile_cache import cache_dir
from shmrss.procs import die_with_parent
from shmrss.runsignals import ignore_in_child
from shmrss.specialise import compile_entries, copy_name, specialised

TEMPLATE = Path(__file__).resolve().parent / "loops"
PREFIX = "shmrss_engine"
ALL_GROUPS = ("run", "reader", "oom", "reclaimer", "faults")  # loops.ENTRY_GROUPS, for a caller that uses all
_compiled: dict[str, set[str]] = {}


def engine_for(design: str, groups: tuple[str, ...] = ("run",)) -> ModuleType:
    """The compiled engine of ``design`` with the entry points of ``groups`` ready to call."""
    from shmrss import designs

    designs.get(design)
    t0 = time.perf_counter()
    mod = specialised(TEMPLATE, design, PREFIX)
    done = _compiled.setdefault(design, set())
    for group in groups:
        if group not in done:
            compile_entries(mod, mod.ENTRY_GROUPS[group])
            done.add(group)
            _stamp(design, group).touch()
    took = time.perf_counter() - t0
    if took > 1.0:
        logger.info("compiled the {} engine in {:.1f} s (cached for later runs)", design, took)
    return mod


def _stamp(design: str, group: str) -> Path:
    """A file saying ``group`` of the design's copy was compiled by this numba on this CPU model: numba's
    cache holds machine code per both, so another one means compiling again (and in parallel)."""
    import numba

    from shmrss.host_meta import cpu_model

    tag = hashlib.sha256(f"{numba.__version__} {cpu_model()}".encode()).hexdigest()[:8]
    return cache_dir() / f"{copy_name(TEMPLATE, design, PREFIX)}.{group}.{tag}.ok"


def _compiled_on_disk(design: str, groups: tuple[str, ...]) -> bool:
    return all(_stamp(design, g).exists() for g in groups)


def _compile_child(design: str, groups: tuple[str, ...]) -> None:
    """A compile worker: only the parent decides when the compile stops (it kills its workers)."""
    ignore_in_child()
    die_with_parent()
    engine_for(design, groups)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _compile_in_children(todo: list[str], groups: tuple[str, ...], workers: int) -> None:
    """Compile ``todo`` in forked children, ``workers`` at a time. A child that fails leaves its design to
    the parent, which then compiles it itself and shows the real error; an exception here (a signal)
    kills every child first."""
    ctx = mp.get_context("fork")
    pending, running = list(todo), []
    try:
        while pending or running:
            while pending and len(running) < workers:
                child = ctx.Process(target=_compile_child, args=(pending.pop(0), groups), daemon=True)
                child.start()
                running.append(child)
            running[0].join(0.05)
            running = [c for c in running if c.exitcode is None]
    finally:
        for child in running:
            child.kill()
            child.join()


def prepare_engines(designs: list[str], groups: tuple[str, ...] = ("run",), workers: int | None = None) -> None:
    """Compile the engines of ``designs`` not yet on disk in parallel, then load them all."""
    todo = [d for d in dict.fromkeys(designs)
            if not set(groups) <= _compiled.get(d, set()) and not _compiled_on_disk(d, groups)]
    workers = min(len(todo), workers or usable_cpus())
    if workers > 1:
        t0 = time.perf_counter()
        logger.info("compiling the {} engines on {} CPUs (cached for later runs)", ", ".join(todo), workers)
        _compile_in_children(todo, groups, workers)
        logger.info("compiled {} engines in {:.1f} s", len(todo), time.perf_counter() - t0)
    for d in designs:
        engine_for(d, groups)
