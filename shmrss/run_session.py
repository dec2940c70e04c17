"""``shmrss run``'s measuring session: from a checked ``RunSpec`` to its results.

``jobs(spec)`` makes one job per design (or lifecycle variant) x possible-CPU count x repeat and sizes
them before anything forks; ``announce`` says the warnings known before the first run; ``calibration``
embeds the host's; ``measure`` runs the jobs one after another under a progress bar (or ``--live``'s
monitor view) and the signal guard, handing each result to a callback as it is built (``--json`` is
rewritten after each design, so an interrupted run keeps what it measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from loguru import logger

from shmrss.errors import EXIT_FAILED, EXIT_OK, UsageError
from shmrss.runspec import RunSpec, usage_errors


@dataclass(frozen=True)
class Job:
    label: str
    execute: Callable  # on_sample -> raw measurements
    build: Callable  # (raw, calibration) -> the result object


@dataclass
class Session:
    results: list[dict] = field(default_factory=list)
    code: int = EXIT_OK
    shown: set[str] = field(default_factory=set)  # warnings already said (a result's are said once, after)


def jobs(spec: RunSpec) -> list[Job]:
    """Every run of the spec in order (repeats interleaved, A B A B ...: a slow drift of the host spreads
    over every design), sized by preflight before anything forks."""
    from shmrss import lifecycle, preflight, result
    from shmrss.orchestrator import Run, prepare_runs
    from shmrss.runsignals import SIGNALS, STARTUP

    one_pass, unstarted = [], []
    for label, design, variant, pc in spec.units():
        prm = spec.params_for(design, pc)
        if variant is not None:
            unstarted.append((label, lifecycle.LifecycleRun(prm, variant, spec.pages, spec.clones)))
            one_pass.append(Job(label, lambda on, prm=prm, v=variant: lifecycle.LifecycleRun(
                prm, v, spec.pages, spec.clones, progress=on, leak_every=spec.leak_every).execute(),
                lambda raw, cal, prm=prm, v=variant: lifecycle.build(prm, v, spec.pages, spec.clones, raw, cal)))
        else:
            unstarted.append((label, Run(prm)))
            one_pass.append(Job(label, lambda on, prm=prm: Run(prm, progress=on).execute(),
                                lambda raw, cal, prm=prm: result.build(prm, raw, cal)))
    preflight.check_runs(unstarted)
    with SIGNALS:  # a signal while compiling: the workers are killed, nothing measured (cli: exit 128 + n)
        SIGNALS.enter(STARTUP)
        prepare_runs([run for _, run in unstarted])  # compile every engine the runs need, in parallel
    if spec.repeat == 1:
        return one_pass
    return [Job(f"{j.label} #{rep + 1}", j.execute, j.build) for rep in range(spec.repeat) for j in one_pass]


def announce(spec: RunSpec) -> set[str]:
    """Log the workload's notes, the placement's warnings and what perf cannot count; the warnings said."""
    shown: set[str] = set()
    for note in spec.notes:
        logger.warning(note)
    for w in spec.placement.warnings:
        if spec.fork_exit and "reader" in w:
            continue  # a fork/exit run has no reader
        shown.add(w)
        logger.warning(w)
    if spec.perf:  # shmrss/perf.py: say once what perf cannot count here
        from shmrss.perf_report import announce as perf_warnings

        for w in perf_warnings():
            shown.add(w)
            logger.warning(w)
    return shown


def calibration(spec: RunSpec) -> dict | None:
    """The host's calibration to embed in each result (cached per host), or None for --no-calibrate."""
    if not spec.calibrate:
        return None
    from shmrss import calibrate
    from shmrss.atomics import calibrate_tsc

    return calibrate.load_or_measure(spec.topo, list(spec.placement.cpus), calibrate_tsc())


def _view(spec: RunSpec, err):
    if spec.live:
        from shmrss.monitor import RunView

        return RunView(err)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), console=err, transient=True)


def _sampler(spec: RunSpec, progress, task):
    """The run's once-a-second callback: the live view's sample, or the bar's rate per CPU."""
    unit, scale = ("mm/s", 1.0) if spec.fork_exit else ("M ev/s", 1e6)

    def on_sample(run, elapsed):
        if spec.live:
            return progress.sample(run, elapsed)
        s = run.samples
        dt = s[-1].t - s[-2].t
        per = (s[-1].events - s[-2].events) / dt if dt > 0 else s[-1].events * 0
        progress.update(task, completed=min(elapsed, spec.duration),
                        rate=f"{per.sum() / scale:10,.1f} {unit}  [" +
                             " ".join(f"{x / scale:,.1f}" for x in per[:16]) + "]")

    return on_sample


def measure(spec: RunSpec, job_list: list[Job], cal: dict | None, err, shown: set[str],
            on_result: Callable[[list[dict]], None]) -> Session:
    """Run the jobs in turn; stop at a failed run or a signal (the results so far are kept)."""
    from shmrss.runsignals import SIGNALS

    session = Session(shown=shown)
    # a warning the run logs as it happens (a CPU or the reader died) is in its result too: said once
    said_live = logger.add(lambda m: shown.add(m.record["message"]), level="WARNING", format="{message}")
    try:
        with _view(spec, err) as progress, SIGNALS:  # a signal after a measurement waits for its result
            for job in job_list:
                if not _one(spec, job, cal, progress, session, on_result):
                    break
    finally:
        logger.remove(said_live)
    return session


def _one(spec: RunSpec, job: Job, cal, progress, session: Session, on_result) -> bool:
    """Run one job and keep its result; False when the session stops here."""
    from shmrss.orchestrator import Interrupted, RunFailed
    from shmrss.runsignals import SIGNALS

    task = progress.add_task(f"{job.label:14s} {spec.workload.name}", total=spec.duration, rate="starting")
    try:
        raw = job.execute(_sampler(spec, progress, task))
    except RunFailed as e:
        logger.error("{}: run failed: {}", job.label, e)
        session.code = EXIT_FAILED
        return False
    except (KeyboardInterrupt, Interrupted) as e:
        session.code = e.code if isinstance(e, Interrupted) else 130
        logger.error("interrupted before {} started measuring; nothing measured for it", job.label)
        return False
    except usage_errors() as e:
        raise UsageError(str(e)) from None
    res = _result(spec, job, raw, cal)
    session.results.append(res)
    progress.update(task, completed=spec.duration, visible=False)
    on_result(session.results)
    if not all(res["invariants"].values()):
        session.code = max(session.code, EXIT_FAILED)
        logger.error("{}: invariant failed: {}", job.label, ", ".join(k for k, ok in res["invariants"].items() if not ok))
    if "interrupt_code" in raw or SIGNALS.pending is not None:
        session.code = raw.get("interrupt_code") or SIGNALS.pending
        return False
    return True


def _result(spec: RunSpec, job: Job, raw: dict, cal) -> dict:
    res = job.build(raw, cal)
    if spec.fork_exit and "perf" in raw:  # --perf: figures per mm lifecycle
        from shmrss.perf_report import section

        res["perf"] = section(raw["perf"], unit="mm")
        res["warnings"] += [w for w in res["perf"].get("warnings", []) if w not in res["warnings"]]
    return res
