"""PNG plots of results: lifecycle rate vs possible CPUs, read latency vs possible CPUs, OOM latency vs mms,
events/s per design. Each figure names the host it ran on and carries the runs' warnings."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _host_line(r: dict) -> str:
    t = r["host"]["topology"]
    return (f"host: {t.get('model') or 'unknown CPU'}, {len(t['cores'])} cores used of {len(t['usable'])} usable, "
            f"line {r['host']['cache_line']} B, kernel {r['host']['kernel']}")


def _footer(fig, results: list[dict]) -> None:
    warnings = []
    for r in results:
        for w in r.get("warnings", []):
            if w not in warnings:
                warnings.append(w)
    text = _host_line(results[0])
    if warnings:
        text += "\nwarnings: " + "; ".join(w[:90] for w in warnings[:3])
    fig.text(0.01, 0.01, text, fontsize=7, va="bottom", wrap=True)


def _save(fig, out: Path, name: str) -> Path:
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lines(results, key_of, x_of, y_of, title, xlabel, ylabel, out, name, logx=True, logy=False):
    series = defaultdict(list)
    for r in results:
        y = y_of(r)
        if y is not None:
            series[key_of(r)].append((x_of(r), y))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.2))
    fig.subplots_adjust(bottom=0.2)
    for key, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _footer(fig, results)
    return _save(fig, out, name)


def draw(results: list[dict], directory: str) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    life = [r for r in results if "lifecycle" in r]
    runs = [r for r in results if "throughput" in r]
    oom = [r for r in runs if r.get("oom")]
    if life:
        made.append(_lines(life, lambda r: r["params"]["lifecycle"], lambda r: r["params"]["possible_cpus"],
                           lambda r: r["lifecycle"]["mm_per_s"], "mm lifecycles per second vs possible CPUs",
                           "possible CPUs (P)", "mm create+destroy per second (all CPUs)", out,
                           "lifecycle_vs_possible.png", logy=True))
    if runs and len({r["params"]["possible_cpus"] for r in runs}) > 1:
        many = len({r["params"]["mms"] for r in runs}) > 1
        made.append(_lines(runs, lambda r: r["design"] + (f" ({r['params']['mms']} mms)" if many else ""),
                           lambda r: r["params"]["possible_cpus"],
                           lambda r: r["reads"]["precise_latency_ns"]["median"],
                           "precise read latency vs possible CPUs", "possible CPUs (P)", "median ns per read", out,
                           "precise_read_vs_possible.png", logy=True))
    if oom:
        made.append(_lines(oom, lambda r: f"{r['design']} 2-pass", lambda r: r["params"]["mms"],
                           lambda r: r["oom"]["two_pass_latency_ns"]["median"], "OOM victim selection latency",
                           "mms", "median ns per selection", out, "oom_latency_vs_mms.png", logy=True))
    if runs:
        fig, ax = plt.subplots(figsize=(8, 5.2))
        fig.subplots_adjust(bottom=0.28)
        labels = [f"{r['design']}\n{r['workload']}" + (f"\nP={r['params']['possible_cpus']}"
                                                       if len(runs) > 8 else "") for r in runs]
        ax.bar(range(len(runs)), [r["throughput"]["events_per_s"] / 1e6 for r in runs])
        ax.set_xticks(range(len(runs)), labels, fontsize=7)
        ax.set_ylabel("M events/s (all CPUs)")
        ax.set_title("throughput per design")
        ax.grid(True, axis="y", alpha=0.3)
        _footer(fig, runs)
        made.append(_save(fig, out, "events_per_s.png"))
    return [m for m in made if m is not None]
