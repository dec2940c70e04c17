"""``shmrss show RESULTS`` prints ``shmrss run``'s table again from a run --json file or a sweep's results file
(issue 18, item 6), as table, markdown or plain; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from fake_results import result as fake, table_rows, write_run_json

from shmrss import run_table
from shmrss.cli import main

NAMES = ["atomic", "split", "percpu", "pcpcache", "single", "single-atomic", "pernode", "tree"]


def _show(argv, capsys) -> tuple[int, str, str]:
    code = main(["show", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_the_run_table_of_a_run_json(tmp_path, capsys):
    rs = [fake("percpu", 200e6), fake("atomic", 100e6), fake("percpu", 210e6), fake("atomic", 105e6)]
    code, out, _ = _show([str(write_run_json(tmp_path / "r.json", rs))], capsys)
    assert code == 0
    names, body = run_table.rows(rs)
    assert table_rows(out) == [["", *names]] + [[n, *cells] for n, cells in body]
    assert out.splitlines()[0] == run_table.BETTER
    assert "percpu ran 2.00 ± 0.00 x faster than atomic in events/s (mean ± sd over 2 repeats: too few to judge)" in out


def test_show_reprints_what_a_real_run_printed(tmp_path):
    """A piped ``shmrss run --json`` and ``shmrss show`` of its file print the same table and lines."""
    def piped(*argv):
        with open(tmp_path / "out.txt", "w") as f:
            p = subprocess.run([sys.executable, "-m", "shmrss", *argv], stdout=f, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        return (tmp_path / "out.txt").read_text()

    ran = piped("run", "--design", "atomic,percpu", "--cpus", "1", "--duration", "0.3", "--no-calibrate",
                "--no-reader", "--json", "r.json")
    assert piped("show", "r.json") == ran


@pytest.mark.parametrize("fmt", ["markdown", "plain"])
def test_formats_hold_every_cell_on_one_line(tmp_path, capsys, fmt):
    rs = [fake(n, 1e8 * (i + 1)) for i, n in enumerate(NAMES[:3])]
    code, out, _ = _show([str(write_run_json(tmp_path / "r.json", rs)), "--format", fmt], capsys)
    assert code == 0
    names, body = run_table.rows(rs)
    lines = out.splitlines()
    assert lines[0] == run_table.BETTER
    assert not set("┏┃│└") & set(out)
    for name, cells in body:
        (line,) = [x for x in lines if x.startswith(("| " + name + " |", name + "  "))]
        if fmt == "markdown":
            assert line == "| " + " | ".join([name, *cells]) + " |"
        else:  # columns apart by at least two spaces; a cell holds single spaces only
            assert re.split(r" {2,}", line.strip()) == [name, *cells]
    if fmt == "markdown":
        assert "|---|---:|---:|---:|" in out
    assert "percpu ran 3.00 x faster than atomic in events/s (one run each: no spread, not a verdict)" in out


def test_a_sweep_file_is_one_table_per_point_and_failed_lines_are_said(tmp_path, capsys):
    lines = []
    for rep in range(2):
        for mode in ("processes", "threads"):
            for d in ("atomic", "percpu"):
                r = fake(d, 100e6 if d == "atomic" else 150e6, mode=mode)
                r["sweep"] = {"key": {"design": d, "mode": mode, "repeat": rep}, "status": "ok"}
                lines.append(r)
    redone = fake("percpu", 999e6, mode="threads")  # a line written again for the same point: the last counts
    redone["sweep"] = {"key": {"design": "percpu", "mode": "threads", "repeat": 1}, "status": "ok"}
    lines.append(redone)
    lines.append({"sweep": {"key": {"design": "tree", "mode": "threads", "repeat": 0}, "status": "failed"}})
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, out, err = _show([str(path), "--format", "plain"], capsys)
    assert code == 0
    assert "page_fault1 processes, 2 CPUs, testhost 6.1.0-test" in out
    assert "page_fault1 threads, 2 CPUs, testhost 6.1.0-test" in out
    assert out.count(run_table.BETTER) == 2
    assert "percpu ran 1.50 ± 0.00 x faster than atomic in events/s (mean ± sd over 2 repeats: too few to judge)" in out
    assert "percpu ran 5.7" in out  # the threads table took the last line of the redone point
    assert "1 line without a result (a failed sweep point) not shown" in err


def test_markup_in_a_name_is_shown_as_text(tmp_path, capsys):
    rs = [fake("[/x]"), fake("[bold]percpu")]
    code, out, _ = _show([str(write_run_json(tmp_path / "r.json", rs))], capsys)
    assert code == 0 and "[/x]" in out and "[bold]percpu" in out


def test_values_of_the_wrong_type_are_a_dash_or_a_one_line_refusal(tmp_path, capsys):
    """A value the schema allows but the table cannot use (a missing bound) is a dash; a value of the wrong
    type (events/s "fast", an integer beyond 64 bits) is refused on read, one line naming the field, exit 2."""
    r = fake("atomic")
    r["accuracy"]["approx_bound"] = None
    code, out, _ = _show([str(write_run_json(tmp_path / "ok.json", [r]))], capsys)
    assert code == 0
    rows = dict((row[0], row[1:]) for row in table_rows(out))
    assert rows["approx err max/bound"] == ["-"]
    r["throughput"]["events_per_s"] = "fast"
    r["throughput"]["ns_per_event"] = 10 ** 400
    code, out, err = _show([str(write_run_json(tmp_path / "r.json", [r]))], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err and any("events_per_s" in ln or "ns_per_event" in ln
                                                         for ln in lines), err


def test_piped_show_of_eight_designs_folds_no_cell(tmp_path):
    rs = [fake(n, 123456789.0 * (i + 1), samples=[1e8, 3e8], err=12345, bound=67890) for i, n in enumerate(NAMES)]
    path = write_run_json(tmp_path / "r.json", rs * 2)
    with open(tmp_path / "out.txt", "w") as f:
        p = subprocess.run([sys.executable, "-m", "shmrss", "show", str(path)], stdout=f, stderr=subprocess.PIPE,
                           text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    names, body = run_table.rows(rs * 2)
    assert table_rows((tmp_path / "out.txt").read_text()) == [["", *names]] + [[n, *c] for n, c in body]


def _one_line_exit_2(argv, capsys, match: str):
    code, out, err = _show(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("shmrss: error: ") and match in err, err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    _one_line_exit_2([str(tmp_path / "nosuch.json")], capsys, "no such file")
    _one_line_exit_2([str(tmp_path)], capsys, "directory")
    (tmp_path / "text.txt").write_text("hello\n")
    _one_line_exit_2([str(tmp_path / "text.txt")], capsys, "not JSON")
    (tmp_path / "empty.json").write_text("")
    _one_line_exit_2([str(tmp_path / "empty.json")], capsys, "holds no shmrss result")
    (tmp_path / "other.json").write_text('{"a": 1}\n')
    _one_line_exit_2([str(tmp_path / "other.json")], capsys, "holds no shmrss result")
    life = fake("percpu")
    del life["throughput"]
    life["lifecycle"] = {"mm_per_s": 1.0}  # a fork/exit result missing most of its fields
    _one_line_exit_2([str(write_run_json(tmp_path / "life.json", [life]))], capsys, "cannot show")
    _one_line_exit_2([str(write_run_json(tmp_path / "r.json", [fake()])), "--format", "html"], capsys,
                     "--format")
    _one_line_exit_2([], capsys, "RESULTS")


def test_show_help_names_the_formats(capsys):
    assert main(["show", "--help"]) == 0
    out = capsys.readouterr().out
    assert "markdown" in out and "plain" in out and "RESULTS" in out
