"""One sweep point: ``shmrss run ... --json TMP`` as a child Python in a process group of its own, with
the sweep's SIGINT/SIGTERM/SIGHUP/SIGQUIT forwarded to it, a time limit, and the outcome classified for the
results file. The child is sent SIGTERM by the kernel if the sweep dies (PR_SET_PDEATHSIG), and the next sweep
removes the temporary directory a killed one left.

The child has its own process group so that a terminal's Ctrl-C reaches only
the sweep, which forwards it once: the child then stops measuring and writes a
partial result, as ``shmrss run`` does on its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

GRACE_S = 20.0  # after a forwarded signal or a timeout, how long the child gets to write and clean up


@dataclass
class Outcome:
    status: str  # ok | invariant_failed | partial | failed
    exit_code: int | None
    wall_s: float
    result: dict | None
    error: str | None


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)  # what shmrss run ends cleanly on
TMP_PREFIX = "shmrss-sweep-"


class Forwarder:
    """Catches SIGINT, SIGTERM, SIGHUP and SIGQUIT in the sweep and forwards them to the running child's
    process group (a hang-up reaches only the terminal's foreground group, not the child's own)."""

    def __init__(self):
        self.signum: int | None = None
        self.count = 0
        self.child: subprocess.Popen | None = None
        self._old = {}

    def __enter__(self):
        for s in FORWARDED:
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum, frame):
        self.signum = self.signum or signum
        self.count += 1
        child = self.child
        if child is not None and child.poll() is None:
            try:
                # a second signal: the user insists; the child is killed and its segment removed
                os.killpg(child.pid, signum if self.count == 1 else signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


def run_point(argv: tuple[str, ...], fwd: Forwarder, timeout_s: float, verbose: bool) -> Outcome:
    """Run one ``shmrss run`` and say what came of it."""
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        out = Path(tmp) / "result.json"
        log = Path(tmp) / "stderr.txt"
        # ``-m shmrss`` (shmrss/__main__.py), not ``-m`` on the CLI module, which would load the CLI twice
        cmd = [sys.executable, "-m", "shmrss", *(["-v"] if verbose else []), *argv, "--json", str(out)]
        t0 = time.perf_counter()
        timed_out = False
        with open(log, "wb") as errf:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                     process_group=0, preexec_fn=_dies_with(os.getpid()))
            fwd.child = child
            try:
                if fwd.signum is not None:  # the signal came between two points
                    os.killpg(child.pid, fwd.signum)
                deadline, kill_at = t0 + timeout_s, None
                while True:
                    try:
                        child.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    now = time.perf_counter()
                    if not timed_out and now > deadline:
                        timed_out = True
                        logger.warning("the point ran past its {:.0f} s limit: stopping it", timeout_s)
                        _signal(child, signal.SIGTERM)
                    if kill_at is None and (timed_out or fwd.signum is not None):
                        kill_at = now + GRACE_S
                    if kill_at is not None and now > kill_at:
                        _signal(child, signal.SIGKILL)
            finally:
                if child.poll() is None:  # an exception in the sweep itself: leave nothing running
                    _signal(child, signal.SIGKILL)
                    child.wait()
                fwd.child = None
        wall = time.perf_counter() - t0
        code = child.returncode
        if code is not None and code < 0:
            _remove_segments_of(child.pid)  # killed: its own cleanup did not run
        result = _load(out)
        err_text = log.read_text(errors="replace")
        if verbose and err_text.strip():
            for ln in err_text.strip().splitlines():
                logger.debug("  | {}", ln)
    if result is None:
        why = _last_error(err_text) or f"exit status {code}"
        if timed_out:
            why = f"timed out after {timeout_s:.0f} s; {why}"
        return Outcome("failed", code, wall, None, why)
    if timed_out:
        result.setdefault("warnings", []).append(f"stopped by the sweep after its {timeout_s:.0f} s time limit")
    if result.get("partial") or timed_out:
        return Outcome("partial", code, wall, result, None)
    bad = [k for k, ok in result.get("invariants", {}).items() if not ok]
    if bad:
        return Outcome("invariant_failed", code, wall, result, "invariant failed: " + ", ".join(bad))
    return Outcome("ok", code, wall, result, None)


def _dies_with(parent: int):
    """The child's first act: SIGTERM when the sweep dies (``kill -9``, a crash), so that it stops, removes its
    segment and exits as on any SIGTERM, instead of measuring on as an orphan."""
    from shmrss.procs import die_with_parent  # imported here: the child runs only this between fork and exec

    def setup() -> None:
        die_with_parent(signal.SIGTERM, parent)

    return setup


def remove_stale_tmpdirs() -> list[str]:
    """Remove the temporary directories of sweeps that died without removing them (``kill -9``): the
    ``shmrss-sweep-<pid>-*`` of this user whose pid is gone. Returns their paths."""
    import shutil
    import stat

    from shmrss.procs import pid_alive

    tmp, removed = Path(tempfile.gettempdir()), []
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(TMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid = name[len(TMP_PREFIX):].split("-", 1)[0]
        path = tmp / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if pid.isdigit() and not pid_alive(int(pid)) and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _signal(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    from shmrss.results_file import results_of_document

    results = results_of_document(data)  # {"schema_version", "results"}, or an older run's object or list
    # one point is one design at one P: a single result
    return results[0] if results and len(results) == 1 else None


def _last_error(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("shmrss: error:", "ERROR:")) or "Error" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else None


def _remove_segments_of(pid: int) -> None:
    from shmrss import layout as L
    from shmrss.segment import SegmentError, list_segments, pid_namespace, read_header

    import posix_ipc

    for name in list_segments():
        try:
            h = read_header(name)  # never blocks on a FIFO nor follows a symlink planted in /dev/shm
        except SegmentError:
            continue
        if int(h[L.H_OWNER_PID]) == pid and int(h[L.H_PIDNS]) == pid_namespace():
            try:
                posix_ipc.unlink_shared_memory("/" + name)
                logger.debug("removed /{} left by the killed point", name)
            except posix_ipc.Error:
                pass
