"""Who else uses the run's CPUs: other live shmrss runs (their segments in /dev/shm) and busy processes on
the host CPUs the emulated CPUs are pinned to (the monitor's host sampler). Looked at when the run starts
and at each one-second sample; anything found is a warning, and the timings are marked not valid.
"""

from __future__ import annotations

import os
import stat

import psutil

from shmrss.procs import pid_alive
from shmrss.segment import SHM_DIR, list_segments, owner_pid


def other_live_runs(own: str | None) -> list[tuple[str, int]]:
    """(segment name, owner pid) of every other segment whose owner is alive."""
    found = []
    for name in list_segments():
        if name == own:
            continue
        try:
            if not stat.S_ISREG(os.lstat(os.path.join(SHM_DIR, name)).st_mode):
                continue  # a FIFO or a symlink is no run's segment (and opening a FIFO would block)
        except OSError:
            continue
        pid = owner_pid(name)
        if pid is None or pid == os.getpid() or not pid_alive(pid):
            continue
        found.append((name, pid))
    return found


class Contention:
    """What a run found sharing its CPUs; ``warnings`` is the run's list, appended to once per finding."""

    def __init__(self, own_segment: str, warnings: list[str], pinned: dict[int, list[int]]):
        self.own = own_segment
        self.warnings = warnings
        self.pinned = pinned  # host CPU -> emulated CPUs
        self.runs: dict[str, int] = {}
        self.busy: dict[int, str] = {}  # host CPU -> what was said about it
        self._sampler = None

    def look(self, cpu_pids: list[int] | None = None) -> None:
        """Other runs, always; the host CPUs' foreign load when the CPU processes' pids are given."""
        for name, pid in other_live_runs(self.own):
            if name not in self.runs:
                self.runs[name] = pid
                self.warnings.append(f"another shmrss run is live (pid {pid}, segment /{name}): it competes for "
                                     f"the CPUs and memory bandwidth; timings are not valid")
        if cpu_pids is None or set(self.busy) >= set(self.pinned):
            return  # every pinned CPU already reported: naming the culprits again costs a process scan
        from shmrss.monitor_host import HostSampler

        if self._sampler is None:
            self._sampler = HostSampler(os.getpid())
        try:
            _, host = self._sampler.take(cpu_pids, self.pinned)
        except psutil.Error:
            return
        for text in host.warnings:
            h = int(text.split()[2]) if text.startswith("host CPU ") else -1
            if h not in self.busy and "outside the run" in text:
                self.busy[h] = text
                self.warnings.append(text + ": timings are not valid")

    @property
    def valid(self) -> bool:
        return not self.runs and not self.busy

    def summary(self) -> dict:
        return {"other_runs": [{"segment": n, "pid": p} for n, p in sorted(self.runs.items())],
                "busy_host_cpus": sorted(h for h in self.busy if h >= 0)}
