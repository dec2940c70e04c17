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
from pathlib import Path

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


MAX_FILE_BYTES = 1 << 30  # a results file read whole; a point's line is tens of kB
_BOM = b"\xef\xbb\xbf"
_SHOWN = 5  # bad lines named one by one; the rest only counted


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Every object of a results file and notes about what was skipped.

    A JSON-lines file, or a ``shmrss run --json`` file (``{"schema_version": 1, "results": [...]}``, or
    from older versions one result object or a list of them). Only a regular file is read
    (a FIFO or /dev/zero is refused at once), up to MAX_FILE_BYTES; a leading BOM is accepted; a line that
    is not a JSON object (cut short by a crash, too deep, too long, a number too big, a NUL-filled tail) is
    skipped and counted. A file whose first line is not JSON at all is not a results file: InputError.
    """
    from shmrss.safe_io import InputFileError, read_regular

    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except InputFileError as e:
        raise InputError(str(e)) from None
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    whole = _whole_document(data)
    if whole is not None:
        return whole, []
    records, notes, bad, nul = [], [], 0, False
    for i, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        if not raw.strip(b"\0 \t\r"):
            nul = True  # a crash left the file's tail as zeros
            continue
        obj, why = _parse_line(raw)
        if obj is None:
            if not records and not bad and not raw.lstrip()[:1] in (b"{", b"["):
                raise InputError(f"{path}:{i + 1} is not JSON: not a shmrss results file")
            bad += 1
            if bad <= _SHOWN:
                notes.append(f"{path}:{i + 1} {why}; skipped")
            continue
        records.append(obj)
    if bad:
        notes.append(f"{path}: skipped {bad} bad line{'s' if bad > 1 else ''} of {len(records) + bad}")
    if nul:
        notes.append(f"{path}: a NUL-filled tail (left by a crash) was ignored")
    return records, notes


def _whole_document(data: bytes) -> list[dict] | None:
    """The records of a file that is one JSON document (``shmrss run --json``), else None."""
    stripped = data.strip()
    if not (stripped.startswith(b"[") or (stripped.startswith(b"{") and b"\n{" not in stripped)):
        return None
    try:
        whole = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return results_of_document(whole)


def _parse_line(raw: bytes) -> tuple[dict | None, str]:
    """(the object, "") or (None, why the line is not one)."""
    from shmrss.safe_io import MAX_LINE_BYTES

    if len(raw) > MAX_LINE_BYTES:
        return None, f"is longer than {MAX_LINE_BYTES >> 20} MiB"
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "is not UTF-8"
    except json.JSONDecodeError:
        if raw.lstrip().startswith(b"{"):
            return None, "is cut short (an interrupted write)"
        return None, "is not JSON"
    except RecursionError:
        return None, "is nested too deep"
    except ValueError:  # an integer of more than 4300 digits (sys.get_int_max_str_digits)
        return None, "holds a number too long to read"
    if not isinstance(obj, dict):
        return None, "is not a JSON object"
    return obj, ""


SCHEMA_VERSION = 1


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
