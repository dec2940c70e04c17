"""Hostile input: every refused option and workload file is one line ``shmrss: error: ...``, exit 2,
with nothing forked and no segment created; ``--host-cpus``; fuzzing of the workload file reader
and of the segment header validation; the segment's security model.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import posix_ipc
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shmrss import layout as L
from shmrss import preflight
from shmrss.cli import main
from shmrss.hostcpus import parse as parse_host_cpus
from shmrss.segment import (PREFIX, SHM_DIR, Segment, SegmentError, compute_layout, new_name, owner_pid,
                            validate_header)
from shmrss.topology import Topology, TopologyError, plan, read_topology
from shmrss.wlfile import MAX_FILE_BYTES, idle_notes, read_spec
from shmrss.workload import WorkloadError, compile_workload

TOPO = read_topology()
NCORES = len(TOPO.physical_cpus())
QUICK = ["--duration", "0.2", "--no-calibrate", "--no-reader"]
fuzz = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def _segments() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)}


def refused(capsys, argv) -> str:
    """Run the CLI; it must refuse with one line, exit 2, having forked nothing and created no segment."""
    before, kids = _segments(), {c.pid for c in psutil.Process().children()}
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("shmrss: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err  # warnings may precede the one error line
    assert "Traceback" not in err + out
    assert not {c.pid for c in psutil.Process().children()} - kids, "a refused run forked"
    # other people's runs come and go in /dev/shm meanwhile: only ours count
    assert not [n for n in _segments() - before if owner_pid(n) == os.getpid()], "a refused run created a segment"
    return errors[0]


# ================================================================= options of `shmrss run`
BAD_RUN = {
    "duration 1e308": (["--duration", "1e308"], "7 days"),
    "duration 1e400 (inf)": (["--duration", "1e400"], "--duration"),
    "duration inf": (["--duration", "inf"], "--duration"),
    "duration -inf": (["--duration", "-inf"], "--duration"),
    "duration nan": (["--duration", "nan"], "--duration"),
    "duration -0": (["--duration", "-0"], "--duration"),
    "duration 1e-9": (["--duration", "1e-9"], "too short"),
    "duration hex": (["--duration", "0x10"], "not a number"),
    "duration empty": (["--duration", ""], "--duration"),
    "read interval nan": (["--read-interval", "nan"], "--read-interval"),
    "tasks 0": (["--tasks", "0"], "--tasks"),
    "tasks -1": (["--tasks", "-1"], "--tasks"),
    "tasks 100001": (["--tasks", "100001"], "--tasks"),
    "tasks float": (["--tasks", "1e3"], "not an integer"),
    "tasks 10**30": (["--tasks", "1" + "0" * 30], "--tasks"),
    "cpus -1": (["--cpus", "-1"], "--cpus"),
    "cpus 4097": (["--cpus", "4097"], "--cpus"),
    "cpus beyond cores": (["--cpus", str(NCORES + 1)], "--oversubscribe"),
    "possible 0": (["--possible-cpus", "0"], "--possible-cpus"),
    "possible 4097": (["--possible-cpus", "4097"], "--possible-cpus"),
    "possible empty list": (["--possible-cpus", ","], "empty list"),
    "possible junk": (["--possible-cpus", "2,x"], "not an integer"),
    "slice 0": (["--slice", "0"], "--slice"),
    "slice 2**31+1": (["--slice", str((1 << 31) + 1)], "--slice"),
    "nodes 0": (["--nodes", "0"], "--nodes"),
    "nodes 65": (["--nodes", "65"], "--nodes"),
    "tree orders 0": (["--design", "tree", "--tree-orders", "0"], "--tree-orders"),
    "tree orders junk": (["--design", "tree", "--tree-orders", "1,,2"], "--tree-orders"),
    "tree orders huge": (["--design", "tree", "--tree-orders", "9" * 30], "--tree-orders"),
    "design empty": (["--design", ""], "design"),
    "design unicode": (["--design", "atömic"], "atömic"),
    "design all plus junk": (["--design", "all,nosuch"], "unknown design"),
    "lifecycle empty": (["--workload", "fork_exit", "--lifecycle", ","], "--lifecycle"),
    "lifecycle unknown": (["--workload", "fork_exit", "--lifecycle", "nosuch"], "nosuch"),
    "lifecycle without fork_exit": (["--lifecycle", "upstream"], "fork_exit"),
    "pages 0": (["--workload", "fork_exit", "--pages", "0"], "--pages"),
    "pages 2**20+1": (["--workload", "fork_exit", "--pages", str((1 << 20) + 1)], "--pages"),
    "clones 65": (["--workload", "fork_exit", "--clones", "65"], "--clones"),
    "clones -1": (["--workload", "fork_exit", "--clones", "-1"], "--clones"),
    "leak every -1": (["--workload", "fork_exit", "--leak-every", "-1"], "--leak-every"),
    "tasks with fork_exit": (["--workload", "fork_exit", "--tasks", "4"], "--tasks"),
    "line 0": (["--line", "0"], "--line"),
    "host cpus empty": (["--host-cpus", ""], "empty"),
    "host cpus repeated": (["--host-cpus", "0,0"], "twice"),
    "host cpus overlapping ranges": (["--host-cpus", "0-1,1"], "twice"),
    "host cpus negative": (["--host-cpus", "-1"], "bad item"),
    "host cpus descending": (["--host-cpus", "3-1"], "descending"),
    "host cpus stride 0": (["--host-cpus", "0-3:0"], "stride"),
    "host cpus absurd": (["--host-cpus", "99999999"], "does not exist"),
    "host cpus not on host": (["--host-cpus", str(max(TOPO.online) + 4096)], "does not exist"),
    "host cpus fewer than cpus": (["--host-cpus", "0", "--cpus", "2"], "--oversubscribe"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUN))
def test_run_option_refused(case, capsys):
    extra, needle = BAD_RUN[case]
    line = refused(capsys, ["run", *QUICK, *extra])
    assert needle in line, line


@pytest.mark.parametrize("interval,needle", [("0.0000001", "1 us"), ("1e308", "read once"), ("500", "read once")])
def test_read_interval_refused(interval, needle, capsys):
    # with a reader (QUICK has none, and without a reader the interval is not used)
    line = refused(capsys, ["run", "--duration", "0.2", "--no-calibrate", "--read-interval", interval])
    assert needle in line, line


def test_host_cpus_more_than_cpus_refused(capsys):
    if len(TOPO.usable) < 2:
        pytest.skip("needs 2 usable CPUs")
    line = refused(capsys, ["run", *QUICK, "--host-cpus", f"{TOPO.usable[0]},{TOPO.usable[1]}", "--cpus", "1"])
    assert "fewer than the 2 CPUs of --host-cpus" in line


BAD_PATHS = {
    "json is a directory": ("--json", lambda d: str(d), "is a directory"),
    "json in a missing directory": ("--json", lambda d: str(d / "no" / "r.json"), "does not exist"),
    "json on a device": ("--json", lambda d: "/dev/null", "not a regular file"),
    "json in /proc": ("--json", lambda d: "/proc/shmrss.json", "cannot write"),
    "plot is a file": ("--plot", lambda d: str(_touch(d / "f")), "not a directory"),
    "plot under a missing directory": ("--plot", lambda d: str(d / "no" / "such"), "does not exist"),
}


def _touch(p: Path) -> Path:
    p.write_text("x")
    return p


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_output_path_refused_before_running(case, capsys, tmp_path):
    option, make, needle = BAD_PATHS[case]
    line = refused(capsys, ["run", *QUICK, option, make(tmp_path)])
    assert needle in line, line


@pytest.mark.parametrize("argv,needle", [
    (["--json", "/proc/shmrss-cal.json"], "cannot write"),
    (["--json", "/no/such/dir/c.json"], "does not exist"),
    (["--host-cpus", "0,0"], "twice"),
    (["--host-cpus", "99999"], "does not exist"),
    (["--cpus", "0"], "--cpus"),
])
def test_calibrate_option_refused(argv, needle, capsys):
    assert needle in refused(capsys, ["calibrate", *argv])


# ================================================================= segment size and process count
@pytest.fixture
def small_host(monkeypatch):
    """Pretend /dev/shm has 512 MiB free and 1 GiB of memory is available."""
    class VM:
        available = 1 << 30

    monkeypatch.setattr(preflight, "_free_shm", lambda: 512 << 20)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM())


def test_segment_too_big_for_shm_says_what_makes_it_big(capsys, small_host):
    line = refused(capsys, ["run", *QUICK, "--design", "percpu", "--cpus", "1", "--tasks", "10000",
                            "--possible-cpus", "4096"])
    m = re.search(r"segment would need ([\d.]+) GiB \((.*)\); /dev/shm has 512\.0 MiB free", line)
    assert m, line
    assert "per-CPU units: 4096 possible CPUs x 10000 mms x" in m.group(2)
    # the figure is the layout's own size
    assert float(m.group(1)) > 1.0


def test_segment_too_big_for_memory(capsys, monkeypatch, small_host):
    monkeypatch.setattr(preflight, "_free_shm", lambda: 1 << 50)
    line = refused(capsys, ["run", *QUICK, "--design", "percpu", "--cpus", "1", "--tasks", "10000",
                            "--possible-cpus", "4096"])
    assert "segment would need" in line and "1.0 GiB of memory is available" in line, line


def test_segment_size_checked_for_fork_exit_before_any_fork(capsys, monkeypatch, small_host):
    monkeypatch.setattr(preflight, "_free_shm", lambda: 1 << 20)
    line = refused(capsys, ["run", *QUICK, "--workload", "fork_exit", "--lifecycle", "upstream,inline",
                            "--cpus", "1", "--possible-cpus", "2,4096"])
    # the largest of the runs is named
    assert re.search(r"segment would need [\d.]+ [GM]iB for (upstream|inline) P=4096 \(per-CPU units", line), line


def test_segment_estimate_matches_a_real_segment(geometry, new_segment):
    g = geometry("percpu", ncpu=2, possible=64, nmm=3, ntask=5)
    nbytes, parts = preflight.segment_parts(g)
    with new_segment(g) as seg:
        assert os.stat(os.path.join(SHM_DIR, seg.name)).st_size == nbytes
    assert sum(b for b, _ in parts) <= nbytes and parts == sorted(parts, reverse=True)


def test_process_count_refused_before_fork(capsys, monkeypatch):
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    monkeypatch.setattr(preflight, "_threads_in_use", lambda: pid_max - 3)
    line = refused(capsys, ["run", *QUICK, "--cpus", "8", "--oversubscribe"])
    assert "needs 8 processes but only 3 pids are free" in line, line


def test_process_limit_of_the_user(monkeypatch):
    import resource

    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (5, 5))
    with pytest.raises(preflight.UsageError, match=r"process limit \(ulimit -u\) of 5"):
        preflight.check_processes(8)


# ================================================================= workload files
def _spec(**over) -> dict:
    spec = {"name": "w", "mms": 1, "tapes": {"t": [["fault", "anon", 8], ["unmap", "anon", 8]]},
            "tasks": [{"mm": 0, "tape": "t", "cpu": 0}]}
    spec.update(over)
    return spec


def _write(d: Path, content) -> str:
    p = d / "w.json"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


BAD_FILES = {
    "binary garbage": (lambda d: _write(d, b"\x8d" + random.Random(1).randbytes(4000)), "not UTF-8"),
    "nested 100000 deep": (lambda d: _write(d, "[" * 100_000 + "]" * 100_000), "too deeply"),
    "nested objects": (lambda d: _write(d, '{"a":' * 50_000 + "1" + "}" * 50_000), "too deeply"),
    "a 5000-digit number": (lambda d: _write(d, '{"mms": 1' + "0" * 5000 + "}"), "too long"),
    "empty file": (lambda d: _write(d, ""), "not valid JSON"),
    "null": (lambda d: _write(d, "null"), "JSON object"),
    "NaN mms": (lambda d: _write(d, json.dumps(_spec(mms=math.nan))), "mms"),
    "a directory": (lambda d: str(_mkdir(d / "dir.json")), "is a directory"),
    "/dev/zero": (lambda d: "/dev/zero", "not a regular file"),
    "a symlink to /dev/zero": (lambda d: str(_symlink(d / "z.json", "/dev/zero")), "not a regular file"),
    "a FIFO": (lambda d: str(_fifo(d / "f.json")), "not a regular file"),
    "over 64 MiB (sparse, never read)": (lambda d: str(_sparse(d / "big.json", MAX_FILE_BYTES + 1)), "MiB"),
    "missing keys": (lambda d: _write(d, '{"name": "w"}'), "mms"),
    "wrong type of tasks": (lambda d: _write(d, json.dumps(_spec(tasks={"mm": 0}))), "tasks"),
    "control character in name": (lambda d: _write(d, json.dumps(_spec(name="a\nb"))), "U+000A"),
    "bidi override in name": (lambda d: _write(d, json.dumps(_spec(name="abc\u202edcba"))), "U+202E"),
    "markup in name": (lambda d: _write(d, json.dumps(_spec(name="[/bold]"))), "may not hold"),
    "mathtext in name": (lambda d: _write(d, json.dumps(_spec(name="$\\frac$"))), "may not hold"),
    "name of 10000 characters": (lambda d: _write(d, json.dumps(_spec(name="n" * 10_000))), "characters"),
    "control character in a tape name": (
        lambda d: _write(d, json.dumps(_spec(tapes={"t\x1b[2J": [["fault", "anon", 1]]}))), "U+001B"),
    "clone without exit": (lambda d: _write(d, json.dumps(_spec(tapes={"t": [["clone"], ["fault", "anon", 1]]}))),
                           "1 clones and 0 exits"),
    "missing file": (lambda d: str(d / "absent.json"), "cannot read"),
}


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


def _symlink(p: Path, target: str) -> Path:
    p.symlink_to(target)
    return p


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _sparse(p: Path, size: int) -> Path:
    with open(p, "wb") as f:
        f.truncate(size)
    return p


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_workload_file_refused(case, capsys, tmp_path):
    make, needle = BAD_FILES[case]
    line = refused(capsys, ["run", *QUICK, "--cpus", "1", "--workload", make(tmp_path)])
    assert needle in line, line


def _shrunk_fstat(monkeypatch):
    """os.fstat says a regular file is 10 bytes: it grows between fstat and the read."""
    real = os.fstat

    def fstat(fd):
        st_ = real(fd)
        return os.stat_result(tuple(st_)[:6] + (10,) + tuple(st_)[7:10]) if stat.S_ISREG(st_.st_mode) else st_

    monkeypatch.setattr(os, "fstat", fstat)


def test_workload_file_messages_word_for_word(tmp_path, monkeypatch):
    """The reader's one-line refusals, exactly (read_spec words safe_io.read_regular's checks its own way)."""
    from shmrss.workload import MAX_STEPS

    big = _sparse(tmp_path / "big.json", MAX_FILE_BYTES + 1)
    cases = {
        str(_mkdir(tmp_path / "dir.json")): "workload file {} is a directory",
        "/dev/zero": "workload file {} is not a regular file (a device, FIFO or socket)",
        str(_fifo(tmp_path / "f.json")): "workload file {} is not a regular file (a device, FIFO or socket)",
        str(big): f"workload file {{}} is 64.0 MiB; a workload is at most 64 MiB ({MAX_STEPS:,} tape steps)",
        str(tmp_path / "absent.json"): "cannot read workload file {}: No such file or directory",
    }
    for path, message in cases.items():
        with pytest.raises(WorkloadError) as e:
            read_spec(path)
        assert str(e.value) == message.format(path)
    _shrunk_fstat(monkeypatch)
    with pytest.raises(WorkloadError) as e:
        read_spec(str(big))
    assert str(e.value) == f"workload file {big} is over 64 MiB"


def test_workload_files_are_read_by_the_one_safe_reader(tmp_path, monkeypatch):
    """read_spec reads through safe_io.read_regular (O_NONBLOCK, fstat, regular files only, a size cap)."""
    from shmrss import safe_io, wlfile

    calls = []

    def spy(path, max_bytes, *args, **kw):
        calls.append((path, max_bytes))
        return safe_io.read_regular(path, max_bytes, *args, **kw)

    monkeypatch.setattr(wlfile, "read_regular", spy)
    path = _write(tmp_path, json.dumps(_spec()))
    assert read_spec(path)["name"] == "w"
    assert calls == [(path, MAX_FILE_BYTES)]


def test_unreadable_workload_file(capsys, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a mode-000 file")
    p = Path(_write(tmp_path, json.dumps(_spec())))
    p.chmod(0)
    assert "Permission denied" in refused(capsys, ["run", *QUICK, "--workload", str(p)])


def test_tasks_option_with_a_workload_file_refused(capsys, tmp_path):
    line = refused(capsys, ["run", *QUICK, "--cpus", "1", "--tasks", "3", "--workload",
                            _write(tmp_path, json.dumps(_spec()))])
    assert "lists its own tasks" in line


@pytest.mark.parametrize("content", [
    json.dumps(_spec(name="日本語のワークロード ✓")),  # unicode names are fine
    "\ufeff" + json.dumps(_spec()),  # a UTF-8 byte order mark is skipped
    json.dumps(_spec(tapes={"täpe ✓": [["fault", "anon", 1], ["unmap", "anon", 1]]},
                     tasks=[{"mm": 0, "tape": "täpe ✓"}])),
])
def test_acceptable_workload_files(content, tmp_path):
    spec = read_spec(_write(tmp_path, content))
    assert compile_workload(spec, 1).nmm == 1


def test_idle_tapes_and_idle_cpus_are_said():
    only_sleeps = _spec(tapes={"t": [["fault", "anon", 1], ["unmap", "anon", 1]], "z": [["yield"], ["sleep", 0]]},
                        tasks=[{"mm": 0, "tape": "t", "cpu": 0}, {"mm": 0, "tape": "z", "cpu": 0}])
    notes = idle_notes(compile_workload(only_sleeps, 3))
    assert any("1 tape of this workload never updates a counter" in n for n in notes), notes
    assert any("emulated CPUs 1, 2 hold no task" in n for n in notes), notes
    nothing = _spec(tapes={"z": [["sleep", 0]]}, tasks=[{"mm": 0, "tape": "z"}])
    assert any("the run measures no event" in n for n in idle_notes(compile_workload(nothing, 1)))
    assert idle_notes(compile_workload(_spec(), 1)) == []


# ================================================================= --host-cpus
@pytest.mark.parametrize("text,cpus", [
    ("0", [0]), ("3,0-2", [3, 0, 1, 2]), (" 2 , 0 ", [2, 0]), ("0-7:2", [0, 2, 4, 6]), ("1-6:3,0", [1, 4, 0]),
])
def test_host_cpus_list_keeps_order(text, cpus):
    assert parse_host_cpus(text) == cpus


def _topo(cores, online=None, usable=None, possible=None) -> Topology:
    cpus = sorted(c for core in cores for c in core)
    online = tuple(online or cpus)
    usable = tuple(usable or cpus)
    cores = tuple(tuple(c for c in core if c in usable) for core in cores)
    return Topology(online=online, usable=usable, cores=tuple(c for c in cores if c), llc_groups=(usable,),
                    numa_nodes=(usable,), node_ids=(0,), possible=possible or max(online) + 1, cache_line=64,
                    quota_cpus=None, smt_active=any(len(c) > 1 for c in cores), model="fake")


SMT = _topo([(0, 4), (1, 5), (2, 6), (3, 7)])


def test_host_cpus_pin_in_order_and_leave_the_reader_a_free_core():
    p = plan(SMT, 3, host_cpus=[3, 1, 2])
    assert p.cpus == (3, 1, 2) and not p.oversubscribed
    assert p.reader_cpu == 0
    assert not any("SMT" in w for w in p.warnings)


def test_host_cpus_that_are_smt_siblings_warn():
    p = plan(SMT, 2, host_cpus=[1, 5])  # no --smt needed: the user named them, but is told
    assert p.cpus == (1, 5)
    assert any("SMT siblings (host CPUs 1+5)" in w for w in p.warnings), p.warnings


def test_host_cpus_oversubscribed_wrap_round_the_list():
    with pytest.raises(TopologyError, match="exceeds the 2 usable CPUs of --host-cpus"):
        plan(SMT, 4, host_cpus=[2, 3])
    p = plan(SMT, 5, host_cpus=[2, 3], oversubscribe=True)
    assert p.cpus == (2, 3, 2, 3, 2) and p.oversubscribed
    assert any("oversubscribed" in w for w in p.warnings)


@pytest.mark.parametrize("cpus,needle", [
    ([9], "CPU 9 does not exist"),
    ([1, 6], "CPU 6 is offline"),
    ([0, 2], "CPU 2 is outside this process's CPU affinity"),
    ([1, 1], "lists CPU 1 twice"),
])
def test_host_cpus_not_usable(cpus, needle):
    topo = _topo([(0,), (1,), (2,), (3,)], online=(0, 1, 2, 3), usable=(0, 1, 3), possible=8)
    with pytest.raises(TopologyError, match=re.escape(needle)):
        plan(topo, len(cpus), host_cpus=cpus)


def test_host_cpus_outside_the_real_affinity_refused():
    """A real process restricted to one CPU may not name the other."""
    if len(TOPO.usable) < 2:
        pytest.skip("needs 2 usable CPUs")
    keep, other = TOPO.usable[0], TOPO.usable[1]
    p = subprocess.run([sys.executable, "-m", "shmrss.cli", "run", "--host-cpus", str(other), *QUICK],
                       capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: os.sched_setaffinity(0, {keep}))
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"CPU {other} is outside this process's CPU affinity" in lines[0], p.stderr


# ================================================================= fuzz: the workload file reader
def _read_or_workload_error(data: bytes, ncpu: int = 2):
    """Write data to a file and read and compile it: a WorkloadError is the only refusal allowed."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(data)
        f.flush()
        try:
            spec = read_spec(f.name)
            wl = compile_workload(spec, ncpu)
        except WorkloadError as e:
            assert str(e) and "\n" not in str(e)
            return None
    assert wl.nmm >= 1 and len(wl.runqueues) == ncpu
    return wl


VALID_TEXT = json.dumps({"name": "w", "mms": 2, "tapes": {
    "t": [["fault", "anon", 4], ["clone"], ["remote", "swap", 3, 1], ["exit"], ["migrate", 1], ["yield"],
          ["sleep", 2], ["remote", "swap", -3, 1], ["unmap", "anon", 4]]},
    "tasks": [{"mm": 0, "tape": "t", "cpu": 0}, {"mm": 1, "tape": "t"}]}).encode()


@fuzz
@given(data=st.binary(max_size=2048))
def test_fuzz_file_random_bytes(data):
    _read_or_workload_error(data)


@fuzz
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_TEXT)), st.integers(0, 8), st.binary(max_size=6)),
                      min_size=1, max_size=4))
def test_fuzz_file_mutated_valid_text(edits):
    """Splices into a valid file: deleted, replaced and inserted bytes anywhere."""
    data = bytearray(VALID_TEXT)
    for at, cut, insert in edits:
        data[at: at + cut] = insert
    _read_or_workload_error(bytes(data))


TOKENS = st.sampled_from(['{', '}', '[', ']', ',', ':', '"t"', '"mms"', '"tapes"', '"tasks"', '"fault"', '"anon"',
                          '"mm"', '"tape"', '"cpu"', '0', '1', '-1', '2147483649', '1e999', 'NaN', 'Infinity',
                          'null', 'true', '"\\u0000"', '"\\ud800"', '"\u202e"', ' '])


@fuzz
@given(tokens=st.lists(TOKENS, max_size=60))
def test_fuzz_file_token_soup(tokens):
    _read_or_workload_error("".join(tokens).encode())


@fuzz
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["[]", "{}"]))
def test_fuzz_file_nesting(depth, kind):
    o, c = kind
    inner = '"a":' if o == "{" else ""
    _read_or_workload_error(((o + inner) * depth + "1" + c * depth).encode())


# ================================================================= fuzz: segment header validation
def _reads_in_bounds(words: np.ndarray) -> None:
    """Every index the compiled code may compute from an accepted header lies inside the segment.

    Written from the layout's meaning (layout.py), not from validate_header."""
    total = int(words[L.H_TOTAL])
    assert total <= len(words)
    g = lambda slot: int(words[slot])  # noqa: E731
    ncpu, possible, nmm, ntask, ring, lw = (g(s) for s in (L.H_NCPU, L.H_POSSIBLE, L.H_NMM, L.H_NTASK, L.H_RING,
                                                           L.H_LINE))
    last = []  # (what, highest index read)
    last.append(("ctrl", g(L.H_CTRL) + L.CTRL_LINES * lw - 1))
    last.append(("cpustat", g(L.H_CPUSTAT) + (ncpu - 1) * g(L.H_CPUSTAT_STRIDE) + L.S_WORDS - 1))
    last.append(("truth", g(L.H_TRUTH) + (ncpu - 1) * g(L.H_TRUTH_STRIDE) + nmm * L.NMEMBERS - 1))
    kwords = nmm * g(L.H_PCPU_KWORDS)
    assert kwords >= 0
    if kwords:
        last.append(("pcpu", g(L.H_PCPU) + (possible - 1) * g(L.H_PCPU_CSTRIDE) + (kwords - 1) * g(L.H_PCPU_KSTRIDE)))
    last.append(("mm", g(L.H_MM) + nmm * g(L.H_MM_STRIDE) - 1))
    if ntask:
        last.append(("task", g(L.H_TASK) + (ntask - 1) * g(L.H_TASK_STRIDE) + L.T_WORDS - 1))
        last.append(("runqueue", g(L.H_RQ) + (ncpu - 1) * g(L.H_RQ_STRIDE) + L.Q_IDS + ntask - 1))
    last.append(("tape", g(L.H_TAPE) + g(L.H_TAPE_STEPS) * L.STEP_WORDS - 1))
    last.append(("reader", g(L.H_READER) + L.R_HEAD_WORDS + 2 * ring - 1))
    if g(L.H_OOM):
        last.append(("oom", g(L.H_OOM) + L.O_HEAD_WORDS + 2 * ring - 1))
    for what, idx in last:
        assert idx < total, (what, idx, total)
    for slot in (L.H_CTRL, L.H_CPUSTAT, L.H_TRUTH, L.H_PCPU, L.H_MM, L.H_TASK, L.H_TAPE, L.H_RQ, L.H_READER):
        assert L.H_WORDS <= g(slot) < total, slot
    for slot in (L.H_CPUSTAT_STRIDE, L.H_TRUTH_STRIDE, L.H_PCPU_CSTRIDE, L.H_PCPU_KSTRIDE, L.H_MM_STRIDE,
                 L.H_TASK_STRIDE, L.H_RQ_STRIDE):
        assert g(slot) >= 0, slot


def _valid_words(geometry, **kw) -> np.ndarray:
    lay = compute_layout(geometry("percpu", **kw))
    words = np.zeros(lay.total_words, dtype=np.int64)
    words[: L.H_WORDS] = lay.header
    return words


SLOTS = [L.H_TOTAL, L.H_LINE, L.H_NCPU, L.H_POSSIBLE, L.H_NMM, L.H_NTASK, L.H_CTRL, L.H_CPUSTAT, L.H_CPUSTAT_STRIDE,
         L.H_TRUTH, L.H_TRUTH_STRIDE, L.H_PCPU, L.H_PCPU_CSTRIDE, L.H_PCPU_KSTRIDE, L.H_PCPU_KWORDS, L.H_MM,
         L.H_MM_STRIDE, L.H_TASK, L.H_TASK_STRIDE, L.H_TAPE, L.H_TAPE_STEPS, L.H_RQ, L.H_RQ_STRIDE, L.H_READER,
         L.H_RING, L.H_GLOBAL, L.H_GLOBAL_WORDS, L.H_OOM]


REGION_STRIDES = [(L.H_CPUSTAT, L.H_CPUSTAT_STRIDE), (L.H_TRUTH, L.H_TRUTH_STRIDE), (L.H_MM, L.H_MM_STRIDE),
                  (L.H_TASK, L.H_TASK_STRIDE), (L.H_RQ, L.H_RQ_STRIDE), (L.H_PCPU, L.H_PCPU_CSTRIDE),
                  (L.H_PCPU, L.H_PCPU_KSTRIDE)]


@settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), ncpu=st.integers(1, 4), extra=st.integers(0, 8), nmm=st.integers(1, 5),
       ntask=st.integers(1, 6), pack=st.booleans())
def test_fuzz_header_geometry_slots(data, ncpu, extra, nmm, ntask, pack, geometry):
    """Corrupt the slots that say where and how big things are, by small steps and by wild values:
    validate_header accepts only headers whose every read stays inside the object, and raises nothing
    but SegmentError."""
    words = _valid_words(geometry, ncpu=ncpu, possible=ncpu + extra, nmm=nmm, ntask=ntask, pack=pack)
    total = len(words)
    if data.draw(st.booleans()):
        # a region moved to the end of the object with a record stride shrunk: the pair that lets the
        # last record's fields run past a check of base + count * stride alone
        base, stride = data.draw(st.sampled_from(REGION_STRIDES))
        words[base] = total - data.draw(st.integers(0, 64))
        words[stride] = data.draw(st.integers(0, int(words[stride])))
    for _ in range(data.draw(st.integers(0, 4))):
        slot = data.draw(st.sampled_from(SLOTS))
        old = int(words[slot])
        words[slot] = data.draw(st.one_of(
            st.integers(-3, 3).map(lambda d: max(-(1 << 63), min(old + d, (1 << 63) - 1))),  # off by a little
            st.sampled_from([0, 1, -1, total - 1, total, total + 1, L.H_WORDS - 1, (1 << 63) - 1, -(1 << 63),
                             1 << 20, (1 << 20) + 1, 1 << 40]),
            st.integers(0, total),
        ))
    try:
        validate_header(words, total * 8)
    except SegmentError as e:
        assert str(e) and "\n" not in str(e)
    else:
        _reads_in_bounds(words)


@fuzz
@given(data=st.data())
def test_fuzz_header_through_attach(data, geometry):
    """The same through a real object: attach gives a Segment whose header is sound, or SegmentError."""
    words = _valid_words(geometry, ncpu=2, possible=3, nmm=2, ntask=2)
    for _ in range(data.draw(st.integers(0, 3))):
        words[data.draw(st.sampled_from(SLOTS))] = data.draw(st.integers(-(1 << 63), (1 << 63) - 1)
                                                              | st.integers(-2, 300))
    cut = data.draw(st.sampled_from([len(words), len(words) - 1, L.H_WORDS, 3]))
    raw = words[:cut].tobytes()
    name = new_name()
    shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=max(len(raw), 1))
    try:
        os.pwrite(shm.fd, raw, 0)
        shm.close_fd()
        try:
            seg = Segment.attach(name, readonly=True)
        except SegmentError as e:
            assert "\n" not in str(e)
        else:
            try:
                _reads_in_bounds(seg.words)
            finally:
                seg.close()
    finally:
        posix_ipc.unlink_shared_memory("/" + name)


# ================================================================= the security model
def _mode(name: str) -> os.stat_result:
    return os.stat(os.path.join(SHM_DIR, name))


def test_segment_is_0600_and_ours_even_with_a_permissive_umask(geometry, new_segment):
    old = os.umask(0)
    try:
        with new_segment(geometry("atomic", ncpu=1)) as seg:
            st_ = _mode(seg.name)
            assert stat.S_IMODE(st_.st_mode) == 0o600
            assert st_.st_uid == os.geteuid()
            assert stat.S_ISREG(st_.st_mode)
    finally:
        os.umask(old)


def test_create_never_reuses_an_existing_object(geometry):
    """O_EXCL: a name someone else created first (here world-writable) is refused, not adopted."""
    name = new_name()
    squat = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o666, size=4096)
    squat.close_fd()
    try:
        with pytest.raises(SegmentError, match="already exists"):
            Segment.create(geometry("atomic", ncpu=1), name=name)
        assert _mode(name).st_size == 4096  # untouched
    finally:
        posix_ipc.unlink_shared_memory("/" + name)


def test_names_come_from_the_os_random_source_not_from_a_seedable_generator():
    random.seed(1234)
    np.random.seed(1234)
    first = [new_name() for _ in range(4)]
    random.seed(1234)
    np.random.seed(1234)
    assert not set(first) & {new_name() for _ in range(4)}


def test_name_entropy_is_64_bits():
    names = [new_name() for _ in range(4096)]
    assert len(set(names)) == len(names)
    digits = np.array([[int(ch, 16) for ch in n[len(PREFIX):]] for n in names])
    assert digits.shape == (4096, 16)  # 16 hex digits: 64 bits
    # every position uniform over 0..f: chi-square with 15 degrees of freedom, far beyond p = 1e-6 at 60
    for pos in range(16):
        counts = np.bincount(digits[:, pos], minlength=16)
        chi2 = ((counts - 256) ** 2 / 256).sum()
        assert chi2 < 60, (pos, counts)


def _as_nobody(target, *args) -> int:
    """Run target(*args) in a child with the uid and gid of nobody; its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = target(*args)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _try_open(name: str) -> int:
    """0: refused for reading and writing; 1: opened."""
    for ro in (False, True):
        try:
            posix_ipc.SharedMemory("/" + name, 0, read_only=ro).close_fd()
            return 1
        except posix_ipc.PermissionsError:
            pass
    try:
        Segment.attach(name, readonly=True)
        return 1
    except SegmentError:
        pass
    return 0


def test_another_user_can_neither_read_nor_write_a_run(geometry, new_segment):
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    with new_segment(geometry("atomic", ncpu=1)) as seg:
        assert _as_nobody(_try_open, seg.name) == 0


def test_attach_own_only_refuses_another_users_segment(geometry, new_segment):
    import inspect

    if "own_only" not in inspect.signature(Segment.attach).parameters:
        pytest.skip("Segment.attach has no own_only (shmrss monitor) yet")
    if os.geteuid() != 0:
        pytest.skip("needs root to give a segment to another user")
    with new_segment(geometry("atomic", ncpu=1)) as seg:
        os.chown(os.path.join(SHM_DIR, seg.name), 65534, 65534)
        with pytest.raises(SegmentError, match="belongs to uid 65534"):
            Segment.attach(seg.name, readonly=True, own_only=True)
        Segment.attach(seg.name, readonly=True).close()  # without own_only root may (the children do)


def test_host_cpus_real_run_pins_in_the_order_given(run_cli, tmp_path):
    if len(TOPO.usable) < 2:
        pytest.skip("needs 2 usable CPUs")
    order = [TOPO.usable[1], TOPO.usable[0]]
    code, r = run_cli(["run", "--design", "atomic", "--host-cpus", f"{order[0]},{order[1]}", "--duration", "0.3",
                       "--no-reader"], tmp_path)
    assert code == 0
    assert r["params"]["host_cpus"] == order and r["params"]["cpus"] == 2
    assert [c["host_cpu"] for c in r["throughput"]["per_cpu"]] == order  # where each CPU process pinned itself


@pytest.mark.parametrize("planted", ["world-writable", "symlink", "none"])
def test_compile_cache_in_a_shared_tmp_is_never_someone_elses(planted, tmp_path, monkeypatch):
    """When the home cache is not writable the engine compiles into /tmp/shmrss-cache-<uid>; a path
    there made first by another user (world-writable, or a symlink) must not be used: the generated
    modules and numba's pickled caches imported from it would be theirs, run as us."""
    import tempfile

    from shmrss import compile_cache

    monkeypatch.delenv("SHMRSS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/shmrss-no-cache-here")  # cannot be created: the /tmp fallback
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(compile_cache, "_fallback", None)
    shared = tmp_path / f"shmrss-cache-{os.getuid()}"
    if planted == "world-writable":
        shared.mkdir()
        shared.chmod(0o777)
    elif planted == "symlink":
        (tmp_path / "theirs").mkdir(mode=0o700)
        shared.symlink_to(tmp_path / "theirs")
    d = compile_cache.cache_dir()
    st_ = os.lstat(d)
    assert stat.S_ISDIR(st_.st_mode) and st_.st_uid == os.geteuid() and not st_.st_mode & 0o077
    assert (d == shared) == (planted == "none")
    assert compile_cache.cache_dir() == d  # one fallback per process, not one per call
