"""The sweep results file: one JSON object per line, appended with fsync, read back for resume and report.

A line is a ``shmrss run`` result object with a ``sweep`` member (the point's
key, status, exit code, wall seconds), or only a ``sweep`` member when the
point produced no result. ``status`` is one of:

* ``ok``: measured, every invariant held;
* ``invariant_failed``: measured, an invariant failed (still a measured point);
* ``partial``: interrupted, measured up to the interrupt;
* ``failed``: no result (the run died, timed out or was refused).

Only ``ok`` and ``invariant_failed`` count as finished: resume redoes the rest.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from shmrss.results_valid import SCHEMA_VERSION  # re-exported: what run --json writes
from shmrss.safe_io import MAX_LINE_BYTES

FINISHED = ("ok", "invariant_failed")
STATUSES = ("ok", "invariant_failed", "partial", "failed")


class InputError(ValueError):
    """Bad input to sweep or report (a file that cannot be used, an impossible matrix); one line, exit 2."""


def canonical(key: dict) -> str:
    """The identity of a point: its key as sorted, compact JSON; a field set to null is the same as no field."""
    return json.dumps({k: v for k, v in key.items() if v is not None}, sort_keys=True, separators=(",", ":"))


def status_of(record: dict) -> str:
    """A line's status; a plain ``shmrss run`` result (no ``sweep`` member) is judged by its content."""
    meta = record.get("sweep")
    if isinstance(meta, dict) and meta.get("status") in STATUSES:
        return meta["status"]
    if record.get("partial"):
        return "partial"
    if isinstance(record.get("invariants"), dict):
        return "ok" if all(record["invariants"].values()) else "invariant_failed"
    return "failed"


MAX_FILE_BYTES = 1 << 30  # a results file, read as a stream; a point's line is tens of kB
MAX_DOCUMENT_BYTES = 64 << 20  # a whole ``run --json`` document, parsed at once
LEADING_JUNK = 1000  # lines without one result or point before the first: not a results file
_BOM = b"\xef\xbb\xbf"
_SHOWN = 5  # bad lines named one by one; the rest only counted


@dataclass
class Read:
    """What ``read`` found in one results file."""
    records: list[dict]  # results and sweep points that fit the schema, in file order
    notes: list[str]  # one line each: what was skipped and why
    document: bool = False  # a ``run --json`` document (or another JSON value), not JSON lines
    foreign: int = 0  # JSON-lines objects without a ``sweep`` member (not written by ``shmrss sweep``)


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Every result and sweep point of a results file and notes (one line each) about what was skipped.

    A JSON-lines file, or a ``shmrss run --json`` file (``{"schema_version": 1, "results": [...]}``, or
    from older versions one result object or a list of them). Only a regular file is read (a FIFO or
    /dev/zero is refused at once), up to MAX_FILE_BYTES, line by line, so memory follows what is kept; a
    leading BOM is accepted. Each object is decoded strictly and checked against the shipped schema
    (``results_valid``): a line that is not one (cut short by a crash, too long, NaN, a key twice, a field of
    the wrong type) is skipped with a note naming the file, the line and the field. InputError (one line):
    a file whose first line is not JSON, whose first LEADING_JUNK lines hold no result, a document that
    cannot be read whole, or one of a newer schema_version."""
    got = read(path)
    return got.records, got.notes


def read(path: str | Path) -> Read:
    """``read_records`` with what ``sweep`` needs to know besides: whether the file is a document, and how
    many of its lines are objects that no sweep wrote."""
    from shmrss.safe_io import InputFileError, open_regular

    try:
        f = open_regular(path, MAX_FILE_BYTES)
    except InputFileError as e:
        raise InputError(str(e)) from None
    try:
        if f.read(len(_BOM)) != _BOM:
            f.seek(0)
        first = _first_line(f)
        if first.strip() == b"{" or first.lstrip().startswith(b"["):
            return _read_document(path, first, f)
        if first.lstrip().startswith(b"{") and len(first) <= MAX_LINE_BYTES and _decode(first)[1]:
            # a first line that is no whole object: a document laid out by hand, or a line cut by a crash
            where = f.tell()
            doc, why = _decode(first + f.read(MAX_DOCUMENT_BYTES))
            if not why:
                return _document_records(path, doc)
            f.seek(where)
        return _read_lines(path, first, f)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        f.close()


def sweep_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """``read_records`` of an existing ``sweep --out`` file, refusing (InputError) a file that a sweep did not
    write, which appending would make unreadable: a ``shmrss run --json`` document or any other JSON value,
    lines that are objects without a ``sweep`` member, text (its first line is not JSON)."""
    got = read(path)
    if got.document:
        raise InputError(f"--out {path} is a JSON document (a `shmrss run --json` file?), not a sweep's JSON lines: "
                         f"appending would make it unreadable; give another --out")
    if got.foreign:
        raise InputError(f"--out {path} holds {got.foreign} line{'s' if got.foreign > 1 else ''} that no shmrss "
                         f"sweep wrote: appending would mix them with its points; give another --out")
    return got.records, got.notes


def _first_line(f) -> bytes:
    """The first line that is not blank (the file is left just after it); b"" for an empty file."""
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw or raw.strip(b" \t\r\n"):
            return raw


def _read_document(path, first: bytes, f) -> Read:
    """A file that is one JSON document: read whole (up to MAX_DOCUMENT_BYTES), strictly decoded."""
    data = first + f.read(MAX_DOCUMENT_BYTES + 1 - len(first))
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{path} is a JSON document of more than {MAX_DOCUMENT_BYTES >> 20} MiB: not read")
    doc, why = _decode(data)
    if why:
        raise InputError(f"{path} (one JSON document) {why}: not read")
    return _document_records(path, doc)


def _document_records(path, doc) -> Read:
    from shmrss.results_valid import problem

    results = _results_of(path, doc)
    records, notes = [], []
    for i, r in enumerate(results):
        if (why := problem(r)) is None:
            records.append(r)
        elif len(notes) < _SHOWN:
            notes.append(f"{path}: result {i + 1} {why}; skipped")
    if len(results) - len(records) > len(notes):
        notes.append(f"{path}: skipped {len(results) - len(records)} of {len(results)} results")
    return Read(records, notes, document=True)


def _results_of(path, doc) -> list:
    """The results of a decoded document; InputError for a newer or nonsense schema_version, or no results."""
    from shmrss.results_valid import version_problem

    if isinstance(doc, dict) and "schema_version" in doc:
        if (why := version_problem(doc["schema_version"])) is not None:
            raise InputError(f"{path}: {why}")
    results = results_of_document(doc)
    if results is None:
        raise InputError(f"{path} is JSON but not a shmrss results document")
    return results


def _read_lines(path, first: bytes, f) -> Read:
    """A JSON-lines file, one object a line, streamed."""
    from shmrss.results_valid import problem

    got = Read([], [])
    bad, nul, n = 0, False, 0
    for n, raw in enumerate(_lines(first, f), start=1):
        if raw is None:
            why = f"is longer than {MAX_LINE_BYTES >> 20} MiB"
        elif not raw.strip():
            continue
        elif not raw.strip(b"\0 \t\r\n"):
            nul = True  # a crash left the file's tail as zeros
            continue
        else:
            obj, why = _decode(raw)
            if why and not got.records and not bad and raw.lstrip()[:1] not in (b"{", b"["):
                raise InputError(f"{path}:{n} is not JSON: not a shmrss results file")
            if not why and isinstance(obj, dict) and "schema_version" in obj:  # a document on one line
                got.document = True
                _keep_valid(path, n, _results_of(path, obj), got)
                continue
            if not why:
                got.foreign += isinstance(obj, dict) and "sweep" not in obj
                why = problem(obj)
                if why is None:
                    got.records.append(obj)
                    continue
        bad += 1
        if bad <= _SHOWN:
            got.notes.append(f"{path}:{n} {why}; skipped")
        if bad >= LEADING_JUNK and not got.records:
            raise InputError(f"{path}: none of its first {bad} lines is a shmrss result or sweep point: not a "
                             f"shmrss results file")
    if bad:
        got.notes.append(f"{path}: skipped {bad} bad line{'s' if bad > 1 else ''} of {len(got.records) + bad}")
    if nul:
        got.notes.append(f"{path}: a NUL-filled tail (left by a crash) was ignored")
    return got


def _keep_valid(path, n: int, results: list, got: Read) -> None:
    from shmrss.results_valid import problem

    for i, r in enumerate(results):
        if (why := problem(r)) is None:
            got.records.append(r)
        else:
            got.notes.append(f"{path}:{n} result {i + 1} {why}; skipped")


def _lines(first: bytes, f):
    """``first``, then each line of ``f``; None for a line longer than MAX_LINE_BYTES (skipped unread)."""
    raw = first
    while raw:
        if len(raw) > MAX_LINE_BYTES:
            while raw and not raw.endswith(b"\n"):  # the rest of the long line, in bounded pieces
                raw = f.readline(MAX_LINE_BYTES)
            yield None
        else:
            yield raw
        raw = f.readline(MAX_LINE_BYTES + 1)


def _decode(raw: bytes) -> tuple[object, str]:
    """(the value, "") or (None, why it is not one), strictly (results_valid.decode)."""
    from shmrss.results_valid import Refused, decode

    try:
        return decode(raw.decode("utf-8")), ""
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    except Refused as e:
        return None, str(e)
    except json.JSONDecodeError:
        if raw.lstrip()[:1] in (b"{", b"["):
            return None, "is cut short (an interrupted write)"
        return None, "is not JSON"
    except RecursionError:
        return None, "is nested too deep"
    except ValueError:  # an integer of more than 4300 digits (sys.get_int_max_str_digits)
        return None, "holds a number too long to read"




def results_document(results: list[dict]) -> dict:
    """What ``shmrss run --json`` writes: always an object, a single design being a list of one."""
    return {"schema_version": SCHEMA_VERSION, "results": list(results)}


def results_of_document(data) -> list[dict] | None:
    """The results of a parsed ``run --json`` document in any shape it has had (object with
    ``results``, one result, a list of results); None when it is none of these."""
    if isinstance(data, dict) and "schema_version" in data:
        data = data.get("results")
    elif isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    return None


def finished_keys(records: list[dict]) -> set[str]:
    """Canonical keys of the finished points (resume skips them)."""
    done = set()
    for r in records:
        meta = r.get("sweep")
        if isinstance(meta, dict) and isinstance(meta.get("key"), dict) and status_of(r) in FINISHED:
            done.add(canonical(meta["key"]))
    return done


class Appender:
    """Appends lines to the results file; holds an exclusive lock so that two sweeps cannot interleave."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:  # O_NOFOLLOW: a symlink planted at the results path is refused, never appended through
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                              | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise InputError(f"cannot write {path}: " + ("it is a symlink" if e.errno == errno.ELOOP
                                                          else e.strerror)) from None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise InputError(f"{path} is not a regular file")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise InputError(f"{path} is in use by another shmrss sweep") from None
        self._tail_checked = False

    def append(self, obj: dict) -> None:
        data = (json.dumps(obj, separators=(",", ":"), default=json_default) + "\n").encode()
        if not self._tail_checked:  # a line cut short by a crash must not swallow this one
            self._tail_checked = True
            size = os.fstat(self.fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def json_default(o):
    """``json.dumps`` default for the numpy numbers and arrays in results."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o)}")
