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


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind():
    """Fail the session if it leaves a /dev/shm/shmrss-* segment that was not there before."""
    before = _shmrss_segments()
    yield
    new = _shmrss_segments() - before
    # other engineers' live runs may come and go meanwhile; only orphans are ours to answer for
    leaked = sorted(n for n in new if not _foreign_and_alive(n))
    assert not leaked, f"test session left shared-memory segments behind: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def compiled_engines():
    """Every design's compiled loops with every entry point, built once before the tests, in parallel on the
    usable CPUs (``prepare_engines``), as a run does for the designs it uses."""
    from shmrss.engine.build import ALL_GROUPS, prepare_engines

    prepare_engines(list(designs.DESIGNS), ALL_GROUPS)


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
