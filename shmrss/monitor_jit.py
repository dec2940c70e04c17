"""The compiled part of ``monitor_reads``: one pass of read-only loads over the shown mms of one design.

A template (``shmrss.specialise``): ``monitor_reads`` loads a copy per design
whose marked line binds that design's reads, named by a hash of every source
it compiles in, so numba's disk cache never serves code compiled from an
older design. The values are the design's ``peek_approx``, ``peek_bound`` and ``peek_precise``
(its own reads where they are loads): loads only (the monitor maps the segment read-only), never a
wait without end, never a call into a C library (the monitor has not loaded it).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load
from shmrss.designs.interface import bind

_NAMES = ("peek_approx", "peek_bound", "peek_precise")
peek_approx, peek_bound, peek_precise = bind("atomic", _NAMES)  # DESIGN-IMPORT

TRUTH, APPROX, UNDER, OVER, PRECISE, SETTLED = range(6)  # the fields of a snapshot (as monitor_reads)


@njit(inline="always")
def _truth(w, mm, k):
    """The true value of (mm, k): the sum of every CPU's truth word, read just before the design's reads."""
    s = 0
    for cpu in range(w[L.H_NCPU]):
        s += load(w, w[L.H_TRUTH] + cpu * w[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k)
    return s


@njit(cache=True)
def snap(w, mms, out):
    for i in range(mms.size):
        mm = mms[i]
        for k in range(L.NMEMBERS):
            out[i, k, TRUTH] = _truth(w, mm, k)
            out[i, k, APPROX] = peek_approx(w, mm, k)
            out[i, k, UNDER], out[i, k, OVER] = peek_bound(w, mm, k)
            out[i, k, PRECISE], out[i, k, SETTLED] = peek_precise(w, mm, k)
