"""Processes: whether one is alive (the one check the monitor, the contention probe and segment clean-up
share), and a child's request to die with its parent.

A bottom-layer module: it imports nothing of shmrss.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` (SIGKILL) to this child when the parent dies, so no child spins or
    compiles on forever. With ``parent`` (the parent's pid before the fork), a parent that died before the
    request was made is caught too: the child sends itself ``sig``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:
        pass  # no prctl: the parent's exit paths still kill its children
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this PID namespace has not exited.

    Signal 0 finds it (EPERM, another user's process, counts as alive) and it is not a zombie (exited,
    waiting for its parent to reap it: it runs no code and holds no memory). A pid of 0 or below names a
    process group, never one process, and a pid beyond the kernel's range (read from an untrusted segment
    header, say) names none: both are False."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass
    return _state(pid) not in ("Z", "X", "gone")


def _state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, D, Z, ...); "gone" if the process went since the signal;
    "?" if /proc cannot tell (mounted with hidepid): the signal's answer stands."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    except OSError:
        return "?"
    # "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ")"
    return line[line.rfind(b")") + 2:][:1].decode("ascii", "replace") or "?"
