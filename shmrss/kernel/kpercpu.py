"""k-percpu's library: the kernel's ``lib/percpu_counter.c`` with the shim and glue written here.

``library(src)`` is the ``build.Library`` for a kernel tree; ``loaded()`` builds
and loads the one ``$SHMRSS_KERNEL_SRC`` names (``--kernel-src`` sets it), once per process.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from shmrss.kernel import build, source

GLUE = build.SHIM_DIR / "glue_percpu.c"
ENTRIES = ("kp_add", "kp_sum", "kp_init", "kp_destroy", "kp_offline")  # k-percpu's global words 0..4
DEFINES = (("CONFIG_SMP", "1"), ("CONFIG_HOTPLUG_CPU", "1"))  # as x86-64 distribution kernels build


def library(src: Path) -> build.Library:
    return build.Library(
        name="k-percpu", sources=(src / "lib" / "percpu_counter.c", GLUE),
        kernel_headers=(("linux/percpu_counter.h", src / "include" / "linux" / "percpu_counter.h"),),
        defines=DEFINES)


@functools.lru_cache(maxsize=4)
def _loaded(src_text: str | None):
    src = source.kernel_dir(src_text)
    so = build.build(library(src))
    return build.load(so), source.version(src)


def loaded():
    """(the loaded library, the kernel version) for ``$SHMRSS_KERNEL_SRC``; KernelSourceError/BuildError."""
    return _loaded(os.environ.get(source.ENV))


def addresses() -> list[int]:
    lib, _ = loaded()
    return [build.address(lib, n, "k-percpu") for n in ENTRIES]


def call(name: str, *args: int) -> int:
    lib, _ = loaded()
    return build.function(lib, name)(*args, *([0] * (4 - len(args))))


def require(design_text: str, kernel_src: str | None) -> None:
    """Before a run: ``--kernel-src`` into the environment (the CPUs inherit it), and k-percpu's library
    built and loaded if a design named in ``design_text`` needs it (KernelSourceError/BuildError)."""
    if kernel_src:
        os.environ[source.ENV] = str(Path(kernel_src).expanduser().resolve())
    if any(n.strip() == "k-percpu" for n in design_text.split(",")):
        loaded()


def provenance() -> dict:
    """The result's ``kernel_c``: which C ran, built how, and how the loop reached it."""
    _, version = loaded()
    return {"source": str(source.kernel_dir(os.environ.get(source.ENV)) / "lib" / "percpu_counter.c"),
            "kernel": version, "compiler": build.compiler()[1], "flags": "-O2", "call": "called"}
