"""The reader's pass: every counter read approximately and precisely, each judged against the truth envelope."""

import numpy as np
from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, raw, rdtsc, store
from shmrss.specialise import entry
from .design import approx_bound, read_approx, read_precise, slack_mark, transient_slack
from .index import _stat


@njit(inline="always")
def _envelope(seg, mm, k, c0, t0):
    """Bounds of what a read of (mm, k) begun after the (c0, t0) snapshot could have seen."""
    lo = 0
    hi = 0
    for cpu in range(seg[L.H_NCPU]):
        tw = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k
        t1 = load(seg, tw)
        v1 = load(seg, _stat(seg, cpu) + L.S_VAR)
        w = v1 - c0[cpu]
        lo += max(t0[cpu], t1) - w
        hi += min(t0[cpu], t1) + w
    return lo, hi


@njit(inline="always")
def _snapshot(seg, mm, k, c0, t0):
    for cpu in range(seg[L.H_NCPU]):
        c0[cpu] = load(seg, _stat(seg, cpu) + L.S_COMMIT)
        t0[cpu] = load(seg, seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k)


@njit(inline="always")
def _note_violation(seg, r, mm, k, v, lo, hi, kind):
    if seg[r + L.R_VIOL_KIND] == 0:
        seg[r + L.R_VIOL_MM] = mm
        seg[r + L.R_VIOL_MEMBER] = k
        seg[r + L.R_VIOL_VALUE] = v
        seg[r + L.R_VIOL_LO] = lo
        seg[r + L.R_VIOL_HI] = hi
        seg[r + L.R_VIOL_KIND] = kind


@njit(inline="always")
def _note_transient(seg, at, beyond):
    """A read the design's documented transient error explains: count it, keep the largest (words at, at + 1)."""
    seg[at] += 1
    if beyond > seg[at + 1]:
        seg[at + 1] = beyond


@entry("void(int64[::1])")
def reader_pass(words):
    """One pass of the reader: approximate then precise read of every counter, each judged and timed."""
    seg = raw(words)
    r = seg[L.H_READER]
    ring = seg[L.H_RING]
    ring_a = r + L.R_HEAD_WORDS
    ring_p = ring_a + ring
    n = seg[L.H_NCPU]
    c0 = np.empty(n, dtype=np.int64)
    t0 = np.empty(n, dtype=np.int64)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            _snapshot(seg, mm, k, c0, t0)
            mark = slack_mark(seg, mm, k)
            a0 = rdtsc()
            v = read_approx(seg, mm, k)
            a1 = rdtsc()
            lo, hi = _envelope(seg, mm, k, c0, t0)
            under, over = approx_bound(seg, mm, k)
            err = lo - v if v < lo else (v - hi if v > hi else 0)
            i = seg[r + L.R_NAPPROX]
            seg[ring_a + i % ring] = a1 - a0
            seg[r + L.R_NAPPROX] = i + 1
            if err > seg[r + L.R_APPROX_MAXERR]:
                seg[r + L.R_APPROX_MAXERR] = err
            bound = max(under, over)
            if bound > seg[r + L.R_MAX_BOUND]:
                seg[r + L.R_MAX_BOUND] = bound
            if bound > 0 and err * 1_000_000 // bound > seg[r + L.R_ERR_PPM]:
                seg[r + L.R_ERR_PPM] = err * 1_000_000 // bound
            if lo >= L.RATIO_FLOOR:
                # the ratio the read must have had: against the nearest truth it could have seen
                ppm = v * 1_000_000 // lo if v < lo else (v * 1_000_000 // hi if v > hi else 1_000_000)
                if ppm < seg[r + L.R_MIN_RATIO_PPM]:
                    seg[r + L.R_MIN_RATIO_PPM] = ppm
            beyond = lo - under - v if v < lo - under else (v - hi - over if v > hi + over else 0)
            if beyond > 0:
                a_slack, p_slack = transient_slack(seg, mm, k, mark)
                if beyond <= a_slack:
                    _note_transient(seg, r + L.R_APPROX_TRANSIENT, beyond)
                else:
                    seg[r + L.R_APPROX_VIOL] += 1
                    _note_violation(seg, r, mm, k, v, lo - under, hi + over, 1)

            _snapshot(seg, mm, k, c0, t0)
            mark = slack_mark(seg, mm, k)
            p0 = rdtsc()
            v = read_precise(seg, mm, k)
            p1 = rdtsc()
            lo, hi = _envelope(seg, mm, k, c0, t0)
            err = lo - v if v < lo else (v - hi if v > hi else 0)
            i = seg[r + L.R_NPRECISE]
            seg[ring_p + i % ring] = p1 - p0
            seg[r + L.R_NPRECISE] = i + 1
            if err > seg[r + L.R_PRECISE_MAXERR]:
                seg[r + L.R_PRECISE_MAXERR] = err
            if err > 0:
                a_slack, p_slack = transient_slack(seg, mm, k, mark)
                if err <= p_slack:
                    _note_transient(seg, r + L.R_PRECISE_TRANSIENT, err)
                else:
                    seg[r + L.R_PRECISE_VIOL] += 1
                    _note_violation(seg, r, mm, k, v, lo, hi, 2)
    seg[r + L.R_PASSES] += 1
    store(seg, r + L.R_BEAT, rdtsc())
