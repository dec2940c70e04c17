"""The suite's compile step (tests/precompile.py): what it compiles, that a warm cache skips it, that a failure
is reported rather than raised."""

from __future__ import annotations

import precompile
from shmrss import designs
from shmrss.lifecycle import VARIANT_DESIGN


def test_the_jobs_cover_every_design_and_the_lifecycle_designs_longest_first():
    jobs = precompile._jobs()
    assert {d for k, d in jobs if k == "driver"} == set(designs.DESIGNS)
    assert {d for k, d in jobs if k == "monitor"} == set(designs.DESIGNS)
    assert {d for k, d in jobs if k == "lifecycle"} == set(VARIANT_DESIGN.values())
    assert jobs[0] == ("lifecycle", "single") and len(jobs) == len(set(jobs))


def test_a_stamped_cache_compiles_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(precompile, "cache_dir", lambda: tmp_path)
    precompile._stamp().touch()

    def no_pool(*a, **k):
        raise AssertionError("a pool was started although the stamp was there")

    monkeypatch.setattr(precompile.mp, "get_context", no_pool)
    assert precompile.precompile() == []


def test_the_stamp_follows_the_sources_and_the_kernel_trees(monkeypatch, tmp_path):
    monkeypatch.setattr(precompile, "cache_dir", lambda: tmp_path)
    monkeypatch.setenv("SHMRSS_KERNEL_SRC", "/a")
    a = precompile._stamp()
    monkeypatch.setenv("SHMRSS_KERNEL_SRC", "/b")
    assert precompile._stamp() != a
    edited = tmp_path / "edited.py"
    edited.write_text("x = 1\n")
    monkeypatch.setattr(precompile, "ROOT", tmp_path)
    monkeypatch.setattr(precompile, "SOURCES", [edited])
    b = precompile._stamp()
    edited.write_text("x = 2\n")
    assert precompile._stamp() != b


def test_a_job_that_fails_is_reported_not_raised():
    why = precompile._compile(("driver", "no-such-design"))
    assert why is not None and why.startswith("driver no-such-design: ") and "\n" not in why
