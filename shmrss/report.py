"""``shmrss report RESULTS... --out DIR``: markdown tables (min / median / max across repeats), the PNG
figures of report_figures and will-it-scale CSVs from sweep results (or ``shmrss run --json`` files).

DIR receives ``report.md``, the figures, and ``wis/NAME.csv`` + ``NAME.title``
per series; ``--csv PATH`` also writes every series into one CSV.
"""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger

from shmrss.report_data import KIND_LIFECYCLE, Group, dedup_warnings, invariant_failures, load
from shmrss.results_file import InputError

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="tables, figures and will-it-scale CSVs from sweep results")
    r.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results files of shmrss sweep (JSON lines), or shmrss run --json files")
    r.add_argument("--out", default="report", metavar="DIR",
                   help="directory for report.md, the PNGs and wis/*.csv (default ./report)")
    r.add_argument("--csv", metavar="PATH", help="also write every series into this one CSV file")


def _check_outputs(args) -> Path:
    """Refuse (InputError) an --out or --csv that cannot be written, by creating a file there, before
    anything is read or drawn (``os.access`` says yes to root on /proc)."""
    from shmrss.safe_io import OutputError, check_dir_output, check_file_output

    try:
        out = check_dir_output(args.out, "--out")
        if args.csv is not None:
            if Path(args.csv).is_dir():
                raise OutputError(f"--csv: {args.csv} is a directory; give a file name")
            if not _inside_new_out(Path(args.csv), out):
                check_file_output(args.csv, "--csv")
    except OutputError as e:
        raise InputError(str(e)) from None
    return out


def _inside_new_out(csv: Path, out: Path) -> bool:
    """True when --csv goes straight into an --out that does not exist yet: the check of --out has shown
    that directory can be made, and main makes it before the CSV is written (the gather step's form,
    ``--out report --csv report/will-it-scale.csv``)."""
    return not out.exists() and csv.parent.resolve() == out.resolve()


def main(args, err) -> int:
    out = _check_outputs(args)
    data = load(args.results)
    for n in data.notes:
        logger.warning(n)
    measured = [g for g in data.groups if g.results]
    if not measured:
        c = data.counts
        raise InputError(f"{', '.join(args.results)} holds no finished point ({c['partial']} partial, "
                         f"{c['failed']} failed)")
    out.mkdir(exist_ok=True)
    from shmrss import report_figures, wis_csv

    failed: list[str] = []  # outputs that could not be written; the others are still made
    figures = _attempt(failed, "figures", lambda: report_figures.draw_all(data.groups, out), [])
    csvs = _attempt(failed, f"CSVs in {out / 'wis'}", lambda: wis_csv.write_series(data.groups, out / "wis"), [])
    combined = _attempt(failed, f"--csv {args.csv}", lambda: wis_csv.write_combined(data.groups, Path(args.csv)),
                        None) if args.csv else None
    md = out / "report.md"
    from shmrss.safe_io import write_text

    wrote_md = _attempt(failed, str(md), lambda: write_text(md, render(data, args.results, figures, csvs, out,
                                                                        combined)), None)
    for name, path, note in figures:
        if note:
            logger.info("figure {}: {}: {}", "skipped" if path is None else "drawn", name, note)
    failures = invariant_failures([r for g in data.groups for r in g.results])
    if failures:
        logger.error("INVARIANT FAILED in {} measured point{}: {}", len(failures),
                     "s" if len(failures) > 1 else "", "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
    logger.info("wrote {}({} figures, {} CSV files in {}){}", f"{md} " if wrote_md else "",
                sum(1 for f in figures if f[1]), len(csvs), out / "wis", f"; combined CSV {combined}" if combined else "")
    return EXIT_FAILED if failed else EXIT_OK


def _attempt(failed: list[str], what: str, make, fallback):
    """``make()``; on an OSError say what could not be written, note it and go on with ``fallback``."""
    try:
        return make()
    except OSError as e:
        logger.error("could not write {}: {}", what, getattr(e, "strerror", None) or e)
        failed.append(what)
        return fallback


# ------------------------------------------------------------------ markdown

def _n(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _meps(v: float) -> str:
    m = v / 1e6
    return f"{m:,.1f}" if m >= 10 else f"{m:.3g}"


def _spread(s, fmt) -> str:
    return "-" if s is None else f"{fmt(s[0])} / **{fmt(s[1])}** / {fmt(s[2])}"


def _invariants(g: Group) -> str:
    bad = g.failing
    if not bad:
        return "all hold"
    names = sorted({k for r in bad for k, ok in r["invariants"].items() if not ok})
    return f"**FAILED** in {len(bad)} of {len(g.results)}: {', '.join(names)}"


def _design_order(g: Group):
    from shmrss.designs import DESIGNS
    from shmrss.lifecycle import VARIANTS

    d, v = g.key.get("design"), g.key.get("lifecycle")
    return (VARIANTS.index(v) if v in VARIANTS else -1, DESIGNS.index(d) if d in DESIGNS else 99, str(d),
            g.key.get("cpus") or 0, g.key.get("possible_cpus") or 0, g.key.get("tasks") or 0)


def _workload(g: Group) -> str:
    if g.results:
        return g.results[0].get("workload") or str(g.key.get("workload"))
    return str(g.key.get("workload"))


def _others(groups: list[Group], shown: set[str]) -> list[str]:
    """Key fields, beyond the table's own columns, whose value differs between rows."""
    from shmrss.results_file import canonical

    fields = [f for f in dict.fromkeys(f for g in groups for f in g.key) if f not in shown]
    return [f for f in fields if len({canonical({"v": g.key.get(f)}) for g in groups}) > 1]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _run_table(gs: list[Group]) -> list[str]:
    other = _others(gs, {"workload", "mode", "design", "cpus", "possible_cpus"})
    head = ["design", "CPUs", "P"] + other + ["repeats", "M events/s min / **med** / max",
                                               "ns/event min / **med** / max", "approx err max / bound",
                                               "precise read ns (median)", "invariants"]
    rows = []
    for g in sorted(gs, key=_design_order):
        err = g.spread(lambda r: r["accuracy"]["approx_max_abs_error"])
        bound = g.spread(lambda r: r["accuracy"]["approx_bound"])
        pr = g.spread(lambda r: r["reads"]["precise_latency_ns"]["median"])
        rows.append([str(g.key.get("design")), str(g.key.get("cpus")), str(g.key.get("possible_cpus"))]
                    + [str(g.key.get(f)) for f in other]
                    + [_repeats(g),
                       _spread(g.spread(lambda r: r["throughput"]["events_per_s"]), _meps),
                       _spread(g.spread(lambda r: r["throughput"]["ns_per_event"]), lambda v: f"{v:.2f}"),
                       "-" if err is None else f"{err[2]:,.0f} / {_n(bound and bound[2], ',.0f')}",
                       "-" if pr is None else f"{pr[1]:,.0f}",
                       _invariants(g)])
    return _table(head, rows)


def _repeats(g: Group) -> str:
    extra = []
    if g.partial:
        extra.append(f"{g.partial} partial")
    if g.failed:
        extra.append(f"{len(g.failed)} failed")
    return str(len(g.results)) + (f" (+{', '.join(extra)})" if extra else "")


def _oom_table(gs: list[Group]) -> list[str]:
    gs = [g for g in gs if any(r.get("oom") for r in g.results)]
    if not gs:
        return []
    head = ["design", "mms", "P", "CPUs", "repeats", "selections (judged), median", "disagreements (max)",
            "precise sums / selection", "2-pass ns (median)", "all-precise ns (median)", "invariants"]
    rows = []
    for g in sorted(gs, key=lambda g: (g.results[0]["params"]["mms"], _design_order(g))):
        def med(get):
            s = g.spread(get)
            return s[1] if s else None

        dis = g.spread(lambda r: r["oom"]["disagreements"])
        rows.append([str(g.key.get("design")), f"{g.results[0]['params']['mms']:,}", str(g.key.get("possible_cpus")),
                     str(g.key.get("cpus")), _repeats(g),
                     f"{_n(med(lambda r: r['oom']['selections']), ',.0f')} "
                     f"({_n(med(lambda r: r['oom']['judged']), ',.0f')})",
                     "-" if dis is None else f"{dis[2]:.0f}" + (" **DISAGREE**" if dis[2] else ""),
                     _n(med(lambda r: r["oom"]["precise_sums_mean"]), ".1f"),
                     _n(med(lambda r: r["oom"]["two_pass_latency_ns"]["median"]), ",.0f"),
                     _n(med(lambda r: r["oom"]["precise_latency_ns"]["median"]), ",.0f"),
                     _invariants(g)])
    return _table(head, rows)


def _life_table(gs: list[Group]) -> list[str]:
    other = _others(gs, {"workload", "mode", "design", "lifecycle", "cpus", "possible_cpus"})
    head = ["variant", "design", "CPUs", "P"] + other + ["repeats", "mm/s min / **med** / max", "init ns",
                                                          "teardown ns", "mutex wait ns", "reused", "invariants"]
    rows = []
    for g in sorted(gs, key=_design_order):
        def med(key, spec=",.0f"):
            s = g.spread(lambda r: r["lifecycle"][key])
            return "-" if s is None else format(s[1], spec)

        rows.append([str(g.key.get("lifecycle")), str(g.key.get("design")), str(g.key.get("cpus")),
                     str(g.key.get("possible_cpus"))] + [str(g.key.get(f)) for f in other]
                    + [_repeats(g), _spread(g.spread(lambda r: r["lifecycle"]["mm_per_s"]), lambda v: f"{v:,.0f}"),
                       med("init_ns_per_mm"), med("teardown_ns_per_mm"), med("mutex_wait_ns_per_mm"),
                       med("reused_fraction", ".2f"), _invariants(g)])
    return _table(head, rows)


def render(data, sources: list[str], figures, csvs: list[Path], out: Path, combined: Path | None) -> str:
    """report.md: what was read, the failures first, then the tables, figures, CSVs, warnings and notes."""
    results = [r for g in data.groups for r in g.results]
    lines = _header(data, sources, results)
    lines += _failures(data, results)
    lines += _tables(data)
    lines += _figures(figures, out)
    lines += _csv_section(csvs, out, combined)
    warns = dedup_warnings(results)
    if warns:
        lines += ["## Warnings of the runs", ""]
        lines += [f"- ({k} of {len(results)} runs) {w}" for w, k in warns] + [""]
    if data.notes:
        lines += ["## Notes on the input", ""] + [f"- {n}" for n in data.notes] + [""]
    return "\n".join(lines)


def _header(data, sources: list[str], results: list[dict]) -> list[str]:
    from shmrss.plots import host_description

    c = data.counts
    lines = ["# shmrss report", "",
             f"From {', '.join(sources)}: {sum(c.values())} lines, {c['ok']} measured with every invariant "
             f"holding, {c['invariant_failed']} measured with a failed invariant, {c['partial']} partial "
             f"(interrupted) and {c['failed']} failed (no result)"
             + (f", {data.redone} of these {c['partial'] + c['failed']} redone by a later sweep"
                if data.redone else "")
             + f". Written {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    for h in dict.fromkeys(host_description(r["host"]) for r in results if "host" in r):
        lines.append(f"Host: {h}.")
    lines.append("")
    lines.append("Each cell is the minimum / **median** / maximum across the repeats of one point (the median "
                 "alone where marked); a point is one `shmrss run` of one design (or fork/exit variant) at one "
                 "CPU count and possible-CPU count (P).")
    lines.append("")
    return lines


def _failures(data, results: list[dict]) -> list[str]:
    """The points that broke an invariant, and the ones not finished (partial or failed)."""
    lines: list[str] = []
    failures = invariant_failures(results)
    if failures:
        lines += ["## INVARIANT FAILED", "",
                  f"**{len(failures)} measured point{'s' if len(failures) > 1 else ''} broke an invariant.** "
                  "Their figures are in the tables and marked with a red X in the figures; a design that breaks "
                  "its promise is not a faster design.", ""]
        lines += [f"- **{f}**" for f in failures] + [""]
    unfinished = [g for g in data.groups if g.partial or g.failed]
    if unfinished:
        lines += ["## Points not finished", "",
                  "Partial points (interrupted) and failed ones are left out of tables and figures; "
                  "`shmrss sweep` with the same options runs them again.", ""]
        for g in unfinished:
            k = g.key
            what = (f"{k.get('lifecycle') or k.get('design')} {_workload(g)} {k.get('mode') or ''} "
                    f"{k.get('cpus')} CPUs P={k.get('possible_cpus')}")
            errs = list(dict.fromkeys(g.failed))
            lines.append(f"- {what}: {g.partial} partial, {len(g.failed)} failed"
                         + (f" ({'; '.join(e for e in errs[:2])})" if errs else ""))
        lines.append("")
    return lines


def _tables(data) -> list[str]:
    """One table per workload and mode (and an OOM table where the reader selected victims)."""
    lines = ["## Tables", ""]
    by_table: dict[tuple, list[Group]] = {}
    for g in data.groups:
        if g.results:
            by_table.setdefault((_workload(g), g.key.get("mode"), g.kind), []).append(g)
    for (wl, mode, kind), gs in sorted(by_table.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if kind == KIND_LIFECYCLE:
            lines += [f"### {wl}: mm lifecycles (fork/exit)", ""] + _life_table(gs) + [""]
            continue
        m = f" ({mode})" if mode and mode != wl else ""
        lines += [f"### {wl}{m}: throughput and accuracy", ""] + _run_table(gs) + [""]
        oom = _oom_table(gs)
        if oom:
            lines += [f"### {wl}{m}: OOM victim selection, 2-pass vs all-precise", ""] + oom + [""]
    return lines


def _figures(figures, out: Path) -> list[str]:
    lines = ["## Figures", ""]
    for name, path, note in figures:
        if path is not None:
            lines += [f"![{name}]({path.relative_to(out)})", ""]
            if note:
                lines += [f"({name}: {note}.)", ""]
    skipped = [(name, why) for name, path, why in figures if path is None]
    if skipped:
        lines += ["Not drawn:", ""] + [f"- {name}: {why}" for name, why in skipped] + [""]
    return lines


def _csv_section(csvs: list[Path], out: Path, combined: Path | None) -> list[str]:
    lines = ["## CSV (will-it-scale convention)", "",
             "`tasks,processes,processes_idle,threads,threads_idle,linear`, one file per series in `wis/` with "
             "its `.title` (runtest.py's layout, so will-it-scale's postprocess.py and plot.js read them): "
             "`tasks` = emulated CPUs, `processes`/`threads` = median events/s (fork_exit: mm lifecycles/s) of "
             "that mode, `0` where the mode was not run (lkp-tests' parser drops a row holding `-1`); the `_idle` "
             "columns = the host's median idle time in percent during the measured windows (empty where not "
             "measured); `linear` = the larger 1-CPU median x tasks, empty without a 1-CPU point; the first row is "
             "runtest.py's `0,0,100,0,100,0`; `NAME.lkp` = what lkp-tests' parser computes from the CSV.", ""]
    lines += [f"- `{p.relative_to(out)}`" for p in csvs]
    if combined is not None:
        lines.append(f"- `{combined}`: every series, with leading series, workload, design, variant and "
                     f"possible_cpus columns")
    lines.append("")
    return lines
