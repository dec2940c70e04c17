"""The reader at scale: latency of approximate and precise reads of every design as the possible
CPUs (P), the online CPUs and the number of mms grow, while the CPUs keep updating (the reader
pulls lines the writers own).

    python scripts/read_scale.py [--possible 2,64,512,4096] [--online cpus,P] [--mms 2,100,1000]
                                 [--duration 1] [--plot DIR]

``--online``: the online CPUs of each run, ``cpus`` (only the CPUs that run are online), ``P``
(every possible CPU is online, the default) or a number; upstream's precise sum walks the
online CPUs, HPCC's the possible ones (docs/walks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _cli_run import run_json


def _cpus() -> int:
    from shmrss.topology import read_topology

    return len(read_topology().physical_cpus())


def _row(mms: int, r: dict) -> None:
    rd = r["reads"]
    ap_, pr = rd["approx_latency_ns"], rd["precise_latency_ns"]
    ok = all(r["invariants"].values())
    pa = r["params"]
    print(f"| {mms} | {pa['possible_cpus']} | {pa['online_cpus']} | {r['design']} | {ap_['median']:.0f} / "
          f"{ap_['p99']:.0f} | {pr['median']:.0f} / {pr['p99']:.0f} | {rd['precise_count']} | "
          f"{'all hold' if ok else 'FAILED'} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--possible", default="2,64,512,4096")
    ap.add_argument("--online", default="P", help="comma list of cpus, P or a number (default P)")
    ap.add_argument("--mms", default="2,100,1000")
    ap.add_argument("--design", default="all")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--plot", help="draw precise read latency vs P into this directory")
    ap.add_argument("--json", help="write every result here")
    a = ap.parse_args()
    everything = []
    print("| mms | P | online | design | approx read ns med / p99 | precise read ns med / p99 | reads | invariants |")
    print("|---|---|---|---|---|---|---|---|")
    for mms in [int(x) for x in a.mms.split(",")]:
        for p in a.possible.split(","):
            for on in dict.fromkeys(a.online.split(",")):
                online = [] if on == "P" else ["--online-cpus", str(_cpus()) if on == "cpus" else on]
                print(f"running {mms} mms at P = {p}, online {on} ...", file=sys.stderr)
                results = run_json(["--design", a.design, "--workload", "page_fault1", "--tasks", str(mms),
                                    "--possible-cpus", p, *online, "--duration", str(a.duration)])
                results = results if isinstance(results, list) else [results]
                everything += results
                for r in results:
                    _row(mms, r)
    if a.json:
        Path(a.json).write_text(json.dumps(everything, indent=1))
    if a.plot:
        from shmrss import plots

        for path in plots.draw(everything, a.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
