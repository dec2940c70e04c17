"""Issue 22's fork/exit remedies: first-use's CPU bitmap over not-zeroed memory, coarse's pools, --fork-globals."""

from __future__ import annotations

import pytest
from numba import njit

from shmrss import layout as L, lifecycle, lifecycle_remedies as R
from shmrss.atomics import raw
from shmrss.designs._common import pcpu_word
from shmrss.orchestrator import RunParams
from shmrss.segment import Segment
from shmrss.topology import plan, read_topology
from shmrss.workload import compile_workload

from shmrss import workloads

DUR = "0.3"
_touch, _init, _sum, _check = R.touch, R.first_use_init, R.first_use_sum, R.first_use_check


@njit
def _life(words, s, remote):
    """A first-use mm on CPU 0: fork's init, its first switch, 5 pages; a remote update from CPU ``remote``."""
    seg = raw(words)
    _init(seg, s)
    first = _touch(seg, 0, s)
    again = _touch(seg, 0, s)
    seg[pcpu_word(seg, 0, s, 0)] += 5
    _touch(seg, remote, s)  # the updating CPU's bitmap test, then its this_cpu_add
    seg[pcpu_word(seg, remote, s, 0)] -= 2
    return first, again, _sum(seg, s, 0)


@njit
def _teardown(words, s):
    return _check(raw(words), 0, s)


def _segment(variant: str, possible: int):
    topo = read_topology()
    wl = compile_workload(workloads.build("page_fault1", 1), 1)
    p = RunParams(design="percpu", workload=wl, placement=plan(topo, 1), topo=topo, duration=0.2, possible=possible)
    run = lifecycle.LifecycleRun(p, variant, 8, 0)
    seg = Segment.create(run._make_geometry())
    run.seg = seg
    run._fill()
    return seg


def test_first_use_initialises_only_the_cpus_it_meets_and_sums_them():
    """The memory comes poisoned (never zeroed); the first switch and a remote update each initialise one
    slice; the sum walks only those, so a poisoned slice never reaches it; CPUs never met stay poisoned."""
    seg = _segment("first-use", 130)
    try:
        w = seg.words
        poison = int(w[int(w[L.H_PCPU])])
        assert poison == R.POISON
        first, again, total = _life(w, 3, 129)  # CPU 129: another bitmap word
        assert (first, again) == (1, 0)  # the test initialises once, then only tests
        assert total == 3
        assert _teardown(w, 3) == 1  # 3 pages still counted in member 0: check_mm says so
        base, cs, ks, kw = (int(w[x]) for x in (L.H_PCPU, L.H_PCPU_CSTRIDE, L.H_PCPU_KSTRIDE, L.H_PCPU_KWORDS))
        assert int(w[base + 5 * cs + (3 * kw) * ks]) == poison  # CPU 5 never met: untouched
        ext = int(w[int(w[L.H_GLOBAL]) + R.P_EXT])
        tally = int(w[ext + R.X_TALLY])
        assert int(w[tally + R.T_TOUCHED]) == 2
    finally:
        seg.unlink()
        seg.close()


def test_first_use_reports_switches_and_cpus_touched(run_cli, tmp_path):
    """first-use's invariants hold on poisoned memory, its clones' CPUs and the remote CPU are counted as
    touched, the switch cost is reported for both variants."""
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "upstream,first-use", "--cpus", "1",
                         "--online-cpus", "4", "--possible-cpus", "8", "--clones", "2", "--remote-every", "2",
                         "--switches", "16", "--duration", DUR], tmp_path)
    assert code == 0
    by = {r["params"]["lifecycle"]: r for r in res}
    for r in res:
        assert all(r["invariants"].values()), r["invariants"]
        assert r["lifecycle"]["switches_per_mm"] == 16 and r["lifecycle"]["switch_ns_per_switch"] > 0
        assert r["lifecycle"]["remote_updates"] >= r["lifecycle"]["mms"] // 2 - 1 > 0
    fu = by["first-use"]["lifecycle"]
    assert fu["cpus_touched_per_mm"] == 3  # its CPU and its 2 clones' (the remote CPU is clone 1's)
    # one allocation: the mutex once (a free takes pcpu_lock only, as mm/percpu.c's free_percpu does)
    assert fu["mutex_acquisitions_per_mm"] == 1 and fu["pcpu_lock_acquisitions_per_mm"] == 2
    assert "cpus_touched_per_mm" not in by["upstream"]["lifecycle"]


def test_first_use_walks_do_not_follow_p(run_cli, tmp_path):
    """The issue's first 'done when' in small: at P = 1024 upstream's init and teardown walk 1024 slices,
    first-use's its bitmap's 16 words and the one CPU it ran on (a factor of 10 leaves room for a loaded host)."""
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "upstream,first-use", "--cpus", "1",
                         "--possible-cpus", "1024", "--duration", DUR], tmp_path)
    assert code == 0 and all(all(r["invariants"].values()) for r in res)
    walks = {r["params"]["lifecycle"]: r["lifecycle"]["init_ns_per_mm"] + r["lifecycle"]["teardown_ns_per_mm"]
             for r in res}
    assert walks["first-use"] * 10 < walks["upstream"], walks


def test_first_use_reports_a_leak(run_cli, tmp_path):
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "first-use", "--cpus", "1",
                         "--leak-every", "5", "--duration", DUR], tmp_path)
    assert code == 1 and res["invariants"]["zero_at_teardown"] is False
    assert res["lifecycle"]["bad_rss_counter_state"] >= res["lifecycle"]["mms"] // 5 - 1 > 0


def test_coarse_pools_per_group(run_cli, tmp_path):
    """A reused mm takes its pool's lock twice (alloc, free) and the allocator mutex never; the groups are
    swept; the pools' retained memory is objects x slice bytes x P."""
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "coarse,ctor-cache", "--cpus", "2",
                         "--possible-cpus", "16", "--coarse-group", "1,2", "--duration", DUR], tmp_path)
    assert code == 0
    coarse = [r for r in res if r["params"]["lifecycle"] == "coarse"]
    assert [r["params"]["coarse_group"] for r in coarse] == [1, 2]
    for r in coarse:
        lc = r["lifecycle"]
        assert all(r["invariants"].values()), r["invariants"]
        assert lc["pools"] == (2 if r["params"]["coarse_group"] == 1 else 1)
        assert lc["pool_lock_acquisitions_per_mm"] == 2
        assert lc["mutex_acquisitions_per_mm"] < 0.05 and lc["reused_fraction"] > 0.95
        assert 1 <= lc["retained_objects"] <= 16
        assert lc["retained_bytes"] == lc["retained_objects"] * lc["slice_bytes_per_cpu"] * 16
    assert "coarse_group" not in next(r for r in res if r["params"]["lifecycle"] == "ctor-cache")["params"]


@pytest.mark.parametrize("variant", ["coarse", "ctor-cache", "upstream"])
def test_fork_globals_are_four_round_trips_per_mm(run_cli, tmp_path, variant):
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", variant, "--cpus", "2",
                         "--fork-globals", "--duration", DUR], tmp_path)
    assert code == 0 and all(res["invariants"].values())
    lc = res["lifecycle"]
    assert lc["fork_globals_acquisitions_per_mm"] == 4  # 2 locks, at fork and at exit
    assert 0 < lc["fork_globals_share"] < 1
    assert res["params"]["fork_globals"] is True
    assert any("stand-ins" in w for w in res["warnings"])


@pytest.mark.parametrize("argv, words", [
    (["--lifecycle", "upstream", "--coarse-group", "2"], "--coarse-group goes with --lifecycle coarse"),
    (["--workload", "page_fault1", "--design", "percpu", "--fork-globals"], "--fork-globals goes with"),
    (["--workload", "page_fault1", "--design", "percpu", "--switches", "3"], "--switches goes with"),
    (["--lifecycle", "coarse", "--coarse-group", "0"], "must be in [1, 4096]"),
])
def test_remedy_options_refused_alone(run_cli, tmp_path, capsys, argv, words):
    if "--workload" not in argv:
        argv = ["--workload", "fork_exit", *argv]
    code, res = run_cli(["run", *argv, "--cpus", "1", "--duration", DUR], tmp_path)
    assert code == 2 and res is None
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
