"""``perf stat`` (and ``perf c2c``) counters of the emulated CPU processes, where the host allows them.

``probe()`` finds out once per process what works here: the binary, the
paranoid level, which events count, whether perf takes ``--control`` (so the
counting window can be opened and closed exactly) and whether ``perf c2c
record`` works. ``PerfStat(pids)`` attaches ``perf stat --per-thread`` to the
processes; ``start()`` opens the window, ``stop()`` closes it and returns a
dict. Nothing here raises because of perf: a failure becomes
``{"available": False, "reason": ...}``.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shmrss.perf_parse import COUNTED, NOT_COUNTED, NOT_SUPPORTED, error_line, parse_c2c_stats, parse_stat_csv
from shmrss.procs import die_with_parent  # perf runs in its own session: it must not outlive us

HARDWARE = ("cycles", "instructions", "cache-misses")
SOFTWARE = ("task-clock", "context-switches", "cpu-migrations", "page-faults")
EVENTS = HARDWARE + SOFTWARE
PROBE_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 10.0
ATTACH_WAIT_S = 0.3  # without --control we cannot see perf attach; give it this long
_WORKLOAD = [sys.executable, "-c", "sum(range(200000))"]  # what the probe counts: a short child


@dataclass(frozen=True)
class PerfSupport:
    """What ``perf`` can do on this host, for this user."""

    binary: str | None
    version: str | None = None
    paranoid: int | None = None
    events: dict[str, str | None] = field(default_factory=dict)  # event -> None when it counts, else why not
    control: bool = False  # perf stat takes -D -1 and --control fd:...
    c2c: str | None = "not probed"  # None when perf c2c record works, else why not
    reason: str | None = None  # None when perf stat works at all

    @property
    def working(self) -> list[str]:
        return [e for e, why in self.events.items() if why is None]

    @property
    def available(self) -> bool:
        return self.reason is None and bool(self.working)

    @property
    def hardware_missing(self) -> list[str]:
        return [e for e in HARDWARE if self.events.get(e) is not None]

    def to_dict(self) -> dict:
        return {**asdict(self), "available": self.available}


def _paranoid() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/perf_event_paranoid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _run(cmd: list[str], timeout: float = PROBE_TIMEOUT_S) -> tuple[int | None, str, str]:
    """(exit code or None on timeout / failure to start, stdout, stderr)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:.0f} s"
    except OSError as e:
        return None, "", str(e)
    return p.returncode, p.stdout, p.stderr


def _stat_events(binary: str, events: list[str], tmp: Path) -> tuple[dict[str, str | None], str | None]:
    """Count ``events`` over a short child; (event -> None or why not, why the whole call failed)."""
    out = tmp / "probe.csv"
    out.unlink(missing_ok=True)
    code, _, err = _run([binary, "stat", "-x,", "-o", str(out), "-e", ",".join(events), "--", *_WORKLOAD])
    text = out.read_text() if out.exists() else ""
    readings = {r.event: r for r in parse_stat_csv(text, events)}
    if code != 0 and not readings:
        return {e: f"perf stat failed: {error_line(err)}" for e in events}, error_line(err)
    why = {}
    for e in events:
        r = readings.get(e)
        if r is None:
            why[e] = "perf stat printed no value for it"
        elif r.status == NOT_SUPPORTED:
            why[e] = "not supported on this host"
        elif r.status == NOT_COUNTED:
            why[e] = "not counted (perf could not schedule it)"
        else:
            why[e] = None
    return why, None


def _probe_c2c(binary: str, tmp: Path) -> str | None:
    data = tmp / "c2c.data"
    code, _, err = _run([binary, "c2c", "record", "-o", str(data), "--", *_WORKLOAD])
    if code == 0 and data.exists():
        return None
    return f"perf c2c record: {error_line(err)}" if code is not None else f"perf c2c record {err}"


def probe_now(events=EVENTS) -> PerfSupport:
    """Find out what perf can do here (a few short perf calls, under a second without c2c)."""
    binary = shutil.which("perf")
    if binary is None:
        return PerfSupport(None, paranoid=_paranoid(), reason="perf not found on PATH", c2c="no perf")
    code, out, err = _run([binary, "--version"])
    if code != 0:
        # e.g. Debian's wrapper when no perf matches the running kernel
        return PerfSupport(binary, paranoid=_paranoid(), c2c="perf does not run",
                           reason=f"perf does not run: {error_line(err or out)}")
    version = out.strip() or None
    events = list(events)
    with tempfile.TemporaryDirectory(prefix="shmrss-perf-") as d:
        tmp = Path(d)
        why, failed = _stat_events(binary, events, tmp)
        if failed is not None and len(events) > 1:
            # one refused event can fail the whole call: ask for each alone
            why = {e: _stat_events(binary, [e], tmp)[0][e] for e in events}
        _, h_out, h_err = _run([binary, "stat", "-h"])
        control = "--control" in h_out + h_err
        c2c = _probe_c2c(binary, tmp)
    reason = None
    if not any(v is None for v in why.values()):
        reason = next(iter(set(why.values()))) if len(set(why.values())) == 1 else "no event counts on this host"
    return PerfSupport(binary, version, _paranoid(), why, control, c2c, reason)


_cache: dict[str | None, PerfSupport] = {}


def probe(refresh: bool = False) -> PerfSupport:
    """``probe_now()`` once per process and perf binary."""
    key = shutil.which("perf")
    if refresh or key not in _cache:
        _cache[key] = probe_now()
    return _cache[key]


def notes(s: PerfSupport) -> list[str]:
    """What a user should be told once about ``--perf`` on this host."""
    if not s.available:
        return [f"perf: not available ({s.reason}); --perf collects nothing"]
    missing = s.hardware_missing
    if missing == list(HARDWARE):
        return ["perf: hardware events not supported on this host (no PMU in this VM?); "
                "collecting software events only"]
    if missing:
        return [f"perf: {', '.join(missing)} not available here ({s.events[missing[0]]}); collecting the others"]
    return []


class PerfStat:
    """``perf stat`` attached to ``pids`` from ``start()`` to ``stop()``.

    ``events_fn`` (optional) returns the run's event count; it is read when the
    window opens and closes so that the result can give figures per event.
    """

    def __init__(self, pids, support: PerfSupport | None = None, events_fn=None):
        self.pids = [int(p) for p in pids]
        self.support = support
        self.events_fn = events_fn
        self._proc: subprocess.Popen | None = None
        self._c2c: subprocess.Popen | None = None
        self._tmp: Path | None = None
        self._ctl = self._ack = None
        self._failed: str | None = None
        self._t0 = self._t1 = None
        self._ev0 = self._ev1 = None

    # ---- the window
    def start(self) -> None:
        """Spawn perf, wait until it has attached, open the counting window. Never raises."""
        try:
            self.support = self.support or probe()
            if not self.support.available:
                self._failed = self.support.reason
                return
            self._tmp = Path(tempfile.mkdtemp(prefix="shmrss-perf-"))
            self._spawn()
            if self.support.control:
                self._command("ping")  # answered once perf has opened its counters: attached
                self._mark_start()
                self._command("enable")
            else:
                time.sleep(ATTACH_WAIT_S)
                self._mark_start()
            if self.support.c2c is None:
                self._spawn_c2c()
        except Exception as e:  # noqa: BLE001 - perf must never break a run
            self._failed = f"perf stat did not start: {e}"
            self.kill()

    def _spawn(self) -> None:
        s = self.support
        cmd = [s.binary, "stat", "-x,", "--per-thread", "-o", str(self._tmp / "stat.csv"),
               "-e", ",".join(s.working), "-p", ",".join(map(str, self.pids))]
        fds = ()
        if s.control:
            ctl_r, self._ctl = os.pipe()
            self._ack, ack_w = os.pipe()
            cmd[2:2] = ["-D", "-1", "--control", f"fd:{ctl_r},{ack_w}"]
            fds = (ctl_r, ack_w)
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=open(self._tmp / "stat.err", "wb"), pass_fds=fds,
                                          start_new_session=True, preexec_fn=die_with_parent)
        finally:
            for fd in fds:
                os.close(fd)

    def _spawn_c2c(self) -> None:
        self._c2c = subprocess.Popen(
            [self.support.binary, "c2c", "record", "-o", str(self._tmp / "c2c.data"), "-p",
             ",".join(map(str, self.pids))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self._tmp / "c2c.err", "wb"),
            start_new_session=True, preexec_fn=die_with_parent)

    def _command(self, cmd: str) -> None:
        """Send a --control command and wait for perf's ack; raise when perf is gone or silent."""
        os.write(self._ctl, cmd.encode() + b"\n")
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._ack], [], [], 0.05)
            if ready:
                if os.read(self._ack, 64).startswith(b"ack"):
                    return
                raise RuntimeError(f"it ended before acknowledging {cmd!r}: {self._stderr()}")
            if self._proc.poll() is not None:
                raise RuntimeError(f"it exited ({self._proc.returncode}): {self._stderr()}")
        raise RuntimeError(f"it did not acknowledge {cmd!r} within {ACK_TIMEOUT_S:.0f} s")

    def _mark_start(self) -> None:
        self._ev0 = self._events()
        self._t0 = time.perf_counter()

    def _events(self) -> int | None:
        if self.events_fn is None:
            return None
        try:
            return int(self.events_fn())
        except Exception:  # noqa: BLE001 - a missing count only drops the per-event figures
            return None

    def _stderr(self) -> str:
        try:
            return error_line((self._tmp / "stat.err").read_text(errors="replace"))
        except OSError:
            return "no message"

    def stop(self) -> dict:
        """Close the window, end perf, parse its output. Never raises."""
        if self._failed is not None or self._proc is None:
            self.kill()
            return self.unavailable(self._failed or "perf stat was not started")
        try:
            self._ev1 = self._events()
            self._t1 = time.perf_counter()
            if self.support.control and self._proc.poll() is None:
                self._command("disable")
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)
            self._proc.wait(ACK_TIMEOUT_S)
            text = (self._tmp / "stat.csv").read_text(errors="replace") if (self._tmp / "stat.csv").exists() else ""
            readings = parse_stat_csv(text, self.support.working)
            if not readings:
                return self.unavailable(f"perf stat printed nothing (exit {self._proc.returncode}): {self._stderr()}")
            out = self._result(readings)
            out["c2c"] = self._stop_c2c()
            return out
        except Exception as e:  # noqa: BLE001
            return self.unavailable(f"perf stat failed: {e}")
        finally:
            self.kill()

    def _stop_c2c(self) -> dict:
        if self._c2c is None:
            return {"available": False, "reason": self.support.c2c or "perf c2c did not start"}
        self._c2c.send_signal(signal.SIGINT)
        try:
            self._c2c.wait(ACK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"available": False, "reason": "perf c2c record did not stop"}
        code, out, err = _run([self.support.binary, "c2c", "report", "-i", str(self._tmp / "c2c.data"),
                               "--stats", "--stdio"], timeout=120)
        stats = parse_c2c_stats(out) if code == 0 else None
        if stats is None:
            return {"available": False, "reason": f"perf c2c report gave no HITM figures: {error_line(err or out)}"}
        return {"available": True, "sampled": True, **stats}

    def kill(self) -> None:
        """End perf and drop its files, whatever state it is in."""
        for p in (self._proc, self._c2c):
            if p is not None and p.poll() is None:
                p.kill()
                try:
                    p.wait(2.0)
                except subprocess.TimeoutExpired:
                    pass
        for fd in (self._ctl, self._ack):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._ctl = self._ack = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # ---- the result
    def unavailable(self, reason: str) -> dict:
        s = self.support
        return {"available": False, "reason": reason, "tool": _tool(s), "events": {}, "per_pid": [],
                "c2c": {"available": False, "reason": (s.c2c if s else None) or "perf stat failed"},
                "warnings": notes(s) if s is not None and not s.available
                else [f"perf: {reason}; no perf figures for this run"]}

    def _result(self, readings) -> dict:
        s = self.support
        tid_pid = _thread_owners(self.pids)
        per_pid = {pid: {"pid": pid, "threads": set(), "values": {}, "missing": {}} for pid in self.pids}
        for r in readings:
            pid = tid_pid.get(r.tid, r.tid if r.tid in per_pid else None)
            if pid is None:
                continue
            rec = per_pid[pid]
            rec["threads"].add(r.tid)
            if r.status == COUNTED:
                rec["values"][r.event] = rec["values"].get(r.event, 0.0) + r.value
            else:
                rec["missing"].setdefault(r.event, r.status)
        events = {}
        units = {r.event: r.unit for r in readings}
        multiplexed = sorted({r.event for r in readings if r.enabled_pct is not None and r.enabled_pct < 100})
        for e in EVENTS:
            if e not in s.events:
                continue
            if s.events[e] is not None:
                events[e] = {"total": None, "reason": s.events[e]}
                continue
            vals = [rec["values"][e] for rec in per_pid.values() if e in rec["values"]]
            if vals:
                events[e] = {"total": sum(vals), "unit": units.get(e, "")}
            else:
                events[e] = {"total": None, "reason": "not counted (the processes did not run while perf counted?)"}
        window = self._t1 - self._t0 if self._t0 is not None and self._t1 is not None else None
        n_ev = self._ev1 - self._ev0 if self._ev0 is not None and self._ev1 is not None else None
        total = {e: v["total"] for e, v in events.items()}
        derived = {"ipc": None, "cpu_utilization": None}
        if total.get("cycles") and total.get("instructions") is not None:
            derived["ipc"] = total["instructions"] / total["cycles"]
        if total.get("task-clock") is not None and window and units.get("task-clock") == "msec":
            derived["cpu_utilization"] = total["task-clock"] / 1e3 / (window * len(self.pids))
        return {
            "available": True, "reason": None, "tool": _tool(s), "events": events,
            "per_pid": [{"pid": pid, "threads": len(rec["threads"]), **{e: rec["values"].get(e) for e in s.working},
                         "not_counted": rec["missing"]} for pid, rec in per_pid.items()],
            "window_s": window, "window_exact": bool(s.control), "events_in_window": n_ev,
            "multiplexed": multiplexed, "derived": derived,
            "warnings": notes(s),
        }


def _tool(s: PerfSupport | None) -> dict | None:
    return None if s is None else {"binary": s.binary, "version": s.version, "paranoid": s.paranoid,
                                   "control": s.control}


def _thread_owners(pids) -> dict[int, int]:
    """tid -> pid for every thread of ``pids`` now (perf --per-thread reports threads)."""
    owners = {}
    for pid in pids:
        owners[pid] = pid
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                owners[int(tid)] = pid
        except OSError:
            pass
    return owners
