"""What ``shmrss verify`` counts of each design's writes to shared words, op by op.

Two sources, the same for a port and its kernel C:

* **locks taken**, logged as they are taken: the port's own ``spin_lock`` calls through a
  copy of its module compiled with ``verify_driver`` appended (``copy``), the C's through
  verify's build of the library with ``SHIM_LOG_LOCKS`` (``logging_lib``), so a port that
  takes a lock the kernel does not (or takes it twice) differs even though the lock word
  reads 0 again afterwards;
* **words changed** by the op: each word of ``struct percpu_counter`` (``count``, the list
  links, ``counters``) and, for the tree, each item of each level (in ``verify``). A store
  that leaves a word's value as it was is not seen.

``tally`` names every write: ``rss_stat[k].lock`` (taken), ``rss_stat[k].count``
(changed), or a file static of the C (``percpu_counters_lock``), which no port has.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from shmrss import layout as L
from shmrss.compile_cache import cache_dir
from shmrss.specialise import compile_entries, import_file, sources, write_source

DRIVER = Path(__file__).resolve().parent / "verify_driver.py"
DESIGNS = Path(__file__).resolve().parent / "designs"
LOG_WORDS = 64  # verify_driver.LOG_WORDS: the port's lock log at the end of its global words
FIELDS = ("lock", "count", "list.next", "list.prev", "counters")  # struct percpu_counter, 8 bytes each
_MARK = 'bind("atomic", VERIFY_NAMES)'
_copies: dict[str, ModuleType] = {}


def copy(design: str, mutate=None) -> ModuleType:
    """The design's module with ``verify_driver`` appended, its entries compiled (``mutate``: the
    design's text changed first, e.g. a planted mutant in a test)."""
    module = design.replace("-", "_")
    text = (DESIGNS / f"{module}.py").read_text()
    if mutate is not None:
        text = mutate(text)
    whole = (text.rstrip("\n") + "\n\n\n# ---- shmrss verify's driver (shmrss/verify_driver.py), appended\n"
             + DRIVER.read_text().replace(_MARK, "verify_here(VERIFY_NAMES)", 1))
    h = hashlib.sha256(whole.encode() + b"\0C designs called by address")
    for f in sources(DRIVER, module):  # numba's cache sees this file only: name it by all it inlines
        h.update(f.read_bytes())
    name = f"shmrss_verify_{module}_{h.hexdigest()[:12]}"
    if name not in _copies:
        from shmrss.kernel import inline

        with inline.called(design):  # the segment is bound to verify's logging build, not the inlined one
            _copies[name] = _load(name, whole)
    return _copies[name]


def _load(name: str, text: str) -> ModuleType:
    where = cache_dir() / "verify"
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = where / f"{name}.py"
    write_source(path, text)
    mod = import_file(name, path)
    compile_entries(mod, ("verify_apply", "verify_read"))
    return mod


@functools.lru_cache(maxsize=4)
def logging_lib(lib):
    """``lib`` (a ``klib.KernelLib``) built with ``SHIM_LOG_LOCKS``: its own cached shared object."""
    return dataclasses.replace(lib, name=f"{lib.name}-verify", extra_defines=(("SHIM_LOG_LOCKS", "1"),))


class Locks:
    """One design's lock log: how many were taken so far, and the byte offsets of the latest."""

    def __init__(self, seg, lib=None):
        self.seg, self.lib = seg, lib
        self.at = int(seg.words[L.H_GLOBAL]) + int(seg.words[L.H_GLOBAL_WORDS]) - LOG_WORDS

    def count(self) -> int:
        if self.lib is not None:
            return self.lib.call("shim_locks_logged", -1)
        return int(self.seg.words[self.at])

    def since(self, n0: int) -> list[int]:
        n = self.count()
        if n - n0 >= LOG_WORDS - 1:
            raise RuntimeError(f"one op took {n - n0} locks, more than verify's log keeps")
        if self.lib is not None:
            return [self.lib.call("shim_locks_logged", i) for i in range(n0, n)]
        return [int(self.seg.words[self.at + 1 + i % (LOG_WORDS - 1)]) for i in range(n0, n)]


@dataclasses.dataclass
class Struct:
    """Where one design keeps ``rss_stat[k]`` of mm 0 (``struct percpu_counter``), in bytes."""
    first: int  # rss_stat[0]
    size: int
    names: dict[int, str]  # lock offset -> name: every lock taken is named by these or "another lock"
    statics: dict[int, str] = dataclasses.field(default_factory=dict)  # the C's file-static locks (in the segment)

    def words(self, w: np.ndarray) -> np.ndarray:
        """Every member's struct words, member by member."""
        at = np.array([(self.first + k * self.size) // 8 + j for k in range(L.NMEMBERS) for j in range(len(FIELDS))])
        return w[at]


def port_struct(w: np.ndarray) -> Struct:
    """percpu's: five words per member from the mm's first word (designs/percpu.py)."""
    first, size = int(w[L.H_MM]) * 8, len(FIELDS) * 8
    return Struct(first, size, {first + k * size: f"rss_stat[{k}].lock" for k in range(L.NMEMBERS)})


def kernel_struct(w: np.ndarray, lib, g_shared: int) -> Struct | None:
    """k-percpu's, from the sizes the C reports; None unless it is the port's 40 bytes, lock first."""
    from shmrss.designs import k_percpu as K
    from shmrss.kernel import build, source

    dp = [int(x) for x in w[L.H_DPARAM:L.H_DPARAM + 4]]
    if (dp[K.D_SIZE], dp[K.D_COUNT], dp[K.D_COUNTERS], dp[K.D_LOCK]) != (40, 8, 32, 0):
        return None
    first = int(w[L.H_MM]) * 8
    s = Struct(first, 40, {first + k * 40: f"rss_stat[{k}].lock" for k in range(L.NMEMBERS)})
    shared = (int(w[L.H_GLOBAL]) + g_shared) * 8 + build.STATICS_OFF
    found = build._statics(lib.library(source.kernel_dir(os.environ.get(source.ENV), lib.files)))
    s.statics = {shared + build.SLOT_BYTES * i: name for i, (kind, name) in enumerate(found)
                 if kind.endswith("SPINLOCK")}
    return s


def tally(struct: Struct | None, before: np.ndarray | None, after: np.ndarray | None,
          locks: list[int]) -> dict[str, int]:
    """Name -> writes in one op: each lock taken, each struct word whose value changed."""
    out: dict[str, int] = {}
    for off in locks:
        name = "another lock"
        if struct is not None:
            name = struct.names.get(off) or struct.statics.get(off, name)
        out[name] = out.get(name, 0) + 1
    if struct is not None and before is not None:
        for i in np.flatnonzero(before != after):
            k, j = divmod(int(i), len(FIELDS))
            if j:  # the lock word: counted as taken, above (it reads 0 again after the op)
                name = f"rss_stat[{k}].{FIELDS[j]}"
                out[name] = out.get(name, 0) + 1
    return out


def c_only(struct: Struct | None) -> set[str]:
    """The C's file statics: words no port has (the port keeps no list of counters to lock)."""
    return set(struct.statics.values()) if struct is not None else set()
