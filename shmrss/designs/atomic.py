"""Design 1, ``atomic``: one shared atomic per counter (the baseline).

Update: ``lock xadd`` on the mm's word. Reads: one load, exact (bound 0).
Every update from every CPU bounces the same line: the upper bound of
contention, and what a miss costs in the designs that cache.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, store, xadd
from shmrss.designs._common import (
    JOURNAL, doubt, jstep, members_not_zero, mm_word, settle_shared,
)
from shmrss.segment import DesignShape

NAME = "atomic"
ID = 1
SUMMARY = "one shared atomic per counter; lock xadd on every update"
BOUND = "0: the value is exact"


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    return DesignShape(pcpu_words_per_mm=0, mm_words=L.NMEMBERS)


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jstep(seg, cpu, fault & JOURNAL, _XADD)
    xadd(seg, mm_word(seg, mm, k), d)


_XADD = 1  # kill point


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update from its journal; returns the inconsistencies found."""
    if op == L.JOP_ADD and step == _XADD:
        doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)  # whether the xadd landed: only the sum can tell
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    return settle_shared(seg, mm_word(seg, mm, k), d, residue)


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    return load(seg, mm_word(seg, mm, k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    return 0, 0


@njit(inline="always")
def read_precise(seg, mm, k):
    return load(seg, mm_word(seg, mm, k))


@njit(inline="always")
def mm_init(seg, mm):
    for k in range(L.NMEMBERS):
        store(seg, mm_word(seg, mm, k), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


def fits_header(h) -> bool:
    return h[L.H_MM_STRIDE] >= L.NMEMBERS
