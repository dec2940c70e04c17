"""fork/exit at both CPU axes: what creating and destroying an mm's counters costs as the possible
CPUs (P) and the online CPUs vary. Allocation and mm_init_cid walk P; upstream's check_mm sums
(and fused-check's loop) walk the online CPUs; HPCC's (inline) walk P (docs/walks.md).

    python scripts/fork_exit_axes.py [--possible 64,512] [--online cpus,P]
                                     [--lifecycle upstream,fused-check,inline] [--duration 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _cli_run import run_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--possible", default="64,512")
    ap.add_argument("--online", default="cpus,P", help="comma list of cpus, P or a number")
    ap.add_argument("--lifecycle", default="upstream,fused-check,inline")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--json", help="write every result here")
    a = ap.parse_args()
    from shmrss.topology import read_topology

    ncpu = len(read_topology().physical_cpus())
    everything = []
    print("| variant | P | online | mm/s | init ns/mm | teardown ns/mm | invariants |")
    print("|---|---|---|---|---|---|---|")
    for p in a.possible.split(","):
        for on in dict.fromkeys(a.online.split(",")):
            online = [] if on == "P" else ["--online-cpus", str(ncpu) if on == "cpus" else on]
            print(f"running P = {p}, online {on} ...", file=sys.stderr)
            results = run_json(["--workload", "fork_exit", "--lifecycle", a.lifecycle, "--possible-cpus", p,
                                *online, "--duration", str(a.duration), "--no-calibrate"])
            results = results if isinstance(results, list) else [results]
            everything += results
            for r in results:
                lc, pa = r["lifecycle"], r["params"]
                ok = all(r["invariants"].values())
                print(f"| {pa['lifecycle']} | {pa['possible_cpus']} | {pa['online_cpus']} | {lc['mm_per_s']:,.0f} | "
                      f"{lc['init_ns_per_mm']:,.0f} | {lc['teardown_ns_per_mm']:,.0f} | "
                      f"{'all hold' if ok else 'FAILED'} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
