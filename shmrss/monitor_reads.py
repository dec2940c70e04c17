"""Read-only counter values of a live run for ``shmrss monitor``: loads only, never a store.

For each shown mm and member: the design's approximate read, its ``[under,
over]`` bound, and a precise value. Where a design's own read is pure loads
(atomic, pernode, tree, pcpcache: the RFC's get_mm_counter neither waits nor
retries; every approximate read and bound) it is called as is.
Where it would write or could wait forever, the design's ``peek_precise``
(shmrss/designs/interface.py) gives the monitor a version of loads only:

* percpu, single, single-atomic: the precise read takes a spinlock (a
  store). Here it is the same sum taken without the lock ("precise*", an
  unlocked sum): exact when no CPU is in the slow path at that moment.
* split: the precise read waits while a sequence count is odd; a CPU
  killed in the middle of a fold would leave it odd for good and the monitor
  would hang. Here the same protocol runs with a bounded number of attempts
  and says when it did not settle.

The C designs (k-percpu, k-tree) are read through the C's own layout: the
offsets of its fields the C reports (design parameters), its ``__percpu``
pointers (segment offsets in the shim) and its plain pointers less the
address the owner mapped the segment at (``H_BASE``), each followed only
into the region the C points it at (``UNREAD`` otherwise, shown as "-").
A ``c:`` spec's layout is its own: the monitor says so instead of reading it.

Every function takes the segment words as a read-only array: the monitor maps
the segment without write permission, so a store would fault, not land.

The compiled reads live in ``monitor_jit``, a template specialised per design
(``shmrss.specialise``); the precise value is the design's ``peek_precise``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shmrss import designs, layout as L
from shmrss.designs.interface import fits_header
from shmrss.segment import SegmentError
from shmrss.specialise import specialised

# designs whose "precise" column is an unlocked sum, not the design's locked read
UNLOCKED = frozenset({"percpu", "single", "single-atomic"})
TRUTH, APPROX, UNDER, OVER, PRECISE, SETTLED = range(6)  # the fields of a snapshot
FIELDS = 6
_TEMPLATE = Path(__file__).parent / "monitor_jit.py"


def _snap(design: str):
    return specialised(_TEMPLATE, design, "shmrss_monitor").snap


def check_shape(words: np.ndarray, design: str) -> None:
    """Refuse a header whose design words would send these reads outside their regions.

    ``validate_header`` bounds every region; this bounds what each design
    indexes inside its regions from its own parameters.
    """
    h = [int(x) for x in words[: L.H_WORDS]]
    ok = h[L.H_TRUTH_STRIDE] >= h[L.H_NMM] * L.NMEMBERS and h[L.H_CPUSTAT_STRIDE] >= max(L.S_LC_REUSED, L.S_FB_DONE) + 1
    ok = ok and fits_header(designs.get(design), h)
    if not ok:
        raise SegmentError(f"segment header does not fit the {design} design's layout: not a run of this shmrss")


def unmonitored(design: str) -> str | None:
    """Why the monitor cannot read this design's counters (its UNMONITORED), or None when it can."""
    return getattr(designs.get(design), "UNMONITORED", None)


def warm(design: str) -> None:
    """Compile the design's reads now (on an empty list of mms), before they are timed against a live run."""
    if unmonitored(design):
        return
    words = np.zeros(L.H_WORDS, dtype=np.int64)
    words.flags.writeable = False
    _snap(design)(words, np.zeros(0, dtype=np.int64), np.zeros((0, L.NMEMBERS, FIELDS), dtype=np.int64))


def snapshot(design: str, words: np.ndarray, mms: np.ndarray) -> np.ndarray:
    """``out[i, k] = (truth, approx, under, over, precise, settled)`` of member k of mm ``mms[i]``.

    Each member's truth is read right before its approximate and precise reads,
    so the three are a few loads apart, not a refresh apart.
    """
    out = np.zeros((len(mms), L.NMEMBERS, FIELDS), dtype=np.int64)
    if len(mms):
        _snap(design)(words, np.ascontiguousarray(mms, dtype=np.int64), out)
    return out
