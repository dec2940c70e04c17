"""Design 4, ``pcpcache``: a per-CPU cache of the running mm, flushed on mm switch (RFC, 2022).

Each CPU keeps ``(mm, seq, delta[4])`` on its own line (the design's global
region, one line per possible CPU). An update to the CPU's cached mm is a
plain add to its delta (a hit); any other update is a ``lock xadd`` on the
mm's atomic (a miss: remote updates, the reclaimer). On mm switch the CPU
flushes its deltas into the old mm's atomics and caches the new mm, setting
its bit in the new mm's cpumask (the CPUs the mm has run on; never cleared).

Read (the RFC's get_mm_counter, used as both the approximate and the precise
read, bound 0): the mm's atomic plus the delta of every CPU in the mm's
cpumask whose cached mm is this mm. Protocol against a concurrent flush: the
flush runs inside the CPU's sequence count (odd while flushing). The reader
reads each CPU's (seq, mm, delta), waiting while seq is odd, then the atomic,
then checks that the sum of those CPUs' sequence counts is unchanged (they
only grow), and retries otherwise: no flush can have moved a delta between
the two reads, so it is counted exactly once.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import cmpxchg, load, local_add, pause, store, xadd
from shmrss.designs._common import (
    no_transient,
    no_locks, no_thread_count,
    JOURNAL, jflag, doubt, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, settle, settle_shared, tally,
)
from shmrss.segment import DesignShape

NAME = "pcpcache"
ID = 4
SUMMARY = "per-CPU cache of the running mm, flushed on mm switch; readers walk mm_cpumask"
BOUND = "0: the read sums the cached deltas (sequence-count protocol against flushes)"

# per-CPU line: cached mm + 1 (0: none, so a zeroed segment caches nothing), sequence count, delta[4]
_MM, _SEQ, _DELTA = 0, 1, 2
# mm words: atomic[4] on the first line, the cpumask from the second line on
MAX_RETRIES = 1000


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    mask_words = -(-possible // 64)
    return DesignShape(pcpu_words_per_mm=0, mm_words=line_words + mask_words, global_words=possible * line_words)


@njit(inline="always")
def _pc(seg, cpu):
    return seg[L.H_GLOBAL] + cpu * seg[L.H_LINE]


@njit(inline="always")
def _mask(seg, mm, i):
    return mm_word(seg, mm, seg[L.H_LINE] + i)


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    if cpu >= 0:
        g = _pc(seg, cpu)
        if seg[g + _MM] == mm + 1:
            jstep_save(seg, cpu, jf, _HIT, L.J_A, seg[g + _DELTA + k])
            local_add(seg, g + _DELTA + k, d)
            tally(seg, cpu, L.S_HITS, 1)
            return
    jstep(seg, cpu, jf, _MISS)
    xadd(seg, mm_word(seg, mm, k), d)
    tally(seg, cpu, L.S_MISSES, 1)


@njit(inline="always")
def _set_mask_bit(seg, mm, cpu):
    w = _mask(seg, mm, cpu >> 6)
    bit = 1 << (cpu & 63)
    old = load(seg, w)
    while not old & bit:
        seen = cmpxchg(seg, w, old, old | bit)
        if seen == old:
            break
        old = seen


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    jf = jflag(seg, cpu)
    g = _pc(seg, cpu)
    seq = seg[g + _SEQ]
    jstep_save(seg, cpu, jf, _SEQ_ODD, L.J_A, seq)
    store(seg, g + _SEQ, seq + 1)
    _flush_and_switch(seg, cpu, new_mm, seq, jf)


@njit(inline="always")
def _flush_and_switch(seg, cpu, new_mm, seq, jf):
    """The switch after the sequence count went odd: flush the cached mm's deltas, cache new_mm."""
    g = _pc(seg, cpu)
    cached = seg[g + _MM] - 1
    if cached >= 0:
        for k in range(L.NMEMBERS):
            dk = seg[g + _DELTA + k]
            if dk != 0:
                jsave(seg, cpu, jf, L.J_C, k)
                jstep(seg, cpu, jf, _FLUSH)
                xadd(seg, mm_word(seg, cached, k), dk)
                jstep(seg, cpu, jf, _ZERO)
                store(seg, g + _DELTA + k, 0)
    if new_mm >= 0:
        _set_mask_bit(seg, new_mm, cpu)
    jstep(seg, cpu, jf, _SWITCHED)
    store(seg, g + _MM, new_mm + 1)
    store(seg, g + _SEQ, seq + 2)


_HIT, _MISS, _SEQ_ODD, _FLUSH, _ZERO, _SWITCHED = 1, 2, 3, 4, 5, 6  # kill points


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update or switch from its journal; returns the inconsistencies found.

    A flush's ``lock xadd`` into the mm is the one step nothing local can tell
    about: its delta is dropped from the cache and left as a doubt, settled by
    the precise sum when quiescent.
    """
    g = _pc(seg, cpu)
    if op == L.JOP_ADD:
        if step == _HIT:
            old = jget(seg, cpu, L.J_A)
            return int(settle(seg, g + _DELTA + k, old, old + d) == 2)
        if step == _MISS:
            doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)
        return 0
    if op != L.JOP_SWITCH or step < _SEQ_ODD:
        return 0
    seq = jget(seg, cpu, L.J_A)
    store(seg, g + _SEQ, seq + 1)
    if step == _FLUSH or step == _ZERO:
        kk = jget(seg, cpu, L.J_C)
        if step == _FLUSH:
            doubt(seg, cpu, L.DOUBT_PRECISE, seg[g + _MM] - 1, kk, seg[g + _DELTA + kk])
        store(seg, g + _DELTA + kk, 0)
    _flush_and_switch(seg, cpu, jget(seg, cpu, L.J_B), seq, 0)
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    return settle_shared(seg, mm_word(seg, mm, k), d, residue)


release_locks = no_locks  # no locks


threads = no_thread_count  # no thread count


@njit(inline="always")
def consistent(seg):
    """Quiescent: no sequence count is left odd, and every CPU caching an mm is in its cpumask."""
    bad = 0
    for cpu in range(seg[L.H_POSSIBLE]):
        g = _pc(seg, cpu)
        if seg[g + _SEQ] & 1:
            bad += 1
        m = seg[g + _MM] - 1
        if m >= 0 and not (seg[_mask(seg, m, cpu >> 6)] >> (cpu & 63)) & 1:
            bad += 1
    return bad


@njit(inline="always")
def _walk(seg, mm, k):
    """(sum of cached deltas, sum of sequence counts) over the CPUs in mm's cpumask."""
    s = 0
    seqs = 0
    for i in range(-(-seg[L.H_POSSIBLE] // 64)):
        bits = load(seg, _mask(seg, mm, i))
        while bits != 0:
            low = bits & -bits
            cpu = i * 64 + _ctz(low)
            bits ^= low
            g = _pc(seg, cpu)
            while True:
                s0 = load(seg, g + _SEQ)
                if s0 & 1:
                    pause()
                    continue
                m = load(seg, g + _MM)
                dv = load(seg, g + _DELTA + k)
                if load(seg, g + _SEQ) == s0:
                    break
            seqs += s0
            if m == mm + 1:
                s += dv
    return s, seqs


@njit(inline="always")
def _seq_sum(seg, mm):
    seqs = 0
    for i in range(-(-seg[L.H_POSSIBLE] // 64)):
        bits = load(seg, _mask(seg, mm, i))
        while bits != 0:
            low = bits & -bits
            bits ^= low
            seqs += load(seg, _pc(seg, i * 64 + _ctz(low)) + _SEQ)
    return seqs


@njit(inline="always")
def _ctz(x):
    n = 0
    while not x & 1:
        x >>= 1
        n += 1
    return n


@njit(inline="always")
def read_precise(seg, mm, k):
    for _ in range(MAX_RETRIES):
        s, seqs = _walk(seg, mm, k)
        a = load(seg, mm_word(seg, mm, k))
        if _seq_sum(seg, mm) == seqs:
            return s + a
    return s + a


@njit(inline="always")
def read_approx(seg, mm, k):
    return read_precise(seg, mm, k)


@njit(inline="always")
def approx_bound(seg, mm, k):
    return 0, 0


@njit(inline="always")
def thread_created(seg, cpu, mm):
    pass


@njit(inline="always")
def task_exit(seg, cpu, task, mm):
    pass


@njit(inline="always")
def cpu_offline(seg, cpu):
    switch_mm(seg, cpu, seg[_pc(seg, cpu) + _MM] - 1, -1)


@njit(inline="always")
def mm_init(seg, mm):
    for k in range(L.NMEMBERS):
        store(seg, mm_word(seg, mm, k), 0)
    for i in range(-(-seg[L.H_POSSIBLE] // 64)):
        store(seg, _mask(seg, mm, i), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


transient_slack = no_transient  # reads keep their stated bounds at every instant
