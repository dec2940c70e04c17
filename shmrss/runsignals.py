"""What the terminating signals do to a run, phase by phase (the table is in docs/signals.md).

The parent alone decides how a run ends. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGALRM:

* before the measurement starts (start-up): stop at once, nothing measured, exit 128 + n;
* while measuring: the first one stops the measurement; what was measured is written as a partial result;
* after the measurement (stopping the CPUs, collecting, writing): recorded only, the complete result is
  written, then the run exits 128 + n (the first signal's number);
* while the parent recovers a dead CPU (``held``): recorded, and served as above once the recovery is done
  (bounded: shmrss.faults gives up after RECOVERY_TIMEOUT_S, 1 s once a signal came).

The CPU, reader and reclaimer children ignore them all (``ignore_in_child``): GNU ``timeout`` and
``sweep --timeout`` signal the whole process group, and a child must not die or raise under the parent's
feet. The signals are blocked across ``fork`` (``blocked``) so that no child runs the parent's handler
between the fork and its own set-up.
"""

from __future__ import annotations

import contextlib
import signal

TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGALRM)
STARTUP, MEASURING, AFTER, HELD = "start-up", "measuring", "after", "held"


class Interrupted(Exception):
    """A terminating signal arrived; ``code`` is the exit status to use (128 + the signal's number)."""

    def __init__(self, code: int):
        super().__init__("interrupted")
        self.code = code

    @property
    def name(self) -> str:
        return signame(self.code - 128)


def signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Guard:
    """The parent's handler of the terminating signals; re-entrant (``with SIGNALS:`` nests)."""

    def __init__(self):
        self.depth = 0
        self.old: dict[int, object] = {}
        self.phase = AFTER
        self.raised = False  # the measurement was already stopped by a signal
        self.pending: int | None = None  # exit code of the first signal that arrived

    def __enter__(self):
        if self.depth == 0:
            self.pending, self.raised = None, False
            for s in TERMINATING:
                self.old[s] = signal.signal(s, self._handle)
        self.depth += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            for s, h in self.old.items():
                signal.signal(s, h)
            self.old.clear()

    def enter(self, phase: str) -> None:
        self.phase = phase
        if phase == STARTUP:
            self.raised = False

    @contextlib.contextmanager
    def held(self):
        """Inside, a signal is recorded only (a CPU's recovery must not stop half done); on leaving, the
        first one is raised if the phase around would have raised it."""
        phase, self.phase = self.phase, HELD
        try:
            yield
        finally:
            self.phase = phase
        if self.pending is not None and not self.raised and phase in (STARTUP, MEASURING):
            self.raised = True
            raise Interrupted(self.pending)

    def _handle(self, signum, frame):
        code = 128 + signum
        if self.pending is None:
            self.pending = code
        if self.phase == STARTUP or (self.phase == MEASURING and not self.raised):
            self.raised = True
            raise Interrupted(code)
        # after the measurement: recorded only, the result is written first


SIGNALS = Guard()


class blocked:
    """Block the terminating signals (around a fork: the child starts with them blocked)."""

    def __enter__(self):
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)


def ignore_in_child() -> None:
    """In a freshly forked child: ignore every terminating signal, then unblock them."""
    for s in TERMINATING:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINATING)
