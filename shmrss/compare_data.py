"""What ``shmrss compare`` compares: the sides read from results files, their points matched, and one row
per point, metric and NEW side with both sides' runs, the change and its significance.

Each file is one side and holds the results of one identity (host, kernel,
label: ``host_meta.identity``): results of different identities are never
merged. Points are matched across sides by their parameters. The sample is a
run: a side's values of a metric at a point are one per finished run (a
``--repeat`` of ``shmrss run``, a sweep's repeat, a result of the file), each
the result's own figure (``throughput.events_per_s``, not a mean of its
per-second rates). The per-second rates inside a run describe how steady that
run was (``within_run_cv``) and are never samples: they are correlated and
carry none of the run-to-run variance.

A pooled side (``pool``: ``compare A1 A2 A3 --vs B1 B2 B3``) is several files
of one identity, each one invocation of ``shmrss run``: its sample is one value
per file, the mean of that file's runs (``stats.invocation_means``), and the
runs stay in the row, by file.

Significance is ``stats.significance`` per row (Welch's t-test at 5%, with at
least ``stats.MIN_RUNS`` runs a side), as pyperf and lkp-tests judge each
benchmark: each row is its own test, so among R unchanged rows about R/20 are
marked by chance (the legend says how many rows were judged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from shmrss import stats
from shmrss.host_meta import identity, identity_name
from shmrss.report_data import derived_key, kind_of
from shmrss.results_file import FINISHED, InputError, canonical, read_records, status_of

MAX_VALUE = 1e18  # a figure beyond this is not a measurement (and would overflow the sums)


def _dig(r, *path):
    for p in path:
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


def number(v) -> float | None:
    """A finite real number within MAX_VALUE, else None (a bool, a string, NaN, 1e308 are not figures)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return f if math.isfinite(f) and abs(f) <= MAX_VALUE else None


@dataclass(frozen=True)
class Metric:
    name: str
    path: tuple[str, ...]
    higher_is_better: bool
    unit: str = ""
    step_path: tuple[str, ...] | None = None  # where a result says the resolution of this metric

    def value(self, result: dict) -> float | None:
        return number(_dig(result, *self.path))

    def resolution(self, results: list[dict]) -> float:
        """The coarsest step these results are quantised to (the TSC step for a latency), else 0."""
        if self.step_path is None:
            return 0.0
        steps = [number(_dig(r, *self.step_path)) for r in results]
        return max((s for s in steps if s is not None and s > 0), default=0.0)


_STEP = ("reads", "timer_step_ns")
METRICS = (
    Metric("events/s", ("throughput", "events_per_s"), True),
    Metric("ns/event", ("throughput", "ns_per_event"), False, "ns"),
    Metric("approx read ns", ("reads", "approx_latency_ns", "median"), False, "ns", _STEP),
    Metric("precise read ns", ("reads", "precise_latency_ns", "median"), False, "ns", _STEP),
    Metric("mm lifecycles/s", ("lifecycle", "mm_per_s"), True),
)


@dataclass
class Side:
    path: str
    name: str
    points: dict  # canonical point key -> (key, [results])
    notes: list[str]
    ident: str = ""  # the canonical identity of its results
    paths: list[str] = field(default_factory=list)  # a pooled side: its files, one invocation each
    origin: dict = field(default_factory=dict)  # a pooled side: canonical point key -> each result's file index

    @property
    def pooled(self) -> bool:
        return bool(self.paths)

    @property
    def file_name(self) -> str:
        """The side named by its file(s): "aa1.json", or "aa1.json..aa4.json (4 files)"."""
        if not self.pooled or len(self.paths) == 1:
            return Path(self.path).name
        return f"{Path(self.paths[0]).name}..{Path(self.paths[-1]).name} ({len(self.paths)} files)"


def load_side(path: str) -> Side:
    """The finished results of one file, by point; InputError (with the reader's reasons) when none."""
    records, notes = read_records(path)
    results = []
    for r in records:
        if kind_of(r) is None or status_of(r) not in FINISHED:
            continue
        try:
            key = derived_key(r)
        except (AttributeError, TypeError, ValueError, OverflowError, MemoryError):
            notes.append(f"{path}: a result with malformed parameters was skipped")
            continue
        results.append((key, r))
    if not results:
        notes = _not_utf8(path) or notes
        why = f" ({'; '.join(notes[:3])})" if notes else ""
        raise InputError(f"{path} holds no finished shmrss result{why}")
    idents = {canonical(identity(r)) for _, r in results}
    if len(idents) > 1:
        raise InputError(f"{path} holds results of {len(idents)} hosts, kernels or labels: compare needs one per "
                         f"file (shmrss report keeps them apart)")
    points: dict = {}
    for key, r in results:
        points.setdefault(canonical(key), (key, []))[1].append(r)
    return Side(path, identity_name(identity(results[0][1])), points, notes, ident=idents.pop())


def pool(paths: list[str]) -> Side:
    """One side from several files, each one invocation (``compare A1 A2 A3 --vs B1 B2 B3``): their results by
    point, each remembering its file, so that a row's sample is one value per file (``stats.invocation_means``).
    The files must share one identity."""
    sides = [load_side(p) for p in paths]
    if len({s.ident for s in sides}) > 1:
        raise InputError(f"{', '.join(paths)} hold results of several hosts, kernels or labels: the files pooled "
                         "into one side must share one")
    points: dict = {}
    origin: dict = {}
    for i, side in enumerate(sides):
        for pid, (key, results) in side.points.items():
            points.setdefault(pid, (key, []))[1].extend(results)
            origin.setdefault(pid, []).extend([i] * len(results))
    notes = [n for s in sides for n in s.notes]
    return Side(paths[0], sides[0].name, points, notes, sides[0].ident, list(paths), origin)


def _not_utf8(path: str) -> list[str]:
    """Why a file is not text, when that is why nothing in it could be read (a pretty-printed run JSON with one
    bad byte otherwise reads as lines cut short)."""
    from shmrss.results_file import MAX_FILE_BYTES
    from shmrss.safe_io import InputFileError, read_regular

    try:
        read_regular(path, MAX_FILE_BYTES).decode("utf-8")
    except InputFileError:
        return []
    except UnicodeDecodeError as e:
        return [f"byte 0x{e.object[e.start]:02x} at offset {e.start} is not UTF-8"]
    return []


def within_run_cv(result: dict) -> float | None:
    """How steady one run was: the coefficient of variation of its per-second rates (None below 2)."""
    rates = _dig(result, "throughput", "events_per_s_samples")
    values = [number(v) for v in rates] if isinstance(rates, list) else []
    if len(values) < 2 or None in values:
        return None
    return stats.summarize(values).cv


@dataclass
class Row:
    point: str
    metric: Metric
    base: stats.Summary
    new: stats.Summary
    base_side: str  # the name of each side in this row's one-line summary
    new_side: str
    sig: stats.Significance
    resolution: float = 0.0
    timings_valid: bool = True
    within_run_cv: float | None = None  # the largest of both sides' runs, events/s only
    unit: str = "runs"  # what a sample is: a run, or a file (an invocation) of a pooled side
    base_runs: tuple | None = None  # a pooled side's runs, by file (its samples are their means)
    new_runs: tuple | None = None

    @property
    def change_pct(self) -> float | None:
        return stats.pct_change(self.base, self.new)

    @property
    def ci_pct(self) -> tuple[float, float] | None:
        return stats.pct_ci(self.base, self.sig)

    @property
    def judged(self) -> bool:
        return self.sig.judged

    @property
    def significant(self) -> bool:
        return self.sig.significant

    @property
    def worse_pct(self) -> float:
        """How much worse NEW is than BASE, in percent (negative: better; inf: worse than a base of 0)."""
        diff = self.new.mean - self.base.mean
        worse = -diff if self.metric.higher_is_better else diff
        if self.change_pct is None:
            return math.inf if worse > 0 else 0.0
        return -self.change_pct if self.metric.higher_is_better else self.change_pct

    @property
    def unstable(self) -> bool:
        return bool(self.base.spread_reasons() or self.new.spread_reasons())


def point_label(key: dict) -> str:
    """The point in a few words: its design, workload and mode, and the options that are not their defaults."""
    defaults = {"possible_cpus": key.get("cpus"), "online_cpus": key.get("possible_cpus"), "fault_pages": [1],
                "fault_body": "none"}
    shown = ("design", "workload", "mode", "lifecycle", "cpus", "possible_cpus", "online_cpus", "fault_pages",
             "fault_body", "pack")
    return " ".join(f"{k}={key[k]}" if k not in ("design", "workload", "mode", "lifecycle") else str(key[k])
                    for k in shown if key.get(k) not in (None, False, "") and key.get(k) != defaults.get(k))


@dataclass
class Pair:
    """One point as both sides measured it, and the names the summary gives the two sides."""

    point: str
    base_name: str
    new_name: str
    base_results: list[dict]
    new_results: list[dict]
    base_origin: list[int] | None = None  # pooled sides: each result's file
    new_origin: list[int] | None = None


def _differing_name(key: dict, differs: list[str]) -> str:
    return " ".join(str(key.get(k)) if k == "design" else f"{k}={key.get(k)}" for k in differs)


def pairs(base: Side, new: Side) -> list[Pair]:
    """Every point both sides measured; two sides of one point each are compared with each other even when
    their parameters differ (the difference is the experiment, and names the sides)."""
    common = [Pair(point_label(key), base.name, new.name, results, new.points[pid][1], base.origin.get(pid),
                   new.origin.get(pid)) for pid, (key, results) in base.points.items() if pid in new.points]
    if common or len(base.points) != 1 or len(new.points) != 1:
        return common
    (bpid, (bkey, bres)), (npid, (nkey, nres)) = next(iter(base.points.items())), next(iter(new.points.items()))
    differs = sorted(k for k in set(bkey) | set(nkey) if bkey.get(k) != nkey.get(k))
    names = (_differing_name(bkey, differs), _differing_name(nkey, differs))
    if base.name != new.name:
        names = tuple(f"{n} ({s})" for n, s in zip(names, (base.name, new.name)))
    return [Pair(f"{point_label(bkey)} (new differs in: {', '.join(differs)})", *names, bres, nres,
                 base.origin.get(bpid), new.origin.get(npid))]


def _samples(results: list[dict], origin: list[int] | None, metric: Metric):
    """A side's samples of a metric at a point: one per run, or for a pooled side one per file (the mean of
    its runs), with the runs by file kept."""
    if origin is None:
        return [v for v in map(metric.value, results) if v is not None], None
    by_file: dict[int, list[float]] = {}
    for i, r in zip(origin, results):
        if (v := metric.value(r)) is not None:
            by_file.setdefault(i, []).append(v)
    runs = tuple(tuple(by_file[i]) for i in sorted(by_file))
    return stats.invocation_means(runs), runs


def _row(pair: Pair, metric: Metric) -> Row | None:
    b, b_runs = _samples(pair.base_results, pair.base_origin, metric)
    n, n_runs = _samples(pair.new_results, pair.new_origin, metric)
    if not b or not n:
        return None
    results = pair.base_results + pair.new_results
    resolution = metric.resolution(results)
    sb, sn = stats.summarize(b), stats.summarize(n)
    cvs = [c for c in map(within_run_cv, results) if c is not None] if metric.name == "events/s" else []
    valid = all(_dig(r, "throughput", "timings_valid") is not False for r in results)
    return Row(pair.point, metric, sb, sn, pair.base_name, pair.new_name, stats.significance(sb, sn, resolution),
               resolution, timings_valid=valid, within_run_cv=max(cvs, default=None),
               unit="runs" if b_runs is None else "files", base_runs=b_runs, new_runs=n_runs)


def compare(base: Side, news: list[Side]) -> list[Row]:
    """Every row of the comparison: point x metric x NEW side."""
    return [row for new in news for pair in pairs(base, new) for metric in METRICS
            if (row := _row(pair, metric)) is not None]


def regressions(rows: list[Row], threshold_pct: float) -> list[Row]:
    """Significant changes that make a metric worse by more than ``threshold_pct``."""
    return [r for r in rows if r.significant and r.worse_pct > threshold_pct]
