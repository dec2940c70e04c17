"""page_fault1 (after will-it-scale): each task faults in 128 MiB of anonymous memory one
page at a time (+1 anon per 4 KiB page) and unmaps it (one -32768 anon), forever.

``--mode processes`` (default): one mm per task. ``--mode threads``: all
tasks share one mm. Tasks default to one per emulated CPU.

Run on its own: ``python -m shmrss.workloads.page_fault1 --design all --duration 2``
(any ``shmrss run`` option works), or print the data: ``--dump``.
"""

import sys

PAGES = (128 << 20) // 4096  # 32768


def fault_steps(member: str, sizes=(1,)) -> tuple[list, int]:
    """The fault steps of one pass over the region, and the pages they fault (``--fault-pages``).

    One size s: PAGES // s faults of s pages (at least one). A mix (1,16,512): the sizes
    interleaved fault by fault, 1, 16, 512, 1, 16, 512, ... (one-fault steps), as many whole
    rounds as fit in the region. Size 1 is the plain step of earlier versions.
    """
    if len(sizes) == 1:
        s = sizes[0]
        n = max(PAGES // s, 1)
        return [["fault", member, n] + ([s] if s != 1 else [])], n * s
    rounds = max(PAGES // sum(sizes), 1)
    return [["fault", member, 1, s] for _ in range(rounds) for s in sizes], rounds * sum(sizes)


def per_task(name: str, member: str, ncpu: int, tasks: int | None, mode: str, fault_pages=(1,)) -> dict:
    """The will-it-scale page_fault shape: every task faults PAGES pages of ``member`` and unmaps them."""
    from shmrss.workload import WorkloadError

    if mode not in ("processes", "threads"):
        raise WorkloadError(f"--mode must be processes or threads, got {mode!r}")
    n = ncpu if tasks is None else tasks
    if n < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {n}")
    sizes = tuple(fault_pages)
    tape = f"fault_unmap_128M_{member}" + ("" if sizes == (1,) else "_" + "-".join(map(str, sizes)) + "p")
    faults, pages = fault_steps(member, sizes)
    return {
        "name": name,
        "mode": mode,
        "mms": n if mode == "processes" else 1,
        "tapes": {tape: faults + [["unmap", member, pages]]},
        "tasks": [{"mm": t if mode == "processes" else 0, "tape": tape, "cpu": t % ncpu} for t in range(n)],
    }


def build(ncpu: int, tasks: int | None = None, mode: str = "processes", fault_pages=(1,)) -> dict:
    return per_task("page_fault1", "anon", ncpu, tasks, mode, fault_pages)


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("page_fault1"))
