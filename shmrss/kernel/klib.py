"""A built-in kernel design's library: one kernel C file, its header and glue written here, from a tree.

``KernelLib`` is what ``k-percpu`` (``kpercpu``) and ``k-tree`` (``ktree``) have in
common: the ``build.Library`` for a kernel tree, built and loaded once per process
from the tree ``$SHMRSS_KERNEL_SRC`` names (``--kernel-src`` sets it), the glue's
entry addresses, a call from Python, and the result's provenance record.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from shmrss.kernel import build, inline, source

DEFINES = (("CONFIG_SMP", "1"), ("CONFIG_HOTPLUG_CPU", "1"))  # as x86-64 distribution kernels build


@dataclass(frozen=True)
class KernelLib:
    name: str  # the design
    c_file: str  # in the tree, e.g. lib/percpu_counter.c
    header: str  # under include/, e.g. linux/percpu_counter.h
    glue: str  # in shmrss/kernel/c
    entries: tuple[str, ...]  # the glue functions whose addresses are the design's global words 0..
    setup: str = ""  # the glue's setup entry (shim_setup and the library's boot)
    extra_defines: tuple[tuple[str, str], ...] = ()  # e.g. verify's SHIM_LOG_LOCKS build

    @property
    def files(self) -> tuple[str, str]:
        return self.c_file, f"include/{self.header}"

    def library(self, src: Path) -> build.Library:
        return build.Library(name=self.name, sources=(src / self.c_file, build.SHIM_DIR / self.glue),
                             kernel_headers=((self.header, src / "include" / self.header),),
                             defines=DEFINES + self.extra_defines)

    def loaded(self):
        """(the loaded library, the kernel version) for ``$SHMRSS_KERNEL_SRC``; KernelSourceError/BuildError."""
        lib, version, so = _loaded(self, os.environ.get(source.ENV), build.route())
        inline.activate(self.name, so, lib)  # the loops compiled from now on inline this build's add
        return lib, version

    def addresses(self) -> list[int]:
        lib, _ = self.loaded()
        return [build.address(lib, n, self.name) for n in self.entries]

    def call(self, name: str, *args: int) -> int:
        lib, _ = self.loaded()
        return build.function(lib, name)(*args, *([0] * (4 - len(args))))

    def require(self, design_text: str, kernel_src: str | None) -> None:
        """Before a run: ``--kernel-src`` into the environment (the CPUs inherit it), and the library
        built and loaded if ``design_text`` names this design (KernelSourceError/BuildError)."""
        if kernel_src:
            os.environ[source.ENV] = str(Path(kernel_src).expanduser().resolve())
        if any(n.strip() == self.name for n in design_text.split(",")):
            self.loaded()

    def provenance(self) -> dict:
        """The result's ``kernel_c``: which C ran, built how, and how the loop reached it."""
        _, version = self.loaded()
        how = inline.route(self.name)
        return {"source": str(source.kernel_dir(os.environ.get(source.ENV), self.files) / self.c_file),
                "kernel": version, "compiler": build.route_compiler(how), "flags": "-O2", "call": how}


@functools.lru_cache(maxsize=8)
def _loaded(lib: KernelLib, src_text: str | None, route: str):
    src = source.kernel_dir(src_text, lib.files)
    so = build.build(lib.library(src))
    return build.load(so), source.version(src), so
