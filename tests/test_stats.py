"""Statistics of runs: spread, pyperf's instability reasons, the t distribution computed without scipy,
Welch's test on runs (too few runs never judged, zero variance, zero mean), and its false-positive rate
and power on synthetic A/A and shifted data of many sizes.

``python tests/test_stats.py`` prints the false-positive and power tables docs/compare.md records (the
second: invocations that differ more than their repeats, one file a side against files pooled).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shmrss import stats


def test_summary_keeps_samples_and_spread():
    s = stats.summarize([100, 102, 101, 103])
    assert s.samples == (100.0, 102.0, 101.0, 103.0)
    assert s.mean == 101.5 and s.median == 101.5 and s.minimum == 100 and s.maximum == 103
    assert s.stdev == pytest.approx(1.2909944, rel=1e-6)
    assert s.cv == pytest.approx(s.stdev / 101.5)
    assert s.unstable_reasons() == [] and s.spread_reasons() == []


@pytest.mark.parametrize("samples, reason", [
    ([100, 101], "fewer than 3"),
    ([100, 130, 70], "coefficient of variation"),
    ([100, 100, 100, 100, 100, 100, 100, 100, 100, 160], "away from the mean"),
])
def test_unstable_by_pyperf_thresholds(samples, reason):
    assert any(reason in r for r in stats.summarize(samples).unstable_reasons())


def test_the_spread_reasons_leave_out_the_count():
    assert stats.summarize([100]).unstable_reasons() and stats.summarize([100]).spread_reasons() == []


def test_non_finite_samples_are_refused():
    with pytest.raises(ValueError):
        stats.summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.summarize([])


# ---- the t distribution ----

@pytest.mark.parametrize("t, df, p, rel", [
    (1.0, 1, 0.5, 1e-12),  # Cauchy: P(|T| >= 1) = 1/2
    (0.0, 7, 1.0, 1e-12),
    (2.0, 2, 1 - 2.0 / math.sqrt(6.0), 1e-12),  # df 2: P(|T| >= t) = 1 - t / sqrt(t^2 + 2)
    (2.7764451051977934, 4, 0.05, 1e-9),  # the tables' 97.5% point of t(4)
    (12.706204736174694, 1, 0.05, 1e-9),
    (1.959963984540054, 1e7, 0.05, 1e-6),  # the normal limit (t(1e7) is 3e-8 away from it)
])
def test_t_tail_matches_closed_forms_and_tables(t, df, p, rel):
    assert stats.t_two_sided_p(t, df) == pytest.approx(p, rel=rel)


def _scipy_reference() -> dict:
    """scipy's values at the points below, recorded by scripts/t_reference.py (scipy is not a test
    dependency: numba imports it when installed, 0.2 s of every shmrss process's start-up)."""
    import json

    return json.loads((Path(__file__).parent / "data" / "t_reference.json").read_text())


def test_t_tail_and_quantile_match_scipy():
    ref = _scipy_reference()
    assert len(ref["two_sided_p"]) == 72 and len(ref["quantile"]) == 27
    for t, df, p in ref["two_sided_p"]:
        assert stats.t_two_sided_p(t, df) == pytest.approx(p, rel=1e-9), (t, df)
    for p, df, q in ref["quantile"]:
        assert stats.t_quantile(p, df) == pytest.approx(q, rel=1e-9), (p, df)


def test_welch_matches_scipy_where_the_cap_does_not_bind():
    welch = _scipy_reference()["welch"]
    sig = stats.significance(stats.summarize(welch["base"]), stats.summarize(welch["new"]))
    assert sig.p_value == pytest.approx(welch["p"], rel=1e-9)
    assert sig.rule == stats.RULE_WELCH


# ---- judging two sets of runs ----

def test_a_real_difference_is_marked_and_noise_is_not():
    base = stats.summarize([100, 102, 98, 101, 99])
    assert stats.significance(base, stats.summarize([150, 149, 152, 151, 148])).significant
    same = stats.significance(base, stats.summarize([101, 99, 100, 102, 98]))
    assert not same.significant and same.judged and same.p_value > 0.05


@pytest.mark.parametrize("base, new", [([100.0], [200.0]), ([100.0, 100.1], [200.0, 200.1]),
                                       ([100, 101, 99], [200, 201])])
def test_fewer_than_three_runs_a_side_are_never_judged(base, new):
    res = stats.significance(stats.summarize(base), stats.summarize(new))
    assert not res.significant and not res.judged and res.rule == stats.RULE_TOO_FEW and res.diff_ci is None


def test_zero_variance_differences_below_the_resolution_are_no_difference():
    b = stats.summarize([100.0] * 3)
    assert not stats.significance(b, stats.summarize([100.0000001] * 3)).significant  # below 1e-6 relative
    assert stats.significance(b, stats.summarize([101.0] * 3)).significant  # constant and 1% apart: real
    same = stats.significance(b, b)
    assert not same.significant and same.p_value == 1.0


def test_a_quantised_value_differs_only_by_a_step():
    ten = stats.summarize([9.6286, 9.6281, 9.6290])
    assert not stats.significance(ten, stats.summarize([9.6301, 9.6302, 9.6299]), resolution=10).significant
    assert stats.significance(ten, stats.summarize([9.6301, 9.6302, 9.6299])).significant  # without the step


def test_a_zero_mean_is_judged_not_divided_by():
    zero = stats.summarize([0.0, 0.0, 0.0])
    res = stats.significance(zero, zero)
    assert not res.significant and res.p_value == 1.0 and stats.pct_change(zero, zero) is None
    up = stats.significance(zero, stats.summarize([10.0, 10.0, 10.0]), resolution=10)
    assert up.significant and up.diff_ci[0] > 0 and stats.pct_ci(zero, up) is None
    noise = stats.significance(zero, stats.summarize([1.0, -1.0, 0.5]))
    assert not noise.significant


def test_pct_change_and_ratio():
    assert stats.pct_change(stats.summarize([100]), stats.summarize([90])) == pytest.approx(-10.0)
    assert stats.pct_change(stats.summarize([0]), stats.summarize([1])) is None
    r, e = stats.ratio(stats.summarize([100, 110, 90]), stats.summarize([200, 220, 180]))
    assert r == pytest.approx(2.0) and e == pytest.approx(2.0 * math.hypot(0.1, 0.1))
    assert stats.ratio(stats.summarize([0.0]), stats.summarize([1.0])) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1, max_value=1e9), min_size=3, max_size=12),
       st.lists(st.floats(min_value=1, max_value=1e9), min_size=3, max_size=12))
def test_the_interval_holds_the_change_and_agrees_with_the_test(base, new):
    b, n = stats.summarize(base), stats.summarize(new)
    sig = stats.significance(b, n)
    lo, hi = sig.diff_ci
    diff = n.mean - b.mean
    assert lo - 1e-9 * abs(diff) <= diff <= hi + 1e-9 * abs(diff)
    if abs(sig.p_value - stats.ALPHA) > 1e-6:  # away from the edge, the interval and the test agree
        assert sig.significant == (lo > 0 or hi < 0)


@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=50))
def test_summary_orders(samples):
    s = stats.summarize(samples)
    assert s.minimum <= s.median <= s.maximum
    assert s.minimum - 1e-3 * abs(s.minimum) - 1e-9 <= s.mean <= s.maximum + 1e-3 * abs(s.maximum) + 1e-9
    assert s.stdev >= 0


# ---- synthetic A/A and shifted runs ----

SIZES = ((3, 3), (4, 4), (5, 5), (8, 8), (10, 10), (20, 20), (3, 5), (3, 10), (3, 30), (5, 20))


def _draw(rng, n: int, mean: float, kind: str) -> np.ndarray:
    """n runs around ``mean``: normal with a 2% spread, heavy-tailed (t with 3 df) or skewed (lognormal, 30%)."""
    if kind == "normal":
        return rng.normal(mean, 0.02 * mean, n)
    if kind == "heavy":
        return mean + 0.02 * mean * rng.standard_t(3, n)
    return mean * rng.lognormal(0.0, 0.3, n)


def marked_rate(nb: int, nn: int, shift: float, kind: str, trials: int, seed: int) -> float:
    """The share of ``trials`` comparisons of nb against nn runs that ``significance`` marks, NEW shifted by
    ``shift`` (0: identical setups, an A/A test)."""
    rng = np.random.default_rng(seed)
    marked = 0
    for _ in range(trials):
        base, new = _draw(rng, nb, 100.0, kind), _draw(rng, nn, 100.0 * (1 + shift), kind)
        marked += stats.significance(stats.summarize(base), stats.summarize(new)).significant
    return marked / trials


@pytest.mark.parametrize("kind", ["normal", "heavy", "skewed"])
def test_identical_setups_are_marked_at_most_at_the_nominal_rate(kind):
    trials = 1500
    rates = {sizes: marked_rate(*sizes, 0.0, kind, trials, seed=i) for i, sizes in enumerate(SIZES)}
    # 1500 trials: a true rate of 5% is observed above 6.5% with a probability below 1%
    assert max(rates.values()) <= 0.065, rates
    assert sum(rates.values()) / len(rates) <= stats.ALPHA, rates  # over every size: at or below 5%


def test_power_on_a_five_percent_shift_grows_with_the_runs():
    power = {n: marked_rate(n, n, 0.05, "normal", 400, seed=n) for n in (3, 5, 10)}
    print("power on a 5% shift, 2% spread:", power)
    assert power[3] < power[5] < power[10] and power[10] > 0.95 and power[3] > 0.3


# ---- two levels: an invocation's effect shared by its repeats, and each repeat's noise ----

REPEATS = 3


def _invocations(rng, files: int, mean: float, between: float, within: float) -> list[np.ndarray]:
    """``files`` invocations of REPEATS runs each: every invocation shifted by its own normal effect (spread
    ``between``, relative), every run by its own noise (``within``); the A/A of docs/compare.md's set 4."""
    return [mean * (1 + rng.normal(0, between) + rng.normal(0, within, REPEATS)) for _ in range(files)]


def two_level_rates(files: int, between: float, within: float, shift: float, trials: int, seed: int) -> dict:
    """The share of comparisons marked, three ways: one file a side (its repeats the samples), ``files`` files a
    side with every run a sample (pooled naively), and ``files`` files a side with one sample per file
    (``stats.invocation_means``, what ``compare ... --vs`` does)."""
    rng = np.random.default_rng(seed)
    marked = {"one file": 0, "runs pooled": 0, "files pooled": 0}
    for _ in range(trials):
        a = _invocations(rng, files, 100.0, between, within)
        b = _invocations(rng, files, 100.0 * (1 + shift), between, within)
        for how, (x, y) in {"one file": (a[0], b[0]),
                            "runs pooled": (np.concatenate(a), np.concatenate(b)),
                            "files pooled": (stats.invocation_means(a), stats.invocation_means(b))}.items():
            marked[how] += stats.significance(stats.summarize(x), stats.summarize(y)).significant
    return {how: n / trials for how, n in marked.items()}


@pytest.mark.parametrize("between", [0.0, 0.02, 0.05])
def test_pooled_files_hold_the_rate_when_invocations_differ(between):
    """Repeats 2% apart, invocations ``between`` apart: one file a side (or every run pooled) marks identical
    setups far above 5% once invocations differ; one sample per file holds the nominal rate."""
    rates = {files: two_level_rates(files, between, 0.02, 0.0, 1500, seed=files) for files in (3, 6)}
    assert all(r["files pooled"] <= 0.065 for r in rates.values()), rates
    if between >= 0.05:
        assert all(r["one file"] > 0.35 and r["runs pooled"] > 0.15 for r in rates.values()), rates  # ~50%, ~28%


if __name__ == "__main__":
    print("| runs a side | A/A normal | A/A heavy-tailed | A/A skewed | 5% shift, 2% spread | 5% shift, 5% spread |")
    print("|---|---|---|---|---|---|")
    for i, (nb, nn) in enumerate(SIZES):
        aa = [marked_rate(nb, nn, 0.0, k, 4000, seed=100 + i) for k in ("normal", "heavy", "skewed")]
        pw = [marked_rate(nb, nn, 0.05, "normal", 2000, seed=200 + i)]
        rng = np.random.default_rng(300 + i)
        hits = sum(stats.significance(stats.summarize(rng.normal(100, 5, nb)),
                                      stats.summarize(rng.normal(105, 5.25, nn))).significant for _ in range(2000))
        pw.append(hits / 2000)
        print(f"| {nb} vs {nn} | " + " | ".join(f"{x:.1%}" for x in aa + pw) + " |")
    print()
    print("| files a side (3 runs each) | invocation spread | A/A one file a side | A/A runs pooled | A/A files pooled "
          "| 5% shift, files pooled |")
    print("|---|---|---|---|---|---|")
    for files in (3, 4, 6):
        for between in (0.0, 0.01, 0.02, 0.05):
            aa = two_level_rates(files, between, 0.02, 0.0, 4000, seed=400 + files)
            pw = two_level_rates(files, between, 0.02, 0.05, 2000, seed=500 + files)["files pooled"]
            print(f"| {files} | {between:.0%} | {aa['one file']:.1%} | {aa['runs pooled']:.1%} | "
                  f"{aa['files pooled']:.1%} | {pw:.1%} |")
