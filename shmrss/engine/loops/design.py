"""The design this copy of the loops is specialised to: its functions, bound by the one marked line.

``shmrss.specialise`` rewrites the marked line of each copy to name that copy's
design; every other module of the loops imports the design's functions from
here, so they are inlined where they are called (no dispatch per event).
"""

from numba import njit

from shmrss.designs.interface import bind

ENGINE_FUNCTIONS = ("add", "approx_bound", "consistent", "cpu_offline", "mm_destroy", "mm_init", "read_approx",
                    "read_precise", "recover", "release_locks", "resolve", "switch_mm", "task_exit",
                    "thread_created", "threads", "transient_slack")
(add, approx_bound, consistent, cpu_offline, mm_destroy, mm_init, read_approx, read_precise, recover,
 release_locks, resolve, switch_mm, task_exit, thread_created, threads,
 transient_slack) = bind("atomic", ENGINE_FUNCTIONS)  # DESIGN-IMPORT

# the design's operations as calls, for recovery: inlining them into it again would multiply compile time
_add_call = njit(cache=True)(add.py_func)
_switch_call = njit(cache=True)(switch_mm.py_func)
_created_call = njit(cache=True)(thread_created.py_func)
_exit_call = njit(cache=True)(task_exit.py_func)
_recover_call = njit(cache=True)(recover.py_func)
_resolve_call = njit(cache=True)(resolve.py_func)

RECOVERY_VAR = 1 << 40  # added to a dead CPU's VAR while it is recovered: reads overlapping it are not judged
