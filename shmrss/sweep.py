"""``shmrss sweep``: run a matrix of points (designs x workloads x modes x CPUs x possible CPUs x repeats),
each as its own ``shmrss run``, appending one JSON line per point to a results file that a later sweep
resumes from.

Points run one pass per repeat (every combination once, then again), so an
interrupted sweep has whole passes. A finished point (``ok`` or
``invariant_failed``) is never run again by a sweep with the same options;
partial and failed points are recorded as such and redone.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from loguru import logger

from shmrss.errors import EXIT_FAILED, EXIT_OK
from shmrss.options import add_shared_run_options, positive_float
from shmrss.results_file import FINISHED, Appender, InputError, canonical, finished_keys, sweep_records


def add_parser(sub, parse_run) -> None:
    """The ``sweep`` subcommand. ``parse_run(argv)`` is ``shmrss run``'s parser (it raises UsageError on bad
    input): the planner checks every point's argv with it up front, and the CLI hands it in, because no module
    below the CLI may import the CLI."""
    s = sub.add_parser("sweep", help="run a matrix of designs x workloads x CPU counts, resumable, to a results file")
    add_shared_run_options(s, matrix=True)  # the options it shares with `shmrss run`, defined once
    s.add_argument("--out", default="results.jsonl", metavar="PATH",
                   help="results file, appended to and resumed from (default results.jsonl)")
    s.add_argument("--timeout", type=positive_float, metavar="S",
                   help="stop a point that runs this long (default duration + 180 s)")
    s.add_argument("--dry-run", action="store_true", help="list the points (and which are done) and exit")
    s.add_argument("--shard", type=parse_shard, metavar="K/N",
                   help="run only shard K of N (0 <= K < N): every N-th point of the plan, all repeats of a point in "
                        "one shard; N machines with K = 0..N-1 run the whole plan (a Slurm job array, a CI matrix)")
    s.set_defaults(parse_run=parse_run)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 0 <= K < N; anything else is an argparse error (one line, exit 2)."""
    import argparse
    import re

    m = re.fullmatch(r"([0-9]{1,6})/([0-9]{1,6})", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--shard wants K/N (e.g. 0/4), not {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or k >= n:
        raise argparse.ArgumentTypeError(f"--shard {text}: K must be at least 0 and below N (shards 0/{max(n, 1)} to "
                                         f"{max(n, 1) - 1}/{max(n, 1)})")
    return k, n


def shard_of(points: list, shard: tuple[int, int] | None) -> list:
    """The points of shard K of N: every N-th combination starting at K, with all its repeats, in plan order."""
    if shard is None:
        return points
    k, n = shard
    ordinal: dict[str, int] = {}
    for p in points:
        ordinal.setdefault(canonical({f: v for f, v in p.key.items() if f != "repeat"}), len(ordinal))
    return [p for p in points if ordinal[canonical({f: v for f, v in p.key.items() if f != "repeat"})] % n == k]


def plan_digest(points: list) -> str:
    """A short digest of the whole plan (every point's key, before sharding), written in each line so that
    ``report`` can tell when the files of a plan's shards do not hold all its points. The fields a host
    fills in (whether it had to oversubscribe, its cache line) are left out: every host's shard names one plan."""
    import hashlib

    ids = sorted(canonical({f: v for f, v in p.key.items() if f not in _HOST_FIELDS}) for p in points)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


_HOST_FIELDS = ("oversubscribed", "line")


def _check_out(path: str) -> Path:
    p = Path(path)
    parent = p.resolve().parent
    if not parent.is_dir():
        raise InputError(f"--out: directory {parent} does not exist")
    if p.is_symlink():
        raise InputError(f"--out: {path} is a symlink; give the file itself")
    if p.exists() and not p.is_file():
        raise InputError(f"--out: {path} is not a regular file")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"--out: {path} is not writable")
    if not p.exists():
        from shmrss.safe_io import OutputError, check_file_output

        try:
            check_file_output(p, "--out")  # really create a file: os.access says yes to root on /proc
        except OutputError as e:
            raise InputError(str(e)) from None
    return p


def main(args, err) -> int:
    from shmrss.sweep_plan import plan_points
    from shmrss.topology import TopologyError, read_topology

    try:
        topo = read_topology()
    except TopologyError as e:
        raise InputError(str(e)) from None
    out = _check_out(args.out)
    from shmrss.sweep_child import remove_stale_tmpdirs

    for path in remove_stale_tmpdirs():
        logger.info("removed {}, left by a sweep that was killed", path)
    if getattr(args, "shard", None) is not None and not args.cpus:
        raise InputError("--shard needs --cpus: the default CPU counts follow each host's cores, so shards planned "
                         "on hosts with different core counts would miss points; give every shard the same --cpus")
    points, notes = plan_points(args, topo)
    args.plan = {"plan": plan_digest(points), "plan_points": len(points)}
    if getattr(args, "shard", None) is not None:
        whole = len(points)
        points = shard_of(points, args.shard)
        notes.append(f"shard {args.shard[0]}/{args.shard[1]}: {len(points)} of the plan's {whole} points")
    # the lock before the read: what is done cannot change under this sweep
    appender = None if args.dry_run else Appender(out)
    try:
        return _sweep(args, out, points, notes, appender, err)
    finally:
        if appender is not None:
            appender.close()


def _sweep(args, out: Path, points, notes, appender, err) -> int:
    records, file_notes = sweep_records(out) if out.exists() and out.stat().st_size else ([], [])
    done = finished_keys(records)
    todo = [p for p in points if p.id not in done]
    skipped = len(points) - len(todo)
    for n in notes + file_notes:
        logger.info(n)
    if args.dry_run:
        for p in points:
            print(("done  " if p.id in done else "to run") + "  " + p.label + "  shmrss " + " ".join(p.argv))
        logger.info("{} points: {} to run, {} already in {}", len(points), len(todo), skipped, out)
        return EXIT_OK
    if skipped:
        logger.info("skipping {} of {} points already finished in {}", skipped, len(points), out)
    if not todo:
        logger.info("nothing to run: every point is in {} (run `shmrss report {}`)", out, out)
        return EXIT_OK
    timeout = args.timeout or args.duration + 180.0
    return _run(todo, len(points), skipped, appender, timeout, args.verbose, err, out, getattr(args, "plan", None))


def _run(todo, total, skipped, appender, timeout, verbose, err, out, plan: dict | None = None) -> int:
    from shmrss.sweep_child import Forwarder, run_point

    counts = {s: 0 for s in ("ok", "invariant_failed", "partial", "failed")}
    walls: list[float] = []
    code = EXIT_OK
    t_start = time.perf_counter()
    refused: set[tuple[str, ...]] = set()  # argv that shmrss run refused (exit 2): its other repeats would be too
    with Forwarder() as fwd, _Progress(err, total, skipped) as progress:
        for i, point in enumerate(todo):
            if fwd.signum is not None:
                break
            if point.argv in refused:
                logger.error("{}: not run, shmrss run refused these options", point.label)
                counts["failed"] += 1
                progress.advance()
                continue
            progress.start(point, i, len(todo), walls)
            o = run_point(point.argv, fwd, timeout, verbose)
            if o.status == "failed" and o.exit_code == 2:
                refused.add(point.argv)
            interrupted = fwd.signum is not None
            if o.status == "failed" and interrupted:
                logger.warning("{}: interrupted before it measured anything; not recorded", point.label)
                break
            meta = {"key": point.key, "status": o.status, "exit_code": o.exit_code, "wall_s": round(o.wall_s, 3),
                    "argv": list(point.argv), "error": o.error, **(plan or {})}
            try:
                appender.append({"sweep": meta, **(o.result or {})})
            except OSError as e:
                logger.error("cannot append to {}: {}; stopping (what is in the file is intact)", out,
                             e.strerror or e)
                code = EXIT_FAILED
                break
            counts[o.status] += 1
            if o.status in FINISHED:
                walls.append(o.wall_s)
            progress.finish(point, o, walls)
            if o.status == "invariant_failed":
                code = max(code, EXIT_FAILED)
                logger.error("{}: INVARIANT FAILED ({}); kept as a measured point", point.label, o.error)
            elif o.status == "failed" or (o.status == "partial" and not interrupted):
                code = max(code, EXIT_FAILED)
                logger.error("{}: {}, not counted as done: {}", point.label, o.status,
                             o.error or "stopped before its duration")
            if interrupted:
                break
        progress.end("interrupted" if fwd.signum is not None else "sweep done")
    ran = sum(counts.values())
    logger.info("{} points in {:.0f} s: {} ok, {} with a failed invariant, {} partial, {} failed; {} skipped "
                "(finished before); results in {} (tables and figures: shmrss report {})", ran,
                time.perf_counter() - t_start, counts["ok"], counts["invariant_failed"], counts["partial"],
                counts["failed"], skipped, out, out)
    if fwd.signum is not None:
        left = len(todo) - counts["ok"] - counts["invariant_failed"]
        logger.warning("interrupted: {} points left; run the same command again to resume", left)
        return fwd.exit_code
    return code


def _eta(walls: list[float], remaining: int) -> str:
    if not walls:
        return "ETA -"
    s = int(round(statistics.mean(walls) * remaining))
    return f"ETA {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Progress:
    """A rich progress bar on a terminal, one log line per point otherwise."""

    def __init__(self, err, total: int, skipped: int):
        self.err, self.total, self.skipped = err, total, skipped
        self.live = err.is_terminal and sys.stderr.isatty()
        self.bar = None
        self.done = skipped  # points recorded or skipped, whatever their status

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=self.err,
                                transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("sweep", total=self.total, completed=self.skipped, eta="ETA -")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def end(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text, eta="")

    def start(self, point, i: int, n: int, walls: list[float]) -> None:
        eta = _eta(walls, n - i)
        if self.bar is not None:
            self.bar.update(self.task, description=point.label, eta=eta)
        else:
            logger.info("[{}/{}] {} ... ({})", self.done + 1, self.total, point.label, eta)

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def finish(self, point, o, walls: list[float]) -> None:
        self.done += 1
        line = f"{point.label}: {o.status}" + (f", {headline(o.result)}" if o.result else "") + \
            f" ({o.wall_s:.1f} s)"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            logger.info("[{}/{}] {}", self.done, self.total, line)


def headline(r: dict) -> str:
    """One line of what a result measured (for progress lines)."""
    if isinstance(r.get("lifecycle"), dict):
        return f"{r['lifecycle']['mm_per_s']:,.0f} mm/s"
    th = r.get("throughput") or {}
    eps, ns = th.get("events_per_s"), th.get("ns_per_event")
    parts = []
    if eps is not None:
        parts.append(f"{eps / 1e6:,.1f} M ev/s")
    if ns is not None:
        parts.append(f"{ns:.2f} ns/event")
    return ", ".join(parts) or "no throughput"
