"""Shared fixtures: a leak check on /dev/shm/shmrss-* segments, a CLI runner and a segment factory."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import psutil
import pytest

from shmrss import designs
from shmrss.segment import PREFIX, SHM_DIR, Geometry, Segment, owner_pid

pytest_plugins = ["ci_skips"]  # skips that cannot hide in CI
_SEGMENTS_BEFORE = pytest.StashKey[set]()


def _shmrss_segments() -> set[str]:
    try:
        return {n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)}
    except FileNotFoundError:
        return set()


def _foreign_and_alive(name: str) -> bool:
    """A segment owned by a live process outside this test session (someone else's run)."""
    pid = owner_pid(name)
    if pid is None or pid <= 0 or pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return False
    me = os.getpid()
    try:
        return all(p.pid != me for p in proc.parents())
    except psutil.Error:
        return False


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one worker more than the usable CPUs, at most 4, since most of a
    test's time waits on a run's fixed duration or a child's start; none for the stress tests, which each
    want every core. Beyond 4 the tests' runs, pinned to the first CPUs, would only queue on them."""
    if "stress" in (config.option.markexpr or "").replace("not stress", ""):
        return 0
    return min(4, len(os.sched_getaffinity(0)) + 1)


def pytest_collection_modifyitems(config, items):
    """pytest-xdist hands out single tests (``--dist loadgroup``, pyproject): a test that uses a fixture of
    its module (a real run, a built wheel) stays with its module's others, so the fixture is made once."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        if defs is not None and any(d.scope == "module" for ds in defs.name2fixturedefs.values() for d in ds):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked ``alone`` (it measures contention or a live rate) has the host to itself: with
    pytest-xdist it waits for the other workers' running tests and holds back their next ones. A
    readers-writer lock of two flock files, the turnstile first so that a waiting ``alone`` test is not
    starved by the others' back-to-back shared holds. Setup is inside: a module fixture may measure."""
    if not _is_xdist_worker(item.config):
        yield
        return
    import fcntl

    # every worker's base temporary directory is popen-gwN inside the controller's, kept and pruned by pytest
    base = item.config._tmp_path_factory.getbasetemp().parent / "host-lock"
    alone = item.get_closest_marker("alone") is not None
    with open(f"{base}.turnstile", "a") as turnstile, open(f"{base}.room", "a") as room:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


def pytest_sessionstart(session):
    """Note the segments there before the run (in the one process that sees all of it: with pytest-xdist,
    the controller, since a worker's view ends while another's tests still run)."""
    if not _is_xdist_worker(session.config):
        session.config.stash[_SEGMENTS_BEFORE] = _shmrss_segments()


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if it leaves a /dev/shm/shmrss-* segment that was not there before."""
    if _is_xdist_worker(session.config) or _SEGMENTS_BEFORE not in session.config.stash:
        return
    new = _shmrss_segments() - session.config.stash[_SEGMENTS_BEFORE]
    # other engineers' live runs may come and go meanwhile; only orphans are ours to answer for
    leaked = sorted(n for n in new if not _foreign_and_alive(n))
    if leaked:
        session.config.get_terminal_writer().line(
            f"test session left shared-memory segments behind: {leaked}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def compiled_engines():
    """Every design's compiled loops with every entry point, built once before the tests, in parallel on the
    usable CPUs (``prepare_engines``), as a run does for the designs it uses; then what many tests would
    otherwise each compile at once on a cold cache (tests/precompile.py)."""
    import fcntl

    from precompile import precompile
    from shmrss.compile_cache import cache_dir
    from shmrss.engine.build import ALL_GROUPS, prepare_engines

    # pytest-xdist's workers each run this: one compiles a cold cache while the others wait, then load it
    with open(cache_dir() / "tests-prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prepare_engines(list(designs.DESIGNS), ALL_GROUPS)
        precompile()


@pytest.fixture
def run_cli():
    """``run_cli(args, tmp_path) -> (exit_code, json_result)`` through ``shmrss.cli.main``.

    Appends ``--json PATH --no-calibrate``; json_result is None when no file was
    written, else the loaded JSON (a list when several designs ran).
    """
    from shmrss.cli import main

    def run(args: list[str], tmp_path: Path):
        path = Path(tmp_path) / f"result-{len(list(Path(tmp_path).glob('result-*.json')))}.json"
        code = main([*args, "--json", str(path), "--no-calibrate"])
        from results_schema import load_run_json

        data = load_run_json(path) if path.exists() else None
        return code, data

    return run


def make_geometry(design: str, ncpu: int, possible: int | None = None, nmm: int = 1, ntask: int = 1,
                  line_words: int = 8, pack: bool = False, ring: int = 16, tape_steps: int = 2, nodes=None,
                  options=None) -> Geometry:
    """The design's shape is computed for the same line size (pcpcache and single place words by line)."""
    mod = designs.get(design)
    possible = possible or ncpu
    shape = mod.shape(ncpu, possible, nmm, line_words=line_words, nodes=nodes, options=options)
    return Geometry(ncpu=ncpu, possible=possible, nmm=nmm, ntask=ntask, line_words=line_words, pack=pack,
                    slice=100, design_id=mod.ID, shape=shape, tape_steps=tape_steps, ring=ring)


@pytest.fixture(scope="session")
def new_segment():
    """A context manager ``new_segment(geometry) -> Segment`` that unlinks and closes on exit.

    Session scoped (a plain function), so hypothesis tests can use it once per example.
    """

    @contextlib.contextmanager
    def make(g: Geometry):
        seg = Segment.create(g)
        try:
            yield seg
        finally:
            seg.unlink()
            seg.close()

    return make


@pytest.fixture(scope="session")
def geometry():
    return make_geometry
