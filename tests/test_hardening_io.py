"""Issue 13, the file side: the compile cache is never someone else's, output is never written through a
symlink, /dev/shm space is reserved, output paths are checked before measuring and a failed write keeps the
rest, ``shmrss cleanup`` is safe on a shared /dev/shm, ``report``/``sweep`` read files robustly, and the
small things (empty --json, odd digits, ulimits).

Tests that fill /dev/shm or plant files in it run in a private mount and PID namespace
(``unshare -mpf --mount-proc``) with a small tmpfs on /dev/shm, never touching the host's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from shmrss.cli import main
from results_schema import load_run_json

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--duration", "0.2", "--no-calibrate", "--no-reader", "--cpus", "1", "--design", "atomic"]


def _cli(argv: list[str], timeout: float = 120, env: dict | None = None, limits=None, cwd=None):
    """``shmrss ARGV`` in a child process: (exit code, stdout, stderr)."""
    def preexec():
        for what, value in limits or ():
            resource.setrlimit(what, (value, value))

    p = subprocess.run([sys.executable, "-c", "import sys; from shmrss.cli import main; sys.exit(main())", *argv],
                       capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                       preexec_fn=preexec if limits else None)
    return p.returncode, p.stdout, p.stderr


def _one_line_error(code: int, err: str, want_code: int = 2) -> str:
    assert code == want_code, (code, err)
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("shmrss: error:")]
    assert len(errors) == 1, err
    return errors[0]


# ---------------------------------------------------------------- namespaces with a private /dev/shm
def _unshare_ok() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    try:
        p = subprocess.run(["unshare", "-mpf", "--mount-proc", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    return None if p.returncode == 0 else f"unshare -mpf with a tmpfs on /dev/shm is not allowed here: {p.stderr!r}"


_NS_WHY = _unshare_ok()
needs_ns = pytest.mark.skipif(_NS_WHY is not None, reason=str(_NS_WHY))


def in_namespace(script: str, shm_size: str = "8m", timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a Python script as PID 1 of a new PID namespace whose /dev/shm is a fresh tmpfs of ``shm_size``."""
    code = textwrap.dedent(script)
    return subprocess.run(["unshare", "-mpf", "--mount-proc", "sh", "-c",
                           f"mount -t tmpfs -o size={shm_size},mode=1777 tmpfs /dev/shm && exec \"$0\" -c \"$1\"",
                           sys.executable, code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ================================================================= 1. the compile cache
def _private(d: Path) -> bool:
    st = os.lstat(d)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


@pytest.mark.parametrize("where", ["SHMRSS_CACHE_DIR", "XDG_CACHE_HOME"])
@pytest.mark.parametrize("planted", ["group-writable", "world-writable", "other owner", "symlink",
                                     "pycache group-writable", "pycache other owner"])
def test_compile_cache_never_used_when_another_user_could_plant_code(where, planted, tmp_path, monkeypatch):
    from shmrss import compile_cache

    if planted.endswith("other owner") and os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    bad = base / "shmrss"
    if planted == "symlink":
        (tmp_path / "theirs").mkdir(mode=0o700)
        bad.symlink_to(tmp_path / "theirs")
    else:
        bad.mkdir(mode=0o700)
    if planted == "group-writable":
        bad.chmod(0o770)
    elif planted == "world-writable":
        bad.chmod(0o777)
    elif planted == "other owner":
        os.chown(bad, 65534, 65534)
    elif planted.startswith("pycache"):
        (bad / "__pycache__").mkdir(mode=0o700)
        if planted.endswith("group-writable"):
            (bad / "__pycache__").chmod(0o770)
        else:
            os.chown(bad / "__pycache__", 65534, 65534)
    monkeypatch.delenv("SHMRSS_CACHE_DIR", raising=False)
    if where == "SHMRSS_CACHE_DIR":
        monkeypatch.setenv("SHMRSS_CACHE_DIR", str(bad))
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o700)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(compile_cache, "_fallback", None, raising=False)
    d = compile_cache.cache_dir()
    assert d != bad and not str(d).startswith(str(tmp_path / "theirs"))
    assert _private(d)
    if (d / "__pycache__").exists():
        assert _private(d / "__pycache__")


def test_cache_dir_made_private_even_with_a_permissive_umask(tmp_path, monkeypatch):
    from shmrss import compile_cache

    monkeypatch.setenv("SHMRSS_CACHE_DIR", str(tmp_path / "c"))
    old = os.umask(0o002)
    try:
        d = compile_cache.cache_dir()
    finally:
        os.umask(old)
    assert d == tmp_path / "c" and _private(d)
    assert _private(d / "__pycache__")  # numba would make it with the umask: group-writable, refused next run


def test_private_fallback_is_reused_across_runs(tmp_path):
    """A planted /tmp/shmrss-cache-<uid> must not make every run compile into a new directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    planted = tmp / f"shmrss-cache-{os.geteuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": "/proc/no-cache-here"}
    env.pop("SHMRSS_CACHE_DIR", None)
    probe = "from shmrss.compile_cache import cache_dir; print(cache_dir())"
    dirs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                           check=True).stdout.strip() for _ in range(2)]
    assert dirs[0] == dirs[1] and dirs[0] != str(planted), dirs
    assert _private(Path(dirs[0]))
    assert len(list(tmp.iterdir())) == 2  # the planted one and one private fallback


# ================================================================= 2. output never through a symlink
def test_run_json_never_writes_through_a_symlinked_temporary(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out.json"
    (tmp_path / "out.json.tmp").symlink_to(victim)
    assert main(["run", *QUICK, "--json", str(out)]) == 0
    assert victim.read_text() == "precious\n"
    assert isinstance(load_run_json(out), dict)
    assert not stat.S_ISLNK(os.lstat(out).st_mode)


def test_json_writer_replaces_a_symlink_at_the_path_itself(tmp_path):
    from shmrss.safe_io import write_text

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out.json"
    out.symlink_to(victim)
    write_text(out, "{}\n")
    assert victim.read_text() == "precious\n" and out.read_text() == "{}\n" and not out.is_symlink()


def test_calibrate_json_never_writes_through_a_symlink(tmp_path, monkeypatch):
    """``calibrate --json`` and the calibration cache go through the same writer."""
    from shmrss import calibrate, cli

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "cal.json.tmp").symlink_to(victim)
    cli._write_json(str(tmp_path / "cal.json"), {"a": 1})
    assert victim.read_text() == "precious\n"
    monkeypatch.setenv("SHMRSS_CACHE_DIR", str(tmp_path / "cache"))
    from shmrss.topology import read_topology

    cache = calibrate.cache_dir() / calibrate.CACHE_FILE
    for pid_guess in range(os.getpid(), os.getpid() + 1):
        cache.with_suffix(f".{pid_guess}.tmp").symlink_to(victim)
    calibrate.save({"host_cpus": [0], "measured_at": "2026-01-01T00:00:00+00:00"}, read_topology())
    assert victim.read_text() == "precious\n"


def _results_file(tmp_path: Path) -> Path:
    """A results file of one real (short) run."""
    out = tmp_path / "r.json"
    assert main(["run", *QUICK, "--json", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def one_result(tmp_path_factory) -> Path:
    return _results_file(tmp_path_factory.mktemp("res"))


def test_report_never_writes_through_symlinks(one_result, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "rep"
    (out / "wis").mkdir(parents=True)
    planted = [out / "report.md", tmp_path / "all.csv"]
    for p in planted:
        p.symlink_to(victim)
    assert main(["report", str(one_result), "--out", str(out), "--csv", str(tmp_path / "all.csv")]) == 0
    assert victim.read_text() == "precious\n"
    for p in planted:
        assert p.is_file() and not p.is_symlink()


# ================================================================= 6. /dev/shm space reserved
@needs_ns
def test_two_segments_that_fit_only_one_at_a_time_never_sigbus():
    """Each passes the free-space check (sparse); touching the second's pages used to SIGBUS."""
    r = in_namespace("""
        import sys
        from shmrss import segment
        from shmrss.segment import Segment, SegmentError
        segment.check_room = lambda nbytes: None  # both pass it: the second before the first touched a page
        sys.path.insert(0, "tests")
        from conftest import make_geometry
        g = make_geometry("atomic", 1, ring=1 << 16)        # about 1 MiB: the reader ring
        a = Segment.create(g)
        try:
            b = Segment.create(g)
        except SegmentError as e:
            print("refused:", e); sys.exit(3)
        a.words[:] = 1
        b.words[:] = 1
        print("both fit"); sys.exit(0)
    """, shm_size="1536k")
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)  # old code: -7 / 135 (SIGBUS)
    assert "cannot reserve" in r.stdout, r.stdout


@needs_ns
def test_run_refuses_with_one_line_when_shm_space_cannot_be_had():
    """The free-space check passed (another run's sparse segment had not yet grown): exit 2, one line,
    nothing left in /dev/shm."""
    r = in_namespace("""
        import os, sys
        from shmrss import preflight, segment
        segment.check_room = lambda nbytes: None      # the checks raced with another run
        preflight.check_room = lambda geometries: None
        from shmrss.cli import main
        code = main(["run", "--duration", "0.2", "--no-calibrate", "--no-reader", "--cpus", "1", "--design", "atomic"])
        print("left:", sorted(os.listdir("/dev/shm")))
        sys.exit(code)
    """, shm_size="64k")
    line = _one_line_error(r.returncode, r.stderr)
    assert "/dev/shm" in line and "reserve" in line, line
    assert "left: []" in r.stdout


# ================================================================= 7. output paths and output failures
def test_empty_json_path_refused():
    code, _, err = _cli(["run", *QUICK, "--json", ""])
    assert "--json" in _one_line_error(code, err)


@needs_ns
def test_json_write_failure_after_the_run_keeps_the_table_and_the_other_designs():
    """A write that fails after measuring (a full disk; the check before the run passed, as it does when the
    disk fills during the run): the table is printed, every design runs, and the error says where the
    result could not go."""
    r = in_namespace("""
        import json, os, subprocess, sys
        os.makedirs("/tmp/shmrss-full", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", "/tmp/shmrss-full"], check=True)
        try:
            with open("/tmp/shmrss-full/filler", "wb") as f:
                while True:
                    f.write(b"x" * 4096)
                    f.flush()
        except OSError:
            pass
        p = subprocess.run([sys.executable, "-c", "import sys; from shmrss.cli import main; sys.exit(main())",
                            "run", "--duration", "0.2", "--no-calibrate", "--no-reader", "--cpus", "1",
                            "--design", "atomic,percpu", "--json", "/tmp/shmrss-full/r.json"],
                           capture_output=True, text=True, timeout=300)
        print(json.dumps({"rc": p.returncode, "out": p.stdout, "err": p.stderr}))
    """, timeout=400)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    err, stdout = got["err"], got["out"]
    assert "Traceback" not in err, err
    assert got["rc"] == 1, got
    assert "atomic" in stdout and "percpu" in stdout, stdout
    assert "/tmp/shmrss-full/r.json" in err and "could not be written" in err, err


def test_report_csv_checked_before_anything_is_drawn(one_result, tmp_path):
    bad = "/proc/sys/all.csv" if os.geteuid() == 0 else "/proc/all.csv"
    code, _, err = _cli(["report", str(one_result), "--out", str(tmp_path / "rep"), "--csv", bad])
    assert "--csv" in _one_line_error(code, err)
    assert not list((tmp_path / "rep").glob("*.png")) if (tmp_path / "rep").exists() else True


def test_report_keeps_report_md_when_one_output_fails(one_result, tmp_path, monkeypatch):
    from shmrss import wis_csv

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wis_csv, "write_combined", broken)
    out = tmp_path / "rep"
    code = main(["report", str(one_result), "--out", str(out), "--csv", str(tmp_path / "all.csv")])
    assert code == 1
    assert (out / "report.md").is_file() and list((out / "wis").glob("*.csv"))


# ================================================================= 8. cleanup on a shared /dev/shm
_PLANT = """
    import json, os, subprocess, sys, time
    sys.path.insert(0, "tests")
    from conftest import make_geometry
    from shmrss import layout as L
    from shmrss.segment import Segment
    D = "/dev/shm/"
    os.mkfifo(D + "shmrss-fifo")
    os.mkdir(D + "shmrss-dir")
    open("/tmp/shmrss-victim", "w").write("x")
    os.symlink("/tmp/shmrss-victim", D + "shmrss-link")
    with open(D + "shmrss-junk", "wb") as f:
        f.write(b"not a segment" * 100)
    with open(D + "shmrss-theirs", "wb") as f:
        f.write(b"\\0" * 4096)
    os.chown(D + "shmrss-theirs", 65534, 65534)
    for p in ("shmrss-junk", "shmrss-theirs", "shmrss-link"):
        os.utime(D + p, (time.time() - 3600,) * 2, follow_symlinks=False)
    g = make_geometry("atomic", 1)

    def dead_segment(name, edit=None):
        pid = os.fork()
        if pid == 0:
            try:
                s = Segment.create(g, name=name)
                if edit:
                    edit(s.words)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    dead_segment("shmrss-dead")
    dead_segment("shmrss-0001", lambda w: w.__setitem__(L.H_VERSION, L.VERSION + 1))  # another layout version
    dead_segment("shmrss-0002", lambda w: w.__setitem__(L.H_PIDNS, 12345))  # another PID namespace
    live = Segment.create(g, name="shmrss-0003")
    try:
        p = subprocess.run([sys.executable, "-c", "import sys; from shmrss.cli import main; sys.exit(main(['cleanup']))"],
                           capture_output=True, text=True, timeout=30)
        print(json.dumps({"rc": p.returncode, "err": p.stderr, "left": sorted(os.listdir(D)),
                          "victim": open("/tmp/shmrss-victim").read()}))
    except subprocess.TimeoutExpired:
        print(json.dumps({"rc": "hang"}))
    finally:
        live.unlink()
"""


@needs_ns
def test_cleanup_is_safe_on_a_shared_dev_shm():
    r = in_namespace(_PLANT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0, got
    err = got["err"]
    assert "Traceback" not in err
    assert "shmrss-dead" not in got["left"]  # the only one to remove: a readable header, owner dead here
    assert set(got["left"]) == {"shmrss-fifo", "shmrss-dir", "shmrss-link", "shmrss-junk", "shmrss-theirs",
                                "shmrss-0001", "shmrss-0002", "shmrss-0003"}, got
    assert got["victim"] == "x"
    for name, why in [("fifo", "not a regular file"), ("dir", "not a regular file"), ("link", "symlink"),
                      ("junk", "not a shmrss segment"), ("theirs", "uid 65534"),
                      ("0001", "layout version"), ("0002", "PID namespace"), ("0003", "alive")]:
        line = next((ln for ln in err.splitlines() if f"shmrss-{name}" in ln), "")
        assert "skipped" in line and why in line, (name, err)


@needs_ns
def test_sweep_cleanup_of_a_killed_point_does_not_hang_on_a_fifo():
    r = in_namespace("""
        import os, sys, threading
        os.mkfifo("/dev/shm/shmrss-fifo")
        from shmrss.sweep_child import _remove_segments_of
        t = threading.Thread(target=_remove_segments_of, args=(12345,), daemon=True)
        t.start(); t.join(10)
        sys.exit(3 if t.is_alive() else 0)
    """)
    assert r.returncode == 0, (r.returncode, r.stderr)


# ================================================================= 10. reading results files
def _report(paths, tmp_path, timeout=60):
    return _cli(["report", *map(str, paths), "--out", str(tmp_path / "rep")], timeout=timeout)


def test_report_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "r.jsonl"
    os.mkfifo(fifo)
    code, _, err = _report([fifo], tmp_path, timeout=30)
    assert "not a regular file" in _one_line_error(code, err)


def test_report_refuses_dev_zero(tmp_path):
    code, _, err = _report(["/dev/zero"], tmp_path, timeout=30)
    assert "not a regular file" in _one_line_error(code, err)


def test_report_skips_and_counts_bad_lines(one_result, tmp_path):
    good = load_run_json(one_result)
    lines = ["\ufeff" + json.dumps(good),
             "[" * 100_000 + "]" * 100_000,
             '{"n": ' + "9" * 5000 + "}",
             json.dumps({"sweep": {"status": "ok", "key": {"design": "atomic"}}}),
             "x" * (20 << 20),
             json.dumps(good)]
    p = tmp_path / "r.jsonl"
    p.write_bytes(("\n".join(lines) + "\n").encode() + b"\0" * 4096)
    code, out, err = _report([p], tmp_path)
    assert code == 0 and "Traceback" not in err, err
    assert "skipped 3 bad lines of 6" in err, err  # too deep, a 5000-digit number, a 20 MiB line
    assert "skipped 1 line marked finished without a result" in err, err
    assert "NUL-filled tail" in err, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "2 measured with every invariant holding" in md, md


def test_sweep_resumes_from_a_file_with_a_bom_and_a_nul_tail(one_result, tmp_path):
    from shmrss.results_file import read_records

    p = tmp_path / "r.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"sweep": {"status": "failed", "key": {}}}).encode() + b"\n"
                  + b"\0" * 1000)
    records, notes = read_records(p)
    assert len(records) == 1 and any("NUL-filled tail" in n for n in notes), notes


# ================================================================= 14. small things
@pytest.mark.parametrize("value", ["0_1", "\u0661", "\uff11"])  # int() reads each as 1
def test_integers_are_plain_ascii_digits(value):
    code, _, err = _cli(["run", "--cpus", value, "--no-calibrate"])
    line = _one_line_error(code, err)
    assert "--cpus" in line and "not an integer" in line, line


@pytest.mark.parametrize("value", ["0_1", "\u0661"])
def test_durations_are_plain_ascii_decimals(value):
    code, _, err = _cli(["run", "--duration", value, "--no-calibrate"])
    assert "not a number" in _one_line_error(code, err)


def test_unknown_design_after_all_is_named():
    code, _, err = _cli(["run", "--design", "all,foo", "--no-calibrate"])
    line = _one_line_error(code, err)
    assert "foo" in line and "'all'" not in line, line


def test_file_size_limit_is_one_line_not_a_traceback(tmp_path):
    code, _, err = _cli(["run", *QUICK, "--json", str(tmp_path / "r.json")],
                        limits=[(resource.RLIMIT_FSIZE, 0)])
    assert "ulimit -f" in _one_line_error(code, err)  # the segment cannot be sized: nothing runs


def test_small_address_space_is_one_line_not_a_traceback():
    code, _, err = _cli(["run", *QUICK], limits=[(resource.RLIMIT_AS, 300_000 * 1024)])
    assert "ulimit -v" in _one_line_error(code, err, want_code=1)


def test_unwritable_home_and_tmpdir_are_one_line(tmp_path):
    env = {**os.environ, "HOME": "/proc/nohome", "TMPDIR": "/proc/notmp", "XDG_CACHE_HOME": "/proc/nocache"}
    env.pop("SHMRSS_CACHE_DIR", None)
    code, _, err = _cli(["run", *QUICK], env=env)
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)


def test_sweep_plan_size_is_limited(tmp_path):
    code, _, err = _cli(["sweep", "--design", "all", "--oversubscribe", "--cpus", ",".join(map(str, range(1, 4097))),
                         "--possible-cpus", ",".join(map(str, range(1, 4097))), "--repeat", "1000",
                         "--dry-run", "--out", str(tmp_path / "r.jsonl")], timeout=30)
    assert "points" in _one_line_error(code, err)


def test_reader_death_is_said_once():
    code, _, err = _cli(["run", "--design", "atomic", "--cpus", "1", "--duration", "0.6", "--no-calibrate",
                         "--kill-at", "0.2:reader"])
    assert code == 0, err
    assert err.count("the reader (pid") == 1, err
