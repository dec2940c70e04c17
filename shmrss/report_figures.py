"""The report's PNG figures: events/s and ns/event vs CPUs (will-it-scale's scaling curve), approximate
error vs bound, read latency vs possible CPUs, fork/exit rate vs possible CPUs, OOM selection latency vs mms.

Each point is the median across repeats with an error bar from min to max.
Every figure is titled with the host topology and carries, as a footnote, the
deduplicated warnings of the runs it draws and, in red, any failed invariant
(also a red X on the point). Panels are stacked one per row, each with its
legend on its right. A figure the data cannot draw is skipped with the reason;
panels left out of a figure are named in a note.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path

from shmrss.plots import host_description, save_png  # importing shmrss.plots selects the Agg backend
from shmrss.report_data import KIND_LIFECYCLE, KIND_RUN, Group, dedup_warnings, invariant_failures
from shmrss.results_file import canonical

import matplotlib.pyplot as plt  # noqa: E402  (after shmrss.plots chose the backend)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

_LINE_IN = 0.15  # inches per footnote line at fontsize 7
_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")
Outcome = tuple[Path | None, str | None]  # (the PNG, or None) and a note: why it was skipped, or what was left out


def _color(name: str):
    from shmrss.designs import DESIGNS
    from shmrss.lifecycle import VARIANTS

    cmap = plt.get_cmap("tab10")
    if name in DESIGNS:
        return cmap(DESIGNS.index(name))
    if name in VARIANTS:
        return cmap((VARIANTS.index(name) + 3) % 10)
    return cmap(sum(map(ord, str(name))) % 10)


def _results(groups: list[Group]) -> list[dict]:
    return [r for g in groups for r in g.results]


def _hosts(results: list[dict]) -> str:
    descs = list(dict.fromkeys(host_description(r["host"]) for r in results if "host" in r))
    if len(descs) <= 1:
        return "host: " + (descs[0] if descs else "unknown")
    return f"{len(descs)} hosts: " + " | ".join(descs)


def _figure(nrows: int, ncols: int, title: str, results: list[dict], panel_w: float = 7.0,
            panel_h: float = 3.6, legend_w: float = 2.8):
    """Panels in a grid, the title and host on top, failed invariants and warnings at the bottom."""
    w = panel_w * ncols + legend_w + 1.0
    wrap = int(w * 15)  # monospace characters per line at 7 pt
    failed = [ln for x in invariant_failures(results)
              for ln in textwrap.wrap(f"INVARIANT FAILED: {x}", wrap, subsequent_indent="    ")]
    warns = [ln for w_, k in dedup_warnings(results)
             for ln in textwrap.wrap(f"warning ({k} of {len(results)} runs): {w_}", wrap, subsequent_indent="    ")]
    head = textwrap.wrap(title, int(w * 11)) + textwrap.wrap(_hosts(results), int(w * 11))
    title_in, axis_in, gap_in = 0.2 * len(head) + 0.35, 0.6, 0.75
    foot_in = _LINE_IN * (len(failed) + len(warns)) + 0.2
    h = title_in + nrows * panel_h + (nrows - 1) * gap_in + axis_in + foot_in
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)
    fig.subplots_adjust(left=1.25 / w, right=1 - legend_w / w, top=1 - title_in / h,
                        bottom=(axis_in + foot_in) / h, hspace=gap_in / panel_h, wspace=0.25)
    fig.suptitle("\n".join(head), fontsize=10, y=1 - 0.08 / h, va="top")
    y = 0.08 / h
    for ln, red in [(x, False) for x in reversed(warns)] + [(x, True) for x in reversed(failed)]:
        fig.text(0.01, y, ln, fontsize=7, va="bottom", family="monospace",
                 color="red" if red else "black", weight="bold" if red else "normal")
        y += _LINE_IN / h
    return fig, axes



# ------------------------------------------------------------------ series, labels, axes

def _ptag(g: Group):
    """Possible CPUs, or "=cpus" when they follow the CPU count (the default)."""
    return "=cpus" if g.key.get("possible_cpus") == g.key.get("cpus") else g.key.get("possible_cpus")


def _order(k: dict):
    from shmrss.designs import DESIGNS
    from shmrss.lifecycle import VARIANTS

    d, v = k.get("design"), k.get("lifecycle")
    return (VARIANTS.index(v) if v in VARIANTS else -1, DESIGNS.index(d) if d in DESIGNS else 99, canonical(k))


def _series(groups: list[Group], x_field: str, drop_p: bool = False) -> dict[str, tuple[dict, list]]:
    """Groups that differ only in ``x_field`` form one series (in design order, points sorted by x);
    ``drop_p`` when the panel already fixes the possible CPUs."""
    out: dict[str, tuple[dict, list]] = {}
    for g in groups:
        k = dict(g.key)
        x = k.pop(x_field)
        if drop_p:
            k.pop("possible_cpus", None)
        elif x_field == "cpus":
            k["possible_cpus"] = _ptag(g)
        out.setdefault(canonical(k), (k, []))[1].append((x, g))
    for _, pts in out.values():
        pts.sort(key=lambda p: p[0])
    return dict(sorted(out.items(), key=lambda kv: _order(kv[1][0])))


_SHOWN = {"workload": "", "mode": "", "design": "", "lifecycle": "", "cpus": "CPUs=", "possible_cpus": "P=",
          "tasks": "tasks=", "duration_s": "duration=", "pack": "pack=", "line": "line="}


def _labeller(series_keys: list[dict], always: tuple[str, ...]):
    """Label = the ``always`` fields, then every other field whose value differs between series."""
    fields = list(dict.fromkeys(f for k in series_keys for f in k))
    varying = [f for f in fields if f not in always and f != "repeat"
               and len({canonical({"v": k.get(f)}) for k in series_keys}) > 1]

    def label(k: dict) -> str:
        parts = [str(k[f]) for f in always if k.get(f) not in (None, "")]
        for f in varying:
            v = k.get(f)
            if v is None:
                continue
            if f == "workload" and isinstance(v, str) and v.startswith("file:"):
                v = Path(v[5:].split("#")[0]).stem
            if f == "possible_cpus" and v == "=cpus":
                v = "CPUs"
            parts.append(f"{_SHOWN.get(f, f + '=')}{v}")
        return " ".join(parts)

    return label


def _styler():
    """Line style per series: the colour's n-th series gets the n-th dash and marker."""
    seen: dict = defaultdict(int)

    def style(color_name: str) -> tuple[str, str]:
        i = seen[color_name]
        seen[color_name] += 1
        return _STYLES[i % len(_STYLES)], _MARKERS[i // len(_STYLES) % len(_MARKERS)]

    return style


def _errorbar(ax, xs, spreads, color, label, ls="-", marker="o"):
    med = [s[1] for s in spreads]
    ax.errorbar(xs, med, yerr=[[s[1] - s[0] for s in spreads], [s[2] - s[1] for s in spreads]], color=color,
                marker=marker, ls=ls, capsize=4, lw=1.6, ms=5, label=label)


def _mark_failed(ax, xs, ys, groups) -> bool:
    bad = [(x, y) for x, y, g in zip(xs, ys, groups) if g.failing]
    if bad:
        ax.scatter([b[0] for b in bad], [b[1] for b in bad], marker="X", s=150, color="red", zorder=5,
                   edgecolors="black", linewidths=0.6)
    return bool(bad)


def _num(v, _=None) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


def _x_at(ax, xs, log: bool) -> None:
    """Ticks at the measured x values, written out."""
    xs = sorted(set(xs))
    if log:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(xs, [_num(x) for x in xs])
    if not log and xs:
        ax.set_xlim(0, xs[-1] * 1.08)


def _y_log(ax) -> None:
    """A log y axis labelled in plain numbers, with enough labels for a range under a decade (after plotting)."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 5:  # nearly equal values: do not magnify rounding noise into a slope
        mid = math.sqrt(lo * hi)
        lo, hi = min(lo, mid / 2.5), max(hi, mid * 2.5)
        ax.set_ylim(lo, hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0,) if decades > 4 else (1.0, 3.0) if decades > 1.5 else (1.0, 2.0, 5.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(_num))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _legend(ax, failed: bool, extra=()) -> None:
    handles, labels = ax.get_legend_handles_labels()
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    if failed:
        handles.append(Line2D([], [], marker="X", color="red", ls="", ms=10, markeredgecolor="black"))
        labels.append("invariant failed")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _workload_name(g: Group) -> str:
    if g.results:
        return g.results[0].get("workload") or str(g.key.get("workload"))
    w = str(g.key.get("workload"))
    return Path(w[5:].split("#")[0]).stem if w.startswith("file:") else w


def _panel_title(workload: str, mode, ptag=None) -> str:
    t = f"{workload} ({mode})" if mode and mode != workload else str(workload)
    if ptag is not None:
        t += ", P = CPUs" if ptag == "=cpus" else f", P = {ptag}"
    return t


def _panels(groups: list[Group], by_p: bool) -> dict[tuple, list[Group]]:
    """Groups per (workload, mode[, possible CPUs]), sorted. With ``by_p``, a point whose P equals its CPU
    count is in the "P = CPUs" panel and also in the panel of that fixed P, when the sweep had one."""
    panels: dict[tuple, list[Group]] = defaultdict(list)
    for g in groups:
        key = (_workload_name(g), g.key.get("mode")) + ((_ptag(g),) if by_p else ())
        panels[key].append(g)
    if by_p:
        for g in groups:
            fixed = (_workload_name(g), g.key.get("mode"), g.key.get("possible_cpus"))
            if _ptag(g) == "=cpus" and fixed in panels:
                panels[fixed].append(g)
    def order(key):
        p = key[2] if len(key) > 2 else "=cpus"
        return str(key[0]), str(key[1]), (0, 0) if p == "=cpus" else (1, p)

    return dict(sorted(panels.items(), key=lambda kv: order(kv[0])))


# ------------------------------------------------------------------ figures

def scaling(groups: list[Group], out: Path, metric: str) -> Outcome:
    """events/s (metric "eps") or ns/event ("ns") vs emulated CPUs, one panel per workload, mode and P."""
    runs = [g for g in groups if g.kind == KIND_RUN and g.results]
    if not runs:
        return None, "no measured run of a tape workload"
    panels, dropped = {}, []
    for key, gs in _panels(runs, by_p=True).items():
        if any(len(pts) > 1 for _, pts in _series(gs, "cpus", drop_p=True).values()):
            panels[key] = gs
        else:
            dropped.append(_panel_title(*key))
    if not panels:
        counts = sorted({g.key["cpus"] for g in runs})
        return None, f"every series has one CPU count ({', '.join(map(str, counts))}): a curve needs two"
    if metric == "eps":
        get = lambda r: r["throughput"]["events_per_s"] / 1e6  # noqa: E731
        title, ylabel, name = "counter updates per second vs CPUs (all CPUs)", "M events/s", "scaling_events_per_s.png"
    else:
        get = lambda r: r["throughput"]["ns_per_event"]  # noqa: E731
        title, ylabel, name = "ns per event vs CPUs (median over CPUs)", "ns/event", "scaling_ns_per_event.png"
    title += ": median of repeats, bars min..max"
    used = [g for gs in panels.values() for g in gs]
    fig, axes = _figure(len(panels), 1, title, _results(used))
    for ax, (panel, gs) in zip(axes[:, 0], panels.items()):
        series = _series(gs, "cpus", drop_p=True)
        label = _labeller([k for k, _ in series.values()], ("design",))
        style = _styler()
        failed, linear, allx = False, False, []
        for k, pts in series.values():
            pts = [(x, g, g.spread(get)) for x, g in pts if g.spread(get) is not None]
            if not pts:
                continue
            xs, ss = [p[0] for p in pts], [p[2] for p in pts]
            allx += xs
            color = _color(k["design"])
            ls, marker = style(k["design"])
            _errorbar(ax, xs, ss, color, label(k), ls, marker)
            failed |= _mark_failed(ax, xs, [s[1] for s in ss], [p[1] for p in pts])
            if metric == "eps" and xs[0] == 1 and len(xs) > 1:
                ax.plot(xs, [ss[0][1] * x for x in xs], ls=":", color=color, lw=1, alpha=0.6)
                linear = True
        _x_at(ax, allx, log=max(allx) > 16)
        ax.set_ylim(bottom=0)
        ax.set_title(_panel_title(*panel), fontsize=10)
        ax.set_xlabel("emulated CPUs")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        _legend(ax, failed, [(Line2D([], [], ls=":", color="gray"), "linear: 1-CPU median x CPUs")] if linear
                else [])
    note = f"left out (one CPU count): {'; '.join(dropped)}" if dropped else None
    return save_png(fig, out, name), note


def error_vs_bound(groups: list[Group], out: Path) -> Outcome:
    """The largest approximate-read error of each point as bars, the design's bound as a black tick."""
    import numpy as np

    runs = [g for g in groups if g.kind == KIND_RUN and g.results]
    if not runs:
        return None, "no measured run of a tape workload"
    panels = _panels(runs, by_p=True)
    fig, axes = _figure(len(panels), 1, "approximate read: largest error vs the design's stated bound (bars: "
                                        "median of repeats, min..max; black tick: bound; labels: error/bound)",
                        _results(runs))
    cmap = plt.get_cmap("viridis")
    for ax, (panel, gs) in zip(axes[:, 0], panels.items()):
        cpus = sorted({g.key["cpus"] for g in gs})
        series = _series(gs, "cpus", drop_p=True)
        label = _labeller([k for k, _ in series.values()], ("design",))
        names = list(series)
        width = 0.8 / len(cpus)
        failed, top, notes, labelled = False, 1.0, [], set()
        for si, sid in enumerate(names):
            for x, g in series[sid][1]:
                err = g.spread(lambda r: r["accuracy"]["approx_max_abs_error"])
                bound = g.spread(lambda r: r["accuracy"]["approx_bound"])
                if err is None:
                    continue
                ci = cpus.index(x)
                xpos = si - 0.4 + width * (ci + 0.5)
                ax.bar(xpos, err[1], width * 0.9, color=cmap(ci / max(1, len(cpus) - 1) * 0.85),
                       yerr=[[err[1] - err[0]], [err[2] - err[1]]], capsize=3,
                       label=None if x in labelled else f"{x} CPU{'s' if x > 1 else ''}")
                labelled.add(x)
                if bound is not None:
                    ax.hlines(bound[2], xpos - width * 0.5, xpos + width * 0.5, color="black", lw=2.2)
                    top = max(top, bound[2])
                top = max(top, err[2])
                # a 0/0 bar is otherwise invisible
                notes.append((xpos, max(err[2], bound[2] if bound else 0),
                              f"{err[1]:,.0f}/{bound[2]:,.0f}" if bound else f"{err[1]:,.0f}"))
                if g.failing:
                    failed = True
                    ax.scatter([xpos], [max(err[1], 0.5)], marker="X", s=120, color="red", zorder=5,
                               edgecolors="black", linewidths=0.6)
        ax.set_xticks(np.arange(len(names)), [label(series[s][0]) for s in names], fontsize=8)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(0, top * 8)
        ax.yaxis.set_major_formatter(FuncFormatter(_num))
        for x, y, text in notes:
            ax.annotate(text, (x, y), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7, rotation=90 if len(notes) > 10 else 0)
        ax.set_title(_panel_title(*panel), fontsize=10)
        ax.set_ylabel("pages")
        ax.grid(True, axis="y", alpha=0.3)
        _legend(ax, failed, [(Line2D([], [], color="black", lw=2.2), "stated bound")])
    return save_png(fig, out, "approx_error_vs_bound.png"), None


def read_latency(groups: list[Group], out: Path) -> Outcome:
    """Median read latency, approximate (left) and precise (right), vs possible CPUs; a row per workload."""
    runs = [g for g in groups if g.kind == KIND_RUN and g.results]
    rows = {}
    for key, gs in _panels(runs, by_p=False).items():
        series = {s: v for s, v in _series(gs, "possible_cpus").items() if len(v[1]) > 1}
        if series:
            rows[key] = series
    if not rows:
        return None, "every series has one possible-CPU count: sweep --possible-cpus with two or more values"
    used = [g for series in rows.values() for _, pts in series.values() for _, g in pts]
    fig, axes = _figure(len(rows), 2, "read latency vs possible CPUs: median ns per read, median of repeats, "
                                      "bars min..max", _results(used), panel_w=5.0)
    for (panel, series), (ax_a, ax_p) in zip(rows.items(), axes):
        label = _labeller([k for k, _ in series.values()], ("design",))
        failed, allx = False, []
        for ax, kind in ((ax_a, "approx"), (ax_p, "precise")):
            style = _styler()
            for k, pts in series.values():
                get = lambda r, kind=kind: r["reads"][f"{kind}_latency_ns"]["median"]  # noqa: E731
                pts = [(x, g, g.spread(get)) for x, g in pts if g.spread(get) is not None]
                if not pts:
                    continue
                xs, ss = [p[0] for p in pts], [p[2] for p in pts]
                allx += xs
                _errorbar(ax, xs, ss, _color(k["design"]), label(k), *style(k["design"]))
                failed |= _mark_failed(ax, xs, [s[1] for s in ss], [p[1] for p in pts])
            _y_log(ax)
            ax.set_title(f"{_panel_title(*panel)}: {'approximate' if kind == 'approx' else 'precise'} read",
                         fontsize=10)
            ax.set_xlabel("possible CPUs (P)")
            ax.grid(True, which="major", alpha=0.3)
        for ax in (ax_a, ax_p):
            _x_at(ax, allx, log=True)
        ax_a.set_ylabel("median ns per read")
        _legend(ax_p, failed)
    return save_png(fig, out, "read_latency_vs_possible.png"), None


def lifecycle_rate(groups: list[Group], out: Path) -> Outcome:
    """fork/exit: mm lifecycles per second (all CPUs) vs possible CPUs, one line per variant."""
    life = [g for g in groups if g.kind == KIND_LIFECYCLE and g.results]
    if not life:
        return None, "no fork_exit result (sweep --workload fork_exit)"
    series = _series(life, "possible_cpus")
    if not any(len(pts) > 1 for _, pts in series.values()):
        return None, "every fork_exit series has one possible-CPU count: sweep --possible-cpus with two or more"
    fig, axes = _figure(1, 1, "fork/exit: mm lifecycles per second vs possible CPUs (all CPUs; median of repeats, "
                              "bars min..max)", _results(life), panel_h=4.5)
    ax = axes[0, 0]
    label = _labeller([k for k, _ in series.values()], ("lifecycle",))
    style = _styler()
    failed, allx = False, []
    for k, pts in series.values():
        pts = [(x, g, g.spread(lambda r: r["lifecycle"]["mm_per_s"])) for x, g in pts]
        pts = [p for p in pts if p[2] is not None]
        if not pts:
            continue
        xs, ss = [p[0] for p in pts], [p[2] for p in pts]
        allx += xs
        _errorbar(ax, xs, ss, _color(k["lifecycle"]), label(k), *style(k["lifecycle"]))
        failed |= _mark_failed(ax, xs, [s[1] for s in ss], [p[1] for p in pts])
    _x_at(ax, allx, log=True)
    _y_log(ax)
    ax.set_xlabel("possible CPUs (P)")
    ax.set_ylabel("mm create+destroy per second")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, failed)
    return save_png(fig, out, "lifecycle_vs_possible.png"), None


def oom_latency(groups: list[Group], out: Path) -> Outcome:
    """OOM victim selection: median latency of 2-pass and all-precise vs mms, one panel per P."""
    oom = [g for g in groups if g.kind == KIND_RUN and any(r.get("oom") for r in g.results)]
    if not oom:
        return None, "no result with OOM selections (sweep --workload oom_select, or --oom)"
    by_series: dict[str, tuple[dict, list]] = {}
    for g in oom:
        k = {f: v for f, v in g.key.items() if f != "tasks"}
        by_series.setdefault(canonical(k), (k, []))[1].append((g.results[0]["params"]["mms"], g))
    if not any(len({x for x, _ in pts}) > 1 for _, pts in by_series.values()):
        return None, "every OOM series has one mm count: sweep oom_select with --tasks N1,N2,... (the mms)"
    panels: dict = defaultdict(list)
    for k, pts in sorted(by_series.values(), key=lambda kv: _order(kv[0])):
        panels[k["possible_cpus"]].append((k, sorted(pts, key=lambda p: p[0])))
    fig, axes = _figure(len(panels), 1, "OOM victim selection latency vs mms: solid 2-pass, dashed all-precise "
                                        "(median of repeats, bars min..max)", _results(oom))
    for ax, (pc, items) in zip(axes[:, 0], sorted(panels.items())):
        label = _labeller([k for k, _ in items], ("design",))
        failed, allx = False, []
        for k, pts in items:
            for method, ls in (("two_pass", "-"), ("precise", "--")):
                get = lambda r, m=method: r["oom"][f"{m}_latency_ns"]["median"]  # noqa: E731
                ps = [(x, g, g.spread(get)) for x, g in pts if g.spread(get) is not None]
                if not ps:
                    continue
                xs, ss = [p[0] for p in ps], [p[2] for p in ps]
                allx += xs
                _errorbar(ax, xs, ss, _color(k["design"]),
                          f"{label(k)} {'2-pass' if method == 'two_pass' else 'all-precise'}", ls=ls)
                failed |= _mark_failed(ax, xs, [s[1] for s in ss], [p[1] for p in ps])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(sorted(set(allx)), [_num(x) for x in sorted(set(allx))])
        _y_log(ax)
        ax.set_title(f"P = {pc}", fontsize=10)
        ax.set_xlabel("mms")
        ax.set_ylabel("median ns per selection")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, failed)
    return save_png(fig, out, "oom_latency_vs_mms.png"), None


FIGURES = (
    ("events/s vs CPUs (scaling curve)", lambda g, o: scaling(g, o, "eps")),
    ("ns/event vs CPUs", lambda g, o: scaling(g, o, "ns")),
    ("approximate error vs bound", error_vs_bound),
    ("read latency vs possible CPUs", read_latency),
    ("fork/exit rate vs possible CPUs", lifecycle_rate),
    ("OOM selection latency vs mms", oom_latency),
)


def draw_all(groups: list[Group], out: Path) -> list[tuple[str, Path | None, str | None]]:
    """(figure, path or None, note) for every figure: why it was skipped, or which panels were left out."""
    return [(name, *fn(groups, out)) for name, fn in FIGURES]
