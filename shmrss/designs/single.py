"""Design 5, ``single``: single-threaded mode with a one-way switch to per-CPU (2023 proposal, 2025 RFC).

While the mm has one thread: ``local[4]``, updated by that thread with plain
adds, and ``remote[4]``, updated by anyone else under ``arg_lock``; the value
is local + remote and no per-CPU rss memory is touched (mm_init zeroes nothing
per CPU). When a second thread is created, the creating thread switches the
mm, once and for good, to ``percpu``: it zeroes the per-CPU slices (the lazy
allocation), then under ``arg_lock`` seeds each percpu count with local +
remote and flips the mode. A remote updater holds ``arg_lock`` while it checks
the mode and updates, so it either lands before the switch (and is folded)
or sees the new mode (and goes per-CPU): nothing is lost. local and remote are
frozen, never cleared, so a reader that saw single mode and then sees the
mode changed simply retries on the per-CPU counters.

mm words: percpu's four ``struct percpu_counter`` first (so percpu's functions
work unchanged; their ``counters`` pointers are set by the switch, which is
when the per-CPU memory is allocated), then, from the next line, a line with
mode, thread count, arg_lock and remote[4], then a line with local[4]
(written only by the owner thread).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_add, spin_lock, spin_unlock, store, xadd
from shmrss.designs._common import (
    JOURNAL, jflag, doubt, hold, jget, jstep, jstep_save, members_not_zero, mm_word, owner, pcpu_word,
    release_if_held, settle, settle_shared, tally,
)
from shmrss.designs.percpu import (
    MM_WORDS as _PC_WORDS, count_word as _pc_count, set_counters as _pc_set_counters,
    add as _pc_add, approx_bound as _pc_bound, consistent as _pc_consistent, cpu_offline as _pc_offline,
    mm_destroy as _pc_destroy, read_approx as _pc_approx, peek_precise as _pc_peek, read_precise as _pc_precise, recover as _pc_recover,
    release_locks as _pc_release_locks, mask_words as _pc_mask_words, params_for as _pc_params,
)
from shmrss.segment import DesignShape

NAME = "single"
ID = 5
SUMMARY = "single-threaded mode (local + locked remote words), one-way switch to percpu at the 2nd thread"
BOUND = "single mode: 0; after the switch: percpu's N * (B - 1)"

SINGLE, PERCPU = 0, 1
_MODE, _NTHREADS, _ARG_LOCK, _REMOTE = 0, 1, 2, 3  # on the second line


def own_words(line_words: int) -> int:
    """The mm's words: percpu's structs rounded up to whole lines, then the mode line and the local line."""
    return -(-_PC_WORDS // line_words) * line_words + 2 * line_words


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    return DesignShape(pcpu_words_per_mm=L.NMEMBERS, mm_words=own_words(line_words),
                       global_words=_pc_mask_words(possible),
                       params=_pc_params((options or {}).get("online_cpus") or possible))


@njit(inline="always")
def _mode_line(seg):
    """The first word after percpu's structs, rounded up to a line."""
    lw = seg[L.H_LINE]
    return (_PC_WORDS + lw - 1) // lw * lw


@njit(inline="always")
def _w(seg, mm, j):
    return mm_word(seg, mm, _mode_line(seg) + j)


@njit(inline="always")
def _local(seg, mm, k):
    return mm_word(seg, mm, _mode_line(seg) + seg[L.H_LINE] + k)


@njit(inline="always")
def _own(seg, task, mm):
    return task >= 0 and seg[seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_MM] == mm


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        if _own(seg, task, mm):
            jstep_save(seg, cpu, jf, _LOCAL, L.J_A, seg[_local(seg, mm, k)])
            local_add(seg, _local(seg, mm, k), d)  # the only thread: no lock, no atomic
            return
        lk = _w(seg, mm, _ARG_LOCK)
        jstep(seg, cpu, jf, _LOCK)
        spin_lock(seg, lk, owner(cpu))
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            jstep_save(seg, cpu, jf, _REMOTE_ADD, L.J_A, seg[_w(seg, mm, _REMOTE + k)])
            local_add(seg, _w(seg, mm, _REMOTE + k), d)
            jstep(seg, cpu, jf, _UNLOCK)
            spin_unlock(seg, lk)
            tally(seg, cpu, L.S_SLOW, 1)
            return
        jstep(seg, cpu, jf, _UNLOCK_SWITCHED)
        spin_unlock(seg, lk)
    _pc_add(seg, cpu, task, mm, k, d, fault)


# kill points (percpu's 1..5 in per-CPU mode)
_LOCAL, _LOCK, _REMOTE_ADD, _UNLOCK, _UNLOCK_SWITCHED, _NTHREADS_ADD = 11, 12, 13, 14, 15, 16
_TP_ZERO, _TP_LOCK, _TP_COUNTS, _TP_MODE, _TP_UNLOCK = 21, 22, 23, 24, 25


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update or thread change from its journal; returns inconsistencies."""
    lk = _w(seg, mm, _ARG_LOCK)
    if op == L.JOP_ADD:
        if step < _LOCAL:
            return _pc_recover(seg, cpu, op, step, mm, k, d)
        if step == _LOCAL:
            old = jget(seg, cpu, L.J_A)
            return int(settle(seg, _local(seg, mm, k), old, old + d) == 2)
        if step == _LOCK or step == _UNLOCK_SWITCHED:  # nothing changed yet: do it all again
            release_if_held(seg, lk, cpu)
            add(seg, cpu, -1, mm, k, d, 0)
            return 0
        bad = 0
        if step == _REMOTE_ADD:
            old = jget(seg, cpu, L.J_A)
            bad = int(settle(seg, _w(seg, mm, _REMOTE + k), old, old + d) == 2)
        release_if_held(seg, lk, cpu)
        return bad
    if op != L.JOP_SCHED:
        return 0
    if step == _NTHREADS_ADD:
        doubt(seg, cpu, L.DOUBT_THREADS, mm, 0, 1 if k == L.OP_CLONE else -1)
    elif step == _TP_ZERO or step == _TP_LOCK:
        release_if_held(seg, lk, cpu)
        _to_percpu(seg, -1, mm, 0)
    elif step >= _TP_COUNTS:
        hold(seg, lk, cpu)
        if step == _TP_COUNTS:
            _set_counts(seg, mm)
        store(seg, _w(seg, mm, _MODE), PERCPU)
        release_if_held(seg, lk, cpu)
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    if kind == L.DOUBT_THREADS:
        res = settle_shared(seg, _w(seg, mm, _NTHREADS), d, residue)
        if res != L.RES_BAD and d > 0 and seg[_w(seg, mm, _NTHREADS)] >= 2 and seg[_w(seg, mm, _MODE)] == SINGLE:
            _to_percpu(seg, -1, mm, 0)  # what the clone would have gone on to do
        return res
    return L.RES_BAD


@njit(inline="always")
def release_locks(seg, who):
    for mm in range(seg[L.H_NMM]):
        if seg[_w(seg, mm, _ARG_LOCK)] == who:
            spin_unlock(seg, _w(seg, mm, _ARG_LOCK))
    _pc_release_locks(seg, who)


@njit(inline="always")
def threads(seg, mm):
    return seg[_w(seg, mm, _NTHREADS)]


@njit(inline="always")
def consistent(seg):
    """Quiescent: no mm with two threads is still in single mode; per-CPU values below the batch."""
    bad = 0
    for mm in range(seg[L.H_NMM]):
        if seg[_w(seg, mm, _NTHREADS)] >= 2 and seg[_w(seg, mm, _MODE)] == SINGLE:
            bad += 1
    return bad + _pc_consistent(seg)


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def single_mode_value(seg, mm, k, remote):
    """(local + remote word ``remote + k``, True) when the mm was in single mode before and after the
    loads, else (0, False): the mode only moves forward, so the value is then the counter's (single and
    single-atomic, whose remote words sit at different offsets)."""
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        v = load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, remote + k))
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            return v, True
    return 0, False


@njit(inline="always")
def read_approx(seg, mm, k):
    v, single_mode = single_mode_value(seg, mm, k, _REMOTE)
    if single_mode:
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
        spin_lock(seg, lk, L.OWNER_READER)
        if load(seg, _w(seg, mm, _MODE)) == SINGLE:
            v = load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k))
            spin_unlock(seg, lk)
            return v
        spin_unlock(seg, lk)
    return _pc_precise(seg, mm, k)


@njit(inline="always")
def _set_counts(seg, mm):
    for k in range(L.NMEMBERS):
        store(seg, _pc_count(seg, mm, k), load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k)))


@njit(inline="always")
def _to_percpu(seg, cpu, mm, jf):
    # the per-CPU allocation the single mode saved until now: zero every possible CPU's slice
    jstep(seg, cpu, jf, _TP_ZERO)
    for c in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, c, mm, k), 0)
    _pc_set_counters(seg, mm)  # fbc->counters of the allocation: before the mode says per-CPU
    lk = _w(seg, mm, _ARG_LOCK)
    jstep(seg, cpu, jf, _TP_LOCK)
    spin_lock(seg, lk, owner(cpu))
    jstep(seg, cpu, jf, _TP_COUNTS)
    _set_counts(seg, mm)
    jstep(seg, cpu, jf, _TP_MODE)
    store(seg, _w(seg, mm, _MODE), PERCPU)
    jstep(seg, cpu, jf, _TP_UNLOCK)
    spin_unlock(seg, lk)


@njit(inline="always")
def thread_created(seg, cpu, mm):
    jf = jflag(seg, cpu)
    jstep(seg, cpu, jf, _NTHREADS_ADD)
    n = xadd(seg, _w(seg, mm, _NTHREADS), 1) + 1
    if n >= 2 and load(seg, _w(seg, mm, _MODE)) == SINGLE:
        _to_percpu(seg, cpu, mm, jf)


@njit(inline="always")
def task_exit(seg, cpu, task, mm):
    jstep(seg, cpu, jflag(seg, cpu), _NTHREADS_ADD)
    xadd(seg, _w(seg, mm, _NTHREADS), -1)


@njit(inline="always")
def cpu_offline(seg, cpu):
    # single-mode mms have never touched their per-CPU words: folding their zeros is harmless
    _pc_offline(seg, cpu)


@njit(inline="always")
def mm_init(seg, mm):
    for j in range(_mode_line(seg) + 2 * seg[L.H_LINE]):
        store(seg, mm_word(seg, mm, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        return members_not_zero(read_precise, seg, mm)
    return _pc_destroy(seg, mm)


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value without the argument lock (a store): local + remote in single mode,
    percpu's unlocked sum after the switch; exact when no update is in flight."""
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        return load(seg, _local(seg, mm, k)) + load(seg, _w(seg, mm, _REMOTE + k)), 1
    return _pc_peek(seg, mm, k)


def fits_header(h) -> bool:
    return h[L.H_LINE] >= 1 and h[L.H_MM_STRIDE] >= own_words(int(h[L.H_LINE])) and h[L.H_PCPU_KWORDS] >= L.NMEMBERS
