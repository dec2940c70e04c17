"""The emulated CPU: its loop over the run queue and the tapes (``cpu_main``), and every task's exit at the end."""

from shmrss import layout as L
from shmrss.atomics import load, pause, raw, rdtsc, store, xadd
from shmrss.designs._common import UNMAP
from shmrss.specialise import entry
from .design import _exit_call, _switch_call, publish_hits, switch_mm, task_exit, thread_created
from .index import _stat, _task, _rq
from .apply import _apply, _apply_call, _hiwater_call, _apply_paged, _unmap_paged
from .sched import _step_remain, _rq_remove, _rq_append, _pick, _save_task, _park, _alive


@entry("int64(int64[::1], int64)")
def cpu_main(words, cpu):
    """Run emulated CPU ``cpu`` until the stop flag (or an offline request); return its event count."""
    # one function: the per-event path (pick, step, update) must stay in registers; a call per step
    # would add its cost to every event measured, and the scheduler's state lives in its locals
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
    faults = 0  # fault events (pcpcache's hits are these minus its misses: publish_hits)
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
            faults += n
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
                if op == L.OP_CLONE:  # calls, not inlined: rare, and inlining them costs compile time
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
            publish_hits(seg, cpu, faults)
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
    publish_hits(seg, cpu, faults)
    store(seg, st + L.S_SWITCHES, switches)
    store(seg, st + L.S_OPS, steps - events)
    store(seg, st + L.S_MIGRATIONS, migrations)
    store(seg, st + L.S_IDLE, idle)
    store(seg, st + L.S_STATUS, L.CPU_OFFLINE if offline else L.CPU_DONE)
    return events


@entry("void(int64[::1])")
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
            _exit_call(seg, cpu, t, seg[_task(seg, t) + L.T_MM])
    for cpu in range(seg[L.H_NCPU]):
        st = _stat(seg, cpu)
        _switch_call(seg, cpu, seg[st + L.S_CUR_MM], -1)
        seg[st + L.S_CUR_MM] = -1
