"""Command line: ``shmrss run | topology | calibrate | cleanup | sweep | report | compare | show | monitor``.

Bad input is one line on stderr and exit status 2; an interrupted run exits
130 (SIGINT) or 143 (SIGTERM) after writing what it measured.
"""

from __future__ import annotations

import argparse
import sys

from loguru import logger
from rich.console import Console

from shmrss.console import printable, stdout_console
from shmrss.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from shmrss.options import add_shared_run_options, int_at_least as _int_at_least, int_list as _int_list
from shmrss.options import positive_float as _positive_float
from shmrss.runsignals import Interrupted


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
    _add_run_parser(sub)
    _add_small_parsers(sub)
    from shmrss import compare, report, show, sweep, verify

    sweep.add_parser(sub, parse_run=p.parse_args)  # the sweep checks each point as `shmrss run` would
    report.add_parser(sub)
    compare.add_parser(sub)
    show.add_parser(sub)
    verify.add_parser(sub)
    for sp in sub.choices.values():  # -v/-q also after the subcommand; SUPPRESS keeps one given before it
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only")
    return p


def _add_run_parser(sub) -> None:
    """``shmrss run``: the options it shares with ``sweep`` (shmrss.options), then its own."""
    r = sub.add_parser("run", help="run designs on a workload and compare them")
    add_shared_run_options(r, matrix=False)
    r.add_argument("--host-cpus", type=_host_cpus, metavar="LIST",
                   help="host CPUs to pin the emulated CPUs to, in order (taskset list: 0,2-3); default: chosen")
    r.add_argument("--online-cpus", type=_int_at_least(1, 4096), metavar="N",
                   help="online CPUs, cpus <= N <= P (default P): upstream's precise sums walk these, "
                        "allocation and HPCC's sums every possible CPU")
    r.add_argument("--fault-pages", type=_int_list(1, 1 << 18), metavar="N[,N...]",
                   help="page_fault1/2/3: pages per fault (default 1; 16 fault-around or a 64 KiB mTHP, "
                        "512 a 2 MiB THP); a list interleaves the sizes fault by fault")
    r.add_argument("--fault-body", default="none", choices=("none", "page"),
                   help="page: each fault also touches fresh pages of a real anonymous mapping and each unmap "
                        "releases them, so the host really faults (default none)")
    r.add_argument("--host-reference", action="store_true",
                   help="with --fault-body page: also read the CPU processes' RSS from /proc (the host kernel's own "
                        "counters) and record their errors beside the design's (docs/host-reference.md)")
    r.add_argument("--perf", action="store_true",
                   help="add perf stat counters of the CPU processes (what the host supports) to the result")
    r.add_argument("--offline-at", action="append", default=[], metavar="T:CPU",
                   help="take emulated CPU CPU offline T seconds into each run (repeatable)")
    r.add_argument("--kill-at", action="append", default=[], metavar="T:CPU",
                   help="SIGKILL emulated CPU CPU (or 'reader', 'reclaimer') T seconds into each run (repeatable)")
    r.add_argument("--check-every", type=_positive_float, metavar="S",
                   help="soak mode: park every CPU each S seconds and check the invariants there")
    r.add_argument("--json", metavar="PATH",
                   help="write the results as JSON ({schema_version, results}); - writes it to stdout, the table "
                        "and logs then go to stderr")
    r.add_argument("--plot", metavar="DIR", help="draw PNG plots of the results into DIR")
    r.add_argument("--kernel-src", metavar="DIR",
                   help="kernel tree k-percpu compiles lib/percpu_counter.c from, k-tree HPCC's "
                        "lib/percpu_counter_tree.c (default $SHMRSS_KERNEL_SRC; docs/kernel-c.md)")
    r.add_argument("--wide", action="store_true",
                   help="one row per design with every column (about 200 columns) instead of metrics as rows")
    r.add_argument("--live", action="store_true",
                   help="show the live monitor view of the run (per CPU, per mm, host) instead of the progress bar")
    _add_remedy_options(r)


def _add_remedy_options(r) -> None:
    """fork_exit's options of issue 22's remedies (docs/lifecycle.md), ``shmrss run`` only."""
    r.add_argument("--coarse-group", type=_int_list(1, 4096), metavar="N[,N...]",
                   help="fork_exit, --lifecycle coarse: CPUs per pool (default 8); a list runs coarse at each")
    r.add_argument("--fork-globals", action="store_true",
                   help="fork_exit: also take, per fork and per exit, a stand-in of the LRU-gen mm list lock "
                        "and pgd_lock (off by default)")
    r.add_argument("--switches", type=_int_at_least(0, 1 << 20), default=0, metavar="N",
                   help="fork_exit: switches back onto its CPU each process takes (first-use tests its bitmap "
                        "at each; default 0)")
    r.add_argument("--remote-every", type=_int_at_least(0), default=0, metavar="N",
                   help="fork_exit: every N-th process gets one counter update from the next online CPU, "
                        "which it never ran on (default 0: none)")


def _add_small_parsers(sub) -> None:
    """topology, calibrate, cleanup, monitor."""
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
        err.print("shmrss: error: -v and -q exclude each other", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    _setup_logging(args.verbose, err, args.quiet)
    if sys.platform != "linux":
        err.print(f"shmrss: error: shmrss needs Linux (sysfs, POSIX shared memory, CPU pinning); this is {sys.platform}",
                  markup=False, highlight=False, soft_wrap=True)  # one line, even piped at 80 columns
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
    except Interrupted as e:  # a signal before anything was measured (while the engines compiled)
        err.print(f"shmrss: interrupted ({e.name}) before anything was measured", highlight=False, soft_wrap=True)
        return e.code


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
    for n in removed:  # a name in /dev/shm is anyone's data: escaped, never written raw to the terminal
        logger.info("removed /{}", printable(n))
    for n, why in skipped.items():
        logger.info("skipped /{}: {}", printable(n), printable(why))
    if not removed and not skipped:
        logger.info("no shmrss segments")
    return EXIT_OK


def cmd_calibrate(args, err: Console) -> int:
    from shmrss import calibrate
    from shmrss.atomics import calibrate_tsc
    from shmrss.preflight import check_calibrate_options
    from shmrss.runspec import usage_errors
    from shmrss.topology import plan, read_topology

    check_calibrate_options(args)
    try:
        topo = read_topology()
        placement = plan(topo, args.cpus or (len(args.host_cpus) if args.host_cpus else len(topo.physical_cpus())),
                         host_cpus=args.host_cpus)
    except usage_errors() as e:
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
    from shmrss.run_output import write_json

    write_json(path, obj)


def cmd_run(args, err: Console) -> int:
    """Parse (done), spec, run, output."""
    from shmrss import run_output, run_session
    from shmrss.runspec import RunSpec

    args.design = _kernel_c(args.design, args.kernel_src, args.pack)
    spec = RunSpec.from_args(args)  # every option checked; UsageError: one line, exit 2
    shown = run_session.announce(spec)
    jobs = run_session.jobs(spec)  # sized before anything forks
    calibration = run_session.calibration(spec)
    json_file = run_output.JsonFile(spec.json)
    session = run_session.measure(spec, jobs, calibration, err, shown, on_result=json_file.save)
    return run_output.write(spec, session, json_file, err)


def _kernel_c(design_text: str, kernel_src: str | None, pack: bool = False) -> str:
    """The C a design list needs (k-percpu's or k-tree's kernel tree, a c:SPEC.toml), built before anything starts;
    returns the list with its c: entry named ``c`` (docs/kernel-c.md)."""
    from shmrss.designs import KERNEL_DESIGNS
    from shmrss.kernel import build, kpercpu, ktree, source, spec

    try:
        kpercpu.require(design_text, kernel_src)
        ktree.require(design_text, kernel_src)
        text = spec.require(design_text)
    except (source.KernelSourceError, build.BuildError, spec.SpecError) as e:
        raise UsageError(str(e)) from None
    if any(n.strip() in KERNEL_DESIGNS for n in text.split(",")) and pack:
        raise UsageError("the C designs need each CPU's unit contiguous, as the kernel's: drop --pack")
    return text


def cmd_verify(args, err: Console) -> int:
    from shmrss import verify

    _kernel_c(verify.kernel_designs(args.design), args.kernel_src)
    return verify.main(args, err)


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
    from shmrss.console import stdout_console
    from shmrss.results_file import InputError

    try:
        return compare.main(args, stdout_console())  # piped: as wide as a line needs, never folded at 80
    except InputError as e:
        raise UsageError(str(e)) from None


def cmd_show(args, err: Console) -> int:
    from shmrss import show
    from shmrss.console import fitted
    from shmrss.results_file import InputError

    try:
        return show.main(args, fitted)  # piped: as wide as the tables need, no cell folded
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
             "compare": cmd_compare, "show": cmd_show, "verify": cmd_verify}

if __name__ == "__main__":
    # run as a script this module is __main__, a second copy of shmrss.cli: go through the imported one
    # (``python -m shmrss``, shmrss/__main__.py, is the entry point)
    from shmrss.cli import main as _main

    sys.exit(_main())
