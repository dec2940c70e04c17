"""shmrss compare: points matched across sides, every %change with its significance, identities never merged."""

from __future__ import annotations

import json

import pytest

from shmrss import compare, stats
from shmrss.results_file import InputError


def _result(eps_samples, design="percpu", host="a", kernel="6.1", pack=False, label=""):
    mean = sum(eps_samples) / len(eps_samples)
    return {
        "design": design, "workload": "page_fault1", "partial": False,
        "params": {"mode": "threads", "cpus": 2, "possible_cpus": 2, "duration_s": 3, "pack": pack, "label": label},
        "host": {"hostname": host, "kernel": kernel, "cpu_model": "X", "topology": {"usable": [0, 1]}},
        "throughput": {"events_per_s": mean, "ns_per_event": 2e9 / mean, "events_per_s_samples": eps_samples},
        "reads": {"approx_latency_ns": {"median": 10.0}, "precise_latency_ns": {"median": 20.0}},
        "invariants": {"all": True},
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
