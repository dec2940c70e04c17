"""The bodies of the child processes of a run: the emulated CPUs, the reader and the reclaimer.

Each attaches to the segment by name, pins itself, and runs its compiled loop
from the design's engine (``engine_for``), which the parent compiled before
forking: children inherit the machine code.
"""

from __future__ import annotations

import os
import time

from shmrss import layout as L
from shmrss.engine.build import engine_for
from shmrss.procs import die_with_parent
from shmrss.segment import Segment


def _child_setup(parent_pid: int) -> None:
    # Ctrl-C, timeout's SIGTERM, a hang-up... go to the whole process group; only the parent decides how a
    # run ends (it stops the children through the segment, or kills them)
    from shmrss.runsignals import ignore_in_child

    ignore_in_child()
    die_with_parent()
    if os.getppid() != parent_pid:  # parent already gone before prctl took effect
        os._exit(1)


def attach_as_cpu(seg_name: str, cpu: int, host_cpu: int | None, parent_pid: int):
    """A child's start as emulated CPU ``cpu``: attach by name, record itself, pin; returns the words."""
    from shmrss.topology import pin_self

    _child_setup(parent_pid)
    w = Segment.attach(seg_name).words
    st = int(w[L.H_CPUSTAT]) + cpu * int(w[L.H_CPUSTAT_STRIDE])
    w[st + L.S_PID] = os.getpid()
    w[st + L.S_HOSTCPU] = -1 if host_cpu is None else host_cpu
    if host_cpu is not None:
        pin_self(host_cpu)
    return w


def cpu_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of emulated CPU ``cpu``: attach, pin, map its fault-body region if any, run the compiled loop once."""
    from shmrss import faultbody

    w = attach_as_cpu(seg_name, cpu, host_cpu, parent_pid)
    st = int(w[L.H_CPUSTAT]) + cpu * int(w[L.H_CPUSTAT_STRIDE])
    region = faultbody.map_region(w, st)  # kept alive while the loop touches it
    eng = engine_for(design)
    before = faultbody.minor_faults()
    eng.cpu_main(w, cpu)
    w[st + L.S_FB_MINFLT] = faultbody.minor_faults() - before
    del region


def reader_process(seg_name: str, design: str, interval: float, host_cpu: int | None, parent_pid: int) -> None:
    """Body of the reader: one compiled pass over every counter each ``interval`` seconds."""
    from shmrss.topology import pin_self

    _child_setup(parent_pid)
    seg = Segment.attach(seg_name)
    w = seg.words
    if host_cpu is not None:
        pin_self(host_cpu)
    eng = engine_for(design)
    ctrl = int(w[L.H_CTRL])
    while w[ctrl + L.C_GO] == 0 and w[ctrl + L.C_STOP] == 0:
        time.sleep(0.001)
    next_t = time.perf_counter()
    oom = int(w[L.H_OOM]) != 0
    while w[ctrl + L.C_STOP] == 0:
        eng.reader_pass(w)
        if oom:
            eng.oom_pass(w)
        next_t += interval
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.perf_counter()


RECLAIM_BATCH = L.RECLAIM_BATCH  # pages per swap-out (in layout: designs/pernode.py bounds its slack by it)
RECLAIM_PAUSES = 2000  # pause instructions between moves (kswapd's pace)


def reclaimer_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of the reclaimer ("kswapd"): emulated CPU ``cpu`` moving pages of random mms to swap and back."""
    w = attach_as_cpu(seg_name, cpu, host_cpu, parent_pid)
    seed = int.from_bytes(os.urandom(8), "little") & ((1 << 62) - 1)
    engine_for(design).reclaimer_main(w, cpu, seed, RECLAIM_BATCH, RECLAIM_PAUSES)
