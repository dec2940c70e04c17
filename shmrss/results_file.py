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

import fcntl
import json
import os
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


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Every object of a results file and notes about what was skipped.

    A JSON-lines file, or a ``shmrss run --json`` file (one object or a list).
    A line cut short (a crash while appending) is skipped with a note;
    anything else that is not a JSON object is an InputError.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a results file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    stripped = text.strip()
    if stripped.startswith("[") or (stripped.startswith("{") and "\n{" not in stripped):
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            return [whole], []
        if isinstance(whole, list) and all(isinstance(r, dict) for r in whole):
            return whole, []
    records, notes = [], []
    for i, ln in enumerate(text.split("\n")):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError:
            # a write cut short by a crash: an object's beginning; the next sweep started a new line after it
            if ln.lstrip().startswith("{"):
                notes.append(f"{path}:{i + 1} is cut short (an interrupted write); ignored")
                continue
            raise InputError(f"{path}:{i + 1} is not JSON: not a shmrss results file") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{i + 1} is not a JSON object: not a shmrss results file")
        records.append(obj)
    return records, notes


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
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror}") from None
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
