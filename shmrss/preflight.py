"""Checks made before a run or a calibration starts anything: option bounds the argument parser
cannot express, output paths, the segment's size against /dev/shm and memory, the process count.

Every refusal is a one-line ``UsageError`` (exit 2) raised before any process
is forked or any segment created, so that hostile values cost nothing.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

from shmrss import layout as L
from shmrss.errors import UsageError
from shmrss.segment import SHM_DIR, Geometry, compute_layout

MIN_DURATION_S = 0.01
MAX_DURATION_S = 7 * 86400.0
MIN_READ_INTERVAL_MS = 0.001  # below this the reader already reads back to back
MEMORY_SHARE = 2  # a segment may take at most 1/MEMORY_SHARE of the available memory (as segment.check_room)


def is_workload_file(workload: str) -> bool:
    """The CLI's rule: a name ending in .json or holding a path separator is a file."""
    return workload.endswith(".json") or os.sep in workload


def check_run_options(args, fork_exit: bool, variants: list[str]) -> None:
    _check_duration(args.duration)
    reader = not args.no_reader and not fork_exit
    if reader and args.read_interval < MIN_READ_INTERVAL_MS:
        raise UsageError(f"--read-interval {args.read_interval:g} ms is below {MIN_READ_INTERVAL_MS:g} ms (1 us); "
                         f"at {MIN_READ_INTERVAL_MS:g} the reader already reads back to back")
    if reader and args.read_interval > args.duration * 1000:
        raise UsageError(f"--read-interval {args.read_interval:g} ms is longer than --duration "
                         f"{args.duration:g} s: the reader would read once")
    if fork_exit and not variants:
        raise UsageError("--lifecycle names no variant")
    if args.tasks is not None and (fork_exit or is_workload_file(args.workload)):
        what = "fork_exit" if fork_exit else "a workload file (it lists its own tasks)"
        raise UsageError(f"--tasks goes with a built-in tape workload, not with {what}")
    if args.json is not None and args.json != "-":  # "-": stdout
        check_output_file(args.json, "--json")
    if args.plot is not None:
        check_output_dir(args.plot, "--plot")


def check_calibrate_options(args) -> None:
    if args.json is not None:
        check_output_file(args.json, "--json")


def _check_duration(s: float) -> None:
    if s < MIN_DURATION_S:
        raise UsageError(f"--duration {s:g} s is below {MIN_DURATION_S:g} s: too short to measure anything")
    if s > MAX_DURATION_S:
        raise UsageError(f"--duration {s:g} s is more than {MAX_DURATION_S:g} s (7 days)")


def _probe_writable(directory: Path, what: str) -> None:
    """Create and remove a file there: access(2) says yes to root on /proc and read-only mounts."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".shmrss-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"{what}: cannot write into {directory}: {e.strerror}") from None


def check_output_file(path: str, option: str) -> None:
    if not path:
        raise UsageError(f"{option}: an empty path; give a file name")
    p = Path(os.path.abspath(path))  # the directory the file is renamed into, not a symlink's target's
    if p.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name")
    if p.exists() and not p.is_file():
        raise UsageError(f"{option} {path} exists and is not a regular file")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"directory {parent} does not exist")
    _probe_writable(parent, f"{option} {path}")


def check_output_dir(path: str, option: str) -> None:
    if not path:
        raise UsageError(f"{option}: an empty path; give a directory")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path} exists and is not a directory")
    if p.is_dir():
        _probe_writable(p, f"{option} {path}")
        return
    parent = p.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"directory {parent} does not exist")
    _probe_writable(parent, f"{option} {path}")


# ----------------------------------------------------------------------------- the segment's size


def size_text(nbytes: float) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{int(nbytes)} B"


def segment_parts(g: Geometry) -> tuple[int, list[tuple[int, str]]]:
    """(bytes of the whole segment, [(bytes, what makes them)] per region, largest first)."""
    lay = compute_layout(g)
    h = lay.header
    kw = g.shape.pcpu_words_per_mm
    what = {
        "pcpu": f"per-CPU units: {g.possible} possible CPUs x {g.nmm} mms x {kw} words",
        "truth": f"truth: {g.ncpu} CPUs x {g.nmm} mms x {L.NMEMBERS} members",
        "mm": f"mm words: {g.nmm} mms x {int(h[L.H_MM_STRIDE])} words",
        "task": f"tasks: {g.ntask} x {int(h[L.H_TASK_STRIDE])} words",
        "runqueue": f"run queues: {g.ncpu} CPUs x {g.ntask} task slots",
        "tape": f"tapes: {g.tape_steps} steps x {L.STEP_WORDS} words",
        "reader": f"reader ring: 2 x {g.ring} samples",
        "oom": f"OOM ring: 2 x {g.ring} samples",
        "cpustat": f"CPU records: {g.ncpu} x {int(h[L.H_CPUSTAT_STRIDE])} words",
        "global": f"design globals: {g.shape.global_words} words",
        "ctrl": "control lines",
    }
    parts = sorted(((words * 8, what.get(name, name)) for name, (_, words) in lay.regions.items()), reverse=True)
    return lay.total_words * 8, parts


def _free_shm() -> int | None:
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_room(geometries: list[tuple[str, Geometry]]) -> None:
    """Refuse when the largest segment of the run (one exists at a time) cannot fit; the message
    says how big it would be and what makes it so."""
    import psutil

    if not geometries:
        return
    sized = [(segment_parts(g), label) for label, g in geometries]
    (nbytes, parts), label = max(sized, key=lambda s: s[0][0])
    free = _free_shm()
    avail = psutil.virtual_memory().available
    if free is not None and nbytes > free:
        room = f"{SHM_DIR} has {size_text(free)} free"
    elif nbytes > avail // MEMORY_SHARE:
        room = (f"{size_text(avail)} of memory is available and a segment may take at most "
                f"1/{MEMORY_SHARE} of it")
    else:
        return
    biggest = "; ".join(f"{text} = {size_text(b)}" for b, text in parts[:2])
    for_what = f" for {label}" if len(geometries) > 1 else ""
    raise UsageError(f"segment would need {size_text(nbytes)}{for_what} ({biggest}); {room}")


# ----------------------------------------------------------------------------- processes


def _threads_in_use() -> int | None:
    """Tasks (threads) on the host: the denominator of /proc/loadavg's fourth field."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return None


def check_processes(children: int) -> None:
    """Refuse a run that would fork past the free pids or the user's process limit (both count threads)."""
    import psutil

    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = None
    used = _threads_in_use()
    if pid_max is not None and used is not None and children > pid_max - used:
        raise UsageError(f"the run needs {children} processes but only {pid_max - used} pids are free "
                         f"(kernel.pid_max {pid_max}, {used} in use)")
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY or os.geteuid() == 0:  # root is not held to RLIMIT_NPROC
        return
    uid = os.getuid()
    mine = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids = proc.info.get("uids")
        if uids is not None and uids.real == uid:
            mine += proc.info.get("num_threads") or 1
    if mine + children > soft:
        raise UsageError(f"the run needs {children} processes; your {mine} threads and processes plus these "
                         f"exceed your process limit (ulimit -u) of {soft}")


def check_runs(runs: list[tuple[str, object]]) -> None:
    """``runs``: (label, an orchestrator Run not yet executed). Sizes them the way they will lay out
    their segments and count their processes."""
    geometries = []
    children = 0
    for label, run in runs:
        try:
            geometries.append((label, run._make_geometry()))
        except ValueError as e:  # a design refusing its parameters
            raise UsageError(f"{label}: {e}") from None
        p = run.p
        children = max(children, len(p.placement.cpus) + int(p.reader) + int(p.reclaimer))
    check_room(geometries)
    check_processes(children)
