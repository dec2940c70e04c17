"""oom_select: many single-threaded processes of skewed sizes; the reader picks the OOM victim.

mm i faults ``64 + 100000 // (i + 1)`` anonymous pages (a few huge processes, a
long tail of small ones) and then sleeps for good, so the counters settle and
every victim selection can be judged: the 2-pass selection (approximate pass,
then precise sums only for the mms whose range reaches the maximum's, at most
16) must pick the same victim as an all-precise scan. ``--tasks N`` sets the
number of mms (default 1000; up to 10,000 as in the HPCC figures).
Run on its own: ``python -m shmrss.workloads.oom_select --design tree,percpu --duration 2``.
"""

import sys

MMS = 1000


def size_of(i: int) -> int:
    return 64 + 100_000 // (i + 1)


def build(ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    n = MMS if tasks is None else tasks
    if not 1 <= n <= 100_000:
        raise WorkloadError(f"--tasks (the number of mms) must be in [1, 100000], got {n}")
    tapes = {}
    tasks_list = []
    for i in range(n):
        name = f"grow_{size_of(i)}"
        tapes.setdefault(name, [["fault", "anon", size_of(i)], ["sleep", 0]])
        tasks_list.append({"mm": i, "tape": name, "cpu": i % ncpu})
    return {"name": "oom_select", "mode": "processes", "mms": n, "oom": True, "tapes": tapes, "tasks": tasks_list}


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("oom_select"))
