"""k-tree's library: HPCC's ``lib/percpu_counter_tree.c`` (a tree with the series applied, or a public
copy of its two files laid out as in the kernel) with the shim and ``glue_tree.c`` written here."""

from __future__ import annotations

from shmrss.kernel import klib

ENTRIES = ("kt_add", "kt_sum", "kt_init", "kt_destroy", "kt_offline", "kt_approx", "kt_range")  # words 0..6
LIB = klib.KernelLib(name="k-tree", c_file="lib/percpu_counter_tree.c", header="linux/percpu_counter_tree.h",
                     glue="glue_tree.c", entries=ENTRIES, setup="kt_setup")
library, loaded, addresses, call = LIB.library, LIB.loaded, LIB.addresses, LIB.call
require, provenance = LIB.require, LIB.provenance
