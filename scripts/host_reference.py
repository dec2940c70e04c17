"""The host kernel as a reference (issue 20): repeated ``--host-reference`` runs of percpu on page_fault1, per
mode; the table of each run, a figure of both error histograms, and the verdict on the claim "the emulated
percpu's approximate error matches the host kernel's own".

    python scripts/host_reference.py [--repeat 5] [--duration 3] [--figure docs/figures/host-reference.png]

``scripts/reproduce.py`` runs the same experiment (``host_kernel``) for docs/findings.md. Each run's verdict is
``shmrss.host_reference_stats.verdict`` (KS D <= 0.15 agree, >= 0.30 differ). The claim's rule, fixed before
the runs: per mode, *agree* when at least MIN_RUNS runs were made and more than two thirds of them agree;
*disagree* when more than two thirds differ; otherwise *cannot tell*.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _cli_run import run_json

ROOT = Path(__file__).resolve().parent.parent
MODES = ("threads", "processes")
MIN_RUNS = 3
HEADER = ["mode", "run", "rounds", "host stat reads judged", "barrier residue", "offset",
          "host stat p1 / median / p99", "emulated approximate p1 / median / p99", "KS D", "D before the residue",
          "verdict"]


def args_for(mode: str, duration: float) -> list[str]:
    return ["--design", "percpu", "--workload", "page_fault1", "--mode", mode, "--cpus", "2", "--fault-body",
            "page", "--host-reference", "--duration", str(duration)]


def row(mode: str, i: int, r: dict) -> list[str]:
    """One run's line of the table (errors in pages, host quantiles after the offset and residue)."""
    h = r["host_reference"]
    c, s = h["comparison"], h["host"]["stat"]
    q = c.get("quantiles_host_emulated") or {}
    pq = lambda side: " / ".join(f"{q[k][side]:g}" for k in ("p1", "p50", "p99")) if q else "-"  # noqa: E731
    d = f"{c['ks_d']:.3f}" if "ks_d" in c else "-"
    d0 = c.get("uncorrected", {}).get("ks_d")
    res = h["barrier_residue_pages"]
    return [mode, str(i), str(h["rounds"]), f"{s['count']} ({s['wide_windows']} wide)",
            f"{sum(res):+d} ({', '.join(map(str, res))})", f"{h['offset_pages']:g}", pq(0), pq(1), d,
            "-" if d0 is None else f"{d0:.3f}", c["verdict"]]


def claim_verdict(verdicts: list[str]) -> str:
    """The rule stated in the module docstring, over one mode's runs."""
    n = len(verdicts)
    if n < MIN_RUNS:
        return "cannot tell (too few runs)"
    if 3 * verdicts.count("agree") > 2 * n:
        return "agree"
    if 3 * verdicts.count("differ") > 2 * n:
        return "disagree"
    return "cannot tell"


def figure(results: dict[str, list[dict]], path: Path) -> Path:
    """Both error histograms (host stat, emulated approximate), pooled over each mode's runs, one panel a mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.6), squeeze=False)
    for ax, (mode, runs) in zip(axes[0], results.items()):
        for side, label in (("host_errors", "host kernel: /proc/PID/stat"), ("emulated_errors", "emulated percpu")):
            counts: dict[int, int] = {}
            for r in runs:
                hist = (r["host_reference"]["comparison"].get(side) or {}).get("histogram")
                for lo, n in zip(hist["lower_edges"], hist["counts"]) if hist else ():
                    counts[lo] = counts.get(lo, 0) + n
            xs = sorted(counts)
            total = sum(counts.values()) or 1
            ax.step(xs, [counts[x] / total for x in xs], where="post", label=label)
        ax.set_title(f"percpu, page_fault1 {mode}, 2 CPUs (batch 32)")
        ax.set_xlabel("approximate read error, pages")
        ax.set_ylabel("share of reads")
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def measure(repeat: int, duration: float, run=run_json) -> dict[str, list[dict]]:
    """``repeat`` runs per mode, the modes alternating so that drift on a shared host hits both."""
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(repeat):
        for mode in MODES:
            results[mode].append(run([*args_for(mode, duration), "--no-calibrate"]))
    return results


def markdown(results: dict[str, list[dict]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for mode, runs in results.items():
        lines += ["| " + " | ".join(row(mode, i, r)) + " |" for i, r in enumerate(runs, 1)]
    for mode, runs in results.items():
        v = [r["host_reference"]["comparison"]["verdict"] for r in runs]
        lines.append(f"\n{mode}: runs {', '.join(v)}; claim: {claim_verdict(v)}")
        kinds = {f: [r["host_reference"]["host"][f]["measured"] for r in runs] for f in ("statm", "status", "stat")}
        lines.append("measured: " + "; ".join(f"{f} {', '.join(sorted(set(k)))} ({len(k)} runs)"
                                              for f, k in kinds.items()))
        errs = [r["host_reference"]["comparison"].get("host_errors", {}) for r in runs]
        lines.append(f"host stat errors compared: min {min(e.get('min', 0) for e in errs)}, "
                     f"max {max(e.get('max', 0) for e in errs)}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "host-reference.png"))
    ap.add_argument("--raw", help="also write every run's JSON result here")
    a = ap.parse_args()
    results = measure(a.repeat, a.duration)
    if a.raw:
        Path(a.raw).write_text(json.dumps(results) + "\n")
    print(markdown(results))
    print(f"wrote {figure(results, Path(a.figure))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
