"""Template of ``shmrss verify``'s compiled driver, specialised per design (``shmrss.specialise``).

``step(words, kind, cpu, k, d, out)`` applies one op to mm 0 and records what can be
read of every member in ``out[k] = (approximate, precise, under, over)`` (the accuracy range); kinds: ADD (member k, delta
d on CPU cpu, the page-fault path), OFFLINE (CPU cpu goes offline), INIT (mm_init).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import raw
from shmrss.designs.interface import bind
from shmrss.specialise import entry

_NAMES = ("add", "cpu_offline", "mm_init", "read_approx", "read_precise", "approx_bound")
add, cpu_offline, mm_init, read_approx, read_precise, approx_bound = bind("atomic", _NAMES)  # DESIGN-IMPORT
ADD, OFFLINE, INIT = range(3)


@njit(inline="always")
def _apply(seg, kind, cpu, k, d):
    if kind == ADD:
        add(seg, cpu, 0, 0, k, d, 1)
    elif kind == OFFLINE:
        cpu_offline(seg, cpu)
    elif kind == INIT:
        mm_init(seg, 0)


@entry("void(int64[::1], int64, int64, int64, int64, int64[:, ::1])")
def step(words, kind, cpu, k, d, out):
    seg = raw(words)
    _apply(seg, kind, cpu, k, d)
    for m in range(L.NMEMBERS):
        out[m, 0] = read_approx(seg, 0, m)
        out[m, 1] = read_precise(seg, 0, m)
        out[m, 2], out[m, 3] = approx_bound(seg, 0, m)
