"""Design ``k-tree``: HPCC's own ``lib/percpu_counter_tree.c``, compiled from ``$SHMRSS_KERNEL_SRC``.

Not a port (``tree`` is): the engine runs the C (against the shim in ``shmrss/kernel/c``;
glue ``glue_tree.c``), its add inlined into the loop when clang built it, every other
entry called through addresses the parent writes into the design's global words before
forking (docs/kernel-c.md, the two routes). mm->rss_stat is laid out as HPCC's mm patch lays
it out: four ``struct percpu_counter_tree`` (64 bytes each) in the mm, their tree items
(``____cacheline_aligned_in_smp``, one line each) after them, and one per-CPU
allocation holding the four level-0 ``unsigned long`` of every CPU.

The C keeps ``counter->items`` and ``counter->approx_sum.a`` as plain pointers into the
mm, valid in the process that ran ``init`` and in the processes it forks (they inherit
its mapping). Deviations: no journal, so a CPU killed inside an update is not recovered
(``recover`` reports nothing); the approximate read and the accuracy range are calls
into the C's static inlines (the kernel inlines them), not loads. The monitor, which has
not loaded the C, takes the same values with loads (``peek_approx``, ``peek_bound``,
``peek_precise``): the fields at the offsets the C reports, ``approx_sum`` less the
address the owner mapped the segment at (``H_BASE``), followed only into the mms or
CPU 0's unit.
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load
from shmrss.designs import _kernel
from shmrss.designs._kernel import (  # noqa: F401  (the part of the interface every C design shares)
    PCPU_WORDS, cpu_offline, g as _g, mm_destroy, mm_init, obj as _obj, read_precise, recover, resolve,
    switch_mm,
)
from shmrss.designs._common import dparam, mm_word
from shmrss.kernel import ccall as _cc
from shmrss.segment import DesignShape

NAME = "k-tree"
ID = 11
SUMMARY = "HPCC's lib/percpu_counter_tree.c (from --kernel-src), inlined into or called from the pinned loop"
BOUND = "the C's approx_accuracy_range (under, over): settled counter"
TRANSIENT_CAUSE = "a carry in flight (the range holds for a settled counter)"
ccall = _cc.ccall
add = _kernel.adder(NAME, "kt_add")

G_ADD, G_SUM, G_INIT, G_DESTROY, G_OFFLINE, G_APPROX, G_RANGE = range(7)  # ktree.ENTRIES' addresses
G_SHARED = 8
SHARED_WORDS = 128  # shmrss_glue.h SHIM_SHARED_BYTES / 8
D_SIZE, D_ITEMS, D_ITEM, D_LEVEL0, D_NLEV, D_BIAS, D_APPROX, D_RANGE = range(8)  # the last three: offsets


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    from shmrss.kernel import ktree

    size, items, item, level0, bias, nlev, approx, rng = (ktree.call("kt_layout", i, possible) for i in range(8))
    if size % 64 or items % 64 or level0 % 8:
        raise ValueError(f"struct percpu_counter_tree is {size} bytes, items {items}: k-tree needs whole lines")
    return DesignShape(pcpu_words_per_mm=PCPU_WORDS, mm_words=L.NMEMBERS * (size + items) // 8,
                       global_words=G_SHARED + SHARED_WORDS,
                       params=(size, items, item, level0, nlev, bias, approx, rng))


def setup(words, ncpu: int, nodes) -> None:
    """Load the library, write its entry addresses, bind the shim to this run's CPUs, boot the tree config."""
    from shmrss.kernel import ktree

    _kernel.bind(words, ktree.LIB, "kt_setup", G_SHARED)



@njit(inline="always")
def item_word(seg, mm, k, j):
    """Word of tree item j (levels 1.., the root last) of rss_stat[k]."""
    at = mm_word(seg, mm, 0) * 8 + L.NMEMBERS * dparam(seg, D_SIZE) + k * dparam(seg, D_ITEMS)
    return (at + j * dparam(seg, D_ITEM)) // 8


@njit(inline="always")
def level0_word(seg, mm, k, cpu):
    """``per_cpu_ptr(counter->level0, cpu)`` from the words: the __percpu offset plus the CPU's unit."""
    return (load(seg, (_obj(seg, mm, k) + dparam(seg, D_LEVEL0)) // 8) + cpu * seg[L.H_PCPU_CSTRIDE] * 8) // 8



@njit(inline="always")
def read_approx(seg, mm, k):
    return ccall(seg, _g(seg, G_APPROX), _obj(seg, mm, k), 0, 0)


@njit(inline="always")
def approx_bound(seg, mm, k):
    o = _obj(seg, mm, k)
    return ccall(seg, _g(seg, G_RANGE), o, 0, 0), ccall(seg, _g(seg, G_RANGE), o, 1, 0)


@njit(inline="always")
def read_mm_counter(seg, mm, k):
    """get_mm_counter in HPCC's mm patch: percpu_counter_tree_precise_sum_positive (as ``tree``)."""
    s = read_precise(seg, mm, k)
    return s if s > 0 else 0


@njit(inline="always")
def peek_approx(seg, mm, k):
    """The monitor's approximate read: the header's percpu_counter_tree_approximate_sum as loads,
    ``*approx_sum + bias``. ``approx_sum`` is a plain pointer, valid where the owner mapped the segment
    (H_BASE); the monitor maps it elsewhere, so it follows it as an offset, and only into the mms' region or
    CPU 0's unit, where the C points it (else UNREAD: an mm not initialised yet)."""
    o = _obj(seg, mm, k)
    at = load(seg, (o + dparam(seg, D_APPROX)) // 8) - seg[L.H_BASE]
    if seg[L.H_BASE] == 0 or not (_kernel.in_mms(seg, at, 8) or _kernel.in_unit(seg, at, 8)):
        return _kernel.UNREAD
    return load(seg, at // 8) + load(seg, (o + dparam(seg, D_BIAS)) // 8)


@njit(inline="always")
def peek_bound(seg, mm, k):
    """percpu_counter_tree_approximate_accuracy_range as loads: the counter's (under, over)."""
    at = (_obj(seg, mm, k) + dparam(seg, D_RANGE)) // 8
    return load(seg, at), load(seg, at + 1)


@njit(inline="always")
def peek_precise(seg, mm, k):
    """percpu_counter_tree_precise_sum as loads (it takes no lock): every possible CPU's level-0 word
    through the C's ``level0`` (a __percpu segment offset, followed only into CPU 0's unit), plus bias."""
    o = _obj(seg, mm, k)
    if not _kernel.in_unit(seg, load(seg, (o + dparam(seg, D_LEVEL0)) // 8), 8):
        return _kernel.UNREAD, 0
    s = load(seg, (o + dparam(seg, D_BIAS)) // 8)
    for cpu in range(seg[L.H_POSSIBLE]):
        s += load(seg, level0_word(seg, mm, k, cpu))
    return s, 1



def fits_header(h) -> bool:
    """The structs and items this design's reads index lie inside the mm's region."""
    dp = h[L.H_DPARAM:]
    return (h[L.H_PCPU_KSTRIDE] == 1 and h[L.H_PCPU_KWORDS] >= PCPU_WORDS and dp[D_SIZE] > 0 and dp[D_ITEM] > 0
            and h[L.H_MM_STRIDE] * 8 >= L.NMEMBERS * (dp[D_SIZE] + dp[D_ITEMS])
            and all(0 <= dp[d] and dp[d] % 8 == 0 and dp[d] + w <= dp[D_SIZE]
                    for d, w in ((D_LEVEL0, 8), (D_BIAS, 8), (D_APPROX, 8), (D_RANGE, 16))))


def describe() -> dict:
    from shmrss.kernel import ktree

    return ktree.provenance()
