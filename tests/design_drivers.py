"""Helpers shared by the design tests: a compiled driver per design, geometries, op rows.

``driver(name)`` is design_driver_template.py specialised to that design by
``shmrss.specialise`` (as the engine is); numba caches the compiled
``run_ops`` on disk, under a name hashed from every source it inlines.

Every segment the driver is given (``prepare``, ``run``) is unlinked when the process exits, if this process
made it and nobody did so before: a script that uses the driver and forgets to close leaves no segment.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import numpy as np

from shmrss import designs, layout as L
from shmrss.designs._common import UNMAP
from shmrss.segment import Geometry, owner_pid as segment_owner
from shmrss.specialise import specialised

NM = L.NMEMBERS
ADD, SWITCH, CLONE, EXIT, OFFLINE, INIT, DESTROY, COMPARE, SETTASK, NOP = range(10)
OPW = 7  # columns of an op row

_TEMPLATE = Path(__file__).resolve().parent / "design_driver_template.py"


_SEEN: dict[str, object] = {}  # segment name -> the segment, unlinked at exit


def _track(seg) -> None:
    name = getattr(seg, "name", None)
    if name and name not in _SEEN and segment_owner(name) == os.getpid():
        _SEEN[name] = seg


def _unlink_at_exit() -> None:
    for name, seg in list(_SEEN.items()):
        if segment_owner(name) == os.getpid():  # a fork of the script does not remove its parent's
            seg.unlink()
    _SEEN.clear()


atexit.register(_unlink_at_exit)


def driver(name: str):
    """The compiled driver module of design ``name`` (its ``run_ops``)."""
    designs.get(name)
    return specialised(_TEMPLATE, name, "shmrss_testdrv", subdir="test-drivers")


# ----------------------------------------------------------------- geometry
def nodes_for(ncpu: int, nnodes: int) -> tuple[int, ...]:
    """Contiguous blocks, as the orchestrator's --nodes does."""
    return tuple(c * nnodes // ncpu for c in range(ncpu))


def geometry(name: str, ncpu: int, possible: int | None = None, nmm: int = 1, ntask: int = 1,
             line_words: int = 8, pack: bool = False, nodes=None, options=None, ring: int = 16,
             tape_steps: int = 2) -> Geometry:
    mod = designs.get(name)
    possible = possible or ncpu
    shape = mod.shape(ncpu, possible, nmm, line_words=line_words, nodes=nodes, options=options)
    return Geometry(ncpu=ncpu, possible=possible, nmm=nmm, ntask=max(ntask, 1), line_words=line_words, pack=pack,
                    slice=100, design_id=mod.ID, shape=shape, tape_steps=tape_steps, ring=ring)


def prepare(name: str, seg, task_mms=(), nodes=None, init: bool = True) -> None:
    """Write the tasks' mms, the design's global words (pernode's node map), then, like the
    engine's init_mms: mm_init every mm and thread_created once per task (on no CPU)."""
    _track(seg)
    w = seg.words
    tb, ts = seg.h(L.H_TASK), seg.h(L.H_TASK_STRIDE)
    for t, mm in enumerate(task_mms):
        w[tb + t * ts + L.T_MM] = mm
    mod = designs.get(name)
    if hasattr(mod, "setup"):
        mod.setup(w, seg.h(L.H_NCPU), nodes)
    if init:
        run(name, seg, init_ops(seg.h(L.H_NMM), task_mms), record=False)


def init_ops(nmm: int, task_mms) -> list[tuple]:
    """The engine's init_mms: mm_init every mm, then thread_created (on no CPU) once per task."""
    return [op_init(mm) for mm in range(nmm)] + [op_clone(-1, mm) for mm in task_mms]


# ----------------------------------------------------------------- op rows
def op_add(cpu, task, mm, k, d, fault=0):
    return (ADD, cpu, task, mm, k, d, fault)


def op_switch(cpu, old, new):
    return (SWITCH, cpu, old, new, 0, 0, 0)


def op_clone(cpu, mm):
    return (CLONE, cpu, mm, 0, 0, 0, 0)


def op_exit(cpu, task, mm):
    return (EXIT, cpu, task, mm, 0, 0, 0)


def op_offline(cpu):
    return (OFFLINE, cpu, 0, 0, 0, 0, 0)


def op_init(mm):
    return (INIT, mm, 0, 0, 0, 0, 0)


def op_destroy(mm):
    return (DESTROY, mm, 0, 0, 0, 0, 0)


def op_compare(mm, k, v):
    return (COMPARE, mm, k, v, 0, 0, 0)


def op_settask(task, mm, cpu=0):
    return (SETTASK, task, mm, cpu, 0, 0, 0)


def run(name: str, seg, ops, record: bool = True):
    """Execute op rows on the segment; returns (out[nops, nmm*4, 4] or None, res[nops])."""
    _track(seg)
    ops = np.asarray(list(ops), dtype=np.int64).reshape(-1, OPW)
    ops = np.ascontiguousarray(ops)
    nmm = seg.h(L.H_NMM)
    out = np.zeros((len(ops) if record else 0, nmm * NM, 4), dtype=np.int64)
    res = np.zeros(len(ops), dtype=np.int64)
    driver(name).run_ops(seg.words, ops, out, res)
    return (out if record else None), res


def read_all(name: str, seg) -> np.ndarray:
    """(nmm*4, 4): precise, approx, under, over of every counter now."""
    out, _ = run(name, seg, [(NOP, 0, 0, 0, 0, 0, 0)])
    return out[0]


# ----------------------------------------------------------------- addresses, independent of _common
def pcpu_addr(seg, cpu, mm, j):
    kk = mm * seg.h(L.H_PCPU_KWORDS) + j
    return seg.h(L.H_PCPU) + cpu * seg.h(L.H_PCPU_CSTRIDE) + kk * seg.h(L.H_PCPU_KSTRIDE)


def mm_addr(seg, mm, j):
    return seg.h(L.H_MM) + mm * seg.h(L.H_MM_STRIDE) + j


def task_addr(seg, t, j):
    return seg.h(L.H_TASK) + t * seg.h(L.H_TASK_STRIDE) + L.T_DESIGN + j


def stat(seg, cpu, field):
    return int(seg.words[seg.h(L.H_CPUSTAT) + cpu * seg.h(L.H_CPUSTAT_STRIDE) + field])


# ----------------------------------------------------------------- scheduled op sequences
class Sched:
    """Turns task-level steps into raw design calls the way the engine makes them.

    A CPU that runs a task of another mm calls switch_mm first (the engine's
    scheduler); a migration only moves the task (its per-task state stays in
    its record); an exit is only made for a thread that a clone made.
    """

    def __init__(self, ncpu: int, nmm: int, task_mms, task_cpus):
        self.ncpu, self.nmm = ncpu, nmm
        self.mm = list(task_mms)
        self.cpu = list(task_cpus)
        self.cur = [-1] * ncpu
        self.extra = [0] * nmm  # threads cloned and not yet exited, per mm
        self.ops: list[tuple] = [op_settask(t, m, c) for t, (m, c) in enumerate(zip(self.mm, self.cpu))]

    def _on(self, cpu, mm):
        if self.cur[cpu] != mm:
            self.ops.append(op_switch(cpu, self.cur[cpu], mm))
            self.cur[cpu] = mm

    def step(self, s) -> None:
        kind = s[0]
        if kind == "fault":  # the page-fault path: +1, fault 1, by the task on its CPU
            _, t, k = s
            self._on(self.cpu[t], self.mm[t])
            self.ops.append(op_add(self.cpu[t], t, self.mm[t], k, 1, 1))
        elif kind == "unmap":  # zap: one batched update of the task's own mm, marked UNMAP as the engine does
            _, t, k, d = s
            self._on(self.cpu[t], self.mm[t])
            self.ops.append(op_add(self.cpu[t], t, self.mm[t], k, d, UNMAP))
        elif kind == "remote":  # the task updates another mm (fault 0, or 1 for a fault on a foreign mm)
            _, t, off, k, d, fault = s
            self._on(self.cpu[t], self.mm[t])
            self.ops.append(op_add(self.cpu[t], t, (self.mm[t] + off) % self.nmm, k, 1 if fault else d, fault))
        elif kind == "reclaim":  # no task: the reclaimer, teardown
            _, cpu, mm, k, d = s
            self.ops.append(op_add(cpu, -1, mm, k, d, 0))
        elif kind == "migrate":
            _, t, cpu = s
            self.cpu[t] = cpu
            self.ops.append(op_settask(t, self.mm[t], cpu))
        elif kind == "clone":
            _, t = s
            self._on(self.cpu[t], self.mm[t])
            self.ops.append(op_clone(self.cpu[t], self.mm[t]))
            self.extra[self.mm[t]] += 1
        elif kind == "exit":
            _, t = s
            if self.extra[self.mm[t]] > 0:
                self._on(self.cpu[t], self.mm[t])
                self.ops.append(op_exit(self.cpu[t], t, self.mm[t]))
                self.extra[self.mm[t]] -= 1
        elif kind == "switch":  # the CPU runs something else (another mm, or idles: -1)
            _, cpu, mm = s
            self._on(cpu, mm)
        elif kind == "offline":
            _, cpu = s
            self.ops.append(op_offline(cpu))
            self.cur[cpu] = -1  # back online later, it serves no mm until it runs a task
        else:  # pragma: no cover
            raise ValueError(kind)

    def leave_all(self) -> None:
        """Every CPU leaves its mm (the engine's exit_all)."""
        for cpu in range(self.ncpu):
            self._on(cpu, -1)


def truth_after_each(ops, nmm: int, base=None) -> np.ndarray:
    """(nops, nmm*4): the running sum of every ADD's delta (from ``base``); INIT zeroes its mm."""
    truth = np.zeros((len(ops), nmm * NM), dtype=np.int64)
    running = np.zeros(nmm * NM, dtype=np.int64) if base is None else np.array(base, dtype=np.int64).ravel()
    for i, op in enumerate(ops):
        if op[0] == ADD:
            running[op[3] * NM + op[4]] += op[5]
        elif op[0] == INIT:
            running[op[1] * NM: op[1] * NM + NM] = 0
        truth[i] = running
    return truth


# ----------------------------------------------------------------- hypothesis: random configurations and steps
def _strategies():
    from hypothesis import strategies as st

    delta = st.one_of(st.integers(-3, 3), st.integers(-100, 100), st.integers(-(1 << 31), 1 << 31))

    @st.composite
    def scenario(draw, max_cpu=8, max_extra=4, max_mm=3, max_task=5, max_steps=40, min_steps=15, max_run=140,
                 offline=True, clones=True, switches=True):
        """(cfg, steps): a configuration and task-level steps for Sched."""
        ncpu = draw(st.integers(1, max_cpu))
        possible = ncpu + draw(st.integers(0, max_extra))
        nmm = draw(st.integers(1, max_mm))
        ntask = draw(st.integers(0, max_task))
        task_mms = draw(st.lists(st.integers(0, nmm - 1), min_size=ntask, max_size=ntask))
        task_cpus = draw(st.lists(st.integers(0, ncpu - 1), min_size=ntask, max_size=ntask))
        nnodes = draw(st.integers(1, min(ncpu, 4)))
        nodes = tuple(sorted(draw(st.lists(st.integers(0, nnodes - 1), min_size=ncpu, max_size=ncpu))))
        cfg = dict(ncpu=ncpu, possible=possible, nmm=nmm, ntask=ntask, task_mms=task_mms, task_cpus=task_cpus,
                   nodes=nodes, pack=draw(st.booleans()), line_words=draw(st.sampled_from([8, 16])))
        cpu = st.integers(0, ncpu - 1)
        mm = st.integers(0, nmm - 1)
        k = st.integers(0, NM - 1)
        kinds = [st.tuples(st.just("reclaim"), cpu, mm, k, delta)]
        if switches:
            kinds.append(st.tuples(st.just("switch"), cpu, st.integers(-1, nmm - 1)))
        if offline:
            kinds.append(st.tuples(st.just("offline"), cpu))
        if ntask:
            t = st.integers(0, ntask - 1)
            run = st.one_of(st.integers(1, 5), st.integers(30, max_run))
            kinds += [
                st.tuples(st.just("faults"), t, k, run),
                st.tuples(st.just("faults"), t, k, run),
                st.tuples(st.just("unmap"), t, k, delta),
                st.tuples(st.just("remote"), t, st.integers(0, nmm - 1), k, delta, st.booleans()),
                st.tuples(st.just("migrate"), t, cpu),
            ]
            if clones:
                kinds += [st.tuples(st.just("clone"), t), st.tuples(st.just("exit"), t)]
        steps = draw(st.lists(st.one_of(kinds), min_size=min(min_steps, max_steps), max_size=max_steps))
        return cfg, steps

    return scenario


def expand(cfg, steps, leave: bool = False) -> list[tuple]:
    """The raw op rows of a scenario's steps (after the tasks' records are written)."""
    s = Sched(cfg["ncpu"], cfg["nmm"], cfg["task_mms"], cfg["task_cpus"])
    for step in steps:
        if step[0] == "faults":
            for _ in range(step[3]):
                s.step(("fault", step[1], step[2]))
        else:
            s.step(step)
    if leave:
        s.leave_all()
    return s.ops


def new_segment_for(name: str, cfg, new_segment, options=None):
    """A segment (context manager) for a scenario's configuration."""
    g = geometry(name, cfg["ncpu"], cfg["possible"], cfg["nmm"], ntask=cfg["ntask"], line_words=cfg["line_words"],
                 pack=cfg["pack"], nodes=cfg["nodes"], options=options)
    return new_segment(g)


try:
    scenario = _strategies()
except ImportError:  # pragma: no cover
    scenario = None
