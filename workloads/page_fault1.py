"""page_fault1 (after will-it-scale): each task faults in 128 MiB of anonymous memory one
page at a time (+1 anon per 4 KiB page) and unmaps it (one -32768 anon), forever.

``--mode processes`` (default): one mm per task. ``--mode threads``: all
tasks share one mm. Tasks default to one per emulated CPU.

Run on its own: ``python workloads/page_fault1.py --design all --duration 2``
(any ``shmrss run`` option works), or print the data: ``--dump``.
"""

import sys

PAGES = (128 << 20) // 4096  # 32768


def per_task(name: str, member: str, ncpu: int, tasks: int | None, mode: str) -> dict:
    """The will-it-scale page_fault shape: every task faults PAGES pages of ``member`` and unmaps them."""
    from shmrss.workload import WorkloadError

    if mode not in ("processes", "threads"):
        raise WorkloadError(f"--mode must be processes or threads, got {mode!r}")
    n = ncpu if tasks is None else tasks
    if n < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {n}")
    tape = f"fault_unmap_128M_{member}"
    return {
        "name": name,
        "mode": mode,
        "mms": n if mode == "processes" else 1,
        "tapes": {tape: [["fault", member, PAGES], ["unmap", member, PAGES]]},
        "tasks": [{"mm": t if mode == "processes" else 0, "tape": tape, "cpu": t % ncpu} for t in range(n)],
    }


def build(ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    return per_task("page_fault1", "anon", ncpu, tasks, mode)


if __name__ == "__main__":
    from workloads import run_standalone

    sys.exit(run_standalone("page_fault1"))
