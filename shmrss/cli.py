"""Command line: ``shmrss run | topology | calibrate | cleanup | sweep | report | compare | monitor``.

Bad input is one line on stderr and exit status 2; an interrupted run exits
130 (SIGINT) or 143 (SIGTERM) after writing what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from loguru import logger
from rich.console import Console

from shmrss.console import stdout_console
from shmrss.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from shmrss.options import int_at_least as _int_at_least, int_list as _int_list, orders as _orders
from shmrss.options import label as _label, positive_float as _positive_float


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


def _host_cpus(text: str) -> list[int]:
    from shmrss.hostcpus import parse

    return parse(text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="shmrss", description="Compare Linux mm->rss_stat counter designs on this host.")
    from shmrss import __version__

    p.add_argument("--version", action="version", version=f"shmrss {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run designs on a workload and compare them")
    r.add_argument("--design", default="percpu,atomic", help="comma list of designs, or 'all' (default percpu,atomic)")
    r.add_argument("--workload", default="page_fault1",
                   help="page_fault1/2/3, rss_steal, mixed, oom_select, fork_exit, or a workload .json file")
    r.add_argument("--mode", default="processes", choices=("processes", "threads"),
                   help="built-in workloads: one mm per task (processes) or one shared mm (threads)")
    r.add_argument("--tasks", type=_int_at_least(1, 100_000), help="tasks (default one per CPU)")
    r.add_argument("--cpus", type=_int_at_least(1, 4096), help="emulated CPUs (default all usable physical cores)")
    r.add_argument("--host-cpus", type=_host_cpus, metavar="LIST",
                   help="host CPUs to pin the emulated CPUs to, in order (taskset list: 0,2-3); default: chosen")
    r.add_argument("--duration", type=_positive_float, default=5.0, help="seconds per design (default 5)")
    r.add_argument("--read-interval", type=_positive_float, default=10.0, metavar="MS",
                   help="reader period in milliseconds (default 10)")
    r.add_argument("--line", type=int, choices=(64, 128), help="cache line bytes for the layout (default: sysfs)")
    r.add_argument("--pack", action="store_true", help="interleave CPUs' per-CPU words in shared lines (false sharing)")
    r.add_argument("--smt", action="store_true", help="also use SMT siblings as CPUs")
    r.add_argument("--oversubscribe", action="store_true", help="allow more CPUs than cores (timings invalid)")
    r.add_argument("--slice", type=_int_at_least(1), default=100_000, help="scheduler time slice in events")
    r.add_argument("--possible-cpus", type=_int_list(1, 4096), metavar="P[,P...]",
                   help="possible CPUs P >= cpus (default cpus); a comma list runs each in turn")
    r.add_argument("--online-cpus", type=_int_at_least(1, 4096), metavar="N",
                   help="online CPUs, cpus <= N <= P (default P): upstream's precise sums walk these, "
                        "allocation and HPCC's sums every possible CPU")
    r.add_argument("--fault-pages", type=_int_list(1, 1 << 18), metavar="N[,N...]",
                   help="page_fault1/2/3: pages per fault (default 1; 16 fault-around or a 64 KiB mTHP, "
                        "512 a 2 MiB THP); a list interleaves the sizes fault by fault")
    r.add_argument("--lifecycle", metavar="VARIANTS",
                   help="fork_exit: upstream, merged, fused-check, ctor-cache, lazy, inline (comma list) or all")
    r.add_argument("--pages", type=_int_at_least(1, 1 << 20), default=256,
                   help="fork_exit: pages each short-lived process faults (default 256)")
    r.add_argument("--clones", type=_int_at_least(0, 64), default=0,
                   help="fork_exit: threads each process clones (default 0)")
    r.add_argument("--leak-every", type=_int_at_least(0), default=0, metavar="N",
                   help="fork_exit: every N-th process leaves a page behind (shows the teardown check; default 0)")
    r.add_argument("--plot", metavar="DIR", help="draw PNG plots of the results into DIR")
    r.add_argument("--oom", action="store_true",
                   help="the reader also selects OOM victims, 2-pass and all-precise (on for oom_select)")
    r.add_argument("--no-reader", action="store_true", help="run without the reader process")
    r.add_argument("--reclaimer", action="store_true",
                   help="add a kswapd-like reclaimer CPU moving pages of random mms to swap and back")
    r.add_argument("--nodes", type=_int_at_least(1, 64), help="pernode: emulate this many NUMA nodes")
    r.add_argument("--tree-orders", type=_orders, metavar="O1,O2,...",
                   help="tree: arity orders (log2 of children) of levels 1..L, summing to ceil(log2 P)")
    r.add_argument("--no-calibrate", action="store_true", help="do not embed a hardware calibration")
    r.add_argument("--perf", action="store_true",
                   help="add perf stat counters of the CPU processes (what the host supports) to the result")
    r.add_argument("--offline-at", action="append", default=[], metavar="T:CPU",
                   help="take emulated CPU CPU offline T seconds into each run (repeatable)")
    r.add_argument("--kill-at", action="append", default=[], metavar="T:CPU",
                   help="SIGKILL emulated CPU CPU (or 'reader', 'reclaimer') T seconds into each run (repeatable)")
    r.add_argument("--check-every", type=_positive_float, metavar="S",
                   help="soak mode: park every CPU each S seconds and check the invariants there")
    r.add_argument("--fault-body", default="none", choices=("none", "page"),
                   help="page: each fault also touches fresh pages of a real anonymous mapping and each unmap "
                        "releases them, so the host really faults (default none)")
    r.add_argument("--json", metavar="PATH",
                   help="write the results as JSON ({schema_version, results}); - writes it to stdout, the table "
                        "and logs then go to stderr")
    r.add_argument("--label", type=_label, default="", metavar="TEXT",
                   help="a name for this build or setup, kept in params.label; results of different labels, "
                        "hosts or kernels are never merged by report and compare")
    r.add_argument("--repeat", type=_int_at_least(1, 1000), default=1, metavar="N",
                   help="run every design N times, interleaved (A B A B ...), each repeat a result (default 1)")
    r.add_argument("--wide", action="store_true",
                   help="one row per design with every column (about 200 columns) instead of metrics as rows")
    r.add_argument("--live", action="store_true",
                   help="show the live monitor view of the run (per CPU, per mm, host) instead of the progress bar")

    sub.add_parser("topology", help="show the host topology shmrss sees")
    c = sub.add_parser("calibrate", help="measure the host's cost of the primitive operations")
    c.add_argument("--cpus", type=_int_at_least(1, 4096), help="CPUs to use (default all physical cores)")
    c.add_argument("--host-cpus", type=_host_cpus, metavar="LIST",
                   help="host CPUs to use, in order (taskset list: 0,2-3); default: chosen")
    c.add_argument("--json", metavar="PATH", help="also write the calibration as JSON")
    sub.add_parser("cleanup", help="remove segments whose owner process is dead")
    m = sub.add_parser("monitor", help="live read-only view of a running shmrss run; without NAME, list the runs")
    m.add_argument("name", nargs="?", metavar="NAME", help="segment name shmrss-<16 hex> (a leading / is accepted)")
    m.add_argument("--interval", type=_positive_float, default=1.0, metavar="S",
                   help="seconds between refreshes (default 1)")
    m.add_argument("--count", type=_int_at_least(1), metavar="N", help="stop after N refreshes")
    from shmrss import compare, report, sweep

    sweep.add_parser(sub, parse_run=p.parse_args)  # the sweep checks each point as `shmrss run` would
    report.add_parser(sub)
    compare.add_parser(sub)
    for sp in sub.choices.values():  # -v/-q also after the subcommand; SUPPRESS keeps one given before it
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only")
    return p


def _setup_logging(verbose: bool, console: Console, quiet: bool = False) -> None:
    logger.remove()
    logger.add(lambda m: console.print(m, end="", markup=False, highlight=False, soft_wrap=True),
               level="DEBUG" if verbose else "WARNING" if quiet else "INFO", format="{level}: {message}")


def main(argv: list[str] | None = None) -> int:
    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        err.print(f"shmrss: error: {e}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except SystemExit as e:  # --version, --help: printed, done
        return e.code if isinstance(e.code, int) else EXIT_OK
    if args.verbose and args.quiet:
        err.print("shmrss: error: -v and -q exclude each other", highlight=False)
        return EXIT_USAGE
    _setup_logging(args.verbose, err, args.quiet)
    if sys.platform != "linux":
        err.print(f"shmrss: error: shmrss needs Linux (sysfs, POSIX shared memory, CPU pinning); this is {sys.platform}")
        return EXIT_USAGE
    try:
        return _COMMANDS[args.cmd](args, err)
    except UsageError as e:
        err.print(f"shmrss: error: {e}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except (MemoryError, OSError) as e:  # ulimit -v / -f, a full disk, an unusable HOME or TMPDIR
        logger.opt(exception=e).debug("what failed")
        err.print(f"shmrss: error: {_resource_text(e)}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILED


def _resource_text(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "out of memory (is the address space limited, ulimit -v?)"
    text = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename:
        text += f": {e.filename}"
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:  # llvmlite then fails to load with a message that does not say so
        text += f" (the address space is limited to {limit >> 20} MiB: ulimit -v)"
    return text


def check_axes(args, fork_exit: bool, possibles: list, running: int) -> None:
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


def _usage_errors():
    from shmrss.designs import UnknownDesign
    from shmrss.segment import SegmentError
    from shmrss.topology import TopologyError
    from shmrss.workload import WorkloadError

    return UnknownDesign, SegmentError, TopologyError, WorkloadError


def cmd_topology(args, err: Console) -> int:
    from shmrss.topology import TopologyError, read_topology, render_table

    try:
        topo = read_topology()
    except TopologyError as e:
        raise UsageError(str(e)) from None
    _out_console().print(render_table(topo))
    return EXIT_OK


def cmd_cleanup(args, err: Console) -> int:
    from shmrss.segment import cleanup_stale

    removed, skipped = cleanup_stale()
    for n in removed:
        logger.info("removed /{}", n)
    for n, why in skipped.items():
        logger.info("skipped /{}: {}", n, why)
    if not removed and not skipped:
        logger.info("no shmrss segments")
    return EXIT_OK


def cmd_calibrate(args, err: Console) -> int:
    from shmrss import calibrate
    from shmrss.atomics import calibrate_tsc
    from shmrss.preflight import check_calibrate_options
    from shmrss.topology import plan, read_topology

    check_calibrate_options(args)
    try:
        topo = read_topology()
        placement = plan(topo, args.cpus or (len(args.host_cpus) if args.host_cpus else len(topo.physical_cpus())),
                         host_cpus=args.host_cpus)
    except _usage_errors() as e:
        raise UsageError(str(e)) from None
    for w in placement.warnings:
        logger.warning(w)
    logger.info("calibrating on host CPUs {} ...", ",".join(map(str, placement.cpus)))
    result = calibrate.measure(list(placement.cpus), calibrate_tsc(0.1), cache_line=topo.cache_line)
    from shmrss.safe_io import OutputError

    _out_console().print(calibrate.render(result))
    code = EXIT_OK
    try:
        path = calibrate.save(result, topo)
        logger.info("saved to {} (embedded in the JSON of later runs on this host)", path)
    except OutputError as e:
        logger.error("the calibration could not be cached ({}); later runs measure a quick one", e)
        code = EXIT_FAILED
    if args.json is not None:
        try:
            _write_json(args.json, result)
        except OutputError as e:
            logger.error("the calibration could not be written to --json: {}; the table above has it", e)
            code = EXIT_FAILED
    return code


_out_console = stdout_console  # stdout; piped output gets a wide page


def _write_json(path: str, obj) -> None:
    """A new temporary in PATH's directory renamed over PATH (never a write through a planted symlink);
    safe_io.OutputError (one line) when it cannot be written."""
    from shmrss.safe_io import write_text

    write_text(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o):
    from shmrss.results_file import json_default

    return json_default(o)


def cmd_run(args, err: Console) -> int:
    from shmrss import designs, lifecycle, result
    from shmrss.orchestrator import Interrupted, Run, RunFailed, RunParams, prepare_runs
    from shmrss.results_file import results_document
    from shmrss.runsignals import SIGNALS
    from shmrss.topology import plan, read_topology
    from shmrss.wlfile import load_file
    from shmrss.workload import compile_workload

    from shmrss import workloads

    fork_exit = args.workload == "fork_exit"
    try:
        names = designs.parse_list(args.design)
        variants = lifecycle.parse_variants(args.lifecycle or ("all" if fork_exit else "upstream"))
        if args.lifecycle and not fork_exit:
            raise UsageError("--lifecycle goes with --workload fork_exit")
        from shmrss import preflight

        preflight.check_run_options(args, fork_exit, variants)
        topo = read_topology()
        ncpu = args.cpus or (len(args.host_cpus) if args.host_cpus else len(topo.physical_cpus()))
        placement = plan(topo, ncpu, smt=args.smt, oversubscribe=args.oversubscribe, host_cpus=args.host_cpus)
        possibles = args.possible_cpus or [None]
        for pc in possibles:
            if pc is not None and pc < ncpu:
                raise UsageError(f"--possible-cpus {pc} is below --cpus {ncpu}")
        fault_pages = tuple(args.fault_pages or (1,))
        if fork_exit:
            spec = workloads.build("page_fault1", ncpu)  # placeholder tapes: fork_exit runs its own loop
            spec["name"], spec["mode"] = "fork_exit", "processes"
        elif args.workload.endswith(".json") or os.sep in args.workload:
            spec = load_file(args.workload)
        else:
            spec = workloads.build(args.workload, ncpu, tasks=args.tasks, mode=args.mode, fault_pages=fault_pages)
        wl = compile_workload(spec, ncpu)
        if not fork_exit:
            from shmrss.wlfile import idle_notes

            for note in idle_notes(wl):
                logger.warning(note)
        reclaimer = (args.reclaimer or bool(spec.get("reclaimer"))) and not fork_exit
        check_axes(args, fork_exit, possibles, ncpu + int(reclaimer))
        if args.tree_orders and ("tree" in names or fork_exit):
            from shmrss.designs.tree import orders_for

            try:
                for pc in possibles:
                    orders_for(max(pc or 0, ncpu + int(reclaimer)), args.tree_orders)
            except ValueError as e:
                raise UsageError(str(e)) from None
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
            F.validate(fault_list, len(placement.cpus), args.duration, reclaimer, not args.no_reader)
        except F.FaultError as e:
            raise UsageError(str(e)) from None
        fb_pages = _fault_body_pages(args, wl, fork_exit, bool(fault_list))
        for path in (args.json, args.plot):
            if path:
                parent = Path(path).resolve().parent
                if not parent.is_dir():
                    raise UsageError(f"directory {parent} does not exist")
    except (_usage_errors() + (lifecycle.UnknownVariant,)) as e:
        raise UsageError(str(e)) from None
    line = args.line or (topo.cache_line if topo.cache_line in (64, 128) else 64)
    shown: set[str] = set()
    for w in placement.warnings:
        if fork_exit and "reader" in w:
            continue  # a fork/exit run has no reader
        shown.add(w)
        logger.warning(w)

    if args.perf:  # shmrss/perf.py: say once what perf cannot count here
        from shmrss.perf_report import announce

        for w in announce():
            shown.add(w)
            logger.warning(w)

    options = {"mode": spec.get("mode"), "tasks_option": args.tasks, "smt": args.smt, "reclaimer": reclaimer,
               "nodes_option": args.nodes, "tree_orders": list(args.tree_orders) if args.tree_orders else None,
               "perf": args.perf, "offline_at": args.offline_at, "kill_at": args.kill_at,
               "check_every": args.check_every, "online_cpus_option": args.online_cpus,
               "fault_body": args.fault_body, "label": args.label}

    def params_for(design: str, possible: int | None) -> RunParams:
        return RunParams(design=design, workload=wl, placement=placement, topo=topo, duration=args.duration,
                         read_interval=args.read_interval / 1000.0, line=line, pack=args.pack, slice=args.slice,
                         possible=possible, reader=not args.no_reader, reclaimer=reclaimer, nodes=args.nodes,
                         online=args.online_cpus, fault_pages=fault_pages,
                         oom=args.oom or bool(spec.get("oom")),
                         design_options={"tree_orders": args.tree_orders}, options=options,
                         faults=fault_list, check_every=args.check_every, fault_body_pages=fb_pages)

    # one job per (design or lifecycle variant) x possible CPUs: (label, run -> raw, raw -> result)
    jobs = []
    unstarted = []  # (label, Run): sized by preflight before anything forks
    for pc in possibles:
        suffix = f" P={pc}" if len(possibles) > 1 else ""
        if fork_exit:
            for v in variants:
                prm = params_for(lifecycle.VARIANT_DESIGN[v], pc)
                unstarted.append((f"{v}{suffix}", lifecycle.LifecycleRun(prm, v, args.pages, args.clones)))
                jobs.append((f"{v}{suffix}",
                             lambda on, prm=prm, v=v: lifecycle.LifecycleRun(
                                 prm, v, args.pages, args.clones, progress=on, leak_every=args.leak_every).execute(),
                             lambda raw, prm=prm, v=v: lifecycle.build(prm, v, args.pages, args.clones, raw,
                                                                       calibration)))
        else:
            for name in names:
                prm = params_for(name, pc)
                unstarted.append((f"{name}{suffix}", Run(prm)))
                jobs.append((f"{name}{suffix}", lambda on, prm=prm: Run(prm, progress=on).execute(),
                             lambda raw, prm=prm: result.build(prm, raw, calibration)))

    preflight.check_runs(unstarted)
    prepare_runs([run for _, run in unstarted])  # compile every engine the runs need, in parallel
    if args.repeat > 1:  # interleaved, A B A B ...: a slow drift of the host spreads over every design
        jobs = [(f"{label} #{rep + 1}", execute, build) for rep in range(args.repeat) for label, execute, build in jobs]

    calibration = None
    if not args.no_calibrate:
        from shmrss import calibrate
        from shmrss.atomics import calibrate_tsc

        calibration = calibrate.load_or_measure(topo, list(placement.cpus), calibrate_tsc())

    results: list[dict] = []
    code = EXIT_OK
    json_error = None  # why --json could not be written (the run goes on; the table still shows)
    unit = "mm/s" if fork_exit else "M ev/s"
    scale = 1.0 if fork_exit else 1e6
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if args.live:
        from shmrss.monitor import RunView

        view = RunView(err)
    else:
        view = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), console=err, transient=True)
    # a warning the run logs as it happens (a CPU or the reader died) is in its result too: said once
    said_live = logger.add(lambda m: shown.add(m.record["message"]), level="WARNING", format="{message}")
    with view as progress, SIGNALS:  # a signal after a design's measurement waits for its result to be written
        for label, execute, build in jobs:
            task = progress.add_task(f"{label:14s} {wl.name}", total=args.duration, rate="starting")

            def on_sample(run, elapsed, task=task):
                if args.live:
                    return progress.sample(run, elapsed)
                s = run.samples
                dt = s[-1].t - s[-2].t
                per = (s[-1].events - s[-2].events) / dt if dt > 0 else s[-1].events * 0
                progress.update(task, completed=min(elapsed, args.duration),
                                rate=f"{per.sum() / scale:10,.1f} {unit}  [" +
                                     " ".join(f"{x / scale:,.1f}" for x in per[:16]) + "]")

            try:
                raw = execute(on_sample)
            except RunFailed as e:
                logger.error("{}: run failed: {}", label, e)
                code = EXIT_FAILED
                break
            except (KeyboardInterrupt, Interrupted) as e:
                code = e.code if isinstance(e, Interrupted) else 130
                logger.error("interrupted before {} started measuring; nothing measured for it", label)
                break
            except _usage_errors() as e:
                raise UsageError(str(e)) from None
            res = build(raw)
            if fork_exit and "perf" in raw:  # --perf: figures per mm lifecycle
                from shmrss.perf_report import section

                res["perf"] = section(raw["perf"], unit="mm")
                res["warnings"] += [w for w in res["perf"].get("warnings", []) if w not in res["warnings"]]
            results.append(res)
            progress.update(task, completed=args.duration, visible=False)
            if args.json is not None and args.json != "-":
                json_error = _save_json(args.json, results_document(results), json_error)
            if not all(res["invariants"].values()):
                code = max(code, EXIT_FAILED)
                logger.error("{}: invariant failed: {}", label,
                             ", ".join(k for k, ok in res["invariants"].items() if not ok))
            if "interrupt_code" in raw or SIGNALS.pending is not None:
                code = raw.get("interrupt_code") or SIGNALS.pending
                break
    logger.remove(said_live)
    # --json -: stdout holds the JSON alone; the default table fits 100 columns and is not forced wider
    tables = err if args.json == "-" else _out_console() if args.wide or fork_exit else Console()
    if results and args.json == "-":
        sys.stdout.write(json.dumps(results_document(results), indent=1, default=_json_default) + "\n")
    if results:
        tables.print(lifecycle.table(results) if fork_exit else _run_table(results, args.wide))
        if args.fault_body != "none":
            from shmrss.faultbody import table as fault_body_table

            if (ft := fault_body_table(results)) is not None:
                tables.print(ft)
        if args.perf:
            from shmrss.perf_report import table as perf_table

            if (pt := perf_table(results)) is not None:
                tables.print(pt)
        for res in results:
            for w in res["warnings"]:
                if w not in shown:
                    shown.add(w)
                    logger.warning(w)
        if json_error is not None:
            code = max(code, EXIT_FAILED)
            logger.error("the result could not be written to {}: {}; the table above is all that is left of it",
                         args.json, json_error)
        elif args.json is not None and args.json != "-":
            logger.info("wrote {}", args.json)
        if args.plot:
            code = max(code, _draw_plots(results, args.plot))
    return code


def _run_table(results: list[dict], wide: bool):
    from shmrss import result, run_table

    return result.table(results) if wide else run_table.table(results)


def _save_json(path: str, obj, earlier: str | None) -> str | None:
    """Write --json; the reason it failed (said once, after the table), or None."""
    from shmrss.safe_io import OutputError

    try:
        _write_json(path, obj)
    except OutputError as e:
        if earlier is None:
            logger.error("{}; the run goes on", e)
        return str(e)
    return None


def _draw_plots(results: list[dict], directory: str) -> int:
    from shmrss import plots

    try:
        for path in plots.draw(results, directory):
            logger.info("wrote {}", path)
    except (OSError, ValueError) as e:
        logger.error("the plots could not be written to {}: {}", directory, getattr(e, "strerror", None) or e)
        return EXIT_FAILED
    return EXIT_OK


def _fault_body_pages(args, wl, fork_exit: bool, journaled: bool) -> list[int] | None:
    """--fault-body: each tape CPU's region in pages (None for none); one line and exit 2 when refused."""
    import psutil

    from shmrss.faultbody import FaultBodyError, check

    try:
        return check(args.fault_body, wl, fork_exit=fork_exit, journaled=journaled,
                     available=psutil.virtual_memory().available)
    except FaultBodyError as e:
        raise UsageError(str(e)) from None


def cmd_sweep(args, err: Console) -> int:
    from shmrss import sweep
    from shmrss.results_file import InputError

    try:
        return sweep.main(args, err)
    except InputError as e:
        raise UsageError(str(e)) from None


def cmd_report(args, err: Console) -> int:
    from shmrss import report
    from shmrss.results_file import InputError

    try:
        return report.main(args, err)
    except InputError as e:
        raise UsageError(str(e)) from None


def cmd_compare(args, err: Console) -> int:
    from shmrss import compare
    from shmrss.results_file import InputError

    try:
        return compare.main(args, Console())  # piped: rich's own width (COLUMNS, else 80), not forced
    except InputError as e:
        raise UsageError(str(e)) from None


def cmd_monitor(args, err: Console) -> int:
    from shmrss.monitor import MonitorUsage, command

    try:
        return command(args)
    except MonitorUsage as e:
        raise UsageError(str(e)) from None


_COMMANDS = {"run": cmd_run, "topology": cmd_topology, "calibrate": cmd_calibrate, "cleanup": cmd_cleanup,
             "sweep": cmd_sweep, "report": cmd_report, "monitor": cmd_monitor,
             "compare": cmd_compare}

if __name__ == "__main__":
    # run as a script this module is __main__, a second copy of shmrss.cli: go through the imported one
    # (``python -m shmrss``, shmrss/__main__.py, is the entry point)
    from shmrss.cli import main as _main

    sys.exit(_main())
