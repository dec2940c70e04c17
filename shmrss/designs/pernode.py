"""Design 6, ``pernode``: one atomic counter per NUMA node.

Update: ``lock xadd`` on the counter of the updating CPU's node (contention
only among that node's CPUs). A global approximate value is kept in batches
of 32 per node: when a node's counter has moved 32 or more from what the node
last reported, the updater folds the difference into the global value under
the node's fold lock (global first, then the reported mark, so the global
never lags behind a mark), and folds again until the count is within 32 of
the mark: a CPU that added between the folder's read of the count and its new
mark saw the old mark and did not fold (found by the reference-model work). Approximate read: the global value, within
``31 * nodes`` either way. Precise read: the sum of the node counters.

Nodes: from the host topology (the node of each emulated CPU's host CPU), or
``--nodes K`` to emulate K nodes on a one-node host (CPUs split in contiguous
blocks). The node of each emulated CPU is kept in the design's global words.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, spin_lock, spin_unlock, store, xadd, xchg
from shmrss.designs._common import (
    no_transient,
    no_thread_count,
    JOURNAL, doubt, dparam, hold, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, owner, release_if_held,
    settle_shared, tally,
)
from shmrss.segment import DesignShape

NAME = "pernode"
ID = 6
SUMMARY = "one atomic per NUMA node; global approximation folded in batches of 32 per node"
BOUND = "|approx - truth| <= 31 * nodes"

BATCH = 32
# node line: count[4], reported[4]; then one line for the global value and the nodes' fold locks
_COUNT, _REPORTED = 0, L.NMEMBERS


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    nnodes = (max(nodes) + 1) if nodes else 1
    return DesignShape(pcpu_words_per_mm=0, mm_words=(nnodes + 1) * line_words + nnodes,
                       global_words=ncpu, params=(nnodes,))


def setup(words, ncpu: int, nodes) -> None:
    """Write each emulated CPU's node into the global words."""
    base = int(words[L.H_GLOBAL])
    for cpu in range(ncpu):
        words[base + cpu] = nodes[cpu] if nodes else 0


@njit(inline="always")
def _node_line(seg, mm, node):
    return mm_word(seg, mm, node * seg[L.H_LINE])


@njit(inline="always")
def _global(seg, mm, k):
    return mm_word(seg, mm, dparam(seg, 0) * seg[L.H_LINE] + k)


@njit(inline="always")
def _fold_lock(seg, mm, node):
    return mm_word(seg, mm, (dparam(seg, 0) + 1) * seg[L.H_LINE] + node)


@njit(inline="always")
def _node_of(seg, cpu):
    return seg[seg[L.H_GLOBAL] + cpu] if cpu >= 0 else 0


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    node = _node_of(seg, cpu)
    nl = _node_line(seg, mm, node)
    jstep(seg, cpu, jf, _NODE_ADD)
    c = xadd(seg, nl + _COUNT + k, d) + d
    if abs(c - load(seg, nl + _REPORTED + k)) >= BATCH:
        lk = _fold_lock(seg, mm, node)
        jstep(seg, cpu, jf, _FOLD_LOCK)
        spin_lock(seg, lk, owner(cpu))
        _fold_locked(seg, cpu, mm, k, nl, jf)
        jstep(seg, cpu, jf, _FOLD_UNLOCK)
        spin_unlock(seg, lk)
        tally(seg, cpu, L.S_SLOW, 1)


@njit(inline="always")
def _fold_locked(seg, cpu, mm, k, nl, jf):
    """Under the node's fold lock: report the node's count to the global value until it is within a batch."""
    while True:
        c = load(seg, nl + _COUNT + k)
        r = load(seg, nl + _REPORTED + k)
        if abs(c - r) < BATCH:
            break
        jsave(seg, cpu, jf, L.J_A, c)
        jstep_save(seg, cpu, jf, _GLOBAL_ADD, L.J_B, r)
        xadd(seg, _global(seg, mm, k), c - r)
        # a full barrier (xchg) before the count is read again: another CPU that added after
        # that read will see this mark and fold itself; one that added before is caught here
        jstep(seg, cpu, jf, _MARK)
        xchg(seg, nl + _REPORTED + k, c)


_NODE_ADD, _FOLD_LOCK, _GLOBAL_ADD, _MARK, _FOLD_UNLOCK = 1, 2, 3, 4, 5  # kill points


@njit(inline="always")
def _refold(seg, mm, k, node):
    """The parent folds a node whose count drifted a batch from what it reported (as add would have)."""
    nl = _node_line(seg, mm, node)
    if abs(load(seg, nl + _COUNT + k) - load(seg, nl + _REPORTED + k)) >= BATCH:
        lk = _fold_lock(seg, mm, node)
        spin_lock(seg, lk, L.OWNER_PARENT)
        _fold_locked(seg, -1, mm, k, nl, 0)
        spin_unlock(seg, lk)


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update from its journal; returns the inconsistencies found.

    The node count's and the global value's ``lock xadd`` are left as doubts,
    settled when quiescent: by the precise sum and by "global = sum of what
    the nodes reported".
    """
    if op != L.JOP_ADD:
        return 0
    node = _node_of(seg, cpu)
    nl = _node_line(seg, mm, node)
    lk = _fold_lock(seg, mm, node)
    if step == _NODE_ADD:
        doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)  # the fold it may have needed follows the resolution
    elif step == _FOLD_LOCK:
        release_if_held(seg, lk, cpu)
        _refold(seg, mm, k, node)
    elif step == _GLOBAL_ADD or step == _MARK:
        hold(seg, lk, cpu)
        c = jget(seg, cpu, L.J_A)
        if step == _GLOBAL_ADD:
            doubt(seg, cpu, L.DOUBT_PERNODE, mm, k, c - jget(seg, cpu, L.J_B))
        store(seg, nl + _REPORTED + k, c)
        _fold_locked(seg, -1, mm, k, nl, 0)
        release_if_held(seg, lk, cpu)
    elif step == _FOLD_UNLOCK:
        release_if_held(seg, lk, cpu)
    return 0


@njit(inline="always")
def _reported_sum(seg, mm, k):
    s = 0
    for node in range(dparam(seg, 0)):
        s += seg[_node_line(seg, mm, node) + _REPORTED + k]
    return s


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    if kind == L.DOUBT_PRECISE:
        node = _node_of(seg, cpu)
        res = settle_shared(seg, _node_line(seg, mm, node) + _COUNT + k, d, residue)
        _refold(seg, mm, k, node)
        return res
    if kind == L.DOUBT_PERNODE:
        return settle_shared(seg, _global(seg, mm, k), d, seg[_global(seg, mm, k)] - _reported_sum(seg, mm, k))
    return L.RES_BAD


@njit(inline="always")
def release_locks(seg, who):
    for mm in range(seg[L.H_NMM]):
        for node in range(dparam(seg, 0)):
            if seg[_fold_lock(seg, mm, node)] == who:
                spin_unlock(seg, _fold_lock(seg, mm, node))


threads = no_thread_count  # no thread count


@njit(inline="always")
def consistent(seg):
    """Quiescent: the global value is what the nodes reported, and every node is within a batch of it."""
    bad = 0
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            if seg[_global(seg, mm, k)] != _reported_sum(seg, mm, k):
                bad += 1
            for node in range(dparam(seg, 0)):
                nl = _node_line(seg, mm, node)
                if abs(seg[nl + _COUNT + k] - seg[nl + _REPORTED + k]) >= BATCH:
                    bad += 1
    return bad


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    return load(seg, _global(seg, mm, k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    e = (BATCH - 1) * dparam(seg, 0)
    return e, e


@njit(inline="always")
def read_precise(seg, mm, k):
    s = 0
    for node in range(dparam(seg, 0)):
        s += load(seg, _node_line(seg, mm, node) + _COUNT + k)
    return s


@njit(inline="always")
def thread_created(seg, cpu, mm):
    pass


@njit(inline="always")
def task_exit(seg, cpu, task, mm):
    pass


@njit(inline="always")
def cpu_offline(seg, cpu):
    pass  # nothing is per CPU


@njit(inline="always")
def mm_init(seg, mm):
    for j in range((dparam(seg, 0) + 1) * seg[L.H_LINE] + dparam(seg, 0)):
        store(seg, mm_word(seg, mm, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


transient_slack = no_transient  # reads keep their stated bounds at every instant
