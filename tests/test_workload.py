"""shmrss.workload: compiling page_fault1, refusing malformed specs (only ever with WorkloadError)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shmrss import workloads
from shmrss import layout as L
from shmrss.wlfile import load_file
from shmrss.workload import MAX_ARG, MAX_MMS, CompiledWorkload, WorkloadError, _parse_step, compile_workload

relaxed = settings(deadline=None, max_examples=300)
PAGES = 32768


# ================================================================= page_fault1
@pytest.mark.parametrize("ncpu", [1, 2, 3, 8])
@pytest.mark.parametrize("mode", ["processes", "threads"])
@pytest.mark.parametrize("tasks", [None, 1, 5, 16])
def test_page_fault1(ncpu, mode, tasks):
    spec = workloads.build("page_fault1", ncpu, tasks=tasks, mode=mode)
    wl = compile_workload(spec, ncpu)
    n = ncpu if tasks is None else tasks
    assert wl.name == "page_fault1" and wl.spec is spec
    assert wl.nmm == (n if mode == "processes" else 1)
    # one tape of two steps (op, member, arg, arg2): 32768 faults of +1 anon, one unmap of -32768
    assert wl.tape.dtype == np.int64
    assert wl.tape.tolist() == [[L.OP_FAULT, L.ANON, PAGES, 0], [L.OP_UNMAP, L.ANON, PAGES, 0]]
    assert wl.tasks.shape == (n, 3)
    for t in range(n):
        assert wl.tasks[t].tolist() == [t if mode == "processes" else 0, 0, 2]
    # round robin over the CPUs
    assert len(wl.runqueues) == ncpu
    assert wl.runqueues == [list(range(c, n, ncpu)) for c in range(ncpu)]
    assert sorted(t for rq in wl.runqueues for t in rq) == list(range(n))


def test_page_fault1_pages_are_128_mib():
    spec = workloads.build("page_fault1", 2)
    assert spec["tapes"] == {"fault_unmap_128M_anon": [["fault", "anon", PAGES], ["unmap", "anon", PAGES]]}
    assert spec["tapes"]["fault_unmap_128M_anon"][0][2] * 4096 == 128 << 20


def test_unknown_workload_and_bad_options():
    with pytest.raises(WorkloadError, match="unknown workload"):
        workloads.build("page_fault9", 2)
    with pytest.raises(WorkloadError, match="mode"):
        workloads.build("page_fault1", 2, mode="fibers")
    with pytest.raises(WorkloadError, match="tasks"):
        workloads.build("page_fault1", 2, tasks=0)


def test_explicit_cpu_placement_and_multiple_tapes():
    spec = {"name": "mix", "mms": 3,
            "tapes": {"a": [["fault", "file", 3], ["unmap", "file", 3]],
                      "b": [["fault", "shmem", 1], ["fault", "swap", 2], ["unmap", "swap", 2], ["unmap", "shmem", 1]]},
            "tasks": [{"mm": 2, "tape": "b", "cpu": 1}, {"mm": 0, "tape": "a", "cpu": 1}, {"mm": 1, "tape": "b"}]}
    wl = compile_workload(spec, 3)
    assert wl.nmm == 3
    assert wl.tape.shape == (6, L.STEP_WORDS) == (6, 4)
    assert wl.tape[2].tolist() == [L.OP_FAULT, L.SHMEM, 1, 0]
    assert wl.tape[5].tolist() == [L.OP_UNMAP, L.SHMEM, 1, 0]
    assert wl.tasks.tolist() == [[2, 2, 4], [0, 0, 2], [1, 2, 4]]
    assert wl.runqueues == [[], [0, 1], [2]]  # task 2 defaults to cpu 2 % 3


# ================================================================= refusals
def _valid():
    return {"name": "w", "mms": 2, "tapes": {"t": [["fault", "anon", 4], ["unmap", "anon", 4]]},
            "tasks": [{"mm": 0, "tape": "t", "cpu": 0}, {"mm": 1, "tape": "t", "cpu": 1}]}


def _with(path, value):
    spec = _valid()
    obj = spec
    for key in path[:-1]:
        obj = obj[key]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return spec


_DELETE = object()

BAD = {
    "not an object": ([], None),
    "mms missing": (("mms",), _DELETE),
    "mms zero": (("mms",), 0),
    "mms bool": (("mms",), True),
    "mms float": (("mms",), 2.0),
    "mms huge": (("mms",), 10 ** 9),
    "name empty": (("name",), ""),
    "name not str": (("name",), 3),
    "tapes empty": (("tapes",), {}),
    "tapes list": (("tapes",), [["fault", "anon", 1]]),
    "tape empty": (("tapes", "t"), []),
    "step short": (("tapes", "t", 0), ["fault", "anon"]),
    "step not list": (("tapes", "t", 0), "fault anon 4"),
    "unknown op": (("tapes", "t", 0), ["munmap", "anon", 4]),
    "unknown member": (("tapes", "t", 0), ["fault", "heap", 4]),
    "negative count": (("tapes", "t", 0), ["fault", "anon", -4]),
    "zero count": (("tapes", "t", 1), ["unmap", "anon", 0]),
    "count too big": (("tapes", "t", 0), ["fault", "anon", MAX_ARG + 1]),
    "count float": (("tapes", "t", 0), ["fault", "anon", 4.5]),
    "op unhashable": (("tapes", "t", 0), [["fault"], "anon", 4]),
    "tasks empty": (("tasks",), []),
    "tasks missing": (("tasks",), _DELETE),
    "task not object": (("tasks", 0), 0),
    "task mm out of range": (("tasks", 1, "mm"), 2),
    "task mm negative": (("tasks", 1, "mm"), -1),
    "task unknown tape": (("tasks", 0, "tape"), "nope"),
    "task tape unhashable": (("tasks", 0, "tape"), ["t"]),
    "task cpu out of range": (("tasks", 1, "cpu"), 2),
    "task cpu negative": (("tasks", 1, "cpu"), -1),
    "task cpu str": (("tasks", 1, "cpu"), "1"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_spec_refused(case):
    path, value = BAD[case]
    spec = [] if case == "not an object" else _with(path, value)
    with pytest.raises(WorkloadError) as e:
        compile_workload(spec, 2)
    assert str(e.value) and "\n" not in str(e.value)


def test_valid_baseline_compiles():
    wl = compile_workload(_valid(), 2)  # the base of the refusals above is itself fine
    assert isinstance(wl, CompiledWorkload) and wl.runqueues == [[0], [1]]


def test_load_file(tmp_path):
    good = tmp_path / "w.json"
    good.write_text(json.dumps(_valid()))
    assert load_file(str(good)) == _valid()
    bad = tmp_path / "bad.json"
    bad.write_text("{\"mms\": 2,")
    with pytest.raises(WorkloadError, match="not valid JSON"):
        load_file(str(bad))
    with pytest.raises(WorkloadError, match="cannot read"):
        load_file(str(tmp_path / "missing.json"))


# ================================================================= fuzz
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["fault", "unmap", "anon", "file", "t", "name", "mms"]),
    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=6), ch, max_size=4),
    max_leaves=12,
)
INTS = st.one_of(st.integers(-3, 5), st.integers(), st.just(MAX_ARG), st.just(MAX_ARG + 1), st.just(-MAX_ARG - 1))
MAYBE = lambda good: st.one_of(good, JSON)  # noqa: E731  mostly plausible, sometimes anything
OPS = st.sampled_from(list(L.OP_NAMES) + ["remap"])
MEMBER = st.sampled_from(list(L.MEMBER_NAMES) + ["x"])
STEP = st.one_of(
    st.lists(MAYBE(OPS), min_size=1, max_size=4),
    st.tuples(MAYBE(st.sampled_from(["fault", "unmap"])), MAYBE(MEMBER), MAYBE(INTS)).map(list),
    st.tuples(MAYBE(st.just("remote")), MAYBE(MEMBER), MAYBE(INTS)).map(list),
    st.tuples(MAYBE(st.just("remote")), MAYBE(MEMBER), MAYBE(INTS), MAYBE(INTS)).map(list),
    st.tuples(MAYBE(st.sampled_from(["sleep", "migrate"])), MAYBE(INTS)).map(list),
    st.sampled_from([["clone"], ["exit"], ["yield"], ["migrate"]]),
    JSON,
)
TAPES = st.one_of(st.dictionaries(st.sampled_from(["t", "u", ""]), st.one_of(st.lists(STEP, max_size=6), JSON),
                                  max_size=3), JSON)
TASK = st.one_of(
    st.fixed_dictionaries({"mm": MAYBE(INTS), "tape": MAYBE(st.sampled_from(["t", "u", "v"]))},
                          optional={"cpu": MAYBE(INTS), "extra": JSON}),
    JSON,
)
SPEC = st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={"name": MAYBE(st.text(max_size=5)), "mms": MAYBE(INTS), "tapes": TAPES,
                                        "tasks": st.one_of(st.lists(TASK, max_size=5), JSON), "mode": JSON}),
)
UPDATES = {L.OP_FAULT, L.OP_UNMAP, L.OP_REMOTE}


def _check_compiled(wl: CompiledWorkload, ncpu: int):
    """Whatever compiles is something the engine can run: every step in its op's ranges."""
    assert 1 <= wl.nmm
    assert wl.tape.ndim == 2 and wl.tape.shape[1] == L.STEP_WORDS == 4 and len(wl.tape) >= 1
    assert set(wl.tape[:, 0].tolist()) <= set(L.OP_NAMES.values())
    for op, k, arg, arg2 in wl.tape.tolist():
        if op in (L.OP_FAULT, L.OP_UNMAP):
            assert 0 <= k < L.NMEMBERS and 1 <= arg <= MAX_ARG and arg2 == 0
        elif op == L.OP_REMOTE:
            assert 0 <= k < L.NMEMBERS and arg != 0 and -MAX_ARG <= arg <= MAX_ARG and 0 <= arg2 <= MAX_MMS
        elif op == L.OP_SLEEP:
            assert k == 0 and 0 <= arg <= MAX_ARG and arg2 == 0
        elif op == L.OP_MIGRATE:
            assert k == 0 and 1 <= arg <= 1 << 20 and arg2 == 0
        else:  # clone, exit, yield
            assert (k, arg, arg2) == (0, 0, 0)
    for mm, first, n in wl.tasks.tolist():
        assert 0 <= mm < wl.nmm and n >= 1 and 0 <= first and first + n <= len(wl.tape)
        ops = wl.tape[first: first + n, 0].tolist()
        assert ops.count(L.OP_CLONE) == ops.count(L.OP_EXIT)
        assert UPDATES & set(ops) or L.OP_SLEEP in ops
    assert len(wl.runqueues) == ncpu
    assert sorted(t for rq in wl.runqueues for t in rq) == list(range(len(wl.tasks)))


@relaxed
@given(spec=SPEC, ncpu=st.integers(1, 4))
def test_fuzz_only_workload_error(spec, ncpu):
    try:
        wl = compile_workload(spec, ncpu)
    except WorkloadError as e:
        assert str(e) and "\n" not in str(e)
    else:
        _check_compiled(wl, ncpu)


@relaxed
@given(path_and_value=st.sampled_from(sorted(BAD)).flatmap(
    lambda case: st.tuples(st.just(BAD[case][0]), JSON)), ncpu=st.integers(1, 3))
def test_fuzz_one_field_of_a_valid_spec(path_and_value, ncpu):
    path, value = path_and_value
    if not path:
        spec = value
    else:
        try:
            spec = _with(path, value)
        except (KeyError, IndexError, TypeError):  # pragma: no cover
            return
    try:
        wl = compile_workload(spec, ncpu)
    except WorkloadError:
        return
    _check_compiled(wl, ncpu)


def test_json_numbers_nan_and_inf_are_refused():
    for v in (math.nan, math.inf):
        with pytest.raises(WorkloadError):
            compile_workload(_with(("mms",), v), 2)


# ================================================================= the step forms
def _one_tape(*steps, mms=3):
    return {"name": "w", "mms": mms, "tapes": {"t": [list(x) for x in steps]}, "tasks": [{"mm": 1, "tape": "t"}]}


ACCEPTED = {
    "fault": (["fault", "swap", 7], [L.OP_FAULT, L.SWAP, 7, 0]),
    "unmap": (["unmap", "shmem", MAX_ARG], [L.OP_UNMAP, L.SHMEM, MAX_ARG, 0]),
    "remote default offset": (["remote", "anon", -5], [L.OP_REMOTE, L.ANON, -5, 1]),
    "remote offset": (["remote", "file", 9, 2], [L.OP_REMOTE, L.FILE, 9, 2]),
    "remote offset 0": (["remote", "file", 1, 0], [L.OP_REMOTE, L.FILE, 1, 0]),
    "remote largest": (["remote", "anon", -MAX_ARG, MAX_MMS], [L.OP_REMOTE, L.ANON, -MAX_ARG, MAX_MMS]),
    "sleep": (["sleep", 3], [L.OP_SLEEP, 0, 3, 0]),
    "sleep for good": (["sleep", 0], [L.OP_SLEEP, 0, 0, 0]),
    "migrate default": (["migrate"], [L.OP_MIGRATE, 0, 1, 0]),
    "migrate offset": (["migrate", 5], [L.OP_MIGRATE, 0, 5, 0]),
    "yield": (["yield"], [L.OP_YIELD, 0, 0, 0]),
}


NEGATIVE_ALONE = {"unmap", "remote default offset", "remote largest"}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_every_step_form_is_accepted(case):
    step, row = ACCEPTED[case]
    assert list(_parse_step(step, "w")) == row
    if case in NEGATIVE_ALONE:
        return  # after one fault the tape goes below zero: refused by the totals check (tested below)
    wl = compile_workload(_one_tape(["fault", "anon", 1], step), 2)
    assert wl.tape.tolist() == [[L.OP_FAULT, L.ANON, 1, 0], row]
    assert wl.tasks.tolist() == [[1, 0, 2]]


def test_clone_and_exit_encode_and_pair():
    wl = compile_workload(_one_tape(["clone"], ["fault", "anon", 2], ["clone"], ["exit"], ["unmap", "anon", 2],
                                    ["exit"]), 1)
    assert wl.tape[:, 0].tolist() == [L.OP_CLONE, L.OP_FAULT, L.OP_CLONE, L.OP_EXIT, L.OP_UNMAP, L.OP_EXIT]
    assert wl.tape[[0, 2, 3, 5], 1:].tolist() == [[0, 0, 0]] * 4


def test_a_tape_that_only_sleeps_is_accepted():
    wl = compile_workload(_one_tape(["yield"], ["sleep", 0]), 1)
    assert wl.tape[:, 0].tolist() == [L.OP_YIELD, L.OP_SLEEP]


REFUSED = {
    "fault without count": (["fault", "anon"], "fault takes"),
    "fault extra arg": (["fault", "anon", 1, 2, 3], "fault takes"),  # a 4th is the pages per fault
    "unmap unknown member": (["unmap", "heap", 1], "unknown member"),
    "clone with arg": (["clone", 1], "no arguments"),
    "exit with arg": (["exit", "now"], "no arguments"),
    "yield with arg": (["yield", 0], "no arguments"),
    "sleep without passes": (["sleep"], "sleep takes"),
    "sleep two args": (["sleep", 1, 2], "sleep takes"),
    "sleep negative": (["sleep", -1], "passes"),
    "sleep float": (["sleep", 1.5], "passes"),
    "migrate two args": (["migrate", 1, 2], "migrate takes"),
    "migrate zero": (["migrate", 0], "cpu offset"),
    "migrate too far": (["migrate", (1 << 20) + 1], "cpu offset"),
    "remote without delta": (["remote", "anon"], "remote takes"),
    "remote too many": (["remote", "anon", 1, 1, 1], "remote takes"),
    "remote unknown member": (["remote", "stack", 1], "unknown member"),
    "remote delta 0": (["remote", "anon", 0], "must not be 0"),
    "remote delta too big": (["remote", "anon", MAX_ARG + 1], "delta"),
    "remote delta too small": (["remote", "anon", -MAX_ARG - 1], "delta"),
    "remote delta bool": (["remote", "anon", True], "delta"),
    "remote offset negative": (["remote", "anon", 1, -1], "mm offset"),
    "remote offset too big": (["remote", "anon", 1, MAX_MMS + 1], "mm offset"),
    "op not a string": ([3, "anon", 1], "unknown op"),
    "empty step": ([], "a step is a list"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malformed_step_refused(case):
    step, needle = REFUSED[case]
    with pytest.raises(WorkloadError) as e:
        compile_workload(_one_tape(["fault", "anon", 1], step), 2)
    msg = str(e.value)
    assert msg and "\n" not in msg
    assert needle in msg, msg
    assert "tape 't' step 1" in msg, msg  # says where


@pytest.mark.parametrize("steps,clones,exits", [
    ([["clone"], ["fault", "anon", 1]], 1, 0),
    ([["fault", "anon", 1], ["exit"]], 0, 1),
    ([["clone"], ["clone"], ["fault", "anon", 1], ["exit"]], 2, 1),
])
def test_clone_exit_mismatch_refused(steps, clones, exits):
    with pytest.raises(WorkloadError) as e:
        compile_workload(_one_tape(*steps), 2)
    msg = str(e.value)
    assert "\n" not in msg and f"{clones} clones and {exits} exits" in msg, msg


@pytest.mark.parametrize("steps", [
    [["yield"]],
    [["clone"], ["exit"]],
    [["migrate"], ["yield"], ["migrate", 2]],
])
def test_tape_that_never_updates_nor_sleeps_refused(steps):
    with pytest.raises(WorkloadError) as e:
        compile_workload(_one_tape(*steps), 2)
    assert "never updates a counter nor sleeps" in str(e.value) and "\n" not in str(e.value)


def test_only_the_mismatched_tape_is_named():
    spec = {"mms": 1, "tapes": {"good": [["fault", "anon", 1]], "bad": [["fault", "anon", 1], ["clone"]]},
            "tasks": [{"mm": 0, "tape": "good"}]}
    with pytest.raises(WorkloadError, match="tape 'bad' has 1 clones and 0 exits"):
        compile_workload(spec, 1)


@pytest.mark.parametrize("steps,where", [
    ([["exit"], ["fault", "anon", 100], ["clone"], ["unmap", "anon", 100]], "step 0"),
    ([["clone"], ["fault", "anon", 1], ["exit"], ["exit"], ["clone"]], "step 3"),
])
def test_exit_before_its_clone_refused(steps, where):
    """Found by these tests: counting clones and exits per tape let an exit come first, ending a
    thread no clone made (the mm's thread count dipped below its tasks and split's bound with it)."""
    with pytest.raises(WorkloadError) as e:
        compile_workload(_one_tape(*steps), 1)
    msg = str(e.value)
    assert "\n" not in msg and where in msg and "exit" in msg, msg


def test_clone_exit_nesting_accepted():
    wl = compile_workload(_one_tape(["clone"], ["clone"], ["exit"], ["fault", "anon", 1], ["exit"], ["clone"],
                                    ["exit"]), 1)
    assert wl.tape[:, 0].tolist().count(L.OP_EXIT) == 3


# ================================================================= the built-in workloads
def _net(spec: dict, tape: str, nmm: int) -> dict:
    """What one pass of a tape changes: {(mm offset, member): delta}, zero entries dropped."""
    net: dict = {}
    for step in spec["tapes"][tape]:
        op = step[0]
        if op == "fault":
            net[(0, step[1])] = net.get((0, step[1]), 0) + step[2]
        elif op == "unmap":
            net[(0, step[1])] = net.get((0, step[1]), 0) - step[2]
        elif op in ("remote", "exec"):
            key = ((step[3] if len(step) > 3 else 1) % nmm, step[1])
            net[key] = net.get(key, 0) + step[2]
    return {k: v for k, v in net.items() if v}


@pytest.mark.parametrize("ncpu", [1, 2, 5])
@pytest.mark.parametrize("name,member", [("page_fault2", "anon"), ("page_fault3", "file")])
def test_page_fault2_and_3(name, member, ncpu):
    spec = workloads.build(name, ncpu)
    wl = compile_workload(spec, ncpu)
    k = L.MEMBER_NAMES.index(member)
    assert wl.name == name and wl.nmm == ncpu
    assert wl.tape.tolist() == [[L.OP_FAULT, k, PAGES, 0], [L.OP_UNMAP, k, PAGES, 0]]
    assert wl.runqueues == [[c] for c in range(ncpu)]
    wl = compile_workload(workloads.build(name, ncpu, tasks=3, mode="threads"), ncpu)
    assert wl.nmm == 1 and wl.tasks[:, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("ncpu,tasks", [(1, None), (2, 2000), (4, 7)])
def test_rss_steal(ncpu, tasks):
    spec = workloads.build("rss_steal", ncpu, tasks=tasks)
    wl = compile_workload(spec, ncpu)
    n = 10_000 if tasks is None else tasks
    assert wl.nmm == 1 and len(wl.tasks) == n
    assert wl.tape.tolist() == [[L.OP_FAULT, L.ANON, 32, 0], [L.OP_SLEEP, 0, 0, 0]]  # 32 pages, then sleep for good
    assert [len(q) for q in wl.runqueues] == [len(range(c, n, ncpu)) for c in range(ncpu)]


@pytest.mark.parametrize("ncpu", [1, 2, 4])
@pytest.mark.parametrize("tasks", [None, 1, 8])
def test_mixed(ncpu, tasks):
    spec = workloads.build("mixed", ncpu, tasks=tasks)
    wl = compile_workload(spec, ncpu)
    assert spec["reclaimer"] is True and wl.nmm == 6
    cap = 64 if tasks is None else tasks
    per_mm = np.bincount(wl.tasks[:, 0], minlength=6).tolist()
    assert per_mm == [1, 1] + [min(n, cap) for n in (2, 4, 16, 64)]
    ops = set(wl.tape[:, 0].tolist())
    assert ops == set(L.OP_NAMES.values())  # every step kind is exercised
    # every tape is balanced: one pass leaves every counter of every mm where it was
    for tape in spec["tapes"]:
        assert _net(spec, tape, wl.nmm) == {}, tape
    assert [t["cpu"] for t in spec["tasks"]] == [i % ncpu for i in range(len(spec["tasks"]))]


# ---- issue 13, item 13: a running total that can go negative, counters that can overflow
def _tape_spec(steps, mms=1, ncpu=1):
    return {"name": "t", "mms": mms, "tapes": {"a": steps}, "tasks": [{"mm": 0, "tape": "a"}]}


@pytest.mark.parametrize("steps", [
    [["unmap", "anon", 5], ["fault", "anon", 5]],  # goes below zero before its faults
    [["fault", "anon", 4], ["unmap", "anon", 5]],  # loses one page a cycle
    [["fault", "file", 5], ["unmap", "anon", 5]],  # another member
    [["remote", "anon", -3, 1], ["remote", "anon", 3, 1], ["fault", "anon", 1]],  # the other mm's share first
], ids=["unmap-first", "net-loss", "other-member", "remote-first"])
def test_tape_whose_total_can_go_negative_is_refused(steps):
    with pytest.raises(WorkloadError, match="below zero"):
        compile_workload(_tape_spec(steps, mms=2), 2)


@pytest.mark.parametrize("steps", [
    [["remote", "anon", 3, 1], ["remote", "anon", -3, 1], ["fault", "anon", 1]],
    [["remote", "anon", 3, 2], ["remote", "anon", -3, 0]],  # offset 2 of 2 mms is the task's own mm
    [["fault", "anon", 32768], ["unmap", "anon", 32768]],
])
def test_balanced_tapes_compile(steps):
    """A tape whose totals return to zero is accepted and laid out step for step: the same ops, members
    and arguments in order, one task on CPU 0 running the whole tape."""
    cw = compile_workload(_tape_spec(steps, mms=2), 2)
    assert cw.nmm == 2 and cw.tape.shape == (len(steps), 4)
    assert cw.tape.tolist() == [list(_parse_step(s, "step")) for s in steps]
    assert [row[:3] for row in cw.tape.tolist()] == [[L.OP_NAMES[s[0]], L.MEMBER_NAMES.index(s[1]), s[2]]
                                                     for s in steps]
    assert cw.tasks.tolist() == [[0, 0, len(steps)]] and cw.runqueues == [[0], []]


def _laid_out_whole(cw: CompiledWorkload, ncpu: int) -> None:
    """Every task's tape slice lies inside the tape, names an mm of the workload, and sits on exactly one
    of the ``ncpu`` run queues."""
    assert len(cw.runqueues) == ncpu and len(cw.tasks) > 0 and len(cw.tape) > 0
    assert sorted(t for q in cw.runqueues for t in q) == list(range(len(cw.tasks)))
    for mm, first, steps in cw.tasks.tolist():
        assert 0 <= mm < cw.nmm and steps > 0 and 0 <= first and first + steps <= len(cw.tape)


def test_every_built_in_workload_passes_the_total_checks():
    for name in ("page_fault1", "page_fault2", "page_fault3", "rss_steal", "mixed", "oom_select"):
        for mode in ("processes", "threads"):
            _laid_out_whole(compile_workload(workloads.build(name, 4, mode=mode), 4), 4)


@pytest.mark.parametrize("steps", [
    [["remote", "anon", MAX_ARG, 0]],  # grows 2^31 an event: 64 bits last seconds
    [["remote", "anon", MAX_ARG, 0], ["remote", "anon", -MAX_ARG, 0]],  # the CPU's VAR grows 2^31 an event
], ids=["growth", "churn"])
def test_steps_that_could_overflow_a_counter_in_the_longest_run_are_refused(steps):
    with pytest.raises(WorkloadError, match="overflow"):
        compile_workload(_tape_spec(steps), 1)
