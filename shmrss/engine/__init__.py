"""The engine layer: each design's compiled loops and the child processes that run them.

``build`` specialises the ``loops`` template (a package, never imported under
its own name) to a design and compiles what a run needs; ``processes`` holds
the bodies of the emulated CPUs, the reader and the reclaimer.
"""

from shmrss.engine.build import engine_for, prepare_engines
from shmrss.engine.processes import cpu_process, reader_process, reclaimer_process

__all__ = ["cpu_process", "engine_for", "prepare_engines", "reader_process", "reclaimer_process"]
