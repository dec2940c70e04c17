"""``shmrss monitor [NAME]`` and ``shmrss run --live``: a live view of a run, read from its segment.

Without a name: a table of the shmrss segments in /dev/shm. With a name:
attach read-only (refusing what is not this user's shmrss segment of this
layout version, with one line and exit 2), then draw a frame every
``--interval`` seconds until the run ends (exit 0), ``--count`` frames were
drawn (exit 0) or Ctrl-C (exit 130). A terminal gets a rich live view; a pipe
or a dumb terminal gets plain text, one block per refresh.

The monitor never writes to the segment: it maps it without write
permission and its compiled reads are loads only (``monitor_reads``).
"""

from __future__ import annotations

import os
import re
import sys
import time

from rich.console import Console
from rich.live import Live

from shmrss import designs, layout as L, monitor_reads as MR
from shmrss.atomics import calibrate_tsc
from shmrss.console import printable, stdout_console
from shmrss.monitor_host import HostSampler
from shmrss.monitor_sample import RUN_STATE, SegmentSampler, ended
from shmrss.procs import pid_alive
from shmrss.monitor_view import Block, Frame, build, render_plain, render_rich
from shmrss.segment import SHM_DIR, Segment, SegmentError, list_segments

MIN_INTERVAL_S = 0.1  # faster refreshes would cost the run's cores more than they show


class MonitorUsage(Exception):
    """A name or option the monitor refuses; the CLI prints it as one line and exits 2."""


def _usage(msg: str) -> MonitorUsage:
    return MonitorUsage(msg)


class Screen:
    """Where frames go: a rich Live region on a terminal, plain text blocks anywhere else."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal and not console.is_dumb_terminal
        self._live: Live | None = None

    def __enter__(self) -> "Screen":
        if self.live:
            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, frame: Frame) -> None:
        if self._live is not None:
            self._live.update(render_rich(frame), refresh=True)
        else:
            self.console.file.write(render_plain(frame) + "\n")
            self.console.file.flush()

    def say(self, line: str) -> None:
        if self.live:
            self.console.print(line, markup=False, highlight=False)
        else:
            self.console.file.write(line + "\n")
            self.console.file.flush()


def _refusal(name: str, e: SegmentError) -> MonitorUsage:
    """One line: the reason, and the name when the reason does not say it (and it is safe to print)."""
    name = name.lstrip("/")
    if name in str(e) or not re.fullmatch(r"[\w.-]{1,250}", name):
        return _usage(f"cannot monitor: {e}")
    return _usage(f"cannot monitor {name}: {e}")


def _attach(name: str) -> tuple[Segment, SegmentSampler]:
    try:
        seg = Segment.attach(name, readonly=True, own_only=True)
    except SegmentError as e:
        raise _refusal(name, e) from None
    try:
        return seg, SegmentSampler(seg.name, seg.words)
    except SegmentError as e:
        seg.close()
        raise _refusal(name, e) from None


def _processes(sampler: SegmentSampler, cur) -> tuple[list[int], dict[int, list[int]]]:
    """The emulated CPUs' pids, and host CPU -> the emulated CPUs pinned to it (once they have started)."""
    pids = [int(p) for p in cur.cpu[:, L.S_PID]]
    pinned: dict[int, list[int]] = {}
    for c, (h, pid) in enumerate(zip(cur.cpu[:, L.S_HOSTCPU], pids)):
        if h >= 0 and pid > 0:
            pinned.setdefault(int(h), []).append(c)
    return pids, pinned


def watch(name: str, interval: float, count: int | None, console: Console | None = None) -> int:
    if not MIN_INTERVAL_S <= interval <= 3600:
        raise _usage(f"--interval must be between {MIN_INTERVAL_S} and 3600 s, got {interval:g}")
    seg, sampler = _attach(name)
    path = os.path.join(SHM_DIR, seg.name)
    why = None
    code = 0
    try:
        MR.warm(sampler.design)  # compile (or load) the reads before the first sample, not between its reads
        tsc_per_ns = calibrate_tsc()
        host = HostSampler(sampler.owner_pid)
        screen = Screen(console or stdout_console())
        with screen:
            cur = sampler.take()
            prev = sampler.start_of(cur)
            shown = 0
            next_t = time.monotonic()
            while True:
                procs, hs = host.take(*_processes(sampler, cur))
                screen.show(build(sampler, prev, cur, tsc_per_ns, procs, hs))
                shown += 1
                why = ended(sampler, path, cur.state)
                if why or (count and shown >= count):
                    break
                next_t += interval
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.monotonic()  # fell behind (a suspended terminal): no burst of frames
                prev, cur = cur, sampler.take()
        if why:
            screen.say(f"shmrss monitor: {why}")
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # the reader of our pipe left (| head): stop quietly, and let no later flush complain
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        sampler.w = None
        seg.close()
    return code


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _describe(name: str) -> list[str]:
    """name, owner pid, alive, design, state, CPUs, mms, age, note."""
    try:
        seg = Segment.attach(name, readonly=True, own_only=True)
    except SegmentError as e:
        try:
            age = _age(time.time() - os.stat(os.path.join(SHM_DIR, name)).st_mtime)
        except OSError:
            age = "-"
        return [name, "-", "-", "-", "-", "-", "-", age, str(e)]
    try:
        s = SegmentSampler(seg.name, seg.words)
        alive = pid_alive(s.owner_pid)
        state = RUN_STATE.get(s.state(), str(s.state()))
        cpus = f"{s.nwork}" + ("+R" if s.reclaimer else "")
        age = _age(max(0.0, time.time() - s.created_ns / 1e9))
        note = "" if alive else "owner gone: `shmrss cleanup` removes it"
        return [name, str(s.owner_pid), "yes" if alive else "no", s.design, state, cpus, f"{s.nmm:,}", age, note]
    except SegmentError as e:
        return [name, "-", "-", "-", "-", "-", "-", "-", str(e)]
    finally:
        s = None
        seg.close()


def list_runs(console: Console | None = None) -> int:
    console = console or stdout_console()
    names = list_segments()
    if not names:
        console.file.write(f"no shmrss segments in {SHM_DIR}\n")
        return 0
    block = Block(f"shmrss segments in {SHM_DIR}",
                  ["name", "owner pid", "alive", "design", "state", "CPUs", "mms", "age", "note"],
                  [[printable(cell) for cell in _describe(n)] for n in names], left=1)
    frame = Frame([], [block])
    if console.is_terminal and not console.is_dumb_terminal:
        console.print(render_rich(frame))
    else:
        console.file.write(render_plain(frame))
    return 0


def command(args) -> int:
    if args.name is None:
        return list_runs()
    return watch(args.name, args.interval, args.count)


class RunView:
    """``shmrss run --live``: the monitor's view of the parent's own run, drawn on ``console``.

    Shaped like the rich Progress that ``shmrss run`` shows otherwise:
    ``add_task`` and ``update`` are accepted (the label is kept, the rest
    ignored), and ``sample(run, elapsed)`` is the run's once-a-second callback.
    It holds no view of a segment between callbacks, so the run can unmap it.
    """

    def __init__(self, console: Console):
        self.screen = Screen(console)
        self.tsc_per_ns = calibrate_tsc()
        self.label = ""
        self._name: str | None = None
        self._prev = None
        self._host: HostSampler | None = None

    def __enter__(self) -> "RunView":
        self.screen.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.screen.__exit__(*exc)

    def add_task(self, description: str, **fields) -> int:
        self.label = " ".join(description.split())
        design = self.label.split()[0] if self.label else ""
        if design in designs.DESIGNS or design in designs.KERNEL_DESIGNS:
            MR.warm(design)  # compile the reads now, before this design's run forks its CPUs
        return 0

    def update(self, task: int, **fields) -> None:
        pass

    def sample(self, run, elapsed: float) -> None:
        seg = getattr(run, "seg", None)
        if seg is None or seg.words is None:
            return
        view = seg.words.view()
        view.flags.writeable = False
        sampler = SegmentSampler(seg.name, view)
        cur = sampler.take()
        if seg.name != self._name:  # the next design's run
            self._name, self._prev, self._host = seg.name, sampler.start_of(cur), HostSampler(os.getpid())
        procs, hs = self._host.take(*_processes(sampler, cur))
        frame = build(sampler, self._prev, cur, self.tsc_per_ns, procs, hs)
        frame.head.insert(0, f"shmrss run --live: {self.label}  {elapsed:.1f} s")
        self.screen.show(frame)
        self._prev = cur
