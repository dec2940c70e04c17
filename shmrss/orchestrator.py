"""The parent of a run: lays out the segment, forks the pinned CPU processes and the reader,
samples them once a second, stops them, checks the invariants and builds the result.

Every exit path (normal, Ctrl-C, SIGTERM, a dead child, an exception) kills the
children that are left and unlinks the segment.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import psutil
from loguru import logger

from shmrss import designs, layout as L
from shmrss.atomics import calibrate_tsc, tsc_granularity_ticks, tsc_overhead_ticks
from shmrss.engine import cpu_process, engine_for, prepare_engines, reader_process, reclaimer_process
from shmrss.errors import RunFailed
from shmrss.runsignals import AFTER, MEASURING, SIGNALS, STARTUP, Interrupted, blocked, signame
from shmrss.segment import Geometry, Segment
from shmrss.topology import Placement, Topology
from shmrss.workload import CompiledWorkload

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
FAULT_BODY_STAT_EVERY = 16  # events between a CPU's stop checks with --fault-body page (1024 without)


@dataclass
class RunParams:
    design: str
    workload: CompiledWorkload
    placement: Placement
    topo: Topology
    duration: float = 5.0
    read_interval: float = 0.010
    line: int = 64
    pack: bool = False
    slice: int = 100_000
    possible: int | None = None
    online: int | None = None  # online CPUs (cpu_online_mask); None: the possible CPUs
    fault_pages: tuple[int, ...] = (1,)  # pages per fault of the built-in page-fault workloads (for the result)
    reader: bool = True
    reclaimer: bool = False
    oom: bool = False  # the reader also selects OOM victims, 2-pass and all-precise
    nodes: int | None = None  # emulate this many NUMA nodes (pernode); None: the host's
    design_options: dict = field(default_factory=dict)  # e.g. tree_orders
    faults: list = field(default_factory=list)  # shmrss.faults.Fault: offline / kill an emulated CPU mid-run
    check_every: float | None = None  # soak mode: park every CPU and check the invariants this often
    options: dict = field(default_factory=dict)  # the user's options, for the result
    fault_body_pages: list | None = None  # --fault-body page: each tape CPU's region in pages (faultbody.check)

    @property
    def nwork(self) -> int:
        """Emulated CPUs that run tapes."""
        return len(self.placement.cpus)

    @property
    def journal(self) -> bool:
        """The CPUs keep an in-flight journal: a CPU killed mid-update can be recovered."""
        return bool(self.faults)

    @property
    def ncpu(self) -> int:
        """Emulated CPUs the design sees: the tape CPUs and the reclaimer's."""
        return self.nwork + int(self.reclaimer)

    def node_of(self) -> tuple[int, ...]:
        """The emulated NUMA node of each emulated CPU."""
        n = self.ncpu
        if self.nodes:
            return tuple(c * self.nodes // n for c in range(n))
        hosts = list(self.placement.cpus) + ([self.placement.reader_cpu] if self.reclaimer else [])
        ids = [self.topo.node_of(h) if h is not None and h in self.topo.usable else self.topo.node_ids[0]
               for h in hosts]
        dense = {nid: i for i, nid in enumerate(sorted(set(ids)))}
        return tuple(dense[i] for i in ids)


@dataclass
class Sample:
    t: float
    events: np.ndarray  # per CPU


def online_cpus(p: RunParams) -> int:
    """The emulated online CPUs: --online-cpus, else every possible CPU; never below the CPUs that run."""
    possible = max(p.possible or 0, p.ncpu)
    return possible if p.online is None else max(min(p.online, possible), p.ncpu)


def _geometry(p: RunParams) -> Geometry:
    mod = designs.get(p.design)
    possible = max(p.possible or 0, p.ncpu)
    wl = p.workload
    shape = mod.shape(p.ncpu, possible, wl.nmm, line_words=p.line // 8, nodes=p.node_of(),
                      options={**p.design_options, "online_cpus": online_cpus(p)})
    return Geometry(
        ncpu=p.ncpu, possible=possible, nmm=wl.nmm, ntask=len(wl.tasks), line_words=p.line // 8,
        pack=p.pack, slice=p.slice, design_id=mod.ID, shape=shape, tape_steps=len(wl.tape),
        nwork=p.nwork, reclaimer=p.reclaimer, oom=p.oom and p.reader, online=online_cpus(p),
        # real page faults are ~1000 times slower than counter updates: check the stop flag as often in time
        **({"stat_every": FAULT_BODY_STAT_EVERY} if p.fault_body_pages else {}),
    )


def _populate(seg: Segment, p: RunParams) -> None:
    """Write the tapes, tasks and run queues, and initialise every mm through the design."""
    w = seg.words
    wl = p.workload
    tape = int(w[L.H_TAPE])
    w[tape: tape + wl.tape.size] = wl.tape.ravel()
    tb, ts = int(w[L.H_TASK]), int(w[L.H_TASK_STRIDE])
    for t, (mm, first, nsteps) in enumerate(wl.tasks):
        b = tb + t * ts
        w[b + L.T_MM], w[b + L.T_TAPE_START], w[b + L.T_TAPE_LEN] = mm, first, nsteps
        op, _, arg, _ = wl.tape[first]
        w[b + L.T_STEP], w[b + L.T_REMAIN] = 0, (arg if op == L.OP_FAULT else 1)
    rq, rs = int(w[L.H_RQ]), int(w[L.H_RQ_STRIDE])
    for cpu, tasks in enumerate(wl.runqueues):
        q = rq + cpu * rs
        w[q + L.Q_N] = len(tasks)
        w[q + L.Q_IDS: q + L.Q_IDS + len(tasks)] = tasks
        for t in tasks:
            w[tb + t * ts + L.T_CPU] = cpu
    st, ss = int(w[L.H_CPUSTAT]), int(w[L.H_CPUSTAT_STRIDE])
    for cpu in range(p.ncpu):
        w[st + cpu * ss + L.S_CUR_MM] = -1
    w[int(w[L.H_READER]) + L.R_MIN_RATIO_PPM] = 1 << 62
    for cpu in range(p.ncpu):
        # the reclaimer always journals (it is not timed per event), so that losing it loses nothing
        w[st + cpu * ss + L.S_J + L.J_ON] = int(p.journal or (p.reclaimer and cpu == p.nwork))
    w[L.H_FAULTS] = int(p.journal)
    for cpu, pages in enumerate(p.fault_body_pages or ()):
        w[st + cpu * ss + L.S_FB_PAGES] = pages
    mod = designs.get(p.design)
    if hasattr(mod, "setup"):
        mod.setup(w, p.ncpu, p.node_of())
    engine_for(p.design, engine_groups(p)).init_mms(w)


def engine_groups(p: RunParams) -> tuple[str, ...]:
    """The engine's entry groups a run calls (shmrss/engine/loops ENTRY_GROUPS): only these are compiled."""
    return ("run", *(("reader",) if p.reader else ()), *(("oom",) if p.oom else ()),
            *(("reclaimer",) if p.reclaimer else ()),
            # the reclaimer journals: if it dies, the parent recovers it as it does a killed CPU
            *(("faults",) if p.faults or p.reclaimer else ()))


def prepare_runs(runs: list) -> None:
    """Compile, in parallel, the engines of the design runs among ``runs`` (fork/exit runs compile their own)."""
    by_groups: dict[tuple[str, ...], list[str]] = {}
    for run in runs:
        if type(run) is Run:
            by_groups.setdefault(engine_groups(run.p), []).append(run.p.design)
    for groups, names in by_groups.items():
        prepare_engines(names, groups)


_RUNS: weakref.WeakSet = weakref.WeakSet()  # runs that have forked children


@atexit.register  # registered after multiprocessing's: runs before its exit handler
def _kill_left_children() -> None:
    """The children ignore SIGTERM (runsignals.py): multiprocessing's exit handler, which terminates its
    daemon children with SIGTERM and joins them, would wait forever for any a run left alive."""
    for run in list(_RUNS):
        run._kill_children()


class Run:
    """One design on one workload: ``Run(params).execute()`` returns the raw measurements."""

    def __init__(self, p: RunParams, progress=None):
        self.p = p
        self.progress = progress  # callable(run, sample, elapsed) or None
        self.seg: Segment | None = None
        self.cpus: list[mp.Process] = []
        self.reader: mp.Process | None = None
        self.reclaimer: mp.Process | None = None
        self.reclaimer_died = False
        self.samples: list[Sample] = []
        self.warnings: list[str] = list(p.placement.warnings)
        self.partial = False
        self.reader_died = False
        self.moved: set[int] = set()
        self.faults = None  # shmrss.faults.FaultDriver, once the segment exists
        self.t0 = 0.0
        self.perf = None  # --perf: a shmrss.perf.PerfStat on the CPU processes
        self.contention = None  # shmrss.contention.Contention: other runs, busy processes on our CPUs
        self.host_ref = None  # --host-reference: a shmrss.host_reference.Sampler reading the CPUs' /proc

    # ---- life cycle
    # what a kind of run changes (fork/exit runs override these)
    def _engine(self):
        return engine_for(self.p.design, engine_groups(self.p))

    def _make_geometry(self) -> Geometry:
        return _geometry(self.p)

    def _fill(self) -> None:
        _populate(self.seg, self.p)

    def _cpu_target(self):
        return cpu_process

    def execute(self) -> dict:
        eng = self._engine()  # compile before forking: children inherit it
        with SIGNALS:  # shmrss/runsignals.py: what each terminating signal does in each phase
            SIGNALS.enter(STARTUP)
            if SIGNALS.pending is not None:  # it came between two designs: do not start another
                raise Interrupted(SIGNALS.pending)
            try:
                return self._execute(eng)
            finally:
                SIGNALS.enter(AFTER)  # a second signal must not cut the clean-up short
                if self.perf is not None:
                    self.perf.kill()
                self._kill_children()
                if self.seg is not None:
                    self.seg.unlink()
                    if self.faults is None or self.faults.can_unmap():
                        self.seg.close()

    def _execute(self, eng) -> dict:
        self.seg = Segment.create(self._make_geometry())
        logger.debug("segment /{} ({} words)", self.seg.name, self.seg.h(L.H_TOTAL))
        self._fill()
        from shmrss.faults import FaultDriver

        self.faults = FaultDriver(self, eng, self.p.faults, self.p.check_every)
        self.faults.arm()
        tsc_per_ns = calibrate_tsc()
        t_fork = time.perf_counter()
        with blocked():  # no child may run the parent's handlers before its own set-up
            self._fork()
        self._wait_barrier()
        if self.p.options.get("host_reference"):
            self._start_host_reference()  # at the barrier: the CPU processes are quiescent, no page touched
        startup_s = time.perf_counter() - t_fork
        from shmrss.contention import Contention

        pinned: dict[int, list[int]] = {}
        for cpu, host in enumerate(self.p.placement.cpus):
            if host is not None:
                pinned.setdefault(host, []).append(cpu)
        self.contention = Contention(self.seg.name, self.warnings, pinned)
        self.contention.look()  # other runs, before the start
        interrupt = None
        from shmrss.host_meta import cpu_times, idle_pct

        times_before = cpu_times()  # the host's idle time over the measured window (host_idle_pct)
        try:
            SIGNALS.enter(MEASURING)
            self._go_and_sample()
            SIGNALS.enter(AFTER)
        except (KeyboardInterrupt, Interrupted) as e:
            SIGNALS.enter(AFTER)  # from here on a signal is recorded only: what was measured is kept
            interrupt = e if isinstance(e, Interrupted) else Interrupted(130)
            self.partial = True
            self.warnings.append(f"interrupted by {interrupt.name}: partial result, measured until the interrupt")
        host_idle = idle_pct(times_before, cpu_times())  # runtest.py reads it from /proc/stat
        perf = self.perf.stop() if self.perf is not None else None  # --perf: close its window first
        self._stop()
        raw = self._collect(eng, tsc_per_ns, startup_s)
        raw["host_idle_pct"] = host_idle
        if self.host_ref is not None:
            raw["host_reference"] = self._host_reference()
        if perf is not None:
            raw["perf"] = perf
        if interrupt is None and SIGNALS.pending is not None:
            self.warnings.append(f"{signame(SIGNALS.pending - 128)} arrived after the measurement ended: "
                                 f"the result is complete")
        if interrupt is not None or SIGNALS.pending is not None:
            raw["interrupt_code"] = interrupt.code if interrupt is not None else SIGNALS.pending
        return raw

    def _fork(self) -> None:
        ctx = mp.get_context("fork")
        _RUNS.add(self)
        p, name, parent = self.p, self.seg.name, os.getpid()
        for cpu, host in enumerate(p.placement.cpus):
            proc = ctx.Process(target=self._cpu_target(), args=(name, p.design, cpu, host, parent),
                               name=f"shmrss-cpu{cpu}", daemon=True)
            proc.start()
            self.cpus.append(proc)
        if p.reclaimer:
            self.reclaimer = ctx.Process(target=reclaimer_process,
                                         args=(name, p.design, p.nwork, p.placement.reader_cpu, parent),
                                         name="shmrss-reclaimer", daemon=True)
            self.reclaimer.start()
        if p.reader:
            self.reader = ctx.Process(target=reader_process,
                                      args=(name, p.design, p.read_interval, p.placement.reader_cpu, parent),
                                      name="shmrss-reader", daemon=True)
            self.reader.start()

    def _ctrl(self, slot: int, line: int = 0) -> int:
        w = self.seg.words
        return int(w[L.H_CTRL]) + line * int(w[L.H_LINE]) + slot

    def check_children(self) -> None:
        """RunFailed if an emulated CPU died outside a journalled run; otherwise a dead CPU is recovered from its
        journal and a dead reclaimer or reader recorded. shmrss.faults calls it after each kill."""
        gone = self.faults.gone if self.faults is not None else set()
        live = self.seg is not None and int(self.seg.words[self._ctrl(L.C_GO)]) != 0
        for cpu, proc in enumerate(self.cpus):
            if proc.exitcode is not None and cpu not in gone:
                if not (live and self.p.journal):
                    raise RunFailed(f"emulated CPU {cpu} (pid {proc.pid}) died: {_exit_text(proc.exitcode)}")
                msg = f"emulated CPU {cpu} (pid {proc.pid}) died ({_exit_text(proc.exitcode)}): recovered from its journal"
                logger.warning(msg)
                self.warnings.append(msg)
                self.faults.recover(cpu, None, time.perf_counter() - self.t0, killed=True)
        if self.reclaimer is not None and not self.reclaimer_died and self.reclaimer.exitcode is not None:
            self.reclaimer_died = True
            msg = f"the reclaimer (pid {self.reclaimer.pid}) died ({_exit_text(self.reclaimer.exitcode)})"
            if live and self.faults is not None:
                # it journals always: its last update is completed, and the run goes on without it
                self.faults.recover(self.p.nwork, self.faults.reclaimer_fault, time.perf_counter() - self.t0,
                                    killed=True)
                msg += ": its last update recovered, the run goes on without it"
            logger.warning(msg)
            self.warnings.append(msg)
        if self.reader is not None and not self.reader_died and self.reader.exitcode is not None:
            self.reader_died = True
            if self.seg is not None:
                self._engine().release_owner(self.seg.words, L.OWNER_READER)  # a lock it died holding
            msg = f"the reader (pid {self.reader.pid}) died ({_exit_text(self.reader.exitcode)}): reads stop there"
            logger.warning(msg)
            self.warnings.append(msg)

    def _wait_barrier(self) -> None:
        w = self.seg.words
        need = len(self.cpus) + int(self.reclaimer is not None)
        deadline = time.perf_counter() + STARTUP_TIMEOUT_S
        while int(w[self._ctrl(L.C_BARRIER, 1)]) < need:
            self.check_children()
            if time.perf_counter() > deadline:
                raise RunFailed(f"the emulated CPUs did not reach the start barrier in {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.001)

    def _events(self) -> np.ndarray:
        w = self.seg.words
        st, ss = int(w[L.H_CPUSTAT]), int(w[L.H_CPUSTAT_STRIDE])
        return np.array([w[st + c * ss + L.S_EVENTS] for c in range(len(self.cpus))], dtype=np.int64)

    def _go_and_sample(self) -> None:
        w = self.seg.words
        if self.p.options.get("perf"):
            # --perf (shmrss/perf.py): attached and counting before GO, so perf's start-up is not in the run
            from shmrss.perf import PerfStat

            self.perf = PerfStat([c.pid for c in self.cpus], events_fn=lambda: int(self._events().sum()))
            self.perf.start()
        w[self._ctrl(L.C_STATE)] = L.STATE_RUNNING
        t0 = self.t0 = time.perf_counter()
        w[self._ctrl(L.C_GO)] = 1
        self.samples.append(Sample(0.0, self._events()))
        end = t0 + self.p.duration
        next_sample = t0 + 1.0
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            wake = min(next_sample, end)
            due = self.faults.next_due() if self.faults is not None else None
            if due is not None:
                wake = min(wake, t0 + due)
            sentinels = [p.sentinel for p in self._children() if p.exitcode is None]
            mp.connection.wait(sentinels, timeout=max(0.0, wake - now))
            self.check_children()
            if self.faults is not None:
                self.faults.tick(time.perf_counter() - t0)
            now = time.perf_counter()
            if now >= next_sample or now >= end:
                self.samples.append(Sample(now - t0, self._events()))
                w[self._ctrl(L.C_PARENT_BEAT)] = time.monotonic_ns()
                self._check_pinning()
                self.contention.look([c.pid for c in self._children() if c.pid])
                next_sample += 1.0
                if self.progress:
                    self.progress(self, now - t0)
        if self.samples[-1].t < self.p.duration - 0.05:
            self.samples.append(Sample(time.perf_counter() - t0, self._events()))

    def _check_pinning(self) -> None:
        for cpu, (proc, host) in enumerate(zip(self.cpus, self.p.placement.cpus)):
            if cpu in self.moved:
                continue
            try:
                now_on = psutil.Process(proc.pid).cpu_num()
            except psutil.Error:
                continue
            if now_on != host:
                self.moved.add(cpu)
                self.warnings.append(f"emulated CPU {cpu} was seen on host CPU {now_on}, not its pinned {host}")

    def _stop(self) -> None:
        w = self.seg.words
        w[self._ctrl(L.C_STOP)] = 1
        w[self._ctrl(L.C_STATE)] = L.STATE_STOP
        deadline = time.perf_counter() + STOP_TIMEOUT_S
        gone = self.faults.gone if self.faults is not None else set()
        for cpu, proc in enumerate(self.cpus):
            if cpu in gone:
                continue
            proc.join(max(0.0, deadline - time.perf_counter()))
            if proc.exitcode is None:
                raise RunFailed(f"emulated CPU {cpu} did not stop within {STOP_TIMEOUT_S:.0f} s")
            if proc.exitcode != 0:
                raise RunFailed(f"emulated CPU {cpu} (pid {proc.pid}) failed: {_exit_text(proc.exitcode)}")
        if self.reclaimer is not None:
            self.reclaimer.join(max(1.0, deadline - time.perf_counter()))
            if self.reclaimer.exitcode is None:
                raise RunFailed(f"the reclaimer did not stop within {STOP_TIMEOUT_S:.0f} s")
        if self.reader is not None:
            self.reader.join(max(1.0, deadline - time.perf_counter()))
            if self.reader.exitcode not in (0, None) and not self.reader_died:
                self.reader_died = True
                self.warnings.append(f"the reader failed: {_exit_text(self.reader.exitcode)}")
        w[self._ctrl(L.C_STATE)] = L.STATE_DONE

    def _children(self) -> list[mp.Process]:
        return self.cpus + [c for c in (self.reclaimer, self.reader, getattr(self.host_ref, "proc", None))
                            if c is not None]

    def _start_host_reference(self) -> None:
        from shmrss.host_reference import HostReferenceError, Sampler

        with blocked():  # as every child: none runs the parent's handlers before its own set-up
            self.host_ref = Sampler(self.seg.name, self.p.design, self.p.placement.reader_cpu)
        try:
            self.host_ref.wait_ready()
        except HostReferenceError as e:
            raise RunFailed(f"--host-reference: {e}") from None
        # measured (docs/host-reference.md): with the sampler, a loaded 2-CPU host ran 0.76-2.4x the events/s
        self.warnings.append("--host-reference: a /proc sampler ran beside the CPUs; events/s and ns/event are "
                             "not comparable with runs without it")

    def _host_reference(self) -> dict | None:
        """The host-reference record (shmrss/host_reference_stats.py), or None with a warning if it was lost."""
        from shmrss.host_reference import HostReferenceError, kernel_info
        from shmrss.host_reference_stats import summary

        try:
            raw = self.host_ref.finish()
        except (HostReferenceError, EOFError, OSError) as e:
            self.warnings.append(f"--host-reference: the /proc sampler's samples were lost ({e})")
            return None
        return summary(raw, kernel_info(), self.p.design, online_cpus(self.p), self.p.workload.nmm)

    def _kill_children(self) -> None:
        for proc in self._children():
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)

    # ---- measurements
    def _collect(self, eng, tsc_per_ns: float, startup_s: float) -> dict:
        """The raw measurements from the stopped segment, in order: the CPUs' records, the reclaimer's, the
        quiescent check, the reader's and OOM's rings, then the design's own check before every task exits
        and the teardown check after."""
        w = self.seg.words
        per_cpu = [self._cpu_record(c, tsc_per_ns) for c in range(len(self.cpus))]
        reclaimer = self._reclaimer_record(tsc_per_ns) if self.p.reclaimer else None
        nmm = int(w[L.H_NMM])
        hiwater = w[int(w[L.H_HIWATER]): int(w[L.H_HIWATER]) + nmm * int(w[L.H_LINE]): int(w[L.H_LINE])].copy()
        check = np.zeros((nmm * L.NMEMBERS, 5), dtype=np.int64)
        eng.quiescent_check(w, check)
        reader = _words(w, int(w[L.H_READER]), _READER_WORDS)
        timer = tsc_overhead_ticks()  # each latency sample includes one rdtsc pair
        step_ns = tsc_granularity_ticks() / tsc_per_ns
        if step_ns > 2:
            self.warnings.append(f"the TSC advances in steps of {step_ns:.0f} ns on this host: read latencies "
                                 f"are quantised to that")
        lat_a, lat_p = self._read_latencies(reader, timer, tsc_per_ns)
        oom = self._oom_record(tsc_per_ns) if int(w[L.H_OOM]) else None
        if self.p.journal:
            self.warnings.append("faults injected: the CPUs kept an in-flight journal (each update a call); "
                                 "timings are not comparable with runs without faults")
        own_bad = int(eng.design_consistent(w))  # before the exits change the thread counts
        threads_off = int(eng.threads_off(w))
        eng.exit_all(w)  # every task exits, every CPU leaves its mm
        bad = eng.teardown(w, 0)
        return {
            "per_cpu": per_cpu, "check": check, "reader": reader, "lat_approx_ns": lat_a, "lat_precise_ns": lat_p,
            "teardown_bad": bad, "samples": self.samples, "tsc_per_ns": tsc_per_ns,
            "timer_overhead_ns": timer / tsc_per_ns, "tsc_step_ns": step_ns, "startup_s": startup_s,
            "warnings": self.warnings, "partial": self.partial, "reader_died": self.reader_died,
            "reclaimer": reclaimer, "oom": oom, "design_bad": own_bad, "hiwater": hiwater, "threads_off": threads_off,
            "faults": self.faults.summary() if self.faults is not None else None,
            "contention": self.contention.summary() if self.contention is not None else None,
        }

    def _cpu_record(self, c: int, tsc_per_ns: float) -> dict:
        """Emulated CPU c's counts and window, from its record in the segment."""
        w = self.seg.words
        b = int(w[L.H_CPUSTAT]) + c * int(w[L.H_CPUSTAT_STRIDE])
        events = int(w[b + L.S_EVENTS])
        span_ns = (int(w[b + L.S_TSC_END]) - int(w[b + L.S_TSC_START])) / tsc_per_ns
        record = {
            "cpu": c, "host_cpu": int(w[b + L.S_HOSTCPU]), "pid": int(w[b + L.S_PID]),
            "events": events, "seconds": span_ns / 1e9,
            "events_per_s": events / span_ns * 1e9 if span_ns > 0 else 0.0,
            "ns_per_event": span_ns / events if events else None,
            "pages": int(w[b + L.S_PAGES]),  # faulted: a fault of n pages is one event of n pages
            "switches": int(w[b + L.S_SWITCHES]), "slow_paths": int(w[b + L.S_SLOW]),
            "lock_spins": int(w[b + L.S_SPINS]), "var": int(w[b + L.S_VAR]), "commit": int(w[b + L.S_COMMIT]),
            "hits": int(w[b + L.S_HITS]), "misses": int(w[b + L.S_MISSES]),
            "sched_steps": int(w[b + L.S_OPS]), "migrations": int(w[b + L.S_MIGRATIONS]),
            "idle_passes": int(w[b + L.S_IDLE]),
            "raced_moves": int(w[b + L.S_RACED]), "raced_left_max": int(w[b + L.S_RACED_MAX]),
            "state": {L.CPU_DEAD: "killed", L.CPU_OFFLINE: "offline"}.get(int(w[b + L.S_STATUS]), "ran"),
        }
        if self.p.fault_body_pages:
            from shmrss import faultbody

            record["fault_body"] = faultbody.per_cpu(w, b, events, tsc_per_ns, tsc_overhead_ticks())
        return record

    def _reclaimer_record(self, tsc_per_ns: float) -> dict:
        """The reclaimer's moves (its record follows the CPUs')."""
        w = self.seg.words
        b = int(w[L.H_CPUSTAT]) + len(self.cpus) * int(w[L.H_CPUSTAT_STRIDE])
        span_ns = (int(w[b + L.S_TSC_END]) - int(w[b + L.S_TSC_START])) / tsc_per_ns
        moves = int(w[b + L.S_EVENTS]) // 4
        return {"moves": moves, "moves_per_s": moves / span_ns * 1e9 if span_ns > 0 else 0.0,
                "misses": int(w[b + L.S_MISSES]), "var": int(w[b + L.S_VAR]),
                "commit": int(w[b + L.S_COMMIT]), "died": self.reclaimer_died,
                "raced_moves": int(w[b + L.S_RACED]), "raced_left_max": int(w[b + L.S_RACED_MAX])}

    def _read_latencies(self, reader: dict, timer: float, tsc_per_ns: float) -> tuple[np.ndarray, np.ndarray]:
        """The approximate and precise reads' latencies in ns (the timer's own cost taken off), from the ring."""
        w = self.seg.words
        ring = int(w[L.H_RING])
        ring_a = int(w[L.H_READER]) + L.R_HEAD_WORDS
        lat_a = np.maximum(np.array(w[ring_a: ring_a + min(reader["approx_reads"], ring)]) - timer, 0) / tsc_per_ns
        lat_p = np.maximum(np.array(w[ring_a + ring: ring_a + ring + min(reader["precise_reads"], ring)]) - timer,
                           0) / tsc_per_ns
        return lat_a, lat_p

    def _oom_record(self, tsc_per_ns: float) -> dict:
        """The OOM selector's counts and its latencies in ns (--oom)."""
        w = self.seg.words
        o = int(w[L.H_OOM])
        ring = int(w[L.H_RING])
        keep = min(int(w[o + L.O_SELECTIONS]), ring)
        oom = _words(w, o, _OOM_WORDS)
        oom["lat_two_pass_ns"] = np.array(w[o + L.O_HEAD_WORDS: o + L.O_HEAD_WORDS + keep]) / tsc_per_ns
        oom["lat_precise_ns"] = np.array(w[o + L.O_HEAD_WORDS + ring: o + L.O_HEAD_WORDS + ring + keep]) / tsc_per_ns
        return oom


_READER_WORDS = (
    ("approx_reads", L.R_NAPPROX), ("precise_reads", L.R_NPRECISE), ("approx_max_err", L.R_APPROX_MAXERR),
    ("approx_violations", L.R_APPROX_VIOL), ("precise_max_err", L.R_PRECISE_MAXERR),
    ("precise_violations", L.R_PRECISE_VIOL), ("max_bound", L.R_MAX_BOUND), ("err_ppm", L.R_ERR_PPM),
    ("min_ratio_ppm", L.R_MIN_RATIO_PPM), ("passes", L.R_PASSES), ("viol_kind", L.R_VIOL_KIND),
    ("viol_mm", L.R_VIOL_MM), ("viol_member", L.R_VIOL_MEMBER), ("viol_value", L.R_VIOL_VALUE),
    ("viol_lo", L.R_VIOL_LO), ("viol_hi", L.R_VIOL_HI), ("approx_transient", L.R_APPROX_TRANSIENT),
    ("approx_transient_max", L.R_APPROX_TRANSIENT_MAX), ("precise_transient", L.R_PRECISE_TRANSIENT),
    ("precise_transient_max", L.R_PRECISE_TRANSIENT_MAX))
_OOM_WORDS = (
    ("selections", L.O_SELECTIONS), ("judged", L.O_JUDGED), ("disagreements", L.O_DISAGREE),
    ("precise_sums", L.O_PRECISE_SUMS), ("cap_hits", L.O_CAP_HITS),
    ("last_two_pass_victim", L.O_LAST_2P), ("last_precise_victim", L.O_LAST_PRECISE))


def _words(w, base: int, named: tuple[tuple[str, int], ...]) -> dict:
    """{name: the segment word at base + slot} of each (name, slot)."""
    return {key: int(w[base + slot]) for key, slot in named}


def _exit_text(code: int) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
