"""Design ``c``: a user's counter library named by ``--design c:SPEC.toml`` (shmrss/kernel/spec.py).

The library's C is built with the shim and run from the pinned loop as ``k-percpu`` runs
the kernel's: its add inlined when clang built it, every other entry called through
addresses the parent writes into the global words before forking. One counter object per mm member, ``size(P)`` bytes
(rounded up to 8) each, packed in the mm's region as the C lays it out; its per-CPU
memory (``alloc_percpu``) comes from the mm's words in every CPU's unit
(``percpu_bytes`` per object). Every engine check applies: precise equals truth at
quiescence, approximate within the library's ``bound`` (or no bound stated), zero at
teardown. The monitor cannot read it (its layout is the library's own and the library is
not loaded there: UNMONITORED); a CPU killed inside a call is not recovered (no journal).
"""

from numba import njit

from shmrss import layout as L
from shmrss.designs import _kernel
from shmrss.designs._kernel import (  # noqa: F401  (the part of the interface every C design shares)
    cpu_offline, g as _g, obj as _obj, read_precise, recover, resolve, switch_mm,
)
from shmrss.designs._common import dparam, members_not_zero
from shmrss.kernel import ccall as _cc
from shmrss.segment import DesignShape

NAME = "c"
ID = 10
SUMMARY = "a user's C counter library named by a c: spec"
BOUND = "the library's bound(), or no bound stated"
ccall = _cc.ccall
add = _kernel.adder(NAME, "cg_add")
NO_BOUND = 1 << 40  # what approx_bound reports when the spec names no bound function
UNMONITORED = ("a c: spec's counter object is laid out by its own C, which the monitor has not loaded: "
               "approx, bound and precise are not shown (truth is)")

G_ADD, G_SUM, G_INIT, G_DESTROY, G_OFFLINE, G_READ, G_BOUND = range(7)  # spec.ENTRIES' addresses
G_SHARED = 8
SHARED_WORDS = 128
D_SIZE, D_PCPU = range(2)


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    from shmrss.kernel import spec

    s, _ = spec.load()
    size = spec.call("cg_size", possible)
    if not 0 < size <= 1 << 20:
        raise ValueError(f"{s.name}: size({possible}) returned {size}")
    size = -(-size // 8) * 8
    unit = -(-s.percpu_bytes // 8) * 8  # each object's per-CPU bytes, from its own 8-byte boundary
    return DesignShape(pcpu_words_per_mm=max(L.NMEMBERS * unit // 8, 1), mm_words=L.NMEMBERS * size // 8,
                       global_words=G_SHARED + SHARED_WORDS, params=(size, unit))


def setup(words, ncpu: int, nodes) -> None:
    """Write the library's entry addresses, bind the shim to this run's CPUs, boot its callbacks."""
    from shmrss.kernel import spec

    _kernel.bind(words, spec, "cg_setup", G_SHARED, name="a c: design")



@njit(inline="always")
def read_approx(seg, mm, k):
    return ccall(seg, _g(seg, G_READ), L.OWNER_READER, _obj(seg, mm, k), 0)


@njit(inline="always")
def approx_bound(seg, mm, k):
    e = ccall(seg, _g(seg, G_BOUND), L.OWNER_READER, _obj(seg, mm, k), 0)
    if e < 0:
        return NO_BOUND, NO_BOUND
    return e, e


@njit(inline="always")
def mm_init(seg, mm):
    arena = (seg[L.H_PCPU] + mm * seg[L.H_PCPU_KWORDS]) * 8
    for k in range(L.NMEMBERS):
        ccall(seg, _g(seg, G_INIT), _obj(seg, mm, k), arena + k * dparam(seg, D_PCPU), dparam(seg, D_PCPU))


@njit(inline="always")
def mm_destroy(seg, mm):
    bad = members_not_zero(read_precise, seg, mm)
    for k in range(L.NMEMBERS):
        ccall(seg, _g(seg, G_DESTROY), _obj(seg, mm, k), 0, 0)
    return bad


@njit(inline="always")
def peek_precise(seg, mm, k):
    return 0, 0  # the monitor has no library to call



def describe() -> dict:
    """What the result records of the C this run called (shmrss.kernel.spec.provenance)."""
    from shmrss.kernel import spec

    return spec.provenance()
