"""Design 4, ``pcpcache``: a per-CPU cache of the running mm, flushed on mm switch (Kairui Song's RFC, 2022).

Followed from the RFC's text, "[RFC PATCH 4/7] mm: introduce per-CPU RSS cache" (mm/memory.c), "[RFC
PATCH 6/7] mm: introduce CONFIG_ARCH_PCP_RSS_USE_CPUMASK" and the x86 patch 7/7 (28 Jul 2022,
<20220728204511.56348-1-ryncsn@gmail.com>); the x86 cpumask lines are upstream ``arch/x86/mm/tlb.c``
(v5.15-6.1).

Per possible CPU, three lines of the design's global region (``struct mm_rss_cache``, the mm
pointer "on its own cache line", ``in_use, count[]`` on another):

* line 0: ``mm`` (the cached mm + 1; 0 caches none) and ``sync_count``;
* line 1: ``in_use`` and ``count[4]``;
* line 2: not the RFC's: the largest delta one flush of this CPU moved, per
  member, and the sum of the magnitudes of every delta its flushes moved
  (words 4..7; instrumentation for the reader's transient slack, written only
  by the flush, never on a fault).

Fast path, only the ``*_mm_counter_fast`` callers (the engine's ``fault`` bit), 4/7's
``add_mm_counter_fast``::

    preempt_disable();
    this_cpu_inc(cpu_rss_cache.in_use);
    if (likely(mm == this_cpu_read(cpu_rss_cache.mm))) {
            this_cpu_add(cpu_rss_cache.count[member], val);
            this_cpu_dec(cpu_rss_cache.in_use);
            preempt_enable_no_resched();
    } else {
            this_cpu_dec(cpu_rss_cache.in_use);
            preempt_enable_no_resched();
            add_mm_counter(mm, member, val);
    }

so a miss drops ``in_use`` before its ``lock xadd``. A fault of several pages is one call with
``val`` = its pages (patch 5/7, "mm: use fast path for pmd setting as well", sends the PMD fault
through this path too); deviation: fault-around below a PMD calls it once per page in the
kernel, here once per fault. Hits are not tallied on the fast path (the RFC does no such
work): a CPU tallies its misses, and its hits are its fault events minus its misses
(``publish_hits``, at the engine's publish points, outside the per-event loop).

Everything else (``add_mm_rss_vec`` at unmap, remote updates, the reclaimer)
is ``add_mm_counter``: a ``lock xadd`` on the mm's atomic, neither hit nor miss.

``switch_mm`` follows 4/7's ``switch_pcp_rss_cache_no_irq``::

    cpu_mm = this_cpu_read(cpu_rss_cache.mm);
    if (cpu_mm == next_mm) return;
    if (this_cpu_read(cpu_rss_cache.in_use)) return;   /* an interrupt switching the mm */
    ... add_mm_counter(cpu_mm, i, count) for each nonzero count ... zero the counts;
    smp_wmb(); this_cpu_write(cpu_rss_cache.mm, next_mm); this_cpu_inc(cpu_rss_cache.sync_count);

(with CONFIG_ARCH_PCP_RSS_USE_CPUMASK, 6/7, "Arch will take care of cache invalidation": no
``cmpxchg`` marking of the mm; the flush zeroes each count right after adding it, where the RFC
zeroes them all after the adds, the same values for a reader) and then, as
``switch_mm_irqs_off`` does (arch/x86/mm/tlb.c)::

    /* Stop remote flushes for the previous mm. */
    cpumask_clear_cpu(cpu, mm_cpumask(real_prev));
    /* Start remote flushes and then read tlb_gen. */
    if (next != &init_mm) cpumask_set_cpu(cpu, mm_cpumask(next));

so the reader walks only CPUs that hold the mm now (both bit operations are
locked read-modify-writes, here a ``lock cmpxchg`` loop).

Read (4/7's ``get_mm_counter`` with 6/7's ``for_each_cpu(cpu, mm_mask)``), the approximate
read, stated bound 0::

    ret = atomic_long_read(&mm->rss_stat.count[member]);
    for_each_cpu(cpu, mm_mask) {
            if (READ_ONCE(per_cpu(cpu_rss_cache.mm, cpu)) != mm) continue;
            sync_count = READ_ONCE(per_cpu(cpu_rss_cache.sync_count, cpu));
            smp_rmb();
            update = READ_ONCE(per_cpu(cpu_rss_cache.count[member], cpu));
            smp_rmb();
            if (READ_ONCE(per_cpu(cpu_rss_cache.sync_count, cpu)) == sync_count &&
                READ_ONCE(per_cpu(cpu_rss_cache.mm, cpu)) == mm)
                    ret += update;
    }
    if (ret < 0) ret = 0;

The precise read is the same walk without the clamp (check_discard_rss_cache's sum is not
clamped either; the emulator's precise read must see a negative truth). No waiting, no retry:
"If the cache is flushed while being read, skip it. May lead to rare and little bit of accuracy
loss, but flushed cache will surely be accounted in the next read." A flush whose ``lock xadd``
lands after the atomic was read and whose zeroing (or bit clear) precedes the walk reaching
that CPU is missed; one that landed before the atomic was read but is not yet zeroed is
counted twice. Worst case, per CPU: the count is read once, so at most one delta is counted
twice; of the flushes a CPU makes after the atomic was read, only the first carries pages
faulted before the read began (the later ones move pages faulted during the read, which the
reader's truth envelope already allows), so at most one delta is missed beyond the envelope,
however long the walk is preempted, as long as the truth moves one way during the read. Both
are at most the largest delta that CPU ever flushed (line 2, stored before the flush's ``lock
xadd``). With updates of both signs in one read's window (mixed: faults, unmaps, exits, remote
updates) the envelope of the truth at the read's two ends does not hold the pages a later flush
moves, and an oversubscribed host can preempt the walk over many flushes: what a read misses
is then at most what the CPUs flushed during it. ``slack_mark`` takes the sum of the flushed
magnitudes (line 2, words 4..7, added before each ``lock xadd``) before the read, and
``transient_slack`` is, over the possible CPUs, the largest flushed delta (the one flush a
read can straddle or count twice) plus what was flushed since the mark; a read beyond it is a
violation. Any update the
read's window overlaps (a fault, an unmap, a remote update, the reclaimer's) can meet a flush,
so a read can miss in every workload that switches mms, not only on faults.

``in_use``: the reader does not look at it; a switch does (above). The flush the parent runs
for a dead or offline CPU runs only after recovery finished the dead CPU's update and cleared
it, and ``consistent`` checks that it is 0 everywhere when quiescent.

Not modelled: check_discard_rss_cache (the teardown sum uses the precise read at quiescence),
the non-cpumask variant's walk of every possible CPU.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import cmpxchg, load, local_add, store, xadd
from shmrss.designs._common import (
    JOURNAL, jflag, doubt, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, settle, stat_word, tally,
    settle_shared,
)
from shmrss.segment import DesignShape

NAME = "pcpcache"
ID = 4
SUMMARY = "per-CPU cache of the running mm, flushed on mm switch; readers walk mm_cpumask"
BOUND = ("0 when no flush overlaps a read; a flush during the walk can be missed or counted twice "
         "(up to one flushed delta per CPU); a negative sum reads 0")
# why an approximate read may pass BOUND while updates are in flight (result.approx_excess)
TRANSIENT_CAUSE = "a flush during the read's walk (the RFC's \"rare and little bit of accuracy loss\")"

# line 0 of a CPU: cached mm + 1, sync_count; line 1: in_use, count[4]; line 2: largest flushed delta[4],
# flushed magnitudes so far[4]
_MM, _SYNC = 0, 1
_IN_USE, _COUNT = 0, 1
_FLUSHED_SUM = L.NMEMBERS
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
_ENTER, _HIT, _MISS, _LEAVE, _ATOMIC, _FLUSH, _ZERO, _CACHE, _SYNC_BUMP, _CLEAR, _SET, _MISS_LEAVE = range(1, 13)


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
            jstep(seg, cpu, jf, _LEAVE)
            local_add(seg, c + _IN_USE, -1)  # this_cpu_dec(in_use)
        else:
            jstep(seg, cpu, jf, _MISS_LEAVE)
            local_add(seg, c + _IN_USE, -1)  # this_cpu_dec(in_use), before the atomic
            jstep(seg, cpu, jf, _MISS)
            xadd(seg, mm_word(seg, mm, k), d)  # add_mm_counter
            tally(seg, cpu, L.S_MISSES, 1)
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
    m = _mm_line(seg, cpu)
    if seg[m + _MM] == new_mm + 1:  # if (cpu_mm == next_mm) return;
        return
    if seg[_count_line(seg, cpu) + _IN_USE] != 0:  # if (this_cpu_read(cpu_rss_cache.in_use)) return;
        return
    jf = jflag(seg, cpu)
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
                store(seg, f + _FLUSHED_SUM + k, seg[f + _FLUSHED_SUM + k] + abs(dk))
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
        elif step == _MISS_LEAVE:  # in_use dropped above; the atomic not yet issued
            xadd(seg, mm_word(seg, mm, k), d)
            tally(seg, cpu, L.S_MISSES, 1)
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
    """get_mm_counter's walk without its clamp: the atomic first, then the cached deltas of the CPUs in
    mm_cpumask, each kept only if the CPU's mm and sync_count are the same after the delta was read."""
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
            if load(seg, m + _MM) != mm + 1:
                continue
            sync = load(seg, m + _SYNC)
            v = load(seg, _count_line(seg, cpu) + _COUNT + k)
            if load(seg, m + _SYNC) == sync and load(seg, m + _MM) == mm + 1:
                s += v
    return s


@njit(inline="always")
def read_approx(seg, mm, k):
    """get_mm_counter: the walk, then ``if (ret < 0) ret = 0;``."""
    s = read_precise(seg, mm, k)
    return s if s > 0 else 0


@njit(inline="always")
def publish_hits(seg, cpu, faults):
    """The CPU's hits, from its fault events (each took the fast path) and its tallied misses."""
    store(seg, stat_word(seg, cpu, L.S_HITS), faults - seg[stat_word(seg, cpu, L.S_MISSES)])


@njit(inline="always")
def approx_bound(seg, mm, k):
    return 0, 0


@njit(inline="always")
def slack_mark(seg, mm, k):
    """Before a read: the magnitudes of member k every CPU flushed so far."""
    s = 0
    for cpu in range(seg[L.H_POSSIBLE]):
        s += load(seg, _flushed_line(seg, cpu) + _FLUSHED_SUM + k)
    return s


@njit(inline="always")
def transient_slack(seg, mm, k, mark):
    """A read can miss or double-count one flush per possible CPU that straddles its start, each at most
    the largest delta of member k that CPU ever flushed, and miss what the CPUs flushed during it."""
    s = 0
    for cpu in range(seg[L.H_POSSIBLE]):
        s += load(seg, _flushed_line(seg, cpu) + k)
    during = slack_mark(seg, mm, k) - mark
    return s + during, s + during


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
