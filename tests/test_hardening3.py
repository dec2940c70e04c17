"""Issue 19, hardening third round: no silent data loss (``--json -`` on a full disk, ``sweep --out`` onto a
file that is not a sweep's), no traceback on a results file, a monitor that works on a terminal, names from
files and /dev/shm escaped, orphans of a killed sweep, the overflow check of ``--fault-pages``, shards across
hosts, a full compile-cache disk, ``report`` through a planted directory link, the design driver's segments.

The fuzzing of results files is in ``tests/test_results_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--duration", "0.2", "--no-calibrate", "--no-reader", "--cpus", "1", "--design", "atomic"]
SHMRSS = [sys.executable, "-m", "shmrss"]


def _shmrss(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SHMRSS, *argv], capture_output=True, text=True, timeout=timeout, **kw)


def _one_line_error(p: subprocess.CompletedProcess, want_code: int = 2) -> str:
    assert p.returncode == want_code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("shmrss: error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


# ---------------------------------------------------------------- a small tmpfs in a private mount namespace
def _tmpfs_why_not() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    try:
        p = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    return None if p.returncode == 0 else f"a tmpfs in a private mount namespace is not allowed here: {p.stderr!r}"


_TMPFS_WHY = _tmpfs_why_not()
needs_tmpfs = pytest.mark.skipif(_TMPFS_WHY is not None, reason=str(_TMPFS_WHY))


def on_small_tmpfs(shell: str, mount: Path, size: str = "64k", timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a shell command in a private mount namespace where ``mount`` is a fresh tmpfs of ``size``."""
    mount.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mount} && {shell}"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ================================================================= 1. run --json - into a full file system
@needs_tmpfs
def test_run_json_to_stdout_on_a_full_file_system_is_an_error(tmp_path):
    mnt = tmp_path / "small"
    cmd = " ".join([sys.executable, "-m", "shmrss", "run", *QUICK, "--json", "-"])
    # 60 KiB of the 64 KiB taken: the document (> 4 KiB) cannot fit
    p = on_small_tmpfs(f"dd if=/dev/zero of={mnt}/fill bs=4k count=15 2>/dev/null; {cmd} > {mnt}/out.json; "
                       f"echo rc=$?; wc -c < {mnt}/out.json", mnt)
    assert "Traceback" not in p.stderr, p.stderr
    assert "rc=1" in p.stdout, (p.stdout, p.stderr)
    assert "could not be written to stdout: No space left on device" in p.stderr


def test_run_json_to_dev_full_is_an_error_with_the_table_kept():
    with open("/dev/full", "w") as full:
        p = subprocess.run([*SHMRSS, "run", *QUICK, "--json", "-"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert "could not be written to stdout" in p.stderr and "invariants" in p.stderr


def test_run_json_to_stdout_is_the_whole_document():
    p = _shmrss(["run", *QUICK, "--json", "-"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"][0]["design"] == "atomic"


# ================================================================= 3, 4. the monitor on a terminal; names escaped
def _shm_why_not() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    p = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                       capture_output=True, timeout=20)
    return None if p.returncode == 0 else f"a private /dev/shm is not allowed here: {p.stderr!r}"


_SHM_WHY = _shm_why_not()
needs_private_shm = pytest.mark.skipif(_SHM_WHY is not None, reason=str(_SHM_WHY))
# a file name cannot hold "/", so "[/]" (rich's MarkupError) is tested on labels; "[bold]" must be shown as is
HOSTILE_NAMES = ["shmrss-[bold]x", "shmrss-[on red]y", "shmrss-\x1b]0;owned\x07", "shmrss-\x1b[2J"]


def on_pty(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as its stdin, stdout and stderr: (exit code, what it wrote)."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, cwd=ROOT)
    os.close(slave)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                p.kill()
                raise AssertionError(f"no output for {timeout} s: {bytes(out)!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return p.wait(timeout=timeout), out.decode(errors="replace")


def _in_private_shm(names: list[str], command: list[str]) -> list[str]:
    """A shell argv: a private /dev/shm holding files of these names, then ``command``."""
    plant = "; ".join(f"printf x > '/dev/shm/{n}'" for n in names)
    return ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs /dev/shm && {plant}; exec \"$@\"", "sh",
            *command]


@needs_private_shm
def test_monitor_listing_on_a_terminal_shows_every_segment_escaped():
    code, out = on_pty(_in_private_shm(HOSTILE_NAMES, [*SHMRSS, "monitor"]))
    assert code == 0, out
    assert "Traceback" not in out and "IndexError" not in out and "MarkupError" not in out, out
    assert "shmrss-[bold]x" in out and "shmrss-[on red]y" in out  # markup shown, not interpreted
    assert "\x1b]0;owned" not in out and "\x07" not in out and "\x1b[2J" not in out  # controls escaped
    assert "shmrss-\\x1b]0;owned\\x07" in out, out


@needs_private_shm
def test_monitor_listing_piped_is_escaped_too():
    p = subprocess.run(_in_private_shm(HOSTILE_NAMES, [*SHMRSS, "monitor"]), capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout
    assert "shmrss-\\x1b[2J" in p.stdout and "shmrss-[bold]x" in p.stdout


@needs_private_shm
def test_cleanup_log_escapes_names_from_dev_shm():
    p = subprocess.run(_in_private_shm(HOSTILE_NAMES, [*SHMRSS, "cleanup"]), capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stderr and "\x07" not in p.stderr, p.stderr
    assert "skipped /shmrss-\\x1b]0;owned\\x07" in p.stderr and "skipped /shmrss-[bold]x" in p.stderr


def test_printable_escapes_controls_only():
    from shmrss.console import printable

    assert printable("shmrss-[/]") == "shmrss-[/]"
    assert printable("a\x1b]0;t\x07b\n") == "a\\x1b]0;t\\x07b\\n"
    assert printable("ü€") == "ü€"


# ================================================================= 13. the design driver's segments at exit
def test_design_driver_script_that_never_closes_leaves_no_segment():
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, "tests")
        import design_drivers as D
        from shmrss.segment import Segment
        names = []
        for _ in range(3):
            seg = Segment.create(D.geometry("atomic", 2))
            D.prepare("atomic", seg)
            D.run("atomic", seg, [D.op_add(0, 0, 0, 0, 5)])
            names.append(seg.name)
        print(" ".join(names))
        """)  # exits without close() or unlink()
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    names = p.stdout.split()
    assert len(names) == 3
    left = [n for n in names if os.path.exists(f"/dev/shm/{n}")]
    for n in left:  # do not leave them for the session's leak check either
        os.unlink(f"/dev/shm/{n}")
    assert not left, left


# ================================================================= 11. report through a planted directory link
@pytest.fixture(scope="module")
def real_results(tmp_path_factory) -> Path:
    """One real (short) ``shmrss run --json`` file."""
    out = tmp_path_factory.mktemp("real") / "run.json"
    p = _shmrss(["run", *QUICK, "--json", str(out)])
    assert p.returncode == 0, p.stderr
    return out


def test_report_never_writes_through_a_planted_wis_link(real_results, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "rep"
    out.mkdir()
    (out / "wis").symlink_to(target)
    p = _shmrss(["report", str(real_results), "--out", str(out)])
    assert p.returncode == 0, p.stderr
    assert list(target.iterdir()) == []
    assert (out / "wis").is_dir() and not (out / "wis").is_symlink()
    assert any((out / "wis").glob("*.csv"))


def test_report_refuses_a_wis_that_is_a_file_and_keeps_the_rest(real_results, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "wis").write_text("mine\n")
    p = _shmrss(["report", str(real_results), "--out", str(out)])
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "is not a directory" in p.stderr
    assert (out / "wis").read_text() == "mine\n" and (out / "report.md").is_file()
