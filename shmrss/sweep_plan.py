"""The sweep matrix: validate the options up front, expand designs x workloads x modes x CPUs x possible CPUs
x repeats into points, each with its key (its identity in the results file) and its ``shmrss run`` argv.

Every check ``shmrss run`` makes is made here for every combination before the
first point runs, so a bad matrix fails in a second with one line, not an hour in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from shmrss.results_file import InputError, canonical


@dataclass(frozen=True)
class Point:
    key: dict
    argv: tuple[str, ...]  # ``shmrss run`` arguments, without --json
    label: str

    @property
    def id(self) -> str:
        return canonical(self.key)


def default_cpu_counts(pool: int) -> list[int]:
    """1, 2, 4, ... below the pool size, then the pool size itself."""
    counts, n = [], 1
    while n < pool:
        counts.append(n)
        n *= 2
    return counts + [pool]


def _split(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if not items:
        raise InputError(f"--{what}: empty list")
    return items


def _fmt_num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class _Workload:
    name: str  # built-in name, or the file's path
    key: str  # name, or "file:<abs path>#<sha256 prefix>" so that an edited file is a new point
    spec_for: object  # (ncpu, tasks, mode) -> spec dict
    is_file: bool
    fork_exit: bool


def _workloads(text: str) -> list[_Workload]:
    from shmrss import workloads
    from shmrss.wlfile import load_file
    from shmrss.workload import WorkloadError

    out = []
    for name in _split(text, "workload"):
        if name == "fork_exit":
            out.append(_Workload(name, name, None, False, True))
        elif name.endswith(".json") or os.sep in name:
            path = Path(name).resolve()
            try:
                spec = load_file(str(path))
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            except (WorkloadError, OSError) as e:
                raise InputError(str(e)) from None
            out.append(_Workload(str(path), f"file:{path}#{digest}", lambda n, t, m, s=spec: s, True, False))
        else:
            if name not in workloads.WORKLOADS:
                raise InputError(f"unknown workload {name!r}; choose from {', '.join(workloads.WORKLOADS)}, "
                                 f"fork_exit or a .json file")
            out.append(_Workload(name, name, lambda n, t, m, w=name: workloads.build(w, n, tasks=t, mode=m),
                                 False, False))
    return out


MAX_POINTS = 100_000  # a sweep of more is a typo (3.6 M points took 2 minutes and 3.2 GB to plan)


def _check_size(args, axes: list[list]) -> None:
    """Refuse a matrix whose points (an upper bound: before dropping P < cpus) are too many to plan."""
    upper = args.repeat
    for axis in axes:
        upper *= max(len(axis), 1)
    if upper > MAX_POINTS:
        raise InputError(f"the matrix has up to {upper:,} points (designs x workloads x modes x tasks x CPUs x "
                         f"possible CPUs x repeats), more than {MAX_POINTS:,}: split the sweep")


@dataclass(frozen=True)
class _Matrix:
    """The sweep's axes, checked: each a list of values, and the placement of each CPU count."""
    designs: list[str]
    workloads: list[_Workload]
    variants: list[str]  # fork_exit's lifecycle variants ([] without fork_exit)
    modes: list[str]
    cpu_counts: list[int]
    placements: dict  # CPU count -> topology.Placement
    possibles: list[int | None]
    tasks: list[int | None]
    line: int


def plan_points(args, topo) -> tuple[list[Point], list[str]]:
    """Every point of the matrix, in run order (each repeat is a full pass), and notes for the user."""
    matrix = _matrix(args, topo)
    cells, below = _cells(args, matrix)
    notes: list[str] = []
    if below:
        notes.append(f"left out {below} combination{'s' if below > 1 else ''} whose possible CPUs are below "
                     f"the CPU count")
    if not cells:
        raise InputError("no point to run: every --possible-cpus value is below every --cpus value")
    _check_as_run(cells, args.parse_run, topo)
    points = []
    for rep in range(args.repeat):
        for key, argv, label in cells:
            points.append(Point({**key, "repeat": rep}, tuple(argv),
                                f"{label} #{rep + 1}/{args.repeat}"))
    return points, notes


def _matrix(args, topo) -> _Matrix:
    """The axes of the matrix, each value checked, and its size refused when it is a typo."""
    from shmrss import designs, lifecycle
    from shmrss.designs import UnknownDesign
    from shmrss.topology import TopologyError, plan

    try:
        names = designs.parse_list(args.design)
    except UnknownDesign as e:
        raise InputError(str(e)) from None
    wls = _workloads(args.workload)
    has_fork = any(w.fork_exit for w in wls)
    if args.lifecycle and not has_fork:
        raise InputError("--lifecycle goes with --workload fork_exit")
    try:
        variants = lifecycle.parse_variants(args.lifecycle or "all") if has_fork else []
    except lifecycle.UnknownVariant as e:
        raise InputError(str(e)) from None
    if args.tasks and all(w.fork_exit or w.is_file for w in wls):
        raise InputError("--tasks goes with a built-in tape workload (fork_exit has no tasks, a workload file "
                         "lists its own)")
    modes = _split(args.mode, "mode")
    for m in modes:
        if m not in ("processes", "threads"):
            raise InputError(f"--mode: {m!r} is not processes or threads")
    pool = len(topo.usable) if args.smt else len(topo.physical_cpus())
    cpu_counts = args.cpus or default_cpu_counts(pool)
    _check_size(args, [wls, modes, args.tasks or [None], cpu_counts, args.possible_cpus or [None], names + variants])
    placements = {}
    for c in cpu_counts:
        try:
            placements[c] = plan(topo, c, smt=args.smt, oversubscribe=args.oversubscribe)
        except TopologyError as e:
            raise InputError(str(e)) from None
    return _Matrix(names, wls, variants, modes, cpu_counts, placements, args.possible_cpus or [None],
                   args.tasks or [None], args.line or (topo.cache_line if topo.cache_line in (64, 128) else 64))


def _cells(args, m: _Matrix) -> tuple[list[tuple[dict, list[str], str]], int]:
    """One cell per combination other than the repeat, (key without repeat, argv, label), and how many
    combinations were left out because P < cpus."""
    cells: list[tuple[dict, list[str], str]] = []
    seen: set[str] = set()
    below = 0
    for wl in m.workloads:
        for mode in (["processes"] if wl.fork_exit else m.modes):
            for tasks in ([None] if wl.fork_exit or wl.is_file else m.tasks):
                for c in m.cpu_counts:
                    eff_mode, reclaimer, oom = _tape_settings(args, wl, c, tasks, mode)
                    for pc in m.possibles:
                        if pc is not None and pc < c:
                            below += 1
                            continue
                        units = [(_variant_design(v), v) for v in m.variants] if wl.fork_exit \
                            else [(d, None) for d in m.designs]
                        for design, variant in units:
                            key, argv = _cell(args, wl, eff_mode, mode, tasks, c, pc, design, variant, m.line,
                                              reclaimer, oom, m.placements[c].oversubscribed)
                            if design == "tree" and args.tree_orders:
                                _check_tree_orders(args.tree_orders, max(pc or 0, c + int(reclaimer)))
                            ident = canonical(key)
                            if ident in seen:  # e.g. --mode processes,threads on a workload with one mode
                                continue
                            seen.add(ident)
                            cells.append((key, argv, _label(wl, eff_mode, variant or design, c, pc, tasks)))
    return cells, below


def _variant_design(variant: str) -> str:
    from shmrss.lifecycle import VARIANT_DESIGN

    return VARIANT_DESIGN[variant]


def _tape_settings(args, wl: _Workload, c: int, tasks, mode: str) -> tuple[str | None, bool, bool]:
    """(the mode the workload runs in, reclaimer, OOM selection) of one workload at c CPUs; its spec is
    compiled here, so a workload that does not fit c CPUs fails the plan."""
    from shmrss.workload import WorkloadError, compile_workload, run_bound_s

    if wl.fork_exit:
        return "processes", False, False
    try:
        spec = wl.spec_for(c, tasks, mode)
        compile_workload(spec, c, run_bound_s(args.duration))
    except WorkloadError as e:
        raise InputError(f"{wl.name} on {c} CPUs: {e}") from None
    return (spec.get("mode") or mode, args.reclaimer or bool(spec.get("reclaimer")),
            (args.oom or bool(spec.get("oom"))) and not args.no_reader)


def _check_tree_orders(tree_orders, possible: int) -> None:
    from shmrss.designs.tree import orders_for

    try:
        orders_for(possible, tree_orders)
    except ValueError as e:
        raise InputError(str(e)) from None


def _label(wl: _Workload, eff_mode, unit: str, c: int, pc, tasks) -> str:
    return (f"{unit} {Path(wl.name).stem} "
            f"{'' if wl.fork_exit or eff_mode in (None, 'mixed') else eff_mode + ' '}"
            f"{c} CPU{'s' if c > 1 else ''}"
            + (f" P={pc}" if pc is not None else "")
            + (f" tasks={tasks}" if tasks is not None else ""))


def _check_as_run(cells, parse_run, topo) -> None:
    """Each combination's argv through ``shmrss run``'s own parser (``parse_run``, handed in by the CLI) and
    into a ``RunSpec``, which makes every check ``shmrss run`` makes before it measures."""
    from shmrss.errors import UsageError
    from shmrss.runspec import RunSpec

    for _, argv, label in cells:
        try:
            RunSpec.from_args(parse_run(argv), topo)
        except UsageError as e:
            raise InputError(f"{label}: {e}") from None


def _cell(args, wl, eff_mode, mode, tasks, c, pc, design, variant, line, reclaimer, oom, oversubscribed):
    """The key (every option that changes the result) and the ``shmrss run`` argv of one combination."""
    key = {
        "workload": wl.key, "mode": eff_mode, "design": design, "lifecycle": variant, "cpus": c,
        "possible_cpus": pc if pc is not None else c, "tasks": tasks, "duration_s": args.duration,
        "read_interval_ms": args.read_interval, "line": line, "pack": args.pack, "smt": args.smt,
        "oversubscribed": oversubscribed, "slice": args.slice, "reader": not args.no_reader,
        "reclaimer": reclaimer, "oom": oom,
        "nodes": args.nodes if design == "pernode" else None,
        "tree_orders": list(args.tree_orders) if design == "tree" and args.tree_orders else None,
        "pages": args.pages if wl.fork_exit else None, "clones": args.clones if wl.fork_exit else None,
        "leak_every": args.leak_every if wl.fork_exit and args.leak_every else None,
        "label": getattr(args, "label", "") or None,
    }
    # options that do not apply are left out, so that an option added later keeps old keys valid
    key = {k: v for k, v in key.items() if v is not None}
    argv = ["run", "--workload", wl.name, "--cpus", str(c), "--duration", _fmt_num(args.duration),
            "--read-interval", _fmt_num(args.read_interval), "--line", str(line), "--slice", str(args.slice)]
    if wl.fork_exit:
        argv += ["--lifecycle", variant, "--pages", str(args.pages), "--clones", str(args.clones)]
        if args.leak_every:
            argv += ["--leak-every", str(args.leak_every)]
    else:
        argv += ["--design", design, "--mode", mode]
    if pc is not None:
        argv += ["--possible-cpus", str(pc)]
    if tasks is not None:
        argv += ["--tasks", str(tasks)]
    for flag, on in (("--pack", args.pack), ("--smt", args.smt), ("--oversubscribe", oversubscribed),
                     ("--no-reader", args.no_reader), ("--reclaimer", args.reclaimer and not wl.fork_exit),
                     ("--oom", args.oom and not wl.fork_exit), ("--no-calibrate", args.no_calibrate)):
        if on:
            argv.append(flag)
    if key.get("nodes") is not None:
        argv += ["--nodes", str(args.nodes)]
    if key.get("tree_orders"):
        argv += ["--tree-orders", ",".join(map(str, args.tree_orders))]
    if key.get("label"):
        argv += ["--label", key["label"]]
    return key, argv
