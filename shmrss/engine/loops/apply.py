"""One counter update under the ground-truth protocol (VAR, truth, the design's update, COMMIT), and its paged and unmap forms."""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import compiler_barrier, load, local_add, rdtsc, store
from shmrss.designs._common import JOURNAL, UNMAP
from shmrss.faultbody import count_ticks, fault_in, release
from .design import add, read_mm_counter


@njit(inline="always")
def _apply(seg, st, truth, var, cpu, t, mm, k, d, fault, jon):
    """One counter update with the ground-truth protocol; returns the new VAR.

    With the journal on (``jon``), the event is recorded first, so that the
    parent can complete it if this CPU is killed before COMMIT.
    """
    if jon:
        j = st + L.S_J
        store(seg, j + L.J_MM, mm)
        store(seg, j + L.J_K, k)
        store(seg, j + L.J_D, d)
        store(seg, j + L.J_TASK, t)
        store(seg, j + L.J_FAULT, fault)
        store(seg, j + L.J_T0, seg[truth + mm * L.NMEMBERS + k])
        store(seg, j + L.J_STEP, 0)
        store(seg, j + L.J_OP, L.JOP_ADD)
    var += abs(d)
    store(seg, st + L.S_VAR, var)
    compiler_barrier()
    local_add(seg, truth + mm * L.NMEMBERS + k, d)
    add(seg, cpu, t, mm, k, d, fault | JOURNAL if jon else fault)
    store(seg, st + L.S_COMMIT, var)
    if jon:
        store(seg, st + L.S_J + L.J_OP, L.JOP_NONE)
    return var


@njit(cache=True)
def _apply_call(seg, st, truth, var, cpu, t, mm, k, d, fault, jon):
    """``_apply`` as a call: for the rare updates (unmap, remote, the reclaimer), so that the design's
    update is inlined once per loop, not at every site (compile time)."""
    return _apply(seg, st, truth, var, cpu, t, mm, k, d, fault, jon)


@njit(cache=True)
def _hiwater_call(seg, mm):
    """update_hiwater_rss(mm), which the kernel's unmap paths run before the zap (a call: rare).

    include/linux/mm.h::

        unsigned long _rss = get_mm_rss(mm);   /* FILE + ANON + SHMEM, each get_mm_counter() */
        if (data_race(mm->hiwater_rss) < _rss)
            (mm)->hiwater_rss = _rss;

    get_mm_counter is each design's ``read_mm_counter``: its approximate read for most
    (upstream 6.2 ``percpu_counter_read_positive``, pcpcache's RFC ``get_mm_counter``, a
    cpumask walk), HPCC v15's ``percpu_counter_tree_precise_sum_positive`` for tree (a walk
    of every possible CPU); clamped at 0 as the ``_positive`` reads and the unsigned sum are. Callers: munmap's unmap_region
    (mm/vma.c), zap_page_range_single (madvise DONTNEED), madvise_free_single_vma and
    try_to_unmap_one (reclaim); not exit_mmap ("update_hiwater_rss(mm) here? but nobody
    should be looking"), so ``teardown`` does not read.
    """
    rss = max(read_mm_counter(seg, mm, L.FILE), 0) + max(read_mm_counter(seg, mm, L.ANON), 0) + \
        max(read_mm_counter(seg, mm, L.SHMEM), 0)
    w = seg[L.H_HIWATER] + mm * seg[L.H_LINE]
    if load(seg, w) < rss:
        store(seg, w, rss)


@njit(inline="always")
def _apply_paged(seg, st, truth, var, cpu, t, mm, k, pages):
    """--fault-body page: a fault event of ``pages`` pages, the counter update then the real faults,
    each timed apart. Never journaled (the CLI refuses page work with fault injection).

    Inlined, as the update is: a call on this branch, although rare, changes how the compiler lays out
    the whole per-event loop (measured: single 1.94 -> 2.35 ns/event with no page work at all)."""
    t0 = rdtsc()
    var = _apply(seg, st, truth, var, cpu, t, mm, k, pages, 1, False)
    t1 = rdtsc()
    fault_in(seg, st, pages)
    t2 = rdtsc()
    count_ticks(seg, st, t1 - t0, t2 - t1)
    return var


@njit(cache=True)
def _unmap_paged(seg, st, truth, var, cpu, t, mm, k, pages):
    """--fault-body page: an unmap of ``pages``, the counter update then the pages' release, timed apart."""
    t0 = rdtsc()
    var = _apply_call(seg, st, truth, var, cpu, t, mm, k, -pages, UNMAP, False)
    t1 = rdtsc()
    release(seg, st, pages)
    t2 = rdtsc()
    count_ticks(seg, st, t1 - t0, t2 - t1)
    return var
