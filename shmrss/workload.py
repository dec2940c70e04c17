"""Workload descriptions: validation of the plain-data format and its conversion to segment arrays.

A workload is JSON-able data::

    {"name": "page_fault1",
     "mms": 2,                                   # number of mms (processes)
     "tapes": {"pf": [["fault", "anon", 32768],  # 32768 events of +1 anon
                      ["unmap", "anon", 32768]]},# one event of -32768 anon
     "tasks": [{"mm": 0, "tape": "pf", "cpu": 0},
               {"mm": 1, "tape": "pf", "cpu": 1}]}

Each task repeats its tape forever; ``cpu`` (optional, default task index mod
the CPU count) is the emulated CPU whose run queue holds it. Steps: ``fault``
(arg events of +1 on the member), ``unmap`` (one event of -arg). Members:
file, anon, swap, shmem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shmrss import layout as L

MAX_MMS = 100_000
MAX_TASKS = 100_000
MAX_STEPS = 1_000_000
MAX_ARG = 1 << 31


class WorkloadError(ValueError):
    """A malformed workload; message is one line."""


@dataclass
class CompiledWorkload:
    name: str
    nmm: int
    tape: np.ndarray  # (steps, 3) int64
    tasks: np.ndarray  # (ntask, 3): mm, first step, steps
    runqueues: list[list[int]]  # per emulated CPU: task ids
    spec: dict


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise WorkloadError(msg)


def _int(v, what: str, lo: int, hi: int) -> int:
    _need(isinstance(v, int) and not isinstance(v, bool), f"{what} must be an integer, got {v!r}")
    _need(lo <= v <= hi, f"{what} must be in [{lo}, {hi}], got {v}")
    return v


def compile_workload(spec: dict, ncpu: int) -> CompiledWorkload:
    """Validate ``spec`` and lay it out for ``ncpu`` emulated CPUs."""
    _need(ncpu >= 1, "a workload needs at least one CPU")
    _need(isinstance(spec, dict), "a workload is a JSON object")
    name = spec.get("name", "custom")
    _need(isinstance(name, str) and name != "", "workload name must be a non-empty string")
    nmm = _int(spec.get("mms"), "mms", 1, MAX_MMS)
    tapes = spec.get("tapes")
    _need(isinstance(tapes, dict) and tapes, "tapes must be a non-empty object of name -> list of steps")
    steps: list[tuple[int, int, int]] = []
    where: dict[str, tuple[int, int]] = {}
    for tname, tape in tapes.items():
        _need(isinstance(tape, list) and tape, f"tape {tname!r} must be a non-empty list of steps")
        first = len(steps)
        for i, step in enumerate(tape):
            _need(isinstance(step, list | tuple) and len(step) == 3,
                  f"tape {tname!r} step {i}: a step is [op, member, count], got {step!r}")
            op, member, arg = step
            _need(isinstance(op, str) and op in L.OP_NAMES,
                  f"tape {tname!r} step {i}: unknown op {op!r} (ops: {', '.join(L.OP_NAMES)})")
            _need(member in L.MEMBER_NAMES,
                  f"tape {tname!r} step {i}: unknown member {member!r} (members: {', '.join(L.MEMBER_NAMES)})")
            arg = _int(arg, f"tape {tname!r} step {i} count", 1, MAX_ARG)
            steps.append((L.OP_NAMES[op], L.MEMBER_NAMES.index(member), arg))
            _need(len(steps) <= MAX_STEPS, f"tapes hold more than {MAX_STEPS} steps")
        where[tname] = (first, len(steps) - first)
    tasks = spec.get("tasks")
    _need(isinstance(tasks, list) and tasks, "tasks must be a non-empty list")
    _need(len(tasks) <= MAX_TASKS, f"at most {MAX_TASKS} tasks, got {len(tasks)}")
    table = np.zeros((len(tasks), 3), dtype=np.int64)
    runqueues: list[list[int]] = [[] for _ in range(ncpu)]
    for t, task in enumerate(tasks):
        _need(isinstance(task, dict), f"task {t} must be an object")
        mm = _int(task.get("mm"), f"task {t} mm", 0, nmm - 1)
        tname = task.get("tape")
        _need(isinstance(tname, str) and tname in where, f"task {t} names unknown tape {tname!r}")
        cpu = task.get("cpu", t % ncpu)
        cpu = _int(cpu, f"task {t} cpu", 0, 1 << 20)
        _need(cpu < ncpu, f"task {t} is placed on cpu {cpu} but the run has {ncpu} CPUs")
        table[t] = (mm, *where[tname])
        runqueues[cpu].append(t)
    return CompiledWorkload(name, nmm, np.array(steps, dtype=np.int64).reshape(-1, 3), table, runqueues, spec)


def load_file(path: str) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise WorkloadError(f"cannot read workload file {path}: {e.strerror}") from e
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"workload file {path} is not valid JSON: {e.msg} at line {e.lineno}") from e
    return spec
