"""shmrss compare: the unit is a run, too few runs are said and not judged, every change has its interval,
values are shown to their precision, significant rows come first, one summary line per pair, text from files
is data, and the reader's notes reach stderr."""

from __future__ import annotations

import io
import json

import pytest

from shmrss import compare, rounding, stats
from shmrss.results_file import InputError
from results_schema import load_run_json


def _result(eps, design="percpu", host="a", kernel="6.1", pack=False, label="", per_second=None, step=10.0,
            read_ns=10.0):
    """One run's result: its own events/s figure ``eps`` and, optionally, its per-second rates."""
    return {
        "design": design, "workload": "page_fault1", "partial": False,
        "params": {"mode": "threads", "cpus": 2, "possible_cpus": 2, "duration_s": 3, "pack": pack, "label": label},
        "host": {"hostname": host, "kernel": kernel, "cpu_model": "X", "topology": {"usable": [0, 1]}},
        "throughput": {"events_per_s": eps, "ns_per_event": 2e9 / eps,
                       "events_per_s_samples": per_second if per_second is not None else [eps]},
        "reads": {"approx_latency_ns": {"median": read_ns}, "precise_latency_ns": {"median": 2 * read_ns},
                  "timer_step_ns": step},
        "invariants": {"all": True}, "warnings": [],
    }


def _runs(values, **kw):
    return [_result(v, **kw) for v in values]


def _write(tmp_path, name, results):
    p = tmp_path / name
    p.write_text(json.dumps(results))
    return str(p)


def _rows(tmp_path, base, new):
    return compare.compare(compare.load_side(_write(tmp_path, "b.json", base)),
                           [compare.load_side(_write(tmp_path, "n.json", new))])


def _row(rows, metric="events/s"):
    return next(r for r in rows if r.metric.name == metric)


# ---- what is compared and how it is judged ----

def test_runs_are_the_samples_and_per_second_rates_never_are(tmp_path):
    rows = _rows(tmp_path, [_result(100e6, per_second=[100e6, 102e6, 98e6, 101e6])],
                 [_result(50e6, per_second=[50e6, 51e6, 49e6, 50e6])])
    row = _row(rows)
    assert row.base.n == 1 and row.new.n == 1 and not row.judged and not row.significant
    assert row.within_run_cv == pytest.approx(stats.summarize([100e6, 102e6, 98e6, 101e6]).cv)  # the larger
    assert compare.verdict(row) == "too few runs to judge (n=1 vs 1): -50.0%"
    console = io.StringIO()
    from rich.console import Console

    compare._print_tables(rows, False, Console(file=console, width=120))
    assert "within one run the per-second events/s vary by up to 1.7%" in console.getvalue()


def test_the_result_s_own_figure_is_the_value_not_a_mean_of_its_rates(tmp_path):
    rows = _rows(tmp_path, [_result(100e6, per_second=[10e6, 20e6])] * 3, _runs([100e6, 101e6, 99e6]))
    assert _row(rows).base.mean == 100e6


def test_two_runs_a_side_are_not_judged_either(tmp_path):
    row = _row(_rows(tmp_path, _runs([200e6, 201e6]), _runs([100e6, 101e6])))
    assert not row.judged and compare.verdict(row).startswith("too few runs to judge (n=2 vs 2): -49.")
    assert compare.regressions([row], 10) == []


def test_noise_over_three_runs_is_no_difference_shown(tmp_path):
    rows = _rows(tmp_path, _runs([100e6, 102e6, 98e6, 101e6]), _runs([101e6, 99e6, 100e6, 102e6]))
    row = _row(rows)
    assert row.judged and not row.significant and compare.verdict(row).startswith(compare.NO_DIFFERENCE)
    assert compare.regressions(rows, 0.5) == []


def test_a_real_difference_is_marked_with_its_interval_and_fails_the_gate(tmp_path):
    rows = _rows(tmp_path, _runs([200e6, 201e6, 199e6]), _runs([100e6, 101e6, 99e6]))
    row = _row(rows)
    lo, hi = row.ci_pct
    assert row.significant and lo < -50 < hi < 0
    assert compare.verdict(row).startswith("-50.") and compare.verdict(row).endswith("] *")
    assert row in compare.regressions(rows, 10)
    assert _row(rows, "ns/event") in compare.regressions(rows, 90)  # ns/event doubled: +100%, worse
    assert compare.regressions(rows, 110) == []


def test_constant_sides_apart_below_the_resolution_are_no_difference(tmp_path):
    rows = _rows(tmp_path, _runs([100.0] * 3), _runs([100.0000001] * 3))
    assert not _row(rows).significant and compare.verdict(_row(rows)).startswith(compare.NO_DIFFERENCE)


def test_a_base_of_zero_is_a_change_in_units(tmp_path):
    rows = _rows(tmp_path, _runs([1e6] * 3, read_ns=0.0), _runs([1e6] * 3, read_ns=10.0))
    row = _row(rows, "approx read ns")
    assert row.significant and compare.verdict(row).startswith("+10 ns from 0 [")
    assert row.worse_pct == float("inf") and row in compare.regressions(rows, 1e9)


def test_one_point_each_is_compared_and_named_by_what_differs(tmp_path):
    base = _runs([100e6, 101e6, 99e6], design="percpu")
    rows = _rows(tmp_path, base, _runs([76e6, 77e6, 76.5e6], design="k-percpu"))
    assert "differs in: design" in _row(rows).point and _row(rows).significant
    line = compare.summary_line(compare.groups(rows)[0])
    assert line.startswith("k-percpu ran 1.31 ± 0.02 x slower than percpu (events/s, higher is better;"), line


def test_the_summary_says_faster_and_not_judged(tmp_path):
    rows = _rows(tmp_path, [_result(100e6, design="atomic")], [_result(193e6, design="percpu")])
    line = compare.summary_line(compare.groups(rows)[0])
    assert line.startswith("percpu ran 1.93 x faster than atomic") and "too few runs to judge (n=1 vs 1)" in line


def test_significant_rows_first_and_changed_shows_only_them(tmp_path):
    rows = _rows(tmp_path, _runs([100e6, 101e6, 99e6]), _runs([50e6, 51e6, 49e6]))
    (group,) = compare.groups(rows)
    assert [r.significant for r in group] == sorted((r.significant for r in group), reverse=True)
    assert group[0].significant and not group[-1].significant  # the read latencies did not change
    (changed,) = compare.groups(rows, changed_only=True)
    assert changed and all(r.significant for r in changed)
    md = compare.render(rows, "markdown", "base", changed_only=True)
    assert compare.NO_DIFFERENCE not in md.split("\n\n")[0] and "events/s" in md
    listed = json.loads(compare.render(rows, "json", "base", changed_only=True))["comparisons"]
    assert listed and all(r["significant"] for r in listed)


def test_a_file_of_two_identities_is_refused(tmp_path):
    path = _write(tmp_path, "mixed.json", [_result(1e6), _result(1e6, kernel="6.2")])
    with pytest.raises(InputError, match="2 hosts, kernels or labels"):
        compare.load_side(path)


def test_not_results_and_too_few_files_are_refused(tmp_path):
    with pytest.raises(InputError):
        compare.check_files([str(tmp_path / "a.json")])
    with pytest.raises(InputError, match="no finished shmrss result"):
        compare.load_side(_write(tmp_path, "x.json", [{"hello": 1}]))


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_formats_carry_the_verdict(tmp_path, fmt):
    rows = _rows(tmp_path, _runs([100e6, 101e6, 99e6]), _runs([100e6, 100.5e6, 99.5e6]))
    text = compare.render(rows, fmt, "base")
    assert compare.NO_DIFFERENCE in text
    if fmt == "json":
        doc = json.loads(text)
        assert doc["schema_version"] == 1 and doc["summaries"] and doc["comparisons"][0]["ci95_pct"]


def test_a_sweep_jsonl_side_uses_its_repeats_as_samples(tmp_path):
    lines = []
    for rep, eps in enumerate((100e6, 102e6, 98e6)):
        r = _result(eps)
        r["sweep"] = {"key": {"design": "percpu", "repeat": rep}, "status": "ok"}
        lines.append(json.dumps(r))
    sweep = tmp_path / "s.jsonl"
    sweep.write_text("\n".join(lines) + "\n")
    rows = compare.compare(compare.load_side(str(sweep)),
                           [compare.load_side(_write(tmp_path, "n.json", _runs([300e6, 301e6, 299e6])))])
    assert _row(rows).base.n == 3 and _row(rows).significant


# ---- values to their precision ----

@pytest.mark.parametrize("mean, stdev, step, text", [
    (5.3e8, 7.9e7, 0, "530M"),  # no digit below the spread's second one
    (116.7e6, 1.75e6, 0, "116.7M"),
    (9.629, 4.2e-5, 10.0, "10"),  # no digit below the TSC step
    (9.629, 0.0, 0, "9.629"),  # one run: four significant digits
    (6.962, 0.78, 0, "6.96"),
    (1234.5, 120, 0, "1,230"),
])
def test_values_are_rounded_to_their_precision(mean, stdev, step, text):
    assert rounding.value(mean, rounding.place(mean, stdev, step)) == text


def test_a_spread_below_the_step_is_not_shown():
    assert compare.side_cell(stats.summarize([9.6286, 9.6281, 9.629]), 10.0) == "10"
    assert compare.side_cell(stats.summarize([100e6, 110e6, 90e6]), 0) == "100M ± 10%"


def test_changes_keep_the_digits_of_their_interval():
    assert rounding.pct(-48.3) == "-48.3%" and rounding.pct(0.034) == "+0.034%"
    assert rounding.pct(56.93, 23.3) == "+57%" and rounding.pct(-0.04, 68) == "+0%"
    assert rounding.pct(1.234, 0.42) == "+1.23%"


# ---- text from files is data ----

def test_markup_and_control_characters_in_names_are_shown_as_text(tmp_path):
    evil = "[/]\x1b]0;pwned\x07[bold]x"
    rows = _rows(tmp_path, _runs([100e6] * 3, label=evil), _runs([50e6] * 3, label="[red]"))
    console = io.StringIO()
    from rich.console import Console

    c = Console(file=console, width=100, force_terminal=False)
    compare._print_tables(rows, False, c)
    text = console.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "[/]\\x1b]0;pwned\\x07[bold]x" in text and "[red]" in text
    for fmt in ("markdown", "csv"):
        assert "\x1b" not in compare.render(rows, fmt, compare.shown(evil))


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
    good = _write(tmp_path, "good.json", [_result(1e6)])
    _one_line_exit_2(["compare", good], capsys, "at least one NEW")
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello\n")
    _one_line_exit_2(["compare", good, str(not_json)], capsys, "not a shmrss results file")
    _one_line_exit_2(["compare", good, _write(tmp_path, "x.json", [{"hello": 1}])], capsys, "no finished")
    mixed = _write(tmp_path, "mixed.json", [_result(1e6), _result(1e6, kernel="6.2")])
    _one_line_exit_2(["compare", good, mixed], capsys, "hosts, kernels or labels")
    _one_line_exit_2(["compare", good, good, "--fail-on-regression", "-3"], capsys, "--fail-on-regression")
    _one_line_exit_2(["compare", good, good, "--fail-on-regression", "9" * 400], capsys, "at most 9 digits")
    _one_line_exit_2(["compare", good, good, "--format", "html"], capsys, "--format")


def test_cli_a_non_utf8_result_is_refused_with_its_reason(tmp_path, capsys):
    good = _write(tmp_path, "good.json", [_result(1e6)])
    bad = tmp_path / "latin1.json"
    bad.write_bytes(json.dumps(_result(1e6, label="x")).encode().replace(b'"x"', b'"caf\xe9"'))
    _one_line_exit_2(["compare", good, str(bad)], capsys, "is not UTF-8")
    pretty = tmp_path / "pretty.json"  # run --json's own indented shape, one bad byte in a label
    pretty.write_bytes(json.dumps({"schema_version": 1, "results": [_result(1e6, label="x")]}, indent=1).encode()
                       .replace(b'"x"', b'"caf\xe9"'))
    _one_line_exit_2(["compare", good, str(pretty)], capsys, "byte 0xe9 at offset")


def test_cli_a_truncated_jsonl_line_is_said_on_stderr(tmp_path, capsys):
    lines = [json.dumps(r) for r in _runs([100e6, 101e6, 99e6])]
    sweep = tmp_path / "cut.jsonl"
    sweep.write_text("\n".join(lines) + "\n" + lines[0][:40] + "\n")
    code, out, err = _cli(["compare", str(sweep), str(sweep)], capsys)
    assert code == 0 and "cut.jsonl:4 is cut short" in err and "events/s" in out


def test_cli_fail_on_regression_exits_1_only_for_a_significant_regression(tmp_path, capsys):
    base = _write(tmp_path, "base.json", {"schema_version": 1, "results": _runs([200e6, 201e6, 199e6])})
    slower = _write(tmp_path, "slower.json", _runs([100e6, 101e6, 99e6]))
    same = _write(tmp_path, "same.json", _runs([200e6, 200.5e6, 199.5e6]))
    one = _write(tmp_path, "one.json", _result(100e6))  # a pre-schema single object: one run
    assert _cli(["compare", base, slower, "--fail-on-regression", "10"], capsys)[0] == 1
    assert _cli(["compare", base, same, "--fail-on-regression", "10"], capsys)[0] == 0
    assert _cli(["compare", base, slower, "--fail-on-regression", "200"], capsys)[0] == 0
    code, _, err = _cli(["compare", base, one, "--fail-on-regression", "10"], capsys)
    assert code == 0 and "not judged" in err


def test_cli_piped_output_keeps_each_verdict_and_summary_on_one_line(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _runs([100e6, 101e6, 99e6], label="a long label " * 5))
    new = _write(tmp_path, "new.json", _runs([100e6, 100.5e6, 99.5e6], label="another long label " * 4))
    code, out, _ = _cli(["compare", base, new], capsys)
    assert code == 0
    assert any(line.strip().startswith("events/s") and compare.NO_DIFFERENCE in line for line in out.splitlines())
    assert any(line.startswith("another long label") and line.rstrip().endswith(compare.NO_DIFFERENCE)
               for line in out.splitlines()), out


def test_cli_markup_in_a_label_does_not_crash(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _runs([100e6], label="[/]"))
    new = _write(tmp_path, "new.json", _runs([100e6], label="[bold]x"))
    code, out, _ = _cli(["compare", base, new], capsys)
    assert code == 0 and "[/]" in out and "[bold]x" in out


@pytest.fixture(scope="module")
def two_real_runs(tmp_path_factory):
    """atomic and percpu, threads mode, on 2 CPUs (one when the host has one core): two real run --json files
    of three repeats each."""
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
    assert eps["rule"] == stats.RULE_WELCH and eps["base"]["n"] == 3 and eps["judged"]
    assert eps["significant"] is eps["verdict"].endswith("*")
    # the same file on both sides: never a difference
    code, out, _ = _cli(["compare", atomic, atomic, "--format", "json"], capsys)
    assert not any(r["significant"] for r in json.loads(out)["comparisons"])


def test_a_halved_real_run_is_marked_and_fails_the_gate(two_real_runs, tmp_path, capsys):
    """The acceptance check of docs/compare.md on a real file: its events/s halved (and ns/event doubled)."""
    atomic, _ = two_real_runs
    doc = json.loads(open(atomic).read())
    for r in doc["results"]:
        r["throughput"]["events_per_s"] /= 2
        r["throughput"]["ns_per_event"] *= 2
    halved = _write(tmp_path, "halved.json", doc)
    code, out, _ = _cli(["compare", atomic, halved, "--fail-on-regression", "10", "--format", "json"], capsys)
    rows = json.loads(out)["comparisons"]
    eps = next(r for r in rows if r["metric"] == "events/s")
    assert eps["change_pct"] == pytest.approx(-50.0) and eps["judged"]
    # three runs a side mark a halving unless the runs spread by more than ~24% (a host busy with other work)
    assert eps["significant"] or eps["base"]["cv"] > 0.2, eps
    assert code == (1 if any(r["significant"] for r in rows) else 0)


def test_cli_table_fits_100_columns(two_real_runs):
    from rich.console import Console

    atomic, percpu = two_real_runs
    base, new = compare.load_side(atomic), compare.load_side(percpu)
    console = Console(width=100, record=True, file=io.StringIO())
    compare._print_tables(compare.compare(base, [new]), False, console)
    text = console.export_text()
    lines = text.splitlines()
    tables = lines[:next(i for i, line in enumerate(lines) if " ran " in line)]  # the summary lines follow
    assert tables and max(len(line) for line in tables) <= 100
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


_ODD = [None, "x", [], {}, [1, "a"], {"a": 1}, float("nan"), float("inf"), 1e308, -1e308, 10 ** 30, True, 0, -1,
        "[/]\x1b[31m"]


def _paths(obj, prefix=()):
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


def _mutated(rng, results: list[dict]) -> str:
    doc = json.loads(json.dumps(results))
    spots = list(_paths(doc))
    for _ in range(rng.randint(1, 4)):
        *parent, last = rng.choice(spots)
        holder = doc
        for k in parent:
            holder = holder[k] if isinstance(holder, (dict, list)) and (k in holder if isinstance(holder, dict)
                                                                         else k < len(holder)) else None
        if isinstance(holder, dict) and rng.random() < 0.2:
            holder.pop(last, None)
        elif isinstance(holder, dict) or (isinstance(holder, list) and last < len(holder)):
            holder[last] = rng.choice(_ODD)
    text = json.dumps(doc)
    return text[:rng.randint(1, len(text))] if rng.random() < 0.1 else text


def test_mutated_results_are_compared_or_refused_never_a_traceback(tmp_path, capsys):
    import random

    rng = random.Random(18)
    good = _write(tmp_path, "good.json", _runs([100e6, 101e6, 99e6], label="L"))
    codes = set()
    for i in range(60):
        bad = tmp_path / f"m{i}.json"
        bad.write_text(_mutated(rng, _runs([100e6, 102e6, 98e6], label="L")))
        for argv in (["compare", good, str(bad), "--format", "json"],
                     ["compare", str(bad), good, "--fail-on-regression", "5"]):
            code, out, err = _cli(argv, capsys)  # _cli asserts no traceback
            codes.add(code)
            assert code in (0, 1, 2) and "\x1b" not in out
    assert {0, 2} <= codes  # both read and refused files were among them


# ---- pooled sides: compare A1 A2 A3 --vs B1 B2 B3, a file (an invocation) the unit ----

def _files(tmp_path, prefix, per_file):
    return [_write(tmp_path, f"{prefix}{i + 1}.json", _runs(values)) for i, values in enumerate(per_file)]


def _pooled(base, new):
    return compare.compare(compare.pool(base), [compare.pool(new)])


# identical setups whose invocations differ by more than their repeats (docs/compare.md's set 4): each file's
# 3 repeats within 1%, the files up to 13% apart
DRIFTING = ([600e6, 606e6, 598e6], [560e6, 555e6, 562e6], [522e6, 520e6, 527e6], [590e6, 585e6, 592e6],
            [530e6, 534e6, 529e6], [575e6, 570e6, 572e6])


def test_a_pooled_side_s_samples_are_its_files_means_and_its_runs_are_kept(tmp_path):
    a = _files(tmp_path, "a", DRIFTING[:3])
    b = _files(tmp_path, "b", DRIFTING[3:])
    row = _row(_pooled(a, b))
    assert row.unit == "files" and row.base.n == 3 and row.new.n == 3
    assert row.base.samples == pytest.approx([sum(v) / 3 for v in DRIFTING[:3]])
    assert row.base_runs == tuple(tuple(v) for v in DRIFTING[:3])
    record = compare.as_records([row])[0]
    assert record["unit"] == "files" and record["new_runs"] == [list(v) for v in DRIFTING[3:]]


def test_pooling_files_does_not_mark_invocations_that_drift_where_one_file_a_side_does(tmp_path):
    a = _files(tmp_path, "a", DRIFTING[:3])
    b = _files(tmp_path, "b", DRIFTING[3:])
    one_each = compare.compare(compare.load_side(a[0]), [compare.load_side(a[2])])
    assert _row(one_each).significant  # 600 against 523: the files differ, the code does not
    row = _row(_pooled(a, b))
    assert row.judged and not row.significant and compare.verdict(row).startswith("no difference shown")


def test_a_halved_pooled_side_is_marked(tmp_path):
    a = _files(tmp_path, "a", DRIFTING[:3])
    half = _files(tmp_path, "h", [[v / 2 for v in runs] for runs in DRIFTING[3:]])
    row = _row(_pooled(a, half))
    assert row.significant and compare.regressions([row], 10) == [row]


def test_fewer_than_three_files_a_side_are_not_judged_whatever_their_repeats(tmp_path):
    a = _files(tmp_path, "a", DRIFTING[:2])
    b = _files(tmp_path, "b", [[v / 2 for v in runs] for runs in DRIFTING[3:]])
    row = _row(_pooled(a, b))
    assert not row.judged and compare.verdict(row).startswith("too few files to judge (n=2 vs 3): -")
    assert "pool 3 or more files a side" in compare.legend([row])
    judged_runs = _row(_rows(tmp_path, _runs(DRIFTING[0]), _runs(DRIFTING[1])))
    assert "pool 3 or more files a side (BASE... --vs FILE...)" in compare.legend([judged_runs])


def test_cli_vs_pools_names_the_sides_by_their_files_and_gates(tmp_path, capsys):
    a = _files(tmp_path, "a", DRIFTING[:3])
    b = _files(tmp_path, "b", DRIFTING[3:])
    code, out, _ = _cli(["compare", *a, "--vs", *b, "--fail-on-regression", "5"], capsys)
    assert code == 0 and "a1.json..a3.json (3 files)" in out and "no difference shown" in out
    half = _files(tmp_path, "h", [[v / 2 for v in runs] for runs in DRIFTING[3:]])
    code, out, err = _cli(["compare", *a, "--vs", *half, "--fail-on-regression", "10"], capsys)
    assert code == 1 and "regression" in err
    code, _, err = _cli(["compare", a[0], "--vs", half[0], "--fail-on-regression", "10"], capsys)
    assert code == 0 and "fewer than 3 files a side" in err


def test_cli_vs_refuses_a_side_of_several_identities(tmp_path, capsys):
    a = _files(tmp_path, "a", DRIFTING[:2]) + [_write(tmp_path, "k.json", _runs([1e6], kernel="6.2"))]
    b = _files(tmp_path, "b", DRIFTING[3:])
    _one_line_exit_2(["compare", *a, "--vs", *b], capsys, "pooled into one side must share one")
    _one_line_exit_2(["compare", a[0], "--vs", str(tmp_path / "nope.json")], capsys, "no such file")
    _one_line_exit_2(["compare", b[0], b[1], b[2], "--vs", b[0], a[0], a[1]], capsys, "is given twice")
    _one_line_exit_2(["compare", a[0], "--vs"], capsys, "--vs")
