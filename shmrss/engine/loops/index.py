"""Addresses of the engine's own records in the segment: a CPU's tally line, a task, a run queue."""

from numba import njit

from shmrss import layout as L


@njit(inline="always")
def _stat(seg, cpu):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE]


@njit(inline="always")
def _task(seg, t):
    return seg[L.H_TASK] + t * seg[L.H_TASK_STRIDE]


@njit(inline="always")
def _rq(seg, cpu):
    return seg[L.H_RQ] + cpu * seg[L.H_RQ_STRIDE]
