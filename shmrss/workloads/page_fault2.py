"""page_fault2 (after will-it-scale): each task write-faults 128 MiB of a private file mapping
one page at a time and unmaps it. A write fault on a MAP_PRIVATE file page maps an
anonymous copy, so the counter traffic is +1 anon per page and one -32768 anon at munmap:
the same updates as page_fault1 (the page-cache lookup the kernel also does is outside
the counter model).

``--mode processes`` (default) or ``threads``; tasks default to one per CPU.
Run on its own: ``python -m shmrss.workloads.page_fault2 --design all --duration 2``.
"""

import sys

PAGES = (128 << 20) // 4096


def build(ncpu: int, tasks: int | None = None, mode: str = "processes", fault_pages=(1,)) -> dict:
    from shmrss.workloads.page_fault1 import per_task

    return per_task("page_fault2", "anon", ncpu, tasks, mode, fault_pages)


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("page_fault2"))
