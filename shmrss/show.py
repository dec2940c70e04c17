"""``shmrss show RESULTS``: ``shmrss run``'s table again, from a results file (as ``pyperf show`` re-reads a
benchmark file).

The file is a ``shmrss run --json`` file or a sweep's JSON lines, read by ``results_file.read_records``.
Results that one ``shmrss run`` would have printed in one table form one table: the same point
(``report_data.derived_key``: workload, mode, CPUs and the other options) but for its design and
possible CPUs, measured by one identity (host, kernel, label); their designs are the columns and their
repeats are taken in file order. fork/exit results get ``run``'s fork/exit table; ``--wide`` the full
one-row-per-result table. ``--format``: ``table`` (the terminal table; piped, as wide as it needs),
``markdown`` (GitHub tables), ``plain`` (aligned columns without a box, for grep and mail). Bad input
is one line and exit 2.
"""

from __future__ import annotations

from rich.markup import MarkupError
from rich.table import Table
from rich.text import Text

from shmrss.host_meta import identity, identity_name
from shmrss.report_data import derived_key, kind_of
from shmrss.results_file import InputError, canonical, read_records
from shmrss.run_table import View

FORMATS = ("table", "markdown", "plain")
_NOT_TABLE_KEYS = ("design", "possible_cpus", "online_cpus", "lifecycle")  # columns of one table, not tables


def add_parser(sub) -> None:
    s = sub.add_parser("show", help="show the run table of a results file again (run --json or sweep JSONL)")
    s.add_argument("results", metavar="RESULTS",
                   help="a shmrss run --json file or a shmrss sweep results file (JSON lines)")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table (terminal), markdown or plain (aligned text without a box); default table")
    s.add_argument("--wide", action="store_true", help="the full table, one row per result (as run --wide)")


def _is_result(r: dict) -> bool:
    return kind_of(r) is not None and isinstance(r.get("design"), str) and isinstance(r.get("params"), dict)


def load(path: str) -> tuple[list[list[dict]], list[str]]:
    """The results of the file as tables (each a list of results, in file order) and notes on what was
    left out. InputError when the file holds no result."""
    records, notes = read_records(path)
    results = [r for r in records if _is_result(r)]
    if not results:  # what was left out says why: the first reason is the one line
        why = f"; {notes[0]}" if notes else ""
        raise InputError(f"{path} holds no shmrss result (a shmrss run --json file or a sweep's results file){why}")
    if len(results) < len(records):
        n = len(records) - len(results)
        notes.append(f"{path}: {n} line{'s' if n > 1 else ''} without a result (a failed sweep point) not shown")
    last: dict[str, dict] = {}  # a sweep point written twice (a redone point): the last line, as report does
    for i, r in enumerate(results):
        key = r.get("sweep", {}).get("key") if isinstance(r.get("sweep"), dict) else None
        last[canonical({"k": key, "who": identity(r)}) if isinstance(key, dict) else str(i)] = r
    tables: dict[str, list[dict]] = {}
    for r in last.values():
        key = {k: v for k, v in derived_key(r).items() if k not in _NOT_TABLE_KEYS}
        tables.setdefault(canonical({**key, "who": identity(r)}), []).append(r)
    return list(tables.values()), notes


def heading(results: list[dict]) -> str:
    """The point a table is of, in a few words, and who measured it."""
    r, p = results[0], results[0]["params"]
    what = "fork_exit" if kind_of(r) == "lifecycle" else f"{r.get('workload')} {p.get('mode') or ''}".strip()
    cpus = p.get("cpus")
    return f"{what}, {cpus} CPU{'' if cpus == 1 else 's'}, {identity_name(identity(r))}"


def view(results: list[dict], wide: bool = False) -> View:
    from shmrss import lifecycle, result, run_table

    if kind_of(results[0]) == "lifecycle":
        return View([], lifecycle.table(results))
    if wide:
        return View([], result.table(results))
    return run_table.view(results)


def _plain(cell) -> str:
    if isinstance(cell, Text):
        return cell.plain
    try:
        return Text.from_markup(str(cell)).plain
    except MarkupError:
        return str(cell)


def grid(t: Table) -> tuple[list[str], list[list[str]]]:
    """A rich table's header and rows as plain text."""
    header = [_plain(c.header) for c in t.columns]
    cells = [[_plain(x) for x in c.cells] for c in t.columns]
    return header, [list(row) for row in zip(*cells)]


def markdown(v: View) -> str:
    header, body = grid(v.table)

    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    out = [*v.head, ""] if v.head else []
    out += [line(header), "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += [line(row) for row in body]
    for note in v.notes:  # a paragraph each
        out += ["", note]
    return "\n".join(out) + "\n"


def plain(v: View) -> str:
    header, body = grid(v.table)
    rows = [[c.replace("\n", " ") for c in row] for row in [header, *body]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    return "\n".join([*v.head, *lines, *v.notes]) + "\n"


def main(args, out_console_for) -> int:
    """``shmrss show``: every table of the file in the chosen format; ``out_console_for(*tables)`` gives the
    console the terminal tables go to."""
    from loguru import logger

    tables, notes = load(args.results)
    for n in notes:
        logger.warning(n)
    try:  # a result of another version, or a hand-edited one: one line, never a traceback
        _write(args, tables, out_console_for)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, MarkupError) as e:
        raise InputError(f"{args.results}: a result this version of shmrss cannot show "
                         f"({type(e).__name__}: {e})") from None
    return 0


def _write(args, tables: list[list[dict]], out_console_for) -> None:
    import sys

    views = [view(rs, args.wide) for rs in tables]
    headings = [heading(rs) for rs in tables] if len(tables) > 1 else [None]
    if args.format != "table":
        render = markdown if args.format == "markdown" else plain
        texts = [render(v) for v in views]
        sys.stdout.write("\n".join((f"## {h}\n\n" if args.format == "markdown" else f"{h}\n") + t if h else t
                                   for h, t in zip(headings, texts)))
        return
    from shmrss.run_table import print_view

    console = out_console_for(*(v.table for v in views))
    for i, (h, v) in enumerate(zip(headings, views)):
        if i:
            console.print()
        if h:
            console.print(h, markup=False, highlight=False, soft_wrap=True)
        print_view(console, v)
