"""mixed: several mms of 1 to 64 threads with migrations, clones, exits, remote updates and a reclaimer.

mms and their threads (``--tasks N`` caps the largest, default 64):

* mm 0: 1 thread that clones a thread now and then (drives ``single``'s one-way
  switch at run time, racing the remote updaters of mm 0), then exits (the task
  carries on as the clone);
* mm 1: 1 thread of short faults, sleeps, clones and exits;
* mm 2, 3, 4, 5: 2, 4, 16 and 64 threads that fault, update the next mm
  remotely (``remote``: ``single``'s remote words), copy exec arguments into the
  next mm (``exec``: page faults on an mm the CPU does not run, ``pcpcache``'s
  misses), yield, and migrate to the next CPU every round.

Every tape is balanced (each page faulted is unmapped, each remote update is
undone), and ``"reclaimer": true`` asks for the kswapd-like reclaimer process.
Run on its own: ``python -m shmrss.workloads.mixed --design all --duration 2``.
"""

import sys

THREADS = (1, 1, 2, 4, 16, 64)


def build(ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    cap = 64 if tasks is None else tasks
    if cap < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {cap}")
    tapes = {
        "cloner": [["fault", "anon", 300], ["clone"], ["fault", "file", 40], ["exit"],
                   ["unmap", "file", 40], ["unmap", "anon", 300]],
        "short": [["fault", "anon", 64], ["clone"], ["sleep", 2], ["unmap", "anon", 64], ["exit"]],
        "worker": [["fault", "anon", 512], ["remote", "anon", 3, 1], ["exec", "anon", 2, 1], ["yield"],
                   ["fault", "shmem", 16], ["unmap", "anon", 512], ["remote", "anon", -3, 1],
                   ["remote", "anon", -2, 1], ["unmap", "shmem", 16], ["migrate", 1]],
    }
    task_list = [{"mm": 0, "tape": "cloner"}, {"mm": 1, "tape": "short"}]
    for mm, n in enumerate(THREADS[2:], start=2):
        task_list += [{"mm": mm, "tape": "worker"} for _ in range(min(n, cap))]
    for i, t in enumerate(task_list):
        t["cpu"] = i % ncpu
    return {"name": "mixed", "mode": "mixed", "mms": len(THREADS), "reclaimer": True,
            "tapes": tapes, "tasks": task_list}


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("mixed"))
