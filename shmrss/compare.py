"""``shmrss compare BASE NEW...``: the same points measured on two kernels, hosts or builds, side by side,
shown as lkp-tests, hyperfine and pyperf users read a comparison.

Per point and NEW side a table: each metric's value ± %stddev over the runs
on both sides (rounded to their precision: ``rounding``), the change in
percent with its 95% confidence interval and a verdict: ``*`` significant,
"no difference shown", or, with fewer than 3 runs a side, "too few runs to
judge (n=1 vs 1): -48.3%" (the change printed, not judged). Significant rows
come first (``--changed`` shows only them); then one line per point in
hyperfine's words, "k-percpu ran 1.31 ± 0.04 x slower than percpu", saying
which direction is better. ``compare A1 A2 A3 --vs B1 B2 B3`` pools files
into two sides, each file one invocation and the mean of its runs one sample
(the repeats of one invocation can agree more closely than two invocations
do: docs/compare.md). What is compared and how it is judged:
``compare_data``. Text from files (labels, host names) is data: shown with
its control characters escaped and never read as rich markup.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from shmrss import rounding, speedup, stats
from shmrss.compare_data import Row, Side, compare, load_side, pool, regressions
from shmrss.results_file import InputError

NO_DIFFERENCE = "no difference shown"
BETTER = "higher events/s and mm lifecycles/s are better; lower ns/event and read latency are better"


def shown(text) -> str:
    """Text from a file as printable text: a control character (ESC, BEL, a newline) becomes its escape."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


# ---- the cells ----

def side_cell(s: stats.Summary, step: float) -> str:
    """A side's value rounded to its precision, with lkp's ±%stddev when it has runs to spread."""
    text = rounding.value(s.mean, rounding.place(s.mean, s.stdev, step))
    if s.n > 1 and s.cv is not None and s.stdev >= step:  # a spread below the step is not a spread
        text += f" ± {rounding.spread_pct(s.cv)}"
    return text + (" !" if s.spread_reasons() else "")


def _abs(v: float, row: Row) -> str:
    at = rounding.place(v, row.base.stdev + row.new.stdev, row.resolution)
    return ("+" if v >= 0 else "") + rounding.value(v, at) + (f" {row.metric.unit}" if row.metric.unit else "")


def change_text(row: Row) -> str:
    """The change with its interval: "-48.3% [-52.1, -44.5]", or in units from a base of 0."""
    ci, pct = row.ci_pct, row.change_pct
    if pct is not None:
        # digits: the interval's, else the resolution's (a change below the TSC step is +0%)
        half = (ci[1] - ci[0]) / 2 if ci else row.resolution / abs(row.base.mean) * 100 or None
        text = rounding.pct(pct, half)
        if ci:
            text += f" [{rounding.pct(ci[0], half)[:-1]}, {rounding.pct(ci[1], half)[:-1]}]"
        return text
    text = _abs(row.new.mean - row.base.mean, row) + " from 0"
    if row.sig.diff_ci:
        text += f" [{_abs(row.sig.diff_ci[0], row)}, {_abs(row.sig.diff_ci[1], row)}]"
    return text


def too_few(row: Row) -> str:
    """"too few runs to judge (n=1 vs 1)", or of a pooled comparison "too few files to judge (n=2 vs 3)"."""
    return f"too few {row.unit} to judge (n={row.base.n} vs {row.new.n})"


def verdict(row: Row) -> str:
    if not row.judged:
        return f"{too_few(row)}: {change_text(row)}"
    if not row.significant:
        return f"{NO_DIFFERENCE} ({change_text(row)})"
    return f"{change_text(row)} *"


def summary_line(rows: list[Row]) -> str:
    """One pair in hyperfine's words, on its throughput metric (the first higher-is-better one)."""
    row = next((r for r in rows if r.metric.higher_is_better), rows[0])
    new, base, what = shown(row.new_side), shown(row.base_side), row.metric.name
    r = stats.ratio(row.base, row.new)
    better = "higher" if row.metric.higher_is_better else "lower"
    if r is None:
        text = f"{new} against {base}: {what} {change_text(row)}"
    else:
        text = speedup.ran(new, base, r[0], r[1], r[1] > 0, row.metric.higher_is_better)
    text += f" ({what}, {better} is better; {shown(row.point)})"
    if not row.judged:
        return text + f": {too_few(row)}"
    return text + ("" if row.significant else f": {NO_DIFFERENCE}")


# ---- the whole comparison ----

def _rank(row: Row) -> int:
    return 0 if row.significant else 1 if row.judged else 2


def groups(rows: list[Row], changed_only: bool = False) -> list[list[Row]]:
    """Rows by point and NEW side, significant rows first and the groups with one first;
    ``changed_only`` keeps only the significant rows (and the groups that have one)."""
    by: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        by.setdefault((r.point, r.new_side), []).append(r)
    out = [sorted(g, key=_rank) for g in by.values()]
    if changed_only:
        out = [[r for r in g if r.significant] for g in out]
        out = [g for g in out if g]
    return sorted(out, key=lambda g: _rank(g[0]))


def as_records(rows: list[Row]) -> list[dict]:
    return [{"point": r.point, "metric": r.metric.name, "higher_is_better": r.metric.higher_is_better,
             "base_side": r.base_side, "new_side": r.new_side, "base": r.base.to_dict(), "new": r.new.to_dict(),
             "change_pct": r.change_pct, "ci95_pct": list(r.ci_pct) if r.ci_pct else None,
             "ci95_diff": list(r.sig.diff_ci) if r.sig.diff_ci else None, "judged": r.judged,
             "significant": r.significant, "rule": r.sig.rule, "p_value": r.sig.p_value,
             "resolution": r.resolution, "verdict": verdict(r),
             "unstable": r.unstable, "timings_valid": r.timings_valid, "within_run_cv": r.within_run_cv,
             "unit": r.unit, "base_runs": _runs(r.base_runs), "new_runs": _runs(r.new_runs)}
            for r in rows]


def _runs(by_file) -> list[list[float]] | None:
    return None if by_file is None else [list(runs) for runs in by_file]


def legend(rows: list[Row]) -> str:
    judged = sum(1 for r in rows if r.judged)
    files = any(r.unit == "files" for r in rows)
    more = f"pool {stats.MIN_RUNS} or more files a side" if files else f"run --repeat {stats.MIN_RUNS} or more"
    tested = (f"{judged} row{'s' if judged != 1 else ''} judged, each its own test: about 1 in 20 unchanged rows "
              "is marked by chance" if judged else f"no row judged: {more}")
    unit = ("the files (a file is the unit: the mean of its runs)" if files else "the runs (a run is the unit)")
    drift = ("" if files or not judged else " The runs of one file share its window of time: where the host drifts "
             "between invocations (a VM), pool 3 or more files a side (BASE... --vs FILE...).")
    return (f"value ± %stddev over {unit}; change [95% confidence interval]; * significant "
            f"(Welch's t-test at 5%, at least {stats.MIN_RUNS} {'files' if files else 'runs'} a side; {tested}); "
            "! unstable (pyperf's thresholds). " + BETTER + "." + drift)


def _markdown(rows: list[Row], changed_only: bool) -> str:
    lines = ["| point | metric | base | new | change |", "|---|---|---|---|---|"]
    for g in groups(rows, changed_only):
        for r in g:
            lines.append(f"| {md(r.point)} | {r.metric.name} | {md(r.base_side)}: {side_cell(r.base, r.resolution)} "
                         f"| {md(r.new_side)}: {side_cell(r.new, r.resolution)} | {md(verdict(r))} |")
    lines += ["", *(f"- {md(summary_line(g))}" for g in groups(rows)), "", legend(rows)]
    return "\n".join(lines) + "\n"


def md(text: str) -> str:
    return shown(text).replace("|", "\\|")


def _csv(rows: list[Row]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["point", "metric", "higher_is_better", "base_side", "base_mean", "base_stdev", "base_n",
                "new_side", "new_mean", "new_stdev", "new_n", "change_pct", "ci95_low_pct", "ci95_high_pct",
                "judged", "significant", "p_value", "rule", "verdict"])
    for r in rows:
        ci = r.ci_pct or (None, None)
        w.writerow([shown(r.point), r.metric.name, r.metric.higher_is_better, shown(r.base_side), r.base.mean,
                    r.base.stdev, r.base.n, shown(r.new_side), r.new.mean, r.new.stdev, r.new.n, r.change_pct,
                    ci[0], ci[1], r.judged, r.significant, r.sig.p_value, r.sig.rule, shown(verdict(r))])
    return out.getvalue()


def render(rows: list[Row], fmt: str, base_name: str, changed_only: bool = False) -> str:
    """The comparison as markdown, csv or json text (the terminal tables are drawn by ``tables``)."""
    listed = [r for r in rows if r.significant] if changed_only else rows
    if fmt == "json":
        return json.dumps({"schema_version": 1, "base": base_name, "better": BETTER,
                           "comparisons": as_records(listed), "summaries": [summary_line(g) for g in groups(rows)]},
                          indent=1)
    if fmt == "csv":
        return _csv(listed)
    return _markdown(rows, changed_only)


def tables(rows: list[Row], changed_only: bool = False) -> list:
    """One rich table per point and NEW side (fits 100 columns; on a narrower terminal the verdict wraps
    between its words, the numbers never)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = []
    for g in groups(rows, changed_only):
        first = g[0]
        t = Table(title=Text(f"{shown(first.point)}\nbase: {shown(first.base_side)} · new: {shown(first.new_side)}"),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column("metric", no_wrap=True)
        for name in ("base", "new"):
            t.add_column(name, justify="right", no_wrap=True)
        t.add_column("change [95% CI]")  # a narrow terminal wraps the verdict between words, never a number
        for r in g:
            t.add_row(r.metric.name, side_cell(r.base, r.resolution), side_cell(r.new, r.resolution),
                      Text(shown(verdict(r))))
        steady = [r.within_run_cv for r in g if r.within_run_cv is not None]
        if steady:  # how steady each run was: shown as such, never used as samples
            t.caption = f"within one run the per-second events/s vary by up to {rounding.spread_pct(steady[0])}"
            t.caption_justify = "left"
        out.append(t)
    return out


# ---- the command ----

FORMATS = ("table", "markdown", "csv", "json")
_PCT = re.compile(r"[0-9]{1,9}(\.[0-9]{0,9})?|\.[0-9]{1,9}")


def _pct_at_least_0(text: str) -> float:
    import argparse

    if not _PCT.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a percentage >= 0 with at most 9 digits before the point: "
                                         f"{shown(text)[:40]!r}")
    return float(text)


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare results files: value ± spread, %%change and its significance")
    c.add_argument("base", metavar="BASE", help="results file of the base side (run JSON or sweep JSONL)")
    c.add_argument("new", nargs="*", metavar="NEW", help="results file(s) of the side(s) compared with BASE")
    c.add_argument("--vs", nargs="+", metavar="FILE",
                   help="pool: BASE and NEW files are one side, these files the other; each file is one invocation "
                        "and its runs' mean one sample (at least 3 files a side to judge)")
    c.add_argument("--format", choices=FORMATS, default="table",
                   help="table (terminal), markdown, csv or json (default table)")
    c.add_argument("--changed", action="store_true",
                   help="show only the rows with a significant change (the summary lines stay)")
    c.add_argument("--fail-on-regression", type=_pct_at_least_0, metavar="PCT",
                   help="exit 1 when a metric gets significantly worse by more than PCT percent")


def check_files(paths: list[str]) -> None:
    if len(paths) < 2:
        raise InputError("compare needs a BASE file and at least one NEW file")
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"{shown(p)}: no such file")


def _check_pooled(paths: list[str]) -> None:
    """A pooled file is one invocation, one sample: the same file twice would count it twice."""
    real = [os.path.realpath(p) for p in paths]
    twice = next((p for p, r in zip(paths, real) if real.count(r) > 1), None)
    if twice is not None:
        raise InputError(f"{shown(twice)} is given twice: pooled, each file is one invocation and one sample")


def _load(paths: list[str], logger, vs: list[str] | None = None) -> list[Side]:
    """The sides: a file each, or with ``vs`` two pooled sides (``paths`` and ``vs``)."""
    if vs is not None:
        _check_pooled([*paths, *vs])
    sides = [load_side(p) for p in paths] if vs is None else [pool(paths), pool(vs)]
    names = [s.name for s in sides]
    for side in sides:
        for note in side.notes:
            logger.warning("{}", shown(note))
        if names.count(side.name) > 1:  # one host, kernel and label on both sides: name them by file
            side.name = side.file_name
        invalid = sum(1 for _, rs in side.points.values() for r in rs
                      if isinstance(r.get("throughput"), dict) and r["throughput"].get("timings_valid") is False)
        if invalid:
            logger.warning("{}: {} result(s) say their timings are not valid (another run competed for the CPUs): "
                           "a difference may be the host's", shown(", ".join(side.paths) or side.path), invalid)
    return sides


def _print_tables(rows: list[Row], changed_only: bool, out_console) -> None:
    from rich.text import Text

    for t in tables(rows, changed_only):
        out_console.print(t)
    if changed_only and not any(r.significant for r in rows):
        out_console.print(Text(f"{NO_DIFFERENCE} in any of the {len(rows)} rows"))
    for g in groups(rows):
        out_console.print(Text(summary_line(g)), soft_wrap=True)
    out_console.print(Text(legend(rows)), style="dim")


def _gate(rows: list[Row], threshold: float, logger) -> int:
    worse = regressions(rows, threshold)
    for r in worse:
        logger.error("regression: {} {} {} ({} against {})", shown(r.point), r.metric.name, shown(verdict(r)),
                     shown(r.new_side), shown(r.base_side))
    unjudged = sum(1 for r in rows if not r.judged)
    if unjudged:
        logger.warning("--fail-on-regression: {} of {} rows had fewer than {} {} a side and were not judged",
                       unjudged, len(rows), stats.MIN_RUNS, rows[0].unit)
    return 1 if worse else 0


def main(args, out_console) -> int:
    """``shmrss compare``: 0, or 1 when --fail-on-regression found a significant regression."""
    import sys

    from loguru import logger

    vs = getattr(args, "vs", None)
    check_files([args.base, *args.new, *(vs or [])])
    base, *news = _load([args.base, *args.new], logger, vs)
    rows = compare(base, news)
    if not rows:
        logger.warning("the files have no point in common: nothing to compare")
    if args.format == "table":
        _print_tables(rows, args.changed, out_console)
    else:
        sys.stdout.write(render(rows, args.format, shown(base.name), args.changed))
    return 0 if args.fail_on_regression is None else _gate(rows, args.fail_on_regression, logger)
