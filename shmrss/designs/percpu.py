"""Design 3, ``percpu``: upstream ``percpu_counter`` as used for mm->rss_stat since 6.2.

Per counter: ``struct percpu_counter`` as the kernel lays it out (x86-64, no
lockdep; include/linux/percpu_counter.h)::

    struct percpu_counter {
            raw_spinlock_t lock;
            s64 count;
    #ifdef CONFIG_HOTPLUG_CPU
            struct list_head list;  /* All percpu_counters are on a list */
    #endif
            s32 __percpu *counters;
    };

40 bytes (5 words: lock, count, list.next, list.prev, counters), and
``struct percpu_counter rss_stat[NR_MM_COUNTERS]`` packs the four members into
160 bytes over three cache lines, so member 1's lock and count share a line
with member 0's ``counters`` and member 2's lock shares one with member 1's.
Each CPU has an s32-range value per counter (the 4 members of one mm packed
together in each CPU's unit). Batch ``B = max(32, 2N)``.

Fast path (percpu_counter_add_batch): load ``fbc->counters`` from the
struct (the line the slow path writes: the false sharing the kernel pays, which
``shmrss verify`` found the port skipped when it computed the address from the
segment layout), read this CPU's value c at ``this_cpu_ptr(counters)``; while
``|c + d| < B`` try a lock-less ``cmpxchg`` of c -> c + d on the CPU's own word
(this_cpu_try_cmpxchg). Otherwise take the spinlock, ``count += c + d``,
``this_cpu -= c``, unlock.

Approximate read: ``count``; every CPU holds less than B in magnitude, so the
error is at most ``N * (B - 1)`` either way (O(N^2)). Precise read: under the
lock, count plus the values of the online CPUs (``--online-cpus``; the kernel
walks ``cpu_online_mask | cpu_dying_mask``, see ``read_precise``). Allocation
zeroes every possible CPU's slice.

CPU offline (``cpu_offline``) is the hotplug path's two steps in the kernel's
order. First the CPU enters ``cpu_dying_mask`` (kernel/cpu.c ``cpuhp_set_state``:
``if (cpu_dying(cpu) != !bringup) set_cpu_dying(cpu, !bringup);``, cleared only
when the CPU comes back up, which no emulated CPU does) and leaves
``cpu_online_mask`` (``takedown_cpu``). Then the DEAD callback, Linux 6.1
lib/percpu_counter.c::

    static int compute_batch_value(unsigned int cpu)
    {
            int nr = num_online_cpus();

            percpu_counter_batch = max(32, nr*2);
            return 0;
    }

    static int percpu_counter_cpu_dead(unsigned int cpu)
    {
            ...
            compute_batch_value(cpu);

            spin_lock_irq(&percpu_counters_lock);
            list_for_each_entry(fbc, &percpu_counters, list) {
                    s32 *pcount;

                    raw_spin_lock(&fbc->lock);
                    pcount = per_cpu_ptr(fbc->counters, cpu);
                    fbc->count += *pcount;
                    *pcount = 0;
                    raw_spin_unlock(&fbc->lock);
            }
            spin_unlock_irq(&percpu_counters_lock);

so the batch every later add uses (design parameter D0, ``percpu_counter_batch``)
is recomputed from the online CPUs left, the dead one already out, before its
values are folded. The emulated masks: ``cpu_online_mask`` is CPUs
``0..H_ONLINE-1`` less those in ``cpu_dying_mask`` (a bitmap in the design's
global words, ``dying_word``), so ``online | dying`` stays ``0..H_ONLINE-1`` and
the precise read walks the folded CPU (its words read 0), as the kernels whose sum
walks both masks do; 6.1's ``__percpu_counter_sum`` walks ``for_each_online_cpu``
only (same sum, one CPU fewer to load). A batch that shrinks leaves the other CPUs' values as they
were (up to the old batch - 1) until their next add: the stated bound and the
consistency check use the batch at boot (D1), the largest any value was written
under, not the live one (the kernel's own ``__percpu_counter_compare`` trusts
``batch * num_online_cpus()`` with the live batch).
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

# design parameters: percpu_counter_batch (rewritten by the CPU-dead callback), the batch at boot
D_BATCH, D_BOOT_BATCH = 0, 1
# struct percpu_counter's words (above); member k's struct starts at word STRUCT_WORDS * k of the mm
_LOCK, _COUNT, _LIST, _COUNTERS = 0, 1, 2, 4  # the list_head is 2 words, unused by the emulated engine
STRUCT_WORDS = 5
MM_WORDS = STRUCT_WORDS * L.NMEMBERS


def batch_for(online: int) -> int:
    """compute_batch_value (lib/percpu_counter.c): ``percpu_counter_batch = max(32, nr * 2)``, nr online."""
    return max(32, 2 * online)


def params_for(online: int) -> tuple[int, int]:
    """(D_BATCH, D_BOOT_BATCH): the batch the boot's ``compute_batch_value`` leaves, twice."""
    return batch_for(online), batch_for(online)


def mask_words(possible: int) -> int:
    """Global words of the emulated ``cpu_dying_mask``: one bit per possible CPU."""
    return -(-possible // 64)


batch_for_jit = njit(inline="always")(batch_for)  # the same formula in compiled code (cpu_offline)


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    online = (options or {}).get("online_cpus") or possible  # percpu_counter_batch: num_online_cpus()
    return DesignShape(pcpu_words_per_mm=L.NMEMBERS, mm_words=MM_WORDS, global_words=mask_words(possible),
                       params=params_for(online))


@njit(inline="always")
def lock_word(seg, mm, k):
    return mm_word(seg, mm, STRUCT_WORDS * k + _LOCK)


@njit(inline="always")
def count_word(seg, mm, k):
    return mm_word(seg, mm, STRUCT_WORDS * k + _COUNT)


@njit(inline="always")
def _counters(seg, mm, k):
    return mm_word(seg, mm, STRUCT_WORDS * k + _COUNTERS)


@njit(inline="always")
def per_cpu_ptr(seg, counters, cpu):
    """``per_cpu_ptr(counters, cpu)``: the pointer alloc_percpu returned plus the CPU's unit offset
    (``__per_cpu_offset[cpu]``; ``this_cpu_ptr`` is the same for the running CPU)."""
    return counters + cpu * seg[L.H_PCPU_CSTRIDE]


@njit(inline="always")
def set_counters(seg, mm):
    """``fbc->counters = alloc_percpu(...)``: each member's per-CPU pointer (its word in CPU 0's unit)."""
    for k in range(L.NMEMBERS):
        store(seg, _counters(seg, mm, k), pcpu_word(seg, 0, mm, k))


# kill points (the journal's steps); single.py reuses this add in per-CPU mode
P_FAST, P_LOCK, P_COUNT, P_SUB, P_UNLOCK = 1, 2, 3, 4, 5


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    batch = dparam(seg, D_BATCH)
    w = per_cpu_ptr(seg, load(seg, _counters(seg, mm, k)), cpu)  # fbc->counters: the struct's line
    c = load(seg, w)
    while True:
        if abs(c + d) >= batch:
            lk = lock_word(seg, mm, k)
            jstep(seg, cpu, jf, P_LOCK)
            spins = spin_lock(seg, lk, owner(cpu))
            c = load(seg, w)
            jsave(seg, cpu, jf, L.J_A, c)
            jstep_save(seg, cpu, jf, P_COUNT, L.J_B, load(seg, count_word(seg, mm, k)))
            local_add(seg, count_word(seg, mm, k), c + d)
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
    lk = lock_word(seg, mm, k)
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
        bad += int(settle(seg, count_word(seg, mm, k), cnt, cnt + c + d) == 2)
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
            if seg[lock_word(seg, mm, k)] == who:
                spin_unlock(seg, lock_word(seg, mm, k))


@njit(inline="always")
def consistent(seg):
    """Quiescent: every CPU's value is below the boot batch (what the approximate bound rests on; a value
    written before an offline shrank the batch may lie between the new batch and the old)."""
    bad = 0
    batch = dparam(seg, D_BOOT_BATCH)
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
    return load(seg, count_word(seg, mm, k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    """Every online CPU's word is below the boot batch: ``N * (B - 1)`` either way, N the online CPUs at
    boot (a folded CPU's words read 0)."""
    e = seg[L.H_ONLINE] * (dparam(seg, D_BOOT_BATCH) - 1)
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
    lk = lock_word(seg, mm, k)
    spin_lock(seg, lk, L.OWNER_READER)
    s = _sum(seg, mm, k)
    spin_unlock(seg, lk)
    return s


@njit(inline="always")
def _sum(seg, mm, k):
    s = load(seg, count_word(seg, mm, k))
    counters = load(seg, _counters(seg, mm, k))
    for cpu in range(seg[L.H_ONLINE]):
        s += load(seg, per_cpu_ptr(seg, counters, cpu))
    return s


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value: ``read_precise``'s sum without the spinlock (a store the monitor's
    read-only mapping cannot make); exact when no CPU is in the slow path at that moment. It takes each
    CPU's word from the checked header's layout, not from the segment's ``counters`` word: the monitor
    reads segments it does not trust, and a pointer read from one is not an index it may follow."""
    s = load(seg, count_word(seg, mm, k))
    for cpu in range(seg[L.H_ONLINE]):
        s += load(seg, pcpu_word(seg, cpu, mm, k))
    return s, 1


@njit(inline="always")
def dying_word(seg, cpu):
    """The word of the emulated ``cpu_dying_mask`` (the design's global words) holding CPU ``cpu``'s bit."""
    return seg[L.H_GLOBAL] + (cpu >> 6)


@njit(inline="always")
def cpu_dying(seg, cpu):
    return (load(seg, dying_word(seg, cpu)) >> (cpu & 63)) & 1


@njit(inline="always")
def num_online_cpus(seg):
    """The weight of the emulated ``cpu_online_mask``: CPUs ``0..H_ONLINE-1`` not dying."""
    n = 0
    for cpu in range(seg[L.H_ONLINE]):
        n += 1 - cpu_dying(seg, cpu)
    return n


@njit(inline="always")
def cpu_offline(seg, cpu):
    """The CPU leaves ``cpu_online_mask`` (enters ``cpu_dying_mask``), then ``percpu_counter_cpu_dead``:
    ``compute_batch_value`` (``percpu_counter_batch = max(32, nr*2)``, ``nr = num_online_cpus()``), then
    every counter's fold under its lock (``fbc->count += *pcount; *pcount = 0;``). See the module docstring."""
    w = dying_word(seg, cpu)
    store(seg, w, load(seg, w) | (1 << (cpu & 63)))
    store(seg, L.H_DPARAM + D_BATCH, batch_for_jit(num_online_cpus(seg)))
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            lk = lock_word(seg, mm, k)
            spin_lock(seg, lk, L.OWNER_PARENT)
            w = pcpu_word(seg, cpu, mm, k)
            local_add(seg, count_word(seg, mm, k), load(seg, w))
            store(seg, w, 0)
            spin_unlock(seg, lk)


@njit(inline="always")
def init_structs(seg, mm):
    """percpu_counter_init's own words: lock and count 0, the list links cleared, ``counters`` the
    allocation's pointer (the per-CPU memory itself is zeroed by whoever allocates it)."""
    for k in range(L.NMEMBERS):
        for j in range(STRUCT_WORDS):
            store(seg, mm_word(seg, mm, STRUCT_WORDS * k + j), 0)
    set_counters(seg, mm)


@njit(inline="always")
def mm_init(seg, mm):
    init_structs(seg, mm)
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
    return h[L.H_MM_STRIDE] >= MM_WORDS and h[L.H_PCPU_KWORDS] >= L.NMEMBERS
