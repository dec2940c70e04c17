"""What the built-in kernel designs (``k-percpu``, ``k-tree``) share: binding a run's segment to the C.

``bind(words, lib, setup_entry, g_shared)`` writes the glue's entry addresses into the
design's global words 0.., then calls the glue's setup, which binds the shim to this
run's possible/online CPUs and the segment's shared area at global word ``g_shared``.
"""

from shmrss import layout as L


def bind(words, lib, setup_entry: str, g_shared: int) -> None:
    if int(words[L.H_PCPU_KSTRIDE]) != 1:
        raise ValueError(f"{lib.name} needs each CPU's unit contiguous, as the kernel's: run it without --pack")
    g = int(words[L.H_GLOBAL])
    for i, a in enumerate(lib.addresses()):
        words[g + i] = a
    cpus = int(words[L.H_POSSIBLE]) | int(words[L.H_ONLINE]) << 16 | L.OWNER_PARENT << 32
    if lib.call(setup_entry, words.ctypes.data, (g + g_shared) * 8, int(words[L.H_PCPU_CSTRIDE]) * 8, cpus) != 0:
        raise ValueError(f"{lib.name}: the shim refused this run's CPUs (at most 512)")
