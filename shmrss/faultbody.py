"""Real fault work (``--fault-body page``): each fault event of an emulated CPU also touches fresh pages
of a private anonymous mapping that CPU's process owns, and each unmap gives pages back, so that the
host kernel really faults and the counter's cost can be put in proportion to a page fault.

The parent sizes one region per tape CPU from the workload (the largest number of pages its tasks
hold at once, bounded by ``MAX_REGION_BYTES``) and refuses, before anything forks, a run whose regions
would not fit in memory. The CPU process maps its region (``map_region``), marks it
``MADV_NOHUGEPAGE`` so that every 4 KiB page is its own fault, and publishes its address in its
per-CPU record. The compiled loop then calls ``fault_in`` (one byte written per page) and ``release``
(``madvise(MADV_DONTNEED)`` on the most recently touched pages, a stack) — libc's ``madvise`` called
from compiled code as an external symbol, so the loop stays cacheable. When a tape holds more pages
than the region, the whole region is released and touching starts again at its first page.

The counter update and the page work are timed apart (``rdtsc`` around each), into the per-CPU
words ``S_FB_COUNTER_TSC`` and ``S_FB_BODY_TSC``. Page work is announced before it starts (``S_FB_BEGUN``)
and recorded after the cursor is stored (``S_FB_DONE``), so that ``host_reference`` can bracket a read of
/proc by what the region held. Before the run, ``settle`` leaves the CPU's host per-CPU RSS delta at 0.
"""

from __future__ import annotations

import mmap
import resource

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from shmrss import layout as L
from shmrss.atomics import compiler_barrier, load, local_add, store

KINDS = ("none", "page")
PAGE = 4096  # the page the counters count (x86-64 base page)
MADV_DONTNEED = 4
MADV_NOHUGEPAGE = 15
MAX_REGION_BYTES = 1 << 30  # per CPU: a tape holding more pages than this reuses its region
MIN_REGION_PAGES = 16
PMD_SPAN = 2 << 20  # the span of one page table: a zap adds its pages to the counters once per table
SETTLE_PAGES = 64
MEMORY_SHARE = 2  # every region together may take at most 1/MEMORY_SHARE of the available memory
# a counter update timed above this many TSC ticks (tens of microseconds) was preempted in the middle (the
# hosts this runs on are shared): it is counted apart, not added to the counter's time
PREEMPTED_TICKS = 1 << 17


class FaultBodyError(ValueError):
    """``--fault-body`` cannot be used as asked; message is one line."""


# ----------------------------------------------------------------------------- compiled part

@intrinsic
def _touch(typingctx, addr):
    """Write one byte at ``addr`` (a volatile store: the fault happens even if nothing reads it)."""

    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        builder.store(ir.Constant(ir.IntType(8), 1), ptr).volatile = True
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@intrinsic
def _madvise(typingctx, addr, length, advice):
    """libc ``madvise(addr, length, advice)``; returns its result (0, or -1 with errno set)."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(i32, [ir.IntType(8).as_pointer(), ir.IntType(64), i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "madvise")
        ret = builder.call(fn, [builder.inttoptr(args[0], ir.IntType(8).as_pointer()), args[1],
                                builder.trunc(args[2], i32)])
        return builder.sext(ret, ir.IntType(64))

    return types.int64(types.int64, types.int64, types.int64), codegen


@njit(inline="always")
def _release_range(seg, st, first, pages):
    """Give pages [first, first + pages) of the region back to the host kernel."""
    if pages <= 0:
        return
    if _madvise(load(seg, st + L.S_FB_ADDR) + first * PAGE, pages * PAGE, MADV_DONTNEED) != 0:
        local_add(seg, st + L.S_FB_ERRORS, 1)
    local_add(seg, st + L.S_FB_RELEASED, pages)


@njit(inline="always")
def _begin(seg, st, pages):
    """Announce page work on ``pages`` pages before any is done (``host_reference`` brackets with it)."""
    store(seg, st + L.S_FB_BEGUN, seg[st + L.S_FB_BEGUN] + pages)
    compiler_barrier()


@njit(inline="always")
def _done(seg, st, pages):
    """Page work on ``pages`` pages is over and the cursor says so."""
    compiler_barrier()
    store(seg, st + L.S_FB_DONE, seg[st + L.S_FB_DONE] + pages)


@njit(inline="always")
def fault_in(seg, st, pages):
    """Touch ``pages`` fresh pages of this CPU's region: each one a real page fault of the host."""
    size = seg[st + L.S_FB_PAGES]
    cur = seg[st + L.S_FB_CURSOR]
    todo = pages if pages < size else size
    moved = todo + (cur if cur + pages > size else 0)
    _begin(seg, st, moved)
    if cur + pages > size:  # more held than the region: start it again, empty
        _release_range(seg, st, 0, cur)
        cur = 0
    addr = seg[st + L.S_FB_ADDR] + cur * PAGE
    for i in range(todo):
        _touch(addr + i * PAGE)
    store(seg, st + L.S_FB_CURSOR, cur + todo)
    local_add(seg, st + L.S_FB_TOUCHED, todo)
    _done(seg, st, moved)


@njit(inline="always")
def count_ticks(seg, st, counter_ticks, body_ticks):
    """Add one event's timed intervals: the counter update's (unless preempted) and the page work's."""
    if counter_ticks > PREEMPTED_TICKS:
        local_add(seg, st + L.S_FB_PREEMPTED, 1)
    else:
        local_add(seg, st + L.S_FB_COUNTER_TSC, counter_ticks)
    local_add(seg, st + L.S_FB_BODY_TSC, body_ticks)


@njit(inline="always")
def release(seg, st, pages):
    """An unmap of ``pages``: release the most recently touched pages (as many as the region holds)."""
    cur = seg[st + L.S_FB_CURSOR]
    n = pages if pages < cur else cur
    _begin(seg, st, n)
    _release_range(seg, st, cur - n, n)
    store(seg, st + L.S_FB_CURSOR, cur - n)
    local_add(seg, st + L.S_FB_RELEASES, 1)
    _done(seg, st, n)


# ----------------------------------------------------------------------------- sizing (the parent)

def _task_peak(tape: np.ndarray, first: int, steps: int) -> int:
    """The most pages one pass of a task's tape holds at once (faults add, unmaps release)."""
    held = peak = 0
    for op, _, arg, size in tape[first: first + steps]:
        if op == L.OP_FAULT:
            held += int(arg) * max(int(size), 1)  # a fault step of n faults of size pages (0: one page)
            peak = max(peak, held)
        elif op == L.OP_UNMAP:
            held = max(0, held - int(arg))
    return peak


def region_pages(wl) -> list[int]:
    """Pages of the region of each tape CPU: the peaks of its tasks added up, bounded."""
    out = []
    for queue in wl.runqueues:
        need = sum(_task_peak(wl.tape, int(wl.tasks[t][1]), int(wl.tasks[t][2])) for t in queue)
        out.append(min(max(need, MIN_REGION_PAGES), MAX_REGION_BYTES // PAGE))
    return out


def check(kind: str, wl, *, fork_exit: bool, journaled: bool, available: int) -> list[int] | None:
    """The region sizes of a ``--fault-body`` run (None for ``none``); FaultBodyError when refused."""
    if kind not in KINDS:
        raise FaultBodyError(f"--fault-body must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "none":
        return None
    if fork_exit:
        raise FaultBodyError("--fault-body page goes with the tape workloads, not fork_exit")
    if journaled:
        raise FaultBodyError("--fault-body page cannot be combined with --kill-at/--offline-at "
                             "(journaled updates are not timed)")
    sizes = region_pages(wl)
    total = sum(sizes) * PAGE
    if total > available // MEMORY_SHARE:
        raise FaultBodyError(f"--fault-body page needs {total >> 20} MiB of real memory ({len(sizes)} CPUs, "
                             f"up to {max(sizes) * PAGE >> 20} MiB each) but {available >> 20} MiB is "
                             f"available and the regions may take at most 1/{MEMORY_SHARE} of it")
    return sizes


# ----------------------------------------------------------------------------- the CPU process

def map_region(w: np.ndarray, st: int) -> mmap.mmap | None:
    """In the CPU process: map the region the parent sized (none if 0 pages) and publish its address.

    The caller keeps the returned object alive for as long as the compiled loop runs.
    """
    pages = int(w[st + L.S_FB_PAGES])
    if pages == 0:
        return None
    region = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB faults, as the counters count them
    w[st + L.S_FB_ADDR] = np.frombuffer(region, dtype=np.uint8).ctypes.data
    w[st + L.S_FB_CURSOR] = 0
    settle(region, int(w[st + L.S_FB_ADDR]))
    return region


def settle(region: mmap.mmap, addr: int) -> bool:
    """Leave this CPU's host per-CPU RSS delta at 0 before the run: fault SETTLE_PAGES pages of one page table
    and release them with one ``madvise``, whose single ``add_mm_counter`` of -SETTLE_PAGES (at least twice
    the batch of up to 32 CPUs) folds the delta into the shared count (percpu_counter_add_batch). The host's
    approximate read then starts, as an emulated mm does, with no delta on the CPU that runs. False when the
    region holds no whole page-table span (2 MiB aligned) for it."""
    first = -addr % PMD_SPAN
    if first + SETTLE_PAGES * PAGE > len(region) or not hasattr(region, "madvise"):
        return False
    for i in range(SETTLE_PAGES):
        region[first + i * PAGE] = 1
    region.madvise(MADV_DONTNEED, first, SETTLE_PAGES * PAGE)
    return True


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----------------------------------------------------------------------------- results

def per_cpu(w: np.ndarray, b: int, events: int, tsc_per_ns: float, timer_ticks: int) -> dict | None:
    """One CPU's fault-body figures, or None when it did no page work. Each timed interval holds one
    ``rdtsc`` pair, whose smallest cost (``timer_ticks``) is subtracted."""
    if int(w[b + L.S_FB_PAGES]) == 0:
        return None
    touched, releases = int(w[b + L.S_FB_TOUCHED]), int(w[b + L.S_FB_RELEASES])
    preempted = int(w[b + L.S_FB_PREEMPTED])
    timed = events - preempted  # counter updates timed (the preempted ones are left out)
    counter_ns = max(int(w[b + L.S_FB_COUNTER_TSC]) - timed * timer_ticks, 0) / tsc_per_ns
    body_ns = max(int(w[b + L.S_FB_BODY_TSC]) - events * timer_ticks, 0) / tsc_per_ns
    return {"region_pages": int(w[b + L.S_FB_PAGES]), "pages_touched": touched,
            "pages_released": int(w[b + L.S_FB_RELEASED]), "releases": releases,
            "madvise_errors": int(w[b + L.S_FB_ERRORS]), "minor_faults": int(w[b + L.S_FB_MINFLT]),
            "counter_updates_preempted": preempted,
            "counter_ns_per_event": counter_ns / timed if timed > 0 else None,
            "body_ns_per_event": body_ns / events if events else None}


def summary(per_cpu_rows: list[dict], ns_per_event: float | None) -> dict | None:
    """The run's fault-body figures: medians over CPUs, and the counter's share of the whole event."""
    rows = [c["fault_body"] for c in per_cpu_rows if c.get("fault_body")]
    rows = [r for r in rows if r["counter_ns_per_event"] is not None]
    if not rows:
        return None
    counter = float(np.median([r["counter_ns_per_event"] for r in rows]))
    body = float(np.median([r["body_ns_per_event"] for r in rows]))
    touched = sum(r["pages_touched"] for r in rows)
    return {"kind": "page", "counter_ns_per_event": counter, "body_ns_per_event": body,
            "event_ns": ns_per_event,
            "counter_share": counter / ns_per_event if ns_per_event else None,
            "pages_touched": touched, "pages_released": sum(r["pages_released"] for r in rows),
            "minor_faults": sum(r["minor_faults"] for r in rows),
            "minor_faults_per_page": sum(r["minor_faults"] for r in rows) / touched if touched else None,
            "counter_updates_preempted": sum(r["counter_updates_preempted"] for r in rows),
            "madvise_errors": sum(r["madvise_errors"] for r in rows)}


def table(results: list[dict]):
    """The fault-body table (None when no result did page work)."""
    from rich.table import Table

    rows = [r for r in results if (r.get("throughput") or {}).get("fault_body")]
    if not rows:
        return None
    t = Table(title="real fault work (--fault-body page): the counter's share of each event", title_justify="left")
    for col in ("design", "workload", "ns/event\n(whole)", "counter\nns/event", "fault body\nns/event",
                "counter\nshare %", "minor faults\n/ page"):
        t.add_column(col, justify="left" if col in ("design", "workload") else "right")
    for r in rows:
        fb = r["throughput"]["fault_body"]
        mode = r["params"].get("mode")
        share = fb["counter_share"]
        per_page = fb["minor_faults_per_page"]
        t.add_row(r["design"], r["workload"] + (f" ({mode})" if mode else ""),
                  f"{fb['event_ns']:.1f}" if fb["event_ns"] else "-", f"{fb['counter_ns_per_event']:.2f}",
                  f"{fb['body_ns_per_event']:.1f}", "-" if share is None else f"{100 * share:.2f}",
                  "-" if per_page is None else f"{per_page:.2f}")
    return t
