"""Samples of a live run's segment for ``shmrss monitor``: tallies of every emulated CPU and of the
reader, the truth of every counter, and the design's values of the largest mms.

Reads only (the words are mapped read-only). Rates are differences between two
samples; the first sample of a run is paired with each CPU's own start (its
start TSC and zero tallies), so the first refresh already shows rates since
the start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from shmrss import designs, layout as L, monitor_reads as MR
from shmrss.atomics import tsc_now
from shmrss.procs import pid_alive
from shmrss.segment import SegmentError

MAX_MMS = 16  # mms shown, the largest by truth
# the per-CPU slots a sample copies: 0 .. the last lifecycle tally
_SLOTS = max(L.S_LC_REUSED, L.S_FB_DONE) + 1  # the tallies shown, the fault-body words included
# states in which the design's counters are the run's: once DONE the parent tears the mms down
_COUNTERS_VALID = (L.STATE_INIT, L.STATE_RUNNING, L.STATE_STOP)


def design_name(design_id: int) -> str | None:
    for name in (*designs.DESIGNS, *designs.KERNEL_DESIGNS):
        if designs.get(name).ID == design_id:
            return name
    return None


def _named(prefix: str) -> dict[int, str]:
    """Value -> name of the layout's constants with this prefix (the list grows with the engine)."""
    out: dict[int, str] = {}
    for key, value in vars(L).items():
        if key.startswith(prefix) and isinstance(value, int) and value not in out:
            out[value] = key[len(prefix):]
    return out


CPU_STATUS = _named("CPU_")
RUN_STATE = dict(enumerate(L.STATE_NAMES))


@dataclass
class Sample:
    tsc: np.ndarray  # per CPU: the TSC this sample's tallies stand for (its start for the start sample)
    now_tsc: int  # when the sample was taken
    state: int  # control line C_STATE
    cpu: np.ndarray  # (ncpu, _SLOTS) tallies
    reader: np.ndarray  # the reader record's head
    truth: np.ndarray  # (nmm, NMEMBERS)
    mms: np.ndarray  # the mms whose values were read, largest truth first
    values: np.ndarray | None  # monitor_reads.snapshot of mms, None when not read
    start: bool = False  # the synthetic sample at each CPU's start


class SegmentSampler:
    """Reads one segment's header once, then samples it on demand."""

    def __init__(self, name: str, words: np.ndarray):
        if words.flags.writeable:
            raise ValueError("the monitor reads a read-only view of the segment")
        self.name = name
        self.w = words
        h = lambda slot: int(words[slot])  # noqa: E731
        self.design = design_name(h(L.H_DESIGN))
        if self.design is None:
            raise SegmentError(f"segment {name} names design id {h(L.H_DESIGN)}, unknown to this shmrss")
        MR.check_shape(words, self.design)
        self.unmonitored = MR.unmonitored(self.design)  # why its counters cannot be read here, or None
        self.ncpu, self.nwork, self.nmm = h(L.H_NCPU), h(L.H_NWORK), h(L.H_NMM)
        self.ntask, self.possible, self.line = h(L.H_NTASK), h(L.H_POSSIBLE), h(L.H_LINE) * 8
        self.pack, self.reclaimer = bool(h(L.H_PACK)), bool(h(L.H_RECLAIMER))
        self.owner_pid, self.created_ns = h(L.H_OWNER_PID), h(L.H_CREATED_NS)
        self.oom = bool(h(L.H_OOM))
        self._ctrl = h(L.H_CTRL)
        self._st, self._ss = h(L.H_CPUSTAT), h(L.H_CPUSTAT_STRIDE)
        self._tr, self._ts = h(L.H_TRUTH), h(L.H_TRUTH_STRIDE)
        self._rd = h(L.H_READER)

    # ---- raw regions
    def _cpu(self) -> np.ndarray:
        region = self.w[self._st: self._st + self.ncpu * self._ss].reshape(self.ncpu, self._ss)
        return region[:, :_SLOTS].copy()

    def _truth(self) -> np.ndarray:
        rows = self.w[self._tr: self._tr + self.ncpu * self._ts].reshape(self.ncpu, self._ts)
        return rows[:, : self.nmm * L.NMEMBERS].sum(axis=0).reshape(self.nmm, L.NMEMBERS)

    def state(self) -> int:
        return int(self.w[self._ctrl + L.C_STATE])

    def lifecycle(self, s: Sample) -> bool:
        """A fork/exit run: its CPUs count mm lifecycles, and its mms live for microseconds."""
        return bool(s.cpu[:, L.S_LC_COUNT].any())

    # ---- samples
    def take(self) -> Sample:
        state = self.state()
        cpu = self._cpu()
        now = int(tsc_now())  # the time the tallies stand for
        reader = self.w[self._rd: self._rd + L.R_HEAD_WORDS].copy()
        truth = self._truth()
        # RSS order (file + anon + shmem; swap is not resident), every member breaking ties
        rss = truth[:, [L.FILE, L.ANON, L.SHMEM]].sum(axis=1)
        order = np.lexsort((np.arange(self.nmm), -np.abs(truth).sum(axis=1), -rss))
        mms = order[:MAX_MMS]
        values = None
        if state in _COUNTERS_VALID and not cpu[:, L.S_LC_COUNT].any() and not self.unmonitored:
            values = MR.snapshot(self.design, self.w, mms)
            if self.state() not in _COUNTERS_VALID:
                state, values = self.state(), None  # the run ended while we read: its teardown may have begun
        return Sample(np.full(self.ncpu, now, dtype=np.int64), now, state, cpu, reader, truth, mms, values)

    def start_of(self, s: Sample) -> Sample:
        """The synthetic sample at each CPU's start: zero tallies at its start TSC (0: not started)."""
        cpu = np.zeros_like(s.cpu)
        cpu[:, L.S_BEAT] = s.cpu[:, L.S_TSC_START]
        return Sample(s.cpu[:, L.S_TSC_START].copy(), s.now_tsc, s.state, cpu, np.zeros_like(s.reader),
                      s.truth, s.mms, None, start=True)


@dataclass
class CpuRates:
    events_per_s: np.ndarray  # nan where not measurable
    ns_per_event: np.ndarray
    slow_per_s: np.ndarray
    switches_per_s: np.ndarray
    hit_rate: np.ndarray
    lifecycles_per_s: np.ndarray


def rates(prev: Sample, cur: Sample, tsc_per_ns: float) -> CpuRates:
    """Per-CPU rates between two samples, timed by the TSC (nan where a CPU had not started)."""
    dt_s = (cur.tsc - prev.tsc) / tsc_per_ns / 1e9
    ok = (prev.tsc > 0) & (dt_s > 0)
    d = cur.cpu - prev.cpu

    def per_s(slot):
        return np.where(ok, d[:, slot] / np.where(ok, dt_s, 1.0), np.nan)

    ev = d[:, L.S_EVENTS]
    dbeat = d[:, L.S_BEAT]
    # ns/event from the TSC the CPU published with its event count (the reclaimer publishes none)
    ns = np.where((ev > 0) & (dbeat > 0) & (prev.cpu[:, L.S_BEAT] > 0),
                  dbeat / tsc_per_ns / np.maximum(ev, 1), np.nan)
    looked = d[:, L.S_HITS] + d[:, L.S_MISSES]
    hit = np.where(looked > 0, d[:, L.S_HITS] / np.maximum(looked, 1), np.nan)
    return CpuRates(per_s(L.S_EVENTS), ns, per_s(L.S_SLOW), per_s(L.S_SWITCHES), hit, per_s(L.S_LC_COUNT))


def ended(sampler: SegmentSampler, name_path: str, state: int) -> str | None:
    """Why the run is over, or None while it lives."""
    if state in (L.STATE_DONE, L.STATE_FAILED):
        return f"the run reached state {RUN_STATE[state]}"
    if not os.path.exists(name_path):
        return "the segment was removed (the run ended)"
    if not pid_alive(sampler.owner_pid):
        return f"the run's process (pid {sampler.owner_pid}) is gone; `shmrss cleanup` removes its segment"
    return None

