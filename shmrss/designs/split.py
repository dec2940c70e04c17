"""Design 2, ``split``: the per-task cache of kernels up to 6.1 (SPLIT_RSS_COUNTING).

Each task keeps ``events`` and ``count[4]`` in its task record (so they move
with the task when it migrates). Kernel 6.1, mm/memory.c, followed step by step:

* every fault of the task counts, whatever mm it faults on (handle_mm_fault:
  ``check_sync_rss_stat(current);``, which is
  ``if (unlikely(task->rss_stat.events++ > TASK_RSS_EVENTS_THRESH)) sync_mm_rss(task->mm);``),
  and the fold goes to the task's own mm;
* then the fault's update: ``add_mm_counter_fast``: ``if (likely(task->mm == mm))
  task->rss_stat.count[member] += val; else add_mm_counter(mm, member, val);``;
* a fault of several pages (``--fault-pages``) is still one event (one ``check_sync_rss_stat``
  per ``handle_mm_fault``), and its update depends on its size, as in 6.1:

  - below a PMD (fault-around, at most ``PTRS_PER_PTE`` pages: ``fault_around_bytes_set``'s
    ``if (val / PAGE_SIZE > PTRS_PER_PTE) return -EINVAL;``): filemap_map_pages calls
    ``do_set_pte(vmf, page, addr);`` once per page, and do_set_pte does
    ``inc_mm_counter_fast(vma->vm_mm, mm_counter_file(page));`` (or ``MM_ANONPAGES`` for a
    private write): one cache increment per page, ``#define inc_mm_counter_fast(mm, member)
    add_mm_counter_fast(mm, member, 1)``. 6.1 has no anonymous mTHP, so a 16-page anonymous
    fault is emulated as fault-around is (a deviation only in what a 16-page anon fault is);
  - a PMD (``HPAGE_PMD_NR`` = 512 pages or more): do_huge_pmd_anonymous_page's
    ``add_mm_counter(vma->vm_mm, MM_ANONPAGES, HPAGE_PMD_NR);`` and do_set_pmd's
    ``add_mm_counter(vma->vm_mm, mm_counter_file(page), HPAGE_PMD_NR);``: the mm's atomic,
    never the task cache (a size above 512 is treated as a PMD: 6.1 maps no larger anon page);
* an unmap of the task's own mm folds the cache first (``add_mm_rss_vec``:
  ``if (current->mm == mm) sync_mm_rss(mm);`` then ``add_mm_counter`` per
  member), as madvise_free does for its swap entries (mm/madvise.c,
  ``if (current->mm == mm) sync_mm_rss(mm); add_mm_counter(mm, MM_SWAPENTS, nr_swap);``).
  The engine marks its unmap steps with ``UNMAP``; a remote update (another
  task's, the reclaimer's) goes to the atomics without a fold;
* ``sync_mm_rss`` also clears ``events``; exit folds the cache (do_exit's ``sync_mm_rss``).

Approximate read: the mm's atomic, clamped at 0. Each thread can hold up to
66 faults' worth (not 64: ``events++ > 64`` tests before incrementing, and the
fold runs before the triggering fault adds to the emptied cache), so the bound
is ``66 * threads * S`` either way: unbounded in the thread count (rss_steal).
S is the largest fault below a PMD in the run's tapes (``setup``; at least 1,
the page of a plain fault): a PMD fault adds nothing to the cache, so a run of
512-page faults keeps the 1-page bound, one of 16-page faults has 16 times it.

Precise read (not in the kernel; ours, to check the invariants): the atomic
plus every task's cache, each cache read inside a per-task sequence count so
that a concurrent fold is neither lost nor counted twice.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_add, pause, store, xadd
from shmrss.designs._common import (
    JOURNAL, UNMAP, jflag, doubt, dparam, jget, jsave, jstep, jstep_save, members_not_zero, mm_word, settle,
    settle_shared, tally, task_word,
)
from shmrss.segment import DesignShape

NAME = "split"
ID = 2
SUMMARY = "per-task cache folded every 64 faults and at exit (kernel <= 6.1)"
BOUND = ("|approx - truth| <= 66 * threads of the mm * S, S the largest fault below a PMD (512 pages) "
         "(unbounded in the thread count)")

THRESH = 64
HPAGE_PMD_NR = 512  # pages of a PMD mapping (x86_64, 4 KiB pages): at or above, add_mm_counter
# events++ > 64 is a post-increment test and the fold runs before the triggering fault's own
# update: a cache reaches 66 pages (65 faults after a fold plus the fault that folded)
PER_THREAD = THRESH + 2
MAX_RETRIES = 1000  # a precise read racing folds this often gives up (and the reader would flag it)
# mm words: the atomics, then the thread count
_NTHREADS = L.NMEMBERS
# task words: events, sequence count, count[4]
_EVENTS, _SEQ, _CACHE = 0, 1, 2
# design parameter: pages the largest fault below a PMD adds to a cache (S in the bound)
_P_CACHED_PAGES = 0


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    return DesignShape(pcpu_words_per_mm=0, mm_words=L.NMEMBERS + 1, task_words=2 + L.NMEMBERS, params=(1,))


def cached_fault_pages(words) -> int:
    """S: the most pages one fault of the run's tapes adds to a task cache (faults below a PMD; 0 in a tape
    is one page); at least 1, a plain fault's page (fork_exit's own fault loop is not on the tape)."""
    s = 1
    tape = int(words[L.H_TAPE])
    for i in range(int(words[L.H_TAPE_STEPS])):
        if int(words[tape + i * L.STEP_WORDS]) == L.OP_FAULT:
            pages = max(int(words[tape + i * L.STEP_WORDS + 3]), 1)
            if pages < HPAGE_PMD_NR:
                s = max(s, pages)
    return s


def setup(words, ncpu: int, nodes) -> None:
    """The bound's S from the run's tapes."""
    words[L.H_DPARAM + _P_CACHED_PAGES] = cached_fault_pages(words)


@njit(inline="always")
def _own(seg, task, mm):
    return task >= 0 and seg[seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_MM] == mm


@njit(inline="always")
def _sync(seg, cpu, task, mm, jf):
    """sync_mm_rss: fold the task's cache into the mm's atomics."""
    tw = task_word(seg, task, 0)
    seq = seg[tw + _SEQ]
    jstep_save(seg, cpu, jf, _SEQ_ODD, L.J_C, seq)
    store(seg, tw + _SEQ, seq + 1)
    _fold(seg, cpu, tw, mm, seq, jf)


@njit(inline="always")
def _fold(seg, cpu, tw, mm, seq, jf):
    for k in range(L.NMEMBERS):
        c = seg[tw + _CACHE + k]
        if c != 0:
            jsave(seg, cpu, jf, L.J_E, k)
            jstep(seg, cpu, jf, _FOLD)
            xadd(seg, mm_word(seg, mm, k), c)
            jstep(seg, cpu, jf, _ZERO)
            store(seg, tw + _CACHE + k, 0)
    store(seg, tw + _EVENTS, 0)
    store(seg, tw + _SEQ, seq + 2)


@njit(inline="always")
def _task_mm(seg, task):
    return seg[seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_MM]


@njit(inline="always")
def _per_page(seg, w, d):
    """filemap_map_pages' do_set_pte per page: one inc_mm_counter_fast (or dec) each."""
    one = 1 if d > 0 else -1
    for _ in range(abs(d)):
        local_add(seg, w, one)


@njit(inline="always")
def _settle_pages(seg, w, old, d):
    """Recovery of ``_per_page``: 0 done now, 1 had landed, 2 the word is outside old..old+d."""
    v = seg[w]
    if v == old + d:
        return 1
    if (old <= v <= old + d) or (old + d <= v <= old):
        store(seg, w, old + d)
        return 0
    return 2


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    if fault & 1 and task >= 0:
        tw = task_word(seg, task, 0)
        ev = seg[tw + _EVENTS]
        jstep_save(seg, cpu, jf, _EVENT, L.J_A, ev)
        store(seg, tw + _EVENTS, ev + 1)
        if ev > THRESH:  # check_sync_rss_stat, before the fault's own update, into the task's own mm
            _sync(seg, cpu, task, _task_mm(seg, task), jf)
            tally(seg, cpu, L.S_SLOW, 1)
        if abs(d) < HPAGE_PMD_NR and _task_mm(seg, task) == mm:  # add_mm_counter_fast, once per page
            jstep_save(seg, cpu, jf, _CACHED, L.J_B, seg[tw + _CACHE + k])
            if d == 1:
                local_add(seg, tw + _CACHE + k, 1)
            else:
                _per_page(seg, tw + _CACHE + k, d)
            return
        # a PMD fault (add_mm_counter), or a fault on another mm: the atomic
    elif fault & UNMAP and _own(seg, task, mm):  # add_mm_rss_vec: current->mm == mm folds first
        _sync(seg, cpu, task, mm, jf)
    jstep(seg, cpu, jf, _SHARED)
    xadd(seg, mm_word(seg, mm, k), d)


# kill points: an update's steps, then a fold's (in an update or at exit), then the thread count's
_EVENT, _CACHED, _SHARED, _SEQ_ODD, _FOLD, _ZERO, _NTHREADS_ADD = 1, 2, 3, 4, 5, 6, 7


@njit(inline="always")
def _recover_fold(seg, cpu, tw, mm, step):
    """Finish a fold the CPU died in: a cache member whose xadd is in doubt leaves the cache as a doubt."""
    seq = jget(seg, cpu, L.J_C)
    store(seg, tw + _SEQ, seq + 1)
    if step == _FOLD or step == _ZERO:
        kk = jget(seg, cpu, L.J_E)
        if step == _FOLD:
            doubt(seg, cpu, L.DOUBT_PRECISE, mm, kk, seg[tw + _CACHE + kk])
        store(seg, tw + _CACHE + kk, 0)
    _fold(seg, cpu, tw, mm, seq, 0)


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update, or its task's exit, from the journal; returns inconsistencies.

    The task's cache words move with the task, but nobody runs it until the
    recovery has given it to a live CPU, so they are the dead CPU's to fix.
    """
    task = jget(seg, cpu, L.J_TASK)
    if op == L.JOP_SCHED:
        # an exit (a clone has only its thread count step): the fold, then the thread count
        if step >= _SEQ_ODD and step <= _ZERO:
            _recover_fold(seg, cpu, task_word(seg, task, 0), mm, step)
            step = _NTHREADS_ADD - 1
        if step == _NTHREADS_ADD - 1 and k == L.OP_EXIT:
            xadd(seg, mm_word(seg, mm, _NTHREADS), -1)
        elif step == _NTHREADS_ADD:
            doubt(seg, cpu, L.DOUBT_THREADS, mm, 0, 1 if k == L.OP_CLONE else -1)
        return 0
    if op != L.JOP_ADD:
        return 0
    if step == _SHARED:
        doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)
        return 0
    tw = task_word(seg, task, 0)
    fault = jget(seg, cpu, L.J_FAULT)
    # the update goes to the cache (a fault below a PMD on the task's mm), else to the atomic
    cached = fault & 1 and abs(d) < HPAGE_PMD_NR and _task_mm(seg, task) == mm
    bad = 0
    if step == _EVENT:
        ev = jget(seg, cpu, L.J_A)
        bad += int(settle(seg, tw + _EVENTS, ev, ev + 1) == 2)
        if ev > THRESH:
            _sync(seg, -1, task, _task_mm(seg, task), 0)
    elif step >= _SEQ_ODD and step <= _ZERO:  # a fold: a fault's (into the task's mm) or an unmap's
        _recover_fold(seg, cpu, tw, _task_mm(seg, task), step)
    elif step == _CACHED:
        return int(_settle_pages(seg, tw + _CACHE + k, jget(seg, cpu, L.J_B), d) == 2)
    if cached:
        local_add(seg, tw + _CACHE + k, d)
    else:
        xadd(seg, mm_word(seg, mm, k), d)
    return bad


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    if kind == L.DOUBT_THREADS:
        return settle_shared(seg, mm_word(seg, mm, _NTHREADS), d, residue)
    return settle_shared(seg, mm_word(seg, mm, k), d, residue)


@njit(inline="always")
def threads(seg, mm):
    return seg[mm_word(seg, mm, _NTHREADS)]


@njit(inline="always")
def consistent(seg):
    """Quiescent: no task's sequence count is left odd, no cache holds more than a thread can (66 * S)."""
    bad = 0
    most = PER_THREAD * dparam(seg, _P_CACHED_PAGES)
    for t in range(seg[L.H_NTASK]):
        tw = task_word(seg, t, 0)
        if seg[tw + _SEQ] & 1:
            bad += 1
        for k in range(L.NMEMBERS):
            if abs(seg[tw + _CACHE + k]) > most:
                bad += 1
    return bad


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    v = load(seg, mm_word(seg, mm, k))
    return v if v > 0 else 0


@njit(inline="always")
def approx_bound(seg, mm, k):
    n = load(seg, mm_word(seg, mm, _NTHREADS))
    e = PER_THREAD * dparam(seg, _P_CACHED_PAGES) * (n if n > 0 else 0)
    return e, e


@njit(inline="always")
def _seq_sum(seg, mm):
    n = 0
    for t in range(seg[L.H_NTASK]):
        if _own(seg, t, mm):
            n += load(seg, task_word(seg, t, _SEQ))
    return n


@njit(inline="always")
def read_precise(seg, mm, k):
    # Sequence counts only grow, so an unchanged sum means no fold ran between reading the
    # caches and reading the atomic: nothing folded was missed or counted twice.
    for _ in range(MAX_RETRIES):
        seqs = 0
        s = 0
        for t in range(seg[L.H_NTASK]):
            if not _own(seg, t, mm):
                continue
            tw = task_word(seg, t, 0)
            while True:
                s0 = load(seg, tw + _SEQ)
                if s0 & 1:
                    pause()
                    continue
                c = load(seg, tw + _CACHE + k)
                if load(seg, tw + _SEQ) == s0:
                    break
            seqs += s0
            s += c
        a = load(seg, mm_word(seg, mm, k))
        if _seq_sum(seg, mm) == seqs:
            return s + a
    return s + a


@njit(inline="always")
def thread_created(seg, cpu, mm):
    jstep(seg, cpu, jflag(seg, cpu), _NTHREADS_ADD)
    xadd(seg, mm_word(seg, mm, _NTHREADS), 1)


@njit(inline="always")
def task_exit(seg, cpu, task, mm):
    jf = jflag(seg, cpu)
    _sync(seg, cpu, task, mm, jf)
    jstep(seg, cpu, jf, _NTHREADS_ADD)
    xadd(seg, mm_word(seg, mm, _NTHREADS), -1)


@njit(inline="always")
def mm_init(seg, mm):
    for j in range(L.NMEMBERS + 1):
        store(seg, mm_word(seg, mm, j), 0)
    for t in range(seg[L.H_NTASK]):
        if _own(seg, t, mm):
            for j in range(2 + L.NMEMBERS):
                store(seg, task_word(seg, t, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


PEEK_ATTEMPTS = 64  # sequence-count attempts before the monitor calls a precise value unsettled


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value: ``read_precise``'s protocol with a bounded number of attempts (a CPU
    killed inside a fold leaves a sequence count odd for good; the monitor must not wait on it). Returns
    (value, 1) when the sequence counts settled, else (the last sum, 0)."""
    s = 0
    for _ in range(PEEK_ATTEMPTS):
        ok = True
        seqs = 0
        s = 0
        for t in range(seg[L.H_NTASK]):
            if not _own(seg, t, mm):
                continue
            s0 = load(seg, task_word(seg, t, _SEQ))
            if s0 & 1:
                ok = False
                break
            c = load(seg, task_word(seg, t, _CACHE + k))
            if load(seg, task_word(seg, t, _SEQ)) != s0:
                ok = False
                break
            seqs += s0
            s += c
        if not ok:
            continue
        s += load(seg, mm_word(seg, mm, k))
        if _seq_sum(seg, mm) == seqs:
            return s, 1
    return s, 0


def fits_header(h) -> bool:
    return h[L.H_MM_STRIDE] >= L.NMEMBERS + 1 and h[L.H_TASK_STRIDE] >= L.T_DESIGN + _CACHE + L.NMEMBERS
