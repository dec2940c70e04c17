"""The checks at quiescence and at teardown: precise equals truth, approximate within its bound, zero at exit."""

import numpy as np
from numba import njit

from shmrss import layout as L
from shmrss.atomics import raw
from shmrss.designs._common import truth_sum
from shmrss.specialise import entry
from .design import (
    _add_call, _created_call, approx_bound, consistent, mm_destroy, mm_init, read_approx, read_precise, threads,
)
from .index import _task


@entry("void(int64[::1], int64[:, ::1])")
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


@entry("void(int64[::1])")
def init_mms(words):
    """mm_init every mm, then create its threads: one per task placed in it."""
    seg = raw(words)
    for mm in range(seg[L.H_NMM]):
        mm_init(seg, mm)
    for t in range(seg[L.H_NTASK]):
        _created_call(seg, -1, seg[_task(seg, t) + L.T_MM])


@entry("int64[::1](int64[::1], int64)")
def teardown(words, cpu):
    """exit_mmap on CPU ``cpu``: unmap what each mm still holds, then mm_destroy; returns bad members per mm."""
    seg = raw(words)
    bad = np.zeros(seg[L.H_NMM], dtype=np.int64)
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            s = truth_sum(seg, mm, k)
            if s != 0:
                _add_call(seg, cpu, -1, mm, k, -s, 0)
        bad[mm] = mm_destroy(seg, mm)
    return bad


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


@entry("int64(int64[::1])")
def design_consistent(words):
    """Quiescent: the design's own redundant state agrees with itself (0: it does)."""
    return consistent(raw(words))


@entry("int64(int64[::1])")
def threads_off(words):
    """Quiescent: mms whose thread count differs from what the tasks' tapes say (designs that keep one)."""
    seg = raw(words)
    bad = 0
    for mm in range(seg[L.H_NMM]):
        n = threads(seg, mm)
        if n >= 0 and n != _expected_threads(seg, mm):
            bad += 1
    return bad
