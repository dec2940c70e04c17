"""Reading a workload file the user names, whatever it turns out to be; and what a valid workload
leaves idle.

``read_spec`` refuses, with one-line WorkloadErrors, anything that is not a
regular UTF-8 JSON file of sane size (a directory, a device such as /dev/zero,
a FIFO, binary data, JSON nested too deeply, a number of thousands of digits)
and names that would garble a terminal line. ``idle_notes`` says which tapes
never update a counter and which emulated CPUs hold no task: legal, but worth
a warning.
"""

from __future__ import annotations

import json
import unicodedata

from shmrss import layout as L
from shmrss.safe_io import InputFileError, read_regular
from shmrss.workload import MAX_STEPS, CompiledWorkload, WorkloadError

# a million steps of the widest form (["remote", "shmem", -2147483648, 100000]) and 100,000 tasks fit
MAX_FILE_BYTES = 64 << 20
MAX_NAME_CHARS = 200
MARKUP_CHARS = ("[", "]", "$", "\\")  # rich markup in table cells, matplotlib mathtext in labels


# safe_io.read_regular's refusals, worded for a workload file
WORKLOAD_WORDS = {
    "missing": "cannot read workload file {path}: {strerror}",
    "unreadable": "cannot read workload file {path}: {strerror}",
    "directory": "workload file {path} is a directory",
    "special": "workload file {path} is not a regular file (a device, FIFO or socket)",
    "too_big": f"workload file {{path}} is {{size_mib:.1f}} MiB; a workload is at most {{max_mib}} MiB "
               f"({MAX_STEPS:,} tape steps)",
    "grew": "workload file {path} is over {max_mib} MiB",
}


def read_spec(path: str) -> dict:
    """The JSON object of a workload file (not yet validated: ``compile_workload`` does that)."""
    try:
        data = read_regular(path, MAX_FILE_BYTES, WORKLOAD_WORDS)
    except InputFileError as e:
        raise WorkloadError(str(e)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WorkloadError(f"workload file {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                            f"{e.start}): a workload is a JSON file") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"workload file {path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise WorkloadError(f"workload file {path} nests JSON arrays or objects too deeply") from None
    except ValueError:  # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise WorkloadError(f"workload file {path} holds a number too long to parse") from None
    check_names(spec)
    return spec


def _bad_char(text: str) -> str | None:
    for ch in text:
        # control, format (bidi overrides, zero-width), line and paragraph separators, unassigned
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return ch
    return None


def check_names(spec) -> None:
    """Names end up in one-line messages and table cells: printable and of sane length."""
    if not isinstance(spec, dict):
        return  # compile_workload says what is wrong
    names = []
    if isinstance(spec.get("name"), str):
        names.append(("workload name", spec["name"]))
    if isinstance(spec.get("tapes"), dict):
        names += [("tape name", k) for k in spec["tapes"]]
    for what, name in names:
        if len(name) > MAX_NAME_CHARS:
            raise WorkloadError(f"{what} {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_CHARS}")
        ch = _bad_char(name)
        if ch is not None:
            raise WorkloadError(f"{what} {name!r} holds the unprintable character U+{ord(ch):04X}")
    name = spec.get("name")
    if isinstance(name, str) and (markup := [c for c in MARKUP_CHARS if c in name]):
        raise WorkloadError(f"workload name {name!r} holds {markup[0]!r}: a workload name may not hold "
                            f"{' '.join(MARKUP_CHARS)} (markup to the result table and the plots' labels)")


def idle_notes(wl: CompiledWorkload, limit: int = 4) -> list[str]:
    """Warnings for a compiled workload: tapes that never update a counter, CPUs with no task."""
    notes = []
    updates = (L.OP_FAULT, L.OP_UNMAP, L.OP_REMOTE, L.OP_EXEC)
    busy = {}  # (first step, steps) of each tape a task runs -> does it update a counter
    for _, first, n in wl.tasks.tolist():
        if (first, n) not in busy:
            busy[first, n] = any(int(op) in updates for op in wl.tape[first: first + n, 0])
    idle = sum(not b for b in busy.values())
    if idle == len(busy):
        notes.append("no task of this workload ever updates a counter: the run measures no event")
    elif idle:
        notes.append(f"{idle} tape{'s' if idle > 1 else ''} of this workload never update{'' if idle > 1 else 's'} "
                     f"a counter (only sleep, yield, clone, exit or migrate steps): "
                     f"{'their' if idle > 1 else 'its'} tasks add no events")
    empty = [c for c, rq in enumerate(wl.runqueues) if not rq]
    if empty:
        shown = ", ".join(map(str, empty[:limit])) + (", ..." if len(empty) > limit else "")
        many = len(empty) > 1
        notes.append(f"emulated CPU{'s' if many else ''} {shown} hold{'' if many else 's'} no task and "
                     f"idle{'' if many else 's'} the whole run unless a task migrates there")
    return notes


def load_file(path: str) -> dict:
    """The spec in a workload file; anything else (a directory, /dev/zero, binary data) is a WorkloadError."""
    return read_spec(path)
