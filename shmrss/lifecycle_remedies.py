"""Compiled pieces of the fork/exit remedies of issue 22 that ``lifecycle_loop`` calls at its hook points.

Seed 000 (Guzik, in the RFC thread on rss_stat's fork/exit cost) names three things the other variants
leave out; each is here, in the "remedies area" of the segment's lifecycle words (``P_EXT`` points to it):

``first-use``: "Preferably some magic would be done to init this on first use on given CPU. There is
some bitmap tracking CPU presence, maybe this can be tackled on top of it." The per-CPU memory comes
from the allocator *not zeroed* ("telling the percpu allocator to refrain from zeroing memory"); the mm
carries a bitmap of the CPUs whose slices it has initialised, cleared with the mm (``mm_init_cpumask``
clears ``mm->cpu_bitmap`` the same way: ceil(P/64) words). The test on every switch follows x86's
``switch_mm_irqs_off``::

        if (next != &init_mm && !cpumask_test_cpu(cpu, mm_cpumask(next)))
                cpumask_set_cpu(cpu, mm_cpumask(next));

with the slice's initialisation (rss counters and futex_ref 0, mm_cid ``MM_CID_UNSET``) between the
test and the set. It is a bitmap of its own, not ``mm_cpumask``: x86 trims mm_cpumask of CPUs that
stopped running the mm, while their slices still hold counts that must be summed. The set is a
``lock cmpxchg`` loop (the kernel's ``lock bts``; both one locked read-modify-write). check_mm and the
precise read walk only the CPUs in the bitmap (``for_each_cpu(cpu, bitmap)``: every word of the bitmap,
then the set bits).

A remote update (reclaim unmapping a page of an mm from a CPU it never ran on) reaches
``percpu_counter_add`` on the updating CPU's slice, which first-use left uninitialised. The kernel
would have to test the bitmap in ``add_mm_counter`` itself, before ``this_cpu_add``; that is the
choice here: every counter update of a first-use mm tests the bit of the CPU it runs on (set for the
mm's own CPUs, so one load and a branch) and a clear bit initialises the slice first, as a switch does.

``coarse``: "a dedicated allocator with coarse granularity ... an instance for every n threads ... you
are still going to serialize in some cases, but only once on alloc and once on free". One pool of
retired mm objects per group of N emulated CPUs (CPU c uses pool c // N), each behind one spinlock
taken once on allocation and once on free; the objects keep their per-CPU memory, their counters'
list presence and mm_cid state (as ``ctor-cache``). An empty pool (or a full one at free) falls back to
the allocator (ctor-cache's miss path).

``--fork-globals``: "you are still going to globally serialize in lru_gen_add_mm() (and the del part),
pgd_alloc() and other places". A stand-in: two spinlocks in the segment, each on its own line, taken
once at fork and once at exit: the LRU-gen mm list's lock (mm/vmscan.c ``lru_gen_add_mm`` /
``lru_gen_del_mm``: ``spin_lock(&mm_list->lock)``; one list without memcg, one per memcg otherwise,
so every process of one cgroup shares it) and x86's ``pgd_lock`` (arch/x86/mm/pgtable.c: ``pgd_alloc``
takes it around ``pgd_ctor``'s ``pgd_list_add``, ``pgd_dtor`` around ``pgd_list_del``). Only the lock
round trips and their list stores; the work under them (page-table copy, the walk over nodes) is not.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import cmpxchg, load, rdtsc, spin_lock, spin_unlock, store
from shmrss.designs._common import pcpu_word
from shmrss.designs.percpu import count_word, init_structs, lock_word

P_EXT = 15  # the lifecycle parameter word (lifecycle_loop.P_*) that holds the remedies area's address
CID_UNSET = -1
POISON = 0x5A5A5A5A5A5A5A5A  # what the not-zeroed per-CPU memory holds before first use (the run fills it)

# the remedies area's parameter words (its first lines)
X_SWITCHES, X_REMOTE_EVERY, X_FORK_GLOBALS, X_GROUP, X_POOLS, X_POOL_STRIDE, X_PRES, X_PRES_STRIDE, \
    X_TALLY, X_TALLY_STRIDE = range(10)
X_PARAM_WORDS = 16
# then two lines of global locks (--fork-globals): word 0 the lock, 1 acquisitions, 2 ticks waited
G_LRU, G_PGD = 0, 1
# each CPU's tallies (written only by it)
T_SWITCH_TICKS, T_SWITCHES, T_TOUCHED, T_REMOTE, T_SPARE, T_POOL_WAIT, T_GLOBALS_TICKS, \
    T_GLOBALS_WAIT = range(8)
TALLY_WORDS = 8
# a pool: word 0 its lock, 1 acquisitions, 2 ticks waited, 3 objects held, 4 depth, then the objects
Q_LOCK, Q_ACQ, Q_WAIT, Q_COUNT, Q_DEPTH, Q_OBJ = range(6)


@njit(inline="always")
def _ext(seg):
    return seg[seg[L.H_GLOBAL] + P_EXT]


@njit(inline="always")
def _tally(seg, cpu):
    e = _ext(seg)
    return seg[e + X_TALLY] + cpu * seg[e + X_TALLY_STRIDE]


@njit(inline="always")
def _presence(seg, s):
    e = _ext(seg)
    return seg[e + X_PRES] + s * seg[e + X_PRES_STRIDE]


# ----------------------------------------------------------------------------------------------- first-use

@njit(inline="always")
def _init_slice(seg, cpu, s):
    """The slice of ``cpu`` in the one allocation (merged layout): counters and futex_ref 0, mm_cid unset."""
    for k in range(L.NMEMBERS):
        store(seg, pcpu_word(seg, cpu, s, k), 0)
    store(seg, pcpu_word(seg, cpu, s, 4), CID_UNSET)
    store(seg, pcpu_word(seg, cpu, s, 5), 0)


@njit(inline="always")
def first_use_init(seg, s):
    """fork's init of a first-use mm: its own words zeroed (with the mm) and its CPU bitmap cleared
    (ceil(P/64) words); no per-CPU walk."""
    init_structs(seg, s)
    b = _presence(seg, s)
    for i in range((seg[L.H_POSSIBLE] + 63) >> 6):
        store(seg, b + i, 0)


@njit(inline="always")
def touch(seg, cpu, s):
    """The bitmap test (every switch onto ``cpu``, every counter update there); a clear bit initialises
    the CPU's slice, then sets the bit (a locked read-modify-write, after the slice's stores). Returns
    1 if it initialised the slice."""
    b = _presence(seg, s) + (cpu >> 6)
    bit = 1 << (cpu & 63)
    if load(seg, b) & bit:
        return 0
    _init_slice(seg, cpu, s)
    while True:
        w = load(seg, b)
        if cmpxchg(seg, b, w, w | bit) == w:
            return 1


@njit(inline="always")
def first_use_sum(seg, s, k):
    """count plus the slices of the CPUs in the bitmap: ``for_each_cpu(cpu, bitmap)``."""
    v = load(seg, count_word(seg, s, k))
    b = _presence(seg, s)
    for i in range((seg[L.H_POSSIBLE] + 63) >> 6):
        w = load(seg, b + i)
        while w != 0:
            low = w & -w
            j = 0
            while (low >> j) != 1:
                j += 1
            v += load(seg, pcpu_word(seg, i * 64 + j, s, k))
            w ^= low
    return v


@njit(inline="always")
def first_use_precise(seg, s, k):
    """The precise read: percpu_counter_sum's lock (the percpu design's lock word), the bitmap walk."""
    # Not percpu.read_precise on purpose: that walks every online CPU's slice, and first-use leaves the
    # slices of CPUs the mm never ran on uninitialised (POISON), so only the bitmap's CPUs may be summed.
    lk = lock_word(seg, s, k)
    spin_lock(seg, lk, L.OWNER_READER)
    v = first_use_sum(seg, s, k)
    spin_unlock(seg, lk)
    return v


@njit(inline="always")
def _popcount(w):
    n = 0
    while w != 0:
        w &= w - 1
        n += 1
    return n


@njit(inline="always")
def first_use_check(seg, cpu, s):
    """check_mm over the bitmap: one precise sum per counter; returns the counters not summing to 0 and
    tallies the CPUs the mm touched."""
    bad = 0
    for k in range(L.NMEMBERS):
        if first_use_precise(seg, s, k) != 0:
            bad += 1
    b = _presence(seg, s)
    n = 0
    for i in range((seg[L.H_POSSIBLE] + 63) >> 6):
        n += _popcount(load(seg, b + i))
    seg[_tally(seg, cpu) + T_TOUCHED] += n
    return bad


@njit(inline="always")
def switches(seg, cpu, s, cur, test):
    """``--switches``: the process is switched back onto its CPU this many times (the current-mm store
    ``cur``; first-use adds its bitmap test); the ticks go to the CPU's tally."""
    n = seg[_ext(seg) + X_SWITCHES]
    if n == 0:
        return
    t0 = rdtsc()
    for _ in range(n):
        store(seg, cur, s)
        if test:
            touch(seg, cpu, s)
    t = _tally(seg, cpu)
    seg[t + T_SWITCH_TICKS] += rdtsc() - t0
    seg[t + T_SWITCHES] += n


@njit(inline="always")
def remote_cpu(seg, cpu, n):
    """The CPU of this mm's remote update under ``--remote-every``, or -1: the next online CPU."""
    every = seg[_ext(seg) + X_REMOTE_EVERY]
    if every == 0 or (n + 1) % every != 0:
        return -1
    r = (cpu + 1) % seg[L.H_ONLINE]
    if r == cpu:
        return -1
    seg[_tally(seg, cpu) + T_REMOTE] += 1
    return r


# --------------------------------------------------------------------------------------------------- coarse

@njit(inline="always")
def _pool(seg, cpu):
    e = _ext(seg)
    return seg[e + X_POOLS] + (cpu // seg[e + X_GROUP]) * seg[e + X_POOL_STRIDE]


@njit(inline="always")
def _pool_lock(seg, cpu, q):
    t0 = rdtsc()
    spin_lock(seg, q + Q_LOCK, cpu + 1)
    w = rdtsc() - t0
    seg[q + Q_ACQ] += 1
    seg[q + Q_WAIT] += w
    seg[_tally(seg, cpu) + T_POOL_WAIT] += w


@njit(inline="always")
def pool_get(seg, cpu):
    """An object from the pool of ``cpu``'s group (one lock round trip), or -1 if it is empty."""
    q = _pool(seg, cpu)
    _pool_lock(seg, cpu, q)
    s = -1
    if seg[q + Q_COUNT] > 0:
        seg[q + Q_COUNT] -= 1
        s = seg[q + Q_OBJ + seg[q + Q_COUNT]]
    spin_unlock(seg, q + Q_LOCK)
    return s


@njit(inline="always")
def pool_put(seg, cpu, s):
    """Retire object ``s`` into the group's pool (one lock round trip); False if the pool is full."""
    q = _pool(seg, cpu)
    _pool_lock(seg, cpu, q)
    kept = seg[q + Q_COUNT] < seg[q + Q_DEPTH]
    if kept:
        seg[q + Q_OBJ + seg[q + Q_COUNT]] = s
        seg[q + Q_COUNT] += 1
    spin_unlock(seg, q + Q_LOCK)
    return kept


# --------------------------------------------------------------------------------------------- fork globals

@njit(inline="always")
def _global_round_trip(seg, cpu, line):
    e = _ext(seg)
    lk = e + X_PARAM_WORDS + line * seg[L.H_LINE]
    t0 = rdtsc()
    spin_lock(seg, lk, cpu + 1)
    w = rdtsc() - t0
    seg[lk + 1] += 1
    seg[lk + 2] += w
    seg[lk + 3] += 1 - 2 * (seg[lk + 3] & 1)  # the list's add or del: a store under the lock
    spin_unlock(seg, lk)
    return w


@njit(inline="always")
def fork_globals(seg, cpu):
    """``--fork-globals``: the LRU-gen mm list's lock and pgd_lock, once each (at fork, and again at exit)."""
    if seg[_ext(seg) + X_FORK_GLOBALS] == 0:
        return
    t0 = rdtsc()
    w = _global_round_trip(seg, cpu, G_LRU)
    w += _global_round_trip(seg, cpu, G_PGD)
    t = _tally(seg, cpu)
    seg[t + T_GLOBALS_TICKS] += rdtsc() - t0
    seg[t + T_GLOBALS_WAIT] += w
