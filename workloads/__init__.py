"""Named workloads, after will-it-scale and the linux-mm threads. Each module builds plain
workload data (see shmrss.workload) and runs on its own: ``python workloads/NAME.py --design all``."""

import json
import sys
from importlib import import_module

WORKLOADS = ("page_fault1", "page_fault2", "page_fault3", "rss_steal", "mixed", "oom_select", "exec")
# fork_exit is not a tape workload: shmrss runs its own create/use/destroy loop (shmrss.lifecycle)


def build(name: str, ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}, fork_exit "
                            f"or a .json file")
    return import_module(f"workloads.{name}").build(ncpu, tasks=tasks, mode=mode)


def run_standalone(name: str) -> int:
    """``python workloads/NAME.py [shmrss run options]``; ``--dump`` prints the data for 2 CPUs."""
    if "--dump" in sys.argv:
        print(json.dumps(build(name, 2), indent=1))
        return 0
    from shmrss.cli import main

    return main(["run", "--workload", name, *sys.argv[1:]])
