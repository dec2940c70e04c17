"""Host calibration: what the counter primitives cost on this machine.

Runs the same compiled intrinsics the designs use (``shmrss.atomics``) in
forked processes pinned to the placement's host CPUs, and reports ns per
operation for seven reference scenarios: plain and locked adds on a private
line, a locked add on one shared word, plain adds to words that share one line
(false sharing) or sit on lines of their own, and a spinlock-protected add with
and without contention.  The figures let a run's per-CPU timings be read
against what the hardware does at best and at worst.

The words live in an anonymous shared mapping made before forking, so
calibration never creates a named shared-memory object.  A full calibration
can be saved to the cache directory with a host fingerprint;
``load_or_measure`` reuses it on the same host and otherwise runs a quick one.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger
from numba import njit

from shmrss.atomics import load, local_add, local_cmpxchg, pause, rdtsc, spin_lock, spin_unlock, tsc_now, xadd
from shmrss.compile_cache import cache_dir
from shmrss.procs import die_with_parent
from shmrss.topology import pin_self

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "CalibrationError",
    "SCENARIOS",
    "ScenarioRun",
    "run_scenario",
    "measure",
    "quick",
    "load_or_measure",
    "save",
    "render",
    "CACHE_FILE",
    "MAX_AGE",
]

CACHE_FILE = "calibration.json"
MAX_AGE = timedelta(days=7)
QUICK_REPS = 3
QUICK_ITERS = 1_000_000
# Bumped whenever kernels or layout change, so older cached figures are not reused.
_VERSION = 1

# Each private word sits on its own line followed by two padding lines, so the
# adjacent-line prefetcher (which fetches 128-byte pairs) never couples two CPUs.
_SLOT_LINES = 3
# Below this, a repetition's CPUs mostly did not run at the same time.
_MIN_OVERLAP = 0.9


class CalibrationError(RuntimeError):
    """A calibration child failed or hung; the message is one user-facing line."""


# --------------------------------------------------------------------------- kernels


@njit(inline="always")
def _barrier(a, bar, target):
    xadd(a, bar, 1)
    while load(a, bar) < target:
        pause()


@njit
def _k_add(a, i, bar, target, iters):
    """iters plain adds to word i; rdtsc ticks elapsed after the barrier."""
    _barrier(a, bar, target)
    t0 = rdtsc()
    for _ in range(iters):
        local_add(a, i, 1)
    return rdtsc() - t0


@njit
def _k_xadd(a, i, bar, target, iters):
    """iters locked adds to word i; rdtsc ticks elapsed after the barrier."""
    _barrier(a, bar, target)
    t0 = rdtsc()
    for _ in range(iters):
        xadd(a, i, 1)
    return rdtsc() - t0


@njit
def _k_cmpxchg(a, i, bar, target, iters):
    """iters of percpu's fast path on word i: load, then lock-less cmpxchg of c -> c + 1."""
    _barrier(a, bar, target)
    t0 = rdtsc()
    for _ in range(iters):
        c = load(a, i)
        while True:
            seen = local_cmpxchg(a, i, c, c + 1)
            if seen == c:
                break
            c = seen
    return rdtsc() - t0


@njit
def _k_spinlock(a, lock, i, bar, target, iters):
    """iters lock / plain add to word i / unlock; rdtsc ticks elapsed after the barrier."""
    _barrier(a, bar, target)
    t0 = rdtsc()
    for _ in range(iters):
        spin_lock(a, lock, 1)
        local_add(a, i, 1)
        spin_unlock(a, lock)
    return rdtsc() - t0


_compiled = False


def _compile() -> None:
    """Compile (or load from numba's cache) every kernel, so forked children inherit them."""
    global _compiled
    if _compiled:
        return
    t0 = time.perf_counter()
    a = np.zeros(4, dtype=np.int64)
    # One caller and target 1: each barrier passes at once.
    _k_add(a, 1, 0, 1, 1)
    a[0] = 0
    _k_xadd(a, 1, 0, 1, 1)
    a[0] = 0
    _k_spinlock(a, 2, 1, 0, 1, 1)
    a[0] = 0
    _k_cmpxchg(a, 1, 0, 1, 1)
    tsc_now()
    _compiled = True
    logger.debug("calibration kernels ready in {:.2f} s", time.perf_counter() - t0)


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class _Scenario:
    kernel: str  # "add", "xadd", "cmpxchg" or "spinlock"
    multi: bool  # runs on every CPU (needs 2+) rather than on the first only
    word: str  # "private": a line per CPU; "shared": one word; "packed": one word per CPU, one line
    what: str


SCENARIOS: dict[str, _Scenario] = {
    "local_add": _Scenario("add", False, "private", "plain add, one CPU, private line"),
    "local_xadd": _Scenario("xadd", False, "private", "lock xadd, one CPU, private line"),
    "shared_xadd": _Scenario("xadd", True, "shared", "lock xadd, every CPU on one word"),
    "false_sharing_add": _Scenario(
        "add", True, "packed", "plain add, every CPU on its own word of one line"
    ),
    "separate_lines_add": _Scenario(
        "add", True, "private", "plain add, every CPU on its own line"
    ),
    "local_cmpxchg": _Scenario("cmpxchg", False, "private", "load + cmpxchg (no lock), one CPU: percpu's fast path"),
    "false_sharing_cmpxchg": _Scenario(
        "cmpxchg", True, "packed", "load + cmpxchg (no lock), every CPU on its own word of one line"
    ),
    "spinlock_uncontended": _Scenario(
        "spinlock", False, "shared", "spin_lock + add + spin_unlock, one CPU"
    ),
    "spinlock_contended": _Scenario(
        "spinlock", True, "shared", "spin_lock + add + spin_unlock, every CPU on one lock"
    ),
}


@dataclass
class ScenarioRun:
    """Raw outcome of one scenario: ticks per repetition and CPU, and the final words."""

    name: str
    cpus: list[int]
    iters: int
    reps: int
    ticks: np.ndarray  # (reps, len(cpus)), warm-up excluded
    words: np.ndarray  # copy of the whole mapping after the run
    data: list[int]  # data word of each CPU
    lock: int | None  # lock word (spinlock scenarios)
    overlap: np.ndarray  # (reps,) share of the shortest CPU's run during which all CPUs ran


def _words_per_line(cache_line: int) -> int:
    if cache_line < 16 or cache_line % 8 or cache_line & (cache_line - 1):
        raise ValueError(f"cache line must be a power of two of at least 16 bytes (got {cache_line})")
    return cache_line // 8


def _child(a, conn, kernel: str, cpu: int, k: int, n: int, data: int, lock: int,
           res: int, reps: int, iters: int, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when calibration ends
    die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)
    try:
        pin_self(cpu)
        for r in range(reps + 1):
            target = n * (r + 1)  # the arrival counter only grows: no reset race between rounds
            if kernel == "add":
                ticks = _k_add(a, data, 0, target, iters)
            elif kernel == "xadd":
                ticks = _k_xadd(a, data, 0, target, iters)
            elif kernel == "cmpxchg":
                ticks = _k_cmpxchg(a, data, 0, target, iters)
            else:
                ticks = _k_spinlock(a, lock, data, 0, target, iters)
            end = tsc_now()
            if r:
                slot = res + (r - 1) * n + k
                a[slot] = ticks
                a[slot + reps * n] = end - ticks
                a[slot + 2 * reps * n] = end
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        try:
            conn.send(f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(1)
    conn.close()


def _kill_all(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


def run_scenario(name: str, cpus: list[int], reps: int, iters: int, cache_line: int = 64) -> ScenarioRun:
    """Run one scenario on host CPUs cpus (all of them; callers choose how many)."""
    sc = SCENARIOS[name]
    if reps < 1 or iters < 1:
        raise ValueError(f"reps and iters must be positive (got {reps}, {iters})")
    wpl = _words_per_line(cache_line)
    n = len(cpus)
    if sc.word == "packed" and n > wpl:
        raise ValueError(f"{name}: {n} CPUs do not fit one {cache_line}-byte line")
    _compile()

    # Line 0: barrier.  From line _SLOT_LINES: the data (and lock) words.  Then results.
    base = _SLOT_LINES * wpl
    if sc.word == "private":
        data = [base + k * _SLOT_LINES * wpl for k in range(n)]
    elif sc.word == "packed":
        data = [base + k for k in range(n)]
    else:
        data = [base + (1 if sc.kernel == "spinlock" else 0)] * n
    # The data word shares the lock's line, as in a percpu_counter.
    lock = base if sc.kernel == "spinlock" else None
    res = base + n * _SLOT_LINES * wpl
    nwords = res + 3 * reps * n  # ticks, start and end stamps of each repetition and CPU
    nbytes = -(-nwords * 8 // mmap.PAGESIZE) * mmap.PAGESIZE

    ctx = multiprocessing.get_context("fork")
    mapping = mmap.mmap(-1, nbytes)  # anonymous and MAP_SHARED: seen by forked children
    a = None
    try:
        a = np.frombuffer(mapping, dtype=np.int64)
        procs, conns = [], []
        parent_pid = os.getpid()
        try:
            for k, cpu in enumerate(cpus):
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(
                    target=_child,
                    name=f"shmrss-calibrate-{name}-{cpu}",
                    args=(a, send, sc.kernel, cpu, k, n, data[k], -1 if lock is None else lock,
                          res, reps, iters, parent_pid),
                    daemon=True,
                )
                p.start()
                send.close()
                procs.append(p)
                conns.append(recv)
            _wait(name, cpus, procs, conns, _timeout(reps, iters, n))
        finally:
            _kill_all(procs)
            for c in conns:
                c.close()
        ticks, start, end = a[res:res + 3 * reps * n].reshape(3, reps, n).copy()
        words = a.copy()
    finally:
        # A traceback may still hold this frame: drop the view so the mapping can close.
        a = None
        try:
            mapping.close()
        except BufferError:
            logger.debug("calibration mapping still referenced; unmapped when released")
    # The TSC is synchronised across CPUs, so stamps from different children compare.
    overlap = np.clip((end.min(axis=1) - start.max(axis=1)) / np.maximum(ticks.min(axis=1), 1), 0.0, 1.0)
    if n > 1 and overlap.min() < _MIN_OVERLAP:
        logger.warning(
            "calibration {}: the CPUs ran together for only {:.0%} of a repetition; "
            "the host may be time-sharing them, so contended figures are too low",
            name, overlap.min(),
        )
    return ScenarioRun(name, list(cpus), iters, reps, ticks, words, data, lock, overlap)


def _timeout(reps: int, iters: int, n: int) -> float:
    # Generous: a contended operation costs well under 1 us even on a busy VM.
    return 30.0 + (reps + 1) * iters * n * 1e-6


def _wait(name, cpus, procs, conns, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {p.sentinel: (p, cpu, c) for p, cpu, c in zip(procs, cpus, conns)}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CalibrationError(
                f"calibration {name}: children on host CPUs {sorted(c for _, c, _ in pending.values())} "
                f"still running after {timeout:.0f} s; killed"
            )
        for s in multiprocessing.connection.wait(list(pending), timeout=left):
            p, cpu, conn = pending.pop(s)
            p.join()
            if p.exitcode != 0:
                why = conn.recv() if conn.poll() else f"exit code {p.exitcode}"
                raise CalibrationError(f"calibration {name}: child on host CPU {cpu} failed: {why}")


# --------------------------------------------------------------------------- measurement


def _summary(run: ScenarioRun, tsc_per_ns: float) -> dict:
    per_rep = np.median(run.ticks / run.iters / tsc_per_ns, axis=1)
    return {
        "ns_per_op": {
            "min": float(per_rep.min()),
            "median": float(np.median(per_rep)),
            "max": float(per_rep.max()),
        },
        "cpus": len(run.cpus),
    }


def _dedupe(cpus) -> list[int]:
    out = list(dict.fromkeys(int(c) for c in cpus))
    if not out:
        raise ValueError("calibration needs at least one host CPU")
    if len(out) != len(list(cpus)):
        logger.warning("calibration: duplicate host CPUs in {} ignored", list(cpus))
    return out


def measure(cpus: list[int], tsc_per_ns: float, reps: int = 5, iters: int = 2_000_000,
            cache_line: int = 64) -> dict:
    """Measure every scenario on host CPUs cpus; a JSON-able dict of ns per operation."""
    if tsc_per_ns <= 0:
        raise ValueError(f"tsc_per_ns must be positive (got {tsc_per_ns})")
    cpus = _dedupe(cpus)
    wpl = _words_per_line(cache_line)
    t0 = time.perf_counter()
    scenarios: dict[str, dict] = {}
    for name, sc in SCENARIOS.items():
        if not sc.multi:
            use = cpus[:1]
        elif len(cpus) < 2:
            scenarios[name] = {"skipped": f"needs 2 or more host CPUs, {len(cpus)} available"}
            continue
        elif sc.word == "packed" and len(cpus) > wpl:
            use = cpus[:wpl]
            logger.info("calibration {}: {} CPUs fill one line; using {}", name, wpl, use)
        else:
            use = cpus
        scenarios[name] = _summary(run_scenario(name, use, reps, iters, cache_line), tsc_per_ns)
        logger.debug("calibration {}: {}", name, scenarios[name]["ns_per_op"])
    logger.debug("calibration done in {:.2f} s", time.perf_counter() - t0)
    return {
        "host_cpus": cpus,
        "tsc_per_ns": float(tsc_per_ns),
        "reps": reps,
        "iters": iters,
        "cache_line": cache_line,
        "scenarios": scenarios,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def quick(topo, cpus: list[int], tsc_per_ns: float) -> dict:
    """A short calibration (about a second on two cores), for when no saved one fits."""
    return measure(cpus, tsc_per_ns, reps=QUICK_REPS, iters=QUICK_ITERS, cache_line=topo.cache_line)


# --------------------------------------------------------------------------- cache


def _fingerprint(topo, cpus) -> dict:
    return {
        "version": _VERSION,
        "model": topo.model,
        "host_cpus": [int(c) for c in cpus],
        "cache_line": topo.cache_line,
        "kernel": platform.release(),
    }


def save(result: dict, topo) -> Path:
    """Write result to the cache with this host's fingerprint; returns the file."""
    path = cache_dir() / CACHE_FILE
    body = {k: v for k, v in result.items() if k != "source"}
    doc = {"fingerprint": _fingerprint(topo, body["host_cpus"]), "result": body}
    from shmrss.safe_io import write_text

    return write_text(path, json.dumps(doc, indent=2) + "\n")  # a fresh temporary renamed: no symlink followed


def _load(topo, cpus: list[int]) -> dict | None:
    path = cache_dir() / CACHE_FILE
    try:
        doc = json.loads(path.read_text())
        fingerprint, result = doc["fingerprint"], doc["result"]
        measured = datetime.fromisoformat(result["measured_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("calibration cache {} unusable: {}", path, exc)
        return None
    if fingerprint != _fingerprint(topo, cpus):
        logger.debug("calibration cache {} is from another host or placement", path)
        return None
    if measured.tzinfo is None:
        measured = measured.replace(tzinfo=timezone.utc)
    age = datetime.now(timezone.utc) - measured
    if not timedelta(0) <= age < MAX_AGE:
        logger.debug("calibration cache {} is {} old", path, age)
        return None
    return result


def load_or_measure(topo, cpus: list[int], tsc_per_ns: float) -> dict:
    """The saved calibration if it fits this host and is fresh, else a quick one."""
    cpus = _dedupe(cpus)
    cached = _load(topo, cpus)
    if cached is not None:
        return {**cached, "source": "cached"}
    return {**quick(topo, cpus, tsc_per_ns), "source": "quick"}


# --------------------------------------------------------------------------- display


def render(result: dict) -> "Table":
    """A rich table: one row per scenario, ns/op and the ratio to a plain local add."""
    from rich.table import Table

    scen = result["scenarios"]
    ref = scen.get("local_add", {}).get("ns_per_op", {}).get("median")
    caption = (
        f"host CPUs {', '.join(map(str, result['host_cpus']))}; {result['reps']} reps of "
        f"{result['iters']:,} ops; TSC {result['tsc_per_ns']:.3f}/ns; "
        f"line {result['cache_line']} B; {result.get('source', 'measured')} {result['measured_at']}"
    )
    table = Table(title="calibration (ns per operation)", caption=caption)
    table.add_column("scenario")
    table.add_column("CPUs", justify="right")
    for col in ("min", "median", "max", "× local_add"):
        table.add_column(col, justify="right")
    for name, entry in scen.items():
        if "skipped" in entry:
            table.add_row(name, "-", f"[dim]skipped: {entry['skipped']}[/dim]", "", "", "")
            continue
        ns = entry["ns_per_op"]
        ratio = f"{ns['median'] / ref:.1f}" if ref else "-"
        table.add_row(name, str(entry["cpus"]), f"{ns['min']:.2f}", f"{ns['median']:.2f}",
                      f"{ns['max']:.2f}", ratio)
    return table
