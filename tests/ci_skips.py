"""A pytest plugin (loaded by conftest.py): in CI, a skip for want of a capability fails the test.

A skip whose reason names a capability the runner lacks (a second core, root, unshare, perf, the kernel
source, clang) fails the test when CI=true, unless .ci/run declared that the runner lacks it (SHMRSS_CI_LACKS,
comma-separated names), so a runner that silently lost its second core, root or namespaces cannot pass
the tests that need them.
"""

from __future__ import annotations

import os
import re

import pytest

CAPABILITIES = {
    "cores": r"needs (2|two) (physical cores|usable CPUs|cores)",
    "root": r"needs root",
    "unshare": r"unshare",
    "perf": r"perf unusable",
    "kernel-src": r"SHMRSS_KERNEL_SRC",
    "clang": r"no clang",
}


def capability_skipped(reason: str) -> str | None:
    """The capability a skip's reason says the runner lacks, or None for any other skip."""
    return next((cap for cap, pattern in CAPABILITIES.items() if re.search(pattern, reason)), None)


def ci_lacks() -> set[str]:
    return {c.strip() for c in os.environ.get("SHMRSS_CI_LACKS", "").split(",") if c.strip()}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci() and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    cap = capability_skipped(reason)
    if cap is not None and cap not in ci_lacks():
        report.outcome = "failed"
        report.longrepr = (f"in CI this test may not skip for want of {cap!r} ({reason}); give the runner "
                           f"{cap}, or declare SHMRSS_CI_LACKS={cap} in .ci/run")
