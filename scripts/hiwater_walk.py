"""The read on unmap against P: ns per event of a tape that unmaps often (N faults, then an unmap of
them, one CPU), for tree (HPCC v15: ``get_mm_counter`` is the precise walk of every possible CPU, so each
``update_hiwater_rss`` walks P level-0 counters, three times) and percpu (6.2's
``percpu_counter_read_positive``: one load each), as the possible CPUs grow; one session, interleaved.

    python scripts/hiwater_walk.py [--possible 2,64,512,4096] [--design tree,percpu] [--faults 16]
                                   [--duration 1] [--repeat 1]

Per row: ns per event (median of the repeats, with min and max) and the extra ns per unmap over the
same design at the smallest P: (ns/event(P) - ns/event(P0)) * (N + 1), an unmap every N + 1 events.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _cli_run import run_json


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--possible", type=_ints, default=[2, 64, 512, 4096])
    ap.add_argument("--design", default="tree,percpu")
    ap.add_argument("--faults", type=int, default=16, help="faults between two unmaps")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    n = a.faults
    with tempfile.TemporaryDirectory() as d:
        wl = Path(d) / "unmap-often.json"
        wl.write_text(json.dumps({"name": "unmap-often", "mms": 1,
                                  "tapes": {"t": [["fault", "anon", n], ["unmap", "anon", n]]},
                                  "tasks": [{"mm": 0, "tape": "t", "cpu": 0}]}))
        got: dict[tuple[str, int], list[float]] = {}
        ok: dict[tuple[str, int], bool] = {}
        for _ in range(a.repeat):
            for p in a.possible:
                for design in a.design.split(","):
                    r = run_json(["--design", design, "--workload", str(wl), "--cpus", "1", "--possible-cpus",
                                  str(p), "--duration", str(a.duration), "--no-calibrate"])
                    got.setdefault((design, p), []).append(r["throughput"]["ns_per_event"])
                    ok[(design, p)] = ok.get((design, p), True) and all(r["invariants"].values())
    print(f"| design | P | ns/event min / median / max | extra ns per unmap vs P={a.possible[0]} | invariants |")
    print("|---|---|---|---|---|")
    for design in a.design.split(","):
        base = statistics.median(got[(design, a.possible[0])])
        for p in a.possible:
            v = got[(design, p)]
            med = statistics.median(v)
            print(f"| {design} | {p} | {min(v):.2f} / {med:.2f} / {max(v):.2f} | {(med - base) * (n + 1):.0f} | "
                  f"{'all hold' if ok[(design, p)] else 'FAILED'} |")
    if a.repeat < 3:
        print(f"({a.repeat} run(s) per row: too few for a verdict; compare rows as ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
