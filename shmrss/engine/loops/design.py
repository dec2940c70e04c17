"""The design this copy of the loops is specialised to: its functions, bound by the one marked line.

``shmrss.specialise`` rewrites the marked line of each copy to name that copy's
design; every other module of the loops imports the design's functions from
here, so they are inlined where they are called (no dispatch per event).
"""

from numba import njit

from shmrss.designs.interface import bind

ENGINE_FUNCTIONS = ("add", "approx_bound", "consistent", "cpu_offline", "mm_destroy", "mm_init", "publish_hits",
                    "read_approx", "read_mm_counter", "read_precise", "recover", "release_locks", "resolve",
                    "slack_mark", "switch_mm", "task_exit", "thread_created", "threads", "transient_slack")
(add, approx_bound, consistent, cpu_offline, mm_destroy, mm_init, publish_hits, read_approx, read_mm_counter,
 read_precise, recover, release_locks, resolve, slack_mark, switch_mm, task_exit, thread_created, threads,
 transient_slack) = bind("atomic", ENGINE_FUNCTIONS)  # DESIGN-IMPORT

# the design's operations as calls, for the rare paths: inlining them again would multiply compile time.
# Not cache=True: numba would key their cache on the design's file alone, not on what they inline from
# others (single inlines percpu); compiled as part of each cached entry point here, they are cached with it.
_add_call = njit(add.py_func)
_switch_call = njit(switch_mm.py_func)
_created_call = njit(thread_created.py_func)
_exit_call = njit(task_exit.py_func)
_recover_call = njit(recover.py_func)
_resolve_call = njit(resolve.py_func)

RECOVERY_VAR = 1 << 40  # added to a dead CPU's VAR while it is recovered: reads overlapping it are not judged
