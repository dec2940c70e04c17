"""Faults injected into a live run, and what the parent does about them.

``--offline-at T:CPU`` asks an emulated CPU to go offline (it stops at its next
check point); ``--kill-at T:CPU`` sends it SIGKILL, wherever it is. Either way
the parent then does what the kernel's CPU-dead callback does: with every live
CPU parked at a barrier, it folds the CPU's per-CPU state and gives its tasks
to the live CPUs. A killed CPU may die in the middle of an update: its
in-flight journal (layout.S_J) says which step it had reached, and the parent
completes the update first (``recover_dead``); the one step nothing local can
tell about, a ``lock xadd`` on a shared word, is settled by the conservation
law it belongs to once everything is parked (``settle_dead``).

``--check-every S`` (soak mode) parks every CPU each S seconds and checks the
invariants there; a violation is reported at once with what reproduces it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

import numpy as np
from loguru import logger

from shmrss import layout as L

PARK_TIMEOUT_S = 10.0
FREEZE_TIMEOUT_S = 5.0
OP_NAMES = {L.JOP_NONE: "none", L.JOP_ADD: "update", L.JOP_SWITCH: "mm switch", L.JOP_SCHED: "clone/exit"}
RES_NAMES = {L.RES_LANDED: "had landed", L.RES_APPLIED: "applied by recovery", L.RES_BAD: "INCONSISTENT"}


class FaultError(ValueError):
    """A fault specification that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start of measurement
    kind: str  # "offline", "kill", or "freeze" (tests: kill at the n-th kill point from then)
    target: int | str  # emulated CPU number, "reader" or "reclaimer"
    points: int = 0  # freeze: kill points to pass before freezing
    step: int = 0  # freeze: count only the kill points of this design step (0: any)

    @property
    def label(self) -> str:
        what = f"cpu{self.target}" if isinstance(self.target, int) else self.target
        where = f" (kill point {self.points}{' of step ' + str(self.step) if self.step else ''})" if self.points else ""
        return f"{self.kind} {what} at {self.at:g} s{where}"


def parse(text: str, kind: str) -> Fault:
    """'T:CPU' (kill also takes 'T:reader' and 'T:reclaimer') -> Fault."""
    opt = f"--{kind}-at"
    at, sep, target = text.partition(":")
    if not sep:
        raise FaultError(f"{opt} takes T:CPU (seconds after the start, emulated CPU number), got {text!r}")
    try:
        t = float(at)
    except ValueError:
        raise FaultError(f"{opt} {text!r}: {at!r} is not a time in seconds") from None
    if not (t >= 0 and t < 1e6):
        raise FaultError(f"{opt} {text!r}: the time must be between 0 and 1e6 seconds")
    target = target.strip()
    if kind == "kill" and target in ("reader", "reclaimer"):
        return Fault(t, kind, target)
    try:
        cpu = int(target)
    except ValueError:
        also = " (or reader, reclaimer)" if kind == "kill" else ""
        raise FaultError(f"{opt} {text!r}: {target!r} is not an emulated CPU number{also}") from None
    if cpu < 0:
        raise FaultError(f"{opt} {text!r}: CPU numbers start at 0")
    return Fault(t, kind, cpu)


def validate(faults: list[Fault], nwork: int, duration: float, reclaimer: bool, reader: bool) -> None:
    """Refuse faults this run cannot take: unknown CPUs, every CPU gone, times past the end."""
    gone: set[int] = set()
    for f in faults:
        if f.at >= duration:
            raise FaultError(f"{f.label}: the run lasts {duration:g} s")
        if f.target == "reclaimer" and not reclaimer:
            raise FaultError(f"{f.label}: this run has no reclaimer (add --reclaimer)")
        if f.target == "reader" and not reader:
            raise FaultError(f"{f.label}: this run has no reader")
        if isinstance(f.target, int):
            if f.target >= nwork:
                raise FaultError(f"{f.label}: the emulated CPUs are 0..{nwork - 1}")
            if f.target in gone:
                raise FaultError(f"{f.label}: CPU {f.target} is already gone by then")
            gone.add(f.target)
    if gone and len(gone) >= nwork:
        raise FaultError("the faults would take every emulated CPU away: at least one must stay to run the tasks")


class FaultDriver:
    """Injects the run's faults at their times, recovers the CPUs it (or anything else) took away,
    and runs the soak checks. Owned by an ``orchestrator.Run``."""

    def __init__(self, run, eng, faults: list[Fault], check_every: float | None):
        self.run = run
        self.eng = eng
        self.pending = sorted(faults, key=lambda f: f.at)
        self.check_every = check_every
        self.next_check = check_every if check_every else None
        self.events: list[dict] = []  # what happened to each CPU taken away
        self.gone: set[int] = set()  # CPUs offline or dead, already recovered
        self.checks = 0
        self.violations: list[dict] = []
        self.park_ms: list[float] = []
        self.reclaimer_fault: Fault | None = None
        self.unreached: list[Fault] = []  # freezes whose kill point did not come in time

    @property
    def words(self):
        return self.run.seg.words

    def arm(self) -> None:
        """Before the start: freezes at time 0 are set now, so a CPU stops the first time it reaches the step."""
        for f in self.pending:
            if f.kind == "freeze" and f.at == 0 and isinstance(f.target, int):
                st = self._stat(f.target)
                self.words[st + L.S_J + L.J_KILL_STEP] = f.step
                self.words[st + L.S_J + L.J_KILL] = f.points

    def next_due(self) -> float | None:
        times = [f.at for f in self.pending[:1]] + ([self.next_check] if self.next_check is not None else [])
        return min(times) if times else None

    # ---- the parent's loop calls this whenever it wakes
    def tick(self, elapsed: float) -> None:
        while self.pending and self.pending[0].at <= elapsed:
            self._inject(self.pending.pop(0), elapsed)
        if self.next_check is not None and elapsed >= self.next_check:
            self.check(elapsed)
            self.next_check += self.check_every

    def _stat(self, cpu: int) -> int:
        w = self.words
        return int(w[L.H_CPUSTAT]) + cpu * int(w[L.H_CPUSTAT_STRIDE])

    def _inject(self, f: Fault, elapsed: float) -> None:
        run = self.run
        if f.target == "reader":
            if run.reader is not None and run.reader.is_alive():
                os.kill(run.reader.pid, signal.SIGKILL)
                run.reader.join(5.0)
                run._check_children()
            return
        if f.target == "reclaimer":
            if run.reclaimer is not None and run.reclaimer.is_alive():
                os.kill(run.reclaimer.pid, signal.SIGKILL)
                run.reclaimer.join(5.0)
                self.reclaimer_fault = f  # so that its recovery is recorded as this kill
                run._check_children()
            return
        cpu = f.target
        proc = run.cpus[cpu]
        if cpu in self.gone or not proc.is_alive():
            run.warnings.append(f"{f.label}: CPU {cpu} was already gone; fault skipped")
            return
        if f.kind == "offline":
            self.words[self._stat(cpu) + L.S_REQ] = L.REQ_OFFLINE
            proc.join(PARK_TIMEOUT_S)
            if proc.exitcode is None:
                raise _failed(f"{f.label}: the CPU did not go offline within {PARK_TIMEOUT_S:.0f} s")
            self.recover(cpu, f, elapsed, killed=False)
            return
        if f.kind == "freeze":
            self._freeze(cpu, f)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5.0)
        self.recover(cpu, f, elapsed, killed=True)

    def _freeze(self, cpu: int, f: Fault) -> None:
        """Tests: let the CPU run to its n-th kill point and stop there, so the kill lands between two steps."""
        w = self.words
        st = self._stat(cpu)
        if f.at > 0:  # time-0 freezes were armed before the start
            w[st + L.S_J + L.J_KILL_STEP] = f.step
            w[st + L.S_J + L.J_KILL] = f.points
        deadline = time.perf_counter() + FREEZE_TIMEOUT_S
        while int(w[st + L.S_STATUS]) != L.CPU_FROZEN:
            if time.perf_counter() > deadline or not self.run.cpus[cpu].is_alive():
                w[st + L.S_J + L.J_KILL] = 0
                self.unreached.append(f)
                self.run.warnings.append(f"{f.label}: kill point not reached in {FREEZE_TIMEOUT_S:.0f} s; killed anywhere")
                return
            time.sleep(0.0005)

    def recover(self, cpu: int, f: Fault | None, elapsed: float, killed: bool) -> dict:
        """The CPU-dead callback for ``cpu`` (its process has exited): complete, settle, fold, rehome."""
        w = self.words
        st = self._stat(cpu)
        j = st + L.S_J
        t0 = time.perf_counter()
        var, commit = int(w[st + L.S_VAR]), int(w[st + L.S_COMMIT])
        journaled = int(w[j + L.J_ON]) != 0
        ev = {"t": round(elapsed, 3), "cpu": cpu, "kind": f.kind if f else "died", "killed": killed,
              "journal": journaled, "in_flight": var != commit,
              "op": OP_NAMES.get(int(w[j + L.J_OP]), "?"), "step": int(w[j + L.J_STEP])}
        w[st + L.S_STATUS] = L.CPU_DEAD if killed else L.CPU_OFFLINE
        if killed:
            from shmrss.atomics import _rdtsc_now

            w[st + L.S_TSC_END] = _rdtsc_now()  # its time ends here (the TSC is the same on every core)
        bad = 0
        if killed:
            if not journaled:
                raise _failed(f"emulated CPU {cpu} died in a run without the in-flight journal: its last update "
                              f"cannot be recovered (runs with --kill-at or --offline-at keep one)")
            # from here until the doubt is settled, reads that overlap are not judged on this CPU's part
            w[st + L.S_VAR] = var + self.eng.RECOVERY_VAR
            bad += int(self.eng.recover_dead(w, cpu, int(var != commit)))
        out = np.zeros(3, dtype=np.int64)
        with self.parked():
            bad += int(self.eng.settle_dead(w, cpu, out))
        kind, res, moved = (int(x) for x in out)
        ev.update({"doubt": L.DOUBT_NAMES[kind], "settled": RES_NAMES.get(res) if kind else None,
                   "tasks_moved": moved, "inconsistencies": bad,
                   "recovery_ms": round((time.perf_counter() - t0) * 1e3, 3)})
        self.gone.add(cpu)
        self.events.append(ev)
        busy = var != commit or ev["op"] != "none"
        where = f"in the middle of an {ev['op']} (step {ev['step']})" if busy else "between operations"
        doubt = f", doubt on the {ev['doubt']} {ev['settled']}" if kind else ""
        msg = (f"cpu{cpu} {'killed' if killed else 'offline'} at {elapsed:.2f} s: {where}{doubt}; "
               f"{moved} task(s) moved; {ev['recovery_ms']:.1f} ms")
        (logger.error if bad else logger.info)(msg + (f"; {bad} INCONSISTENCIES" if bad else ""))
        return ev

    def can_unmap(self) -> bool:
        """No recovery thread still reads the segment (one left stuck when the parent gave up)."""
        return True

    # ---- a barrier for the parent: every live CPU parked at a check point
    @contextlib.contextmanager
    def parked(self):
        w = self.words
        ctrl = int(w[L.H_CTRL])
        t0 = time.perf_counter()
        w[ctrl + L.C_PAUSE] = 1
        try:
            deadline = t0 + PARK_TIMEOUT_S
            while not self._all_parked():
                if time.perf_counter() > deadline:
                    raise _failed(f"the emulated CPUs did not park within {PARK_TIMEOUT_S:.0f} s")
                time.sleep(0.0002)
            yield
        finally:
            w[ctrl + L.C_PAUSE] = 0
            self.park_ms.append((time.perf_counter() - t0) * 1e3)

    def _all_parked(self) -> bool:
        w = self.words
        run = self.run
        procs = list(enumerate(run.cpus))
        if run.reclaimer is not None:
            procs.append((run.p.nwork, run.reclaimer))
        for cpu, proc in procs:
            s = int(w[self._stat(cpu) + L.S_STATUS])
            if s in (L.CPU_RUNNING, L.CPU_BARRIER):
                if not proc.is_alive():
                    continue  # died meanwhile: the parent's loop recovers it next
                return False
        return True

    # ---- soak mode
    def check(self, elapsed: float) -> None:
        """Park every CPU and check the invariants there; report a violation at once."""
        eng, w = self.eng, self.words
        nmm = int(w[L.H_NMM])
        rows = np.zeros((nmm * L.NMEMBERS, 5), dtype=np.int64)
        with self.parked():
            eng.quiescent_check(w, rows)
            own = int(eng.design_consistent(w))
            threads = int(eng.threads_off(w))
            events = [int(w[self._stat(c) + L.S_EVENTS]) for c in range(len(self.run.cpus))]
        self.checks += 1
        found = []
        truth, precise, approx, under, over = rows.T
        for i in np.nonzero(precise != truth)[0][:4]:
            found.append(f"precise {precise[i]} != truth {truth[i]} (mm {i // 4}, {L.MEMBER_NAMES[i % 4]})")
        for i in np.nonzero((approx < truth - under) | (approx > truth + over))[0][:4]:
            found.append(f"approximate {approx[i]} outside truth {truth[i]} -{under[i]}/+{over[i]} "
                         f"(mm {i // 4}, {L.MEMBER_NAMES[i % 4]})")
        if own:
            found.append(f"{own} of the design's own redundant words disagree")
        if threads:
            found.append(f"{threads} mm thread count(s) differ from the tasks' tapes")
        if found:
            v = {"check": self.checks, "t": round(elapsed, 3), "design": self.run.p.design,
                 "workload": self.run.p.workload.name, "events_per_cpu": events,
                 "faults_so_far": [e["kind"] + f" cpu{e['cpu']} at {e['t']} s" for e in self.events],
                 "found": found}
            self.violations.append(v)
            logger.error("check {} at {:.1f} s: INVARIANT VIOLATED ({} on {}; events per CPU {}): {}",
                         self.checks, elapsed, v["design"], v["workload"], events, "; ".join(found))

    def summary(self) -> dict:
        for f in self.pending:
            self.run.warnings.append(f"{f.label}: not injected, the run ended first")
        self.pending = []
        return {"injected": self.events, "checks": self.checks, "violations": self.violations,
                "park_ms_max": round(max(self.park_ms), 3) if self.park_ms else None}


def _failed(msg: str):
    from shmrss.orchestrator import RunFailed

    return RunFailed(msg)
