"""The default ``shmrss run`` table: metrics as rows, designs as columns (as lkp-tests and mmtests print).

Fits 100 columns for up to 3 designs; ``--wide`` prints ``result.table``, one
row per result. Repeats of a design (``--repeat N``) are one column: numbers
as mean ± standard deviation over the repeats, marked ``!`` when
``stats.Summary`` finds them unstable (pyperf's thresholds).
"""

from __future__ import annotations

from rich.table import Table

from shmrss import stats
from shmrss.result import err_bound_text


def _dig(r: dict, *path):
    for p in path:
        r = r.get(p) if isinstance(r, dict) else None
    return r


def _pair(d, a: str, b: str, spec: str = ",.0f") -> str:
    x, y = _dig(d, a), _dig(d, b)
    return "-" if x is None or y is None else f"{format(x, spec)}/{format(y, spec)}"


def _spread(r: dict) -> str:
    iv = _dig(r, "throughput", "events_per_s_intervals")
    return "-" if not iv else f"{iv['min'] / 1e6:.1f}/{iv['median'] / 1e6:.1f}/{iv['max'] / 1e6:.1f}"


def _workload(rs: list[dict]) -> str:
    r = rs[0]
    mode = r["params"].get("mode")
    text = r["workload"] + (f" ({mode})" if mode else "")
    if any(x.get("partial") for x in rs):
        text += " PARTIAL"
    if not all(_dig(x, "throughput", "timings_valid") is not False for x in rs):
        text += " TIMINGS NOT VALID"
    return text


def _invariants(rs: list[dict]) -> str:
    bad = sorted({k for r in rs for k, ok in r["invariants"].items() if not ok})
    return "all hold" if not bad else "FAILED: " + ", ".join(bad)


# (row name, value of a result or None, format): numbers, mean ± stdev over repeats
NUMBERS = (
    ("M events/s", lambda r: _dig(r, "throughput", "events_per_s") / 1e6, ".1f"),
    ("M ev/s per CPU", lambda r: _dig(r, "throughput", "events_per_s_per_cpu") / 1e6, ".1f"),
    ("ns/event", lambda r: _dig(r, "throughput", "ns_per_event"), ".2f"),
    ("switches/s", lambda r: _dig(r, "throughput", "switches_per_s"), ",.0f"),
    ("hit rate", lambda r: _dig(r, "throughput", "hit_rate"), ".4f"),
)
# (row name, text of a column's results): taken from the first repeat unless the function sees them all
TEXTS = (
    ("M ev/s (1 s) min/med/max", lambda rs: _spread(rs[0])),
    ("approx err max/bound", lambda rs: err_bound_text(rs[0]["accuracy"])),
    ("min approx / truth", lambda rs: _fmt(_dig(rs[0], "accuracy", "approx_min_ratio_to_truth"), ".3f")),
    ("precise = truth", lambda rs: "yes" if all(_dig(r, "accuracy", "precise_equals_truth") for r in rs) else "NO"),
    ("approx read ns med/p99", lambda rs: _pair(rs[0]["reads"]["approx_latency_ns"], "median", "p99")),
    ("precise read ns med/p99", lambda rs: _pair(rs[0]["reads"]["precise_latency_ns"], "median", "p99")),
    ("invariants", _invariants),
)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _number(rs: list[dict], get, spec: str) -> str:
    values = []
    for r in rs:
        try:
            v = get(r)
        except (TypeError, KeyError):
            v = None
        if v is not None:
            values.append(v)
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], spec)
    s = stats.summarize(values)
    return f"{format(s.mean, spec)} ± {format(s.stdev, spec)}" + (" !" if s.unstable_reasons() else "")


def columns(results: list[dict]) -> dict[str, list[dict]]:
    """Results by column: a design (and its possible CPUs when they vary); its repeats in run order."""
    many_p = len({r["params"].get("possible_cpus") for r in results}) > 1
    out: dict[str, list[dict]] = {}
    for r in results:
        name = r["design"] + (f" P={r['params'].get('possible_cpus')}" if many_p else "")
        out.setdefault(name, []).append(r)
    return out


def table(results: list[dict]) -> Table:
    cols = columns(results)
    repeats = max(len(rs) for rs in cols.values())
    t = Table(title="shmrss results", title_justify="left",
              caption=None if repeats == 1 else
              f"mean ± standard deviation over {repeats} repeats; ! unstable (pyperf's thresholds: coefficient of "
              f"variation above 10%, min or max 50% from the mean, or fewer than 3 samples)", caption_justify="left")
    t.add_column("", style="bold", no_wrap=True)
    for name in cols:
        t.add_column(name, justify="right", overflow="fold")  # a narrow page wraps a number, never cuts it
    first = next(iter(cols.values()))[0]
    t.add_row("workload", *(_workload(rs) for rs in cols.values()))
    t.add_row("CPUs", *(str(rs[0]["params"]["cpus"]) for rs in cols.values()))
    if repeats > 1:
        t.add_row("repeats", *(str(len(rs)) for rs in cols.values()))
    for name, get, spec in NUMBERS:
        t.add_row(name, *(_number(rs, get, spec) for rs in cols.values()))
    if "accuracy" in first:
        for name, text in TEXTS:
            t.add_row(name, *(text(rs) for rs in cols.values()))
    return t
