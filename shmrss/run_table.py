"""The default ``shmrss run`` table: metrics as rows, designs as columns (as lkp-tests and mmtests print).

``view`` gives the table with a first line saying what is better and notes after it: what the numbers
are over, and one "A ran R ± S x faster than B" line per other design (``shmrss.speedup``). Every row
of a ``--repeat N`` run is over all its repeats: numbers as mean ± standard deviation (``!`` when
``stats.Summary`` finds them unstable, pyperf's thresholds), the per-second spread over the per-second
rates of every repeat, the error and the ratio to truth the worst repeat's, read latencies the median
over the repeats. Fits 100 columns for 3 designs; ``console.fitted`` gives piped output the width the
table needs, so no cell is ever folded. ``--wide`` prints ``result.table``, one row per result.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shmrss import speedup, stats
from shmrss.compare_data import number as _num  # a result's figure, else None (a bool, a string, NaN)
from shmrss.result import err_bound_text

BETTER = "shmrss results (better: higher M events/s, lower ns/event; approx err within its bound, precise = truth)"


def _dig(r, *path):
    for p in path:
        r = r.get(p) if isinstance(r, dict) else None
    return r


def _nums(rs: list[dict], *path) -> list[float]:
    return [v for v in (_num(_dig(r, *path)) for r in rs) if v is not None]


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _per_second(rs: list[dict]) -> str:
    """min/median/max of the per-second rates of every repeat (older results: of their 1 s summaries)."""
    per_run = [_dig(r, "throughput", "events_per_s_samples") for r in rs]
    flat = []
    if all(isinstance(s, list) and s for s in per_run):
        flat = [v for s in per_run for v in map(_num, s) if v is not None]
    if not flat:
        lo, mid, hi = (_nums(rs, "throughput", "events_per_s_intervals", k) for k in ("min", "median", "max"))
        if not (lo and mid and hi):
            return "-"
        flat = [min(lo), statistics.median(mid), max(hi)]
    return f"{min(flat) / 1e6:.1f}/{statistics.median(flat) / 1e6:.1f}/{max(flat) / 1e6:.1f}"


def _error(rs: list[dict]) -> str:
    """The worst repeat's error beside its stated bound, and, when it passed the bound, by how much and why
    (``result.err_bound_text``)."""
    worst = max((r for r in rs if _num(_dig(r, "accuracy", "approx_max_abs_error")) is not None),
                key=lambda r: r["accuracy"]["approx_max_abs_error"], default=None)
    return "-" if worst is None else err_bound_text(worst["accuracy"])


def _latency(kind: str):
    def text(rs: list[dict]) -> str:
        med, p99 = _nums(rs, "reads", kind, "median"), _nums(rs, "reads", kind, "p99")
        return "-" if not med or not p99 else f"{statistics.median(med):,.0f}/{statistics.median(p99):,.0f}"

    return text


def _flag(rs: list[dict], bad, word: str) -> str:
    n = sum(1 for r in rs if bad(r))
    return "yes" if n == 0 else word if n == len(rs) else f"{word} ({n} of {len(rs)})"


def _invariants(rs: list[dict]) -> str:
    bad = sorted({k for r in rs for k, ok in (_dig(r, "invariants") or {}).items() if ok is not True})
    return "all hold" if not bad else "FAILED: " + ", ".join(bad)


# (row name, value of a result, format): mean ± stdev over repeats
NUMBERS = (
    ("M events/s", lambda r: _scaled(_dig(r, "throughput", "events_per_s"), 1e6), ".1f"),
    ("M ev/s per CPU", lambda r: _scaled(_dig(r, "throughput", "events_per_s_per_cpu"), 1e6), ".1f"),
    ("ns/event", lambda r: _num(_dig(r, "throughput", "ns_per_event")), ".2f"),
    ("switches/s", lambda r: _num(_dig(r, "throughput", "switches_per_s")), ",.0f"),
    ("hit rate", lambda r: _num(_dig(r, "throughput", "hit_rate")), ".4f"),
)
# (row name, text of a column's repeats): each over every repeat
TEXTS = (
    ("M ev/s (1 s) min/med/max", _per_second),
    ("approx err max/bound", _error),
    ("min approx / truth", lambda rs: _fmt(min(_nums(rs, "accuracy", "approx_min_ratio_to_truth"), default=None),
                                           ".3f")),
    ("precise = truth", lambda rs: _flag(rs, lambda r: _dig(r, "accuracy", "precise_equals_truth") is not True,
                                         "NO")),
    ("approx read ns med/p99", _latency("approx_latency_ns")),
    ("precise read ns med/p99", _latency("precise_latency_ns")),
    ("invariants", _invariants),
)


def _scaled(v, by: float) -> float | None:
    v = _num(v)
    return None if v is None else v / by


def _number(rs: list[dict], get, spec: str) -> str:
    values = [v for v in (get(r) for r in rs) if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], spec)
    s = stats.summarize(values)
    return f"{format(s.mean, spec)} ± {format(s.stdev, spec)}" + (" !" if s.unstable_reasons() else "")


def columns(results: list[dict]) -> dict[str, list[dict]]:
    """Results by column: a design (and its possible CPUs when they vary); its repeats in run order."""
    many_p = len({str(_dig(r, "params", "possible_cpus")) for r in results}) > 1
    out: dict[str, list[dict]] = {}
    for r in results:
        name = str(r.get("design")) + (f" P={_dig(r, 'params', 'possible_cpus')}" if many_p else "")
        out.setdefault(name, []).append(r)
    return out


def _head_rows(cols: dict[str, list[dict]]) -> list[tuple[str, list[str]]]:
    groups = list(cols.values())
    rows = [("workload", [str(rs[0].get("workload")) for rs in groups])]
    if any(_dig(rs[0], "params", "mode") for rs in groups):
        rows.append(("mode", [str(_dig(rs[0], "params", "mode") or "-") for rs in groups]))
    rows.append(("CPUs", [str(_dig(rs[0], "params", "cpus")) for rs in groups]))
    if max(len(rs) for rs in groups) > 1:
        rows.append(("repeats", [str(len(rs)) for rs in groups]))
    if any(r.get("partial") for rs in groups for r in rs):
        rows.append(("complete", [_flag(rs, lambda r: r.get("partial"), "PARTIAL") for rs in groups]))
    if any(_dig(r, "throughput", "timings_valid") is False for rs in groups for r in rs):
        rows.append(("timings valid", [_flag(rs, lambda r: _dig(r, "throughput", "timings_valid") is False, "NO")
                                       for rs in groups]))
    return rows


def rows(results: list[dict]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column names, [(row name, one cell per column)]): the table as text, for any format."""
    cols = columns(results)
    out = _head_rows(cols)
    out += [(name, [_number(rs, get, spec) for rs in cols.values()]) for name, get, spec in NUMBERS]
    if any("accuracy" in r for r in results):
        out += [(name, [text(rs) for rs in cols.values()]) for name, text in TEXTS]
    return list(cols), out


def table(results: list[dict]) -> Table:
    names, body = rows(results)
    t = Table()
    t.add_column("", style="bold", no_wrap=True)
    for name in names:
        # piped output is as wide as the table (console.fitted); a narrower terminal wraps a number, never cuts it
        t.add_column(Text(name), justify="right", overflow="fold")
    for name, cells in body:  # Text: a name read from a file is shown as written, never as markup
        t.add_row(Text(name), *map(Text, cells))
    return t


def notes(results: list[dict]) -> list[str]:
    """What the numbers are over, then how much faster the fastest design ran than each other one."""
    cols = columns(results)
    repeats = max(len(rs) for rs in cols.values())
    out = []
    if repeats > 1:
        out += [f"over {repeats} repeats: mean ± standard deviation; ! unstable (pyperf's thresholds: coefficient "
                f"of variation above 10%, min or max 50% from the mean, fewer than 3 samples)",
                "per-second min/med/max: every repeat's rates; approx err and min approx / truth: the worst "
                "repeat's; read ns: the median over the repeats"]
    return out + faster_lines(cols)


def faster_lines(cols: dict[str, list[dict]]) -> list[str]:
    """"FASTEST ran R ± S x faster than OTHER" for each other column, by events/s, repeat by repeat."""
    rates = {name: [_num(_dig(r, "throughput", "events_per_s")) for r in rs] for name, rs in cols.items()}
    means = {}
    for name, vs in rates.items():
        if any(vs):
            means[name] = statistics.fmean([v for v in vs if v])
    if len(means) < 2:
        return []
    best = max(means, key=means.get)
    out = []
    for name in sorted(means, key=means.get, reverse=True):
        ratio = speedup.paired(rates[best], rates[name]) if name != best else None
        if ratio is not None:
            bad = [n for n in (best, name) if any(_dig(r, "throughput", "timings_valid") is False for r in cols[n])]
            out.append(speedup.sentence(best, name, ratio, "events/s")
                       + (f" (timings of {' and '.join(bad)} not valid)" if bad else ""))
    return out


@dataclass
class View:
    """What ``shmrss run`` and ``shmrss show`` print: lines before the table, the table, lines after."""

    head: list[str]
    table: Table
    notes: list[str] = field(default_factory=list)


def view(results: list[dict]) -> View:
    return View([BETTER], table(results), notes(results))


def print_view(console: Console, v: View) -> None:
    """The lines are printed whole (soft wrap: grep finds a line as it was said)."""
    for line in v.head:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(v.table)
    for line in v.notes:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
