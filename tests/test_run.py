"""Real runs through the command line: pinned CPU processes, the reader, the invariants, the JSON;
and the exits: a killed CPU child (1), SIGINT (130), SIGTERM (143), never a segment left behind.

Short runs (0.5 s a design) on this host's cores; the whole file takes well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import posix_ipc
import psutil
import pytest

from shmrss import layout as L
from shmrss.segment import SHM_DIR, Segment, SegmentError, list_segments, owner_pid
from shmrss.topology import read_topology
from results_schema import load_run_json

NCORES = len(read_topology().physical_cpus())
needs_2_cores = pytest.mark.skipif(NCORES < 2, reason="needs 2 physical cores")
DUR = "0.5"

TOP_KEYS = {"design", "workload", "params", "host", "throughput", "accuracy", "reads", "invariants", "warnings"}
INVARIANTS = {"precise_equals_truth", "approx_within_bound_at_end", "approx_within_bound_throughout",
              "precise_within_truth_throughout", "zero_at_teardown", "no_update_in_flight_at_end"}


def check_result(r: dict, design: str, ncpu: int, nmm: int, partial: bool = False) -> None:
    assert TOP_KEYS <= set(r), TOP_KEYS - set(r)
    assert r["design"] == design and r["workload"] == "page_fault1"
    assert r["partial"] is partial
    p = r["params"]
    assert p["design"] == design and p["cpus"] == ncpu and p["mms"] == nmm and p["tasks"] == ncpu
    assert r["host"]["topology"]["usable"] and r["host"]["cache_line"] == p["line"]

    inv = r["invariants"]
    assert INVARIANTS <= set(inv)
    assert all(v is True for v in inv.values()), inv

    acc = r["accuracy"]
    for k in ("approx_max_abs_error", "approx_bound", "precise_equals_truth"):
        assert k in acc
    assert acc["precise_equals_truth"] is True
    assert 0 <= acc["approx_max_abs_error"] <= acc["approx_bound"]
    online = p.get("online_cpus") or p["possible_cpus"]  # percpu: N * (B - 1), N and B from the online CPUs
    expect_bound = 0 if design == "atomic" else online * (max(32, 2 * online) - 1)
    assert acc["approx_bound"] == expect_bound
    assert acc["precise_max_abs_error_live"] == 0
    for row in acc["final"]:
        assert row["precise"] == row["truth"]
        assert abs(row["approx"] - row["truth"]) <= expect_bound

    th = r["throughput"]
    for k in ("events_per_s", "ns_per_event", "per_cpu"):
        assert k in th
    assert th["events"] > 0 and th["events_per_s"] > 0 and th["ns_per_event"] > 0
    assert len(th["per_cpu"]) == ncpu
    assert sum(c["events"] for c in th["per_cpu"]) == th["events"]
    for c in th["per_cpu"]:
        assert c["events"] > 0 and c["ns_per_event"] > 0 and c["pid"] > 0
        assert c["var"] == c["commit"] > 0  # no update in flight, and every |delta| accounted
    assert sorted(c["cpu"] for c in th["per_cpu"]) == list(range(ncpu))

    rd = r["reads"]
    assert rd["approx_count"] > 0 and rd["precise_count"] > 0
    assert rd["approx_violations"] == 0 and rd["precise_violations"] == 0 and rd["first_violation"] is None
    for kind in ("approx_latency_ns", "precise_latency_ns"):
        lat = rd[kind]
        assert lat["median"] is not None and lat["p99"] is not None
        assert 0 <= lat["median"] <= lat["p99"]
    assert isinstance(r["warnings"], list)


# ================================================================= in-process runs
@needs_2_cores
@pytest.mark.parametrize("mode", ["processes", "threads"])
def test_both_designs_both_modes(mode, run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "atomic,percpu", "--mode", mode, "--cpus", "2", "--duration", DUR],
                        tmp_path)
    assert code == 0
    assert isinstance(res, list) and len(res) == 2
    assert [r["design"] for r in res] == ["atomic", "percpu"]
    for r in res:
        check_result(r, r["design"], 2, 2 if mode == "processes" else 1)
        assert r["params"]["mode"] == mode
    # processes: each mm is served by one CPU; threads: both CPUs update the one mm
    for r in res:
        touched = {row["mm"] for row in r["accuracy"]["final"]}
        assert touched <= ({0, 1} if mode == "processes" else {0})


@needs_2_cores
def test_oversubscribed_run_loses_nothing(run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "percpu,atomic", "--cpus", "4", "--oversubscribe",
                         "--duration", DUR], tmp_path)
    assert code == 0 and [r["design"] for r in res] == ["percpu", "atomic"]
    for r in res:
        check_result(r, r["design"], 4, 4)
        assert r["params"]["oversubscribed"] is True
        assert any("oversubscribed" in w for w in r["warnings"]), r["warnings"]
        # two emulated CPUs share each host core
        hosts = [c["host_cpu"] for c in r["throughput"]["per_cpu"]]
        assert len(set(hosts)) == 2 and sorted(hosts) == sorted(r["params"]["host_cpus"])


@needs_2_cores
@pytest.mark.parametrize("opts", [["--pack"], ["--line", "128"], ["--pack", "--line", "128", "--possible-cpus", "5"]],
                         ids=["pack", "line128", "pack-line128-possible5"])
def test_layout_variants_hold_invariants(opts, run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "percpu,atomic", "--cpus", "2", "--duration", DUR, *opts], tmp_path)
    assert code == 0
    for r in res:
        check_result(r, r["design"], 2, 2)
        assert r["params"]["pack"] is ("--pack" in opts)
        assert r["params"]["line"] == (128 if "128" in opts else r["host"]["topology"]["cache_line"])
        assert r["params"]["possible_cpus"] == (5 if "5" in opts else 2)


def test_single_design_json_is_an_object(run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "atomic", "--cpus", "1", "--duration", "0.3"], tmp_path)
    assert code == 0 and isinstance(res, dict) and res["design"] == "atomic"
    check_result(res, "atomic", 1, 1)


# ================================================================= killed child, signals (subprocesses)
def _start(tmp_path, *extra):
    cmd = [sys.executable, "-m", "shmrss.cli", "run", "--design", "percpu", "--cpus", str(min(2, NCORES)),
           "--duration", "20", "--no-calibrate", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path), start_new_session=True)


def _wait_running(proc, timeout=60.0):
    """Find the run's segment (owner pid = proc) and wait until every CPU is counting. Returns (name, seg)."""
    deadline = time.monotonic() + timeout
    name = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if name is None:
            name = next((n for n in list_segments() if owner_pid(n) == proc.pid), None)
        if name is not None:
            try:
                seg = Segment.attach(name, readonly=True)
            except SegmentError:
                name = None
                continue
            w = seg.words
            st, ss, n = seg.h(L.H_CPUSTAT), seg.h(L.H_CPUSTAT_STRIDE), seg.h(L.H_NCPU)
            ctrl = seg.h(L.H_CTRL)
            if (w[ctrl + L.C_STATE] == L.STATE_RUNNING and w[ctrl + L.C_GO] == 1
                    and all(w[st + c * ss + L.S_STATUS] == L.CPU_RUNNING and w[st + c * ss + L.S_EVENTS] > 0
                            for c in range(n))):
                return name, seg
            seg.close()
        time.sleep(0.02)
    raise AssertionError("the run never started counting")


def _cpu_pids(seg):
    st, ss = seg.h(L.H_CPUSTAT), seg.h(L.H_CPUSTAT_STRIDE)
    return [int(seg.words[st + c * ss + L.S_PID]) for c in range(seg.h(L.H_NCPU))]


def _gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _finish(proc, name):
    """Test cleanup: never leave the run or its segment behind, whatever failed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if name and os.path.exists(os.path.join(SHM_DIR, name)):
        try:
            posix_ipc.unlink_shared_memory("/" + name)
        except posix_ipc.ExistentialError:
            pass


@needs_2_cores
def test_killed_cpu_child_fails_the_run(tmp_path):
    proc = _start(tmp_path)
    name = None
    try:
        name, seg = _wait_running(proc)
        pids = _cpu_pids(seg)
        seg.close()
        children = {c.pid for c in psutil.Process(proc.pid).children()}
        assert set(pids) <= children and len(children) == len(pids) + 1  # the CPUs and the reader
        t0 = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        out, err = proc.communicate(timeout=15)
        took = time.monotonic() - t0
        assert proc.returncode == 1, err
        assert took < 5.0
        lines = [ln for ln in err.splitlines() if "emulated CPU 1" in ln]
        assert len(lines) == 1, err
        assert "died" in lines[0] and "SIGKILL" in lines[0] and str(pids[1]) in lines[0], lines[0]
        assert "Traceback" not in err
        assert not os.path.exists(os.path.join(SHM_DIR, name))
        assert _gone(children), "children outlived the run"
    finally:
        _finish(proc, name)


@needs_2_cores
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_writes_partial_result(sig, code, tmp_path):
    out_json = tmp_path / "r.json"
    proc = _start(tmp_path, "--json", str(out_json))
    name = None
    try:
        name, seg = _wait_running(proc)
        children = {c.pid for c in psutil.Process(proc.pid).children()}
        seg.close()
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == code, err
        assert time.monotonic() - t0 < 10
        assert "Traceback" not in err
        assert out_json.exists(), err
        r = load_run_json(out_json)
        assert isinstance(r, dict) and r["partial"] is True
        assert any("interrupted" in w for w in r["warnings"])
        check_result(r, "percpu", 2, 2, partial=True)  # what was measured still holds
        assert "PARTIAL" in out
        assert not os.path.exists(os.path.join(SHM_DIR, name))
        assert _gone(children), "children outlived the run"
    finally:
        _finish(proc, name)


def test_run_without_reader_succeeds_and_says_what_it_skipped(run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "percpu", "--cpus", "1", "--duration", "0.3", "--no-reader"], tmp_path)
    assert code == 0
    assert res["reads"]["approx_count"] == 0
    assert "approx_within_bound_throughout" not in res["invariants"]
    assert res["invariants"]["precise_equals_truth"] is True
    assert any("reader made no read" in w for w in res["warnings"])


@needs_2_cores
def test_dead_parent_children_exit_and_cleanup_removes_the_segment(tmp_path):
    """kill -9 of the parent: the CPUs and the reader die with it within a second (PR_SET_PDEATHSIG), and
    ``shmrss cleanup`` removes the segment it could not unlink."""
    from shmrss.cli import main

    proc = _start(tmp_path, "--reclaimer")
    name = None
    try:
        name, seg = _wait_running(proc)
        seg.close()
        children = [c.pid for c in psutil.Process(proc.pid).children()]
        assert len(children) >= 4  # 2 CPUs, the reclaimer, the reader
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert _gone(children, timeout=1.0), "children outlived their parent by more than a second"
        assert os.path.exists(os.path.join(SHM_DIR, name))  # nobody was left to unlink it...
        assert main(["cleanup"]) == 0
        assert not os.path.exists(os.path.join(SHM_DIR, name))  # ...until cleanup
    finally:
        _finish(proc, name)
