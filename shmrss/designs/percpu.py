"""Design 3, ``percpu``: upstream ``percpu_counter`` as used for mm->rss_stat since 6.2.

Per counter: a spinlock and an s64 ``count`` in the mm (the 4 members share
one line), and an s32-range value per possible CPU (the 4 members of one mm
packed together in each CPU's unit). Batch ``B = max(32, 2N)``.

Fast path (percpu_counter_add_batch): read this CPU's value c; while
``|c + d| < B`` try a lock-less ``cmpxchg`` of c -> c + d on the CPU's own word
(this_cpu_try_cmpxchg). Otherwise take the spinlock, ``count += c + d``,
``this_cpu -= c``, unlock.

Approximate read: ``count``; every CPU holds less than B in magnitude, so the
error is at most ``N * (B - 1)`` either way (O(N^2)). Precise read: under the
lock, count plus the values of the online CPUs (``--online-cpus``; the kernel
walks ``cpu_online_mask | cpu_dying_mask``, see ``read_precise``). CPU offline
folds the dead CPU's value into count under the lock, which is why a walk of
the online CPUs misses nothing. Allocation zeroes every possible CPU's slice.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_add, local_cmpxchg, spin_lock, spin_unlock, store
from shmrss.designs._common import (
    JOURNAL, dparam, hold, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, owner, pcpu_word,
    release_if_held, settle, tally,
)
from shmrss.segment import DesignShape

NAME = "percpu"
ID = 3
SUMMARY = "upstream percpu_counter: per-CPU s32 with batch max(32, 2N), spinlock slow path"
BOUND = "|approx - truth| <= N * (B - 1), B = max(32, 2N)"

# per-mm words: member k's lock at 2k, its count at 2k + 1
_LOCK, _COUNT = 0, 1


def batch_for(online: int) -> int:
    """compute_batch_value (lib/percpu_counter.c): ``percpu_counter_batch = max(32, nr * 2)``, nr online."""
    return max(32, 2 * online)


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    online = (options or {}).get("online_cpus") or possible  # percpu_counter_batch: num_online_cpus()
    return DesignShape(pcpu_words_per_mm=L.NMEMBERS, mm_words=2 * L.NMEMBERS, params=(batch_for(online),))


@njit(inline="always")
def _lock(seg, mm, k):
    return mm_word(seg, mm, 2 * k + _LOCK)


@njit(inline="always")
def _count(seg, mm, k):
    return mm_word(seg, mm, 2 * k + _COUNT)


# kill points (the journal's steps); single.py reuses this add in per-CPU mode
P_FAST, P_LOCK, P_COUNT, P_SUB, P_UNLOCK = 1, 2, 3, 4, 5


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    batch = dparam(seg, 0)
    w = pcpu_word(seg, cpu, mm, k)
    c = load(seg, w)
    while True:
        if abs(c + d) >= batch:
            lk = _lock(seg, mm, k)
            jstep(seg, cpu, jf, P_LOCK)
            spins = spin_lock(seg, lk, owner(cpu))
            c = load(seg, w)
            jsave(seg, cpu, jf, L.J_A, c)
            jstep_save(seg, cpu, jf, P_COUNT, L.J_B, load(seg, _count(seg, mm, k)))
            local_add(seg, _count(seg, mm, k), c + d)
            jstep(seg, cpu, jf, P_SUB)
            local_add(seg, w, -c)
            jstep(seg, cpu, jf, P_UNLOCK)
            spin_unlock(seg, lk)
            tally(seg, cpu, L.S_SLOW, 1)
            if spins:
                tally(seg, cpu, L.S_SPINS, spins)
            return
        jstep_save(seg, cpu, jf, P_FAST, L.J_A, c)
        seen = local_cmpxchg(seg, w, c, c + d)
        if seen == c:
            return
        c = seen


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update from its journal; returns the inconsistencies found.

    Every step touches the CPU's own word or a word under the counter's lock,
    so the saved old values tell whether it ran: no doubt is left.
    """
    if op != L.JOP_ADD or step < P_FAST or step > P_UNLOCK:
        return 0
    w = pcpu_word(seg, cpu, mm, k)
    lk = _lock(seg, mm, k)
    c = jget(seg, cpu, L.J_A)
    if step == P_FAST:
        return int(settle(seg, w, c, c + d) == 2)
    if step == P_LOCK:  # nothing changed yet: let go of the lock if it was taken, then do it all
        release_if_held(seg, lk, cpu)
        add(seg, cpu, -1, mm, k, d, 0)
        return 0
    hold(seg, lk, cpu)
    bad = 0
    if step == P_COUNT:
        cnt = jget(seg, cpu, L.J_B)
        bad += int(settle(seg, _count(seg, mm, k), cnt, cnt + c + d) == 2)
    if step <= P_SUB:
        bad += int(settle(seg, w, c, 0) == 2)
    release_if_held(seg, lk, cpu)
    return bad


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    return L.RES_BAD  # recover() leaves no doubt


@njit(inline="always")
def release_locks(seg, who):
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            if seg[_lock(seg, mm, k)] == who:
                spin_unlock(seg, _lock(seg, mm, k))


@njit(inline="always")
def consistent(seg):
    """Quiescent: every CPU's value is below the batch (what the approximate bound rests on)."""
    bad = 0
    batch = dparam(seg, 0)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            for cpu in range(seg[L.H_POSSIBLE]):
                if abs(seg[pcpu_word(seg, cpu, mm, k)]) >= batch:
                    bad += 1
    return bad


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    return load(seg, _count(seg, mm, k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    """Every online CPU's word is below the batch: ``N * (B - 1)`` either way, N the online CPUs."""
    e = seg[L.H_ONLINE] * (dparam(seg, 0) - 1)
    return e, e


@njit(inline="always")
def read_precise(seg, mm, k):
    """__percpu_counter_sum: the online CPUs (0..H_ONLINE-1), not the possible ones. lib/percpu_counter.c::

        raw_spin_lock_irqsave(&fbc->lock, flags);
        ret = fbc->count;
        for_each_cpu_or(cpu, cpu_online_mask, cpu_dying_mask) {
            s32 *pcount = per_cpu_ptr(fbc->counters, cpu);
            ret += *pcount;
        }

    (no CPU is dying here: an emulated CPU taken offline is folded by ``cpu_offline`` first).
    """
    lk = _lock(seg, mm, k)
    spin_lock(seg, lk, L.OWNER_READER)
    s = _sum(seg, mm, k)
    spin_unlock(seg, lk)
    return s


@njit(inline="always")
def _sum(seg, mm, k):
    s = load(seg, _count(seg, mm, k))
    for cpu in range(seg[L.H_ONLINE]):
        s += load(seg, pcpu_word(seg, cpu, mm, k))
    return s


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value: ``read_precise``'s sum without the spinlock (a store the monitor's
    read-only mapping cannot make); exact when no CPU is in the slow path at that moment."""
    return _sum(seg, mm, k), 1


@njit(inline="always")
def cpu_offline(seg, cpu):
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            lk = _lock(seg, mm, k)
            spin_lock(seg, lk, L.OWNER_PARENT)
            w = pcpu_word(seg, cpu, mm, k)
            local_add(seg, _count(seg, mm, k), load(seg, w))
            store(seg, w, 0)
            spin_unlock(seg, lk)


@njit(inline="always")
def mm_init(seg, mm):
    for k in range(L.NMEMBERS):
        store(seg, _lock(seg, mm, k), 0)
        store(seg, _count(seg, mm, k), 0)
    # the per-CPU allocator zeroes every possible CPU's slice (mm/percpu.c pcpu_alloc:
    # "for_each_possible_cpu(cpu) memset((void *)pcpu_chunk_addr(chunk, cpu, 0) + off, 0, size);")
    for cpu in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, cpu, mm, k), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    # check_mm (kernel/fork.c): one summing loop per counter over the online CPUs,
    # "long x = percpu_counter_sum(&mm->rss_stat[i]);" for each of the NR_MM_COUNTERS
    return members_not_zero(read_precise, seg, mm)


def fits_header(h) -> bool:
    """The count, lock and per-CPU words this design indexes lie inside their regions."""
    return h[L.H_MM_STRIDE] >= 2 * L.NMEMBERS and h[L.H_PCPU_KWORDS] >= L.NMEMBERS
