"""page_fault3 (after will-it-scale): each task write-faults 128 MiB of a shared file mapping
one page at a time and unmaps it: +1 file page per fault, one -32768 file at munmap.

``--mode processes`` (default) or ``threads``; tasks default to one per CPU.
Run on its own: ``python -m shmrss.workloads.page_fault3 --design all --duration 2``.
"""

import sys


def build(ncpu: int, tasks: int | None = None, mode: str = "processes", fault_pages=(1,)) -> dict:
    from shmrss.workloads.page_fault1 import per_task

    return per_task("page_fault3", "file", ncpu, tasks, mode, fault_pages)


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("page_fault3"))
