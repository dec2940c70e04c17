"""Template of the tests' compiled design driver (not a test module; see design_drivers.py).

design_drivers.py specialises this file to each design (``shmrss.specialise``,
the one way the engine and the monitor are made too): every design gets a
``run_ops`` that calls its (inlined) functions directly, cached on disk by numba.

``run_ops(words, ops, out, res)`` executes the rows of ``ops`` in order, one raw
design call each (columns: kind, a, b, c, d, e, f)::

    ADD      cpu task mm k d fault   add(seg, cpu, task, mm, k, d, fault)
    SWITCH   cpu old new             switch_mm(seg, cpu, old, new)
    CLONE    cpu mm                  thread_created(seg, cpu, mm)
    EXIT     cpu task mm             task_exit(seg, cpu, task, mm)
    OFFLINE  cpu                     cpu_offline(seg, cpu)
    INIT     mm                      mm_init(seg, mm)
    DESTROY  mm                      res[i] = mm_destroy(seg, mm)
    COMPARE  mm k v                  res[i] = compare_value(seg, mm, k, v)  (tree; the default 0 else)
    SETTASK  task mm cpu             the task record's T_MM and T_CPU (the engine's scheduling state)
    NOP                              nothing (a read of every counter)

and, when ``out`` has a row per op, records after op i for every counter (mm, k):
``out[i, mm*4 + k] = (read_precise, read_approx, under, over)``.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import raw
from shmrss.designs.interface import bind

_NAMES = ("add", "switch_mm", "thread_created", "task_exit", "cpu_offline", "mm_init", "mm_destroy", "read_precise",
          "read_approx", "approx_bound", "compare_value")
(add, switch_mm, thread_created, task_exit, cpu_offline, mm_init, mm_destroy, read_precise, read_approx,
 approx_bound, compare_value) = bind("atomic", _NAMES)  # DESIGN-IMPORT

ADD, SWITCH, CLONE, EXIT, OFFLINE, INIT, DESTROY, COMPARE, SETTASK, NOP = range(10)


@njit("void(int64[::1], int64[:, ::1], int64[:, :, ::1], int64[::1])", cache=True)
def run_ops(words, ops, out, res):
    seg = raw(words)
    nmm = seg[L.H_NMM]
    record = out.shape[0] > 0
    for i in range(ops.shape[0]):
        kind = ops[i, 0]
        a = ops[i, 1]
        b = ops[i, 2]
        c = ops[i, 3]
        r = 0
        if kind == ADD:
            add(seg, a, b, c, ops[i, 4], ops[i, 5], ops[i, 6])
        elif kind == SWITCH:
            switch_mm(seg, a, b, c)
        elif kind == CLONE:
            thread_created(seg, a, b)
        elif kind == EXIT:
            task_exit(seg, a, b, c)
        elif kind == OFFLINE:
            cpu_offline(seg, a)
        elif kind == INIT:
            mm_init(seg, a)
        elif kind == DESTROY:
            r = mm_destroy(seg, a)
        elif kind == COMPARE:
            r = compare_value(seg, a, b, c)
        elif kind == SETTASK:
            tb = seg[L.H_TASK] + a * seg[L.H_TASK_STRIDE]
            seg[tb + L.T_MM] = b
            seg[tb + L.T_CPU] = c
        res[i] = r
        if record:
            for mm in range(nmm):
                for k in range(L.NMEMBERS):
                    row = mm * L.NMEMBERS + k
                    out[i, row, 0] = read_precise(seg, mm, k)
                    out[i, row, 1] = read_approx(seg, mm, k)
                    u, o = approx_bound(seg, mm, k)
                    out[i, row, 2] = u
                    out[i, row, 3] = o
