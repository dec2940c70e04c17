"""The options ``run`` and ``sweep`` share, defined once (``add_shared_run_options``), and the argparse
``type=`` parsers of the CLI's options.

Plain ASCII numbers only, and each bad value is an ``argparse.ArgumentTypeError`` that the CLI's
parser turns into a one-line ``UsageError``. What the values mean together is checked by
``shmrss.runspec.RunSpec``.
"""

from __future__ import annotations

import argparse
import re

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _plain(text: str, pattern: re.Pattern, convert, what: str):
    # plain ASCII decimals only: float() and int() also take "1_0", " 1" and non-ASCII digits such as "١"
    if not pattern.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
    return convert(text)


def positive_float(text: str) -> float:
    v = _plain(text, _FLOAT, float, "a number")
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def int_at_least(lo: int, hi: int = 1 << 31):
    """A parser of one integer in [lo, hi]."""

    def parse(text: str) -> int:
        v = _plain(text, _INT, int, "an integer")
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def int_list(lo: int, hi: int):
    """A parser of a comma list of integers in [lo, hi], duplicates dropped, order kept."""
    one = int_at_least(lo, hi)

    def parse(text: str) -> list[int]:
        values = [one(x.strip()) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        return list(dict.fromkeys(values))

    return parse


def orders(text: str) -> tuple[int, ...]:
    """``--tree-orders``: a comma list of positive integers."""
    if not all(_INT.fullmatch(x) for x in text.split(",")):
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}")
    values = tuple(int(x) for x in text.split(","))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"orders must be positive, got {text}")
    return values


def label(text: str) -> str:
    """--label: one line of printable text, at most 100 characters (part of a result's identity)."""
    if len(text) > 100 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be one line of at most 100 printable characters, got {text[:40]!r}")
    return text.strip()


# ----------------------------------------------------------------------------- run and sweep's shared options

# one parser object per option, so that run and sweep share the very same one
_CPU_LIST = int_list(1, 4096)
_CPU_COUNT = int_at_least(1, 4096)
_TASK_LIST = int_list(1, 100_000)
_TASK_COUNT = int_at_least(1, 100_000)
_REPEATS = int_at_least(1, 1000)
_SLICE = int_at_least(1)
_NODES = int_at_least(1, 64)
_PAGES = int_at_least(1, 1 << 20)
_CLONES = int_at_least(0, 64)
_EVERY = int_at_least(0)

WORKLOADS_HELP = "page_fault1/2/3, rss_steal, mixed, oom_select, fork_exit"


def _add_axes(parser: argparse.ArgumentParser, matrix: bool) -> None:
    """The options a sweep takes as a comma list (its matrix axes) and a run as one value."""
    parser.add_argument("--design", default="percpu,atomic",
                        help="comma list of designs, or 'all' (default percpu,atomic)")
    if matrix:
        parser.add_argument("--workload", default="page_fault1",
                            help=f"comma list: {WORKLOADS_HELP}, workload .json files")
        parser.add_argument("--mode", default="processes", metavar="processes[,threads]",
                            help="built-in workloads: comma list of processes, threads (default processes)")
        parser.add_argument("--cpus", type=_CPU_LIST, metavar="N[,N...]",
                            help="emulated CPU counts (default 1, 2, 4, ... up to the usable physical cores)")
        parser.add_argument("--tasks", type=_TASK_LIST, metavar="N[,N...]",
                            help="tasks of built-in workloads (oom_select: mms), a comma list (default one per CPU)")
        parser.add_argument("--repeat", type=_REPEATS, default=3, metavar="N",
                            help="passes over the matrix (default 3)")
    else:
        parser.add_argument("--workload", default="page_fault1", help=f"{WORKLOADS_HELP}, or a workload .json file")
        parser.add_argument("--mode", default="processes", choices=("processes", "threads"),
                            help="built-in workloads: one mm per task (processes) or one shared mm (threads)")
        parser.add_argument("--cpus", type=_CPU_COUNT,
                            help="emulated CPUs (default all usable physical cores)")
        parser.add_argument("--tasks", type=_TASK_COUNT, help="tasks (default one per CPU)")
        parser.add_argument("--repeat", type=_REPEATS, default=1, metavar="N",
                            help="run every design N times, interleaved (A B A B ...), each repeat a result "
                                 "(default 1)")
    parser.add_argument("--possible-cpus", type=_CPU_LIST, metavar="P[,P...]",
                        help="possible CPUs P >= cpus (default the CPU count); a comma list runs each in turn "
                             "(a sweep leaves out combinations with P < cpus)")


def _add_measurement(parser: argparse.ArgumentParser) -> None:
    """How a point is measured: its length, the reader, the layout, the scheduler, the extra processes."""
    parser.add_argument("--duration", type=positive_float, default=5.0,
                        help="seconds per design (a sweep: per point; default 5)")
    parser.add_argument("--read-interval", type=positive_float, default=10.0, metavar="MS",
                        help="reader period in milliseconds (default 10)")
    parser.add_argument("--line", type=int, choices=(64, 128), help="cache line bytes for the layout (default: sysfs)")
    parser.add_argument("--pack", action="store_true",
                        help="interleave CPUs' per-CPU words in shared lines (false sharing)")
    parser.add_argument("--smt", action="store_true", help="also use SMT siblings as CPUs")
    parser.add_argument("--oversubscribe", action="store_true", help="allow more CPUs than cores (timings invalid)")
    parser.add_argument("--slice", type=_SLICE, default=100_000, help="scheduler time slice in events")
    parser.add_argument("--oom", action="store_true",
                        help="the reader also selects OOM victims, 2-pass and all-precise (on for oom_select)")
    parser.add_argument("--no-reader", action="store_true", help="run without the reader process")
    parser.add_argument("--reclaimer", action="store_true",
                        help="add a kswapd-like reclaimer CPU moving pages of random mms to swap and back")
    parser.add_argument("--no-calibrate", action="store_true", help="do not embed a hardware calibration")
    parser.add_argument("--label", type=label, default="", metavar="TEXT",
                        help="a name for this build or setup, kept in params.label (a sweep passes it to every "
                             "point); results of different labels, hosts or kernels are never merged by report "
                             "and compare")


def _add_design_options(parser: argparse.ArgumentParser) -> None:
    """Options of one design or of the fork_exit lifecycle."""
    parser.add_argument("--nodes", type=_NODES, help="pernode: emulate this many NUMA nodes")
    parser.add_argument("--tree-orders", type=orders, metavar="O1,O2,...",
                        help="tree: arity orders (log2 of children) of levels 1..L, summing to ceil(log2 P)")
    parser.add_argument("--lifecycle", metavar="VARIANTS",
                        help="fork_exit: upstream, merged, fused-check, ctor-cache, lazy, inline, first-use, coarse (comma list) "
                             "or all (default all)")
    parser.add_argument("--pages", type=_PAGES, default=256,
                        help="fork_exit: pages each short-lived process faults (default 256)")
    parser.add_argument("--clones", type=_CLONES, default=0,
                        help="fork_exit: threads each process clones (default 0)")
    parser.add_argument("--leak-every", type=_EVERY, default=0, metavar="N",
                        help="fork_exit: every N-th process leaves a page behind (shows the teardown check; "
                             "default 0)")


def add_shared_run_options(parser: argparse.ArgumentParser, *, matrix: bool) -> None:
    """The options ``shmrss run`` and ``shmrss sweep`` have in common, defined once for both. ``matrix``
    (the sweep): the axes (--workload, --mode, --cpus, --tasks) take comma lists and --repeat counts passes."""
    _add_axes(parser, matrix)
    _add_measurement(parser)
    _add_design_options(parser)


SHARED_RUN_OPTIONS = ("--design", "--workload", "--mode", "--cpus", "--tasks", "--repeat", "--possible-cpus",
                      "--duration", "--read-interval", "--line", "--pack", "--smt", "--oversubscribe", "--slice",
                      "--oom", "--no-reader", "--reclaimer", "--no-calibrate", "--label", "--nodes",
                      "--tree-orders", "--lifecycle", "--pages", "--clones", "--leak-every")
