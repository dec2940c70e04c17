"""``shmrss verify``'s compiled driver: text that ``verify_writes.copy`` appends to a design's own source.

In the copy (one module: the design's file, then this one) the design's functions are
bound from the copy itself, and the name ``spin_lock`` is rebound to ``logged_spin_lock``
before anything compiles, so every spinlock the design's own code takes is logged: its
byte offset in the segment, in the ``LOG_WORDS`` that verify appends to the segment's
global region (word 0 the count, then a ring). The kernel C's locks are logged by the
shim of verify's own build of the library (``SHIM_LOG_LOCKS``), in the same unit.

``verify_apply(words, kind, cpu, k, d)`` applies one op to mm 0; kinds: ADD (member k,
delta d on CPU cpu, the page-fault path), OFFLINE (CPU cpu goes offline), INIT (mm_init).
``verify_read(words, out)`` records what can be read of every member in ``out[k] =
(approximate, precise, under, over)`` (the accuracy range). Imported on its own, it binds
design ``atomic`` and logs nothing.
"""

import sys

from numba import njit

from shmrss import layout as L
from shmrss.atomics import raw, spin_lock as _take_lock
from shmrss.designs.interface import bind, function
from shmrss.specialise import entry

LOG_WORDS = 64
VERIFY_NAMES = ("add", "cpu_offline", "mm_init", "read_approx", "read_precise", "approx_bound")
VERIFY_ADD, VERIFY_OFFLINE, VERIFY_INIT = range(3)


@njit(inline="always")
def logged_spin_lock(a, i, owner):
    """``spin_lock``, then the lock's byte offset appended to the log at the end of the global words."""
    spins = _take_lock(a, i, owner)
    at = a[L.H_GLOBAL] + a[L.H_GLOBAL_WORDS] - LOG_WORDS
    n = a[at]
    a[at + 1 + n % (LOG_WORDS - 1)] = i * 8
    a[at] = n + 1
    return spins


spin_lock = logged_spin_lock  # in the copy: the design's own calls, resolved when they compile


def verify_here(names):
    """The design's functions (or the interface's defaults) from the module this text is part of."""
    return tuple(function(sys.modules[__name__], n) for n in names)


add, cpu_offline, mm_init, read_approx, read_precise, approx_bound = bind("atomic", VERIFY_NAMES)  # DESIGN-IMPORT


@entry("void(int64[::1], int64, int64, int64, int64)")
def verify_apply(words, kind, cpu, k, d):
    seg = raw(words)
    if kind == VERIFY_ADD:
        add(seg, cpu, 0, 0, k, d, 1)
    elif kind == VERIFY_OFFLINE:
        cpu_offline(seg, cpu)
    elif kind == VERIFY_INIT:
        mm_init(seg, 0)


@entry("void(int64[::1], int64[:, ::1])")
def verify_read(words, out):
    seg = raw(words)
    for m in range(L.NMEMBERS):
        out[m, 0] = read_approx(seg, 0, m)
        out[m, 1] = read_precise(seg, 0, m)
        out[m, 2], out[m, 3] = approx_bound(seg, 0, m)
