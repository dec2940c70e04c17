"""The compiled part of ``host_reference``: the emulated design's approximate and precise reads of one member,
each bracketed by the truth envelope as the engine's reader brackets its reads.

A template (``shmrss.specialise``): ``host_reference`` loads a copy per design whose marked line binds that
design's reads. The sampler calls ``emulated_errors`` once per sampling round, beside its reads of /proc, so the
emulated design's error distribution is sampled at the same moments and in the same way as the host kernel's.
"""

import numpy as np
from numba import njit

from shmrss import layout as L
from shmrss.atomics import load
from shmrss.designs.interface import bind

read_approx, read_precise = bind("atomic", ("read_approx", "read_precise"))  # DESIGN-IMPORT


@njit(inline="always")
def _stat(w, cpu):
    return w[L.H_CPUSTAT] + cpu * w[L.H_CPUSTAT_STRIDE]


@njit(inline="always")
def _truth(w, cpu, mm, k):
    return w[L.H_TRUTH] + cpu * w[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k


@njit(inline="always")
def signed_error(v, lo, hi):
    """How far ``v`` lies outside ``[lo, hi]``, with its sign (0 inside)."""
    return v - lo if v < lo else (v - hi if v > hi else 0)


@njit("void(int64[::1], int64[::1], int64, int64[:, ::1])", cache=True)
def emulated_errors(w, mms, k, out):
    """``out[i] = (approximate error, its window, precise error, its window)`` of member ``k`` of mm ``mms[i]``.

    An error is the read's signed distance outside the truth envelope; the window is the variation (pages
    committed or published by the CPUs) that could have happened during the read, which widens the envelope.
    """
    n = w[L.H_NCPU]
    c0 = np.empty(n, dtype=np.int64)
    t0 = np.empty(n, dtype=np.int64)
    for i in range(mms.size):
        mm = mms[i]
        for kind in range(2):
            for cpu in range(n):
                c0[cpu] = load(w, _stat(w, cpu) + L.S_COMMIT)
                t0[cpu] = load(w, _truth(w, cpu, mm, k))
            v = read_approx(w, mm, k) if kind == 0 else read_precise(w, mm, k)
            lo = 0
            hi = 0
            window = 0
            for cpu in range(n):
                t1 = load(w, _truth(w, cpu, mm, k))
                var = load(w, _stat(w, cpu) + L.S_VAR) - c0[cpu]
                lo += max(t0[cpu], t1) - var
                hi += min(t0[cpu], t1) + var
                window += var
            out[i, 2 * kind] = signed_error(v, lo, hi)
            out[i, 2 * kind + 1] = window
