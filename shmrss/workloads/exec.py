"""exec: shells that exec images, after the miss chain Kairui Song's per-CPU rss cache RFC (2022)
found most often: ``get_arg_page <- copy_string_kernel <- do_execveat_common``.

Per pair (``--tasks N`` pairs, default one per CPU), two processes share one CPU:

* the shell (mm 2i) copies the new image's arguments and environment (ARG_PAGES
  pages) into the image's mm while it still runs its own mm: page faults into an
  mm the CPU does not cache (``exec``: pcpcache's misses); it then yields, faults
  and unmaps SHELL_PAGES of its own;
* the image (mm 2i + 1) runs after the switch to it: it faults IMAGE_FILE_PAGES of
  file and IMAGE_ANON_PAGES of anon memory (pcpcache's hits), unmaps them (its
  exit), and yields;
* the shell, once it runs again, takes the argument pages it copied back out of the
  image's mm (a remote update). In the kernel they go with the image's mm; here each
  task must remove what it added, so that no tape can take a counter below zero
  (shmrss.workload.check_totals), whatever order the scheduler runs the two in.

Every fault hits the cached mm except the argument copy, so misses per hit are
ARG_PAGES / (SHELL_PAGES + image pages): a choice of this tape (about 1/544), not
a measurement; the RFC's own counts were 567 misses per 1,021,027 hits at boot and
68,327 per 35,613,357 on a kernel build. Every mm's counters return to 0 each round.
Run on its own: ``python -m shmrss.workloads.exec --design pcpcache --duration 2``.
"""

import sys

ARG_PAGES = 2  # argv + envp of a compiler's command line: a page or two
SHELL_PAGES = 64
IMAGE_FILE_PAGES = 256
IMAGE_ANON_PAGES = 768


def build(ncpu: int, tasks: int | None = None, mode: str = "processes") -> dict:
    from shmrss.workload import WorkloadError

    if mode != "processes":
        raise WorkloadError(f"the exec workload runs processes (an exec makes a new mm), got --mode {mode}")
    pairs = ncpu if tasks is None else tasks
    if pairs < 1:
        raise WorkloadError(f"--tasks must be at least 1, got {pairs}")
    shell = [["exec", "anon", ARG_PAGES, 1], ["yield"], ["fault", "anon", SHELL_PAGES], ["unmap", "anon", SHELL_PAGES],
             ["remote", "anon", -ARG_PAGES, 1]]
    image = [["fault", "file", IMAGE_FILE_PAGES], ["fault", "anon", IMAGE_ANON_PAGES],
             ["unmap", "file", IMAGE_FILE_PAGES], ["unmap", "anon", IMAGE_ANON_PAGES], ["yield"]]
    tasks_ = []
    for i in range(pairs):
        tasks_.append({"mm": 2 * i, "tape": "shell", "cpu": i % ncpu})
        tasks_.append({"mm": 2 * i + 1, "tape": "image", "cpu": i % ncpu})
    return {"name": "exec", "mode": "processes", "mms": 2 * pairs, "tapes": {"shell": shell, "image": image},
            "tasks": tasks_}


if __name__ == "__main__":
    from shmrss.workloads import run_standalone

    sys.exit(run_standalone("exec"))
