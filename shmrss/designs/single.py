"""Design 5, ``single``: single-threaded mode with a one-way switch to per-CPU (2023 proposal, 2025 RFC).

While the mm has one thread: ``local[4]``, updated by that thread with plain
adds, and ``remote[4]``, updated by anyone else under ``arg_lock``; the value
is local + remote and no per-CPU memory is touched (mm_init zeroes nothing
per CPU). When a second thread is created, the creating thread switches the
mm, once and for good, to ``percpu``: it zeroes the per-CPU slices (the lazy
allocation), then under ``arg_lock`` seeds each percpu count with local +
remote and flips the mode. A remote updater holds ``arg_lock`` while it checks
the mode and updates, so it either lands before the switch (and is folded)
or sees the new mode (and goes per-CPU): nothing is lost. local and remote are
frozen, never cleared, so a reader that saw single mode and then sees the
mode changed simply retries on the per-CPU counters.

mm words: percpu's (lock, count) pairs first (so percpu's functions work
unchanged), then a line with mode, thread count, arg_lock and remote[4],
then a line with local[4] (written only by the owner thread).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_add, spin_lock, spin_unlock, store, xadd
from shmrss.designs._common import members_not_zero, mm_word, pcpu_word, tally
from shmrss.designs.percpu import (
    add as _pc_add, approx_bound as _pc_bound, batch_for, cpu_offline as _pc_offline,
    mm_destroy as _pc_destroy, read_approx as _pc_approx, read_precise as _pc_precise,
)
from shmrss.segment import DesignShape

NAME = "single"
ID = 5
SUMMARY = "single-threaded mode (local + locked remote words), one-way switch to percpu at the 2nd thread"
BOUND = "single mode: 0; after the switch: percpu's N * (B - 1)"

SINGLE, PERCPU = 0, 1
_MODE, _NTHREADS, _ARG_LOCK, _REMOTE = 0, 1, 2, 3  # on the second line


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    return DesignShape(pcpu_words_per_mm=L.NMEMBERS, mm_words=3 * line_words, params=(batch_for(ncpu),))


@njit(inline="always")
def _w(seg, mm, j):
    return mm_word(seg, mm, seg[L.H_LINE] + j)


@njit(inline="always")
def _local(seg, mm, k):
    return mm_word(seg, mm, 2 * seg[L.H_LINE] + k)


@njit(inline="always")
def _own(seg, task, mm):
    return task >= 0 and seg[seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_MM] == mm


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        if _own(seg, task, mm):
            local_add(seg, _local(seg, mm, k), d)  # the only thread: no lock, no atomic
            return
        lk = _w(seg, mm, _ARG_LOCK)
        spin_lock(seg, lk)
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            local_add(seg, _w(seg, mm, _REMOTE + k), d)
            spin_unlock(seg, lk)
            tally(seg, cpu, L.S_SLOW, 1)
            return
        spin_unlock(seg, lk)
    _pc_add(seg, cpu, task, mm, k, d, fault)


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        v = load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k))
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            return v
    return _pc_approx(seg, mm, k)


@njit(inline="always")
def approx_bound(seg, mm, k):
    # the reader asks after reading; the mode only moves forward, so a read taken in
    # single mode is never judged by a tighter bound than the one it had
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        return 0, 0
    return _pc_bound(seg, mm, k)


@njit(inline="always")
def read_precise(seg, mm, k):
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        lk = _w(seg, mm, _ARG_LOCK)
        spin_lock(seg, lk)
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            v = load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k))
            spin_unlock(seg, lk)
            return v
        spin_unlock(seg, lk)
    return _pc_precise(seg, mm, k)


@njit(inline="always")
def _to_percpu(seg, mm):
    # the per-CPU allocation the single mode saved until now: zero every possible CPU's slice
    for cpu in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, cpu, mm, k), 0)
    lk = _w(seg, mm, _ARG_LOCK)
    spin_lock(seg, lk)
    for k in range(L.NMEMBERS):
        store(seg, mm_word(seg, mm, 2 * k + 1), load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k)))
    store(seg, _w(seg, mm, _MODE), PERCPU)
    spin_unlock(seg, lk)


@njit(inline="always")
def thread_created(seg, cpu, mm):
    n = xadd(seg, _w(seg, mm, _NTHREADS), 1) + 1
    if n >= 2 and load(seg, _w(seg, mm, _MODE)) == SINGLE:
        _to_percpu(seg, mm)


@njit(inline="always")
def task_exit(seg, cpu, task, mm):
    xadd(seg, _w(seg, mm, _NTHREADS), -1)


@njit(inline="always")
def cpu_offline(seg, cpu):
    # single-mode mms have never touched their per-CPU words: folding their zeros is harmless
    _pc_offline(seg, cpu)


@njit(inline="always")
def mm_init(seg, mm):
    for j in range(3 * seg[L.H_LINE]):
        store(seg, mm_word(seg, mm, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        return members_not_zero(read_precise, seg, mm)
    return _pc_destroy(seg, mm)
