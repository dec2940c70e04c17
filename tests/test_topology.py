"""Tests for shmrss.topology: fake sysfs/proc/cgroup trees, placement, pinning."""

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from shmrss.topology import (
    PinError,
    Placement,
    Topology,
    TopologyError,
    current_cpu,
    format_cpulist,
    parse_cpulist,
    pin_self,
    plan,
    read_topology,
    render_table,
)


# --------------------------------------------------------------------------- fake trees


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def cpulist(cpus) -> str:
    return ",".join(map(str, cpus))


def make_cpus(root: Path, cores, llcs, line_size=64, cache=True):
    """cores and llcs: lists of CPU lists; every CPU gets L1d, L1i, L2 and L3."""
    cpu_dir = "sys/devices/system/cpu"
    for core in cores:
        for cpu in core:
            write(root, f"{cpu_dir}/cpu{cpu}/topology/thread_siblings_list", cpulist(core))
            if not cache:
                continue
            llc = next(g for g in llcs if cpu in g)
            caches = [
                (1, "Data", core),
                (1, "Instruction", core),
                (2, "Unified", core),
                (3, "Unified", llc),
            ]
            for i, (level, kind, shared) in enumerate(caches):
                d = f"{cpu_dir}/cpu{cpu}/cache/index{i}"
                write(root, f"{d}/level", str(level))
                write(root, f"{d}/type", kind)
                write(root, f"{d}/shared_cpu_list", cpulist(shared))
                write(root, f"{d}/coherency_line_size", str(line_size))


@pytest.fixture
def two_cores(tmp_path: Path) -> Path:
    """2 cores, no SMT, no NUMA dir, no cgroup limits, 4 possible CPUs."""
    tmp_path = tmp_path / "two_cores"
    write(tmp_path, "sys/devices/system/cpu/online", "0-1")
    write(tmp_path, "sys/devices/system/cpu/possible", "0-3")
    make_cpus(tmp_path, [[0], [1]], [[0, 1]])
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Fake CPU 2C\n\nprocessor\t: 1\nmodel name\t: Other\n")
    write(tmp_path, "proc/self/cgroup", "0::/")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def big_host(tmp_path: Path) -> Path:
    """4 cores x 2 SMT (siblings k, k+4), NUMA/LLC {0,1,4,5} and {2,3,6,7},
    a memory-only node 2, cgroup v2 cpuset 0-2,4,5,7 and cpu.max 1.5 CPUs."""
    tmp_path = tmp_path / "big_host"
    write(tmp_path, "sys/devices/system/cpu/online", "0-7")
    write(tmp_path, "sys/devices/system/cpu/possible", "0-15")
    halves = [[0, 1, 4, 5], [2, 3, 6, 7]]
    make_cpus(tmp_path, [[k, k + 4] for k in range(4)], halves, line_size=128)
    write(tmp_path, "sys/devices/system/node/node0/cpulist", "0-1,4-5")
    write(tmp_path, "sys/devices/system/node/node1/cpulist", "2-3,6-7")
    write(tmp_path, "sys/devices/system/node/node2/cpulist", "")
    write(tmp_path, "sys/devices/system/node/online", "0-2")
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Fake EPYC 8T\n")
    write(tmp_path, "proc/self/cgroup", "0::/user.slice/app.scope")
    cg = "sys/fs/cgroup"
    write(tmp_path, f"{cg}/cpuset.cpus.effective", "0-7")
    write(tmp_path, f"{cg}/user.slice/cpuset.cpus.effective", "0-2,4,5,7")
    write(tmp_path, f"{cg}/user.slice/cpu.max", "300000 100000")
    write(tmp_path, f"{cg}/user.slice/app.scope/cpu.max", "150000 100000")
    return tmp_path


# --------------------------------------------------------------------------- read_topology


def test_two_cores_every_field(two_cores):
    t = read_topology(str(two_cores))
    assert t.online == (0, 1)
    assert t.usable == (0, 1)
    assert t.cores == ((0,), (1,))
    assert t.llc_groups == ((0, 1),)
    assert t.numa_nodes == ((0, 1),)
    assert t.node_ids == (0,)
    assert t.possible == 4
    assert t.cache_line == 64
    assert t.quota_cpus is None
    assert t.smt_active is False
    assert t.model == "Fake CPU 2C"
    assert t.physical_cpus() == [0, 1]
    assert [t.node_of(c) for c in (0, 1)] == [0, 0]
    assert [t.llc_of(c) for c in (0, 1)] == [0, 0]


def test_big_host_every_field(big_host):
    t = read_topology(str(big_host))
    assert t.online == tuple(range(8))
    assert t.usable == (0, 1, 2, 4, 5, 7)
    assert t.cores == ((0, 4), (1, 5), (2,), (7,))
    assert t.llc_groups == ((0, 1, 4, 5), (2, 7))
    assert t.numa_nodes == ((0, 1, 4, 5), (2, 7))
    assert t.node_ids == (0, 1)
    assert t.possible == 16
    assert t.cache_line == 128
    assert t.quota_cpus == pytest.approx(1.5)
    assert t.smt_active is True
    assert t.model == "Fake EPYC 8T"
    assert t.physical_cpus() == [0, 1, 2, 7]
    assert [t.node_of(c) for c in t.usable] == [0, 0, 1, 0, 0, 1]
    assert [t.llc_of(c) for c in t.usable] == [0, 0, 1, 0, 0, 1]
    with pytest.raises(ValueError):
        t.node_of(3)


def test_to_dict_is_json(big_host):
    d = read_topology(str(big_host)).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["physical_cpus"] == [0, 1, 2, 7]
    assert d["cores"] == [[0, 4], [1, 5], [2], [7]]
    assert d["quota_cpus"] == pytest.approx(1.5)
    assert set(d) == {*Topology.__dataclass_fields__, "physical_cpus"}


def test_node_ids_follow_directories(big_host):
    # nodes 1 and 3 only: ids must come from the directory names
    import shutil

    shutil.rmtree(big_host / "sys/devices/system/node")
    write(big_host, "sys/devices/system/node/node3/cpulist", "0-1,4-5")
    write(big_host, "sys/devices/system/node/node1/cpulist", "2-3,6-7")
    t = read_topology(str(big_host))
    assert t.numa_nodes == ((2, 7), (0, 1, 4, 5))
    assert t.node_ids == (1, 3)
    assert t.node_of(0) == 3 and t.node_of(7) == 1


def test_missing_optional_files_degrade(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/online", "0-2")
    make_cpus(tmp_path, [[0], [1], [2]], [], cache=False)
    t = read_topology(str(tmp_path))
    assert t.usable == (0, 1, 2)
    assert t.cores == ((0,), (1,), (2,))
    assert t.llc_groups == ((0, 1, 2),)  # no cache info: assume one shared LLC
    assert t.numa_nodes == ((0, 1, 2),) and t.node_ids == (0,)
    assert t.possible == 3  # falls back to online
    assert t.cache_line == 64
    assert t.quota_cpus is None
    assert t.model == ""


def test_online_from_cpu_dirs_and_garbage_tolerated(tmp_path):
    # no online file; a malformed cpuset and cpu.max are ignored, not fatal
    make_cpus(tmp_path, [[0, 1]], [[0, 1]])
    write(tmp_path, "sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size", "junk")
    write(tmp_path, "proc/self/cgroup", "0::/a")
    write(tmp_path, "sys/fs/cgroup/a/cpuset.cpus.effective", "0-x")
    write(tmp_path, "sys/fs/cgroup/a/cpu.max", "lots 100000")
    t = read_topology(str(tmp_path))
    assert t.online == (0, 1) and t.usable == (0, 1)
    assert t.cores == ((0, 1),) and t.smt_active
    assert t.cache_line == 64
    assert t.quota_cpus is None


def test_cpu_max_most_restrictive_wins(big_host):
    cg = big_host / "sys/fs/cgroup/user.slice"
    (cg / "cpu.max").write_text("50000 100000\n")
    (cg / "app.scope/cpu.max").write_text("max 100000\n")
    assert read_topology(str(big_host)).quota_cpus == pytest.approx(0.5)


def test_cgroup_v1(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/online", "0-3")
    make_cpus(tmp_path, [[0], [1], [2], [3]], [[0, 1, 2, 3]])
    write(tmp_path, "proc/self/cgroup", "4:cpuset:/docker/x\n2:cpu,cpuacct:/docker/x\n1:name=systemd:/\n0::/")
    write(tmp_path, "sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0-3")
    write(tmp_path, "sys/fs/cgroup/cpuset/docker/x/cpuset.effective_cpus", "1,3")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "50000")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000")
    t = read_topology(str(tmp_path))
    assert t.usable == (1, 3)
    assert t.cores == ((1,), (3,))
    assert t.quota_cpus == pytest.approx(0.5)


def test_not_linux(monkeypatch, two_cores):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(TopologyError, match=r"shmrss needs Linux .*; this is darwin$"):
        read_topology(str(two_cores))


def test_real_host():
    t = read_topology("/")
    assert t.usable
    assert set(t.usable) <= set(t.online)
    assert set(t.usable) <= os.sched_getaffinity(0)
    assert sorted(c for core in t.cores for c in core) == list(t.usable)
    assert t.cache_line in (32, 64, 128, 256)
    assert t.possible >= len(t.online)
    assert all(t.node_of(c) in t.node_ids for c in t.usable)


# --------------------------------------------------------------------------- cpu lists


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ("\n", []),
        ("5", [5]),
        ("0-3,8,10-11\n", [0, 1, 2, 3, 8, 10, 11]),
        ("3,1,1-2", [1, 2, 3]),
        ("7-7", [7]),
    ],
)
def test_parse_cpulist_good(text, expected):
    assert parse_cpulist(text) == expected


@pytest.mark.parametrize("text", ["a", "1,,2", "1,", ",1", "3-1", "-1", "1-", "1-2-3", "0x1", "1 2", "1:2"])
def test_parse_cpulist_bad(text):
    with pytest.raises(ValueError):
        parse_cpulist(text)


def kernel_ranges(cpus) -> str:
    """Render like the kernel: every run as a-b, singletons alone."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


@given(st.sets(st.integers(min_value=0, max_value=300), max_size=60))
def test_cpulist_round_trip(cpus):
    assert parse_cpulist(kernel_ranges(cpus)) == sorted(cpus)
    assert parse_cpulist(format_cpulist(cpus)) == sorted(cpus)


def test_format_cpulist():
    assert format_cpulist([0, 1]) == "0,1"
    assert format_cpulist([11, 10, 8, 3, 2, 1, 0]) == "0-3,8,10,11"
    assert format_cpulist([]) == ""


# --------------------------------------------------------------------------- plan


def test_plan_refuses(two_cores, big_host):
    small = read_topology(str(two_cores))
    with pytest.raises(TopologyError) as e:
        plan(small, 4)
    assert str(e.value) == (
        "--cpus 4 exceeds the 2 usable physical cores (0,1); "
        "pass --oversubscribe to run anyway (timings will not be valid)"
    )
    for bad in (0, -1):
        with pytest.raises(TopologyError, match="at least 1"):
            plan(small, bad)

    big = read_topology(str(big_host))
    with pytest.raises(TopologyError) as e:
        plan(big, 5)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--cpus 5 exceeds the 4 usable physical cores (0-2,7); ")
    assert "--smt" in msg and "--oversubscribe" in msg
    with pytest.raises(TopologyError) as e:
        plan(big, 7, smt=True)
    assert str(e.value) == (
        "--cpus 7 exceeds the 6 usable logical CPUs (0-2,4,5,7); "
        "pass --oversubscribe to run anyway (timings will not be valid)"
    )


def test_plan_oversubscribed(two_cores):
    p = plan(read_topology(str(two_cores)), 4, oversubscribe=True)
    assert p.cpus == (0, 1, 0, 1)
    assert p.oversubscribed is True
    assert p.reader_cpu is None
    assert "oversubscribed: 4 emulated CPUs on 2 host CPUs; timings are not valid" in p.warnings
    assert any("no free core for the reader" in w for w in p.warnings)
    assert len(p.warnings) == 2


def test_plan_oversubscribe_flag_unused_when_it_fits(two_cores):
    p = plan(read_topology(str(two_cores)), 1, oversubscribe=True)
    assert p == Placement(cpus=(0,), reader_cpu=1, oversubscribed=False, warnings=())


def test_plan_fits_no_reader_core(two_cores):
    p = plan(read_topology(str(two_cores)), 2)
    assert p.cpus == (0, 1) and not p.oversubscribed
    assert p.reader_cpu is None
    assert len(p.warnings) == 1 and "no free core for the reader" in p.warnings[0]


def test_plan_physical_and_reader_on_free_core(big_host):
    big = read_topology(str(big_host))
    assert plan(big, 1) == Placement(cpus=(0,), reader_cpu=1, oversubscribed=False, warnings=())
    p = plan(big, 2)
    assert p.cpus == (0, 1)
    assert p.reader_cpu == 2
    assert p.warnings == (
        "cgroup CPU quota is 1.5 CPUs for 2 emulated CPUs: throttling will distort timings",
    )
    p = plan(big, 4)
    assert p.cpus == (0, 1, 2, 7)
    assert p.reader_cpu == 4  # no free core left: a sibling
    assert "the reader shares a core with the emulated CPUs" in p.warnings


def test_plan_smt_fills_cores_first(big_host):
    big = read_topology(str(big_host))
    p = plan(big, 4, smt=True)
    assert p.cpus == (0, 1, 2, 7)
    assert not any("SMT siblings" in w for w in p.warnings)

    p = plan(big, 6, smt=True)
    assert p.cpus == (0, 1, 2, 7, 4, 5)
    assert p.reader_cpu is None
    smt = [w for w in p.warnings if w.startswith("SMT siblings")]
    assert smt == [
        "SMT siblings (host CPUs 0+4, 1+5) share a core: per-CPU timings include sibling contention"
    ]
    assert "cgroup CPU quota is 1.5 CPUs for 6 emulated CPUs: throttling will distort timings" in p.warnings

    p = plan(big, 5, smt=True)
    assert p.cpus == (0, 1, 2, 7, 4)
    assert p.reader_cpu == 5
    assert "the reader shares a core with the emulated CPUs" in p.warnings
    assert any("host CPUs 0+4)" in w for w in p.warnings)


def test_plan_smt_oversubscribed_wraps(big_host):
    p = plan(read_topology(str(big_host)), 8, smt=True, oversubscribe=True)
    assert p.cpus == (0, 1, 2, 7, 4, 5, 0, 1)
    assert p.oversubscribed
    assert "oversubscribed: 8 emulated CPUs on 6 host CPUs; timings are not valid" in p.warnings


# --------------------------------------------------------------------------- render


def test_render_table(big_host):
    big = read_topology(str(big_host))
    console = Console(record=True, width=200, color_system=None)
    console.print(render_table(big, plan(big, 2)))
    text = console.export_text()
    flat = " ".join(text.split())  # the caption wraps
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    assert "emu 0" in rows["0"] and "emu 1" in rows["1"] and "reader" in rows["2"]
    assert "3" not in rows  # not usable
    assert "cache line 128 B" in flat and "16 possible" in flat
    assert "quota 1.5 CPUs" in flat and "Fake EPYC 8T" in flat

    console = Console(record=True, width=200, color_system=None)
    console.print(render_table(big))
    assert "emu" not in console.export_text()


# --------------------------------------------------------------------------- pinning


def test_pin_self_real_host():
    original = os.sched_getaffinity(0)
    cpu = read_topology("/").usable[-1]
    try:
        pin_self(cpu)
        assert os.sched_getaffinity(0) == {cpu}
        assert current_cpu() == cpu
    finally:
        os.sched_setaffinity(0, original)
    assert os.sched_getaffinity(0) == original


def test_pin_self_bad_cpu():
    original = os.sched_getaffinity(0)
    try:
        for bad in (-1, 100_000):
            with pytest.raises(PinError, match=f"could not pin to CPU {bad}: "):
                pin_self(bad)
    finally:
        os.sched_setaffinity(0, original)
    assert os.sched_getaffinity(0) == original
