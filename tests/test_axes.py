"""Two axes of a run and one read the kernel makes (issue 10, items 1 and "what to add"):

* possible vs online CPUs: upstream's ``__percpu_counter_sum`` (percpu's precise read, check_mm,
  fused-check) walks the online CPUs, HPCC's ``percpu_counter_tree_precise_sum`` and the per-CPU
  allocator's zeroing walk every possible CPU;
* pages per fault (``--fault-pages``, a fault step's size);
* ``update_hiwater_rss`` on unmap: an approximate read of FILE + ANON + SHMEM into mm->hiwater_rss.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from numba import njit

import design_drivers as D
from shmrss import workloads
from shmrss import layout as L
from shmrss import lifecycle_loop as LL
from shmrss.atomics import raw
from shmrss.cli import main
from shmrss.workload import WorkloadError, compile_workload

NM = L.NMEMBERS


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err + out, (code, err)
    return lines[0]


# ---------------------------------------------------------------- possible vs online CPUs
def _axes(name):
    """2 running CPUs, 4 online, 8 possible, one mm."""
    return replace(D.geometry(name, 2, possible=8, nmm=1), online=4)


def _stray(name, s, cpu):
    """A value of 5 in CPU ``cpu``'s word of mm 0's file counter (a CPU no task ran on)."""
    D.prepare(name, s)
    s.words[D.pcpu_addr(s, cpu, 0, L.FILE)] = 5


def test_header_holds_the_online_cpus(new_segment):
    with new_segment(_axes("percpu")) as s:
        assert (s.h(L.H_NCPU), s.h(L.H_ONLINE), s.h(L.H_POSSIBLE)) == (2, 4, 8)


@pytest.mark.parametrize("cpu,seen", [(3, 5), (6, 0)], ids=["online", "possible-only"])
def test_percpu_precise_sum_walks_the_online_cpus(new_segment, cpu, seen):
    """__percpu_counter_sum: for_each_cpu_or(cpu, cpu_online_mask, cpu_dying_mask)."""
    with new_segment(_axes("percpu")) as s:
        _stray("percpu", s, cpu)
        assert D.read_all("percpu", s)[L.FILE, 0] == seen
        _, bad = D.run("percpu", s, [D.op_destroy(0)], record=False)  # check_mm: percpu_counter_sum
        assert bad.tolist() == [int(seen != 0)]


@pytest.mark.parametrize("cpu", [3, 6], ids=["online", "possible-only"])
def test_tree_precise_sum_walks_every_possible_cpu(new_segment, cpu):
    """percpu_counter_tree_precise_sum: for_each_possible_cpu(cpu)."""
    with new_segment(_axes("tree")) as s:
        _stray("tree", s, cpu)
        assert D.read_all("tree", s)[L.FILE, 0] == 5


@njit(cache=True)
def _fused(words, slot):
    return LL._fused_check(raw(words), slot)


@njit(cache=True)
def _zero(words, slot):
    LL._zero_counters(raw(words), slot)


@pytest.mark.parametrize("cpu,bad", [(3, 1), (6, 0)], ids=["online", "possible-only"])
def test_fused_check_walks_the_online_cpus_and_allocation_zeroes_every_possible_one(new_segment, cpu, bad):
    with new_segment(_axes("percpu")) as s:
        s.words[D.pcpu_addr(s, cpu, 0, L.ANON)] = 7
        assert _fused(s.words, 0) == bad
        _zero(s.words, 0)
        assert s.words[D.pcpu_addr(s, cpu, 0, L.ANON)] == 0


def test_online_cpus_refused_outside_running_and_possible(capsys):
    base = ["run", "--design", "percpu", "--cpus", "2", "--duration", "0.2"]
    assert "above --possible-cpus 4" in one_line_error(capsys, [*base, "--possible-cpus", "4", "--online-cpus", "5"])
    assert "above --possible-cpus 2" in one_line_error(capsys, [*base, "--online-cpus", "3"])
    assert "below the 2 emulated CPUs" in one_line_error(capsys, [*base, "--possible-cpus", "8",
                                                                  "--online-cpus", "1"])


# ---------------------------------------------------------------- pages per fault
def test_fault_step_takes_a_size():
    spec = {"mms": 1, "tapes": {"t": [["fault", "anon", 4, 512], ["fault", "file", 3], ["unmap", "anon", 2048],
                                      ["unmap", "file", 3]]}, "tasks": [{"mm": 0, "tape": "t"}]}
    wl = compile_workload(spec, 1)
    assert wl.tape[:2].tolist() == [[L.OP_FAULT, L.ANON, 4, 512], [L.OP_FAULT, L.FILE, 3, 0]]


@pytest.mark.parametrize("size", [-16, 0, 1 << 19, "16"])
def test_bad_fault_size_refused(size):
    spec = {"mms": 1, "tapes": {"t": [["fault", "anon", 4, size]]}, "tasks": [{"mm": 0, "tape": "t"}]}
    with pytest.raises(WorkloadError, match="pages per fault"):
        compile_workload(spec, 1)


def test_negative_size_in_a_workload_file_is_one_line_and_exit_2(capsys, tmp_path):
    f = tmp_path / "neg.json"
    f.write_text(json.dumps({"mms": 1, "tapes": {"t": [["fault", "anon", 4, -16], ["unmap", "anon", 64]]},
                             "tasks": [{"mm": 0, "tape": "t"}]}))
    assert "pages per fault" in one_line_error(capsys, ["run", "--design", "atomic", "--workload", str(f),
                                                        "--duration", "0.2"])


def test_fault_pages_refused_when_zero_or_off_the_page_fault_workloads(capsys):
    base = ["run", "--design", "percpu", "--duration", "0.2"]
    assert "--fault-pages" in one_line_error(capsys, [*base, "--fault-pages", "0"])
    assert "--fault-pages goes with" in one_line_error(capsys, [*base, "--workload", "mixed", "--fault-pages", "16"])
    assert "--fault-pages goes with" in one_line_error(capsys, [*base, "--workload", "fork_exit",
                                                                "--fault-pages", "16"])


@pytest.mark.parametrize("sizes,steps,pages", [((1,), [["fault", "anon", 32768]], 32768),
                                               ((16,), [["fault", "anon", 2048, 16]], 32768),
                                               ((512,), [["fault", "anon", 64, 512]], 32768)])
def test_page_fault_workloads_fault_the_region_in_pages_of_the_size(sizes, steps, pages):
    spec = workloads.build("page_fault1", 2, fault_pages=sizes)
    (tape,) = spec["tapes"].values()
    assert tape == steps + [["unmap", "anon", pages]]


def test_a_mix_interleaves_the_sizes_fault_by_fault():
    (tape,) = workloads.build("page_fault3", 1, fault_pages=(1, 16, 512))["tapes"].values()
    faults, unmap = tape[:-1], tape[-1]
    assert [s[3] for s in faults[:6]] == [1, 16, 512, 1, 16, 512] and all(s[2] == 1 for s in faults)
    assert unmap == ["unmap", "file", sum(s[3] for s in faults)] and unmap[2] <= 32768


# ---------------------------------------------------------------- the run: params, pages, hiwater_rss
def test_run_reports_both_axes_pages_and_the_hiwater_read(run_cli, tmp_path):
    code, r = run_cli(["run", "--design", "percpu", "--cpus", "1", "--possible-cpus", "4", "--online-cpus", "2",
                       "--fault-pages", "16", "--duration", "0.4"], tmp_path)
    assert code == 0 and all(r["invariants"].values()), r["invariants"]
    assert r["params"]["online_cpus"] == 2 and r["params"]["possible_cpus"] == 4
    assert r["params"]["fault_pages"] == [16]
    th = r["throughput"]
    unmaps = th["events"] // 2049 + 1
    assert 16 * (th["events"] - unmaps) <= th["fault_pages"] <= 16 * th["events"]
    # the unmap read FILE + ANON + SHMEM approximately right before the zap: the peak of 32768 pages
    # within percpu's bound (1 CPU: B - 1 = 31)
    assert th["events"] > 2048 and 32768 - 31 <= r["hiwater_rss"]["max"] <= 32768


def test_online_cpus_default_to_the_possible_ones(run_cli, tmp_path):
    code, r = run_cli(["run", "--design", "atomic", "--workload", "fork_exit", "--lifecycle", "fused-check",
                       "--cpus", "1", "--possible-cpus", "8", "--duration", "0.3"], tmp_path)
    assert code == 0 and r["params"]["online_cpus"] == 8


def test_percpu_batch_follows_the_online_cpus_not_the_running_ones():
    """compute_batch_value: percpu_counter_batch = max(32, nr * 2) with nr = num_online_cpus()."""
    from shmrss.designs import percpu, single, single_atomic

    for mod in (percpu, single, single_atomic):
        assert mod.shape(2, 64, 1, options={"online_cpus": 64}).params[0] == 128
        assert mod.shape(2, 64, 1, options={"online_cpus": 2}).params[0] == 32
        assert mod.shape(2, 64, 1).params[0] == 128  # online defaults to every possible CPU, as the segment's
