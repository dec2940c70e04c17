"""The command line: bad input is exit 2 and one line ``shmrss: error: ...`` on stderr; topology and cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shmrss import layout as L
from shmrss.cli import main
from shmrss.segment import SHM_DIR, Segment
from shmrss.topology import read_topology

NCORES = len(read_topology().physical_cpus())
# anything that slips past validation ends quickly instead of running 5 s
QUICK = ["--duration", "0.2", "--no-calibrate", "--no-reader"]


def usage_error(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("shmrss: error:"), err
    assert "Traceback" not in err and "Traceback" not in out
    return lines[0]


BAD_OPTIONS = {
    "unknown design": (["--design", "nosuch"], "nosuch"),
    "unknown design in a list": (["--design", "atomic,nosuch"], "nosuch"),
    "empty design list": (["--design", ","], "design"),
    "unknown workload": (["--workload", "page_fault9"], "page_fault9"),
    "cpus 0": (["--cpus", "0"], "--cpus"),
    "cpus not a number": (["--cpus", "two"], "--cpus"),
    "cpus beyond cores": (["--cpus", str(NCORES + 1)], "--oversubscribe"),
    "duration 0": (["--duration", "0"], "--duration"),
    "duration negative": (["--duration", "-1"], "--duration"),
    "duration abc": (["--duration", "abc"], "--duration"),
    "duration nan": (["--duration", "nan"], "--duration"),
    "line 96": (["--line", "96"], "--line"),
    "read interval 0": (["--read-interval", "0"], "--read-interval"),
    "possible below cpus": (["--cpus", "2", "--possible-cpus", "1"], "--possible-cpus"),
    "mode": (["--mode", "fibers"], "--mode"),
    "tasks 0": (["--tasks", "0"], "--tasks"),
    "unknown option": (["--frobnicate"], "frobnicate"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option(case, capsys):
    extra, needle = BAD_OPTIONS[case]
    if case == "possible below cpus" and NCORES < 2:
        pytest.skip("needs 2 cores")
    line = usage_error(capsys, ["run", *QUICK, *extra])
    assert needle in line


def test_missing_subcommand(capsys):
    usage_error(capsys, [])


def test_json_into_missing_directory(capsys, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "r.json"
    line = usage_error(capsys, ["run", *QUICK, "--json", str(target)])
    assert "does not exist" in line
    assert not target.parent.exists()


def _spec(**over):
    spec = {"name": "w", "mms": 1, "tapes": {"t": [["fault", "anon", 8], ["unmap", "anon", 8]]},
            "tasks": [{"mm": 0, "tape": "t", "cpu": 0}]}
    spec.update(over)
    return json.dumps(spec)


BAD_FILES = {
    "bad json": ("{\"mms\": 1, \"tapes\":", "not valid JSON"),
    "unknown op": (_spec(tapes={"t": [["munmap", "anon", 8]]}), "unknown op"),
    "negative count": (_spec(tapes={"t": [["fault", "anon", -8]]}), "count"),
    "task cpu out of range": (_spec(tasks=[{"mm": 0, "tape": "t", "cpu": 7}]), "cpu 7"),
    "unknown member": (_spec(tapes={"t": [["fault", "heap", 8]]}), "unknown member"),
    "not an object": ("[1, 2, 3]", "object"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_workload_file(case, capsys, tmp_path):
    text, needle = BAD_FILES[case]
    path = tmp_path / "w.json"
    path.write_text(text)
    line = usage_error(capsys, ["run", *QUICK, "--cpus", "1", "--workload", str(path)])
    assert needle in line


def test_missing_workload_file(capsys, tmp_path):
    line = usage_error(capsys, ["run", *QUICK, "--workload", str(tmp_path / "absent.json")])
    assert "cannot read" in line


def test_usage_error_is_one_line_even_when_long(tmp_path):
    """Through a real pipe (not a terminal, 80 columns): the message must not be folded."""
    p = subprocess.run([sys.executable, "-m", "shmrss.cli", "run", "--workload", "/" + "x" * 150 + ".json"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("shmrss: error:") and "x" * 150 in lines[0], p.stderr


def test_topology(capsys):
    code = main(["topology"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "host topology" in out
    for head in ("cpu", "core", "siblings", "LLC", "node"):
        assert head in out
    topo = read_topology()
    rows = [ln for ln in out.splitlines() if ln.strip().startswith("│")]
    assert len(rows) >= len(topo.usable)
    assert f"cache line {topo.cache_line} B" in out.replace("\n", " ")


def test_cleanup_removes_stale_and_exits_0(capsys, geometry):
    from shmrss.segment import list_segments

    seg = Segment.create(geometry("atomic", 1))
    try:
        p = subprocess.Popen([sys.executable, "-c", "pass"])
        p.wait()
        seg.words[L.H_OWNER_PID] = p.pid  # its owner is gone
        code = main(["cleanup"])
        out, err = capsys.readouterr()
        assert code == 0
        assert not os.path.exists(os.path.join(SHM_DIR, seg.name))
        assert seg.name not in list_segments()
        assert f"removed /{seg.name}" in err
    finally:
        seg.unlink()
        seg.close()


def test_cleanup_keeps_live(capsys, geometry):
    seg = Segment.create(geometry("atomic", 1))  # owned by this (live) process
    try:
        assert main(["cleanup"]) == 0
        _, err = capsys.readouterr()
        assert os.path.exists(os.path.join(SHM_DIR, seg.name))
        assert f"skipped /{seg.name}: owner pid {os.getpid()} is alive" in err
    finally:
        seg.unlink()
        seg.close()


def _subcommands() -> list[str]:
    from shmrss.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(sub.choices)


@pytest.mark.parametrize("argv", [["--help"], ["-h"]] + [[c, "--help"] for c in _subcommands()],
                         ids=lambda a: " ".join(a))
def test_every_help_prints_through_the_console_script(argv):
    """``shmrss --help`` is the first command a user types (a ``%change`` in one help string once crashed it
    with ``TypeError: %c requires int or char``): the installed console script prints every help page."""
    import shutil

    exe = shutil.which("shmrss", path=os.path.dirname(sys.executable)) or shutil.which("shmrss")
    assert exe, "the shmrss console script is not installed beside this interpreter"
    p = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: shmrss") and "Traceback" not in p.stderr, p.stdout + p.stderr
