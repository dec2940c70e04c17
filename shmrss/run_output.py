"""``shmrss run``'s outputs: the tables, ``--json`` (a file rewritten after each design, or stdout), ``--plot``.

Each output fails on its own: a ``--json`` file that cannot be written is said once when it first fails
(the run goes on) and again after the table, which is then all that is left of the result; plots that
cannot be drawn are one error line. Either makes the exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import sys

from loguru import logger
from rich.console import Console

from shmrss.errors import EXIT_FAILED, EXIT_OK


def json_default(o):
    from shmrss.results_file import json_default as default

    return default(o)


def write_json(path: str, obj) -> None:
    """A new temporary in PATH's directory renamed over PATH (never a write through a planted symlink);
    safe_io.OutputError (one line) when it cannot be written."""
    from shmrss.safe_io import write_text

    write_text(path, json.dumps(obj, indent=1, default=json_default) + "\n")


class JsonFile:
    """--json PATH, rewritten whole after each result; ``error`` is why it could not be (said once)."""

    def __init__(self, path: str | None):
        self.path = path if path not in (None, "-") else None  # "-": stdout, written once at the end
        self.error: str | None = None

    def save(self, results: list[dict]) -> None:
        if self.path is None:
            return
        from shmrss.results_file import results_document
        from shmrss.safe_io import OutputError

        try:
            write_json(self.path, results_document(results))
        except OutputError as e:
            if self.error is None:
                logger.error("{}; the run goes on", e)
            self.error = str(e)
            return
        self.error = None


def write(spec, session, json_file: JsonFile, err: Console) -> int:
    """Every output of the session's results; the exit status, the session's or worse."""
    code = session.code
    if not session.results:
        return code
    results = session.results
    stdout_error = _write_stdout_json(results) if spec.json == "-" else None  # stdout holds the JSON alone
    _print_tables(spec, results)
    _say_result_warnings(results, session.shown)
    if stdout_error is not None:
        code = max(code, EXIT_FAILED)
        logger.error("the result could not be written to stdout: {}; what reached it is cut short, the table "
                     "above is all that is left of the result", stdout_error)
    if json_file.error is not None:
        code = max(code, EXIT_FAILED)
        logger.error("the result could not be written to {}: {}; the table above is all that is left of it",
                     spec.json, json_file.error)
    elif json_file.path is not None:
        logger.info("wrote {}", spec.json)
    if spec.plot:
        code = max(code, draw_plots(results, spec.plot))
    return code


def _write_stdout_json(results: list[dict]) -> str | None:
    """``--json -``: the document written to stdout's descriptor with os.write until every byte is taken, and
    synced when stdout is a file, so a full disk is an error here. Python's buffered stdout takes a short
    write followed by ENOSPC as success and drops the tail (a 4 KiB file, exit 0). Returns why it could not
    be written, or None."""
    import os
    import stat

    from shmrss.results_file import results_document

    text = json.dumps(results_document(results), indent=1, default=json_default) + "\n"
    fd = _stdout_fd()
    try:
        if fd is None:  # a stdout that is no file (captured): its own write is all there is
            sys.stdout.write(text)
            return None
        sys.stdout.flush()
        view = memoryview(text.encode())
        while view:
            view = view[os.write(fd, view):]
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fsync(fd)  # a file system that reports a full disk only at write-back
    except (OSError, ValueError) as e:  # ValueError: stdout closed
        return getattr(e, "strerror", None) or str(e)
    return None


def _stdout_fd() -> int | None:
    try:
        return sys.stdout.fileno()
    except (OSError, ValueError):  # a stdout that is no file (captured)
        return None


def _print_tables(spec, results: list[dict]) -> None:
    """The run's tables on stdout (stderr with ``--json -``); piped, as wide as the widest needs, so no
    cell is folded."""
    from shmrss import lifecycle, result, run_table
    from shmrss.console import fitted

    view = None
    if spec.fork_exit:
        tables = [lifecycle.table(results)]
    elif spec.wide:
        tables = [result.table(results)]
    else:
        view = run_table.view(results)
        tables = [view.table]
    if spec.fault_body != "none":
        from shmrss.faultbody import table as fault_body_table

        tables.append(fault_body_table(results))
    if spec.host_reference:
        from shmrss.host_reference_stats import table as host_reference_table

        tables.append(host_reference_table(results))
    if spec.perf:
        from shmrss.perf_report import table as perf_table

        tables.append(perf_table(results))
    tables = [t for t in tables if t is not None]
    console = fitted(*tables, stderr=spec.json == "-")
    if view is not None:
        run_table.print_view(console, view)
        tables = tables[1:]
    for t in tables:
        console.print(t)


def _say_result_warnings(results: list[dict], shown: set[str]) -> None:
    for res in results:
        for w in res["warnings"]:
            if w not in shown:
                shown.add(w)
                logger.warning(w)


def draw_plots(results: list[dict], directory: str) -> int:
    from shmrss import plots

    try:
        for path in plots.draw(results, directory):
            logger.info("wrote {}", path)
    except (OSError, ValueError) as e:
        logger.error("the plots could not be written to {}: {}", directory, getattr(e, "strerror", None) or e)
        return EXIT_FAILED
    return EXIT_OK
