"""CSV export in will-it-scale's ``runtest.py`` convention, so its plotting scripts read our sweeps.

runtest.py prints, per testcase, the header
``tasks,processes,processes_idle,threads,threads_idle,linear``, a row
``0,0,100,0,100,0``, then one row per task count; ``processes`` and
``threads`` are operations per second summed over tasks (integers), the
``_idle`` columns the percentage of CPU time idle during the run (2 decimals),
``linear`` the larger 1-task rate times tasks; a run that gave no figure is
``-1``. Its ``postprocess.py`` reads ``NAME.csv`` with ``NAME.title`` and
``plot.js`` takes the columns by position, so the columns stay exactly these.

Ours, one file per series (workload x design, or fork/exit variant, and any
other option that varies, e.g. ``page_fault1-percpu.csv``):

* ``tasks``: emulated CPUs (one task each unless --tasks was swept);
* ``processes`` / ``threads``: median across repeats of events/s of the
  processes / threads mode (fork_exit: mm lifecycles/s; a workload with one
  mode of its own, such as mixed or rss_steal, goes in the column its mode
  names, mixed in ``processes``); ``0`` where that mode was not run, since
  lkp-tests' parser (programs/will-it-scale/parse) takes only rows matching
  ``^[0-9.,]+$``: a ``-1`` would drop the whole row;
* ``processes_idle`` / ``threads_idle``: the host's idle time during the
  measured window, in percent of all its CPUs' time (from /proc/stat through
  psutil, as runtest.py reads it), median across repeats; empty for results
  written before shmrss recorded it (never a number nobody measured);
* ``linear``: the larger of the two 1-CPU medians times tasks, empty when the
  series has no 1-CPU point;
* the ``0`` row: ``0,0,100,0,100,0``, as runtest.py writes it.

Beside each CSV, ``NAME.lkp`` holds what lkp-tests' parser computes from it,
under lkp's metric names: ``scalability`` (the last row's processes /
linear), ``per_process_ops`` and ``per_thread_ops`` (the mean over rows of
ops / tasks), ``workload`` (the sum of both columns).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from shmrss.report_data import Group
from shmrss.results_file import canonical
from shmrss.safe_io import write_text

HEADER = ("tasks", "processes", "processes_idle", "threads", "threads_idle", "linear")
_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


def _rate(r: dict) -> float:
    return r["lifecycle"]["mm_per_s"] if "lifecycle" in r else r["throughput"]["events_per_s"]


def _column(g: Group) -> str:
    return "threads" if g.key.get("mode") == "threads" else "processes"


def _series(groups: list[Group]) -> dict[str, tuple[dict, list[Group]]]:
    """Groups that differ only in CPUs and mode form one CSV; possible CPUs following the CPU count stay one."""
    out: dict[str, tuple[dict, list[Group]]] = {}
    for g in groups:
        if not g.results:
            continue
        k = {f: v for f, v in g.key.items() if f not in ("cpus", "mode")}
        k["possible_cpus"] = "=cpus" if g.key.get("possible_cpus") == g.key.get("cpus") else g.key.get("possible_cpus")
        if g.key.get("mode") not in ("processes", "threads", None):
            k["mode"] = g.key["mode"]  # a workload's own mode (mixed) is part of what the series is
        out.setdefault(canonical(k), (k, []))[1].append(g)
    # a point whose P equals its CPU count also belongs to the series of that fixed P, when there is one
    for g in groups:
        if g.results and g.key.get("possible_cpus") == g.key.get("cpus"):
            k = {f: v for f, v in g.key.items() if f not in ("cpus", "mode")}
            if g.key.get("mode") not in ("processes", "threads", None):
                k["mode"] = g.key["mode"]
            fixed = out.get(canonical(k))
            if fixed is not None and g not in fixed[1]:
                fixed[1].append(g)
    return out


def _named(groups: list[Group]) -> list[tuple[str, dict, list[Group]]]:
    """(file stem, series key, groups) of every series: ``workload-design`` (or ``fork_exit-variant``), then
    what tells apart the series of one workload and design (``P64`` for --possible-cpus 64, ``tasks40``, ...)."""
    buckets: dict[tuple, list[tuple[dict, list[Group]]]] = {}
    for k, gs in _series(groups).values():
        w = str(k.get("workload"))
        w = Path(w[5:].split("#")[0]).stem if w.startswith("file:") else w
        buckets.setdefault((w, str(k.get("lifecycle") or k.get("design"))), []).append((k, gs))
    out, used = [], set()
    for (w, unit), items in buckets.items():
        fields = dict.fromkeys(f for k, _ in items for f in k)
        varying = [f for f in fields if len({canonical({"v": k.get(f)}) for k, _ in items}) > 1]
        for k, gs in items:
            parts = [w, unit]
            for f in varying:
                v = k.get(f)
                if v is None or (f == "possible_cpus" and v == "=cpus"):
                    continue
                parts.append(f"{'P' if f == 'possible_cpus' else f}{v}")
            stem = _SAFE.sub("_", "-".join(parts))
            while stem in used:
                stem += "_"
            used.add(stem)
            out.append((stem, k, gs))
    return out


def rows(groups: list[Group]) -> list[list]:
    """The rows of one series: the 0 row, then one per CPU count (medians across repeats)."""
    import statistics

    by_cpus: dict[int, dict[str, float]] = {}
    idle: dict[int, dict[str, float]] = {}
    for g in groups:
        vs = [_rate(r) for r in g.results]
        if vs:
            by_cpus.setdefault(g.key["cpus"], {})[_column(g)] = statistics.median(vs)
        idles = [i for i in (_idle(r) for r in g.results) if i is not None]
        if idles:
            idle.setdefault(g.key["cpus"], {})[_column(g)] = statistics.median(idles)
    one = by_cpus.get(1, {})
    base = max(one.values()) if one else None
    out = [[0, 0, 100, 0, 100, 0]]
    for n in sorted(by_cpus):
        v, i = by_cpus[n], idle.get(n, {})
        out.append([n, round(v.get("processes", 0)), _pct(i.get("processes")),
                    round(v.get("threads", 0)), _pct(i.get("threads")),
                    round(base * n) if base is not None else ""])
    return out


def _idle(r: dict) -> float | None:
    section = r.get("lifecycle") if "lifecycle" in r else r.get("throughput")
    v = section.get("host_idle_pct") if isinstance(section, dict) else None
    return float(v) if isinstance(v, (int, float)) else None


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def lkp_stats(table: list[list]) -> dict[str, float]:
    """What lkp-tests' will-it-scale parser reports for these rows, under its metric names."""
    scalability, per_process, per_thread, workload = [], [], [], 0.0
    for tasks, processes, _pi, threads, _ti, linear in table:
        if tasks == 0 or (processes == 0 and threads == 0):
            continue  # lkp skips the 0 row and rows without a figure
        linear = int(linear) if linear != "" else 0
        if linear and tasks != 1:
            scalability.append(processes / linear)
        per_process.append(processes / tasks)
        per_thread.append(threads / tasks)
        workload += processes + threads
    out: dict[str, float] = {}
    if scalability:
        out["scalability"] = scalability[-1]
    if per_process:
        out["per_process_ops"] = int(sum(per_process) / len(per_process))
        out["per_thread_ops"] = int(sum(per_thread) / len(per_thread))
    if workload:
        out["workload"] = int(workload)
    return out


def _title(k: dict, groups: list[Group]) -> str:
    from shmrss.plots import host_description

    r = groups[0].results[0]
    what = "mm lifecycles/s" if r.get("lifecycle") else "counter updates (events)/s"
    unit = k.get("lifecycle") or k.get("design")
    reps = max(len(g.results) for g in groups)
    failing = sum(len(g.failing) for g in groups)
    extra = "" if k.get("possible_cpus") == "=cpus" else f", P={k.get('possible_cpus')}"
    flag = f"; INVARIANT FAILED in {failing} run{'s' if failing > 1 else ''}" if failing else ""
    return (f"shmrss {r.get('workload')} {unit}{extra}: {what}, median of up to {reps} repeats; "
            f"{host_description(r['host'])}{flag}")


def write_series(groups: list[Group], directory: Path) -> list[Path]:
    """One NAME.csv and NAME.title per series into ``directory``."""
    from shmrss.safe_io import make_dir

    make_dir(directory)  # a planted symlink is replaced, never written through
    made = []
    for stem, k, gs in _named(groups):
        path = directory / f"{stem}.csv"
        f = io.StringIO()
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows(gs))
        write_text(path, f.getvalue())  # a temporary renamed over the file: never through a symlink
        write_text(directory / f"{stem}.title", _title(k, gs) + "\n")
        stats = lkp_stats(rows(gs))
        write_text(directory / f"{stem}.lkp", "".join(
            f"{name}: {value:f}\n" if name == "scalability" else f"{name}: {value}\n" for name, value in stats.items()))
        made.append(path)
    return made


def write_combined(groups: list[Group], path: Path) -> Path:
    """Every series in one file: a leading ``series`` column (the per-series file's name) and then
    workload, design, variant and possible CPUs (``tasks`` when P is each row's CPU count, the default),
    followed by runtest.py's columns."""
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(("series", "workload", "design", "variant", "possible_cpus") + HEADER)
    for stem, k, gs in _named(groups):
        r = gs[0].results[0]
        pc = k.get("possible_cpus")
        for row in rows(gs):
            w.writerow([stem, r.get("workload"), r.get("design"), k.get("lifecycle") or "",
                        "tasks" if pc == "=cpus" else pc] + row)
    return write_text(path, f.getvalue())
