"""page_fault1 (after will-it-scale): each task faults in 128 MiB of anonymous memory one
page at a time (+1 anon per 4 KiB page) and unmaps it (one -32768 anon), forever.

``--mode processes`` (default): one mm per task. ``--mode threads``: all
tasks share one mm. Tasks default to one per emulated CPU.

Run on its own: ``python workloads/page_fault1.py --design all --duration 2``
(any ``shmrss run`` option works), or print the data: ``--dump``.
"""

import json
import sys

PAGES = (128 << 20) // 4096  # 32768


def build(ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    if mode not in ("processes", "threads"):
        raise WorkloadError(f"--mode must be processes or threads, got {mode!r}")
    n = ncpu if tasks is None else tasks
    if n < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {n}")
    return {
        "name": "page_fault1",
        "mode": mode,
        "mms": n if mode == "processes" else 1,
        "tapes": {"fault_unmap_128M": [["fault", "anon", PAGES], ["unmap", "anon", PAGES]]},
        "tasks": [{"mm": t if mode == "processes" else 0, "tape": "fault_unmap_128M", "cpu": t % ncpu}
                  for t in range(n)],
    }


if __name__ == "__main__":
    if "--dump" in sys.argv:
        print(json.dumps(build(2), indent=1))
        sys.exit(0)
    from shmrss.cli import main

    sys.exit(main(["run", "--workload", "page_fault1", *sys.argv[1:]]))
