"""``RunSpec``: every option of ``shmrss run`` checked once, in one place, and what the run is built from.

``RunSpec.from_args(args)`` takes the parsed options of ``shmrss run`` (``shmrss sweep`` parses each of its
points' argv with the same parser and builds a RunSpec from it) and either returns a frozen spec or raises
``UsageError`` with one line: ranges and combinations of options, the topology placement, the workload
(built in or read from a file, and compiled), the fault schedule, ``--fault-body``, the output paths. The
checks run in a fixed order, so the first bad option is the one named. Nothing is measured, forked or
created here; the segment's size is checked later, by ``preflight.check_runs`` on the runs a spec makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shmrss.errors import UsageError

if TYPE_CHECKING:
    from shmrss.orchestrator import RunParams
    from shmrss.topology import Placement, Topology
    from shmrss.workload import CompiledWorkload


def usage_errors() -> tuple[type[Exception], ...]:
    """The lower layers' input errors that mean bad input (exit 2)."""
    from shmrss.designs import UnknownDesign
    from shmrss.lifecycle import UnknownVariant
    from shmrss.segment import SegmentError
    from shmrss.topology import TopologyError
    from shmrss.workload import WorkloadError

    return UnknownDesign, SegmentError, TopologyError, WorkloadError, UnknownVariant


@dataclass(frozen=True)
class RunSpec:
    """One ``shmrss run``, checked: what runs (designs or lifecycle variants, at each possible-CPU count),
    where (topology, placement), on what (the compiled workload) and how (duration, reader, faults...)."""

    designs: tuple[str, ...]
    variants: tuple[str, ...]  # fork_exit's lifecycle variants
    fork_exit: bool
    topo: Topology
    placement: Placement
    possibles: tuple[int | None, ...]  # --possible-cpus, each in turn; (None,): the CPU count
    workload_spec: dict  # the workload as data (built in or read from a file)
    workload: CompiledWorkload
    fault_pages: tuple[int, ...]
    reclaimer: bool
    oom: bool
    faults: tuple  # faults.Fault: --offline-at and --kill-at
    fault_body_pages: list | None
    line: int
    duration: float
    read_interval_ms: float
    pack: bool
    slice: int
    reader: bool
    smt: bool
    tasks: int | None
    nodes: int | None
    tree_orders: tuple[int, ...] | None
    online_cpus: int | None
    check_every: float | None
    offline_at: tuple[str, ...]
    kill_at: tuple[str, ...]
    fault_body: str
    pages: int
    clones: int
    leak_every: int
    repeat: int
    perf: bool
    calibrate: bool
    label: str
    json: str | None
    plot: str | None
    wide: bool
    live: bool
    notes: tuple[str, ...] = field(default=())  # the workload's idle notes, for the user
    coarse_groups: tuple[int, ...] = (8,)  # fork_exit, --lifecycle coarse: one run per --coarse-group
    fork_globals: bool = False
    switches: int = 0
    remote_every: int = 0
    host_reference: bool = False  # --host-reference: the host kernel's /proc reads beside the design's

    @classmethod
    def from_args(cls, args, topo=None) -> RunSpec:
        """Check ``shmrss run``'s parsed options (``topo``: the host's, read here when None); UsageError."""
        try:
            return _checked(cls, args, topo)
        except usage_errors() as e:
            raise UsageError(str(e)) from None

    @property
    def ncpu(self) -> int:
        """Emulated CPUs that run tapes."""
        return len(self.placement.cpus)

    def options(self) -> dict:
        """The user's options, as the result's params record them."""
        return {"mode": self.workload_spec.get("mode"), "tasks_option": self.tasks, "smt": self.smt,
                "reclaimer": self.reclaimer, "nodes_option": self.nodes,
                "tree_orders": list(self.tree_orders) if self.tree_orders else None, "perf": self.perf,
                "offline_at": list(self.offline_at), "kill_at": list(self.kill_at), "check_every": self.check_every,
                "online_cpus_option": self.online_cpus, "fault_body": self.fault_body, "label": self.label,
                **({"fork_globals": self.fork_globals, "switches": self.switches, "remote_every": self.remote_every}
                   if self.fork_exit else {}),
                "host_reference": self.host_reference}

    def params_for(self, design: str, possible: int | None) -> RunParams:
        """The orchestrator's RunParams of one design at one possible-CPU count."""
        from shmrss.orchestrator import RunParams

        return RunParams(design=design, workload=self.workload, placement=self.placement, topo=self.topo,
                         duration=self.duration, read_interval=self.read_interval_ms / 1000.0, line=self.line,
                         pack=self.pack, slice=self.slice, possible=possible, reader=self.reader,
                         reclaimer=self.reclaimer, nodes=self.nodes, online=self.online_cpus,
                         fault_pages=self.fault_pages, oom=self.oom,
                         design_options={"tree_orders": self.tree_orders}, options=self.options(),
                         faults=list(self.faults), check_every=self.check_every,
                         fault_body_pages=self.fault_body_pages)

    def units(self) -> list[tuple[str, str, str | None, int | None]]:
        """(label, design, lifecycle variant or None, possible CPUs) of each run, one pass, in run order."""
        from shmrss.lifecycle import VARIANT_DESIGN

        out = []
        for pc in self.possibles:
            suffix = f" P={pc}" if len(self.possibles) > 1 else ""
            if self.fork_exit:  # coarse once per group, as "coarse/N" (lifecycle.split_variant)
                runs = [f"{v}/{g}" if v == "coarse" else v for v in self.variants
                        for g in (self.coarse_groups if v == "coarse" else (0,))]
                out += [(f"{v}{suffix}", VARIANT_DESIGN[v.partition("/")[0]], v, pc) for v in runs]
            else:
                out += [(f"{d}{suffix}", d, None, pc) for d in self.designs]
        return out


def _checked(cls, args, topo) -> RunSpec:
    from shmrss import designs, lifecycle, preflight

    fork_exit = args.workload == "fork_exit"
    names = designs.parse_list(args.design)
    variants = lifecycle.parse_variants(args.lifecycle or ("all" if fork_exit else "upstream"))
    if args.lifecycle and not fork_exit:
        raise UsageError("--lifecycle goes with --workload fork_exit")
    preflight.check_run_options(args, fork_exit, variants)
    topo, ncpu, placement = _placement(args, topo)
    possibles = tuple(args.possible_cpus or [None])
    for pc in possibles:
        if pc is not None and pc < ncpu:
            raise UsageError(f"--possible-cpus {pc} is below --cpus {ncpu}")
    fault_pages = tuple(args.fault_pages or (1,))
    spec = _workload_spec(args, fork_exit, ncpu, fault_pages)
    wl, notes = _compiled(spec, ncpu, fork_exit, args.duration)
    reclaimer = (args.reclaimer or bool(spec.get("reclaimer"))) and not fork_exit
    running = ncpu + int(reclaimer)
    _check_axes(args, fork_exit, possibles, running)
    if args.tree_orders and ("tree" in names or fork_exit):
        _check_tree_orders(args.tree_orders, possibles, running)
    faults = _faults(args, fork_exit, len(placement.cpus), reclaimer)
    fb_pages = _fault_body_pages(args.fault_body, wl, fork_exit, bool(faults))
    host_reference = _host_reference(getattr(args, "host_reference", False), args.fault_body)
    _check_output_parents(args.json, args.plot)
    return cls(
        designs=tuple(names), variants=tuple(variants), fork_exit=fork_exit, topo=topo, placement=placement,
        possibles=possibles, workload_spec=spec, workload=wl, fault_pages=fault_pages, reclaimer=reclaimer,
        oom=args.oom or bool(spec.get("oom")), faults=tuple(faults), fault_body_pages=fb_pages,
        line=args.line or (topo.cache_line if topo.cache_line in (64, 128) else 64), duration=args.duration,
        read_interval_ms=args.read_interval, pack=args.pack, slice=args.slice, reader=not args.no_reader,
        smt=args.smt, tasks=args.tasks, nodes=args.nodes, tree_orders=args.tree_orders,
        online_cpus=args.online_cpus, check_every=args.check_every, offline_at=tuple(args.offline_at),
        kill_at=tuple(args.kill_at), fault_body=args.fault_body, pages=args.pages, clones=args.clones,
        leak_every=args.leak_every, repeat=args.repeat, perf=args.perf, calibrate=not args.no_calibrate,
        label=args.label, json=args.json, plot=args.plot, wide=args.wide, live=args.live, notes=tuple(notes),
        host_reference=host_reference, **_remedy_options(args, fork_exit, variants))


def _remedy_options(args, fork_exit: bool, variants) -> dict:
    """fork_exit's issue 22 options (``shmrss run`` only: a sweep's points run without them)."""
    groups = getattr(args, "coarse_group", None)
    named = {"--fork-globals": getattr(args, "fork_globals", False), "--switches": getattr(args, "switches", 0),
             "--remote-every": getattr(args, "remote_every", 0), "--coarse-group": groups}
    for flag, value in named.items():
        if value and not fork_exit:
            raise UsageError(f"{flag} goes with --workload fork_exit")
    if groups and "coarse" not in variants:
        raise UsageError("--coarse-group goes with --lifecycle coarse")
    return {"coarse_groups": tuple(groups or (8,)), "fork_globals": bool(named["--fork-globals"]),
            "switches": named["--switches"] or 0, "remote_every": named["--remote-every"] or 0}


def _placement(args, topo):
    """The host's topology and the host CPUs the emulated CPUs (and the reader) are pinned to."""
    from shmrss.topology import plan, read_topology

    topo = topo if topo is not None else read_topology()
    ncpu = args.cpus or (len(args.host_cpus) if args.host_cpus else len(topo.physical_cpus()))
    return topo, ncpu, plan(topo, ncpu, smt=args.smt, oversubscribe=args.oversubscribe, host_cpus=args.host_cpus)


def _workload_spec(args, fork_exit: bool, ncpu: int, fault_pages: tuple[int, ...]) -> dict:
    from shmrss import workloads
    from shmrss.preflight import is_workload_file
    from shmrss.wlfile import load_file

    if fork_exit:
        spec = workloads.build("page_fault1", ncpu)  # placeholder tapes: fork_exit runs its own loop
        spec["name"], spec["mode"] = "fork_exit", "processes"
        return spec
    if is_workload_file(args.workload):
        return load_file(args.workload)
    return workloads.build(args.workload, ncpu, tasks=args.tasks, mode=args.mode, fault_pages=fault_pages)


def _compiled(spec: dict, ncpu: int, fork_exit: bool, duration_s: float):
    """The compiled workload and its notes (tasks that never run, mms nobody touches); its counters are checked
    for overflow in a run of the requested duration (run_bound_s), not the longest allowed one."""
    from shmrss.wlfile import idle_notes
    from shmrss.workload import compile_workload, run_bound_s

    wl = compile_workload(spec, ncpu, run_bound_s(duration_s))
    return wl, ([] if fork_exit else idle_notes(wl))


def _check_axes(args, fork_exit: bool, possibles, running: int) -> None:
    """--fault-pages goes with the page-fault workloads; --online-cpus lies between the emulated CPUs
    that run (a CPU that runs is online) and every P."""
    from shmrss import workloads

    if args.fault_pages and (fork_exit or args.workload not in workloads.SIZED):
        raise UsageError(f"--fault-pages goes with {', '.join(workloads.SIZED)}, not {args.workload}")
    online = args.online_cpus
    if online is None:
        return
    if online < running:
        raise UsageError(f"--online-cpus {online} is below the {running} emulated CPUs that run "
                         f"(the CPUs and the reclaimer's): a CPU that runs is online")
    for pc in possibles:
        if online > max(pc or 0, running):
            raise UsageError(f"--online-cpus {online} is above --possible-cpus {max(pc or 0, running)}")


def _check_tree_orders(tree_orders, possibles, running: int) -> None:
    from shmrss.designs.tree import orders_for

    try:
        for pc in possibles:
            orders_for(max(pc or 0, running), tree_orders)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _faults(args, fork_exit: bool, ncpu: int, reclaimer: bool) -> list:
    """--offline-at and --kill-at as faults.Fault, checked against the run; --check-every's range."""
    from shmrss import faults as F

    try:
        fault_list = [F.parse(x, "offline") for x in args.offline_at] + [F.parse(x, "kill") for x in args.kill_at]
        if fault_list or args.check_every:
            if fork_exit:
                raise F.FaultError("--offline-at, --kill-at and --check-every go with the tape workloads, "
                                   "not fork_exit")
            if args.check_every and args.check_every >= args.duration:
                raise F.FaultError(f"--check-every {args.check_every:g} must be shorter than --duration "
                                   f"{args.duration:g}")
        F.validate(fault_list, ncpu, args.duration, reclaimer, not args.no_reader)
    except F.FaultError as e:
        raise UsageError(str(e)) from None
    return fault_list


def _fault_body_pages(kind: str, wl, fork_exit: bool, journaled: bool) -> list[int] | None:
    """--fault-body: each tape CPU's region in pages (None for none); one line and exit 2 when refused."""
    import psutil

    from shmrss.faultbody import FaultBodyError, check

    try:
        return check(kind, wl, fork_exit=fork_exit, journaled=journaled,
                     available=psutil.virtual_memory().available)
    except FaultBodyError as e:
        raise UsageError(str(e)) from None


def _host_reference(wanted: bool, fault_body: str) -> bool:
    """--host-reference: the host counts only the real faults of --fault-body page, read from /proc."""
    if not wanted:
        return False
    if fault_body != "page":
        raise UsageError("--host-reference goes with --fault-body page (only then does the host kernel fault "
                         "the workload's pages)")
    from shmrss.host_reference import HostReferenceError, check_readable

    try:
        check_readable()
    except HostReferenceError as e:
        raise UsageError(f"--host-reference: {e}") from None
    return True


def _check_output_parents(*paths: str | None) -> None:
    for path in paths:
        if path:
            parent = Path(path).resolve().parent
            if not parent.is_dir():
                raise UsageError(f"directory {parent} does not exist")
