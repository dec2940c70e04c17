"""``shmrss compare BASE NEW...``: the same points measured on two kernels, hosts or builds, side by side.

Each file is one side (run JSON or sweep JSONL) and must hold the results of
one identity (host, kernel, label: ``host_meta.identity``): results of
different identities are never merged. Points are matched across sides by
their parameters. For each point and metric a side's samples are its repeats
(one value per finished run of the point) or, for a point run once, the
per-second rates of its measured window. Every %change carries its
significance (``stats.significance``); one that is not significant is printed
as "no difference shown", never as a bare percentage.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from shmrss import stats
from shmrss.host_meta import identity, identity_name
from shmrss.report_data import derived_key, kind_of
from shmrss.results_file import FINISHED, InputError, canonical, read_records, status_of

NO_DIFFERENCE = "no difference shown"


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool

    def values(self, result: dict) -> list[float]:
        """This metric's samples in one result: [value], or the per-second rates for events/s."""
        got = _METRIC_GETTERS[self.name](result)
        if got is None:
            return []
        return [float(v) for v in (got if isinstance(got, list) else [got]) if v is not None]


def _dig(r: dict, *path):
    for p in path:
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


_METRIC_GETTERS = {
    "events/s": lambda r: _dig(r, "throughput", "events_per_s"),
    "ns/event": lambda r: _dig(r, "throughput", "ns_per_event"),
    "approx read ns (median)": lambda r: _dig(r, "reads", "approx_latency_ns", "median"),
    "precise read ns (median)": lambda r: _dig(r, "reads", "precise_latency_ns", "median"),
    "mm lifecycles/s": lambda r: _dig(r, "lifecycle", "mm_per_s"),
}
_RATE_SAMPLES = {"events/s": ("throughput", "events_per_s_samples")}

METRICS = (
    Metric("events/s", True),
    Metric("ns/event", False),
    Metric("approx read ns (median)", False),
    Metric("precise read ns (median)", False),
    Metric("mm lifecycles/s", True),
)


@dataclass
class Side:
    path: str
    name: str
    points: dict  # canonical point key -> (key, [results])


def load_side(path: str) -> Side:
    records, _notes = read_records(path)
    results = [r for r in records if kind_of(r) is not None and status_of(r) in FINISHED]
    if not results:
        raise InputError(f"{path} holds no finished shmrss result")
    idents = {canonical(identity(r)) for r in results}
    if len(idents) > 1:
        raise InputError(f"{path} holds results of {len(idents)} hosts, kernels or labels: compare needs one per "
                         f"file (shmrss report keeps them apart)")
    points: dict = {}
    for r in results:
        key = derived_key(r)
        points.setdefault(canonical(key), (key, []))[1].append(r)
    return Side(path, identity_name(identity(results[0])), points)


def samples_of(metric: Metric, results: list[dict]) -> list[float]:
    """One value per repeat; a point run once gives its per-second samples where the result kept them."""
    if len(results) == 1 and metric.name in _RATE_SAMPLES:
        per_second = _dig(results[0], *_RATE_SAMPLES[metric.name])
        if isinstance(per_second, list) and per_second:
            return [float(v) for v in per_second]
    return [v for r in results for v in metric.values(r)[:1]]


@dataclass
class Row:
    point: str
    metric: Metric
    base: stats.Summary
    new: stats.Summary
    new_side: str
    change_pct: float | None
    sig: stats.Significance

    @property
    def worse_pct(self) -> float:
        """How much worse NEW is than BASE, in percent (negative: better)."""
        if self.change_pct is None:
            return 0.0
        return -self.change_pct if self.metric.higher_is_better else self.change_pct

    def verdict(self) -> str:
        if not self.sig.significant or self.change_pct is None:
            return NO_DIFFERENCE
        return f"{self.change_pct:+.1f}% *"


def point_label(key: dict) -> str:
    """The point in a few words: its design, workload and mode, and the options that are not their defaults."""
    defaults = {"possible_cpus": key.get("cpus"), "online_cpus": key.get("possible_cpus"), "fault_pages": [1],
                "fault_body": "none"}
    shown = ("design", "workload", "mode", "lifecycle", "cpus", "possible_cpus", "online_cpus", "fault_pages",
             "fault_body", "pack")
    return " ".join(f"{k}={key[k]}" if k not in ("design", "workload", "mode", "lifecycle") else str(key[k])
                    for k in shown if key.get(k) not in (None, False, "") and key.get(k) != defaults.get(k))


def _pairs(base: Side, new: Side) -> list[tuple[str, list[dict], list[dict]]]:
    """(label, base results, new results) of every point both sides measured; two sides of one point each
    are compared with each other even when their parameters differ (the difference is the experiment)."""
    common = [(point_label(key), results, new.points[pid][1]) for pid, (key, results) in base.points.items()
              if pid in new.points]
    if common or len(base.points) != 1 or len(new.points) != 1:
        return common
    (bkey, bres), (nkey, nres) = next(iter(base.points.values())), next(iter(new.points.values()))
    differs = sorted(k for k in set(bkey) | set(nkey) if bkey.get(k) != nkey.get(k))
    return [(f"{point_label(bkey)} (new differs in: {', '.join(differs)})", bres, nres)]


def compare(base: Side, news: list[Side]) -> list[Row]:
    rows = []
    for new in news:
        for label, base_results, new_results in _pairs(base, new):
            for metric in METRICS:
                b, n = samples_of(metric, base_results), samples_of(metric, new_results)
                if not b or not n:
                    continue
                sb, sn = stats.summarize(b), stats.summarize(n)
                rows.append(Row(label, metric, sb, sn, new.name, stats.pct_change(sb, sn), stats.significance(sb, sn)))
    return rows


def _fmt(s: stats.Summary) -> str:
    return f"{s.mean:,.4g} ± {s.stdev:,.2g} (n={s.n})"


def as_records(rows: list[Row]) -> list[dict]:
    return [{"point": r.point, "metric": r.metric.name, "higher_is_better": r.metric.higher_is_better,
             "new_side": r.new_side, "base": r.base.to_dict(), "new": r.new.to_dict(),
             "change_pct": r.change_pct, "significant": r.sig.significant, "rule": r.sig.rule,
             "p_value": r.sig.p_value, "verdict": r.verdict(),
             "unstable": bool(r.base.unstable_reasons() or r.new.unstable_reasons())} for r in rows]


def render(rows: list[Row], fmt: str, base_name: str) -> str:
    """The comparison as markdown, csv or json text (the terminal table is drawn by the CLI from as_records)."""
    recs = as_records(rows)
    if fmt == "json":
        return json.dumps({"schema_version": 1, "base": base_name, "comparisons": recs}, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["point", "metric", "base_mean", "base_stdev", "base_n", "new_side", "new_mean", "new_stdev",
                    "new_n", "change_pct", "significant", "rule", "verdict"])
        for r in rows:
            w.writerow([r.point, r.metric.name, r.base.mean, r.base.stdev, r.base.n, r.new_side, r.new.mean,
                        r.new.stdev, r.new.n, r.change_pct, r.sig.significant, r.sig.rule, r.verdict()])
        return out.getvalue()
    lines = [f"| point | metric | {base_name} (base) | new | change |", "|---|---|---|---|---|"]
    for r in rows:
        mark = " (unstable)" if r.base.unstable_reasons() or r.new.unstable_reasons() else ""
        lines.append(f"| {r.point} | {r.metric.name} | {_fmt(r.base)} | {r.new_side}: {_fmt(r.new)} | "
                     f"{r.verdict()}{mark} |")
    rules = sorted({r.sig.rule for r in rows})
    lines += ["", f"`*`: significant by {', '.join(rules) if rules else 'no rule (no common point)'}; "
                  "mean ± standard deviation over the samples (repeats, or the per-second rates of one run)."]
    return "\n".join(lines) + "\n"


def regressions(rows: list[Row], threshold_pct: float) -> list[Row]:
    """Significant changes that make a metric worse by more than ``threshold_pct``."""
    return [r for r in rows if r.sig.significant and r.worse_pct > threshold_pct]


def check_files(paths: list[str]) -> None:
    if len(paths) < 2:
        raise InputError("compare needs a BASE file and at least one NEW file")
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"{p}: no such file")


FORMATS = ("table", "markdown", "csv", "json")


def _pct_at_least_0(text: str) -> float:
    import argparse
    import re

    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text):
        raise argparse.ArgumentTypeError(f"not a percentage >= 0: {text!r}")
    return float(text)


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare results files: value ± spread, %%change and its significance")
    c.add_argument("base", metavar="BASE", help="results file of the base side (run JSON or sweep JSONL)")
    c.add_argument("new", nargs="*", metavar="NEW", help="results file(s) of the side(s) compared with BASE")
    c.add_argument("--format", choices=FORMATS, default="table",
                   help="table (terminal), markdown, csv or json (default table)")
    c.add_argument("--fail-on-regression", type=_pct_at_least_0, metavar="PCT",
                   help="exit 1 when a metric gets significantly worse by more than PCT percent")


def table(records: list[dict], base_name: str):
    """The terminal table: one row per point and metric; fits 100 columns (the point label wraps)."""
    from rich.table import Table

    rules = sorted({r["rule"] for r in records})
    sides = list(dict.fromkeys(r["new_side"] for r in records))
    t = Table(title=f"shmrss compare (base: {base_name})", title_justify="left",
              caption=f"mean ± stdev (n samples); * significant by {', '.join(rules) or 'no rule'}; "
                      "! unstable (pyperf's thresholds)", caption_justify="left")
    t.add_column("point", ratio=1, overflow="fold")
    t.add_column("metric", max_width=14, overflow="fold")
    t.add_column("base", justify="right", no_wrap=True)
    new_header = sides[0] if len(sides) == 1 else "new"
    t.add_column(new_header, justify="right", max_width=24, overflow="fold")
    t.add_column("change", justify="right", max_width=12, overflow="fold")
    for r in records:
        b, n = r["base"], r["new"]
        mark = " !" if r["unstable"] else ""
        t.add_row(r["point"], r["metric"], f"{b['mean']:,.4g} ± {b['stdev']:,.2g} ({b['n']})",
                  (f"{r['new_side']}: " if len(sides) > 1 else "") + f"{n['mean']:,.4g} ± {n['stdev']:,.2g} ({n['n']})",
                  r["verdict"] + mark)
    return t


def main(args, out_console) -> int:
    """``shmrss compare``: 0, or 1 when --fail-on-regression found a significant regression."""
    from loguru import logger

    paths = [args.base, *args.new]
    check_files(paths)
    base = load_side(args.base)
    news = [load_side(p) for p in args.new]
    names = [s.name for s in (base, *news)]
    for side in (base, *news):
        if names.count(side.name) > 1:  # one host, kernel and label on both sides: name them by file
            side.name = Path(side.path).name
    rows = compare(base, news)
    if not rows:
        logger.warning("the files have no point in common: nothing to compare")
    if args.format == "table":
        out_console.print(table(as_records(rows), base.name))
    else:
        import sys

        sys.stdout.write(render(rows, args.format, base.name))
    if args.fail_on_regression is not None:
        worse = regressions(rows, args.fail_on_regression)
        for r in worse:
            logger.error("regression: {} {} {} ({})", r.point, r.metric.name, r.verdict(), r.new_side)
        if worse:
            return 1
    return 0
