"""shmrss monitor and run --live: a live run watched from outside, the listing, every refusal, and never a write."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import posix_ipc
import psutil
import pytest
from rich.console import Console

import design_drivers as dd
from shmrss import layout as L, monitor_reads as MR
from shmrss.cli import main
from shmrss.designs import DESIGNS
from shmrss.monitor_view import Block, Frame, render_rich
from shmrss.segment import PREFIX, SHM_DIR, Segment, list_segments, new_name, owner_pid


def digest(name: str) -> str:
    with open(os.path.join(SHM_DIR, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("shmrss: error: "), err
    assert "Traceback" not in err
    return err


def blocks(out: str, name: str) -> list[str]:
    """The refreshes of a plain-text monitor output (each starts with the segment name)."""
    return [b for b in out.split("\n\n") if b.startswith(name)]


def table(block: str, title: str) -> list[list[str]]:
    """The rows (split on runs of spaces) of one table of a plain-text refresh, header first."""
    lines = block.splitlines()
    i = lines.index(f"{title}:")
    rows = []
    for line in lines[i + 1:]:
        if not line.startswith("  ") or line.startswith("  reader:") or line.startswith("  +"):
            break
        rows.append(line.split())
    return rows


def start_run(tmp_path, *args: str, duration: float = 6.0):
    """``shmrss run`` in a child process; returns (process, its segment's name) once the segment exists."""
    cmd = [sys.executable, "-m", "shmrss.cli", "run", "--duration", str(duration), "--no-calibrate", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run.err", "w"))
    deadline = time.monotonic() + 90  # a cold numba cache compiles the engine first
    while time.monotonic() < deadline and proc.poll() is None:
        for name in list_segments():
            if owner_pid(name) == proc.pid:
                return proc, name
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run made no segment: {(tmp_path / 'run.err').read_text()}")


def all_started(name: str, timeout: float = 60) -> None:
    """Wait until the run is RUNNING and every emulated CPU has published its start TSC: on a loaded host
    (a cold cache, the suite's other workers) a CPU may still be starting when the segment appears, and its
    first refresh then has no rate to show ('-')."""
    from shmrss.monitor_sample import SegmentSampler

    seg = Segment.attach(name, readonly=True, own_only=True)
    try:
        sampler = SegmentSampler(seg.name, seg.words)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = sampler.take()
            if s.state == L.STATE_RUNNING and (s.cpu[:, L.S_TSC_START] > 0).all():
                return
            time.sleep(0.02)
        pytest.fail(f"the run's CPUs did not all start within {timeout} s")
    finally:
        seg.close()


def stop(proc) -> None:
    """After a failure: end the run early (it unlinks its segment on every exit path)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.wait(30)


# ----------------------------------------------------------------- a real run, watched
@pytest.mark.alone  # a live rate per second: a loaded host shows '-' for a second with no sample
def test_monitor_watches_a_live_run_until_it_ends(capsys, tmp_path):
    proc, name = start_run(tmp_path, "--design", "percpu", duration=4.0)
    try:
        all_started(name)
        code = main(["monitor", name, "--count", "2", "--interval", "0.5"])
        out = capsys.readouterr().out
        assert code == 0
        assert "\x1b" not in out  # piped: plain text
        frames = blocks(out, name)
        assert len(frames) == 2
        cpu_pids = {c.pid for c in psutil.Process(proc.pid).children()}
        for frame in frames:
            assert " percpu " in frame.splitlines()[0]
            head, *rows = table(frame, "emulated CPUs")
            assert head[:4] == ["CPU", "host", "status", "M"]
            cpus = [r for r in rows if r[0].isdigit()]
            assert [r[0] for r in cpus] == [str(c) for c in range(len(cpus))] and cpus
            for r in cpus:
                assert float(r[3]) > 0  # M ev/s
                assert int(r[7]) in cpu_pids  # the pid each emulated CPU published
            head, *mms = table(frame, "mms")
            assert head == ["mm", "member", "truth", "approx", "bound", "precise*"]
            assert {r[0] for r in mms} == {str(m) for m in range(len(cpus))}  # one mm per CPU (processes mode)
            for r in mms:
                truth, approx, precise = (int(x.replace(",", "")) for x in (r[2], r[3], r[5].rstrip("?")))
                assert r[1] == "anon" and truth >= 0 and approx >= 0 and precise >= 0
                n = len(cpus)
                assert r[4] == f"+/-{n * (max(32, 2 * n) - 1)}"  # percpu: N * (B - 1)
            assert "precise*: an unlocked sum" in frame
        # the first refresh pairs each CPU with its own start; the second has process figures
        assert "first refresh" in frames[0] and "first refresh" not in frames[1]
        second = [r for r in table(frames[1], "emulated CPUs")[1:] if r[0].isdigit()]
        assert all(re.fullmatch(r"\d+", r[8]) for r in second)  # CPU %
        # watched to its end: exit 0
        code = main(["monitor", name, "--interval", "0.5"])
        out = capsys.readouterr().out
        assert code == 0
        assert re.search(r"shmrss monitor: (the run reached state DONE|the segment was removed)", out)
        assert proc.wait(30) == 0, (tmp_path / "run.err").read_text()  # undisturbed: its invariants hold
    finally:
        stop(proc)


def test_run_live_shows_the_view_instead_of_the_progress_bar(capsys, tmp_path):
    code = main(["run", "--design", "atomic", "--duration", "2.5", "--no-calibrate", "--live"])
    cap = capsys.readouterr()
    assert code == 0
    views = [b for b in cap.err.split("\n\n") if "shmrss run --live: atomic page_fault1" in b]
    assert views, cap.err
    assert "emulated CPUs:" in views[-1] and "mms:" in views[-1]
    assert "\x1b" not in cap.err
    assert "atomic" in cap.out  # the result table still follows


# ----------------------------------------------------------------- segments made here
@pytest.fixture
def shm_objects():
    """Make /dev/shm entries under shmrss names; every one is removed afterwards."""
    made = []

    def make_bytes(data: bytes) -> str:
        name = new_name()
        shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=len(data))
        made.append(name)
        os.write(shm.fd, data)
        shm.close_fd()
        return name

    def make_path(kind: str) -> str:
        name = new_name()
        path = os.path.join(SHM_DIR, name)
        made.append(name)
        if kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "dir":
            os.mkdir(path, 0o700)
        else:  # a symlink to a real segment-sized file
            target = make_bytes(b"\0" * 4096)
            os.symlink(os.path.join(SHM_DIR, target), path)
        return name

    yield make_bytes, make_path
    for name in made:
        path = os.path.join(SHM_DIR, name)
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)


def valid_segment(new_segment, design="percpu", nmm=3):
    return new_segment(dd.geometry(design, 2, nmm=nmm, ntask=2))


@pytest.mark.parametrize("case, expect", [
    ("zeros", "no shmrss magic"),
    ("random", "no shmrss magic"),
    ("tiny", "truncated"),
    ("empty", "truncated"),
    ("version", "layout version"),
    ("short", "header says"),
    ("design", "unknown to this shmrss"),
    ("shape", "does not fit the tree design"),
    ("sizes", "impossible sizes"),
])
def test_refuses_what_is_not_a_shmrss_run_without_writing(case, expect, capsys, shm_objects, new_segment):
    make_bytes, _ = shm_objects
    if case in ("zeros", "random", "tiny", "empty"):
        data = {"zeros": b"\0" * 65536, "random": os.urandom(65536), "tiny": b"\1" * 100, "empty": b""}[case]
        name = make_bytes(data)
    else:
        with valid_segment(new_segment, "tree" if case == "shape" else "percpu") as seg:
            w = seg.words.copy()
        if case == "version":
            w[L.H_VERSION] = L.VERSION + 1
        elif case == "design":
            w[L.H_DESIGN] = 99
        elif case == "shape":
            w[L.H_DPARAM + 2] = 1 << 40  # tree: items per member, far past the mm's words
        elif case == "sizes":
            w[L.H_NCPU] = 0
        data = w.tobytes()
        if case == "short":
            data = data[: len(data) // 2]
        name = make_bytes(data)
    before = digest(name)
    assert main(["monitor", name, "--count", "1"]) == 2
    err = one_line_error(capsys)
    assert expect in err and name in err
    assert digest(name) == before


def test_refuses_another_users_segment(capsys, new_segment, monkeypatch):
    with valid_segment(new_segment) as seg:
        path = os.path.join(SHM_DIR, seg.name)
        before = digest(seg.name)
        if os.geteuid() == 0:  # root can hand the object to another user, and could read it anyway
            os.chown(path, 65534, 65534)
            assert main(["monitor", seg.name, "--count", "1"]) == 2
            assert "belongs to uid 65534" in one_line_error(capsys)
            os.chown(path, 0, 0)
        me = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)
        assert main(["monitor", "/" + seg.name, "--count", "1"]) == 2
        assert f"belongs to uid {me}, not to you" in one_line_error(capsys)
        assert digest(seg.name) == before


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
def test_refuses_what_is_not_a_regular_file_without_blocking(kind, capsys, shm_objects):
    _, make_path = shm_objects
    name = make_path(kind)
    assert main(["monitor", name, "--count", "1"]) == 2
    assert "not a regular file" in one_line_error(capsys)


@pytest.mark.parametrize("name, expect", [
    ("some-other-object", "not a shmrss segment name"),
    ("shmrss-../../etc/passwd", "is not a segment name"),
    ("shmrss-a\x00b", "is not a segment name"),
    ("shmrss-line\nbreak", "is not a segment name"),
    ("/shmrss-0000000000000000", "no segment named shmrss-0000000000000000"),
    ("shmrss-" + "a" * 300, "is not a segment name"),
])
def test_refuses_bad_names(name, expect, capsys):
    assert main(["monitor", name]) == 2
    assert expect in one_line_error(capsys)


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--interval", "0.01"], ["--interval", "x"],
                                  ["--count", "0"], ["--count", "-1"]])
def test_bad_options_are_one_line(argv, capsys):
    assert main(["monitor", "shmrss-0000000000000000", *argv]) == 2
    one_line_error(capsys)


def test_read_only_mapping_faults_on_a_write(new_segment):
    """A store through the monitor's mapping kills the writer (SIGSEGV); the segment keeps its bytes."""
    with valid_segment(new_segment) as seg:
        before = digest(seg.name)
        code = (
            "import numpy as np\n"
            "from numba import njit\n"
            "from shmrss.atomics import store, raw\n"
            "from shmrss.segment import Segment\n"
            f"seg = Segment.attach({seg.name!r}, readonly=True, own_only=True)\n"
            "try:\n"
            "    seg.words[0] = 1\n"
            "except ValueError:\n"
            "    print('numpy refused', flush=True)\n"
            "@njit\n"
            "def poke(w):\n"
            "    store(raw(w), 0, 12345)\n"
            "poke(seg.words)\n"
            "print('the store landed', flush=True)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "numpy refused" in r.stdout
        assert r.returncode == -signal.SIGSEGV, r.stderr
        assert "the store landed" not in r.stdout
        assert digest(seg.name) == before


# ----------------------------------------------------------------- the values shown are the design's
@pytest.mark.parametrize("design", DESIGNS)
def test_reads_match_the_designs_own_reads_and_never_write(design, new_segment):
    """At quiescence every value the monitor reads equals the design's read; the segment is unchanged."""
    task_mms, task_cpus = [0, 1, 1], [0, 1, 2]  # every CPU holds a part of some counter
    with new_segment(dd.geometry(design, 3, nmm=3, ntask=3)) as seg:
        dd.prepare(design, seg, task_mms)
        s = dd.Sched(3, 3, task_mms, task_cpus)
        for step in [("fault", 0, L.ANON)] * 70 + [("fault", 1, L.ANON)] * 40 + [("fault", 2, L.FILE)] * 9 + [
                ("clone", 0), ("fault", 0, L.ANON), ("unmap", 1, L.ANON, -5), ("reclaim", 1, 2, L.SWAP, 7),
                ("remote", 2, 1, L.SHMEM, 3, False), ("switch", 0, -1)]:
            s.step(step)
        dd.run(design, seg, s.ops, record=False)
        truth = dd.truth_after_each(s.ops, 3)[-1]
        seg.words[seg.h(L.H_TRUTH): seg.h(L.H_TRUTH) + 3 * L.NMEMBERS] = truth  # all on CPU 0's truth line
        mine = dd.read_all(design, seg)  # (mm*4 + k) -> precise, approx, under, over
        ro = Segment.attach(seg.name, readonly=True, own_only=True)
        try:
            before = digest(seg.name)
            MR.check_shape(ro.words, design)
            got = MR.snapshot(design, ro.words, np.array([2, 0, 1]))
            assert digest(seg.name) == before
        finally:
            ro.words = None
            ro.close()
    for i, mm in enumerate([2, 0, 1]):
        for k in range(L.NMEMBERS):
            t, a, u, o, p, settled = got[i, k]
            assert t == truth[mm * L.NMEMBERS + k]
            assert (p, a, u, o) == tuple(mine[mm * L.NMEMBERS + k]), (mm, k)
            assert p == t and settled == 1


def test_monitor_shows_the_counters_of_a_quiescent_segment(capsys, new_segment):
    with new_segment(dd.geometry("atomic", 2, nmm=20, ntask=1)) as seg:
        w = seg.words
        for mm in range(20):
            w[dd.mm_addr(seg, mm, L.ANON)] = 1000 + mm  # the design's words: what approx and precise read
            w[seg.h(L.H_TRUTH) + mm * L.NMEMBERS + L.ANON] = 1000 + mm  # CPU 0's truth
        before = digest(seg.name)
        assert main(["monitor", seg.name, "--count", "1"]) == 0
        out = capsys.readouterr().out
        assert digest(seg.name) == before
    (frame,) = blocks(out, seg.name)
    head, *rows = table(frame, "mms (the 16 largest by truth)")
    assert [r[0] for r in rows] == [str(mm) for mm in range(19, 3, -1)]  # the largest first
    assert all(r[2] == r[3] == r[5] == f"{1000 + int(r[0]):,}" and r[4] == "+/-0" for r in rows)
    assert "+4 more mms not shown" in frame
    assert " INIT " in frame.splitlines()[0]


def test_monitor_of_a_run_whose_owner_died_exits_0(capsys, new_segment):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with valid_segment(new_segment) as seg:
        seg.words[L.H_OWNER_PID] = dead.pid
        assert main(["monitor", seg.name]) == 0
        out = capsys.readouterr().out
    assert f"the run's process (pid {dead.pid}) is gone" in out


def test_ctrl_c_exits_130_quietly(new_segment):
    with valid_segment(new_segment) as seg:
        p = subprocess.Popen([sys.executable, "-m", "shmrss.cli", "monitor", seg.name, "--interval", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline()
            assert first.startswith(seg.name), first + p.stderr.read()
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
    assert p.returncode == 130
    assert err == ""
    assert "\x1b" not in out


# ----------------------------------------------------------------- listing
def test_listing_names_live_dead_and_foreign_segments(capsys, new_segment, shm_objects):
    make_bytes, _ = shm_objects
    junk = make_bytes(b"\0" * 4096)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with valid_segment(new_segment, "tree") as live, valid_segment(new_segment, "split") as stale:
        stale.words[L.H_OWNER_PID] = dead.pid
        assert main(["monitor"]) == 0
        out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith(PREFIX)}
    assert rows[live.name].split()[1:7] == [str(os.getpid()), "yes", "tree", "INIT", "2", "3"]
    assert rows[stale.name].split()[1:4] == [str(dead.pid), "no", "split"] and "shmrss cleanup" in rows[stale.name]
    assert "no shmrss magic" in rows[junk]


def test_listing_with_no_segments(capsys, monkeypatch):
    monkeypatch.setattr("shmrss.monitor.list_segments", lambda: [])
    assert main(["monitor"]) == 0
    assert capsys.readouterr().out == f"no shmrss segments in {SHM_DIR}\n"


def test_rich_rendering_on_a_terminal():
    frame = Frame(["shmrss-0123456789abcdef  atomic  RUNNING"], [Block("emulated CPUs", ["CPU", "M ev/s"],
                                                                      [["0", "1.0"], ["all", "1.0"]])],
                  notes=["a note"], warnings=["a warning"])
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=100).print(render_rich(frame))
    text = buf.getvalue()
    assert "\x1b[" in text and "emulated CPUs" in text and "WARNING: a warning" in text


def test_a_page_run_shows_the_region_the_workload_holds_beside_the_host_rss(capsys, new_segment):
    """Issue 20 item 5: with --fault-body page, each CPU's region (the workload's pages in that process) is
    shown beside the process's RSS as the host kernel counts it."""
    with valid_segment(new_segment) as seg:
        w = seg.words
        st, ss = seg.h(L.H_CPUSTAT), seg.h(L.H_CPUSTAT_STRIDE)
        for cpu in (0, 1):
            w[st + cpu * ss + L.S_STATUS] = L.CPU_RUNNING
            w[st + cpu * ss + L.S_PID] = os.getpid()
            w[st + cpu * ss + L.S_FB_PAGES] = 4096
            w[st + cpu * ss + L.S_FB_CURSOR] = 512 * (cpu + 1)  # 2 MiB, then 4 MiB held
        assert main(["monitor", seg.name, "--count", "1"]) == 0
        out = capsys.readouterr().out
    head, *rows = table(blocks(out, seg.name)[0], "emulated CPUs")
    assert head[-4:] == ["RSS", "MiB", "region", "MiB"]  # the table's words, split on spaces
    assert [r[-1] for r in rows[:2]] == ["2.0", "4.0"]
    assert float(rows[0][-2]) > 0  # RSS MiB: the host's count of the same process


def test_a_killed_cpu_not_yet_recovered_shows_as_dead(capsys, new_segment):
    """Issue 13 item 9: a CPU SIGKILLed while its status word still says RUNNING (its parent has not reaped
    nor recovered it: a zombie) is DEAD in the monitor, not RUNNING."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with valid_segment(new_segment) as seg:
            w = seg.words
            st, ss = seg.h(L.H_CPUSTAT), seg.h(L.H_CPUSTAT_STRIDE)
            for cpu, pid in ((0, zombie.pid), (1, os.getpid())):
                w[st + cpu * ss + L.S_STATUS] = L.CPU_RUNNING
                w[st + cpu * ss + L.S_PID] = pid
            assert main(["monitor", seg.name, "--count", "1"]) == 0
            out = capsys.readouterr().out
    finally:
        zombie.wait()
    head, *rows = table(blocks(out, seg.name)[0], "emulated CPUs")
    assert [r[2] for r in rows[:2]] == ["DEAD", "RUNNING"], rows
