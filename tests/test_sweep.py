"""shmrss sweep: the matrix and its keys, resume without redoing finished points, SIGINT mid-way then resume,
a failed invariant kept as a measured point, a timed-out point not counted as done, bad input exit 2."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmrss.cli import build_parser, main
from shmrss.results_file import Appender, InputError, canonical, finished_keys, read_records
from shmrss.sweep_plan import default_cpu_counts, plan_points
from shmrss.topology import read_topology
from results_schema import validate_result

REPO = Path(__file__).resolve().parents[1]
TOPO = read_topology()
NCORES = len(TOPO.physical_cpus())
OVER = ["--oversubscribe"] if NCORES < 2 else []
TINY = ["--design", "atomic,percpu", "--cpus", "1,2", "--no-calibrate", *OVER]


def sweep_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shmrss.cli", "sweep", "--out", str(out), *extra]


def run_sweep(out: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # the repo as cwd: the children import this tree's shmrss, as the sweep does
    return subprocess.run(sweep_cmd(out, *extra), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def lines(path: Path) -> list[dict]:
    """The sweep's lines; each that carries a result is checked against the shipped schema."""
    got = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    for line in got:
        if "design" in line:
            validate_result({k: v for k, v in line.items() if k != "sweep"})
    return got


def test_tiny_sweep_writes_every_point_then_skips_them_all(tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    p = run_sweep(out, *TINY, "--repeat", "2", "--duration", "0.1")
    assert p.returncode == 0, p.stderr
    recs = lines(out)
    assert len(recs) == 8
    keys = [r["sweep"]["key"] for r in recs]
    assert len({canonical(k) for k in keys}) == 8
    assert {(k["design"], k["cpus"], k["repeat"]) for k in keys} == \
        set(itertools.product(("atomic", "percpu"), (1, 2), (0, 1)))
    for r in recs:
        assert r["sweep"]["status"] == "ok"
        assert r["design"] == r["sweep"]["key"]["design"]
        assert r["params"]["cpus"] == r["sweep"]["key"]["cpus"]
        assert r["throughput"]["events_per_s"] > 0
        assert all(r["invariants"].values())
    # one pass per repeat: every combination once before any repeats
    assert [k["repeat"] for k in keys] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert "[8/8]" in p.stderr

    assert main(["sweep", "--out", str(out), *TINY, "--repeat", "2", "--duration", "0.1"]) == 0
    assert "skipping 8 of 8" in capsys.readouterr().err
    assert len(lines(out)) == 8

    # another duration is another point: nothing is skipped
    assert main(["sweep", "--out", str(out), *TINY, "--repeat", "2", "--duration", "0.1", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done  ") == 8
    assert main(["sweep", "--out", str(out), *TINY, "--repeat", "2", "--duration", "0.4", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.count("to run") == 8 and "done  " not in dry

    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    png = tmp_path / "rep" / "scaling_events_per_s.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| atomic | 2 | 2 | 2 |" in md


def test_sigint_mid_sweep_then_resume_runs_exactly_the_missing_points(tmp_path):
    out = tmp_path / "results.jsonl"
    args = [*TINY, "--repeat", "1", "--duration", "0.5"]
    proc = subprocess.Popen(sweep_cmd(out, *args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.6)  # into the next point's measurement
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    before = lines(out)
    statuses = [r["sweep"]["status"] for r in before]
    assert 1 <= len(before) < 4
    assert statuses.count("ok") >= 1
    assert set(statuses) <= {"ok", "partial"}  # the interrupted point: partial, or not recorded at all
    for r in before:
        if r["sweep"]["status"] == "partial":
            assert r["partial"] is True
    done_before = finished_keys(before)

    again = run_sweep(out, *args)
    assert again.returncode == 0, again.stderr
    assert f"skipping {len(done_before)} of 4" in again.stderr
    after = lines(out)
    new = after[len(before):]
    assert len(new) == 4 - len(done_before)  # exactly the missing points
    assert not done_before & {canonical(r["sweep"]["key"]) for r in new}
    fin = [canonical(r["sweep"]["key"]) for r in after if r["sweep"]["status"] == "ok"]
    assert len(fin) == len(set(fin)) == 4  # every point once, none twice


def test_failed_invariant_is_a_measured_point_kept_and_not_rerun(tmp_path):
    out = tmp_path / "results.jsonl"
    args = ["--workload", "fork_exit", "--lifecycle", "upstream", "--leak-every", "3", "--cpus", "1",
            "--repeat", "1", "--duration", "0.3", "--no-calibrate"]
    p = run_sweep(out, *args)
    assert p.returncode == 1, p.stderr
    assert "INVARIANT FAILED" in p.stderr
    (rec,) = lines(out)
    assert rec["sweep"]["status"] == "invariant_failed"
    assert rec["invariants"]["zero_at_teardown"] is False
    assert rec["lifecycle"]["bad_rss_counter_state"] > 0
    again = run_sweep(out, *args)
    assert again.returncode == 0 and "skipping 1 of 1" in again.stderr


def test_a_point_past_its_time_limit_is_not_done(tmp_path):
    out = tmp_path / "results.jsonl"
    p = run_sweep(out, "--design", "atomic", "--cpus", "1", "--repeat", "1", "--duration", "30", "--timeout", "1.5",
                  "--no-calibrate")
    assert p.returncode == 1, p.stderr
    (rec,) = lines(out)
    assert rec["sweep"]["status"] in ("partial", "failed")
    assert rec["sweep"]["wall_s"] < 25
    assert not finished_keys([rec])


def test_a_point_refused_by_shmrss_run_is_not_retried_in_later_repeats(tmp_path, capsys, monkeypatch):
    # what only the run can refuse (the segment does not fit this host) ends its point with exit 2
    from shmrss import sweep_child

    calls = []

    def refused(argv, fwd, timeout_s, verbose):
        calls.append(argv)
        return sweep_child.Outcome("failed", 2, 0.1, None, "shmrss: error: segment would need 12.2 GiB")

    monkeypatch.setattr(sweep_child, "run_point", refused)
    out = tmp_path / "r.jsonl"
    code = main(["sweep", "--out", str(out), "--design", "atomic", "--cpus", "1", "--repeat", "3",
                 "--duration", "0.2", "--no-calibrate"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(calls) == 1 and err.count("not run, shmrss run refused these options") == 2
    (rec,) = lines(out)
    assert rec["sweep"]["status"] == "failed" and "12.2 GiB" in rec["sweep"]["error"]


def args_of(*argv: str):
    return build_parser().parse_args(["sweep", *argv])


def test_matrix_keys_and_defaults():
    assert default_cpu_counts(1) == [1]
    assert default_cpu_counts(2) == [1, 2]
    assert default_cpu_counts(6) == [1, 2, 4, 6]
    assert default_cpu_counts(8) == [1, 2, 4, 8]
    pts, _ = plan_points(args_of("--design", "atomic", "--repeat", "1"), TOPO)
    assert [p.key["cpus"] for p in pts] == default_cpu_counts(NCORES)
    # a workload with a mode of its own runs once, not once per --mode
    pts, _ = plan_points(args_of("--workload", "mixed", "--mode", "processes,threads", "--design", "atomic",
                                 "--cpus", "1", "--repeat", "1"), TOPO)
    assert len(pts) == 1 and pts[0].key["mode"] == "mixed"
    pts, _ = plan_points(args_of("--design", "atomic", "--mode", "processes,threads", "--cpus", "1",
                                 "--repeat", "3"), TOPO)
    assert len(pts) == 6 and len({p.id for p in pts}) == 6
    a = plan_points(args_of("--design", "atomic", "--cpus", "1", "--repeat", "1", "--duration", "1"), TOPO)[0][0]
    b = plan_points(args_of("--design", "atomic", "--cpus", "1", "--repeat", "1", "--duration", "2"), TOPO)[0][0]
    c = plan_points(args_of("--design", "atomic", "--cpus", "1", "--repeat", "1", "--duration", "1",
                            "--no-calibrate"), TOPO)[0][0]
    assert a.id != b.id and a.id == c.id  # calibration is embedded, it does not change what is measured
    assert "--json" not in a.argv and a.argv[0] == "run"
    # P below the CPU count is left out, and said so
    pts, notes = plan_points(args_of("--design", "atomic", "--cpus", "1,2", "--possible-cpus", "1,8",
                                     "--repeat", "1", *OVER), TOPO)
    assert sorted((p.key["cpus"], p.key["possible_cpus"]) for p in pts) == [(1, 1), (1, 8), (2, 8)]
    assert any("left out 1 combination" in n for n in notes)
    pts, _ = plan_points(args_of("--workload", "fork_exit", "--lifecycle", "upstream,lazy", "--cpus", "1",
                                 "--repeat", "1"), TOPO)
    assert [(p.key["lifecycle"], p.key["design"]) for p in pts] == [("upstream", "percpu"), ("lazy", "single")]


def test_results_file_tolerates_a_cut_line_and_locks(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"sweep": {"key": {"a": 1}, "status": "ok"}}\n{"sweep": {"key": {"a": 2}, "st')
    recs, notes = read_records(f)
    assert len(recs) == 1 and notes and "cut short" in notes[0]
    ap = Appender(f)
    with pytest.raises(InputError, match="in use"):
        Appender(f)
    ap.append({"sweep": {"key": {"a": 3}, "status": "ok"}})
    ap.close()
    text = f.read_text()
    assert text.splitlines()[-1] == '{"sweep":{"key":{"a":3},"status":"ok"}}'
    recs, notes = read_records(f)  # the cut line, now followed by others, is still skipped
    assert finished_keys(recs) == {canonical({"a": 1}), canonical({"a": 3})} and "cut short" in notes[0]
    f.write_text('not json\n{"a": 1}\n')
    with pytest.raises(InputError, match="not JSON"):
        read_records(f)


def usage_error(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    lns = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lns) == 1 and lns[0].startswith("shmrss: error:"), err
    assert "Traceback" not in err + out
    return lns[0]


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    out = str(tmp_path / "r.jsonl")
    q = ["--out", out, "--duration", "0.2", "--no-calibrate", "--repeat", "1"]
    assert "nosuch" in usage_error(capsys, ["sweep", *q, "--design", "atomic,nosuch"])
    assert "page_fault9" in usage_error(capsys, ["sweep", *q, "--workload", "page_fault9"])
    assert "--oversubscribe" in usage_error(capsys, ["sweep", *q, "--cpus", f"1,{NCORES + 1}"])
    assert "fibers" in usage_error(capsys, ["sweep", *q, "--mode", "processes,fibers"])
    assert "--lifecycle" in usage_error(capsys, ["sweep", *q, "--lifecycle", "upstream"])
    assert "variant" in usage_error(capsys, ["sweep", *q, "--workload", "fork_exit", "--lifecycle", "nope"])
    assert "below" in usage_error(capsys, ["sweep", *q, "--cpus", "2", "--possible-cpus", "1", *OVER])
    assert "--repeat" in usage_error(capsys, ["sweep", *q, "--repeat", "0"])
    assert "--cpus" in usage_error(capsys, ["sweep", *q, "--cpus", "two"])
    # shmrss run's own checks apply to every combination up front
    assert "7 days" in usage_error(capsys, ["sweep", *q[:2], "--duration", "1e308", "--repeat", "1"])
    assert "--read-interval" in usage_error(capsys, ["sweep", *q, "--read-interval", "5000"])
    assert "--tasks" in usage_error(capsys, ["sweep", *q, "--workload", "fork_exit", "--tasks", "4"])
    assert "does not exist" in usage_error(capsys, ["sweep", *q[2:], "--out", str(tmp_path / "no" / "r.jsonl")])
    assert "not a regular file" in usage_error(capsys, ["sweep", *q[2:], "--out", str(tmp_path)])
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello\nworld")
    assert "not a shmrss results file" in usage_error(capsys, ["sweep", *q[2:], "--out", str(garbage)])
    assert garbage.read_text() == "hello\nworld"  # left as it was
    bad_wl = tmp_path / "w.json"
    bad_wl.write_text('{"name": "x", "mms": 1, "tapes": {}, "tasks": []}')
    assert "tapes" in usage_error(capsys, ["sweep", *q, "--workload", str(bad_wl), "--cpus", "1"])
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert "cannot create" in usage_error(capsys, ["sweep", *q[2:], "--out", str(ro / "r.jsonl")])
    assert not (tmp_path / "r.jsonl").exists()  # nothing ran, nothing written


def test_shards_are_disjoint_and_together_the_whole_plan():
    from shmrss.sweep import shard_of

    pts, _ = plan_points(args_of("--design", "atomic,percpu,tree", "--mode", "processes,threads", "--cpus", "1",
                                 "--possible-cpus", "1,4,8", "--repeat", "3"), TOPO)
    for n in (1, 2, 3, 5, 40):
        parts = [shard_of(pts, (k, n)) for k in range(n)]
        ids = [p.id for part in parts for p in part]
        assert sorted(ids) == sorted(p.id for p in pts) and len(set(ids)) == len(ids)
        for part in parts:  # every repeat of a point in the same shard: repeats are never split across hosts
            cells = {canonical({f: v for f, v in p.key.items() if f != "repeat"}) for p in part}
            assert sum(1 for p in part) == 3 * len(cells)


def test_bad_shards_are_refused(capsys, tmp_path):
    q = ["--out", str(tmp_path / "r.jsonl"), "--duration", "0.2", "--no-calibrate", "--repeat", "1"]
    for bad in ("3/2", "2/2", "0/0", "-1/2", "a/b", "1"):
        assert "--shard" in usage_error(capsys, ["sweep", *q, "--shard", bad])
    assert not (tmp_path / "r.jsonl").exists()


def test_the_example_workflow_runs_the_documented_shard_and_gather_commands():
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "sweep.yml").read_text())
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = [s.get("run", "") for s in steps]
    shard_step = next(s for s in steps if "--shard" in s.get("run", ""))
    shard = shard_step["run"]
    gather = next(r for r in runs if r.startswith("shmrss report"))
    doc = (REPO / "docs" / "sweep-report.md").read_text()
    assert "shmrss sweep --design all --cpus 1,2,4,8 --shard" in doc and gather in doc
    assert flow["jobs"]["shard"]["strategy"]["matrix"]["shard"] == [0, 1, 2, 3]
    args = build_parser().parse_args(["sweep", "--design", "all", "--shard", "1/4", "--out", "r.jsonl"])
    assert args.shard == (1, 4) and '--cpus "$CPUS" --shard "$SHARD/$SHARDS"' in shard
    # the inputs reach the script through env:, never pasted into its text
    assert "${{" not in shard and shard_step["env"] == {"DESIGNS": "${{ inputs.designs }}", "CPUS": "${{ inputs.cpus }}",
                                                         "SHARD": "${{ matrix.shard }}"}
