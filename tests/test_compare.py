"""shmrss compare: points matched across sides, every %change with its significance, identities never merged."""

from __future__ import annotations

import io
import json

import pytest

from shmrss import compare, stats
from shmrss.results_file import InputError
from results_schema import load_run_json


def _result(eps_samples, design="percpu", host="a", kernel="6.1", pack=False, label=""):
    mean = sum(eps_samples) / len(eps_samples)
    return {
        "design": design, "workload": "page_fault1", "partial": False,
        "params": {"mode": "threads", "cpus": 2, "possible_cpus": 2, "duration_s": 3, "pack": pack, "label": label},
        "host": {"hostname": host, "kernel": kernel, "cpu_model": "X", "topology": {"usable": [0, 1]}},
        "throughput": {"events_per_s": mean, "ns_per_event": 2e9 / mean, "events_per_s_samples": eps_samples},
        "reads": {"approx_latency_ns": {"median": 10.0}, "precise_latency_ns": {"median": 20.0}},
        "invariants": {"all": True}, "warnings": [],
    }


def _write(tmp_path, name, results):
    p = tmp_path / name
    p.write_text(json.dumps(results))
    return str(p)


def _rows(tmp_path, base, new):
    return compare.compare(compare.load_side(_write(tmp_path, "b.json", base)),
                           [compare.load_side(_write(tmp_path, "n.json", new))])


def _eps(rows):
    return next(r for r in rows if r.metric.name == "events/s")


def test_noise_is_no_difference_shown(tmp_path):
    rows = _rows(tmp_path, [_result([100e6, 102e6, 98e6, 101e6])], [_result([101e6, 99e6, 100e6, 102e6])])
    assert _eps(rows).verdict() == compare.NO_DIFFERENCE
    assert compare.regressions(rows, 0.5) == []


def test_a_real_difference_is_marked_and_fails_a_regression_gate(tmp_path):
    rows = _rows(tmp_path, [_result([200e6, 201e6, 199e6])], [_result([100e6, 101e6, 99e6])])
    row = _eps(rows)
    assert row.sig.significant and row.verdict().startswith("-50.") and row.verdict().endswith("*")
    assert row in compare.regressions(rows, 10)
    assert compare.regressions(rows, 110) == []  # ns/event doubled: +100%


def test_repeats_are_the_samples_when_there_are_several(tmp_path):
    base = [_result([100e6]), _result([104e6]), _result([102e6])]
    rows = _rows(tmp_path, base, [_result([101e6]), _result([103e6]), _result([99e6])])
    assert _eps(rows).base.n == 3 and _eps(rows).new.n == 3


def test_one_point_each_is_compared_and_the_difference_named(tmp_path):
    rows = _rows(tmp_path, [_result([100e6, 101e6, 99e6])], [_result([50e6, 51e6, 49e6], pack=True)])
    assert "differs in: pack" in _eps(rows).point and _eps(rows).sig.significant


def test_a_file_of_two_identities_is_refused(tmp_path):
    path = _write(tmp_path, "mixed.json", [_result([1e6]), _result([1e6], kernel="6.2")])
    with pytest.raises(InputError, match="2 hosts, kernels or labels"):
        compare.load_side(path)


def test_not_results_and_too_few_files_are_refused(tmp_path):
    with pytest.raises(InputError):
        compare.check_files([str(tmp_path / "a.json")])
    with pytest.raises(InputError, match="no finished shmrss result"):
        compare.load_side(_write(tmp_path, "x.json", [{"hello": 1}]))


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_formats_carry_the_verdict(tmp_path, fmt):
    rows = _rows(tmp_path, [_result([100e6, 101e6, 99e6])], [_result([100e6, 100.5e6, 99.5e6])])
    text = compare.render(rows, fmt, "base")
    assert compare.NO_DIFFERENCE in text
    if fmt == "json":
        assert json.loads(text)["schema_version"] == 1


def test_the_rule_is_named(tmp_path):
    rows = _rows(tmp_path, [_result([100e6, 101e6])], [_result([200e6, 201e6])])
    assert _eps(rows).sig.rule == stats.RULE_RANGES
    assert stats.RULE_RANGES in compare.render(rows, "markdown", "base")


# ---- the command line: shmrss compare BASE NEW [NEW...] ----

def _cli(argv, capsys):
    from shmrss.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _one_line_exit_2(argv, capsys, match):
    code, _, err = _cli(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("shmrss: error:") and match in lines[0], err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    good = _write(tmp_path, "good.json", [_result([1e6, 1.1e6])])
    _one_line_exit_2(["compare", good], capsys, "at least one NEW")
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello\n")
    _one_line_exit_2(["compare", good, str(not_json)], capsys, "not a shmrss results file")
    _one_line_exit_2(["compare", good, _write(tmp_path, "x.json", [{"hello": 1}])], capsys, "no finished")
    mixed = _write(tmp_path, "mixed.json", [_result([1e6]), _result([1e6], kernel="6.2")])
    _one_line_exit_2(["compare", good, mixed], capsys, "hosts, kernels or labels")
    _one_line_exit_2(["compare", good, good, "--fail-on-regression", "-3"], capsys, "--fail-on-regression")
    _one_line_exit_2(["compare", good, good, "--format", "html"], capsys, "--format")


def test_cli_fail_on_regression_exits_1_only_for_a_significant_regression(tmp_path, capsys):
    base = _write(tmp_path, "base.json", {"schema_version": 1, "results": [_result([200e6, 201e6, 199e6])]})
    slower = _write(tmp_path, "slower.json", [_result([100e6, 101e6, 99e6])])
    same = _write(tmp_path, "same.json", _result([200e6, 200.5e6, 199.5e6]))  # a pre-schema single object
    assert _cli(["compare", base, slower, "--fail-on-regression", "10"], capsys)[0] == 1
    assert _cli(["compare", base, same, "--fail-on-regression", "10"], capsys)[0] == 0
    assert _cli(["compare", base, slower, "--fail-on-regression", "200"], capsys)[0] == 0


@pytest.fixture(scope="module")
def two_real_runs(tmp_path_factory):
    """atomic and percpu, threads mode, on 2 CPUs (one when the host has one core): two real run --json files."""
    from shmrss.cli import main
    from shmrss.topology import read_topology

    cpus = "2" if len(read_topology().physical_cpus()) >= 2 else "1"
    d = tmp_path_factory.mktemp("runs")
    paths = []
    for design in ("atomic", "percpu"):
        path = d / f"{design}.json"
        assert main(["run", "--design", design, "--mode", "threads", "--cpus", cpus, "--duration", "1", "--repeat", "3",
                     "--no-calibrate", "--no-reader", "--label", f"build-{design}", "--json", str(path)]) == 0
        paths.append(str(path))
    return paths


def test_cli_compares_two_real_runs(two_real_runs, capsys):
    atomic, percpu = two_real_runs
    code, out, _ = _cli(["compare", atomic, percpu, "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["base"] == "build-atomic"  # --label names the side (params.label, part of the identity)
    assert all(r["params"]["label"] == "build-atomic" for r in load_run_json(atomic))  # three repeats
    eps = next(r for r in doc["comparisons"] if r["metric"] == "events/s")
    assert "differs in: design" in eps["point"]
    assert eps["rule"] == stats.RULE_WELCH and eps["base"]["n"] == 3  # three repeats a side: Welch's t-test
    assert eps["significant"] is (eps["verdict"] != compare.NO_DIFFERENCE)
    # the same file on both sides: never a difference
    code, out, _ = _cli(["compare", atomic, atomic, "--format", "json"], capsys)
    assert {r["verdict"] for r in json.loads(out)["comparisons"]} == {compare.NO_DIFFERENCE}


def test_cli_table_fits_100_columns(two_real_runs):
    from rich.console import Console

    atomic, percpu = two_real_runs
    base, new = compare.load_side(atomic), compare.load_side(percpu)
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(compare.table(compare.as_records(compare.compare(base, [new])), base.name))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "events/s" in text and "ns/event" in text and "change" in text


def test_label_goes_into_the_sweep_points_and_their_run_argv():
    from shmrss.cli import build_parser
    from shmrss.sweep_plan import plan_points
    from shmrss.topology import read_topology

    args = build_parser().parse_args(["sweep", "--design", "atomic", "--cpus", "1", "--repeat", "1",
                                      "--label", "patched kernel", "--oversubscribe"])
    (point,), _ = plan_points(args, read_topology())
    assert point.key["label"] == "patched kernel"
    assert point.argv[point.argv.index("--label") + 1] == "patched kernel"


def test_a_label_that_is_not_one_printable_line_is_refused(capsys):
    _one_line_exit_2(["run", "--label", "a\nb"], capsys, "--label")


def test_a_sweep_jsonl_side_uses_its_repeats_as_samples(tmp_path):
    lines = []
    for rep, eps in enumerate((100e6, 102e6, 98e6)):
        r = _result([eps])
        r["sweep"] = {"key": {"design": "percpu", "repeat": rep}, "status": "ok"}
        lines.append(json.dumps(r))
    sweep = tmp_path / "s.jsonl"
    sweep.write_text("\n".join(lines) + "\n")
    rows = compare.compare(compare.load_side(str(sweep)),
                           [compare.load_side(_write(tmp_path, "n.json", [_result([300e6, 301e6, 299e6])]))])
    assert _eps(rows).base.n == 3 and _eps(rows).sig.significant
