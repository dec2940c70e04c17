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
import threading
import time
from dataclasses import dataclass

import numpy as np
from loguru import logger

from shmrss import layout as L
from shmrss.errors import RunFailed
from shmrss.runsignals import SIGNALS

PARK_TIMEOUT_S = 10.0
RECOVERY_TIMEOUT_S = 5.0
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
    and runs the soak checks. Owned by an ``orchestrator.Run``; of the run it uses only the public
    ``cpus``, ``reader``, ``reclaimer``, ``seg``, ``p``, ``warnings`` and ``check_children()``, and it
    does not import the orchestrator (the run hands itself in)."""

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
        self._first: dict[int, dict] = {}  # CPUs found dead while recovering another: their words before
        self._running: dict[int, tuple] = {}  # CPU -> (thread, [inconsistencies]) of first halves under way
        self._completed: dict[int, int] = {}  # CPU -> inconsistencies of its finished first half
        self._stuck = False

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
                run.check_children()
            return
        if f.target == "reclaimer":
            if run.reclaimer is not None and run.reclaimer.is_alive():
                os.kill(run.reclaimer.pid, signal.SIGKILL)
                run.reclaimer.join(5.0)
                self.reclaimer_fault = f  # so that its recovery is recorded as this kill
                run.check_children()
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
        """The CPU-dead callback for ``cpu`` (its process has exited): complete, settle, fold, rehome.

        Signals that arrive meanwhile are served when it is done (runsignals.Guard.held): a recovery
        left half done would fail the invariants of the partial result."""
        with SIGNALS.held():
            return self._recover(cpu, f, elapsed, killed)

    def _recover(self, cpu: int, f: Fault | None, elapsed: float, killed: bool) -> dict:
        w = self.words
        st = self._stat(cpu)
        t0 = time.perf_counter()
        pre = self._first.pop(cpu, None) or self._mark_gone(cpu, killed)
        var, commit, journaled = pre["var"], pre["commit"], pre["journal"]
        ev = {"t": round(elapsed, 3), "cpu": cpu, "kind": f.kind if f else "died", "killed": killed,
              "journal": journaled, "in_flight": var != commit, "op": pre["op"], "step": pre["step"]}
        bad = 0
        if killed:
            if not journaled:
                raise _failed(f"emulated CPU {cpu} died in a run without the in-flight journal: its last update "
                              f"cannot be recovered (runs with --kill-at or --offline-at keep one)")
            if cpu not in self._completed:
                self._complete_dead(cpu, pre)
            bad += self._completed.pop(cpu)
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

    def _mark_gone(self, cpu: int, killed: bool) -> dict:
        """Record a CPU as dead (or offline) and end its time; returns what its words said before."""
        w = self.words
        st = self._stat(cpu)
        j = st + L.S_J
        pre = {"var": int(w[st + L.S_VAR]), "commit": int(w[st + L.S_COMMIT]), "journal": int(w[j + L.J_ON]) != 0,
               "op": OP_NAMES.get(int(w[j + L.J_OP]), "?"), "step": int(w[j + L.J_STEP])}
        w[st + L.S_STATUS] = L.CPU_DEAD if killed else L.CPU_OFFLINE
        if killed:
            from shmrss.atomics import tsc_now

            w[st + L.S_TSC_END] = tsc_now()  # its time ends here (the TSC is the same on every core)
        return pre

    def _dead_unrecovered(self) -> list[int]:
        """Emulated CPUs (the reclaimer's too) whose process has died and whose first half has not started."""
        run = self.run
        procs = list(enumerate(run.cpus)) + ([(run.p.nwork, run.reclaimer)] if run.reclaimer is not None else [])
        return [c for c, proc in procs if proc.exitcode is not None and c not in self.gone
                and c not in self._first and c not in self._completed and c not in self._running]

    def _complete_dead(self, cpu: int, pre: dict) -> None:
        """First half of the recovery (``recover_dead``) of ``cpu`` and of every other CPU found dead meanwhile,
        each in a thread of its own (compiled, without the GIL): CPUs killed at the same instant may each wait
        for a lock another holds, as they would have alive, so each one's update is completed alongside the
        others'. Bounded: after RECOVERY_TIMEOUT_S (1 s once a signal came) the run gives up."""
        w = self.words
        self._running = {}

        def start(c: int, before: dict) -> None:
            if not before["journal"]:
                return  # its own recover() refuses it
            st = self._stat(c)
            # from here until the doubt is settled, reads that overlap are not judged on this CPU's part
            w[st + L.S_VAR] = before["var"] + self.eng.RECOVERY_VAR
            box: list[int] = []
            in_flight = int(before["var"] != before["commit"])
            th = threading.Thread(target=lambda: box.append(int(self.eng.recover_dead(w, c, in_flight))),
                                  name=f"shmrss-recover-cpu{c}", daemon=True)
            self._running[c] = (th, box)
            th.start()

        start(cpu, pre)
        t0 = time.perf_counter()
        deadline = t0 + RECOVERY_TIMEOUT_S
        while any(th.is_alive() for th, _ in self._running.values()):
            for th, _ in self._running.values():
                th.join(0.005)
            for c in self._dead_unrecovered():
                self._first[c] = self._mark_gone(c, killed=True)
                start(c, self._first[c])
            if self.run.reader is not None and self.run.reader.exitcode is not None:
                self.eng.release_owner(w, L.OWNER_READER)  # a lock the reader died holding
            if SIGNALS.pending is not None:
                deadline = min(deadline, time.perf_counter() + 1.0)
            if time.perf_counter() > deadline:
                self._give_up(time.perf_counter() - t0)
        for c, (_, box) in self._running.items():
            self._completed[c] = box[0] if box else 1
        self._running = {}

    def _give_up(self, waited: float) -> None:
        stuck = sorted(c for c, (th, _) in self._running.items() if th.is_alive())
        for c in [c for c, proc in enumerate(self.run.cpus) if proc.exitcode is not None]:
            self.eng.release_owner(self.words, c + 1)  # lets a waiting recovery thread run to its end
        until = time.perf_counter() + 1.0
        for c in stuck:
            self._running[c][0].join(max(0.0, until - time.perf_counter()))
        self._stuck = any(th.is_alive() for th, _ in self._running.values())
        why = (f"a signal came after {waited:.1f} s" if SIGNALS.pending is not None else
               f"its update in flight waited {waited:.1f} s for a lock no recovery releases")
        raise _failed(f"gave up recovering emulated CPU{'s' if len(stuck) > 1 else ''} "
                      f"{', '.join(map(str, stuck))}: {why}; the counters are no longer consistent, so nothing "
                      f"is reported")

    def can_unmap(self) -> bool:
        """No recovery thread still reads the segment (one left stuck when the parent gave up)."""
        return not self._stuck

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


def _failed(msg: str) -> RunFailed:
    return RunFailed(msg)
