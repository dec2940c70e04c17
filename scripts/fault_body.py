"""Real fault work on this host: the cost of a page fault, and the counter's share of a fault event.

Measures, in one session so the figures compare:
  * a real page fault: one process pinned to one CPU maps 128 MiB of private anonymous memory
    (MADV_NOHUGEPAGE), writes one byte per 4 KiB page from compiled code, unmaps it (--repeat times);
  * ``shmrss run --fault-body page`` of percpu and tree on page_fault1, processes and threads modes,
    --repeat times each, the two designs alternating so that drift on a shared host hits both;
  * the same runs with ``--fault-body none`` (the counter alone), once per repetition.
Then checks seed 004's claim (HPCC tree within +/-0.8% of upstream percpu on will-it-scale
page_fault1) from the per-repetition ratios of events/s, and prints a markdown report.

    python scripts/fault_body.py [--duration 3] [--repeat 5] [--modes processes,threads] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import sys
import time
from pathlib import Path

from _cli_run import run_json  # noqa: E402  (this script's folder is on sys.path)

CLAIM_PCT = 0.8  # seed 004: tree within +/-0.8% of percpu on page_fault1
MAP_BYTES = 128 << 20


MIN_REPS = 3  # fewer paired repetitions say nothing about the noise


def verdict(diffs_pct: list[float], noise_pct: float, claim_pct: float = CLAIM_PCT) -> str:
    """The claim "|tree/percpu - 1| <= claim" judged from paired repetitions (tree/percpu - 1, in %) and the
    run-to-run noise (the larger relative range, in %, of either design's own repetitions): it agrees when
    every repetition lies within the claim; it disagrees when every repetition lies beyond it on the same
    side and the median difference exceeds the claim by more than the noise; otherwise, or with fewer than
    MIN_REPS repetitions, it cannot tell."""
    if len(diffs_pct) < MIN_REPS:
        return "cannot tell"
    if all(abs(d) <= claim_pct for d in diffs_pct):
        return "agree"
    one_side = all(d > claim_pct for d in diffs_pct) or all(d < -claim_pct for d in diffs_pct)
    if one_side and abs(statistics.median(diffs_pct)) > claim_pct + noise_pct:
        return "disagree"
    return "cannot tell"


def noise(*runs: list[float]) -> float:
    """The larger relative range, in %, of the designs' own repetitions."""
    return max(100 * (max(v) - min(v)) / statistics.median(v) for v in runs)


def page_fault_cost(cpu: int, repeat: int) -> dict:
    """ns per 4 KiB page: touch (the fault) and munmap, one pinned process, 128 MiB per pass."""
    from numba import njit

    from shmrss.faultbody import PAGE, _touch

    @njit
    def touch_all(addr, pages):
        for i in range(pages):
            _touch(addr + i * PAGE)

    import numpy as np

    os.sched_setaffinity(0, {cpu})
    pages = MAP_BYTES // PAGE
    touch_ns, unmap_ns = [], []
    for i in range(repeat + 1):
        m = mmap.mmap(-1, MAP_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        view = np.frombuffer(m, dtype=np.uint8)
        addr = view.ctypes.data
        t0 = time.perf_counter_ns()
        touch_all(addr, pages)
        t1 = time.perf_counter_ns()
        del view
        m.close()
        t2 = time.perf_counter_ns()
        if i:  # the first pass compiles
            touch_ns.append((t1 - t0) / pages)
            unmap_ns.append((t2 - t1) / pages)
    both = [a + b for a, b in zip(touch_ns, unmap_ns)]
    return {"cpu": cpu, "touch_ns": touch_ns, "unmap_ns": unmap_ns, "fault_ns": both}


def spread(xs: list[float], spec: str = ".1f") -> str:
    return f"{min(xs):{spec}} / {statistics.median(xs):{spec}} / {max(xs):{spec}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--modes", default="processes,threads", help="comma list of the modes to run (a smoke test: one)")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()
    a.modes = [m for m in a.modes.split(",") if m]
    if not a.modes or set(a.modes) - {"processes", "threads"}:
        ap.error("--modes: a comma list of processes, threads")
    from shmrss.topology import read_topology

    topo = read_topology()
    cost = page_fault_cost(topo.physical_cpus()[0], a.repeat)
    os.sched_setaffinity(0, set(topo.usable))
    runs: dict[str, list[dict]] = {}
    for rep in range(a.repeat):
        print(f"repetition {rep + 1}/{a.repeat}", file=sys.stderr)
        for mode in a.modes:
            order = ("percpu", "tree") if rep % 2 == 0 else ("tree", "percpu")
            for body in ("page", "none"):
                for d in order:
                    r = run_json(["--design", d, "--mode", mode, "--fault-body", body,
                                  "--duration", str(a.duration), "--no-calibrate"])
                    if not all(r["invariants"].values()):
                        raise SystemExit(f"{d} {mode} {body}: invariants failed: {r['invariants']}")
                    runs.setdefault(f"{d} {mode} {body}", []).append(r)
    report(topo, cost, runs, a)
    if a.json:
        slim = {k: [{"throughput": {x: r["throughput"][x] for x in ("events_per_s", "ns_per_event", "fault_body")},
                     "params": r["params"]} for r in v] for k, v in runs.items()}
        Path(a.json).write_text(json.dumps({"page_fault_cost": cost, "runs": slim}, indent=1))
    return 0


def report(topo, cost: dict, runs: dict[str, list[dict]], a) -> None:
    print(f"host: {topo.model}, kernel {os.uname().release}; {a.repeat} repetitions of {a.duration} s; "
          f"min / median / max over repetitions\n")
    print(f"real page fault, one process pinned to CPU {cost['cpu']}, 128 MiB mapped, touched, unmapped:")
    print(f"touch {spread(cost['touch_ns'])} ns/page, munmap {spread(cost['unmap_ns'])} ns/page, "
          f"together {spread(cost['fault_ns'])} ns/page\n")
    print("| design | mode | ns/event whole (page) | counter ns/event (page) | fault body ns/event | "
          "counter share % | ns/event with --fault-body none (the emulated event alone) | M events/s (page) |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in a.modes:
        for d in ("percpu", "tree"):
            page, none = runs[f"{d} {mode} page"], runs[f"{d} {mode} none"]
            fb = [r["throughput"]["fault_body"] for r in page]
            print(f"| {d} | {mode} | {spread([f['event_ns'] for f in fb])} | "
                  f"{spread([f['counter_ns_per_event'] for f in fb], '.2f')} | "
                  f"{spread([f['body_ns_per_event'] for f in fb])} | "
                  f"{spread([100 * f['counter_share'] for f in fb], '.3f')} | "
                  f"{spread([r['throughput']['ns_per_event'] for r in none], '.2f')} | "
                  f"{spread([r['throughput']['events_per_s'] / 1e6 for r in page], '.4f')} |")
    print(f"\nseed 004's claim: tree within +/-{CLAIM_PCT}% of percpu on page_fault1 (events/s, "
          f"--fault-body page; per repetition, tree / percpu - 1):\n")
    print("| mode | tree vs percpu, % (each repetition) | median | run-to-run noise, % (larger of the two "
          "designs) | verdict |")
    print("|---|---|---|---|---|")
    for mode in a.modes:
        t = [r["throughput"]["events_per_s"] for r in runs[f"tree {mode} page"]]
        p = [r["throughput"]["events_per_s"] for r in runs[f"percpu {mode} page"]]
        diffs = [100 * (x / y - 1) for x, y in zip(t, p)]
        print(f"| {mode} | {', '.join(f'{d:+.2f}' for d in diffs)} | {statistics.median(diffs):+.2f} | "
              f"{noise(p, t):.2f} | {verdict(diffs, noise(p, t))} |")


if __name__ == "__main__":
    sys.exit(main())
