"""Issue 23 item 8: an approximate error above the stated bound is never shown alone; the result says by
how much and why (the design's documented in-flight property), in the JSON and in the table cell."""

from __future__ import annotations

import numpy as np

from shmrss import result
from shmrss.designs import pernode


def _raw(max_err: int, bound: int) -> dict:
    check = np.array([[100, 100, 100, bound, bound]], dtype=np.int64)  # truth, precise, approx, under, over
    return {"reader": {"max_bound": bound, "approx_max_err": max_err, "min_ratio_ppm": 1 << 62,
                       "precise_max_err": 0}, "check": check}


def test_an_error_above_the_bound_carries_its_excess_and_cause():
    acc = result._accuracy(_raw(509, 31), True, pernode.TRANSIENT_CAUSE)
    assert acc["approx_excess"] == {"beyond_bound": 478, "cause": pernode.TRANSIENT_CAUSE}
    assert result.err_bound_text(acc) == f"509/31 (+478 in flight: {pernode.TRANSIENT_CAUSE})"


def test_an_error_within_the_bound_shows_the_pair_only():
    acc = result._accuracy(_raw(13, 62), True, pernode.TRANSIENT_CAUSE)
    assert acc["approx_excess"] is None and result.err_bound_text(acc) == "13/62"


def test_a_design_without_a_documented_cause_says_so():
    acc = result._accuracy(_raw(32, 0), True, None)
    assert acc["approx_excess"]["beyond_bound"] == 32 and "violations" in acc["approx_excess"]["cause"]
