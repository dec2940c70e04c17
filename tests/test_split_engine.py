"""split through the compiled engine: the engine marks its unmap steps, so an owner's unmap folds the task's cache."""

from __future__ import annotations

from shmrss import result
from shmrss.orchestrator import Run, RunParams
from shmrss.topology import plan, read_topology
from shmrss.workload import compile_workload


def test_engine_unmap_folds_the_owner_cache():
    """Tape: 5 faults, unmap 1. With the fold at each unmap a task's cache never holds more than 5 pages, so
    the approximate read (the atomic) is never more than 5 below the truth; before the engine marked its
    unmaps, the cache grew to 66 pages between folds and the reader saw errors up to 66."""
    topo = read_topology()
    spec = {"name": "unmap-sync", "mms": 1, "tapes": {"t": [["fault", "anon", 5], ["unmap", "anon", 1]]},
            "tasks": [{"mm": 0, "tape": "t", "cpu": 0}]}
    p = RunParams(design="split", workload=compile_workload(spec, 1), placement=plan(topo, 1, oversubscribe=True),
                  topo=topo, duration=0.4, read_interval=0.001)
    res = result.build(p, Run(p).execute(), None)
    assert all(res["invariants"].values()), res["invariants"]
    assert res["reads"]["approx_count"] > 10
    assert res["accuracy"]["approx_max_abs_error"] <= 5
