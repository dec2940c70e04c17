"""shmrss.procs.pid_alive, the one check whether a process lives (issue 12, item 8): a live pid, a dead
one, a zombie, another user's process, and pids that name no process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmrss import procs
from shmrss.procs import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def _state(pid: int) -> str:
    line = Path(f"/proc/{pid}/stat").read_bytes()
    return line[line.rfind(b")") + 2:][:1].decode()


@pytest.fixture
def zombie():
    """A child that has exited and is not reaped yet."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while _state(p.pid) != "Z":
        assert time.monotonic() < deadline, "the child never became a zombie"
        time.sleep(0.01)
    yield p.pid
    p.wait()


def test_a_live_process_is_alive():
    assert pid_alive(os.getpid())
    assert pid_alive(1)  # init: another user's process when not root (EPERM), alive all the same


def test_a_reaped_process_is_not():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)


def test_a_zombie_is_not_alive(zombie):
    assert _state(zombie) == "Z"
    assert not pid_alive(zombie)


def test_eperm_means_alive(monkeypatch):
    def refuse(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(procs.os, "kill", refuse)
    assert pid_alive(os.getpid())


def test_unreadable_proc_trusts_the_signal(monkeypatch):
    def hidden(*a, **k):
        raise PermissionError(13, "Permission denied")  # /proc mounted with hidepid

    monkeypatch.setattr(procs, "open", hidden, raising=False)
    assert pid_alive(os.getpid())


@pytest.mark.parametrize("pid", [0, -1, "minus this process", 1 << 40, (1 << 63) - 1])
def test_pids_that_name_no_process(pid):
    # the negated own pid is made here, not in the parameters: ids stay the same in every collector
    assert not pid_alive(-os.getpid() if pid == "minus this process" else pid)


def test_no_module_checks_a_pid_its_own_way():
    """Only procs.py sends signal 0 or asks psutil whether a pid exists."""
    check = re.compile(r"os\.kill\([^,()]+,\s*0\)|pid_exists\(")
    offenders = [str(f.relative_to(ROOT)) for f in (ROOT / "shmrss").rglob("*.py")
                 if f.name != "procs.py" and check.search(f.read_text())]
    assert offenders == []


def test_a_zombie_owners_segment_is_stale_and_contends_with_nothing(geometry, zombie):
    """Segment clean-up and the contention probe ask pid_alive: an owner that exited is gone even before
    its parent reaps it."""
    from shmrss import layout as L
    from shmrss.contention import other_live_runs
    from shmrss.segment import Segment, stale_reason

    seg = Segment.create(geometry("atomic", ncpu=1))
    try:
        seg.words[L.H_OWNER_PID] = zombie
        assert stale_reason(seg.name) is None
        assert seg.name not in dict(other_live_runs(None))
        seg.words[L.H_OWNER_PID] = os.getppid()  # a live owner other than this process
        assert stale_reason(seg.name) == f"owner pid {os.getppid()} is alive"
        assert seg.name in dict(other_live_runs(None))
    finally:
        seg.unlink()
        seg.close()
