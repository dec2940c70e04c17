"""The host around a run, for ``shmrss monitor``: psutil figures of the run's processes and of the host CPUs.

Per process (each emulated CPU by the pid it publishes): CPU %, voluntary and
involuntary context switches per second, the host CPU it is on now, RSS.
Host-wide: each CPU's utilisation over the last interval, the load averages,
and, for each host CPU the run is pinned to, how much of it went to processes
outside the run (the run: its parent and every descendant), naming the
busiest of them. Figures that need two looks are None on the first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

FOREIGN_PCT = 15.0  # a pinned CPU this much busier than the run's processes explain is reported
STEAL_PCT = 10.0  # a pinned CPU the hypervisor took this much of is reported
TOP_FOREIGN = 3


@dataclass
class ProcStat:
    pid: int
    alive: bool
    cpu_pct: float | None = None  # over the interval since the last look
    vcsw_per_s: float | None = None
    ivcsw_per_s: float | None = None
    cpu_num: int | None = None  # the host CPU it is on now
    rss: int | None = None  # bytes


@dataclass
class HostStat:
    busy_pct: dict[int, float] | None  # host CPU -> % busy over the interval (None on the first look)
    load: tuple[float, float, float]
    warnings: list[str] = field(default_factory=list)


class _Seen:
    """One process looked at over time: psutil's handle and the last context-switch counts."""

    def __init__(self, proc: psutil.Process):
        self.proc = proc
        self.ctx: tuple[int, int] | None = None
        self.t = 0.0
        self.primed = False


class HostSampler:
    def __init__(self, owner_pid: int):
        self.owner_pid = owner_pid
        self._seen: dict[int, _Seen] = {}
        self._times: list | None = None  # psutil.cpu_times(percpu=True) of the last look
        self._others: dict[int, psutil.Process] = {}

    def _look(self, pid: int) -> ProcStat:
        now = time.monotonic()
        s = self._seen.get(pid)
        try:
            if s is None:
                s = self._seen[pid] = _Seen(psutil.Process(pid))
            p = s.proc
            if p.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by the run's parent
                raise psutil.NoSuchProcess(pid)
            with p.oneshot():
                pct = p.cpu_percent(None)
                ctx = p.num_ctx_switches()
                out = ProcStat(pid, True, cpu_num=p.cpu_num(), rss=p.memory_info().rss)
        except psutil.Error:
            self._seen.pop(pid, None)
            return ProcStat(pid, False)
        if s.primed and now > s.t:
            out.cpu_pct = pct
            out.vcsw_per_s = (ctx.voluntary - s.ctx[0]) / (now - s.t)
            out.ivcsw_per_s = (ctx.involuntary - s.ctx[1]) / (now - s.t)
        s.ctx, s.t, s.primed = (ctx.voluntary, ctx.involuntary), now, True
        return out

    def _run_pids(self, cpu_pids: list[int]) -> set[int]:
        pids = {p for p in cpu_pids if p > 0} | {self.owner_pid}
        try:
            pids |= {c.pid for c in psutil.Process(self.owner_pid).children(recursive=True)}
        except psutil.Error:
            pass
        return pids

    def _busy(self) -> dict[int, float] | None:
        now = psutil.cpu_times(percpu=True)
        prev, self._times = self._times, now
        if prev is None:
            return None
        busy = {}
        for cpu, (a, b) in enumerate(zip(prev, now)):
            total = _total(b) - _total(a)
            idle = (b.idle - a.idle) + (getattr(b, "iowait", 0) - getattr(a, "iowait", 0))
            steal = getattr(b, "steal", 0) - getattr(a, "steal", 0)
            busy[cpu] = 100.0 * max(0.0, total - idle - steal) / total if total > 0 else 0.0
        return busy

    def take(self, cpu_pids: list[int], pinned: dict[int, list[int]]) -> tuple[dict[int, ProcStat], HostStat]:
        """Stats of every process of the run (by pid) and of the host; ``pinned``: host CPU -> emulated CPUs."""
        procs = {pid: self._look(pid) for pid in sorted(self._run_pids(cpu_pids))}
        for pid in [p for p in self._seen if p not in procs]:
            del self._seen[pid]
        prev_times = self._times
        busy = self._busy()
        host = HostStat(busy, os.getloadavg())
        if busy is None:
            return procs, host
        suspects: dict[int, str] = {}
        for h, emulated in sorted(pinned.items()):
            if h not in busy:
                continue
            where = f"host CPU {h} (emulated CPU {_list(emulated)})"
            stolen = _stolen(prev_times, self._times, h)
            if stolen >= STEAL_PCT:
                host.warnings.append(f"{where}: the hypervisor took {stolen:.0f}% of it (steal time)")
            own = [s for s in procs.values() if s.alive and s.cpu_num == h]
            if any(s.cpu_pct is None for s in own):
                continue  # not measured yet
            foreign = busy[h] - sum(s.cpu_pct for s in own)
            if foreign >= FOREIGN_PCT:
                suspects[h] = f"{where}: {foreign:.0f}% of it went to processes outside the run"
        if suspects:
            named = self._culprits(set(suspects), set(procs))
            host.warnings += [text + named.get(h, "") for h, text in suspects.items()]
        return procs, host

    def _culprits(self, cpus: set[int], run: set[int]) -> dict[int, str]:
        """The busiest processes outside the run now on each of ``cpus``.

        psutil measures a process's CPU % between two looks: a process seen for
        the first time is only primed, and named from the next refresh on.
        """
        found: dict[int, list] = {c: [] for c in cpus}
        seen, fresh = {}, 0
        for p in psutil.process_iter(["pid", "name", "cpu_num"]):
            pid, cpu = p.info["pid"], p.info["cpu_num"]
            if pid in run or cpu not in cpus:
                continue
            known = seen[pid] = self._others.get(pid, p)
            try:
                pct = known.cpu_percent(None)
            except psutil.Error:
                continue
            if pid not in self._others:
                fresh += 1
            elif pct >= 1.0:
                found[cpu].append((pct, p.info["name"], pid))
        self._others = seen
        out = {}
        for cpu, procs in found.items():
            procs.sort(reverse=True)
            if procs:
                out[cpu] = " (on it now: " + ", ".join(f"{n} pid {pid} {pct:.0f}%" for pct, n, pid in
                                                      procs[:TOP_FOREIGN]) + ")"
            elif fresh:
                out[cpu] = " (naming them from the next refresh)"
        return out


def _total(t) -> float:
    # guest time is already counted in user and nice
    return sum(t) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)


def _stolen(prev, now, cpu: int) -> float:
    if prev is None or now is None or cpu >= len(now) or cpu >= len(prev):
        return 0.0
    a, b = prev[cpu], now[cpu]
    total = _total(b) - _total(a)
    return 100.0 * (getattr(b, "steal", 0) - getattr(a, "steal", 0)) / total if total > 0 else 0.0


def _list(xs: list[int]) -> str:
    return ",".join(map(str, xs))
