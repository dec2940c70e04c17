"""Design 4, ``pcpcache``: a per-CPU cache of the running mm, flushed on mm switch (Kairui Song's RFC, 2022).

The RFC text could not be found with the team's search tools (corpora pages and
issues, Nov 2026): every step below follows issue 10 item 5 and
the team's design notes (docs/designs.md, pcpcache), which quote it; the x86 lines are upstream
``arch/x86/mm/tlb.c`` (v5.15-6.1). Where the RFC's own code decides and the
quotes do not, the choice is named "(our reading)".

Per possible CPU, three lines of the design's global region (the RFC's split:
"the cached mm pointer on its own cache line, ``in_use, count[]`` on another"):

* line 0: ``mm`` (the cached mm + 1; 0 caches none) and ``sync_count``;
* line 1: ``in_use`` and ``count[4]``;
* line 2: not the RFC's: the largest delta one flush of this CPU moved, per
  member (instrumentation for the reader's transient slack, written only by
  the flush, never on a fault).

Fast path, only the ``*_mm_counter_fast`` callers (the engine's ``fault`` bit)::

    preempt_disable(); this_cpu_inc(in_use);
    if (mm == this_cpu_read(mm)) this_cpu_add(count[m], val);   /* hit: plain add */
    else atomic_long_add(val, &mm->rss_stat.count[m]);           /* miss: lock xadd */
    this_cpu_dec(in_use); preempt_enable();

Everything else (``add_mm_rss_vec`` at unmap, remote updates, the reclaimer)
is ``add_mm_counter``: a ``lock xadd`` on the mm's atomic, neither hit nor miss.

``switch_mm`` (x86 variant): flush each nonzero ``count[m]`` into the old mm's
atomic, zero it, cache the new mm, bump ``sync_count``; then, as
``switch_mm_irqs_off`` does (arch/x86/mm/tlb.c)::

    /* Stop remote flushes for the previous mm. */
    cpumask_clear_cpu(cpu, mm_cpumask(real_prev));
    /* Start remote flushes and then read tlb_gen. */
    if (next != &init_mm) cpumask_set_cpu(cpu, mm_cpumask(next));

so the reader walks only CPUs that hold the mm now (both bit operations are
locked read-modify-writes, here a ``lock cmpxchg`` loop).

Read (the RFC's ``get_mm_counter``, both the approximate and the precise read,
stated bound 0): read the atomic first, then walk ``mm_cpumask(mm)``; per CPU
read ``sync_count``, skip the CPU if its cached mm is not this mm, read
``count[m]``, re-check ``sync_count`` and skip the CPU if it moved (our
reading: its delta went to the atomic meanwhile). No waiting, no retry. The
RFC accepts the cost: a flush landing during the walk means "rare and little
bit of accuracy loss". A flush whose ``lock xadd`` lands after the atomic was
read and whose zeroing (or bit clear) precedes the walk reaching that CPU is
missed; one that landed before the atomic was read but is not yet zeroed is
counted twice. Worst case, per CPU: the count is read once, so at most one
delta is counted twice; of the flushes a CPU makes after the atomic was read,
only the first carries pages faulted before the read began (the later ones
move pages faulted during the read, which the reader's truth envelope already
allows), so at most one delta is missed beyond the envelope, however long the
walk is preempted. Both are at most the largest delta that CPU ever flushed
(line 2, stored before the flush's ``lock xadd``), so ``transient_slack`` is
the sum over the possible CPUs of that largest flushed delta; a read beyond it
is a violation.

``in_use``: the reader does not look at it (no waiting). It marks a fast path
in progress; the flush the parent runs for a dead or offline CPU (the
emulator's remote flush, the case the guard exists for: a flush not run by the
updating CPU between two of its updates) runs only after recovery finished the
dead CPU's update and cleared it, and ``consistent`` checks that it is 0
everywhere when quiescent (our reading of its flush-side use).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import cmpxchg, load, local_add, store, xadd
from shmrss.designs._common import (
    JOURNAL, jflag, doubt, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, settle, tally,
    settle_shared,
)
from shmrss.segment import DesignShape

NAME = "pcpcache"
ID = 4
SUMMARY = "per-CPU cache of the running mm, flushed on mm switch; readers walk mm_cpumask"
BOUND = ("0 when no flush overlaps a read; a flush during the walk can be missed or counted twice "
         "(up to one flushed delta per CPU)")

# line 0 of a CPU: cached mm + 1, sync_count; line 1: in_use, count[4]; line 2: largest flushed delta[4]
_MM, _SYNC = 0, 1
_IN_USE, _COUNT = 0, 1
LINES_PER_CPU = 3
# mm words: atomic[4] on the first line, the cpumask from the second line on


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    mask_words = -(-possible // 64)
    return DesignShape(pcpu_words_per_mm=0, mm_words=line_words + mask_words,
                       global_words=possible * LINES_PER_CPU * line_words)


@njit(inline="always")
def _mm_line(seg, cpu):
    return seg[L.H_GLOBAL] + cpu * LINES_PER_CPU * seg[L.H_LINE]


@njit(inline="always")
def _count_line(seg, cpu):
    return _mm_line(seg, cpu) + seg[L.H_LINE]


@njit(inline="always")
def _flushed_line(seg, cpu):
    return _mm_line(seg, cpu) + 2 * seg[L.H_LINE]


@njit(inline="always")
def _mask(seg, mm, i):
    return mm_word(seg, mm, seg[L.H_LINE] + i)


# kill points (the journal's steps): the fast path, the atomic path, the switch
_ENTER, _HIT, _MISS, _LEAVE, _ATOMIC, _FLUSH, _ZERO, _CACHE, _SYNC_BUMP, _CLEAR, _SET = range(1, 12)


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    if fault & 1 and cpu >= 0:
        c = _count_line(seg, cpu)
        jstep(seg, cpu, jf, _ENTER)
        local_add(seg, c + _IN_USE, 1)  # this_cpu_inc(in_use)
        if seg[_mm_line(seg, cpu) + _MM] == mm + 1:
            jstep_save(seg, cpu, jf, _HIT, L.J_A, seg[c + _COUNT + k])
            local_add(seg, c + _COUNT + k, d)  # this_cpu_add(count[m], val)
            tally(seg, cpu, L.S_HITS, 1)
        else:
            jstep(seg, cpu, jf, _MISS)
            xadd(seg, mm_word(seg, mm, k), d)
            tally(seg, cpu, L.S_MISSES, 1)
        jstep(seg, cpu, jf, _LEAVE)
        local_add(seg, c + _IN_USE, -1)  # this_cpu_dec(in_use)
        return
    jstep(seg, cpu, jf, _ATOMIC)
    xadd(seg, mm_word(seg, mm, k), d)  # add_mm_counter: add_mm_rss_vec, remote updates, the reclaimer


@njit(inline="always")
def _mask_update(seg, mm, cpu, setting):
    """cpumask_set_cpu / cpumask_clear_cpu: a locked read-modify-write of the mask word."""
    w = _mask(seg, mm, cpu >> 6)
    bit = 1 << (cpu & 63)
    old = load(seg, w)
    while ((old & bit) != 0) != setting:
        seen = cmpxchg(seg, w, old, old | bit if setting else old & ~bit)
        if seen == old:
            break
        old = seen


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    jf = jflag(seg, cpu)
    m = _mm_line(seg, cpu)
    jsave(seg, cpu, jf, L.J_A, seg[m + _SYNC])
    jsave(seg, cpu, jf, L.J_E, seg[m + _MM] - 1)
    _finish_switch(seg, cpu, seg[m + _MM] - 1, new_mm, seg[m + _SYNC], jf)


@njit(inline="always")
def _finish_switch(seg, cpu, cached, new_mm, sync0, jf):
    """Flush what is left of the cache of ``cached`` and switch to ``new_mm`` (idempotent from any step)."""
    m = _mm_line(seg, cpu)
    c = _count_line(seg, cpu)
    if cached >= 0:
        f = _flushed_line(seg, cpu)
        for k in range(L.NMEMBERS):
            dk = seg[c + _COUNT + k]
            if dk != 0:
                if abs(dk) > seg[f + k]:  # published before the flush, so a read it disturbs sees it
                    store(seg, f + k, abs(dk))
                jsave(seg, cpu, jf, L.J_C, k)
                jstep(seg, cpu, jf, _FLUSH)
                xadd(seg, mm_word(seg, cached, k), dk)
                jstep(seg, cpu, jf, _ZERO)
                store(seg, c + _COUNT + k, 0)
    jstep(seg, cpu, jf, _CACHE)
    store(seg, m + _MM, new_mm + 1)
    jstep(seg, cpu, jf, _SYNC_BUMP)
    store(seg, m + _SYNC, sync0 + 1)
    if cached >= 0 and cached != new_mm:
        jstep(seg, cpu, jf, _CLEAR)
        _mask_update(seg, cached, cpu, False)
    if new_mm >= 0:
        jstep(seg, cpu, jf, _SET)
        _mask_update(seg, new_mm, cpu, True)


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update or switch from its journal; returns the inconsistencies found.

    The dead CPU's ``in_use`` is cleared first (it died inside the fast path at most once). A ``lock
    xadd`` into the mm (a miss, the atomic path, a flush) is the one step nothing local can tell about:
    it is left as a doubt, settled by the precise sum when quiescent.
    """
    c = _count_line(seg, cpu)
    if op == L.JOP_ADD:
        store(seg, c + _IN_USE, 0)
        if step == _ENTER:
            add(seg, cpu, -1, mm, k, d, 1)
        elif step == _HIT:
            old = jget(seg, cpu, L.J_A)
            return int(settle(seg, c + _COUNT + k, old, old + d) == 2)
        elif step == _MISS or step == _ATOMIC:
            doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)
        return 0
    if op != L.JOP_SWITCH or step < _FLUSH:
        return 0
    cached = jget(seg, cpu, L.J_E)
    if step == _FLUSH or step == _ZERO:
        kk = jget(seg, cpu, L.J_C)
        if step == _FLUSH:
            doubt(seg, cpu, L.DOUBT_PRECISE, cached, kk, seg[c + _COUNT + kk])
        store(seg, c + _COUNT + kk, 0)
    _finish_switch(seg, cpu, cached, jget(seg, cpu, L.J_B), jget(seg, cpu, L.J_A), 0)
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    return settle_shared(seg, mm_word(seg, mm, k), d, residue)


@njit(inline="always")
def consistent(seg):
    """Quiescent: no CPU inside the fast path (in_use 0), and a CPU's bit is set in an mm's cpumask
    exactly when it caches that mm."""
    bad = 0
    for cpu in range(seg[L.H_POSSIBLE]):
        if seg[_count_line(seg, cpu) + _IN_USE] != 0:
            bad += 1
        cached = seg[_mm_line(seg, cpu) + _MM] - 1
        for mm in range(seg[L.H_NMM]):
            on = (seg[_mask(seg, mm, cpu >> 6)] >> (cpu & 63)) & 1
            if on != (mm == cached):
                bad += 1
    return bad


@njit(inline="always")
def _ctz(x):
    n = 0
    while not x & 1:
        x >>= 1
        n += 1
    return n


@njit(inline="always")
def read_precise(seg, mm, k):
    """get_mm_counter: the atomic first, then the cached deltas of the CPUs in mm_cpumask (no retry)."""
    s = load(seg, mm_word(seg, mm, k))
    possible = seg[L.H_POSSIBLE]
    for i in range(-(-possible // 64)):
        bits = load(seg, _mask(seg, mm, i))
        while bits != 0:
            low = bits & -bits
            bits ^= low
            cpu = i * 64 + _ctz(low)
            if cpu >= possible:  # for_each_cpu stops at nr_cpu_ids; a bit past it is a hostile segment's
                break
            m = _mm_line(seg, cpu)
            sync = load(seg, m + _SYNC)
            if load(seg, m + _MM) != mm + 1:
                continue
            v = load(seg, _count_line(seg, cpu) + _COUNT + k)
            if load(seg, m + _SYNC) == sync:
                s += v
    return s


@njit(inline="always")
def read_approx(seg, mm, k):
    return read_precise(seg, mm, k)


@njit(inline="always")
def approx_bound(seg, mm, k):
    return 0, 0


@njit(inline="always")
def transient_slack(seg, mm, k):
    """A read can miss or double-count the flushes landing in its window: one flush per possible CPU,
    each at most the largest delta of member k that CPU ever flushed."""
    s = 0
    for cpu in range(seg[L.H_POSSIBLE]):
        s += load(seg, _flushed_line(seg, cpu) + k)
    return s, s


@njit(inline="always")
def cpu_offline(seg, cpu):
    switch_mm(seg, cpu, seg[_mm_line(seg, cpu) + _MM] - 1, -1)


@njit(inline="always")
def mm_init(seg, mm):
    for k in range(L.NMEMBERS):
        store(seg, mm_word(seg, mm, k), 0)
    for i in range(-(-seg[L.H_POSSIBLE] // 64)):
        store(seg, _mask(seg, mm, i), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


def fits_header(h) -> bool:
    """The mm's cpumask and every possible CPU's cache lines lie inside their regions."""
    line, possible = h[L.H_LINE], h[L.H_POSSIBLE]
    return (h[L.H_MM_STRIDE] >= line + -(-possible // 64)
            and h[L.H_GLOBAL_WORDS] >= possible * LINES_PER_CPU * line)
