"""Named workloads, after will-it-scale and the linux-mm threads. Each module builds plain
workload data (see shmrss.workload) and runs on its own: ``python -m shmrss.workloads.NAME --design all``
(from a checkout, ``python workloads/NAME.py``: the repository's workloads/ folder links here)."""

import json
import os
import sys
from importlib import import_module

WORKLOADS = ("page_fault1", "page_fault2", "page_fault3", "rss_steal", "mixed", "oom_select", "exec")
# fork_exit is not a tape workload: shmrss runs its own create/use/destroy loop (shmrss.lifecycle)


SIZED = ("page_fault1", "page_fault2", "page_fault3")  # the workloads --fault-pages sizes


def build(name: str, ncpu: int, tasks: int | None = None, mode: str = "processes", fault_pages=(1,)) -> dict:
    from shmrss.workload import WorkloadError

    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}, fork_exit "
                            f"or a .json file")
    if tuple(fault_pages) != (1,):
        if name not in SIZED:
            raise WorkloadError(f"--fault-pages goes with {', '.join(SIZED)} (a workload file gives each "
                                f"fault step its own size), not {name}")
        return import_module(f"shmrss.workloads.{name}").build(ncpu, tasks=tasks, mode=mode, fault_pages=fault_pages)
    return import_module(f"shmrss.workloads.{name}").build(ncpu, tasks=tasks, mode=mode)


def run_standalone(name: str) -> int:
    """``python -m shmrss.workloads.NAME [shmrss run options]``; ``--dump`` prints the data for 2 CPUs.

    Otherwise this process becomes ``python -m shmrss run --workload NAME ...`` (exec, same pid, so the
    exit status and the signals are the CLI's own): nothing below the CLI imports it."""
    if "--dump" in sys.argv:
        try:
            print(json.dumps(build(name, 2), indent=1), flush=True)
        except BrokenPipeError:
            # the reader of our pipe left (| head): stop quietly, and let no later flush complain
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    argv = [sys.executable, "-m", "shmrss", "run", "--workload", name, *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
