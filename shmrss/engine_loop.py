"""The compiled loops of one design: the emulated CPU, the reader's pass, and the end-of-run checks.

This file is a template. ``shmrss.engine`` copies it once per design with the
import line marked DESIGN-IMPORT pointing at that design, so each design gets
its own module whose loops call the design's functions directly (inlined, no
dispatch per event) and which numba can cache on disk.

Ground truth protocol, per event on CPU c (all on c's own lines):
  1. VAR += |d|      (published before the truth, so a reader that sees the truth sees VAR)
  2. truth[mm][k] += d
  3. the design's update
  4. COMMIT = VAR    (the update is complete)
A reader that reads COMMIT and the truth before a read (C0, T0) and the truth
and VAR after it (T1, V1) knows that every value of c's contribution the read
could have seen lies within W = V1 - C0 of both T0 and T1: the envelope
[max(T0, T1) - W, min(T0, T1) + W], exact ([T0, T1]) when the truth only grows.
"""

import numpy as np
from numba import njit

from shmrss import layout as L
from shmrss.atomics import compiler_barrier, load, local_add, pause, raw, rdtsc, spin_lock, spin_unlock, store, xadd
from shmrss.designs._common import JOURNAL, UNMAP
from shmrss.faultbody import count_ticks, fault_in, release
from shmrss.designs.atomic import (  # DESIGN-IMPORT
    add, approx_bound, consistent, cpu_offline, mm_destroy, mm_init, read_approx, read_precise, recover,
    release_locks, resolve, switch_mm, task_exit, thread_created, threads, transient_slack,
)

# the design's operations as calls, for recovery: inlining them into it again would multiply compile time
_add_call = njit(cache=True)(add.py_func)
_switch_call = njit(cache=True)(switch_mm.py_func)
_created_call = njit(cache=True)(thread_created.py_func)
_exit_call = njit(cache=True)(task_exit.py_func)
_recover_call = njit(cache=True)(recover.py_func)
_resolve_call = njit(cache=True)(resolve.py_func)

RECOVERY_VAR = 1 << 40  # added to a dead CPU's VAR while it is recovered: reads overlapping it are not judged


@njit(inline="always")
def _stat(seg, cpu):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE]


@njit(inline="always")
def _task(seg, t):
    return seg[L.H_TASK] + t * seg[L.H_TASK_STRIDE]


@njit(inline="always")
def _rq(seg, cpu):
    return seg[L.H_RQ] + cpu * seg[L.H_RQ_STRIDE]


@njit(inline="always")
def _step_remain(seg, tape_start, step):
    """Events a step holds: a fault step one per page, any other step one."""
    b = seg[L.H_TAPE] + (tape_start + step) * L.STEP_WORDS
    if seg[b] == L.OP_FAULT:
        return seg[b + 2]
    return 1


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

    get_mm_counter is each design's approximate read (``read_approx``): upstream
    ``percpu_counter_read_positive``, HPCC ``percpu_counter_tree_approximate_sum_positive``
    (the root, no walk), pcpcache's RFC ``get_mm_counter`` (a cpumask walk); clamped at 0
    as the ``_positive`` reads and the unsigned sum are. Callers: munmap's unmap_region
    (mm/vma.c), zap_page_range_single (madvise DONTNEED), madvise_free_single_vma and
    try_to_unmap_one (reclaim); not exit_mmap ("update_hiwater_rss(mm) here? but nobody
    should be looking"), so ``teardown`` does not read.
    """
    rss = max(read_approx(seg, mm, L.FILE), 0) + max(read_approx(seg, mm, L.ANON), 0) + \
        max(read_approx(seg, mm, L.SHMEM), 0)
    w = seg[L.H_HIWATER] + mm * seg[L.H_LINE]
    if load(seg, w) < rss:
        store(seg, w, rss)


@njit(inline="always")
def _apply_paged(seg, st, truth, var, cpu, t, mm, k, pages):
    """--fault-body page: a fault event of ``pages`` pages, the counter update then the real faults,
    each timed apart. Never journaled (the CLI refuses page work with fault injection)."""
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


@njit(inline="always")
def _rq_remove(seg, rq, t, who):
    spin_lock(seg, rq + L.Q_LOCK, who)
    n = load(seg, rq + L.Q_N)
    for i in range(n):
        if seg[rq + L.Q_IDS + i] == t:
            seg[rq + L.Q_IDS + i] = seg[rq + L.Q_IDS + n - 1]
            break
    store(seg, rq + L.Q_N, n - 1)
    spin_unlock(seg, rq + L.Q_LOCK)


@njit(inline="always")
def _rq_append(seg, rq, t, who):
    spin_lock(seg, rq + L.Q_LOCK, who)
    n = load(seg, rq + L.Q_N)
    store(seg, rq + L.Q_IDS + n, t)
    store(seg, rq + L.Q_N, n + 1)  # release: the id and the task's saved state are visible first
    spin_unlock(seg, rq + L.Q_LOCK)


@njit(inline="always")
def _pick(seg, rq, after):
    """Index of the next runnable task after position ``after`` (round robin), or -1.

    Every sleeping task passed over loses one pass of its sleep.
    """
    n = load(seg, rq + L.Q_N)
    for i in range(n):
        j = (after + 1 + i) % n
        tb = _task(seg, load(seg, rq + L.Q_IDS + j))
        s = seg[tb + L.T_SLEEP]
        if s == 0:
            return j
        if s > 0:
            seg[tb + L.T_SLEEP] = s - 1
    return -1


@njit(inline="always")
def _save_task(seg, tb, step, remain):
    seg[tb + L.T_STEP] = step
    seg[tb + L.T_REMAIN] = remain


@njit(inline="always")
def _park(seg, st, ctrl, t, tb, step, remain):
    """Wait at a check point while the parent holds every CPU still (checks, recovery of a dead CPU)."""
    if t >= 0:
        _save_task(seg, tb, step, remain)
    store(seg, st + L.S_CUR_TASK, t)
    store(seg, st + L.S_STATUS, L.CPU_PARKED)
    while load(seg, ctrl + L.C_PAUSE) != 0 and load(seg, ctrl + L.C_STOP) == 0:
        pause()
    store(seg, st + L.S_STATUS, L.CPU_RUNNING)


@njit(inline="always")
def _alive(seg, cpu):
    s = load(seg, _stat(seg, cpu) + L.S_STATUS)
    return s == L.CPU_RUNNING or s == L.CPU_PARKED or s == L.CPU_BARRIER


@njit("int64(int64[::1], int64)", cache=True)
def cpu_main(words, cpu):
    """Run emulated CPU ``cpu`` until the stop flag (or an offline request); return its event count."""
    seg = raw(words)
    st = _stat(seg, cpu)
    ctrl = seg[L.H_CTRL]
    line = seg[L.H_LINE]
    truth = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE]
    rq = _rq(seg, cpu)
    every = seg[L.H_STAT_EVERY]
    slice_len = seg[L.H_SLICE]
    nwork = seg[L.H_NWORK]
    nmm = seg[L.H_NMM]
    jon = seg[st + L.S_J + L.J_ON] != 0
    paged = seg[st + L.S_FB_PAGES] != 0  # --fault-body page: real page faults beside each update
    j = st + L.S_J

    store(seg, st + L.S_STATUS, L.CPU_BARRIER)
    xadd(seg, ctrl + line + L.C_BARRIER, 1)
    while load(seg, ctrl + L.C_GO) == 0:
        if load(seg, ctrl + L.C_STOP) != 0:
            store(seg, st + L.S_STATUS, L.CPU_DONE)
            return 0
        pause()
    store(seg, st + L.S_STATUS, L.CPU_RUNNING)
    store(seg, st + L.S_TSC_START, rdtsc())

    events = 0
    faulted = 0  # pages of the fault events
    steps = 0  # events plus scheduler steps: paces the stop check even on a tape of yields
    switches = 0
    migrations = 0
    idle = 0
    target = 0
    var = load(seg, st + L.S_VAR)
    cur_mm = -1
    qi = -1
    t = -1
    tb = 0
    mm = 0
    tape_start = 0
    tape_len = 0
    step = 0
    remain = 0
    left = 0
    check_at = every
    need_pick = True
    offline = False

    while True:
        if need_pick:
            # scheduler: the next runnable task of this CPU's queue, idling while there is none
            if t >= 0:
                _save_task(seg, tb, step, remain)
            j_ = _pick(seg, rq, qi)
            while j_ < 0:
                idle += 1
                for _ in range(L.IDLE_PAUSES):
                    pause()
                if load(seg, ctrl + L.C_STOP) != 0:
                    break
                if load(seg, st + L.S_REQ) == L.REQ_OFFLINE:
                    offline = True
                    break
                if load(seg, ctrl + L.C_PAUSE) != 0:
                    _park(seg, st, ctrl, -1, 0, 0, 0)
                j_ = _pick(seg, rq, -1)
            if j_ < 0:
                t = -1
                break
            qi = j_
            t = load(seg, rq + L.Q_IDS + j_)
            tb = _task(seg, t)
            mm = seg[tb + L.T_MM]
            tape_start = seg[tb + L.T_TAPE_START]
            tape_len = seg[tb + L.T_TAPE_LEN]
            step = seg[tb + L.T_STEP]
            remain = seg[tb + L.T_REMAIN]
            if mm != cur_mm:
                if jon:
                    store(seg, j + L.J_MM, cur_mm)
                    store(seg, j + L.J_B, mm)
                    store(seg, j + L.J_STEP, 0)
                    store(seg, j + L.J_OP, L.JOP_SWITCH)
                switch_mm(seg, cpu, cur_mm, mm)
                if cur_mm >= 0:
                    switches += 1
                cur_mm = mm
                store(seg, st + L.S_CUR_MM, mm)
                if jon:
                    store(seg, j + L.J_OP, L.JOP_NONE)
            left = slice_len
            need_pick = False

        sb = seg[L.H_TAPE] + (tape_start + step) * L.STEP_WORDS
        op = seg[sb]
        k = seg[sb + 1]
        if op == L.OP_FAULT:
            # a run of faults: as many as the step, the slice and the next stop check allow,
            # in a loop that keeps only the fault's own state in registers
            n = remain
            if left < n:
                n = left
            if check_at - steps < n:
                n = check_at - steps
            # pages per fault: 1, 16 (fault-around, a 64 KiB mTHP), 512 (a 2 MiB THP); 0 in a tape read as 1
            pages = max(seg[sb + 3], 1)
            if jon:  # journaled runs (faults) are not the ones timed: their updates are calls
                for _ in range(n):
                    var = _apply_call(seg, st, truth, var, cpu, t, mm, k, pages, 1, True)
            elif paged:  # tested once per run of faults, like jon: the loop below it is unchanged
                for _ in range(n):
                    var = _apply_paged(seg, st, truth, var, cpu, t, mm, k, pages)
            else:  # the constant lets the compiler drop every journal test from the timed loop
                for _ in range(n):
                    var = _apply(seg, st, truth, var, cpu, t, mm, k, pages, 1, False)
            events += n
            faulted += n * pages
        else:
            n = 1
            if jon and (op == L.OP_UNMAP or op == L.OP_REMOTE):
                # the step counts as taken before it runs: a kill from here on is completed by the parent,
                # so the task, wherever it runs next, must not do it again (a second unmap would go negative)
                nxt = step + 1 if step + 1 < tape_len else 0
                _save_task(seg, tb, nxt, _step_remain(seg, tape_start, nxt))
            if op == L.OP_UNMAP and paged:
                _hiwater_call(seg, mm)  # munmap: unmap_region's update_hiwater_rss(mm) before unmap_vmas
                var = _unmap_paged(seg, st, truth, var, cpu, t, mm, k, seg[sb + 2])
                events += 1
            elif op == L.OP_UNMAP:
                _hiwater_call(seg, mm)  # munmap: unmap_region's update_hiwater_rss(mm) before unmap_vmas
                var = _apply_call(seg, st, truth, var, cpu, t, mm, k, -seg[sb + 2], UNMAP, jon)
                events += 1
            elif op == L.OP_REMOTE:
                var = _apply_call(seg, st, truth, var, cpu, t, (mm + seg[sb + 3]) % nmm, k, seg[sb + 2], 0, jon)
                events += 1
            elif op == L.OP_EXEC:  # the argument copy faults into the new image's mm before the switch to it
                for _ in range(seg[sb + 2]):
                    var = _apply_call(seg, st, truth, var, cpu, t, (mm + seg[sb + 3]) % nmm, k, 1, 1, jon)
                events += seg[sb + 2]
            elif op == L.OP_CLONE or op == L.OP_EXIT:
                if jon:  # the task's place in its tape is saved after the step: it is never done twice
                    store(seg, j + L.J_MM, mm)
                    store(seg, j + L.J_K, op)
                    store(seg, j + L.J_TASK, t)
                    store(seg, j + L.J_D, step)
                    store(seg, j + L.J_STEP, 0)
                    store(seg, j + L.J_OP, L.JOP_SCHED)
                if op == L.OP_CLONE:
                    thread_created(seg, cpu, mm)
                else:
                    task_exit(seg, cpu, t, mm)  # the slot carries on as the thread an earlier clone made
            elif op == L.OP_YIELD:
                need_pick = True
            elif op == L.OP_SLEEP:
                seg[tb + L.T_SLEEP] = -1 if seg[sb + 2] == 0 else seg[sb + 2]
                need_pick = True
            elif op == L.OP_MIGRATE:
                target = (cpu + seg[sb + 2]) % nwork
                for _ in range(nwork):  # a CPU that is gone takes no tasks: the next live one does
                    if _alive(seg, target):
                        break
                    target = (target + 1) % nwork
                if target != cpu:
                    need_pick = True
        steps += n
        left -= n

        remain -= n
        if remain == 0:
            step += 1
            if step == tape_len:
                step = 0
            remain = _step_remain(seg, tape_start, step)
        if jon and (op == L.OP_CLONE or op == L.OP_EXIT):
            _save_task(seg, tb, step, remain)
            store(seg, j + L.J_OP, L.JOP_NONE)

        if op == L.OP_MIGRATE and need_pick:
            # hand the task over: its saved state first, then the target's queue
            _save_task(seg, tb, step, remain)
            _rq_remove(seg, rq, t, cpu + 1)
            seg[tb + L.T_CPU] = target
            _rq_append(seg, _rq(seg, target), t, cpu + 1)
            migrations += 1
            t = -1
            qi -= 1

        if left == 0 and not need_pick:
            if load(seg, rq + L.Q_N) > 1:
                need_pick = True
            left = slice_len

        if steps >= check_at:
            check_at += every
            store(seg, st + L.S_EVENTS, events)
            store(seg, st + L.S_PAGES, faulted)
            store(seg, st + L.S_SWITCHES, switches)
            store(seg, st + L.S_OPS, steps - events)
            store(seg, st + L.S_MIGRATIONS, migrations)
            store(seg, st + L.S_IDLE, idle)
            store(seg, st + L.S_BEAT, rdtsc())
            if load(seg, ctrl + L.C_STOP) != 0:
                break
            if load(seg, st + L.S_REQ) == L.REQ_OFFLINE:
                offline = True
                break
            if load(seg, ctrl + L.C_PAUSE) != 0:
                _park(seg, st, ctrl, t, tb, step, remain)

    store(seg, st + L.S_TSC_END, rdtsc())
    if t >= 0:
        _save_task(seg, tb, step, remain)
    store(seg, st + L.S_CUR_TASK, t)
    store(seg, st + L.S_EVENTS, events)
    store(seg, st + L.S_PAGES, faulted)
    store(seg, st + L.S_SWITCHES, switches)
    store(seg, st + L.S_OPS, steps - events)
    store(seg, st + L.S_MIGRATIONS, migrations)
    store(seg, st + L.S_IDLE, idle)
    store(seg, st + L.S_STATUS, L.CPU_OFFLINE if offline else L.CPU_DONE)
    return events


@njit("void(int64[::1])", cache=True)
def exit_all(words):
    """After the run (every CPU stopped): every task exits on its CPU, then every CPU leaves its mm.

    Done by the parent on the CPUs' behalf, so that a task migrating at the
    moment of the stop is not missed.
    """
    seg = raw(words)
    for cpu in range(seg[L.H_NWORK]):
        rq = _rq(seg, cpu)
        for i in range(load(seg, rq + L.Q_N)):
            t = load(seg, rq + L.Q_IDS + i)
            task_exit(seg, cpu, t, seg[_task(seg, t) + L.T_MM])
    for cpu in range(seg[L.H_NCPU]):
        st = _stat(seg, cpu)
        switch_mm(seg, cpu, seg[st + L.S_CUR_MM], -1)
        seg[st + L.S_CUR_MM] = -1


@njit("void(int64[::1], int64, int64, int64, int64)", cache=True)
def reclaimer_main(words, cpu, seed, batch, pause_n):
    """kswapd: swap ``batch`` pages of a random mm out (anon -> swap) and, 8 moves later, back in.

    Runs as emulated CPU ``cpu`` (its own per-CPU words and truth line), so its
    updates are remote updates to mms that CPU does not run.
    """
    seg = raw(words)
    st = _stat(seg, cpu)
    ctrl = seg[L.H_CTRL]
    truth = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE]
    nmm = seg[L.H_NMM]
    jon = seg[st + L.S_J + L.J_ON] != 0
    xadd(seg, ctrl + seg[L.H_LINE] + L.C_BARRIER, 1)
    while load(seg, ctrl + L.C_GO) == 0 and load(seg, ctrl + L.C_STOP) == 0:
        pause()
    store(seg, st + L.S_STATUS, L.CPU_RUNNING)
    store(seg, st + L.S_TSC_START, rdtsc())
    pending = np.full(8, -1, dtype=np.int64)  # swapped-out mms; each comes back in 8 moves later
    x = seed | 1
    var = load(seg, st + L.S_VAR)
    moves = 0
    while load(seg, ctrl + L.C_STOP) == 0:
        slot = moves & 7
        back = pending[slot]
        if back >= 0:
            var = _apply_call(seg, st, truth, var, cpu, -1, back, L.SWAP, -batch, 0, jon)
            var = _apply_call(seg, st, truth, var, cpu, -1, back, L.ANON, batch, 0, jon)
        x ^= x << 13
        x ^= (x >> 7) & ((1 << 57) - 1)
        x ^= x << 17
        victim = (x & 0x7FFFFFFF) % nmm
        _hiwater_call(seg, victim)  # try_to_unmap_one: update_hiwater_rss(mm) before the anon -> swap move
        var = _apply_call(seg, st, truth, var, cpu, -1, victim, L.ANON, -batch, 0, jon)
        var = _apply_call(seg, st, truth, var, cpu, -1, victim, L.SWAP, batch, 0, jon)
        pending[slot] = victim
        moves += 1
        store(seg, st + L.S_EVENTS, 4 * moves)
        for _ in range(pause_n):
            pause()
        if load(seg, ctrl + L.C_PAUSE) != 0:
            _park(seg, st, ctrl, -1, 0, 0, 0)
    for slot in range(8):  # swap everything back in before leaving
        if pending[slot] >= 0:
            var = _apply_call(seg, st, truth, var, cpu, -1, pending[slot], L.SWAP, -batch, 0, jon)
            var = _apply_call(seg, st, truth, var, cpu, -1, pending[slot], L.ANON, batch, 0, jon)
    store(seg, st + L.S_TSC_END, rdtsc())
    store(seg, st + L.S_STATUS, L.CPU_DONE)


@njit(inline="always")
def _envelope(seg, mm, k, c0, t0):
    """Bounds of what a read of (mm, k) begun after the (c0, t0) snapshot could have seen."""
    lo = 0
    hi = 0
    for cpu in range(seg[L.H_NCPU]):
        tw = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k
        t1 = load(seg, tw)
        v1 = load(seg, _stat(seg, cpu) + L.S_VAR)
        w = v1 - c0[cpu]
        lo += max(t0[cpu], t1) - w
        hi += min(t0[cpu], t1) + w
    return lo, hi


@njit(inline="always")
def _snapshot(seg, mm, k, c0, t0):
    for cpu in range(seg[L.H_NCPU]):
        c0[cpu] = load(seg, _stat(seg, cpu) + L.S_COMMIT)
        t0[cpu] = load(seg, seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k)


@njit(inline="always")
def _note_violation(seg, r, mm, k, v, lo, hi, kind):
    if seg[r + L.R_VIOL_KIND] == 0:
        seg[r + L.R_VIOL_MM] = mm
        seg[r + L.R_VIOL_MEMBER] = k
        seg[r + L.R_VIOL_VALUE] = v
        seg[r + L.R_VIOL_LO] = lo
        seg[r + L.R_VIOL_HI] = hi
        seg[r + L.R_VIOL_KIND] = kind


@njit(inline="always")
def _note_transient(seg, at, beyond):
    """A read the design's documented transient error explains: count it, keep the largest (words at, at + 1)."""
    seg[at] += 1
    if beyond > seg[at + 1]:
        seg[at + 1] = beyond


@njit("void(int64[::1])", cache=True)
def reader_pass(words):
    """One pass of the reader: approximate then precise read of every counter, each judged and timed."""
    seg = raw(words)
    r = seg[L.H_READER]
    ring = seg[L.H_RING]
    ring_a = r + L.R_HEAD_WORDS
    ring_p = ring_a + ring
    n = seg[L.H_NCPU]
    c0 = np.empty(n, dtype=np.int64)
    t0 = np.empty(n, dtype=np.int64)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            _snapshot(seg, mm, k, c0, t0)
            a0 = rdtsc()
            v = read_approx(seg, mm, k)
            a1 = rdtsc()
            lo, hi = _envelope(seg, mm, k, c0, t0)
            under, over = approx_bound(seg, mm, k)
            err = lo - v if v < lo else (v - hi if v > hi else 0)
            i = seg[r + L.R_NAPPROX]
            seg[ring_a + i % ring] = a1 - a0
            seg[r + L.R_NAPPROX] = i + 1
            if err > seg[r + L.R_APPROX_MAXERR]:
                seg[r + L.R_APPROX_MAXERR] = err
            bound = max(under, over)
            if bound > seg[r + L.R_MAX_BOUND]:
                seg[r + L.R_MAX_BOUND] = bound
            if bound > 0 and err * 1_000_000 // bound > seg[r + L.R_ERR_PPM]:
                seg[r + L.R_ERR_PPM] = err * 1_000_000 // bound
            if lo >= L.RATIO_FLOOR:
                # the ratio the read must have had: against the nearest truth it could have seen
                ppm = v * 1_000_000 // lo if v < lo else (v * 1_000_000 // hi if v > hi else 1_000_000)
                if ppm < seg[r + L.R_MIN_RATIO_PPM]:
                    seg[r + L.R_MIN_RATIO_PPM] = ppm
            beyond = lo - under - v if v < lo - under else (v - hi - over if v > hi + over else 0)
            if beyond > 0:
                a_slack, p_slack = transient_slack(seg, mm, k)
                if beyond <= a_slack:
                    _note_transient(seg, r + L.R_APPROX_TRANSIENT, beyond)
                else:
                    seg[r + L.R_APPROX_VIOL] += 1
                    _note_violation(seg, r, mm, k, v, lo - under, hi + over, 1)

            _snapshot(seg, mm, k, c0, t0)
            p0 = rdtsc()
            v = read_precise(seg, mm, k)
            p1 = rdtsc()
            lo, hi = _envelope(seg, mm, k, c0, t0)
            err = lo - v if v < lo else (v - hi if v > hi else 0)
            i = seg[r + L.R_NPRECISE]
            seg[ring_p + i % ring] = p1 - p0
            seg[r + L.R_NPRECISE] = i + 1
            if err > seg[r + L.R_PRECISE_MAXERR]:
                seg[r + L.R_PRECISE_MAXERR] = err
            if err > 0:
                a_slack, p_slack = transient_slack(seg, mm, k)
                if err <= p_slack:
                    _note_transient(seg, r + L.R_PRECISE_TRANSIENT, err)
                else:
                    seg[r + L.R_PRECISE_VIOL] += 1
                    _note_violation(seg, r, mm, k, v, lo, hi, 2)
    seg[r + L.R_PASSES] += 1
    store(seg, r + L.R_BEAT, rdtsc())


@njit("void(int64[::1], int64[:, ::1])", cache=True)
def quiescent_check(words, out):
    """With every CPU stopped: out[mm*4+k] = (truth, precise, approx, under, over)."""
    seg = raw(words)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            s = 0
            for cpu in range(seg[L.H_NCPU]):
                s += seg[seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k]
            row = mm * L.NMEMBERS + k
            out[row, 0] = s
            out[row, 1] = read_precise(seg, mm, k)
            out[row, 2] = read_approx(seg, mm, k)
            u, o = approx_bound(seg, mm, k)
            out[row, 3] = u
            out[row, 4] = o


@njit("void(int64[::1])", cache=True)
def init_mms(words):
    """mm_init every mm, then create its threads: one per task placed in it."""
    seg = raw(words)
    for mm in range(seg[L.H_NMM]):
        mm_init(seg, mm)
    for t in range(seg[L.H_NTASK]):
        thread_created(seg, -1, seg[_task(seg, t) + L.T_MM])


@njit("int64[::1](int64[::1], int64)", cache=True)
def teardown(words, cpu):
    """exit_mmap on CPU ``cpu``: unmap what each mm still holds, then mm_destroy; returns bad members per mm."""
    seg = raw(words)
    bad = np.zeros(seg[L.H_NMM], dtype=np.int64)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            s = 0
            for c in range(seg[L.H_NCPU]):
                s += seg[seg[L.H_TRUTH] + c * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k]
            if s != 0:
                add(seg, cpu, -1, mm, k, -s, 0)
        bad[mm] = mm_destroy(seg, mm)
    return bad


@njit(inline="always")
def _badness_approx(seg, mm):
    """(approximate rss + swap, under, over): the sum of the four members and of their ranges."""
    a = 0
    u = 0
    o = 0
    for k in range(L.NMEMBERS):
        a += read_approx(seg, mm, k)
        uk, ok = approx_bound(seg, mm, k)
        u += uk
        o += ok
    return a, u, o


@njit(inline="always")
def _badness_precise(seg, mm):
    s = 0
    for k in range(L.NMEMBERS):
        s += read_precise(seg, mm, k)
    return s


@njit(inline="always")
def _var_sum(seg):
    s = 0
    for cpu in range(seg[L.H_NCPU]):
        s += load(seg, _stat(seg, cpu) + L.S_VAR)
    return s


@njit(inline="always")
def _two_pass(seg):
    """OOM victim, 2-pass (HPCC v16 3/3, mm/oom_kill.c): (victim, precise sums done, capped).

    Pass 1 is ``select_bad_process``'s approximate scan: ``if (points == LONG_MIN || points <
    oc->chosen_points) goto next;`` (so the last equal task wins), keeping the chosen task's
    ``accuracy_under``. Pass 2 visits every task again, the chosen one included::

        if (points == LONG_MIN || (long)(points + accuracy_over + oc->accuracy_under - oc->chosen_points) < 0)
            goto next;
        if (oc->nr_precise < max_precise_badness_sums) {
            accuracy_under = 0;
            accuracy_over = 0;
            oc->nr_precise++;
            points = oom_badness(task, oc->totalpages, false, NULL, NULL);
            if (points == LONG_MIN || (long)(points + oc->accuracy_under - oc->chosen_points) < 0)
                goto next;
        }
        select: ... oc->chosen_points = points; oc->accuracy_under = accuracy_under;

    with ``static int max_precise_badness_sums = 16;``: once the sums are spent, a task that passes
    the approximate filter is taken on its approximate points (``capped``: it happened in this
    selection). Badness is the four members' sum and its range the sum of theirs (oom_badness adds
    rss and swap; page tables and oom_score_adj are not modelled).
    """
    nmm = seg[L.H_NMM]
    chosen = -1
    chosen_points = -(1 << 62)
    chosen_under = 0
    for mm in range(nmm):  # pass 1: approximate scan
        a, u, o = _badness_approx(seg, mm)
        if a < chosen_points:
            continue
        chosen = mm
        chosen_points = a
        chosen_under = u
    sums = 0
    capped = False
    for mm in range(nmm):  # pass 2: every task, the chosen one included
        points, u, o = _badness_approx(seg, mm)
        if points + o + chosen_under - chosen_points < 0:
            continue  # below the chosen points' accuracy range
        if sums < L.OOM_CAP:
            sums += 1
            u = 0
            points = _badness_precise(seg, mm)
            if points + chosen_under - chosen_points < 0:
                continue
        else:
            capped = True  # out of precise sums: taken on its approximate points
        chosen = mm
        chosen_points = points
        chosen_under = u
    return chosen, sums, capped


@njit(inline="always")
def _precise_scan(seg):
    """The all-precise selection (upstream since "mm: fix OOM killer inaccuracy"): last equal task wins."""
    best = 0
    best_p = -(1 << 62)
    for mm in range(seg[L.H_NMM]):
        p = _badness_precise(seg, mm)
        if p >= best_p:
            best = mm
            best_p = p
    return best


@njit("void(int64[::1])", cache=True)
def oom_pass(words):
    """One OOM victim selection both ways, timed; judged when no counter moved meanwhile."""
    seg = raw(words)
    o = seg[L.H_OOM]
    ring = seg[L.H_RING]
    v0 = _var_sum(seg)
    t0 = rdtsc()
    victim, sums, capped = _two_pass(seg)
    t1 = rdtsc()
    scan = _precise_scan(seg)
    t2 = rdtsc()
    v1 = _var_sum(seg)
    i = seg[o + L.O_SELECTIONS]
    seg[o + L.O_HEAD_WORDS + i % ring] = t1 - t0
    seg[o + L.O_HEAD_WORDS + ring + i % ring] = t2 - t1
    seg[o + L.O_SELECTIONS] = i + 1
    seg[o + L.O_PRECISE_SUMS] += sums
    if capped:
        seg[o + L.O_CAP_HITS] += 1
    seg[o + L.O_LAST_2P] = victim
    seg[o + L.O_LAST_PRECISE] = scan
    if v0 == v1:
        seg[o + L.O_JUDGED] += 1
        if victim != scan and _badness_precise(seg, victim) != _badness_precise(seg, scan):
            seg[o + L.O_DISAGREE] += 1


# ---- faults: recovery of a dead CPU, quiescent checks

@njit(inline="always")
def _truth_sum(seg, mm, k):
    s = 0
    for cpu in range(seg[L.H_NCPU]):
        s += seg[seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k]
    return s


@njit(inline="always")
def _expected_threads(seg, mm):
    """Threads of mm by the tasks' places in their tapes: one each, plus the clones not yet exited."""
    n = 0
    for t in range(seg[L.H_NTASK]):
        tb = _task(seg, t)
        if seg[tb + L.T_MM] != mm:
            continue
        n += 1
        for i in range(seg[tb + L.T_STEP]):
            op = seg[seg[L.H_TAPE] + (seg[tb + L.T_TAPE_START] + i) * L.STEP_WORDS]
            if op == L.OP_CLONE:
                n += 1
            elif op == L.OP_EXIT:
                n -= 1
    return n


@njit("void(int64[::1], int64)", cache=True)
def release_owner(words, who):
    """Release every lock (the design's and the run queues') that ``who`` holds: it died holding them."""
    seg = raw(words)
    release_locks(seg, who)
    for c in range(seg[L.H_NWORK]):
        if seg[_rq(seg, c) + L.Q_LOCK] == who:
            spin_unlock(seg, _rq(seg, c) + L.Q_LOCK)


@njit("int64(int64[::1], int64, int64)", cache=True, nogil=True)  # run in a thread per dead CPU (faults.py)
def recover_dead(words, cpu, in_flight):
    """First half of a killed CPU's recovery, while the others run: complete the operation its journal
    shows in flight (leaving at most one doubtful shared update) and release its locks.

    ``in_flight``: VAR differed from COMMIT when it died. Returns the inconsistencies found.
    """
    seg = raw(words)
    st = _stat(seg, cpu)
    j = st + L.S_J
    seg[j + L.J_ON] = 0  # the steps redone for it are not journaled again
    seg[j + L.J_KILL] = 0
    seg[j + L.J_DOUBT_KIND] = L.DOUBT_NONE
    op = seg[j + L.J_OP]
    step = seg[j + L.J_STEP]
    mm = seg[j + L.J_MM]
    k = seg[j + L.J_K]
    d = seg[j + L.J_D]
    bad = 0
    if op == L.JOP_ADD and in_flight != 0:
        # roll forward: the truth of the event, then the design's remaining steps
        seg[seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE] + mm * L.NMEMBERS + k] = seg[j + L.J_T0] + d
        if step == 0:
            _add_call(seg, cpu, seg[j + L.J_TASK], mm, k, d, seg[j + L.J_FAULT])
        else:
            bad += _recover_call(seg, cpu, op, step, mm, k, d)
    elif op == L.JOP_SWITCH:
        if step == 0:
            _switch_call(seg, cpu, mm, seg[j + L.J_B])
        else:
            bad += _recover_call(seg, cpu, op, step, mm, k, d)
        seg[st + L.S_CUR_MM] = seg[j + L.J_B]
    elif op == L.JOP_SCHED:
        t = seg[j + L.J_TASK]
        if step == 0:
            if k == L.OP_CLONE:
                _created_call(seg, cpu, mm)
            else:
                _exit_call(seg, cpu, t, mm)
        else:
            bad += _recover_call(seg, cpu, op, step, mm, k, d)
        tb = _task(seg, t)
        nxt = d + 1
        if nxt == seg[tb + L.T_TAPE_LEN]:
            nxt = 0
        seg[tb + L.T_STEP] = nxt
        seg[tb + L.T_REMAIN] = _step_remain(seg, seg[tb + L.T_TAPE_START], nxt)
    seg[j + L.J_OP] = L.JOP_NONE
    release_owner(words, cpu + 1)
    return bad


@njit(inline="always")
def _rehome_tasks(seg):
    """Every task in exactly one live CPU's queue: those of dead CPUs, and any lost mid-migration, are
    dealt round robin to the live CPUs. Returns the tasks moved."""
    nwork = seg[L.H_NWORK]
    seen = np.zeros(seg[L.H_NTASK], dtype=np.int64)
    live = np.empty(nwork, dtype=np.int64)
    nlive = 0
    for c in range(nwork):
        rq = _rq(seg, c)
        status = seg[_stat(seg, c) + L.S_STATUS]
        if status == L.CPU_DEAD or status == L.CPU_OFFLINE:
            seg[rq + L.Q_N] = 0
            continue
        # a CPU not yet recovered (frozen, or killed a moment ago) keeps its tasks for its own recovery
        for i in range(seg[rq + L.Q_N]):
            seen[seg[rq + L.Q_IDS + i]] += 1
        if _alive(seg, c):
            live[nlive] = c
            nlive += 1
    if nlive == 0:
        return 0
    moved = 0
    for t in range(seg[L.H_NTASK]):
        if seen[t] == 0:
            c = live[moved % nlive]
            seg[_task(seg, t) + L.T_CPU] = c
            _rq_append(seg, _rq(seg, c), t, L.OWNER_PARENT)
            moved += 1
    return moved


@njit("int64(int64[::1], int64, int64[::1])", cache=True)
def settle_dead(words, cpu, out):
    """Second half, with every live CPU parked: settle the doubt by its conservation law, give the dead
    (or offline) CPU's tasks to live CPUs and fold its per-CPU state (the CPU-dead callback).

    out = (doubt kind, resolution or -1, tasks moved). Returns 1 if the doubt could not be settled.
    """
    seg = raw(words)
    st = _stat(seg, cpu)
    j = st + L.S_J
    kind = seg[j + L.J_DOUBT_KIND]
    res = -1
    if kind != L.DOUBT_NONE:
        mm = seg[j + L.J_DOUBT_MM]
        k = seg[j + L.J_DOUBT_K]
        d = seg[j + L.J_DOUBT_D]
        residue = 0
        if kind == L.DOUBT_PRECISE:
            residue = read_precise(seg, mm, k) - _truth_sum(seg, mm, k)
        elif kind == L.DOUBT_THREADS:
            residue = threads(seg, mm) - _expected_threads(seg, mm)
        res = _resolve_call(seg, cpu, kind, mm, k, d, residue)
        seg[j + L.J_DOUBT_KIND] = L.DOUBT_NONE
    moved = _rehome_tasks(seg)
    _switch_call(seg, cpu, seg[st + L.S_CUR_MM], -1)
    seg[st + L.S_CUR_MM] = -1
    cpu_offline(seg, cpu)
    seg[st + L.S_COMMIT] = seg[st + L.S_VAR]
    out[0] = kind
    out[1] = res
    out[2] = moved
    return 1 if res == L.RES_BAD else 0


@njit("int64(int64[::1])", cache=True)
def design_consistent(words):
    """Quiescent: the design's own redundant state agrees with itself (0: it does)."""
    return consistent(raw(words))


@njit("int64(int64[::1])", cache=True)
def threads_off(words):
    """Quiescent: mms whose thread count differs from what the tasks' tapes say (designs that keep one)."""
    seg = raw(words)
    bad = 0
    for mm in range(seg[L.H_NMM]):
        n = threads(seg, mm)
        if n >= 0 and n != _expected_threads(seg, mm):
            bad += 1
    return bad
