"""Design ``single-atomic``: Krisman's 2025 RFC, a local counter plus an atomic for remote updates.

"[RFC PATCH 0/4] Optimize rss_stat initialization/teardown for single-threaded
tasks" (Gabriel Krisman Bertazi, SUSE, 2025-11-27; seed 000's thread). The
cover letter: "since we know there won't be frequent remote updates of
rss_stats for single-threaded applications, we could special case it with a
local counter for most updates, and an atomic counter for the infrequent
remote updates". Patch 2/4 ("lib: Support lazy initialization of per-cpu
counters"): "a dual-mode counter. It starts with a two-part counter that can be
updated either from a local context ..." and becomes a full per-CPU counter
when needed; for rss_stat the mm is upgraded when it gets a second thread
(as reported of the series: a simple counter for one, the per-CPU counter once
threads arrive). Only the cover letter and the start of patch 2/4 could be
found; the code below follows those lines, the team's design notes (docs/designs.md) and issue
10. What the found text does not show, and is ours:

* the owner's update is a plain add to ``local[k]`` (no lock, no atomic); any
  other task's (or the reclaimer's) is one ``lock xadd`` on ``remote[k]``, no
  lock anywhere (unlike ``single``, Guzik 2023, whose remote words sit under
  ``mm->arg_lock``);
* the upgrade at the second thread (thread_created, by the only thread, so
  ``local`` cannot move under it): zero every possible CPU's slice (the
  per-CPU allocation the mm saved), seed each percpu ``count`` with
  ``local[k]`` (percpu_counter_init's ``amount``), then flip the mode. A
  remote updater that read the old mode may still ``xadd`` into ``remote``
  after the flip: ``remote`` is therefore never folded and stays part of
  every read (value = percpu value + remote), so nothing is lost and no lock
  is needed;
* reads: single mode ``local + remote`` (exact, bound 0), re-checking the
  mode afterwards; per-CPU mode percpu's reads plus ``remote``.

mm words: percpu's (lock, count) pairs first (percpu's functions work
unchanged), then a line with mode, thread count and remote[4] (written by
remote updaters), then a line with local[4] (written only by the owner).
Where the two RFCs do the same thing on the same words (the shape, the mode
test of a read, the bound, the thread count and its check, the exit, the
offline fold) this module uses ``single``'s functions rather than a copy.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_add, store, xadd
from shmrss.designs._common import (
    JOURNAL, doubt, jflag, jget, jstep, jstep_save, members_not_zero, mm_word, pcpu_word, settle,
    settle_shared, tally,
)
from shmrss.designs.percpu import (
    count_word as _pc_count, set_counters as _pc_set_counters,
    add as _pc_add, peek_precise as _pc_peek, read_approx as _pc_approx, read_precise as _pc_precise,
    recover as _pc_recover, release_locks as _pc_release_locks,
)
from shmrss.designs.single import (  # noqa: F401  (shape, approx_bound, ...: this design's interface too)
    PERCPU, SINGLE, _MODE, _NTHREADS, _local, _mode_line, _own, _w, approx_bound, own_words, consistent, cpu_offline, shape,
    single_mode_value, task_exit, threads,
)

NAME = "single-atomic"
ID = 8
SUMMARY = "single-threaded mode (local + atomic remote words, no lock), one-way switch to percpu at the 2nd thread"
BOUND = "single mode: 0; after the switch: percpu's N * (B - 1)"

# single's mm layout (the mode and thread count on the second line, the owner's words on the third), and
# single's shape, thread count, quiescent check, bound, exit and offline fold, which this design shares (the
# same kill point at the thread count's xadd); the remote words follow the thread count here (no lock word)
_REMOTE = 2


# kill points (percpu's 1..5 in per-CPU mode)
_LOCAL, _REMOTE_ADD, _NTHREADS_ADD = 11, 12, 16
_TP_ZERO, _TP_COUNTS, _TP_MODE = 21, 22, 23


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        if _own(seg, task, mm):
            jstep_save(seg, cpu, jf, _LOCAL, L.J_A, seg[_local(seg, mm, k)])
            local_add(seg, _local(seg, mm, k), d)  # the only thread: no lock, no atomic
            return
        jstep(seg, cpu, jf, _REMOTE_ADD)
        xadd(seg, _w(seg, mm, _REMOTE + k), d)  # the rare remote update: one atomic, no lock
        tally(seg, cpu, L.S_SLOW, 1)
        return
    _pc_add(seg, cpu, task, mm, k, d, fault)


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update or thread change from its journal; returns inconsistencies."""
    if op == L.JOP_ADD:
        if step < _LOCAL:
            return _pc_recover(seg, cpu, op, step, mm, k, d)
        if step == _LOCAL:
            old = jget(seg, cpu, L.J_A)
            return int(settle(seg, _local(seg, mm, k), old, old + d) == 2)
        if step == _REMOTE_ADD:  # the xadd may have landed: settled by conservation at quiescence
            doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)
        return 0
    if op != L.JOP_SCHED:
        return 0
    if step == _NTHREADS_ADD:
        doubt(seg, cpu, L.DOUBT_THREADS, mm, 0, 1 if k == L.OP_CLONE else -1)
    elif step >= _TP_ZERO and load(seg, _w(seg, mm, _MODE)) == SINGLE:
        # nobody touches the slices or the counts before the mode flips: the whole switch again
        _to_percpu(seg, -1, mm, 0)
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    if kind == L.DOUBT_THREADS:
        res = settle_shared(seg, _w(seg, mm, _NTHREADS), d, residue)
        if res != L.RES_BAD and d > 0 and seg[_w(seg, mm, _NTHREADS)] >= 2 and seg[_w(seg, mm, _MODE)] == SINGLE:
            _to_percpu(seg, -1, mm, 0)  # what the clone would have gone on to do
        return res
    if kind == L.DOUBT_PRECISE:
        return settle_shared(seg, _w(seg, mm, _REMOTE + k), d, residue)
    return L.RES_BAD


@njit(inline="always")
def release_locks(seg, who):
    _pc_release_locks(seg, who)  # single mode takes no lock


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    v, single_mode = single_mode_value(seg, mm, k, _REMOTE)
    if single_mode:
        return v
    return _pc_approx(seg, mm, k) + load(seg, _w(seg, mm, _REMOTE + k))


@njit(inline="always")
def read_precise(seg, mm, k):
    v, single_mode = single_mode_value(seg, mm, k, _REMOTE)
    if single_mode:
        return v
    return _pc_precise(seg, mm, k) + load(seg, _w(seg, mm, _REMOTE + k))


@njit(inline="always")
def _to_percpu(seg, cpu, mm, jf):
    # the per-CPU allocation the single mode saved until now: zero every possible CPU's slice
    jstep(seg, cpu, jf, _TP_ZERO)
    for c in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, c, mm, k), 0)
    _pc_set_counters(seg, mm)  # fbc->counters of the allocation: before the mode says per-CPU
    jstep(seg, cpu, jf, _TP_COUNTS)
    for k in range(L.NMEMBERS):  # percpu_counter_init(..., amount = local): the owner's words move over
        store(seg, _pc_count(seg, mm, k), load(seg, _local(seg, mm, k)))
    jstep(seg, cpu, jf, _TP_MODE)
    store(seg, _w(seg, mm, _MODE), PERCPU)


@njit(inline="always")
def thread_created(seg, cpu, mm):
    jf = jflag(seg, cpu)
    jstep(seg, cpu, jf, _NTHREADS_ADD)
    n = xadd(seg, _w(seg, mm, _NTHREADS), 1) + 1
    if n >= 2 and load(seg, _w(seg, mm, _MODE)) == SINGLE:
        _to_percpu(seg, cpu, mm, jf)


@njit(inline="always")
def mm_init(seg, mm):
    for j in range(_mode_line(seg) + 2 * seg[L.H_LINE]):  # the mm's own words only: no per-CPU memory yet
        store(seg, mm_word(seg, mm, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    # check_mm: one precise sum per member, remote included in both modes
    return members_not_zero(read_precise, seg, mm)


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value: as ``read_precise`` but one pass, no retry (it may race a mode switch);
    the percpu part is percpu's unlocked sum."""
    remote = load(seg, _w(seg, mm, _REMOTE + k))
    if load(seg, _w(seg, mm, _MODE)) == SINGLE:
        return load(seg, _local(seg, mm, k)) + remote, 1
    p, ok = _pc_peek(seg, mm, k)
    return p + remote, ok


def fits_header(h) -> bool:
    return h[L.H_LINE] >= 1 and h[L.H_MM_STRIDE] >= own_words(int(h[L.H_LINE])) and h[L.H_PCPU_KWORDS] >= L.NMEMBERS
