"""PNG plots of results: lifecycle rate vs possible CPUs, read latency vs possible CPUs, OOM latency vs mms,
events/s per design. Each figure names the host it ran on and carries the runs' warnings."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def host_description(host: dict) -> str:
    """The host topology in one line: CPU model, cores, SMT, NUMA nodes, LLCs, cache line, kernel."""
    t = host.get("topology") or {}
    cores, usable = t.get("cores") or [], t.get("usable") or []
    nodes, llcs = len(t.get("numa_nodes") or []), len(t.get("llc_groups") or [])
    return (f"{t.get('model') or 'unknown CPU'}, {len(cores)} cores / {len(usable)} usable CPUs, "
            f"SMT {'on' if t.get('smt_active') else 'off'}, {nodes} NUMA node{'s' if nodes != 1 else ''}, "
            f"{llcs} LLC{'s' if llcs != 1 else ''}, {host.get('cache_line', '?')} B lines, "
            f"kernel {host.get('kernel', '?')}")


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


def save_png(fig, out: Path, name: str) -> Path:
    """Drawn in memory, then written by safe_io (a temporary renamed over the file: no symlink followed)."""
    import io

    from shmrss.safe_io import write_bytes

    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format="png")
    finally:
        plt.close(fig)
    return write_bytes(out / name, buf.getvalue())


def _lines(results, key_of, x_of, y_of, title, xlabel, ylabel, out, name, logx=True, logy=False,
           panel_of=lambda r: ""):
    """One line per key, one panel per panel_of value (e.g. the number of mms)."""
    panels = defaultdict(lambda: defaultdict(list))
    for r in results:
        y = y_of(r)
        if y is not None:
            panels[panel_of(r)][key_of(r)].append((x_of(r), y))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 2, 5.2), squeeze=False, sharey=True)
    fig.subplots_adjust(bottom=0.22, right=0.82 if len(panels) > 1 else 0.78)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for key, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"{title}{': ' + panel if panel else ''}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _footer(fig, results)
    return save_png(fig, out, name)


def _variant(r: dict) -> str:
    """A fork/exit result's line: its variant, coarse with its group size (one line per --coarse-group)."""
    g = r["params"].get("coarse_group")
    return r["params"]["lifecycle"] + (f"/{g}" if g else "")


def draw(results: list[dict], directory: str) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    life = [r for r in results if "lifecycle" in r]
    runs = [r for r in results if "throughput" in r]
    oom = [r for r in runs if r.get("oom")]
    if life:
        made.append(_lines(life, _variant, lambda r: r["params"]["possible_cpus"],
                           lambda r: r["lifecycle"]["mm_per_s"], "mm lifecycles per second vs possible CPUs",
                           "possible CPUs (P)", "mm create+destroy per second (all CPUs)", out,
                           "lifecycle_vs_possible.png", logy=True))
    if runs and len({r["params"]["possible_cpus"] for r in runs}) > 1:
        made.append(_lines(runs, lambda r: r["design"], lambda r: r["params"]["possible_cpus"],
                           lambda r: r["reads"]["precise_latency_ns"]["median"],
                           "precise read latency vs P", "possible CPUs (P)", "median ns per read", out,
                           "precise_read_vs_possible.png", logy=True, panel_of=lambda r: f"{r['params']['mms']} mms"))
    if oom:
        # each result carries both methods: one line per design and method
        both = [dict(r, _method=m) for r in oom for m in ("two_pass", "precise")]
        made.append(_lines(both, lambda r: f"{r['design']} {'2-pass' if r['_method'] == 'two_pass' else 'all precise'}",
                           lambda r: r["params"]["mms"], lambda r: r["oom"][f"{r['_method']}_latency_ns"]["median"],
                           "OOM victim selection latency", "mms", "median ns per selection", out,
                           "oom_latency_vs_mms.png", logy=True,
                           panel_of=lambda r: f"P={r['params']['possible_cpus']}"))
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
        made.append(save_png(fig, out, "events_per_s.png"))
    return [m for m in made if m is not None]
