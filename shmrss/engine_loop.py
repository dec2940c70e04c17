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
from shmrss.atomics import compiler_barrier, load, local_add, pause, raw, rdtsc, store, xadd
from shmrss.designs.atomic import (  # DESIGN-IMPORT
    add, approx_bound, cpu_offline, mm_destroy, mm_init, read_approx, read_precise, switch_mm, task_exit, thread_created,
)

_ = (cpu_offline, thread_created)  # part of the interface; driven by later workloads


@njit(inline="always")
def _stat(seg, cpu):
    return seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE]


@njit(inline="always")
def _task(seg, t):
    return seg[L.H_TASK] + t * seg[L.H_TASK_STRIDE]


@njit(inline="always")
def _step_remain(seg, tape_start, step):
    """Events a step holds: a fault step one per page, an unmap step one."""
    b = seg[L.H_TAPE] + (tape_start + step) * L.STEP_WORDS
    if seg[b] == L.OP_FAULT:
        return seg[b + 2]
    return 1


@njit("int64(int64[::1], int64)", cache=True)
def cpu_main(words, cpu):
    """Run emulated CPU ``cpu`` until the stop flag; return its event count."""
    seg = raw(words)
    st = _stat(seg, cpu)
    ctrl = seg[L.H_CTRL]
    line = seg[L.H_LINE]
    truth = seg[L.H_TRUTH] + cpu * seg[L.H_TRUTH_STRIDE]
    rq = seg[L.H_RQ] + cpu * seg[L.H_RQ_STRIDE]
    every = seg[L.H_STAT_EVERY]
    slice_len = seg[L.H_SLICE]

    store(seg, st + L.S_STATUS, L.CPU_BARRIER)
    xadd(seg, ctrl + line + L.C_BARRIER, 1)
    while load(seg, ctrl + L.C_GO) == 0:
        if load(seg, ctrl + L.C_STOP) != 0:
            store(seg, st + L.S_STATUS, L.CPU_DONE)
            return 0
        pause()
    store(seg, st + L.S_STATUS, L.CPU_RUNNING)
    store(seg, st + L.S_TSC_START, rdtsc())

    ntasks = load(seg, rq)
    events = 0
    switches = 0
    var = load(seg, st + L.S_VAR)
    if ntasks == 0:
        while load(seg, ctrl + L.C_STOP) == 0:
            pause()
        store(seg, st + L.S_TSC_END, rdtsc())
        store(seg, st + L.S_STATUS, L.CPU_DONE)
        return 0

    qi = 0
    t = load(seg, rq + 1)
    tb = _task(seg, t)
    mm = seg[tb + L.T_MM]
    tape_start = seg[tb + L.T_TAPE_START]
    tape_len = seg[tb + L.T_TAPE_LEN]
    step = seg[tb + L.T_STEP]
    remain = seg[tb + L.T_REMAIN]
    cur_mm = mm
    switch_mm(seg, cpu, -1, mm)
    store(seg, st + L.S_CUR_MM, mm)
    left = slice_len
    check_at = every

    while True:
        sb = seg[L.H_TAPE] + (tape_start + step) * L.STEP_WORDS
        op = seg[sb]
        k = seg[sb + 1]
        if op == L.OP_FAULT:
            d = 1
        else:
            d = -seg[sb + 2]

        var += abs(d)
        store(seg, st + L.S_VAR, var)
        compiler_barrier()
        local_add(seg, truth + mm * L.NMEMBERS + k, d)
        add(seg, cpu, t, mm, k, d)
        store(seg, st + L.S_COMMIT, var)
        events += 1

        remain -= 1
        if remain == 0:
            step += 1
            if step == tape_len:
                step = 0
            remain = _step_remain(seg, tape_start, step)

        left -= 1
        if left == 0:
            left = slice_len
            if ntasks > 1:
                seg[tb + L.T_STEP] = step
                seg[tb + L.T_REMAIN] = remain
                qi += 1
                if qi == ntasks:
                    qi = 0
                t = load(seg, rq + 1 + qi)
                tb = _task(seg, t)
                mm = seg[tb + L.T_MM]
                tape_start = seg[tb + L.T_TAPE_START]
                tape_len = seg[tb + L.T_TAPE_LEN]
                step = seg[tb + L.T_STEP]
                remain = seg[tb + L.T_REMAIN]
                if mm != cur_mm:
                    switch_mm(seg, cpu, cur_mm, mm)
                    cur_mm = mm
                    switches += 1
                    store(seg, st + L.S_CUR_MM, mm)

        if events >= check_at:
            check_at += every
            store(seg, st + L.S_EVENTS, events)
            store(seg, st + L.S_SWITCHES, switches)
            store(seg, st + L.S_BEAT, rdtsc())
            if load(seg, ctrl + L.C_STOP) != 0:
                break

    store(seg, st + L.S_TSC_END, rdtsc())
    seg[tb + L.T_STEP] = step
    seg[tb + L.T_REMAIN] = remain
    store(seg, st + L.S_EVENTS, events)
    store(seg, st + L.S_SWITCHES, switches)
    # the tasks leave the CPU: per-task state is folded where the design keeps any
    for i in range(ntasks):
        tt = load(seg, rq + 1 + i)
        task_exit(seg, cpu, tt, seg[_task(seg, tt) + L.T_MM])
    store(seg, st + L.S_STATUS, L.CPU_DONE)
    return events


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
                ppm = v * 1_000_000 // hi
                if ppm < seg[r + L.R_MIN_RATIO_PPM]:
                    seg[r + L.R_MIN_RATIO_PPM] = ppm
            if v < lo - under or v > hi + over:
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
    seg = raw(words)
    for mm in range(seg[L.H_NMM]):
        mm_init(seg, mm)


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
                add(seg, cpu, -1, mm, k, -s)
        bad[mm] = mm_destroy(seg, mm)
    return bad
