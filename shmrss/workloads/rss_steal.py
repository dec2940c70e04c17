"""rss_steal: 10,000 threads of one mm each fault in 32 pages and then sleep for good.

The demo from the linux-mm thread against the per-task cache (``split``): each
thread holds its 32 pages in its task cache, below the 64-fault fold threshold,
and never folds them, so the mm's counter (what ``ps`` shows) stays near 0
while 320,000 pages (1.2 GiB) are really mapped. Every other design reads right.

``--tasks N`` runs N threads instead (smaller hosts). The threads are spread
round-robin over the CPUs.
Run on its own: ``python -m shmrss.workloads.rss_steal --design all --duration 2``.
"""

import sys

THREADS = 10_000
PAGES = 32


def build(ncpu: int, tasks: int | None = None, mode: str = "threads") -> dict:
    from shmrss.workload import WorkloadError

    n = THREADS if tasks is None else tasks
    if n < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {n}")
    return {
        "name": "rss_steal",
        "mode": "threads",
        "mms": 1,
        "tapes": {"touch_and_sleep": [["fault", "anon", PAGES], ["sleep", 0]]},
        "tasks": [{"mm": 0, "tape": "touch_and_sleep", "cpu": t % ncpu} for t in range(n)],
    }


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("rss_steal"))
