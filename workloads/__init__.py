"""Named workloads, after will-it-scale. Each module builds plain workload data (see shmrss.workload)
and runs on its own: ``python workloads/page_fault1.py --design all``."""

from importlib import import_module

WORKLOADS = ("page_fault1",)


def build(name: str, ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)} or a .json file")
    return import_module(f"workloads.{name}").build(ncpu, tasks=tasks, mode=mode)
