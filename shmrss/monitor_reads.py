"""Read-only counter values of a live run for ``shmrss monitor``: loads only, never a store.

For each shown mm and member: the design's approximate read, its ``[under,
over]`` bound, and a precise value. Where a design's own read is pure loads
(atomic, pernode, tree, pcpcache: the RFC's get_mm_counter neither waits nor
retries; every approximate read and bound) it is called as is.
Where it would write or could wait forever, the monitor has its own version:

* percpu, single: the precise read takes the counter's spinlock (a store).
  Here it is the same sum taken without the lock ("precise*", an unlocked
  sum): exact when no CPU is in the slow path at that moment.
* split: the precise read waits while a sequence count is odd; a CPU
  killed in the middle of a fold would leave it odd for good and the monitor
  would hang. Here the same protocol runs with a bounded number of attempts
  and says when it did not settle.

Every function takes the segment words as a read-only array: the monitor maps
the segment without write permission, so a store would fault, not land.

The compiled reads live in ``monitor_jit``, loaded through a copy named by a
hash of their sources (numba's disk cache alone would not notice an edit to
a design they inline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from shmrss import layout as L
from shmrss.designs import pcpcache, pernode, split, tree
from shmrss.segment import SegmentError

# designs whose "precise" column is an unlocked sum, not the design's locked read
UNLOCKED = frozenset({"percpu", "single", "single-atomic"})
ATTEMPTS = 64  # sequence-count attempts before a split precise value is called unsettled
TRUTH, APPROX, UNDER, OVER, PRECISE, SETTLED = range(6)  # the fields of a snapshot
FIELDS = 6
_PKG = Path(__file__).parent
_jit: ModuleType | None = None


def _compiled() -> ModuleType:
    """``monitor_jit``, imported from a copy whose name carries the hash of every source it compiles in."""
    global _jit
    if _jit is None:
        from shmrss.engine import cache_dir

        src = _PKG / "monitor_jit.py"
        h = hashlib.sha256()
        sources = (src, Path(__file__), _PKG / "atomics.py", _PKG / "layout.py",
                   *sorted((_PKG / "designs").glob("*.py")))
        for f in sources:
            h.update(f.read_bytes())
        modname = f"shmrss_monitor_jit_{h.hexdigest()[:12]}"
        path = cache_dir() / f"{modname}.py"
        text = src.read_text()
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)  # atomic: a concurrent monitor never imports half a file
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        _jit = mod
    return _jit


def tsc_now() -> int:
    return int(_compiled().tsc_now())


def _snap(design: str):
    return _compiled()._SNAP[design]


def check_shape(words: np.ndarray, design: str) -> None:
    """Refuse a header whose design words would send these reads outside their regions.

    ``validate_header`` bounds every region; this bounds what each design
    indexes inside its regions from its own parameters.
    """
    h = [int(x) for x in words[: L.H_WORDS]]
    line, mm_stride, possible = h[L.H_LINE], h[L.H_MM_STRIDE], h[L.H_POSSIBLE]
    dp = h[L.H_DPARAM:]
    need_mm = {"atomic": L.NMEMBERS, "split": L.NMEMBERS + 1, "percpu": 2 * L.NMEMBERS,
               "single": 3 * line, "single-atomic": 3 * line, "pcpcache": line + -(-possible // 64)}.get(design, 0)
    ok = mm_stride >= need_mm and h[L.H_TRUTH_STRIDE] >= h[L.H_NMM] * L.NMEMBERS
    ok &= h[L.H_CPUSTAT_STRIDE] >= L.S_LC_REUSED + 1
    if design in ("percpu", "single", "single-atomic", "tree"):
        ok &= h[L.H_PCPU_KWORDS] >= L.NMEMBERS
    if design == "split":
        ok &= h[L.H_TASK_STRIDE] >= L.T_DESIGN + split._CACHE + L.NMEMBERS
    if design == "pcpcache":
        ok &= h[L.H_GLOBAL_WORDS] >= possible * pcpcache.LINES_PER_CPU * line
    if design == "pernode":
        ok &= 1 <= dp[0] <= pernode.NCOUNTERS and dp[1] >= 32 and mm_stride >= L.NMEMBERS * pernode.STRUCT
    if design == "tree":
        ok &= 0 <= dp[1] <= tree.MAX_LEVELS and 1 <= dp[2] and mm_stride >= (1 + L.NMEMBERS * dp[2]) * line
    if not ok:
        raise SegmentError(f"segment header does not fit the {design} design's layout: not a run of this shmrss")


def warm(design: str) -> None:
    """Compile the design's reads now (on an empty list of mms), before they are timed against a live run."""
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
