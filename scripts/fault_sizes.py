"""Mid-sized faults: slow-path rate, lock spins and ns per page of percpu, tree and pernode as the
pages per fault grow (1; 16: fault-around or a 64 KiB mTHP; 512: a 2 MiB THP), in one session so
the figures compare as ratios.

    python scripts/fault_sizes.py [--sizes 1,16,512] [--design percpu,tree,pernode] [--mode threads]
                                  [--duration 1] [--repeat 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _cli_run import run_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,16,512")
    ap.add_argument("--design", default="percpu,tree,pernode")
    ap.add_argument("--mode", default="threads", choices=("threads", "processes"))
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", help="write every result here")
    a = ap.parse_args()
    rows: dict[tuple[str, str], list[dict]] = {}
    everything = []
    for rep in range(a.repeat):
        for size in a.sizes.split(","):
            print(f"repetition {rep + 1}/{a.repeat}: {size} pages per fault ...", file=sys.stderr)
            results = run_json(["--design", a.design, "--workload", "page_fault1", "--mode", a.mode,
                                "--fault-pages", size, "--duration", str(a.duration), "--no-calibrate"])
            results = results if isinstance(results, list) else [results]
            everything += results
            for r in results:
                rows.setdefault((r["design"], size), []).append(r)
    print(f"| design | pages/fault | slow paths per fault | lock spins per fault | ns per fault | ns per page | "
          f"invariants |")
    print("|---|---|---|---|---|---|---|")
    for (design, size), rs in rows.items():
        def med(f):
            return statistics.median(f(r) for r in rs)

        faults = lambda r: max(r["throughput"]["fault_pages"] // int(size), 1)  # noqa: E731
        ok = all(all(r["invariants"].values()) for r in rs)
        print(f"| {design} | {size} | {med(lambda r: r['throughput']['slow_paths'] / faults(r)):.4f} | "
              f"{med(lambda r: r['throughput']['lock_spins'] / faults(r)):.4f} | "
              f"{med(lambda r: r['throughput']['ns_per_event']):.2f} | {med(lambda r: r['throughput']['ns_per_page']):.3f} | "
              f"{'all hold' if ok else 'FAILED'} |")
    if a.json:
        Path(a.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
