"""Measurements that must not mislead (issue 13, items 11 and 12): another live shmrss run or a busy process
on the chosen CPUs, and a CPU whose measured window differs from the others', are said in the warnings and
the JSON, and the timings are marked not valid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from shmrss import layout as L
from shmrss.segment import SHM_DIR, Segment, SegmentError, list_segments, owner_pid
from shmrss.topology import read_topology
from results_schema import load_run_json

NCORES = len(read_topology().physical_cpus())
needs_2_cores = pytest.mark.skipif(NCORES < 2, reason="needs 2 physical cores")
ENTRY = "import sys; from shmrss.cli import main; sys.exit(main())"


def _wait_running(proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        name = next((n for n in list_segments() if owner_pid(n) == proc.pid), None)
        if name is not None:
            try:
                seg = Segment.attach(name, readonly=True)
            except SegmentError:
                continue
            running = int(seg.words[seg.h(L.H_CTRL) + L.C_STATE]) == L.STATE_RUNNING
            seg.close()
            if running:
                return name
        time.sleep(0.02)
    raise AssertionError("the run never started")


@needs_2_cores
def test_another_live_run_is_detected_by_both(run_cli, tmp_path):
    """Item 11: run B starts while run A measures: B says so from its start, A notices B during its run;
    both mark their timings not valid and name the other run."""
    out_a = tmp_path / "a.json"
    a = subprocess.Popen([sys.executable, "-c", ENTRY, "run", "--design", "atomic", "--cpus", "1", "--duration",
                          "60", "--no-calibrate", "--json", str(out_a)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    name = None
    try:
        name = _wait_running(a)
        code, b = run_cli(["run", "--design", "atomic", "--cpus", "1", "--duration", "2.5"], tmp_path)
        assert code == 0
        assert b["throughput"]["timings_valid"] is False
        assert any("another shmrss run" in w and str(a.pid) in w for w in b["warnings"]), b["warnings"]
        os.kill(a.pid, signal.SIGINT)
        a.communicate(timeout=30)
        ra = load_run_json(out_a)
        assert ra["throughput"]["timings_valid"] is False
        assert any("another shmrss run" in w and str(os.getpid()) in w for w in ra["warnings"]), ra["warnings"]
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(10)
        if name and os.path.exists(os.path.join(SHM_DIR, name)):
            os.unlink(os.path.join(SHM_DIR, name))


def test_a_busy_process_on_a_chosen_cpu_is_detected(run_cli, tmp_path):
    """Item 11: a process outside the run spinning on the emulated CPU's host CPU."""
    host = sorted(read_topology().usable)[0]
    # not a child of this test process (an in-process run counts its parent's descendants as its own)
    code = f"import os; os.sched_setaffinity(0, {{{host}}}); exec('while 1: pass')"
    sh = subprocess.run(["sh", "-c", f'{sys.executable} -c "{code}" >/dev/null 2>&1 & echo $!'],
                        capture_output=True, text=True)
    spinner = int(sh.stdout)
    try:
        time.sleep(0.3)
        assert os.path.exists(f"/proc/{spinner}"), "the spinner did not start"
        code, r = run_cli(["run", "--design", "atomic", "--cpus", "1", "--host-cpus", str(host), "--duration", "3",
                           "--no-reader", "--oversubscribe"], tmp_path)
    finally:
        os.kill(spinner, signal.SIGKILL)
    assert code == 0
    assert r["throughput"]["timings_valid"] is False
    assert any(f"host CPU {host}" in w and "outside the run" in w for w in r["warnings"]), r["warnings"]


@needs_2_cores
def test_a_stalled_cpu_is_flagged_by_name(monkeypatch, run_cli, tmp_path):
    """Item 12: emulated CPU 1 is SIGSTOPped past the end of a 1 s run; its window is about twice the
    other's, and the result says which CPU and that the timings are not valid."""
    from shmrss.orchestrator import Run

    real = Run._go_and_sample

    def stall_cpu1(self):
        pid = self.cpus[1].pid
        threading.Timer(0.3, os.kill, (pid, signal.SIGSTOP)).start()  # while it counts
        threading.Timer(2.3, os.kill, (pid, signal.SIGCONT)).start()
        return real(self)

    monkeypatch.setattr(Run, "_go_and_sample", stall_cpu1)
    code, r = run_cli(["run", "--design", "percpu", "--cpus", "2", "--duration", "1"], tmp_path)
    windows = [c["seconds"] for c in r["throughput"]["per_cpu"]]
    assert windows[1] > 1.5 * windows[0], windows
    assert r["throughput"]["window_outliers"] == [1]
    assert r["throughput"]["timings_valid"] is False
    assert any("emulated CPU 1" in w and "window" in w for w in r["warnings"]), r["warnings"]


def test_equal_windows_are_not_flagged(run_cli, tmp_path):
    code, r = run_cli(["run", "--design", "percpu", "--cpus", str(min(2, NCORES)), "--duration", "0.5"], tmp_path)
    assert code == 0 and r["throughput"]["window_outliers"] == []
