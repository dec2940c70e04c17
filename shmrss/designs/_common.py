"""Address arithmetic and tallies shared by the compiled designs.

Every function is inlined into the design's code; the segment header is read
through constant slots, so an address is a few loads from a read-only line.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import local_add


@njit(inline="always")
def pcpu_word(seg, cpu, mm, j):
    """Word j of mm's per-CPU slice in CPU cpu's unit (interleaved across CPUs with --pack)."""
    k = mm * seg[L.H_PCPU_KWORDS] + j
    return seg[L.H_PCPU] + cpu * seg[L.H_PCPU_CSTRIDE] + k * seg[L.H_PCPU_KSTRIDE]


@njit(inline="always")
def mm_word(seg, mm, j):
    return seg[L.H_MM] + mm * seg[L.H_MM_STRIDE] + j


@njit(inline="always")
def task_word(seg, task, j):
    return seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_DESIGN + j


@njit(inline="always")
def stat_word(seg, cpu, field):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE] + field


@njit(inline="always")
def tally(seg, cpu, field, n):
    """Count a rare event (slow path, miss, lock spin) on the CPU's own tally line."""
    if cpu >= 0:
        local_add(seg, stat_word(seg, cpu, field), n)


@njit(inline="always")
def dparam(seg, i):
    return seg[L.H_DPARAM + i]


@njit(inline="always")
def members_not_zero(read_precise, seg, mm):
    """check_mm's teardown test: how many members of mm do not sum to 0 (one precise sum each)."""
    bad = 0
    for k in range(L.NMEMBERS):
        if read_precise(seg, mm, k) != 0:
            bad += 1
    return bad
