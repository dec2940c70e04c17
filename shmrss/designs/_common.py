"""Address arithmetic and tallies shared by the compiled designs.

Every function is inlined into the design's code; the segment header is read
through constant slots, so an address is a few loads from a read-only line.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import local_add, pause, spin_lock, spin_unlock, store, xadd


@njit(inline="always")
def pcpu_word(seg, cpu, mm, j):
    """Word j of mm's per-CPU slice in CPU cpu's unit (interleaved across CPUs with --pack)."""
    k = mm * seg[L.H_PCPU_KWORDS] + j
    return seg[L.H_PCPU] + cpu * seg[L.H_PCPU_CSTRIDE] + k * seg[L.H_PCPU_KSTRIDE]


@njit(inline="always")
def mm_word(seg, mm, j):
    return seg[L.H_MM] + mm * seg[L.H_MM_STRIDE] + j


@njit(inline="always")
def task_word(seg, task, j):
    return seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE] + L.T_DESIGN + j


@njit(inline="always")
def stat_word(seg, cpu, field):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE] + field


@njit(inline="always")
def truth_sum(seg, mm, k):
    """The ground truth of member k of mm: every CPU's truth word summed (for checks and recovery, never a
    design's own read)."""
    s = 0
    for cpu in range(seg[L.H_NCPU]):
        s += seg[seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k]
    return s


@njit(inline="always")
def tally(seg, cpu, field, n):
    """Count a rare event (slow path, miss, lock spin) on the CPU's own tally line."""
    if cpu >= 0:
        local_add(seg, stat_word(seg, cpu, field), n)


@njit(inline="always")
def dparam(seg, i):
    return seg[L.H_DPARAM + i]


@njit(inline="always")
def members_not_zero(read_precise, seg, mm):
    """check_mm's teardown test: how many members of mm do not sum to 0 (one precise sum each)."""
    bad = 0
    for k in range(L.NMEMBERS):
        if read_precise(seg, mm, k) != 0:
            bad += 1
    return bad


# ---- the in-flight journal (see layout.S_J): kill points and saved values, only where J_ON is set

@njit(inline="always")
def owner(cpu):
    """The lock owner id of emulated CPU ``cpu`` (-1: the parent acting for a CPU)."""
    return cpu + 1 if cpu >= 0 else L.OWNER_PARENT


@njit(inline="always")
def jword(seg, cpu, slot):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE] + L.S_J + slot


@njit(inline="always")
def journaling(seg, cpu):
    return cpu >= 0 and seg[jword(seg, cpu, L.J_ON)] != 0


@njit  # not cache=True: cached with each entry point that calls it (shmrss.specialise)
def _kill_point(seg, cpu, step):
    # tests stop a CPU at the n-th kill point (of one step, if J_KILL_STEP is set): it stays there,
    # frozen, until the parent kills it; a call, not inlined: it only runs in journaled runs
    k = jword(seg, cpu, L.J_KILL)
    n = seg[k]
    only = seg[jword(seg, cpu, L.J_KILL_STEP)]
    if n > 0 and (only == 0 or only == step):
        seg[k] = n - 1
        if n == 1:
            store(seg, stat_word(seg, cpu, L.S_STATUS), L.CPU_FROZEN)
            while True:
                pause()


@njit
def _record_step(seg, cpu, step):
    store(seg, jword(seg, cpu, L.J_STEP), step)
    _kill_point(seg, cpu, step)


@njit
def _record_save_step(seg, cpu, step, slot, v):
    store(seg, jword(seg, cpu, slot), v)
    store(seg, jword(seg, cpu, L.J_STEP), step)
    _kill_point(seg, cpu, step)


JOURNAL = 2  # a bit of add's ``fault`` argument: this CPU journals (set by the engine from J_ON)
# a bit of add's ``fault`` argument: a batched unmap of the task's own mm (zap_pte_range's add_mm_rss_vec,
# madvise_free's swap entries), as opposed to a remote update; the engine sets it on its unmap steps
UNMAP = 4


@njit(inline="always")
def jflag(seg, cpu):
    """The journal bit for the rare paths (switch, clone, exit) that have no ``fault`` argument."""
    return JOURNAL if journaling(seg, cpu) else 0


# ``jf`` is a value the caller holds in a register (add's ``fault & JOURNAL``): the test costs nothing
# measurable on the hot path, and the loop without it is what the compiler keeps for unjournaled runs
@njit(inline="always")
def jstep(seg, cpu, jf, step):
    """A kill point before ``step`` of a multi-step update: the step is recorded as about to run."""
    if jf:
        _record_step(seg, cpu, step)


@njit(inline="always")
def jstep_save(seg, cpu, jf, step, slot, v):
    """Save ``v`` (an old value that tells whether the step ran) and record the step."""
    if jf:
        _record_save_step(seg, cpu, step, slot, v)


@njit(inline="always")
def jget(seg, cpu, slot):
    return seg[jword(seg, cpu, slot)]


@njit(inline="always")
def doubt(seg, cpu, kind, mm, k, d):
    """Recovery: a lock-free update of a shared word may or may not have landed; resolved when quiescent."""
    seg[jword(seg, cpu, L.J_DOUBT_MM)] = mm
    seg[jword(seg, cpu, L.J_DOUBT_K)] = k
    seg[jword(seg, cpu, L.J_DOUBT_D)] = d
    seg[jword(seg, cpu, L.J_DOUBT_KIND)] = kind


@njit(inline="always")
def hold(seg, lk, cpu):
    """Recovery: make sure the dead CPU's lock ``lk`` is held for it (it may have died just before taking it)."""
    if seg[lk] != cpu + 1:
        spin_lock(seg, lk, cpu + 1)


@njit(inline="always")
def release_if_held(seg, lk, cpu):
    if seg[lk] == cpu + 1:
        spin_unlock(seg, lk)


@njit(inline="always")
def settle(seg, w, old, new):
    """Recovery of a one-instruction update of a word only the dead CPU wrote: 0 done now, 1 had landed, 2 neither."""
    v = seg[w]
    if v == new:
        return 1
    if v == old:
        store(seg, w, new)
        return 0
    return 2


@njit(inline="always")
def settle_shared(seg, w, d, residue):
    """Resolve a doubtful ``lock xadd(w, d)`` from the conservation residue (value - expected) at quiescence."""
    if residue == 0:
        return L.RES_LANDED
    if residue == -d:
        xadd(seg, w, d)
        return L.RES_APPLIED
    return L.RES_BAD


@njit(inline="always")
def jsave(seg, cpu, jf, slot, v):
    """Save a value for recovery before the kill point of the step that needs it."""
    if jf:
        store(seg, jword(seg, cpu, slot), v)


# the fault interface's answers for a design without locks or without a thread count
@njit(inline="always")
def no_locks(seg, who):
    """``release_locks`` of a design that takes no lock."""
    pass


@njit(inline="always")
def no_thread_count(seg, mm):
    """``threads`` of a design that keeps no thread count: -1."""
    return -1


@njit(inline="always")
def no_transient(seg, mm, k, mark):
    """``transient_slack`` of a design whose reads keep their stated bounds at every instant: (0, 0)."""
    return 0, 0


@njit(inline="always")
def no_slack_mark(seg, mm, k):
    """``slack_mark`` of a design whose slack does not depend on what happened during the read: 0."""
    return 0
