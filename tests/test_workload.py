"""shmrss.workload: compiling page_fault1, refusing malformed specs (only ever with WorkloadError)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workloads
from shmrss import layout as L
from shmrss.workload import MAX_ARG, CompiledWorkload, WorkloadError, compile_workload, load_file

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
    # one tape of two steps: 32768 faults of +1 anon, one unmap of -32768
    assert wl.tape.dtype == np.int64
    assert wl.tape.tolist() == [[L.OP_FAULT, L.ANON, PAGES], [L.OP_UNMAP, L.ANON, PAGES]]
    assert wl.tasks.shape == (n, 3)
    for t in range(n):
        assert wl.tasks[t].tolist() == [t if mode == "processes" else 0, 0, 2]
    # round robin over the CPUs
    assert len(wl.runqueues) == ncpu
    assert wl.runqueues == [list(range(c, n, ncpu)) for c in range(ncpu)]
    assert sorted(t for rq in wl.runqueues for t in rq) == list(range(n))


def test_page_fault1_pages_are_128_mib():
    spec = workloads.build("page_fault1", 2)
    assert spec["tapes"]["fault_unmap_128M"][0][2] * 4096 == 128 << 20


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
    assert wl.tape.shape == (6, 3)
    assert wl.tape[2].tolist() == [L.OP_FAULT, L.SHMEM, 1]
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
INTS = st.one_of(st.integers(-3, 5), st.integers(), st.just(MAX_ARG), st.just(MAX_ARG + 1))
MAYBE = lambda good: st.one_of(good, JSON)  # noqa: E731  mostly plausible, sometimes anything
STEP = st.one_of(
    st.lists(MAYBE(st.sampled_from(["fault", "unmap", "remap"])), min_size=3, max_size=3),
    st.tuples(MAYBE(st.sampled_from(["fault", "unmap"])), MAYBE(st.sampled_from(list(L.MEMBER_NAMES) + ["x"])),
              MAYBE(INTS)).map(list),
    JSON,
)
TAPES = st.one_of(st.dictionaries(st.sampled_from(["t", "u", ""]), st.one_of(st.lists(STEP, max_size=4), JSON),
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


def _check_compiled(wl: CompiledWorkload, ncpu: int):
    assert 1 <= wl.nmm
    assert wl.tape.ndim == 2 and wl.tape.shape[1] == 3 and len(wl.tape) >= 1
    assert set(wl.tape[:, 0].tolist()) <= {L.OP_FAULT, L.OP_UNMAP}
    assert np.all((wl.tape[:, 1] >= 0) & (wl.tape[:, 1] < L.NMEMBERS))
    assert np.all((wl.tape[:, 2] >= 1) & (wl.tape[:, 2] <= MAX_ARG))
    for mm, first, n in wl.tasks.tolist():
        assert 0 <= mm < wl.nmm and n >= 1 and 0 <= first and first + n <= len(wl.tape)
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
