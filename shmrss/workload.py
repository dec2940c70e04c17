"""Workload descriptions: validation of the plain-data format and its conversion to segment arrays.

A workload is JSON-able data::

    {"name": "page_fault1",
     "mms": 2,                                   # number of mms (processes)
     "tapes": {"pf": [["fault", "anon", 32768],  # 32768 events of +1 anon
                      ["unmap", "anon", 32768]]},# one event of -32768 anon
     "tasks": [{"mm": 0, "tape": "pf", "cpu": 0},
               {"mm": 1, "tape": "pf", "cpu": 1}]}

Each task repeats its tape forever; ``cpu`` (optional, default task index mod
the CPU count) is the emulated CPU whose run queue holds it. Steps:

    ["fault", member, n]        n events of +1 (the page-fault path)
    ["fault", member, n, size]  n events of +size: faults of size pages each (16: fault-around
                                or a 64 KiB mTHP; 512: a 2 MiB THP); size 1 to MAX_FAULT_PAGES
    ["unmap", member, n]        one event of -n (zap's batched update)
    ["remote", member, d, off]  one event of d on mm (own mm + off) mod mms (off default 1)
    ["exec", member, n, off]    exec's argument copy (get_arg_page <- copy_string_kernel <-
                                do_execveat_common): n page faults (+1 each, the page-fault path)
                                on mm (own mm + off) mod mms, before the task switches to it
    ["clone"]                   a new thread of the task's mm
    ["exit"]                    the running thread exits; the task carries on as the thread
                                an earlier clone made (a tape has as many exits as clones)
    ["yield"]                   end the time slice
    ["sleep", n]                skip the next n scheduler passes (0: until the run stops)
    ["migrate", off]            move to CPU (cpu + off) mod CPUs (off default 1)

Members: file, anon, swap, shmem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shmrss import layout as L

MAX_MMS = 100_000
MAX_TASKS = 100_000
MAX_STEPS = 1_000_000
MAX_ARG = 1 << 31
# overflow bounds (check_totals): the longest run preflight allows, and more events a second per emulated
# CPU than any compiled loop issues (about 3e8 measured at best; a fault event is several instructions)
LONGEST_RUN_S = 7 * 86400
MAX_EVENTS_PER_S = 1 << 30
TOTAL_LIMIT = 1 << 60  # a truth or counter sum, with room for the four members of an mm added together
VAR_LIMIT = 1 << 61  # one CPU's VAR (the sum of |d| it applied), with room for the recovery mark
MAX_FAULT_PAGES = 1 << 18  # a 1 GiB page of 4 KiB pages


class WorkloadError(ValueError):
    """A malformed workload; message is one line."""


@dataclass
class CompiledWorkload:
    name: str
    nmm: int
    tape: np.ndarray  # (steps, 4) int64: op, member, arg, arg2
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


def _member(v, where: str) -> int:
    _need(isinstance(v, str) and v in L.MEMBER_NAMES,
          f"{where}: unknown member {v!r} (members: {', '.join(L.MEMBER_NAMES)})")
    return L.MEMBER_NAMES.index(v)


def _parse_step(step, where: str) -> tuple[int, int, int, int]:
    """One tape step -> (op, member, arg, arg2)."""
    _need(isinstance(step, list | tuple) and step, f"{where}: a step is a list like [op, ...], got {step!r}")
    op = step[0]
    _need(isinstance(op, str) and op in L.OP_NAMES, f"{where}: unknown op {op!r} (ops: {', '.join(L.OP_NAMES)})")
    code = L.OP_NAMES[op]
    args = list(step[1:])
    if code == L.OP_FAULT:
        _need(len(args) in (2, 3), f"{where}: fault takes [\"fault\", member, count] or "
                                   f"[\"fault\", member, count, pages per fault], got {step!r}")
        count = _int(args[1], f"{where} count", 1, MAX_ARG)
        size = _int(args[2], f"{where} pages per fault", 1, MAX_FAULT_PAGES) if len(args) == 3 else 1
        _need(count * size <= MAX_ARG, f"{where}: {count} faults of {size} pages is more than {MAX_ARG} pages")
        return code, _member(args[0], where), count, size if len(args) == 3 else 0  # 0: one page
    if code == L.OP_UNMAP:
        _need(len(args) == 2, f"{where}: {op} takes [\"{op}\", member, count], got {step!r}")
        return code, _member(args[0], where), _int(args[1], f"{where} count", 1, MAX_ARG), 0
    if code in (L.OP_CLONE, L.OP_EXIT, L.OP_YIELD):
        _need(not args, f"{where}: {op} takes no arguments, got {step!r}")
        return code, 0, 0, 0
    if code == L.OP_SLEEP:
        _need(len(args) == 1, f"{where}: sleep takes [\"sleep\", passes] (0: until the run stops), got {step!r}")
        return code, 0, _int(args[0], f"{where} passes", 0, MAX_ARG), 0
    if code == L.OP_MIGRATE:
        _need(len(args) <= 1, f"{where}: migrate takes [\"migrate\"] or [\"migrate\", cpu offset], got {step!r}")
        return code, 0, _int(args[0] if args else 1, f"{where} cpu offset", 1, 1 << 20), 0
    if code == L.OP_EXEC:
        _need(len(args) in (2, 3), f"{where}: exec takes [\"exec\", member, pages, mm offset], got {step!r}")
        return code, _member(args[0], where), _int(args[1], f"{where} pages", 1, MAX_ARG), _int(
            args[2] if len(args) == 3 else 1, f"{where} mm offset", 0, MAX_MMS)
    # remote
    _need(len(args) in (2, 3), f"{where}: remote takes [\"remote\", member, delta, mm offset], got {step!r}")
    delta = _int(args[1], f"{where} delta", -MAX_ARG, MAX_ARG)
    _need(delta != 0, f"{where}: remote delta must not be 0")
    return code, _member(args[0], where), delta, _int(args[2] if len(args) == 3 else 1, f"{where} mm offset",
                                                      0, MAX_MMS)


def run_bound_s(duration_s: float) -> float:
    """The longest a run asked for ``duration_s`` seconds can update its counters: its duration, doubled or with
    a minute added for start-up and stopping, whichever is more (never beyond LONGEST_RUN_S)."""
    return min(float(LONGEST_RUN_S), max(2.0 * duration_s, duration_s + 60.0))


def compile_workload(spec: dict, ncpu: int, run_s: float = LONGEST_RUN_S) -> CompiledWorkload:
    """Validate ``spec`` and lay it out for ``ncpu`` emulated CPUs; its counters must not overflow in a run of
    ``run_s`` seconds (``run_bound_s`` of the requested duration; the longest allowed run by default)."""
    _need(ncpu >= 1, "a workload needs at least one CPU")
    _need(isinstance(spec, dict), "a workload is a JSON object")
    name = spec.get("name", "custom")
    _need(isinstance(name, str) and name != "", "workload name must be a non-empty string")
    nmm = _int(spec.get("mms"), "mms", 1, MAX_MMS)
    tapes = spec.get("tapes")
    _need(isinstance(tapes, dict) and tapes, "tapes must be a non-empty object of name -> list of steps")
    steps: list[tuple[int, int, int, int]] = []
    where: dict[str, tuple[int, int]] = {}
    for tname, tape in tapes.items():
        _need(isinstance(tape, list) and tape, f"tape {tname!r} must be a non-empty list of steps")
        first = len(steps)
        for i, step in enumerate(tape):
            steps.append(_parse_step(step, f"tape {tname!r} step {i}"))
            _need(len(steps) <= MAX_STEPS, f"tapes hold more than {MAX_STEPS} steps")
        ops = [st[0] for st in steps[first:]]
        _need(ops.count(L.OP_CLONE) == ops.count(L.OP_EXIT),
              f"tape {tname!r} has {ops.count(L.OP_CLONE)} clones and {ops.count(L.OP_EXIT)} exits: "
              f"each exit ends a thread that a clone made, so they must match")
        alive = 0
        for i, o in enumerate(ops):
            alive += (o == L.OP_CLONE) - (o == L.OP_EXIT)
            _need(alive >= 0, f"tape {tname!r} step {i}: an exit before its clone would end a thread "
                              f"that no clone made")
        _need(any(o in (L.OP_FAULT, L.OP_UNMAP, L.OP_REMOTE, L.OP_EXEC) for o in ops) or L.OP_SLEEP in ops,
              f"tape {tname!r} never updates a counter nor sleeps: its task would spin on scheduler steps")
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
    wl = CompiledWorkload(name, nmm, np.array(steps, dtype=np.int64).reshape(-1, L.STEP_WORDS), table, runqueues,
                          spec)
    check_totals(wl, ncpu, {v: k for k, v in where.items()}, run_s)
    return wl


def tape_totals(tape: np.ndarray, nmm: int) -> tuple[dict, int, int]:
    """One pass of a parsed tape (rows op, member, arg, arg2): for each counter the task moves (member,
    mm offset), (lowest running total, highest, net); the events of the pass, and the sum of |d| over them."""
    keys: dict[tuple[int, int], list[int]] = {}  # -> [running, lowest, highest]
    events = churn = 0
    for op, member, arg, arg2 in tape.tolist():
        if op == L.OP_FAULT:
            key, d, n = (member, 0), arg * max(arg2, 1), arg  # n events of +size (size 0 is one page)
        elif op == L.OP_EXEC:
            key, d, n = (member, arg2 % nmm), arg, arg  # n page faults of +1 on another mm
        elif op == L.OP_UNMAP:
            key, d, n = (member, 0), -arg, 1
        elif op == L.OP_REMOTE:
            key, d, n = (member, arg2 % nmm), arg, 1
        else:
            continue
        run = keys.setdefault(key, [0, 0, 0])
        run[0] += d
        run[1], run[2] = min(run[1], run[0]), max(run[2], run[0])
        events += n
        churn += abs(d)
    return {k: (lo, hi, net) for k, (net, lo, hi) in keys.items()}, events, churn


def check_totals(wl: CompiledWorkload, ncpu: int, names: dict | None = None, run_s: float = LONGEST_RUN_S) -> None:
    """Refuse a workload whose counters can go below zero (no kernel counter does: each task's share of
    every counter it moves must stay >= 0 through each pass and not shrink from pass to pass) or overflow
    64 bits in a run of ``run_s`` seconds (every CPU at MAX_EVENTS_PER_S)."""
    names = names or {}
    events_per_cpu = MAX_EVENTS_PER_S * run_s
    run = _run_words(run_s)
    growth = 0.0  # highest net growth per event of any tape
    headroom = 0  # what the tasks add beyond their whole passes: one pass's net and its highest point each
    users: dict[tuple[int, int], int] = {}
    for _, f, c in wl.tasks.tolist():
        users[f, c] = users.get((f, c), 0) + 1
    for (first, n), ntasks in sorted(users.items()):
        tname = names.get((first, n), f"at step {first}")
        totals, events, churn = tape_totals(wl.tape[first: first + n], wl.nmm)
        for (member, off), (lo, hi, net) in totals.items():
            whose = "its mm's" if off == 0 else f"mm +{off}'s"
            _need(lo >= 0 and net >= 0,
                  f"tape {tname!r} takes {whose} {L.MEMBER_NAMES[member]} count below zero "
                  f"({'by ' + str(-net) + ' a pass' if lo >= 0 else 'to ' + str(lo) + ' in its first pass'}): "
                  f"a counter never goes negative in a kernel; unmap only what was faulted before")
        if events:
            _need(churn / events * events_per_cpu <= VAR_LIMIT,
                  f"tape {tname!r} moves the counters by {churn / events:,.0f} per event on average: in "
                  f"{run} 64-bit counters could overflow; use smaller steps or a shorter --duration")
            growth = max(growth, sum(net for _, _, net in totals.values()) / events)
        headroom += ntasks * sum(hi + net for _, hi, net in totals.values())
    _need(growth * events_per_cpu * ncpu + headroom <= TOTAL_LIMIT,
          f"the tapes grow the counters by up to {growth:,.0f} per event: in {run} on {ncpu} CPUs 64-bit "
          f"counters could overflow; use smaller steps or a shorter --duration")


def _run_words(run_s: float) -> str:
    if run_s >= LONGEST_RUN_S:
        return f"the longest allowed run ({LONGEST_RUN_S // 86400} days)"
    return f"a run of up to {run_s:,.0f} s (the --duration, with room to start and stop)"

