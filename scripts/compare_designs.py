"""Every design on the workloads of the debate, in one session: the README's comparison table.

Runs ``shmrss run --design all`` on page_fault1 (processes and threads, 1 CPU
and all cores), rss_steal and mixed, and prints one markdown table: ns/event,
events/s, approximate error max vs bound (and the smallest approximate/truth
ratio), precise read latency, mm switches/s and pcpcache's hit rate.

    python scripts/compare_designs.py [--duration 3] [--rss-tasks 10000] [--json out.json] [--quick]

``--quick``: the first workload only (a smoke test of the script, as tests/test_docs_commands.py runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _cli_run import run_json


def fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rss-tasks", type=int, default=10_000)
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--quick", action="store_true", help="the first workload only (a smoke test)")
    a = ap.parse_args()

    from shmrss.topology import read_topology

    topo = read_topology()
    n = len(topo.physical_cpus())
    configs = [
        ("page_fault1 processes, 1 CPU", ["--workload", "page_fault1", "--cpus", "1"]),
        (f"page_fault1 processes, {n} CPUs", ["--workload", "page_fault1"]),
        ("page_fault1 threads, 1 CPU", ["--workload", "page_fault1", "--mode", "threads", "--cpus", "1"]),
        (f"page_fault1 threads, {n} CPUs", ["--workload", "page_fault1", "--mode", "threads"]),
        (f"rss_steal {a.rss_tasks} threads, {n} CPUs", ["--workload", "rss_steal", "--tasks", str(a.rss_tasks)]),
        (f"mixed + reclaimer, {n} CPUs", ["--workload", "mixed"]),
    ]
    configs = configs[:1] if a.quick else configs
    everything = {}
    print(f"host: {topo.model}, {n} physical cores, line {topo.cache_line} B; {a.duration} s per design\n")
    print("| workload | design | ns/event | M events/s | approx err max / bound | min approx/truth "
          "| precise read ns med / p99 | switches/s | hit rate | invariants |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, args in configs:
        print(f"running {name} ...", file=sys.stderr)
        results = run_json(["--design", "all", "--duration", str(a.duration), *args])
        everything[name] = results
        for r in results:
            th, acc, rd = r["throughput"], r["accuracy"], r["reads"]
            ok = all(r["invariants"].values())
            print(f"| {name} | {r['design']} | {fmt(th['ns_per_event'], '.2f')} | {th['events_per_s'] / 1e6:.1f} "
                  f"| {acc['approx_max_abs_error']:,} / {acc['approx_bound']:,} "
                  f"| {fmt(acc['approx_min_ratio_to_truth'], '.3f')} "
                  f"| {fmt(rd['precise_latency_ns']['median'], '.0f')} / {fmt(rd['precise_latency_ns']['p99'], '.0f')} "
                  f"| {th['switches_per_s']:,.0f} | {fmt(th['hit_rate'], '.4f')} "
                  f"| {'all hold' if ok else 'FAILED'} |")
    if a.json:
        Path(a.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
