"""The CI skip guard (tests/ci_skips.py): in CI, a skip for want of a capability fails unless declared."""

from __future__ import annotations

import pytest

from ci_skips import capability_skipped

pytest_plugins = ["pytester"]

PROBE = '''
import pytest

@pytest.mark.skipif(True, reason="needs 2 physical cores")
def test_cores():
    pass

def test_root():
    pytest.skip("needs root to give a directory to another user")

def test_other():
    pytest.skip("shmrss run has no --kill yet")
'''


@pytest.mark.parametrize("reason, cap", [
    ("needs 2 physical cores", "cores"), ("needs 2 usable CPUs", "cores"), ("needs 2 cores", "cores"),
    ("needs root to become another user", "root"), ("no unshare(1)", "unshare"),
    ("perf unusable here: no PMU", "perf"), ("no kernel tree: set SHMRSS_KERNEL_SRC", "kernel-src"),
    ("no clang: the inlined route needs clang (apt-get install clang) and gcc", "clang"),
    ("needs GNU timeout", None), ("root reads a mode-000 file", None),
])
def test_the_reason_names_the_capability(reason, cap):
    assert capability_skipped(reason) == cap


@pytest.mark.parametrize("ci, lacks, outcome", [
    ("", "", dict(skipped=3)),  # a developer's machine: skips are skips
    # CI: the two capability skips fail (a skipif mark acts at setup, so pytest counts that one as an error),
    # the other stays a skip
    ("true", "", dict(failed=1, errors=1, skipped=1)),
    ("true", "cores,root", dict(skipped=3)),  # CI that declared the runner lacks both
    ("true", "root", dict(errors=1, skipped=2)),
])
def test_in_ci_a_capability_skip_fails_unless_declared(pytester, monkeypatch, ci, lacks, outcome):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("SHMRSS_CI_LACKS", lacks)
    pytester.makeconftest("pytest_plugins = ['ci_skips']")
    pytester.makepyfile(PROBE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(**outcome)
