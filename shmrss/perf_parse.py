"""Parsers for what the ``perf`` tool writes: ``perf stat -x,`` CSV and ``perf c2c report --stats``.

Pure functions over text, so they can be tested against canned output from
hosts we do not have (a PMU, a perf with c2c).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOT_SUPPORTED = "not supported"
NOT_COUNTED = "not counted"
COUNTED = "counted"


@dataclass(frozen=True)
class Reading:
    """One line of ``perf stat -x,``: an event's value, for one thread (``--per-thread``) or in total."""

    event: str  # the name we asked for (modifiers such as ``:u`` stripped)
    value: float | None  # None unless status is COUNTED
    unit: str
    status: str  # COUNTED, NOT_SUPPORTED or NOT_COUNTED
    tid: int | None = None  # the thread, with --per-thread
    comm: str | None = None
    enabled_pct: float | None = None  # below 100: perf multiplexed the event and scaled its value


def base_event(name: str) -> str:
    """``cycles:u`` -> ``cycles``, ``cpu_core/cycles/`` -> ``cycles``, ``task-clock`` unchanged."""
    name = name.strip()
    if "/" in name:
        parts = [p for p in name.split("/") if p]
        name = parts[1] if len(parts) > 1 else parts[0]
        name = name.split(",")[0].split("=")[0]
    return name.split(":")[0]


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_stat_csv(text: str, events) -> list[Reading]:
    """The readings of ``perf stat -x,`` output for the ``events`` asked for.

    Lines are ``[comm-tid,]value,unit,event,run-time,enabled%,metric,metric-unit``;
    the event field is found by name, so a thread name with commas or dashes
    does not shift the columns. Comments, blank lines and perf's own messages
    ("Events enabled") are skipped.
    """
    wanted = set(events)
    out: list[Reading] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        at = next((i for i in range(2, len(fields)) if base_event(fields[i]) in wanted), None)
        if at is None:
            continue
        raw, unit = fields[at - 2].strip(), fields[at - 1].strip()
        if raw.startswith("<not supported"):
            status, value = NOT_SUPPORTED, None
        elif raw.startswith("<not counted"):
            status, value = NOT_COUNTED, None
        else:
            value = _float(raw)
            if value is None:
                continue
            status = COUNTED
        prefix = ",".join(fields[: at - 2])
        tid = comm = None
        if prefix:
            comm, _, tail = prefix.rpartition("-")
            tid = int(tail) if tail.isdigit() else None
            if tid is None:
                comm = prefix
        pct = _float(fields[at + 2]) if len(fields) > at + 2 else None
        out.append(Reading(event=base_event(fields[at]), value=value, unit=unit, status=status, tid=tid,
                           comm=comm, enabled_pct=pct))
    return out


_C2C_KEYS = {
    "total records": "records",
    "load operations": "loads",
    "load local hitm": "local_hitm",
    "load remote hitm": "remote_hitm",
    "locked load/store operations": "locked",
    "store operations": "stores",
}


def parse_c2c_stats(text: str) -> dict | None:
    """HITM figures of ``perf c2c report --stats --stdio``; None when the text holds none.

    These are counts of *sampled* loads, not of every load: ``records`` says
    how many samples the figures come from.
    """
    found: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z][A-Za-z /()-]*?)\s*:\s*([0-9]+)\s*$", line)
        if m and m.group(1).lower() in _C2C_KEYS:
            found.setdefault(_C2C_KEYS[m.group(1).lower()], int(m.group(2)))
    if "local_hitm" not in found and "remote_hitm" not in found:
        return None
    found["hitm"] = found.get("local_hitm", 0) + found.get("remote_hitm", 0)
    return found


def error_line(text: str) -> str:
    """The most telling line of perf's stderr: the first that says what failed, else the first non-blank."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if any(k in low for k in ("error", "failed", "not found", "permission", "denied", "not supported",
                                  "no access", "unknown")):
            return ln
    return lines[0] if lines else "no message"
