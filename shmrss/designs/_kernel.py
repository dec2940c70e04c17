"""What the designs that call C (``k-percpu``, ``k-tree``, ``c:SPEC``) share.

``bind(words, lib, setup_entry, g_shared)`` writes the glue's entry addresses into the
design's global words 0.., then calls the glue's setup, which binds the shim to this
run's possible/online CPUs and the segment's shared area at global word ``g_shared``.
The compiled functions below are the part of the design interface that is the same for
every C design: the glue's entries 0-4 (add, sum, init, destroy, CPU offline) sit at the
same global words in each, and design parameter 0 is the size of one counter object.
``adder(design, entry)`` is a design's ``add``: the glue's add, inlined into the loop on the
inlined route (docs/kernel-c.md), called through global word 0 otherwise.
``mm_init`` and ``mm_destroy`` are the kernel designs' (``k-percpu``, ``k-tree``): one
glue call for the mm's four objects, its ``PCPU_WORDS`` per-CPU words in every CPU's unit
(``c:SPEC`` calls its library once per object instead).
"""

from numba import njit

from shmrss import layout as L
from shmrss.designs._common import dparam, members_not_zero, mm_word
from shmrss.kernel import ccall as _cc

ccall = _cc.ccall
G_ADD, G_SUM, G_INIT, G_DESTROY, G_OFFLINE = range(5)  # every glue's first five entries, in this order
D_SIZE = 0  # design parameter 0: bytes of one counter object
UNREAD = -(1 << 62)  # a monitor read that would follow the C's pointer outside the segment: shown as "-"
# the kernel designs' per-CPU words per mm: k-percpu's four s32 (32 bytes, room for their alignment),
# k-tree's four level-0 unsigned longs
PCPU_WORDS = L.NMEMBERS


def bind(words, lib, setup_entry: str, g_shared: int, name: str | None = None) -> None:
    """``lib``: anything with ``addresses()`` and ``call(entry, ...)``; ``name`` (else ``lib.name``) for errors."""
    name = name or lib.name
    if int(words[L.H_PCPU_KSTRIDE]) != 1:
        raise ValueError(f"{name} needs each CPU's unit contiguous, as the kernel's: run it without --pack")
    g = int(words[L.H_GLOBAL])
    for i, a in enumerate(lib.addresses()):
        words[g + i] = a
    cpus = int(words[L.H_POSSIBLE]) | int(words[L.H_ONLINE]) << 16 | L.OWNER_PARENT << 32
    if lib.call(setup_entry, words.ctypes.data, (g + g_shared) * 8, int(words[L.H_PCPU_CSTRIDE]) * 8, cpus) != 0:
        raise ValueError(f"{name}: the shim refused this run's CPUs (at most 512)")


@njit(inline="always")
def _within(at, size, lo, hi):
    return at >= lo and at % size == 0 and at + size <= hi


@njit(inline="always")
def in_unit(seg, at, size):
    """Byte offset ``at`` (a __percpu pointer: CPU 0's copy) holds ``size`` aligned bytes of CPU 0's unit,
    so each CPU's copy lies in that CPU's unit: a pointer the monitor, which reads segments it does not
    trust, may follow (the header's regions are checked against the mapping). 0, an mm not set up, is not."""
    return _within(at, size, seg[L.H_PCPU] * 8, (seg[L.H_PCPU] + seg[L.H_PCPU_CSTRIDE]) * 8)


@njit(inline="always")
def in_mms(seg, at, size):
    """Byte offset ``at`` holds ``size`` aligned bytes of the mms' region."""
    return _within(at, size, seg[L.H_MM] * 8, (seg[L.H_MM] + seg[L.H_NMM] * seg[L.H_MM_STRIDE]) * 8)


@njit(inline="always")
def obj(seg, mm, k):
    """Byte offset of mm->rss_stat[k] (the C's counter object k of the mm) in the segment."""
    return mm_word(seg, mm, 0) * 8 + k * dparam(seg, D_SIZE)


@njit(inline="always")
def g(seg, i):
    return seg[L.H_GLOBAL] + i


def adder(design: str, entry: str):
    """The design's ``add``: glue function ``entry`` (add_mm_counter) on emulated CPU ``cpu``."""
    call = _cc.entry_call(design, entry)

    @njit(inline="always")
    def add(seg, cpu, task, mm, k, d, fault):
        call(seg, g(seg, G_ADD), cpu, obj(seg, mm, k), d)

    return add


@njit(inline="always")
def cpu_offline(seg, cpu):
    ccall(seg, g(seg, G_OFFLINE), cpu, 0, 0)


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    return 0  # no journal in the C: a killed CPU's update is not recovered (docs/kernel-c.md)


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    return L.RES_BAD


@njit(inline="always")
def read_precise(seg, mm, k):
    return ccall(seg, g(seg, G_SUM), L.OWNER_READER, obj(seg, mm, k), 0)


@njit(inline="always")
def mm_init(seg, mm):
    arena = (seg[L.H_PCPU] + mm * seg[L.H_PCPU_KWORDS]) * 8
    ccall(seg, g(seg, G_INIT), obj(seg, mm, 0), arena, PCPU_WORDS * 8)


@njit(inline="always")
def mm_destroy(seg, mm):
    """check_mm's sums, then the glue's destroy of the mm's objects (mm_free)."""
    bad = members_not_zero(read_precise, seg, mm)
    ccall(seg, g(seg, G_DESTROY), obj(seg, mm, 0), 0, 0)
    return bad
