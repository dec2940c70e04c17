"""``RunSpec`` (shmrss/runspec.py): every option of ``shmrss run`` checked once, in one place; ``run`` and
``sweep`` share one definition of their common options, and the sweep planner builds a RunSpec per point.

No test here runs a design: building a spec measures nothing."""

from __future__ import annotations

import dataclasses
import io
from contextlib import redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shmrss.cli import build_parser, main
from shmrss.errors import UsageError
from shmrss.options import SHARED_RUN_OPTIONS
from shmrss.runspec import RunSpec
from shmrss.topology import read_topology

TOPO = read_topology()
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def spec_of(*argv: str) -> RunSpec:
    return RunSpec.from_args(build_parser().parse_args(["run", "--oversubscribe", *argv]), TOPO)


def refusal(*argv: str) -> str:
    with pytest.raises(UsageError) as e:
        spec_of(*argv)
    return str(e.value)


# ----------------------------------------------------------------------------- what a spec holds


def test_a_spec_is_frozen_and_holds_what_the_run_is_built_from():
    spec = spec_of("--design", "atomic,tree", "--cpus", "2", "--possible-cpus", "2,8", "--duration", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.duration = 2.0  # type: ignore[misc]
    assert spec.designs == ("atomic", "tree") and spec.possibles == (2, 8) and spec.ncpu == 2
    assert spec.workload.name == "page_fault1" and spec.line in (64, 128) and spec.reader and not spec.reclaimer
    assert [u[0] for u in spec.units()] == ["atomic P=2", "tree P=2", "atomic P=8", "tree P=8"]
    prm = spec.params_for("tree", 8)
    assert (prm.design, prm.possible, prm.duration, prm.read_interval) == ("tree", 8, 1.0, 0.010)
    assert prm.options["tasks_option"] is None and prm.options["label"] == ""


def test_the_workload_turns_on_what_it_needs():
    assert spec_of("--workload", "mixed", "--cpus", "2").reclaimer
    assert spec_of("--workload", "oom_select", "--cpus", "2").oom
    life = spec_of("--workload", "fork_exit", "--cpus", "1", "--lifecycle", "upstream,lazy")
    assert life.fork_exit and [u[:3] for u in life.units()] == [("upstream", "percpu", "upstream"),
                                                                ("lazy", "single", "lazy")]


# ----------------------------------------------------------------------------- refusals (the messages the CLI prints)


@pytest.mark.parametrize("argv, message", [
    (["--design", "nope"], "unknown design 'nope'"),
    (["--lifecycle", "lazy"], "--lifecycle goes with --workload fork_exit"),
    (["--cpus", "4", "--possible-cpus", "2"], "--possible-cpus 2 is below --cpus 4"),
    (["--workload", "rss_steal", "--fault-pages", "16"], "--fault-pages goes with"),
    (["--cpus", "2", "--online-cpus", "1"], "below the 2 emulated CPUs"),
    (["--cpus", "2", "--online-cpus", "3"], "above --possible-cpus 2"),
    (["--duration", "1", "--check-every", "2"], "--check-every 2 must be shorter than --duration 1"),
    (["--workload", "fork_exit", "--kill-at", "0.1:0"], "go with the tape workloads, not fork_exit"),
    (["--workload", "fork_exit", "--tasks", "2"], "--tasks goes with a built-in tape workload"),
    (["--duration", "0.001"], "too short to measure anything"),
    (["--json", "/nonexistent-dir/x.json"], "does not exist"),
    (["--workload", "/nonexistent-dir/w.json"], "w.json"),
])
def test_bad_options_are_one_usage_error(argv, message):
    assert message in refusal(*argv)


@FEW
@given(cpus=st.integers(1, 8), possible=st.integers(1, 16))
def test_possible_cpus_below_the_cpus_are_refused_and_only_they(cpus, possible):
    argv = ["--design", "atomic", "--cpus", str(cpus), "--possible-cpus", str(possible)]
    if possible < cpus:
        assert refusal(*argv) == f"--possible-cpus {possible} is below --cpus {cpus}"
    else:
        assert spec_of(*argv).possibles == (possible,)


@FEW
@given(cpus=st.integers(1, 6), extra=st.integers(0, 6), online=st.integers(1, 16), reclaimer=st.booleans())
def test_online_cpus_lie_between_the_cpus_that_run_and_the_possible_ones(cpus, extra, online, reclaimer):
    running, possible = cpus + int(reclaimer), cpus + int(reclaimer) + extra
    argv = ["--design", "percpu", "--cpus", str(cpus), "--possible-cpus", str(possible), "--online-cpus",
            str(online)] + (["--reclaimer"] if reclaimer else [])
    if running <= online <= possible:
        assert spec_of(*argv).online_cpus == online
    else:
        assert ("below the" if online < running else "above --possible-cpus") in refusal(*argv)


@FEW
@given(duration=st.sampled_from([0.2, 0.5, 1.0, 3.0]), interval=st.floats(0.0005, 5000, allow_nan=False),
       reader=st.booleans())
def test_the_read_interval_fits_the_duration_when_a_reader_runs(duration, interval, reader):
    argv = ["--design", "atomic", "--cpus", "1", "--duration", f"{duration:g}", "--read-interval", repr(interval)]
    argv += [] if reader else ["--no-reader"]
    bad = reader and (interval < 0.001 or interval > duration * 1000)
    if bad:
        assert "--read-interval" in refusal(*argv)
    else:
        assert spec_of(*argv).read_interval_ms == interval


def test_the_cli_prints_a_spec_refusal_as_one_line(capsys):
    assert main(["run", "--oversubscribe", "--cpus", "4", "--possible-cpus", "2"]) == 2
    assert capsys.readouterr().err.strip() == "shmrss: error: --possible-cpus 2 is below --cpus 4"


# ----------------------------------------------------------------------------- run and sweep share their options


def _subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd")
    return sub.choices[name]


def _options(name: str) -> dict[str, object]:
    return {s: a for a in _subparser(name)._actions for s in a.option_strings}


def test_run_and_sweep_accept_the_same_shared_options():
    run, sweep = _options("run"), _options("sweep")
    assert set(SHARED_RUN_OPTIONS) <= set(run) and set(SHARED_RUN_OPTIONS) <= set(sweep)
    # every option both take is a shared one (or -h, -v, -q): none is copied by hand into one of them
    common = set(run) & set(sweep) - {"-h", "--help", "-v", "--verbose", "-q", "--quiet"}
    assert common == set(SHARED_RUN_OPTIONS)


AXES = {"--workload", "--mode", "--cpus", "--tasks", "--repeat"}  # one value in run, a comma list in sweep


@pytest.mark.parametrize("option", sorted(set(SHARED_RUN_OPTIONS) - AXES))
def test_a_shared_option_is_defined_once(option):
    """Same type, default, choices and help in both commands: one definition."""
    run, sweep = _options("run")[option], _options("sweep")[option]
    fields = ("type", "default", "choices", "help", "metavar", "nargs", "const")
    assert {f: getattr(run, f) for f in fields} == {f: getattr(sweep, f) for f in fields}


def test_the_sweep_takes_lists_where_the_run_takes_one_value():
    run = build_parser().parse_args(["run", "--cpus", "2", "--tasks", "3", "--pages", "8", "--nodes", "2"])
    sweep = build_parser().parse_args(["sweep", "--cpus", "1,2", "--tasks", "3", "--pages", "8", "--nodes", "2"])
    assert (run.cpus, run.tasks, run.repeat) == (2, 3, 1) and (sweep.cpus, sweep.tasks, sweep.repeat) == ([1, 2], [3], 3)
    assert (run.pages, run.nodes) == (sweep.pages, sweep.nodes) == (8, 2)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_help_lists_every_option(command):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([command, "--help"]) == 0
    missing = [s for s in _options(command) if s.startswith("--") and s not in out.getvalue()]
    assert missing == []


def test_the_sweep_planner_builds_a_run_spec_of_each_point(monkeypatch):
    from shmrss import runspec
    from shmrss.sweep_plan import plan_points

    built: list[RunSpec] = []
    real = RunSpec.from_args.__func__

    def spy(cls, args, topo=None):
        built.append(real(cls, args, topo))
        return built[-1]

    monkeypatch.setattr(runspec.RunSpec, "from_args", classmethod(spy))
    args = build_parser().parse_args(["sweep", "--design", "atomic,percpu", "--cpus", "1,2", "--repeat", "2",
                                      "--oversubscribe", "--duration", "1"])
    points, _ = plan_points(args, TOPO)
    assert len(points) == 2 * 2 * 2 and len(built) == 2 * 2  # one spec per combination, not per repeat
    assert sorted((s.designs, s.ncpu) for s in built) == [(("atomic",), 1), (("atomic",), 2), (("percpu",), 1),
                                                          (("percpu",), 2)]


def test_a_sweep_point_refused_by_the_run_spec_fails_the_plan():
    """A point the run would refuse (the read interval longer than the duration) stops the sweep before
    anything runs, naming the point."""
    from shmrss.results_file import InputError
    from shmrss.sweep_plan import plan_points

    args = build_parser().parse_args(["sweep", "--design", "atomic", "--cpus", "1", "--repeat", "1",
                                      "--duration", "0.2", "--read-interval", "500"])
    with pytest.raises(InputError, match=r"atomic page_fault1 processes 1 CPU: --read-interval 500 ms is longer"):
        plan_points(args, TOPO)
