"""The compiled loops of one design: the emulated CPU, the reader's pass, OOM, the checks, recovery.

This package is a template (``shmrss.specialise``): ``shmrss.engine.build``
copies it once per design with the line marked DESIGN-IMPORT in ``design.py``
naming that design, so each design gets its own package whose loops call the
design's functions directly (inlined, no dispatch per event) and which numba
caches on disk. One module per concern: ``cpu`` (the emulated CPU and its
scheduler in ``sched``, updates in ``apply``), ``reclaim``, ``reader``,
``oom``, ``checks`` and ``recovery``. Every entry point is compiled only when
a run needs it (``ENTRY_GROUPS``).

Ground truth protocol, per event on CPU c (all on c's own lines):
  1. VAR += |d|      (published before the truth, so a reader that sees the truth sees VAR)
  2. truth[mm][k] += d
  3. the design's update
  4. COMMIT = VAR    (the update is complete)
A reader that reads COMMIT and the truth before a read (C0, T0) and the truth
and VAR after it (T1, V1) knows that every value of c's contribution the read
could have seen lies within W = V1 - C0 of both T0 and T1: the envelope
[max(T0, T1) - W, min(T0, T1) + W], exact ([T0, T1]) when the truth only grows.
"""

from .checks import design_consistent, init_mms, quiescent_check, teardown, threads_off
from .cpu import cpu_main, exit_all
from .design import RECOVERY_VAR
from .oom import oom_pass
from .reader import reader_pass
from .reclaim import reclaimer_main
from .recovery import recover_dead, release_owner, settle_dead

# what each kind of run calls: a run compiles the groups it uses and no other
ENTRY_GROUPS = {
    "run": ("cpu_main", "exit_all", "init_mms", "quiescent_check", "teardown", "design_consistent", "threads_off",
            "release_owner"),
    "reader": ("reader_pass",),
    "oom": ("oom_pass",),
    "reclaimer": ("reclaimer_main",),
    "faults": ("recover_dead", "settle_dead"),
}

__all__ = ["ENTRY_GROUPS", "RECOVERY_VAR", "cpu_main", "design_consistent", "exit_all", "init_mms", "oom_pass",
           "quiescent_check", "reader_pass", "reclaimer_main", "recover_dead", "release_owner", "settle_dead",
           "teardown", "threads_off"]
