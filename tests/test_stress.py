"""The stress suite (``pytest -m stress``): every design on all usable CPUs, oversubscribed x4 with
clones, exits, migrations, sleeps, remote updates and the reclaimer, packed (false sharing), every
fork/exit variant, and CPU offline / kill faults when ``shmrss run`` offers them.

It scales to the runner: N = the CPUs this process may use (``os.sched_getaffinity``).
``SHMRSS_STRESS_SECONDS`` (default 60) is the measuring time of the whole suite, split across the
cases by weight and within a case across its designs; start-up and compilation come on top.
``SHMRSS_STRESS_ARTIFACTS`` names a directory that keeps every run's JSON and stderr (CI uploads it
when a case fails); by default they go to pytest's tmp_path.

Each run is a real ``shmrss run`` process; it must exit 0, every invariant of every result must
hold, and it must leave no segment in /dev/shm.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmrss import designs
from shmrss.lifecycle import VARIANTS
from shmrss.segment import PREFIX, SHM_DIR, owner_pid
from shmrss.topology import read_topology
from results_schema import load_run_json

pytestmark = pytest.mark.stress

N = len(os.sched_getaffinity(0))
DESIGNS = list(designs.DESIGNS)
# weight of each case in SHMRSS_STRESS_SECONDS
WEIGHTS = {"all_cores": 2, "oversubscribed": 3, "pack": 1, "fork_exit": 1, "offline": 1, "kill": 1}
MIN_DESIGN_S = 0.3
SLACK_S = 180  # start-up, first compilation of a design's loop, teardown: per run, on top of the budget


def _budget_s() -> float:
    text = os.environ.get("SHMRSS_STRESS_SECONDS", "60")
    try:
        total = float(text)
    except ValueError:
        pytest.fail(f"SHMRSS_STRESS_SECONDS={text!r} is not a number of seconds")
    if not 1 <= total <= 7 * 86400:
        pytest.fail(f"SHMRSS_STRESS_SECONDS={text!r}: give 1 to 604800 seconds")
    return total


def per_design_s(case: str, runs: int) -> float:
    share = _budget_s() * WEIGHTS[case] / sum(WEIGHTS.values())
    return max(MIN_DESIGN_S, share / runs)


@functools.cache
def run_help() -> str:
    return subprocess.run([sys.executable, "-m", "shmrss.cli", "run", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"}).stdout


def need_options(*options: str) -> None:
    missing = [o for o in options if o not in run_help()]
    if missing:
        pytest.fail(f"`shmrss run --help` does not list {', '.join(missing)}: either the fault options were "
                    f"removed or --help is broken; the fault cases must not vanish silently")


def _cpu_args() -> list[str]:
    """All usable CPUs: physical cores, plus SMT siblings when the runner has them."""
    topo = read_topology()
    return ["--cpus", str(N)] + (["--smt"] if N > len(topo.physical_cpus()) else [])


def stress_workload(cpus: int, tasks: int) -> dict:
    """Balanced tapes (every page faulted is unmapped, every remote update undone) that clone and exit,
    migrate, yield, sleep, and update other mms; ``tasks`` tasks spread over the mms, round robin on
    the CPUs."""
    tapes = {
        "cloner": [["fault", "anon", 200], ["clone"], ["fault", "file", 50], ["yield"], ["clone"],
                   ["remote", "shmem", 7, 1], ["exit"], ["unmap", "file", 50], ["remote", "shmem", -7, 1],
                   ["exit"], ["unmap", "anon", 200]],
        "mover": [["fault", "anon", 300], ["remote", "anon", 5, 1], ["migrate", 1], ["fault", "shmem", 20],
                  ["yield"], ["unmap", "anon", 300], ["remote", "anon", -5, 1], ["migrate", 3],
                  ["unmap", "shmem", 20]],
        "sleeper": [["fault", "swap", 30], ["sleep", 3], ["remote", "file", 2, 2], ["unmap", "swap", 30],
                    ["remote", "file", -2, 2], ["yield"]],
        "faulter": [["fault", "anon", 4096], ["unmap", "anon", 4096]],
    }
    names = list(tapes)
    mms = max(4, cpus + 1)  # not a multiple of the CPUs: a CPU's tasks belong to different mms (switch_mm),
    # and an mm's threads sit on different CPUs (contention)
    return {"name": "stress", "mms": mms, "tapes": tapes,
            "tasks": [{"mm": t % mms, "tape": names[t % len(names)], "cpu": t % cpus} for t in range(tasks)]}


def _ours(before: set[str], pid: int) -> list[str]:
    try:
        now = {n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)}
    except FileNotFoundError:
        return []
    return sorted(n for n in now - before if owner_pid(n) == pid)


@pytest.fixture
def artifacts(tmp_path, request) -> Path:
    root = os.environ.get("SHMRSS_STRESS_ARTIFACTS")
    d = Path(root) / request.node.name.replace("/", "_") if root else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


def shmrss_run(args: list[str], artifacts: Path, label: str, budget_s: float) -> list[dict]:
    """One ``shmrss run`` process; returns its results after checking exit 0, invariants, no leak."""
    out = artifacts / f"{label}.json"
    log = artifacts / f"{label}.stderr.txt"
    argv = [sys.executable, "-m", "shmrss.cli", "run", *args, "--no-calibrate", "--json", str(out)]
    before = {n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)} if os.path.isdir(SHM_DIR) else set()
    t0 = time.monotonic()
    with open(log, "w") as err:
        err.write(" ".join(argv) + "\n")
        err.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "COLUMNS": "200"})
        try:
            code = proc.wait(timeout=budget_s + SLACK_S)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: shmrss writes what it measured and cleans up
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"{label}: still running after {budget_s + SLACK_S:.0f} s; see {log}")
    elapsed = time.monotonic() - t0
    leaked = _ours(before, proc.pid)
    assert not leaked, f"{label}: left {leaked} in {SHM_DIR}"
    tail = log.read_text()[-3000:]
    assert code == 0, f"{label}: exit {code} after {elapsed:.0f} s\n{tail}"
    assert "Traceback" not in tail, tail
    data = load_run_json(out)
    results = data if isinstance(data, list) else [data]
    for r in results:
        bad = [k for k, ok in r["invariants"].items() if ok is not True]
        assert not bad, f"{label} {r['design']}: invariants failed: {bad}\n{tail}"
        assert r["partial"] is False
    return results


def _by_design(results: list[dict]) -> dict[str, dict]:
    return {r["design"]: r for r in results}


# ================================================================= the cases
@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_on_all_cores(design, artifacts):
    d = per_design_s("all_cores", len(DESIGNS))
    (r,) = shmrss_run(["--design", design, "--workload", "page_fault1", "--mode", "threads", *_cpu_args(),
                       "--duration", f"{d:.2f}"], artifacts, design, d)
    assert r["params"]["cpus"] == N
    assert all(c["events"] > 0 for c in r["throughput"]["per_cpu"]), "a CPU made no progress"


def _oversubscribed_args(artifacts: Path, pack: bool = False) -> tuple[list[str], int]:
    cpus = 4 * N
    wl = artifacts / "stress-workload.json"
    wl.write_text(json.dumps(stress_workload(cpus, 8 * N)))
    return ["--workload", str(wl), "--cpus", str(cpus), "--oversubscribe", "--reclaimer",
            *(["--pack"] if pack else [])], cpus


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_oversubscribed_x4(design, artifacts):
    d = per_design_s("oversubscribed", len(DESIGNS))
    args, cpus = _oversubscribed_args(artifacts)
    (r,) = shmrss_run(["--design", design, *args, "--duration", f"{d:.2f}"], artifacts, design, d)
    p, th = r["params"], r["throughput"]
    assert p["cpus"] == cpus and p["oversubscribed"] is True and p["tasks"] == 8 * N
    assert p["reclaimer"] is True and th["reclaimer"]["moves"] > 0
    assert th["migrations"] > 0 and th["switches_per_s"] > 0
    assert len({t["mm"] for t in stress_workload(cpus, 8 * N)["tasks"] if t["cpu"] == 0}) > 1


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_packed(design, artifacts):
    """--pack: the CPUs' per-CPU words interleaved in shared lines, with the stress tapes."""
    d = per_design_s("pack", len(DESIGNS))
    wl = artifacts / "stress-workload.json"
    wl.write_text(json.dumps(stress_workload(N, 4 * N)))
    (r,) = shmrss_run(["--design", design, "--workload", str(wl), *_cpu_args(), "--pack", "--reclaimer",
                       "--duration", f"{d:.2f}"], artifacts, design, d)
    assert r["params"]["pack"] is True


def test_every_fork_exit_variant(artifacts):
    possibles = sorted({N, max(N, 256)})
    d = per_design_s("fork_exit", len(VARIANTS) * len(possibles))
    results = shmrss_run(["--workload", "fork_exit", "--lifecycle", "all", *_cpu_args(), "--clones", "2",
                          "--possible-cpus", ",".join(map(str, possibles)), "--duration", f"{d:.2f}"],
                         artifacts, "fork_exit", d * len(VARIANTS) * len(possibles))
    assert sorted((r["params"]["lifecycle"], r["params"]["possible_cpus"]) for r in results) == \
        sorted((v, p) for v in VARIANTS for p in possibles)
    for r in results:
        assert r["lifecycle"]["bad_rss_counter_state"] == 0 and r["lifecycle"]["mms"] > 0


def _fault_plan(d: float, cpus: int, option: str) -> list[str]:
    """Faults at a third and at two thirds of the run, on CPUs 1 and 2 (never the reclaimer)."""
    return [option, f"{d / 3:.2f}:1", option, f"{2 * d / 3:.2f}:{min(2, cpus - 1)}"]


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_with_cpus_going_offline(design, artifacts):
    need_options("--offline-at", "--check-every")
    d = max(1.0, per_design_s("offline", len(DESIGNS)))
    args, cpus = _oversubscribed_args(artifacts)
    shmrss_run(["--design", design, *args, "--duration", f"{d:.2f}", *_fault_plan(d, cpus, "--offline-at"),
                "--check-every", f"{max(0.05, d / 8):.2f}"], artifacts, design, d)


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_with_cpus_killed(design, artifacts):
    need_options("--kill-at", "--check-every")
    d = max(1.0, per_design_s("kill", len(DESIGNS)))
    args, cpus = _oversubscribed_args(artifacts)
    shmrss_run(["--design", design, *args, "--duration", f"{d:.2f}", *_fault_plan(d, cpus, "--kill-at"),
                "--check-every", f"{max(0.05, d / 8):.2f}"], artifacts, design, d)


def test_the_stress_workload_is_valid():
    """Whatever N, the generated tapes compile (clones match exits, every CPU index exists)."""
    from shmrss.workload import compile_workload

    for cpus in (1, 2, 8, 4 * N):
        wl = compile_workload(stress_workload(cpus, 8 * max(1, cpus // 4)), cpus)
        assert len(wl.tasks) == 8 * max(1, cpus // 4)
