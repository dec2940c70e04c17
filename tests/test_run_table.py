"""The default run table fits 100 columns for up to 3 designs (metrics as rows); --wide is today's full table;
--repeat N runs the designs interleaved and the table shows mean ± stdev with pyperf's unstable mark."""

from __future__ import annotations

import copy
import io

import pytest
from rich.console import Console

from results_schema import load_run_json

from shmrss import result, run_table
from shmrss.cli import main


def _text(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "r.json"
    assert main(["run", "--design", "atomic,percpu", "--cpus", "1", "--duration", "0.5", "--no-calibrate",
                 "--no-reader", "--repeat", "2", "--json", str(path)]) == 0
    return load_run_json(path)


def test_repeats_are_interleaved_each_a_result(repeated):
    assert [r["design"] for r in repeated] == ["atomic", "percpu", "atomic", "percpu"]


def test_default_table_fits_100_columns_for_3_designs(repeated):
    third = [copy.deepcopy(r) for r in repeated if r["design"] == "atomic"]
    for r in third:
        r["design"] = "single"
    text = _text(run_table.table(repeated + third), 100)
    assert _widest(text) <= 100
    for design in ("atomic", "percpu", "single"):
        assert design in text
    assert "M events/s" in text and "±" in text and "2 repeats" in text
    assert "…" not in text  # nothing cut


def test_wide_is_the_full_table(repeated):
    assert _widest(_text(result.table(repeated), 250)) > 100


def test_an_unstable_column_is_marked():
    rs = [{"throughput": {"events_per_s": v}} for v in (100e6, 300e6)]
    assert run_table._number(rs, run_table.NUMBERS[0][1], ".1f").endswith(" !")


def test_repeat_0_is_refused(capsys):
    assert main(["run", "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err
