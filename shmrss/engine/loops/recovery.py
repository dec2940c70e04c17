"""Recovery of a killed CPU from its journal, and the release of the locks a dead process held."""

import numpy as np
from numba import njit

from shmrss import layout as L
from shmrss.atomics import raw, spin_unlock
from shmrss.designs._common import truth_sum
from shmrss.specialise import entry
from .design import (
    cpu_offline, read_precise, release_locks, threads, _add_call, _switch_call, _created_call, _exit_call,
    _recover_call, _resolve_call,
)
from .index import _stat, _task, _rq
from .sched import _step_remain, _rq_append, _alive
from .checks import _expected_threads


@entry("void(int64[::1], int64)")
def release_owner(words, who):
    """Release every lock (the design's and the run queues') that ``who`` holds: it died holding them."""
    seg = raw(words)
    release_locks(seg, who)
    for c in range(seg[L.H_NWORK]):
        if seg[_rq(seg, c) + L.Q_LOCK] == who:
            spin_unlock(seg, _rq(seg, c) + L.Q_LOCK)


@entry("int64(int64[::1], int64, int64)", nogil=True)  # run in a thread per dead CPU (faults.py)
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


@entry("int64(int64[::1], int64, int64[::1])")
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
            residue = read_precise(seg, mm, k) - truth_sum(seg, mm, k)
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
