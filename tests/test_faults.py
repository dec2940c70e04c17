"""Faults mid-run: a CPU killed between any two steps of an update, a CPU taken offline, the reader or
the reclaimer killed, and soak checks; every design must end with precise == truth and its own state
consistent, and the checks must catch a broken invariant."""

from __future__ import annotations

import pytest

from shmrss import designs, faults as F, layout as L, result
from shmrss.faults import Fault
from shmrss.orchestrator import Run, RunParams
from shmrss.topology import plan, read_topology
from shmrss.workload import compile_workload

# one tape that takes every path: own faults (past split's 64), remote updates (single's locked remote
# words), exec's argument copy (faults on an mm the CPU does not cache: pcpcache's misses), a clone and an
# exit (thread counts, single's switch), migrations and yields (mm switches)
TAPE = [["fault", "anon", 70], ["remote", "anon", 3, 1], ["exec", "anon", 2, 1], ["clone"], ["fault", "file", 40],
        ["yield"], ["unmap", "file", 40], ["remote", "anon", -3, 1], ["remote", "anon", -2, 1], ["migrate", 1],
        ["exit"], ["unmap", "anon", 70]]

# the kill points of each design (the journal's steps)
STEPS = {
    "atomic": [1],
    "percpu": [1, 2, 3, 4, 5],
    "tree": [1, 2],
    "pcpcache": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    "split": [1, 2, 3, 4, 5, 6, 7],
    "single": [16, 1, 3, 4],
    "single-atomic": [16, 1, 3, 4],
    "pernode": [1, 2, 3],
}
# steps that only come before an mm's first clone (single mode, the switch to per-CPU): a CPU is frozen
# at them from the start, one run each
EARLY = {"single": [11, 12, 13, 14, 21, 22, 23, 24, 25], "single-atomic": [11, 12, 21, 22, 23]}
CPUS = 4  # oversubscribed on purpose: 3 of them can be killed in one run
# a remote update must find the other mm still single
RARE = {("single", s) for s in (12, 13, 14)} | {("single-atomic", 12)}


def _params(design: str, faults: list[Fault], duration: float, *, cpus: int = CPUS, tasks: int = 6,
            mms: int = 6, reclaimer: bool = False, check_every: float | None = None) -> RunParams:
    topo = read_topology()
    placement = plan(topo, cpus, oversubscribe=True)
    spec = {"name": "faults", "mms": mms, "tapes": {"all": TAPE},
            "tasks": [{"mm": t % mms, "tape": "all", "cpu": t % cpus} for t in range(tasks)]}
    wl = compile_workload(spec, cpus)
    return RunParams(design=design, workload=wl, placement=placement, topo=topo, duration=duration,
                     read_interval=0.005, reclaimer=reclaimer, faults=faults, check_every=check_every,
                     slice=500)


def _run(p: RunParams) -> dict:
    run = Run(p)
    raw = run.execute()
    res = result.build(p, raw, None)
    res["_unreached"] = run.faults.unreached
    return res


def _assert_clean(res: dict) -> None:
    bad = {k: v for k, v in res["invariants"].items() if not v}
    assert not bad, (bad, res["faults"], res["reads"]["first_violation"])


def _cases():
    for design in designs.DESIGNS:
        steps = STEPS[design]
        for i in range(0, len(steps), CPUS - 1):
            # one CPU at a time: frozen at its step, killed, recovered, then the next is armed (a frozen CPU
            # may hold a lock the recovery of another needs)
            yield design, tuple(steps[i:i + CPUS - 1]), False
        for s in EARLY.get(design, ()):
            yield design, (s,), True


@pytest.mark.parametrize("design,steps,early", list(_cases()),
                         ids=lambda x: x if isinstance(x, str) else ("early" if x is True else "" if x is False
                                                                     else ",".join(map(str, x))))
def test_kill_between_any_two_steps_is_recovered(design, steps, early):
    """Each CPU is frozen at a chosen step of an update (the kill point before it), SIGKILLed there, and
    the parent completes what it was doing: precise == truth, approximate within bound, tasks re-homed."""
    if early:
        faults = [Fault(0.0, "freeze", 1, points=1, step=steps[0])]
    else:
        faults = [Fault(0.1 + 0.2 * i, "freeze", 1 + i, points=1, step=s) for i, s in enumerate(steps)]
    # a kill and its recovery take milliseconds: 0.2 s apart leaves each its own window on a loaded host
    res = _run(_params(design, faults, duration=0.25 + 0.2 * len(steps)))
    _assert_clean(res)
    injected = res["faults"]["injected"]
    assert [e["cpu"] for e in injected] == [f.target for f in faults]
    unreached = {(design, f.step) for f in res["_unreached"]}
    assert unreached <= RARE, f"kill points never reached: {sorted(unreached)}"
    for f, e in zip(faults, injected):
        assert e["killed"] and e["inconsistencies"] == 0
        if (design, f.step) not in unreached:
            assert e["step"] == f.step, e  # it died exactly there
            assert e["settled"] != "INCONSISTENT"
    assert all(c["state"] == "killed" for c in res["throughput"]["per_cpu"][1:1 + len(steps)])


@pytest.mark.parametrize("extra,settled,clean", [(0, "applied by recovery", True), (1, "had landed", True),
                                                 (2, None, False)], ids=["not-landed", "landed", "neither"])
def test_a_doubtful_xadd_is_settled_by_conservation(monkeypatch, extra, settled, clean):
    """A CPU frozen before its ``lock xadd``: killed there, the xadd did not land; the parent doing that
    xadd for it first is the CPU dying just after it landed; anything else is a lost update, reported."""
    real_freeze = F.FaultDriver._freeze

    def freeze_then(self, cpu, f):
        real_freeze(self, cpu, f)
        w = self.words
        j = self._stat(cpu) + L.S_J
        word = int(w[L.H_MM]) + int(w[j + L.J_MM]) * int(w[L.H_MM_STRIDE]) + int(w[j + L.J_K])
        w[word] += extra * int(w[j + L.J_D])  # 0: not landed, 1: landed, 2: landed twice (impossible)

    monkeypatch.setattr(F.FaultDriver, "_freeze", freeze_then)
    res = _run(_params("atomic", [Fault(0.2, "freeze", 1, points=1, step=1)], duration=0.6))
    e = res["faults"]["injected"][0]
    assert e["doubt"] == "precise sum" and e["step"] == 1
    if clean:
        _assert_clean(res)
        assert e["settled"] == settled
    else:
        assert e["settled"] == "INCONSISTENT"
        assert res["invariants"]["faults_recovered"] is False


@pytest.mark.parametrize("step,doubt", [(2, "pernode global"), (3, "precise sum")], ids=["global-add", "node-sub"])
@pytest.mark.parametrize("landed", [False, True], ids=["not-landed", "landed"])
def test_pernode_doubtful_move_is_settled_by_conservation(monkeypatch, step, doubt, landed):
    """pernode's CPU frozen before the global add (2) or the node subtraction (3) of a move: either way
    global + sum(nodes) = truth tells whether the killed ``lock xadd`` landed (the test lands it for the
    dying CPU, or not) and recovery applies it only if it did not."""
    real_freeze = F.FaultDriver._freeze

    def freeze_then(self, cpu, f):
        real_freeze(self, cpu, f)
        w = self.words
        j = self._stat(cpu) + L.S_J
        rss_stat = int(w[L.H_MM]) + int(w[j + L.J_MM]) * int(w[L.H_MM_STRIDE]) + int(w[j + L.J_K]) * 33
        val = int(w[j + L.J_A])  # the value being moved
        node_counter = rss_stat + 1 + int(w[int(w[L.H_GLOBAL]) + cpu]) % 32  # the CPU's numa_counters[]
        if landed:
            w[rss_stat if step == 2 else node_counter] += val if step == 2 else -val

    monkeypatch.setattr(F.FaultDriver, "_freeze", freeze_then)
    res = _run(_params("pernode", [Fault(0.2, "freeze", 1, points=1, step=step)], duration=0.6))
    e = res["faults"]["injected"][0]
    assert e["doubt"] == doubt and e["step"] == step
    _assert_clean(res)
    assert e["settled"] == ("had landed" if landed else "applied by recovery")


def test_recovery_is_needed():
    """Without the completion step the same kill leaves precise != truth: the recovery is what fixes it."""
    p = _params("percpu", [Fault(0.3, "freeze", 1, points=1, step=4)], duration=0.8)
    run = Run(p)

    eng = run._engine()
    original = eng.recover_dead

    def release_only(words, cpu, in_flight):  # lets go of its locks, completes nothing
        eng.release_owner(words, cpu + 1)
        return 0

    eng.recover_dead = release_only
    try:
        res = result.build(p, run.execute(), None)
    finally:
        eng.recover_dead = original
    assert not res["invariants"]["precise_equals_truth"]


@pytest.mark.parametrize("design", designs.DESIGNS)
def test_offline_and_random_kills(design):
    """A CPU taken offline folds cleanly; CPUs killed anywhere (no kill point) are recovered too."""
    faults = [Fault(0.3, "offline", 1), Fault(0.6, "kill", 2), Fault(0.9, "kill", 3)]
    res = _run(_params(design, faults, duration=1.3, reclaimer=True, check_every=0.25))
    _assert_clean(res)
    kinds = [(e["kind"], e["cpu"]) for e in res["faults"]["injected"]]
    assert kinds == [("offline", 1), ("kill", 2), ("kill", 3)]
    assert res["faults"]["checks"] >= 3 and not res["faults"]["violations"]
    assert [c["state"] for c in res["throughput"]["per_cpu"]] == ["ran", "offline", "killed", "killed"]


def test_reader_and_reclaimer_killed_the_run_goes_on():
    p = _params("percpu", [Fault(0.3, "kill", "reader"), Fault(0.5, "kill", "reclaimer")], duration=1.0,
                reclaimer=True)
    run = Run(p)
    res = result.build(p, run.execute(), None)
    _assert_clean(res)
    assert res["reads"]["reader_died"]
    assert any("reclaimer" in w and "recovered" in w for w in res["warnings"])
    assert res["throughput"]["events_per_s"] > 0


def test_soak_check_reports_a_violation_at_once(monkeypatch):
    """A corrupted counter is caught by the next check, with what reproduces it."""
    p = _params("atomic", [], duration=1.0, check_every=0.3)
    real_check = F.FaultDriver.check

    def corrupting_check(self, elapsed):
        if self.checks == 1:
            w = self.words
            w[int(w[L.H_MM]) + L.ANON] += 5  # mm 0's anon counter drifts from the truth
        return real_check(self, elapsed)

    monkeypatch.setattr(F.FaultDriver, "check", corrupting_check)
    res = _run(p)
    v = res["faults"]["violations"]
    assert v and v[0]["check"] == 2 and "precise" in v[0]["found"][0]
    assert v[0]["design"] == "atomic" and len(v[0]["events_per_cpu"]) == CPUS
    assert res["invariants"]["soak_checks_clean"] is False


@pytest.mark.parametrize("spec,msg", [
    ("1", "takes T:CPU"), ("x:1", "not a time"), ("-1:1", "between 0"), ("1:cpu", "not an emulated CPU"),
    ("1:-2", "start at 0"),
])
def test_bad_fault_specs(spec, msg):
    with pytest.raises(F.FaultError, match=msg):
        F.parse(spec, "kill")


def test_fault_validation():
    with pytest.raises(F.FaultError, match="lasts"):
        F.validate([Fault(5, "kill", 0)], 2, 3.0, False, True)
    with pytest.raises(F.FaultError, match="0..1"):
        F.validate([Fault(1, "kill", 2)], 2, 3.0, False, True)
    with pytest.raises(F.FaultError, match="every emulated CPU"):
        F.validate([Fault(1, "kill", 0), Fault(1, "offline", 1)], 2, 3.0, False, True)
    with pytest.raises(F.FaultError, match="no reclaimer"):
        F.validate([Fault(1, "kill", "reclaimer")], 2, 3.0, False, True)
    with pytest.raises(F.FaultError, match="already gone"):
        F.validate([Fault(1, "kill", 1), Fault(2, "offline", 1)], 3, 3.0, False, True)


def test_cli_fault_options(run_cli, tmp_path):
    code, r = run_cli(["run", "--design", "tree", "--cpus", "3", "--oversubscribe", "--duration", "1",
                       "--kill-at", "0.3:1", "--offline-at", "0.6:2", "--check-every", "0.3"], tmp_path)
    assert code == 0, r and r["invariants"]
    assert [e["kind"] for e in r["faults"]["injected"]] == ["kill", "offline"]
    assert r["faults"]["checks"] >= 2
    code, _ = run_cli(["run", "--design", "tree", "--cpus", "2", "--duration", "1", "--kill-at", "0.3:2"], tmp_path)
    assert code == 2


# ---- issue 13, item 9: CPUs killed at the same instant
_SIMULTANEOUS = r'''
import json, os, signal, sys, time
from shmrss import faults as F, result
from shmrss.faults import Fault
from shmrss.orchestrator import Run, RunParams
from shmrss.topology import plan, read_topology
from shmrss.workload import compile_workload

topo = read_topology()
spec = {"name": "sim", "mms": 1, "tapes": {"t": [["fault", "anon", 1000], ["unmap", "anon", 1000]]},
        "tasks": [{"mm": 0, "tape": "t", "cpu": c} for c in range(3)]}
p = RunParams(design="percpu", workload=compile_workload(spec, 3), placement=plan(topo, 3, oversubscribe=True),
              topo=topo, duration=1.0, read_interval=0.005, slice=500,
              faults=[Fault(0.2, "freeze", 2, points=1, step=3)])
MODE = sys.argv[1]

def inject(self, f, elapsed):
    # CPU 2 stops holding the counter's lock (percpu step 3), CPU 1 comes to wait for it; both are SIGKILLed
    # at once, and the parent finds both dead: CPU 1 is recovered first, and its update needs that lock
    self._freeze(2, f)
    time.sleep(0.3)
    if MODE == "stuck":  # a recovery that never ends (a lock nobody will release): give up, do not hang
        self.eng.recover_dead = lambda words, cpu, in_flight: time.sleep(1e9)
        F.RECOVERY_TIMEOUT_S = 1.0  # the bound the test checks, not its 5 s: the other CPUs spin meanwhile
    for c in (1, 2):
        os.kill(self.run.cpus[c].pid, signal.SIGKILL)
    for c in (1, 2):
        self.run.cpus[c].join(5)
    self.run.check_children()

F.FaultDriver._inject = inject
res = result.build(p, Run(p).execute(), None)
print(json.dumps({"invariants": res["invariants"], "cpus": [e["cpu"] for e in res["faults"]["injected"]]}))
'''


def _simultaneous(mode: str):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _SIMULTANEOUS, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        import os
        import signal

        from shmrss.segment import SHM_DIR, list_segments, owner_pid

        for name in list_segments():
            if owner_pid(name) == proc.pid:
                os.unlink(os.path.join(SHM_DIR, name))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("recovery of two CPUs killed at once hung") from None
    return proc.returncode, out, err


def test_two_cpus_killed_at_once_are_both_recovered():
    """Item 9: the dead CPU holding the lock is completed alongside the one waiting for it."""
    import json

    code, out, err = _simultaneous("normal")
    assert code == 0, err
    res = json.loads(out.splitlines()[-1])
    assert sorted(res["cpus"]) == [1, 2] and all(res["invariants"].values()), res


def test_a_recovery_that_cannot_complete_gives_up_with_a_message():
    """Item 9: a lock that no dead CPU's recovery releases (planted): a bounded wait, then RunFailed, one line."""
    code, out, err = _simultaneous("stuck")
    assert code == 1, err
    assert "RunFailed" in err and "gave up" in err, err
