"""k-percpu's library: the kernel's ``lib/percpu_counter.c`` with the shim and glue written here.

``LIB`` (a ``klib.KernelLib``) builds and loads the tree ``$SHMRSS_KERNEL_SRC``
names (``--kernel-src`` sets it), once per process; the module's functions are its methods.
"""

from __future__ import annotations

from shmrss.kernel import klib

ENTRIES = ("kp_add", "kp_sum", "kp_init", "kp_destroy", "kp_offline")  # k-percpu's global words 0..4
LIB = klib.KernelLib(name="k-percpu", c_file="lib/percpu_counter.c", header="linux/percpu_counter.h",
                     glue="glue_percpu.c", entries=ENTRIES, setup="kp_setup")
DEFINES = klib.DEFINES
library, loaded, addresses, call = LIB.library, LIB.loaded, LIB.addresses, LIB.call
require, provenance = LIB.require, LIB.provenance
