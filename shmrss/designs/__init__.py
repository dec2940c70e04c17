"""The counter designs, one module each, all with the same compiled interface.

A design module provides NAME, ID, SUMMARY, BOUND, ``shape(ncpu, possible,
nmm, line_words, nodes, options) -> DesignShape``, optionally ``setup(words,
ncpu, nodes)`` to fill its global words, and these compiled (numba) functions
over the segment words ``seg`` (a raw int64 pointer in the hot loops)::

    add(seg, cpu, task, mm, k, d, fault)   apply delta d to member k of mm; task -1 for
                                           no task (reclaimer, teardown); fault 1 on the
                                           page-fault path, _common.UNMAP for the task's batched
                                           unmap of its own mm, 0 for remote updates
    switch_mm(seg, cpu, old_mm, new_mm)    the CPU changes the mm it serves
    read_approx(seg, mm, k) -> v           the cheap read
    approx_bound(seg, mm, k) -> (u, o)     truth - u <= approx <= truth + o
    read_precise(seg, mm, k) -> v          exact at quiescence
    thread_created(seg, cpu, mm)
    task_exit(seg, cpu, task, mm)
    cpu_offline(seg, cpu)                  fold a dead CPU's words
    mm_init(seg, mm)
    mm_destroy(seg, mm) -> bad             members not summing to 0 ("Bad rss-counter state")
    transient_slack(seg, mm, k) -> (a, p)  the error the design itself documents while an update is
                                           in flight: how far an approximate read may pass its stated
                                           bound (a) and a precise read the truth (p); the reader
                                           counts such reads apart from violations (``no_transient``:
                                           (0, 0) for designs whose bounds hold at every instant)

Adding a design is adding a module here and its name to DESIGNS (a name's ``-`` is ``_`` in its
module's name), with an ID no other design has (the segment header names the design by it).
"""

from importlib import import_module

DESIGNS = ("atomic", "split", "percpu", "pcpcache", "single", "single-atomic", "pernode", "tree")


class UnknownDesign(ValueError):
    pass


def get(name: str):
    if name not in DESIGNS:
        raise UnknownDesign(f"unknown design {name!r}; choose from {', '.join(DESIGNS)} or all")
    return import_module(f"shmrss.designs.{module_name(name)}")


def module_name(name: str) -> str:
    """The design's module in shmrss.designs: ``single-atomic`` -> ``single_atomic``."""
    return name.replace("-", "_")


def parse_list(text: str) -> list[str]:
    """'atomic,percpu' or 'all' (also within a list) -> names, validated, order kept, duplicates dropped."""
    names = [d for n in text.split(",") if n.strip() for d in (DESIGNS if n.strip() == "all" else (n.strip(),))]
    if not names:
        raise UnknownDesign("no design named")
    out: list[str] = []
    for n in names:
        get(n)
        if n not in out:
            out.append(n)
    return out
