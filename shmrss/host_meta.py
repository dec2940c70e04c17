"""What lkp-tests treats as axes of a result, read from the host once per run.

The host's name and CPU model, the CPU frequency governor, the boost/turbo
state, whether SMT is on, and the CPUs isolated from the scheduler
(``isolcpus``, ``nohz_full``). Each is read from procfs/sysfs; a value the
host does not expose is None, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import socket
from pathlib import Path

_SYS_CPU = Path("/sys/devices/system/cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_model() -> str | None:
    text = _read(Path("/proc/cpuinfo")) or ""
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else (platform.processor() or None)


def _boost() -> str | None:
    """"on"/"off" from cpufreq's boost switch or intel_pstate's no_turbo; None where neither exists."""
    boost = _read(_SYS_CPU / "cpufreq" / "boost")
    if boost in ("0", "1"):
        return "on" if boost == "1" else "off"
    no_turbo = _read(_SYS_CPU / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        return "off" if no_turbo == "1" else "on"
    return None


def _cmdline_value(name: str) -> str | None:
    m = re.search(rf"(?:^|\s){name}=(\S+)", _read(Path("/proc/cmdline")) or "")
    return m.group(1) if m else None


def axes() -> dict:
    """The lkp axes of this host, each None where the host does not say."""
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "governor": _read(_SYS_CPU / "cpu0" / "cpufreq" / "scaling_governor"),
        "boost": _boost(),
        "smt": _read(_SYS_CPU / "smt" / "control"),
        "isolcpus": _read(_SYS_CPU / "isolated") or _cmdline_value("isolcpus") or None,
        "nohz_full": _read(_SYS_CPU / "nohz_full") or _cmdline_value("nohz_full") or None,
    }


def topology_fingerprint(topology: dict | None) -> str | None:
    """A short digest of the CPU topology a result ran on (cores, siblings, caches, nodes)."""
    if not isinstance(topology, dict):
        return None
    shape = {k: topology.get(k) for k in sorted(topology) if k not in ("quota_cpus",)}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:12]


def identity(result: dict) -> dict:
    """Who measured a result: host, kernel and the user's label. Results of different identity never merge."""
    host = result.get("host") if isinstance(result.get("host"), dict) else {}
    params = result.get("params") if isinstance(result.get("params"), dict) else {}
    return {
        "hostname": host.get("hostname"),
        "cpu_model": host.get("cpu_model"),
        "topology": topology_fingerprint(host.get("topology")),
        "kernel": host.get("kernel"),
        "label": params.get("label") or result.get("label") or "",
    }


def identity_name(ident: dict) -> str:
    """A short human name for an identity: label, else host and kernel."""
    if ident.get("label"):
        return str(ident["label"])
    parts = [p for p in (ident.get("hostname"), ident.get("kernel")) if p]
    return " ".join(parts) or "unknown host"


def cpu_times():
    """All CPUs' cumulative times (/proc/stat's ``cpu`` line through psutil); None where psutil cannot read it."""
    import psutil

    try:
        return psutil.cpu_times()
    except (OSError, RuntimeError):
        return None


def idle_pct(before, after) -> float | None:
    """The host's idle time between two ``cpu_times()``, in percent of all CPUs' time, as will-it-scale's
    runtest.py computes it from /proc/stat (idle over the sum of every field); None when not measurable."""
    if before is None or after is None:
        return None
    total = sum(after) - sum(before)
    if total <= 0:
        return None
    return round(max(0.0, min(100.0, (after.idle - before.idle) / total * 100.0)), 2)
