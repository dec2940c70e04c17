"""Statistics of repeats: spread, pyperf's instability reasons, and both significance rules."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import given, strategies as st

from shmrss import stats


def test_summary_keeps_samples_and_spread():
    s = stats.summarize([100, 102, 101, 103])
    assert s.samples == (100.0, 102.0, 101.0, 103.0)
    assert s.mean == 101.5 and s.median == 101.5 and s.minimum == 100 and s.maximum == 103
    assert s.stdev == pytest.approx(1.2909944, rel=1e-6)
    assert s.cv == pytest.approx(s.stdev / 101.5)
    assert s.unstable_reasons() == []


@pytest.mark.parametrize("samples, reason", [
    ([100, 101], "fewer than 3"),
    ([100, 130, 70], "coefficient of variation"),
    ([100, 100, 100, 100, 100, 100, 100, 100, 100, 160], "away from the mean"),
])
def test_unstable_by_pyperf_thresholds(samples, reason):
    assert any(reason in r for r in stats.summarize(samples).unstable_reasons())


def test_non_finite_samples_are_refused():
    with pytest.raises(ValueError):
        stats.summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.summarize([])


def test_welch_marks_a_real_difference_and_not_noise():
    pytest.importorskip("scipy")
    base = stats.summarize([100, 102, 98, 101, 99])
    assert stats.significance(base, stats.summarize([150, 149, 152, 151, 148])).significant
    same = stats.significance(base, stats.summarize([101, 99, 100, 102, 98]))
    assert not same.significant and same.rule == stats.RULE_WELCH and same.p_value > 0.05


def _without_scipy(monkeypatch):
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_ranges_rule_without_scipy(monkeypatch):
    _without_scipy(monkeypatch)
    base = stats.summarize([100, 102, 98])
    apart = stats.significance(base, stats.summarize([110, 111, 112]))
    assert apart.significant and apart.rule == stats.RULE_RANGES
    assert not stats.significance(base, stats.summarize([101, 103, 99])).significant


def test_ranges_rule_with_too_few_samples():
    base = stats.summarize([100, 101])
    res = stats.significance(base, stats.summarize([100.5, 100.7]))
    assert res.rule == stats.RULE_RANGES and not res.significant


def test_pct_change():
    assert stats.pct_change(stats.summarize([100]), stats.summarize([90])) == pytest.approx(-10.0)
    assert stats.pct_change(stats.summarize([0]), stats.summarize([1])) is None


@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=50))
def test_summary_orders(samples):
    s = stats.summarize(samples)
    assert s.minimum <= s.median <= s.maximum
    assert s.minimum - 1e-3 * abs(s.minimum) - 1e-9 <= s.mean <= s.maximum + 1e-3 * abs(s.maximum) + 1e-9
    assert s.stdev >= 0


def test_single_samples_are_never_called_significant():
    res = stats.significance(stats.summarize([100.0]), stats.summarize([200.0]))
    assert not res.significant and res.rule == stats.RULE_TOO_FEW
