"""--fault-body page: real page faults beside each counter update, on every design; bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numba import njit

from shmrss import designs, faultbody, layout as L
from shmrss.atomics import raw
from shmrss.workload import compile_workload

SMALL = {"name": "small_faults", "mms": 2,
         "tapes": {"pf": [["fault", "anon", 256], ["unmap", "anon", 256]]},
         "tasks": [{"mm": 0, "tape": "pf"}, {"mm": 1, "tape": "pf"}]}


def _words_with_region(pages: int) -> tuple[np.ndarray, int]:
    w = np.zeros(L.S_WORDS, dtype=np.int64)
    w[L.S_FB_PAGES] = pages
    return w, 0


@njit(cache=True)
def _fault_in(words, st, pages):
    faultbody.fault_in(raw(words), st, pages)


@njit(cache=True)
def _release(words, st, pages):
    faultbody.release(raw(words), st, pages)


@njit(cache=True)
def _count(words, st, counter_ticks, body_ticks):
    faultbody.count_ticks(raw(words), st, counter_ticks, body_ticks)


def test_a_preempted_counter_update_is_counted_apart_not_timed():
    w, st = _words_with_region(16)
    _count(w, st, 30, 5000)
    _count(w, st, faultbody.PREEMPTED_TICKS + 1, 100)  # the CPU process lost its host CPU mid-update
    assert w[st + L.S_FB_COUNTER_TSC] == 30 and w[st + L.S_FB_PREEMPTED] == 1 and w[st + L.S_FB_BODY_TSC] == 5100
    row = faultbody.per_cpu(w, st, events=2, tsc_per_ns=1.0, timer_ticks=0)
    assert row["counter_ns_per_event"] == 30 and row["counter_updates_preempted"] == 1
    assert row["body_ns_per_event"] == 2550


def test_touching_the_region_really_faults_and_release_gives_the_pages_back():
    w, st = _words_with_region(128)
    region = faultbody.map_region(w, st)
    _fault_in(w, st, 1)  # compile outside the counted window
    _release(w, st, 1)
    before = faultbody.minor_faults()
    _fault_in(w, st, 64)
    first = faultbody.minor_faults() - before
    assert first >= 64, f"64 fresh pages touched, {first} minor faults"
    _release(w, st, 64)
    assert w[st + L.S_FB_CURSOR] == 0 and w[st + L.S_FB_ERRORS] == 0
    # the same pages again: they fault again only if the release really gave them back
    before = faultbody.minor_faults()
    _fault_in(w, st, 64)
    again = faultbody.minor_faults() - before
    assert again >= 64, f"released pages touched again gave {again} minor faults: the release did nothing"
    assert w[st + L.S_FB_TOUCHED] == 129 and w[st + L.S_FB_RELEASED] == 65
    del region


def test_a_tape_longer_than_the_region_starts_the_region_again():
    w, st = _words_with_region(32)
    region = faultbody.map_region(w, st)
    _fault_in(w, st, 20)
    _fault_in(w, st, 20)  # 40 > 32: the first 20 are released, touching restarts at page 0
    assert w[st + L.S_FB_CURSOR] == 20 and w[st + L.S_FB_RELEASED] == 20
    _release(w, st, 100)  # more than held: only what is held
    assert w[st + L.S_FB_CURSOR] == 0 and w[st + L.S_FB_RELEASED] == 40
    del region


def test_region_is_sized_from_the_largest_number_of_pages_a_cpu_holds():
    spec = {"name": "x", "mms": 1,
            "tapes": {"a": [["fault", "anon", 100], ["fault", "file", 50], ["unmap", "anon", 100],
                            ["fault", "anon", 60], ["unmap", "anon", 60], ["unmap", "file", 50]],
                      "b": [["remote", "anon", 5], ["sleep", 1]]},
            "tasks": [{"mm": 0, "tape": "a", "cpu": 0}, {"mm": 0, "tape": "a", "cpu": 0},
                      {"mm": 0, "tape": "b", "cpu": 1}]}
    wl = compile_workload(spec, 2)
    assert faultbody.region_pages(wl) == [300, faultbody.MIN_REGION_PAGES]
    spec["tapes"]["a"][0] = ["fault", "anon", 100, 16]  # 100 faults of 16 pages (--fault-pages 16)
    spec["tapes"]["a"][2] = ["unmap", "anon", 1600]
    assert faultbody.region_pages(compile_workload(spec, 2)) == [2 * 1650, faultbody.MIN_REGION_PAGES]


def test_regions_that_do_not_fit_in_memory_are_refused():
    wl = compile_workload(SMALL, 2)
    assert faultbody.check("none", wl, fork_exit=False, journaled=False, available=0) is None
    with pytest.raises(faultbody.FaultBodyError, match="needs 2 MiB of real memory"):
        faultbody.check("page", wl, fork_exit=False, journaled=False, available=1 << 20)


@pytest.mark.parametrize("args, says", [
    (["--fault-body", "pages"], "invalid choice"),
    (["--fault-body", "page", "--workload", "fork_exit"], "not fork_exit"),
    (["--fault-body", "page", "--kill-at", "0.5:0", "--duration", "1"], "cannot be combined"),
    (["--fault-body", "page", "--oversubscribe", "--cpus", "64", "--workload", "WL"], "MiB of real memory"),
])
def test_bad_fault_body_input_is_one_line_and_exit_2(args, says, tmp_path, capsys):
    from shmrss.cli import main

    big = tmp_path / "big.json"
    big.write_text(json.dumps({**SMALL, "mms": 1, "tasks": [{"mm": 0, "tape": "pf"}] * 64,
                               "tapes": {"pf": [["fault", "anon", 1 << 20], ["unmap", "anon", 1 << 20]]}}))
    code = main(["run", "--no-calibrate", *[str(big) if a == "WL" else a for a in args]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and says in err, err


@pytest.mark.parametrize("design", designs.DESIGNS)
def test_fault_body_page_works_on_every_design(design, run_cli, tmp_path):
    wl = tmp_path / "small.json"
    wl.write_text(json.dumps(SMALL))
    code, r = run_cli(["run", "--design", design, "--workload", str(wl), "--duration", "0.4",
                       "--fault-body", "page"], tmp_path)
    assert code == 0, r and r["invariants"]
    assert r["params"]["fault_body"] == "page"
    fb = r["throughput"]["fault_body"]
    assert fb["pages_touched"] > 512 and fb["pages_released"] > 0 and fb["madvise_errors"] == 0
    assert fb["minor_faults_per_page"] >= 0.9  # every touched page was a real fault of the CPU process
    assert 0 < fb["counter_ns_per_event"] < fb["event_ns"] and 0 < fb["counter_share"] < 1


def test_fault_body_none_does_no_page_work(run_cli, tmp_path):
    code, r = run_cli(["run", "--design", "percpu", "--duration", "0.3"], tmp_path)
    assert code == 0
    assert r["params"]["fault_body"] == "none" and r["throughput"]["fault_body"] is None


def test_page_runs_check_the_stop_flag_every_few_events():
    """A page fault costs ~1000 counter updates: at the default 1024 events between stop checks, a CPU on a
    loaded host took longer than the stop timeout to notice the stop (a run failed that way)."""
    from shmrss.orchestrator import FAULT_BODY_STAT_EVERY, RunParams, _geometry
    from shmrss.topology import plan, read_topology

    topo = read_topology()
    wl = compile_workload(SMALL, 2)
    p = RunParams(design="percpu", workload=wl, placement=plan(topo, 2, oversubscribe=True), topo=topo)
    assert _geometry(p).stat_every == 1024
    p.fault_body_pages = faultbody.region_pages(wl)
    assert _geometry(p).stat_every == FAULT_BODY_STAT_EVERY <= 16


def test_seed_004_verdict_needs_repetitions_and_a_difference_beyond_the_noise():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from fault_body import verdict

    assert verdict([+0.3, -0.5, +0.1], noise_pct=5.0) == "agree"
    assert verdict([+10.0, +29.6], noise_pct=0.3) == "cannot tell"  # two repetitions: no noise estimate
    assert verdict([+10.0, +29.6, +12.0], noise_pct=16.0) == "cannot tell"  # within the noise
    assert verdict([+3.0, +2.5, +2.8], noise_pct=1.0) == "disagree"
    assert verdict([+0.3, -1.7, +2.8], noise_pct=1.0) == "cannot tell"
