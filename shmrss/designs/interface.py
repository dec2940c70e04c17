"""The design interface in one place: every function the compiled code calls, and the defaults.

A design module provides NAME, ID, SUMMARY, BOUND (optionally TRANSIENT_CAUSE: why its
approximate read may pass BOUND while updates are in flight, which a result states beside an
error above the bound; optionally UNMONITORED: why ``shmrss monitor`` cannot read its counters), ``shape(ncpu, possible,
nmm, line_words, nodes, options) -> DesignShape``, optionally ``setup(words,
ncpu, nodes)`` to fill its global words and ``fits_header(h) -> bool`` to
refuse a hostile segment header its reads would index outside of, and these
compiled (numba) functions over the segment words ``seg``.

Required (``REQUIRED``)::

    add(seg, cpu, task, mm, k, d, fault)   apply delta d to member k of mm; task -1 for no task
                                           (reclaimer, teardown); fault 1 on the page-fault path,
                                           _common.UNMAP for the task's batched unmap of its own mm,
                                           0 for remote updates; _common.JOURNAL when the CPU journals
    switch_mm(seg, cpu, old_mm, new_mm)    the CPU changes the mm it serves (-1: none)
    read_approx(seg, mm, k) -> v           the cheap read
    approx_bound(seg, mm, k) -> (u, o)     truth - u <= approx <= truth + o
    read_precise(seg, mm, k) -> v          exact at quiescence
    mm_init(seg, mm)
    mm_destroy(seg, mm) -> bad             members not summing to 0 ("Bad rss-counter state")
    recover(seg, cpu, op, step, mm, k, d)  complete a killed CPU's journaled step -> inconsistencies
    resolve(seg, cpu, kind, mm, k, d, residue)
                                           settle a doubtful shared update at quiescence -> RES_*

Optional, with the default each names (``DEFAULTS``)::

    thread_created(seg, cpu, mm)           nothing (a design without a thread count)
    task_exit(seg, cpu, task, mm)          nothing
    cpu_offline(seg, cpu)                  nothing (a design with no per-CPU words to fold)
    release_locks(seg, who)                nothing (a design that takes no lock)
    consistent(seg) -> bad                 0 (no redundant state to check)
    threads(seg, mm) -> n                  -1 (no thread count)
    slack_mark(seg, mm, k) -> m            0: taken just before each read, passed to transient_slack
                                           (e.g. pcpcache's flushes so far, so the slack can count
                                           those that landed during the read)
    transient_slack(seg, mm, k, m)         (0, 0): the error the design documents while an update is
      -> (a, p)                            in flight, by which an approximate read may pass its bound
                                           (a) and a precise read the truth (p)
    peek_precise(seg, mm, k) -> (v, ok)    (read_precise, 1): the monitor's precise value from loads
                                           only; a design whose read_precise stores (takes a lock)
                                           or may wait forever must provide its own
    peek_approx(seg, mm, k) -> v           read_approx: the monitor's approximate value, loads only (a C
                                           design whose read is a call: the monitor has no library)
    peek_bound(seg, mm, k) -> (u, o)       approx_bound, likewise
    compare_value(seg, mm, k, v) -> c      0 (HPCC's percpu_counter_tree_precise_compare_value: tree)
    publish_hits(seg, cpu, faults)         nothing: a design that tallies only its misses (pcpcache) writes
                                           its hits (fault events - misses) when the engine publishes
    read_mm_counter(seg, mm, k) -> v       read_approx: ``get_mm_counter`` of the code the design follows,
                                           the read ``update_hiwater_rss`` makes on unmap; a design whose
                                           get_mm_counter is a walk (tree: HPCC v15) provides its own

``bind(design, names)`` is what a template's ``# DESIGN-IMPORT`` line calls
(``shmrss.specialise``): the design's functions, or the defaults. A design is
checked when it is loaded (``designs.get``): a missing required function is
an error naming it.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from numba import njit

from shmrss.designs._common import no_locks, no_slack_mark, no_thread_count, no_transient

REQUIRED = ("add", "switch_mm", "read_approx", "approx_bound", "read_precise", "mm_init", "mm_destroy",
            "recover", "resolve")
PYTHON_REQUIRED = ("NAME", "ID", "SUMMARY", "BOUND", "shape")


class DesignInterfaceError(TypeError):
    """A design module lacks part of the interface."""


@njit(inline="always")
def no_thread_event(seg, cpu, mm):
    pass


@njit(inline="always")
def no_exit_event(seg, cpu, task, mm):
    pass


@njit(inline="always")
def nothing_to_fold(seg, cpu):
    pass


@njit(inline="always")
def nothing_redundant(seg):
    return 0


@njit(inline="always")
def no_compare(seg, mm, k, v):
    return 0


@njit(inline="always")
def no_hits(seg, cpu, faults):
    pass


def _peek_by_read(read_precise):
    """The default ``peek_precise``: the design's own precise read, which is loads only."""
    @njit(inline="always")
    def peek_precise(seg, mm, k):
        return read_precise(seg, mm, k), 1

    return peek_precise


def _mm_counter_by_approx(read_approx):
    """The default ``read_mm_counter``: get_mm_counter is the design's approximate read."""
    @njit(inline="always")
    def read_mm_counter(seg, mm, k):
        return read_approx(seg, mm, k)

    return read_mm_counter


DEFAULTS = {"thread_created": no_thread_event, "task_exit": no_exit_event, "cpu_offline": nothing_to_fold,
            "release_locks": no_locks, "consistent": nothing_redundant, "threads": no_thread_count,
            "transient_slack": no_transient, "slack_mark": no_slack_mark, "compare_value": no_compare,
            "publish_hits": no_hits}
ALIASES = {"peek_approx": "read_approx", "peek_bound": "approx_bound"}  # defaults: the design's own function
OPTIONAL = (*DEFAULTS, *ALIASES, "peek_precise", "read_mm_counter")
_peeks: dict[str, object] = {}
_mm_counters: dict[str, object] = {}


def check(module: ModuleType) -> ModuleType:
    """``module`` if it provides the whole required interface, else an error naming what it lacks."""
    missing = [n for n in (*PYTHON_REQUIRED, *REQUIRED) if not hasattr(module, n)]
    if missing:
        raise DesignInterfaceError(f"design module {module.__name__} lacks {', '.join(missing)} "
                                   "(see shmrss/designs/interface.py)")
    return module


def function(module: ModuleType, name: str):
    """The design's compiled function ``name``, or the interface's default for it."""
    if hasattr(module, name):
        return getattr(module, name)
    if name == "peek_precise":
        if module.__name__ not in _peeks:
            _peeks[module.__name__] = _peek_by_read(module.read_precise)
        return _peeks[module.__name__]
    if name == "read_mm_counter":
        if module.__name__ not in _mm_counters:
            _mm_counters[module.__name__] = _mm_counter_by_approx(module.read_approx)
        return _mm_counters[module.__name__]
    if name in DEFAULTS:
        return DEFAULTS[name]
    if name in ALIASES:
        return getattr(module, ALIASES[name])
    raise DesignInterfaceError(f"{name} is not part of the design interface")


def bind(design: str, names: tuple[str, ...]) -> tuple:
    """The functions ``names`` of design ``design`` (its own or the defaults), for a template to call."""
    module = check(import_module(f"shmrss.designs.{design.replace('-', '_')}"))
    return tuple(function(module, n) for n in names)


def fits_header(module: ModuleType, header: list[int]) -> bool:
    """Whether the design's own reads stay inside their regions under this header (default: yes)."""
    fits = getattr(module, "fits_header", None)
    return True if fits is None else bool(fits(header))
