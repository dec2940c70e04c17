"""The suite's own compile step, beyond the engines: what many tests compile lazily, compiled once.

On an empty cache each pytest-xdist worker (and each shmrss child process) would compile the fork/exit
loops, the test drivers and the monitor's reads the first time a test needed them, several at once: the
same minute of numba's work done twice or three times. ``precompile()`` runs in the session fixture,
under its lock, after ``prepare_engines``: every such module is compiled once, in forked children on
the usable CPUs (the longest first), into the cache the tests then load. A stamp named by a digest of
the sources and the toolchain makes a warm session skip it at the cost of reading the sources; a module
missing from the cache all the same is compiled by the test that needs it, as before.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np

from shmrss import designs
from shmrss.compile_cache import cache_dir
from shmrss.engine.build import _toolchain_tag, usable_cpus

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "shmrss").rglob("*.py")), ROOT / "tests" / "design_drivers.py",
           ROOT / "tests" / "design_driver_template.py"]
ENV = ("SHMRSS_KERNEL_SRC", "SHMRSS_HPCC_SRC", "SHMRSS_KERNEL_ROUTE")  # what the C designs' copies depend on
# seconds on an idle core of the 2-core VM, 2026-12-07, for the order only: the longest first
COST = {("lifecycle", "single"): 75, "lifecycle": 39, "driver": 10, "monitor": 2}


def _stamp() -> Path:
    # the engines' stamps' tag: numba's version and the CPU model, for which numba's cache holds machine code
    h = hashlib.sha256(f"{sys.version} {_toolchain_tag()} {np.__version__}".encode())
    for name in ENV:
        h.update(f"{name}={os.environ.get(name, '')}".encode())
    for path in SOURCES:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return cache_dir() / f"tests-precompiled.{h.hexdigest()[:16]}.ok"


def _jobs() -> list[tuple[str, str]]:
    from shmrss.lifecycle import VARIANT_DESIGN

    jobs = [("lifecycle", d) for d in dict.fromkeys(VARIANT_DESIGN.values())]
    jobs += [("driver", d) for d in designs.DESIGNS] + [("monitor", d) for d in designs.DESIGNS]
    return sorted(jobs, key=lambda j: COST.get(j, COST[j[0]]), reverse=True)


def _compile(job: tuple[str, str]) -> str | None:
    """One module's compile in a forked child; the reason it failed, or None (the test that needs it then
    compiles it itself and shows the real error)."""
    kind, design = job
    try:
        if kind == "lifecycle":
            from shmrss.lifecycle import lifecycle_engine

            lifecycle_engine(design)
        elif kind == "driver":
            import design_drivers

            design_drivers.driver(design)  # run_ops has its signature: compiled as the copy is imported
        else:
            from shmrss import monitor_reads

            monitor_reads.warm(design)
    except Exception as e:  # noqa: BLE001 - e.g. a C design without its kernel source here
        return f"{kind} {design}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def precompile() -> list[str]:
    """Compile what the tests share, once (a no-op when the stamp says it was done); the jobs that failed."""
    stamp = _stamp()
    if stamp.exists():
        return []
    with mp.get_context("fork").Pool(usable_cpus()) as pool:
        failed = [why for why in pool.imap_unordered(_compile, _jobs()) if why]
    stamp.touch()
    return failed
