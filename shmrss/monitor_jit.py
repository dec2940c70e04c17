"""The compiled part of ``monitor_reads``: per design, one pass of read-only loads over the shown mms.

Not imported under this name: ``monitor_reads`` loads a copy named by a hash
of every source it inlines (this file, ``monitor_reads``, the designs, the
intrinsics, the layout), as ``engine`` does for the engine loop, so numba's disk cache can be
used without ever serving code compiled from an older design.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, rdtsc
from shmrss.designs import atomic, pcpcache, percpu, pernode, single, single_atomic, split, tree
from shmrss.designs._common import mm_word, pcpu_word, task_word
from shmrss.monitor_reads import APPROX, ATTEMPTS, OVER, PRECISE, SETTLED, TRUTH, UNDER


@njit(inline="always")
def _truth(w, mm, k):
    """The true value of (mm, k): the sum of every CPU's truth word, read just before the design's reads."""
    s = 0
    for cpu in range(w[L.H_NCPU]):
        s += load(w, w[L.H_TRUTH] + cpu * w[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k)
    return s


@njit(inline="always")
def _put(out, i, k, t, a, u, o, p, settled):
    out[i, k, TRUTH] = t
    out[i, k, APPROX] = a
    out[i, k, UNDER] = u
    out[i, k, OVER] = o
    out[i, k, PRECISE] = p
    out[i, k, SETTLED] = settled


@njit(cache=True)
def _snap_atomic(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            u, o = atomic.approx_bound(w, mms[i], k)
            _put(out, i, k, t, atomic.read_approx(w, mms[i], k), u, o, atomic.read_precise(w, mms[i], k), 1)


@njit(cache=True)
def _snap_pernode(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            u, o = pernode.approx_bound(w, mms[i], k)
            _put(out, i, k, t, pernode.read_approx(w, mms[i], k), u, o, pernode.read_precise(w, mms[i], k), 1)


@njit(cache=True)
def _snap_tree(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            u, o = tree.approx_bound(w, mms[i], k)
            _put(out, i, k, t, tree.read_approx(w, mms[i], k), u, o, tree.read_precise(w, mms[i], k), 1)


@njit(inline="always")
def _percpu_sum(w, mm, k):
    """percpu's precise sum without its spinlock: count plus every online CPU's word (as __percpu_counter_sum)."""
    s = load(w, percpu._count(w, mm, k))
    for cpu in range(w[L.H_ONLINE]):
        s += load(w, pcpu_word(w, cpu, mm, k))
    return s


@njit(cache=True)
def _snap_percpu(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            u, o = percpu.approx_bound(w, mms[i], k)
            _put(out, i, k, t, percpu.read_approx(w, mms[i], k), u, o, _percpu_sum(w, mms[i], k), 1)


@njit(cache=True)
def _snap_single(w, mms, out):
    for i in range(mms.size):
        mm = mms[i]
        for k in range(L.NMEMBERS):
            t = _truth(w, mm, k)
            u, o = single.approx_bound(w, mm, k)
            a = single.read_approx(w, mm, k)
            if load(w, single._w(w, mm, single._MODE)) == single.SINGLE:
                p = load(w, single._local(w, mm, k)) + load(w, single._w(w, mm, single._REMOTE + k))
            else:
                p = _percpu_sum(w, mm, k)
            _put(out, i, k, t, a, u, o, p, 1)


@njit(cache=True)
def _snap_single_atomic(w, mms, out):
    for i in range(mms.size):
        mm = mms[i]
        for k in range(L.NMEMBERS):
            t = _truth(w, mm, k)
            u, o = single_atomic.approx_bound(w, mm, k)
            a = single_atomic.read_approx(w, mm, k)
            remote = load(w, single_atomic._w(w, mm, single_atomic._REMOTE + k))
            if load(w, single_atomic._w(w, mm, single_atomic._MODE)) == single_atomic.SINGLE:
                p = load(w, single_atomic._local(w, mm, k)) + remote
            else:
                p = _percpu_sum(w, mm, k) + remote
            _put(out, i, k, t, a, u, o, p, 1)


@njit(inline="always")
def _split_precise(w, mm, k):
    """split's precise read (atomic + every thread's cache inside the sequence counts), bounded."""
    s = 0
    for _ in range(ATTEMPTS):
        ok = True
        seqs = 0
        s = 0
        for t in range(w[L.H_NTASK]):
            if not split._own(w, t, mm):
                continue
            s0 = load(w, task_word(w, t, split._SEQ))
            if s0 & 1:
                ok = False
                break
            c = load(w, task_word(w, t, split._CACHE + k))
            if load(w, task_word(w, t, split._SEQ)) != s0:
                ok = False
                break
            seqs += s0
            s += c
        if not ok:
            continue
        s += load(w, mm_word(w, mm, k))
        after = 0
        for t in range(w[L.H_NTASK]):
            if split._own(w, t, mm):
                after += load(w, task_word(w, t, split._SEQ))
        if after == seqs:
            return s, 1
    return s, 0


@njit(cache=True)
def _snap_split(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            u, o = split.approx_bound(w, mms[i], k)
            p, settled = _split_precise(w, mms[i], k)
            _put(out, i, k, t, split.read_approx(w, mms[i], k), u, o, p, settled)


@njit(cache=True)
def _snap_pcpcache(w, mms, out):
    for i in range(mms.size):
        for k in range(L.NMEMBERS):
            t = _truth(w, mms[i], k)
            v = pcpcache.read_precise(w, mms[i], k)  # the RFC's get_mm_counter: no protocol to settle
            _put(out, i, k, t, v, 0, 0, v, 1)


@njit(cache=True)
def tsc_now():
    return rdtsc()


_SNAP = {"atomic": _snap_atomic, "split": _snap_split, "percpu": _snap_percpu, "pcpcache": _snap_pcpcache,
         "single": _snap_single, "single-atomic": _snap_single_atomic, "pernode": _snap_pernode,
         "tree": _snap_tree}
