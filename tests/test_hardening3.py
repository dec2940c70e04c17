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


# ================================================================= 10. the compile cache on a full file system
@needs_tmpfs
@pytest.mark.parametrize("size,fill_blocks", [("256k", 60), ("512k", 80)],
                         ids=["the copy cannot be written", "numba cannot save its machine code"])
def test_full_compile_cache_falls_back_to_the_private_temporary_one(tmp_path, size, fill_blocks):
    """The fallback is $TMPDIR/shmrss-cache-<uid> of the default TMPDIR: cold once per machine, warm after."""
    mnt = tmp_path / "small"
    cmd = " ".join([f"SHMRSS_CACHE_DIR={mnt}/cache", sys.executable, "-m", "shmrss", "run", *QUICK])
    p = on_small_tmpfs(f"dd if=/dev/zero of={mnt}/fill bs=4k count={fill_blocks} 2>/dev/null; {cmd}", mnt, size=size,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert f"compile cache {mnt}/cache: No space left on device; compiling into " in p.stderr, p.stderr


# ================================================================= 2. sweep --out onto a file no sweep wrote
def _sweep_argv(out: Path) -> list[str]:
    return ["sweep", "--design", "atomic", "--cpus", "1", "--duration", "0.2", "--no-calibrate", "--no-reader",
            "--out", str(out)]


@pytest.mark.parametrize("content,needle", [
    ("RUN", "is a JSON document"),
    ('{\n  "name": "pkg",\n  "version": "1.0.0"\n}\n', "is a JSON document"),
    ('{"name": "pkg", "version": "1.0.0"}\n', "that no shmrss sweep wrote"),
    ("[1, 2, 3]\n", "not a shmrss results document"),
    ("some notes\nmore notes\n", "is not JSON"),
    ("RESULT_LINE", "that no shmrss sweep wrote"),
], ids=["run --json document", "package.json", "an object on one line", "a list", "text", "a plain result line"])
def test_sweep_refuses_to_append_to_a_file_no_sweep_wrote(real_results, tmp_path, content, needle):
    out = tmp_path / "out.json"
    if content == "RUN":
        content = real_results.read_text()
    elif content == "RESULT_LINE":
        content = json.dumps(json.loads(real_results.read_text())["results"][0]) + "\n"
    out.write_text(content)
    p = _shmrss(_sweep_argv(out))
    assert needle in _one_line_error(p)
    assert out.read_text() == content  # untouched


def test_sweep_still_resumes_its_own_file(tmp_path):
    out = tmp_path / "sw.jsonl"
    assert _shmrss(_sweep_argv(out)).returncode == 0
    before = out.read_text()
    p = _shmrss(_sweep_argv(out))
    assert p.returncode == 0, p.stderr
    assert "nothing to run" in p.stderr and out.read_text() == before


# ================================================================= 5, 6, 12. results files: malformed, huge, strict
def _result(real_results: Path) -> dict:
    return json.loads(real_results.read_text())["results"][0]


def _crafted(r: dict) -> dict:
    """The issue's 22 crafted results, by name: each must be skipped with a note naming the field."""
    import copy

    def edit(path: str, value):
        x = copy.deepcopy(r)
        *head, last = path.split(".")
        node = x
        for h in head:
            node = node[h]
        node[last] = value
        return x

    samples = "throughput.events_per_s_samples"
    return {
        "NaN sample": edit(samples, [1.0, float("nan")]), "Infinity sample": edit(samples, [float("inf")]),
        "string sample": edit(samples, ["1"]), "null sample": edit(samples, [None]), "dict sample": edit(samples, [{}]),
        "1e308 samples": edit(samples, [1e308, 1e308]), "4000-digit integer": edit("throughput.events_per_s", 10**3999),
        "params null": edit("params", None), "params a list": edit("params", []),
        "read_interval_s a dict": edit("params.read_interval_s", {}), "read_interval_s a string":
            edit("params.read_interval_s", "x" * 100), "host a string": edit("host", "h"),
        "cpus a nested list": edit("params.cpus", [[2]]), "cpus a string": edit("params.cpus", "2"),
        "invariants a list": edit("invariants", []), "warnings with a dict": edit("warnings", [{}]),
        "topology a string": edit("host.topology", "t"), "events_per_s a string": edit("throughput.events_per_s", "9"),
        "ns_per_event NaN": edit("throughput.ns_per_event", float("nan")), "label a list": edit("params.label", []),
        "hostname a number": edit("host.hostname", 7), "invariant a string": edit("invariants.precise_equals_truth", "y"),
    }


def _as_line(obj) -> str:
    return json.dumps(obj, allow_nan=True)  # NaN and Infinity written as JSON's readers see them in the wild


def test_crafted_results_are_skipped_with_a_note_naming_file_line_and_field(real_results, tmp_path):
    from shmrss.results_file import read_records

    good = _result(real_results)
    crafted = _crafted(good)
    assert len(crafted) == 22
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(_as_line(r) + "\n" for r in [good, *crafted.values()]))
    records, notes = read_records(path)
    assert records == [good]
    # the first five are named one by one, the rest counted
    assert notes[0].startswith(f"{path}:2 throughput.events_per_s_samples") and "skipped" in notes[0]
    assert notes[-1] == f"{path}: skipped 22 bad lines of 23"
    for name, r in crafted.items():  # and each alone: one note, naming its field
        one = tmp_path / "one.jsonl"
        one.write_text(_as_line(r) + "\n" + _as_line(good) + "\n")
        recs, ns = read_records(one)
        assert recs == [good] and ns[0].startswith(f"{one}:1 ") and ns[1:] == [f"{one}: skipped 1 bad line of 2"], \
            (name, ns)


@pytest.mark.parametrize("command", ["report", "compare"])
def test_crafted_results_alone_are_one_line_and_exit_2(real_results, tmp_path, command):
    for name, r in list(_crafted(_result(real_results)).items())[::3]:
        path = tmp_path / "bad.jsonl"
        path.write_text(_as_line(r) + "\n")
        argv = ["report", str(path), "--out", str(tmp_path / "rep")] if command == "report" else \
            ["compare", str(path), str(real_results)]
        p = _shmrss(argv)
        _one_line_error(p)  # "holds no finished ..." after the note naming the field
        assert f"{path}:1 " in p.stderr or command == "compare", (name, p.stderr)


def test_a_file_of_empty_objects_is_refused_quickly_in_little_memory(tmp_path):
    path = tmp_path / "empty-objects.jsonl"
    path.write_bytes(b"{}\n" * (4 << 20))  # 12 MiB of {} lines
    code = textwrap.dedent(f"""
        import time
        from shmrss.results_file import InputError, read_records
        t = time.perf_counter()
        try:
            read_records({str(path)!r})
        except InputError as e:
            print("refused:", e)
        hwm = next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
        print(time.perf_counter() - t, hwm)  # VmHWM: ru_maxrss would keep pytest's, from before exec
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    said, numbers = p.stdout.splitlines()
    seconds, max_rss_kib = map(float, numbers.split())
    assert "none of its first 1000 lines is a shmrss result" in said
    assert seconds < 2 and max_rss_kib < 200 * 1024, numbers


def test_a_results_file_is_read_as_a_stream(real_results, tmp_path):
    """Memory follows what is kept, not the file: 2,000 skipped lines of 20 kB cost no more than a few."""
    good, bad = _result(real_results), _crafted(_result(real_results))["cpus a string"]
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        f.write(_as_line(good) + "\n")
        line = _as_line(bad) + "\n"
        for _ in range(2000):
            f.write(line)
    import tracemalloc

    from shmrss.results_file import read_records

    tracemalloc.start()
    records, notes = read_records(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(records) == 1 and notes[-1].endswith("skipped 2000 bad lines of 2001")
    assert peak < 20 * len(line) + 8 * path.stat().st_size // 2000 * 50, peak  # a few lines' worth, not the file


@pytest.mark.parametrize("version,needle", [
    (99, "written by a newer shmrss (results schema_version 99; this one reads up to 1)"),
    ("banana", 'schema_version "banana" is not a results schema version'),
    (True, "schema_version true is not"), (0, "schema_version 0 is not"),
])
def test_schema_version_newer_or_nonsense_is_refused(real_results, tmp_path, version, needle):
    doc = json.loads(real_results.read_text())
    doc["schema_version"] = version
    path = tmp_path / "v.json"
    path.write_text(json.dumps(doc, indent=1))
    p = _shmrss(["report", str(path), "--out", str(tmp_path / "rep")])
    assert needle in _one_line_error(p)


def test_duplicate_keys_are_refused(real_results, tmp_path):
    from shmrss.results_file import read_records

    line = _as_line(_result(real_results))
    dup = '{"design": "percpu", ' + line[1:]  # "design" twice: json.loads would keep the last silently
    path = tmp_path / "dup.jsonl"
    path.write_text(dup + "\n" + line + "\n")
    records, notes = read_records(path)
    assert len(records) == 1 and notes[0] == f'{path}:1 has the key "design" twice; skipped'
    doc = tmp_path / "dup.json"
    doc.write_text('{\n"schema_version": 1, "schema_version": 1, "results": []}\n')
    p = _shmrss(["report", str(doc), "--out", str(tmp_path / "rep")])
    assert 'has the key "schema_version" twice' in _one_line_error(p)


def test_a_truncated_run_document_is_refused_with_its_reason(real_results, tmp_path):
    path = tmp_path / "cut.json"
    path.write_bytes(real_results.read_bytes()[:4096])  # what --json - left on a full disk
    p = _shmrss(["report", str(path), "--out", str(tmp_path / "rep")])
    assert "(one JSON document) is cut short (an interrupted write)" in _one_line_error(p)


def test_real_results_still_read(real_results, tmp_path):
    from shmrss.results_file import read_records

    records, notes = read_records(real_results)
    assert len(records) == 1 and notes == []
    lines = tmp_path / "lines.jsonl"
    lines.write_text(_as_line(records[0]) + "\n")
    assert read_records(lines) == (records, [])


# ================================================================= 7. a killed or hung-up sweep leaves no orphan
def _sweep_with_a_running_point(tmp_path: Path):
    """A sweep whose one point runs 30 s, its TMPDIR in tmp_path: (the sweep, its `shmrss run` child)."""
    import psutil

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    sweep = subprocess.Popen([*SHMRSS, "sweep", "--design", "atomic", "--cpus", "1", "--duration", "30",
                              "--no-calibrate", "--no-reader", "--out", str(tmp_path / "sw.jsonl")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    import time

    from shmrss.segment import PREFIX, SHM_DIR, owner_pid

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        kids = psutil.Process(sweep.pid).children()
        if kids and any(tmpdir.glob("shmrss-sweep-*")):
            # measuring once the point's run has its segment and its CPUs (a loaded host may take seconds
            # to compile or start: a fixed sleep then interrupted it before it measured anything)
            ours = [n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX) and owner_pid(n) == kids[0].pid]
            if ours and kids[0].children():
                time.sleep(1.5)
                return sweep, kids[0], env, tmpdir
        time.sleep(0.1)
    sweep.kill()
    raise AssertionError("the sweep's point started measuring in no 90 s")


def _gone(proc, timeout: float = 30) -> bool:
    import psutil

    try:
        proc.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        return False
    return True


def test_kill_9_of_a_sweep_takes_its_running_point_with_it(tmp_path):
    sweep, child, env, tmpdir = _sweep_with_a_running_point(tmp_path)
    sweep.kill()
    sweep.wait()
    assert _gone(child), "the point's shmrss run outlived its sweep"
    assert list(tmpdir.glob("shmrss-sweep-*"))  # a kill -9 cannot remove it: the next sweep does
    p = subprocess.run([*SHMRSS, "sweep", "--design", "atomic", "--cpus", "1", "--duration", "30", "--dry-run",
                        "--out", str(tmp_path / "sw.jsonl")], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "left by a sweep that was killed" in p.stderr and not list(tmpdir.glob("shmrss-sweep-*"))


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGQUIT"])
def test_hup_and_quit_of_a_sweep_are_handled_like_term(tmp_path, sig):
    import signal

    sweep, child, env, tmpdir = _sweep_with_a_running_point(tmp_path)
    sweep.send_signal(getattr(signal, sig))
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + getattr(signal, sig), err
    assert _gone(child, 60) and not list(tmpdir.glob("shmrss-sweep-*"))
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    line = json.loads((tmp_path / "sw.jsonl").read_text().splitlines()[-1])
    assert line["sweep"]["status"] == "partial"  # what the point measured is kept


# ================================================================= 8. --fault-pages checked against the duration
def _spec_refusal(*argv: str) -> str | None:
    from shmrss.cli import build_parser
    from shmrss.errors import UsageError
    from shmrss.runspec import RunSpec

    try:
        RunSpec.from_args(build_parser().parse_args(["run", "--cpus", "1", "--design", "atomic", "--no-calibrate",
                                                     *argv]), None)
    except UsageError as e:
        return str(e)
    return None


@pytest.mark.parametrize("pages,duration", [("2048", "0.3"), ("262144", "0.3"), ("4096", "86400"), ("2048", "5")])
def test_large_faults_in_a_short_run_are_accepted(pages, duration):
    assert _spec_refusal("--fault-pages", pages, "--duration", duration) is None


def test_overflow_is_checked_against_the_requested_duration():
    why = _spec_refusal("--fault-pages", "262144", "--duration", "5000")
    assert why and "in a run of up to 10,000 s (the --duration" in why and "shorter --duration" in why


def test_the_bound_follows_the_duration_with_room_to_start_and_stop():
    from shmrss.workload import LONGEST_RUN_S, run_bound_s

    assert run_bound_s(0.3) == 60.3 and run_bound_s(5000) == 10000 and run_bound_s(10 * 86400) == LONGEST_RUN_S


# ================================================================= 9. shards across hosts of different sizes
def _topo(ncores: int):
    from shmrss.topology import Topology

    cpus = tuple(range(ncores))
    return Topology(online=cpus, usable=cpus, cores=tuple((c,) for c in cpus), llc_groups=(cpus,),
                    numa_nodes=(cpus,), node_ids=(0,), possible=ncores, cache_line=64, quota_cpus=None,
                    smt_active=False, model="test")


def test_a_shard_without_cpus_is_refused(tmp_path):
    p = _shmrss(["sweep", "--design", "atomic", "--shard", "0/2", "--dry-run", "--out", str(tmp_path / "s.jsonl")])
    assert "--shard needs --cpus" in _one_line_error(p)


def test_the_plan_of_explicit_cpus_is_the_same_on_every_host():
    from shmrss.cli import build_parser
    from shmrss.sweep import plan_digest, shard_of
    from shmrss.sweep_plan import plan_points

    argv = ["sweep", "--design", "atomic,percpu", "--cpus", "1,2", "--oversubscribe", "--out", "x.jsonl"]
    plans = [plan_points(build_parser().parse_args(argv), _topo(n))[0] for n in (1, 2, 8)]
    assert len({plan_digest(p) for p in plans}) == 1
    def shard(points):  # what the host fills in (oversubscribed, the cache line) aside
        return [{f: v for f, v in q.key.items() if f not in ("oversubscribed", "line")} for q in shard_of(points, (1, 2))]

    assert all(shard(p) == shard(plans[0]) for p in plans) and len(shard(plans[0])) == len(plans[0]) // 2


def test_report_says_when_a_shard_is_missing(tmp_path):
    out = tmp_path / "shard0.jsonl"
    p = _shmrss(["sweep", "--design", "atomic,percpu", "--cpus", "1", "--duration", "0.2", "--no-calibrate",
                 "--no-reader", "--repeat", "1", "--shard", "0/2", "--out", str(out)])
    assert p.returncode == 0, p.stderr
    meta = json.loads(out.read_text())["sweep"]
    assert meta["plan_points"] == 2 and len(meta["plan"]) == 12
    p = _shmrss(["report", str(out), "--out", str(tmp_path / "rep")])
    assert p.returncode == 0, p.stderr
    assert f"sweep plan {meta['plan']}: the files hold 1 of its 2 points (a shard missing" in p.stderr


def test_a_document_laid_out_by_hand_and_a_first_line_cut_by_a_crash(real_results, tmp_path):
    from shmrss.results_file import read_records

    r = _result(real_results)
    doc = tmp_path / "hand.json"
    doc.write_text('{"schema_version": 1,\n "results": ' + json.dumps([r, r]) + "}\n")
    assert read_records(doc) == ([r, r], [])
    cut = tmp_path / "cut.jsonl"
    cut.write_text(_as_line(r)[:300] + "\n" + _as_line(r) + "\n")
    records, notes = read_records(cut)
    assert records == [r] and notes[0] == f"{cut}:1 is cut short (an interrupted write); skipped"
