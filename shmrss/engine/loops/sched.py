"""The scheduler's run queues: pick, append, remove, park a task; a tape step's events; a CPU's liveness."""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, pause, spin_lock, spin_unlock, store
from .index import _stat, _task


@njit(inline="always")
def _step_remain(seg, tape_start, step):
    """Events a step holds: a fault step one per page, any other step one."""
    b = seg[L.H_TAPE] + (tape_start + step) * L.STEP_WORDS
    if seg[b] == L.OP_FAULT:
        return seg[b + 2]
    return 1


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
