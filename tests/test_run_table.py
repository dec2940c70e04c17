"""The default run table: metrics as rows, designs as columns, fits 100 columns for 3 designs; every row of a
--repeat N run is over all repeats; a first line says what is better and "A ran R ± S x faster than B" lines
follow; piped, it is as wide as it needs and no cell is ever folded (issue 18, item 3). --wide is the full
table; --repeat N runs the designs interleaved."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from rich.console import Console

from fake_results import result as fake, table_rows
from results_schema import load_run_json

from shmrss import console, result, run_table, speedup
from shmrss.cli import _setup_logging, main

ROOT = Path(__file__).resolve().parent.parent


def _text(renderable, width: int) -> str:
    c = Console(width=width, record=True, file=io.StringIO())
    c.print(renderable)
    return c.export_text()


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _cell(results: list[dict], row: str) -> list[str]:
    return dict(run_table.rows(results)[1])[row]


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """A real ``shmrss run`` of 3 designs x 2 repeats with stdout and stderr going to files (not a terminal)."""
    d = tmp_path_factory.mktemp("rep")
    with open(d / "out.txt", "w") as out, open(d / "err.txt", "w") as err:
        p = subprocess.run([sys.executable, "-m", "shmrss", "run", "--design", "atomic,percpu,single", "--cpus", "1",
                            "--duration", "0.5", "--no-calibrate", "--repeat", "2", "--json", str(d / "r.json")],
                           stdout=out, stderr=err, cwd=d, timeout=900, env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 0, (d / "err.txt").read_text()[-3000:]
    return d


def test_repeats_are_interleaved_each_a_result(piped_run):
    assert [r["design"] for r in load_run_json(piped_run / "r.json")] == ["atomic", "percpu", "single"] * 2


def test_a_piped_run_folds_no_cell_and_fits_100_columns(piped_run):
    """COLUMNS=80 as a pipe sees it: the table is printed as wide as it needs, every row on one line."""
    text = (piped_run / "out.txt").read_text()
    results = load_run_json(piped_run / "r.json")
    names, body = run_table.rows(results)
    assert table_rows(text) == [["", *names]] + [[name, *cells] for name, cells in body]
    assert _widest("\n".join(line for line in text.splitlines() if line[:1] in "┏┃┡│└")) <= 100
    assert text.splitlines()[0] == run_table.BETTER
    assert "ran" in text and "x faster than" in text and "over 2 repeats" in text


def test_piped_stderr_lines_are_never_folded(piped_run):
    lines = [line for line in (piped_run / "err.txt").read_text().splitlines() if line]  # the bar leaves a blank
    assert lines
    for line in lines:
        assert line.startswith(("INFO:", "WARNING:", "ERROR:", "DEBUG:")), f"a folded line: {line!r}"


def test_a_log_line_longer_than_the_console_is_one_line():
    out = io.StringIO()
    _setup_logging(False, Console(file=out, width=40))
    try:
        logger.warning("word " * 30)
    finally:
        logger.remove()
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("WARNING: word word")


def test_default_table_fits_100_columns_for_3_designs(piped_run):
    repeated = load_run_json(piped_run / "r.json")
    third = [copy.deepcopy(r) for r in repeated if r["design"] == "atomic"]
    for r in third:
        r["design"] = "split"
    text = _text(run_table.table(repeated + third), 100)
    assert _widest(text) <= 100
    for design in ("atomic", "percpu", "single", "split"):
        assert design in text
    assert "M events/s" in text and "±" in text
    assert "…" not in text  # nothing cut


def test_wide_is_the_full_table(piped_run):
    assert _widest(_text(result.table(load_run_json(piped_run / "r.json")), 250)) > 100


def test_an_unstable_column_is_marked():
    rs = [{"throughput": {"events_per_s": v}} for v in (100e6, 300e6)]
    assert run_table._number(rs, run_table.NUMBERS[0][1], ".1f").endswith(" !")


def test_every_row_is_over_all_repeats():
    reps = [fake("percpu", 200e6, samples=[190e6, 210e6], err=20, ratio=0.99, approx_ns=(10, 100),
                 precise_ns=(20, 300)),
            fake("percpu", 220e6, samples=[150e6, 230e6, 240e6], err=31, ratio=0.95, approx_ns=(30, 500),
                 precise_ns=(40, 100), precise_ok=False, failed=("zero_at_teardown",))]
    assert _cell(reps, "repeats") == ["2"]
    assert _cell(reps, "M events/s") == ["210.0 ± 14.1 !"]
    assert _cell(reps, "M ev/s (1 s) min/med/max") == ["150.0/210.0/240.0"]  # every repeat's per-second rates
    assert _cell(reps, "approx err max/bound") == ["31/31"]  # the worst repeat
    assert _cell(reps, "min approx / truth") == ["0.950"]
    assert _cell(reps, "precise = truth") == ["NO (1 of 2)"]
    assert _cell(reps, "approx read ns med/p99") == ["20/300"]  # median over the repeats
    assert _cell(reps, "precise read ns med/p99") == ["30/200"]
    assert _cell(reps, "invariants") == ["FAILED: zero_at_teardown"]
    assert "repeats" not in dict(run_table.rows(reps[:1])[1])  # one run: no repeats row


def test_a_partial_or_unmeasured_repeat_is_said():
    reps = [fake("atomic"), fake("atomic", partial=True, timings_valid=False)]
    assert _cell(reps, "complete") == ["PARTIAL (1 of 2)"]
    assert _cell(reps, "timings valid") == ["NO (1 of 2)"]
    assert "complete" not in dict(run_table.rows(reps[:1])[1])


def test_the_first_line_says_what_is_better_and_the_notes_what_repeats_are():
    v = run_table.view([fake("percpu"), fake("atomic"), fake("percpu"), fake("atomic")])
    assert v.head == [run_table.BETTER] and "lower ns/event" in v.head[0] and "within its bound" in v.head[0]
    assert v.notes[0].startswith("over 2 repeats: mean ± standard deviation")


def test_the_faster_line_is_over_repeats_paired_by_repeat():
    rs = [fake("atomic", 100e6), fake("percpu", 200e6), fake("atomic", 100e6), fake("percpu", 210e6),
          fake("atomic", 100e6), fake("percpu", 190e6)]
    assert run_table.faster_lines(run_table.columns(rs)) == [
        "percpu ran 2.0 ± 0.1 x faster than atomic in events/s (mean ± sd over 3 repeats)"]


def test_one_run_each_says_it_is_one_run():
    lines = run_table.faster_lines(run_table.columns([fake("atomic", 100e6), fake("tree", 161e6),
                                                      fake("percpu", 131e6)]))
    assert lines == ["tree ran 1.61 x faster than atomic in events/s (one run each: no spread, not a verdict)",
                     "tree ran 1.23 x faster than percpu in events/s (one run each: no spread, not a verdict)"][::-1]


def test_a_faster_line_says_when_timings_are_not_valid():
    (line,) = run_table.faster_lines(run_table.columns([fake("atomic", 100e6), fake("split", 150e6,
                                                                                     timings_valid=False)]))
    assert line.endswith("(one run each: no spread, not a verdict) (timings of split not valid)")


def test_speedup_ratios():
    assert speedup.paired([2, 4], [1, 1, 1]) == speedup.Ratio(3.0, pytest.approx(1.41421356), 2)
    assert speedup.paired([None], [1]) is None and speedup.paired([1], [0]) is None
    r = speedup.unpaired([10, 10], [5, 5])
    assert (r.mean, r.stdev, r.n) == (2.0, 0.0, 2)
    r = speedup.unpaired([10.0, 12.0], [5.0])
    assert r.mean == pytest.approx(2.2) and r.stdev == pytest.approx(2.2 * (2 ** 0.5 / 11))
    assert speedup.sentence("a", "b", speedup.Ratio(0.5, 0.01, 3)) == \
        "a ran 2.00 ± 0.04 x slower than b (mean ± sd over 3 repeats)"
    assert speedup.sentence("a", "b", speedup.Ratio(1.5, 0.1, 2), "events/s", "runs a side") == \
        "a ran 1.5 ± 0.1 x faster than b in events/s (mean ± sd over 2 runs a side: too few to judge)"


def test_one_function_words_the_ratio_for_the_run_table_and_compare():
    """speedup.ran: the inverse below 1, slower/faster by which way is better, decimals from the spread."""
    assert speedup.ran("a", "b", 2.0, 0.3, True) == "a ran 2.0 ± 0.3 x faster than b"
    assert speedup.ran("a", "b", 0.5, 0.001, True) == "a ran 2.000 ± 0.004 x slower than b"
    assert speedup.ran("a", "b", 1.31, 0.0, False, higher_is_better=False) == "a ran 1.31 x slower than b"
    assert speedup.ran("a", "b", 0.8, 0.0, False, higher_is_better=False) == "a ran 1.25 x faster than b"
    assert speedup.ran("a", "b", 0.999, 0.0, False) == "a ran as fast as b"
    assert speedup.sentence("a", "b", speedup.Ratio(1.001, 0.0, 1)).startswith("a ran as fast as b (one run")


def test_piped_console_is_as_wide_as_eight_designs_need(capsys):
    """--design all: 8 columns of long cells are wider than 200 columns; piped, none is folded."""
    names = ["atomic", "split", "percpu", "pcpcache", "single", "single-atomic", "pernode", "tree"]
    rs = [fake(n, 123456789.0 * (i + 1), samples=[1e8, 3e8 * (i + 1)], err=12345, bound=67890,
               approx_ns=(12345, 678901), failed=("design_state_consistent",)) for i, n in enumerate(names)]
    rs += [fake(n, 1e8, samples=[2e8]) for n in names]
    v = run_table.view(rs)
    c = console.fitted(v.table)  # pytest captures stdout: not a terminal
    assert c.width == console.needed_width(v.table) > 200
    run_table.print_view(c, v)
    header, body = run_table.rows(rs)
    assert table_rows(capsys.readouterr().out) == [["", *header]] + [[n, *cells] for n, cells in body]


def test_repeat_0_is_refused(capsys):
    assert main(["run", "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err
