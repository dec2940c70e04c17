"""Benchmark of the engine itself: is shmrss measuring the hardware, not Python?

Runs, in one session so the figures compare as ratios:
  * a C loop doing the engine's per-event work for percpu (scripts/engine_baseline.c),
    pinned to one CPU, against ``shmrss run --design percpu --cpus 1``;
  * atomic in threads mode on 1 and on all CPUs (the contended ``lock xadd``);
  * percpu in threads and processes mode on all CPUs, aligned and ``--pack``ed
    (false sharing), against 1 CPU;
  * start-up time (fork to every CPU at the barrier) with numba's cache warm.
Each configuration is repeated (--repeat, default 3); the table gives
min / median / max ns per event and the ratios of medians.

    python scripts/bench_engine.py [--duration 2] [--repeat 3] [--json out.json] [--before DIR]

``--before DIR``: another checkout of shmrss (e.g. ``git archive`` of the previous commit);
each configuration also runs from it, interleaved with this one, and the table adds its
ns/event and the ratio now / before: a change's cost measured in one session.
``--quick``: the first configuration and a short C loop only (a smoke test of the script, as
tests/test_docs_commands.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _cli_run import run_json  # noqa: E402  (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent


def c_baseline(cpu: int, events: int) -> float | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = Path(tempfile.gettempdir()) / f"shmrss-engine-baseline-{os.getuid()}"
    subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "engine_baseline.c")], check=True)
    out = subprocess.run([str(exe), str(events)], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    return float(out.stdout.strip())


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--before", metavar="DIR", help="also run every configuration from this shmrss checkout")
    ap.add_argument("--designs", default="", metavar="LIST",
                    help="also each of these designs (or all) in processes mode on 1 CPU: a change's cost per design")
    ap.add_argument("--quick", action="store_true", help="the first configuration and a short C loop only (a smoke test)")
    a = ap.parse_args()

    from shmrss.topology import read_topology

    topo = read_topology()
    ncpu = len(topo.physical_cpus())
    one_p, one_t, one_a = "percpu processes 1 CPU", "percpu threads 1 CPU", "atomic threads 1 CPU"
    # name -> (options, the configuration it is compared with; None: the C loop)
    configs = {
        one_p: (["--design", "percpu", "--cpus", "1"], None),
        f"percpu processes {ncpu} CPUs": (["--design", "percpu"], one_p),
        f"percpu processes {ncpu} CPUs --pack": (["--design", "percpu", "--pack"], one_p),
        one_t: (["--design", "percpu", "--mode", "threads", "--cpus", "1"], one_p),
        f"percpu threads {ncpu} CPUs": (["--design", "percpu", "--mode", "threads"], one_t),
        f"percpu threads {ncpu} CPUs --pack": (["--design", "percpu", "--mode", "threads", "--pack"], one_t),
        one_a: (["--design", "atomic", "--mode", "threads", "--cpus", "1"], one_p),
        f"atomic threads {ncpu} CPUs": (["--design", "atomic", "--mode", "threads"], one_a),
    }
    if a.quick:
        configs = dict(list(configs.items())[:1])
    from shmrss import designs as known

    for d in (known.DESIGNS if a.designs == "all" else [x for x in a.designs.split(",") if x]):
        if d != "percpu" and (not a.before or (Path(a.before) / "shmrss" / "designs" / f"{known.module_name(d)}.py").exists()):
            configs[f"{d} processes 1 CPU"] = (["--design", d, "--cpus", "1"], one_p)
    ns: dict[str, list[float]] = {k: [] for k in configs}
    before: dict[str, list[float]] = {k: [] for k in configs}
    startup: list[float] = []
    c_ns: list[float] = []
    calib = None
    for rep in range(a.repeat):
        print(f"repetition {rep + 1}/{a.repeat}", file=sys.stderr)
        c = c_baseline(topo.physical_cpus()[0], 3_000_000 if a.quick else 300_000_000)
        if c is not None:
            c_ns.append(c)
        for name, (args, _) in configs.items():
            if a.before:
                rb = run_json(["--duration", str(a.duration), *args], source=a.before)
                before[name].append(rb["throughput"]["ns_per_event"])
            r = run_json(["--duration", str(a.duration), *args])
            ns[name].append(r["throughput"]["ns_per_event"])
            startup.append(r["throughput"]["startup_s"])
            calib = r.get("calibration") or calib
            if not all(r["invariants"].values()):
                raise SystemExit(f"{name}: invariants failed: {r['invariants']}")

    med = {k: statistics.median(v) for k, v in ns.items()}
    print(f"host: {topo.model}, {ncpu} physical cores used, cache line {topo.cache_line} B, "
          f"kernel {os.uname().release}; {a.repeat} repetitions of {a.duration} s\n")
    print("| configuration | ns/event min / median / max | compared with | ratio of medians |")
    print("|---|---|---|---|")
    c_med = statistics.median(c_ns) if c_ns else None
    if c_ns:
        print(f"| C loop, same per-event work (percpu, 1 CPU) | {spread(c_ns)} | | |")
    for k, (_, ref) in configs.items():
        ref_v = c_med if ref is None else med[ref]
        ratio = "-" if ref_v is None else f"{med[k] / ref_v:.2f}"
        print(f"| {k} | {spread(ns[k])} | {ref or 'C loop'} | {ratio} |")
    if a.before:
        print(f"\n| configuration | ns/event now min / median / max | before ({a.before}) | now / before |")
        print("|---|---|---|---|")
        for k in configs:
            print(f"| {k} | {spread(ns[k])} | {spread(before[k])} | "
                  f"{statistics.median(ns[k]) / statistics.median(before[k]):.3f} |")
    print(f"\nstart-up (fork to every CPU at the barrier): {spread(startup)} s")
    if calib:
        sc = calib["scenarios"]
        parts = [f"{n} {s['ns_per_op']['median']:.2f}" for n, s in sc.items() if "ns_per_op" in s]
        print("calibration ns/op (median): " + ", ".join(parts))
    if a.json:
        Path(a.json).write_text(json.dumps({"ns_per_event": ns, "before": before if a.before else None, "c_loop": c_ns, "startup_s": startup,
                                            "calibration": calib, "topology": topo.to_dict()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
