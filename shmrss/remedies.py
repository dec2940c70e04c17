"""The fork/exit remedies' area in the segment (issue 22): its layout, its setup, and the figures read back.

``shmrss/lifecycle_remedies.py`` is the compiled side (first-use's CPU bitmaps, coarse's pools, the
``--fork-globals`` stand-in); this module sizes its area behind ctor-cache's caches in the lifecycle
words, fills its parameters (and poisons the per-CPU memory that first-use gets not zeroed), and turns
its tallies into the result's figures. ``shmrss.lifecycle`` calls it; docs/lifecycle.md says what each
figure means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shmrss import layout as L, lifecycle_remedies as R

CACHE_DEPTH = 8  # objects a pool holds per CPU of its group (ctor-cache's per-CPU depth)


def _round(n: int, lw: int) -> int:
    return -(-n // lw) * lw


@dataclass(frozen=True)
class Area:
    """Offsets inside the remedies area (from its start) and its size in words."""

    globals_: int
    tally: int
    tally_stride: int
    pres: int
    pres_stride: int
    pools: int
    pool_stride: int
    npools: int
    words: int


def area(ncpu: int, possible: int, slots: int, group: int | None, lw: int) -> Area:
    glob = _round(R.X_PARAM_WORDS, lw)
    tally = glob + 2 * lw
    tally_stride = _round(R.TALLY_WORDS, lw)
    pres = tally + ncpu * tally_stride
    pres_stride = _round(-(-possible // 64), lw)
    pools = pres + slots * pres_stride
    npools = -(-ncpu // group) if group else 0
    pool_stride = _round(R.Q_OBJ + CACHE_DEPTH * min(group or 1, ncpu), lw)
    return Area(glob, tally, tally_stride, pres, pres_stride, pools, pool_stride, npools,
                pools + npools * pool_stride)


def fill(seg, p, variant: str, group: int | None, base: int, slots: int) -> None:
    """The area's parameters at word ``base``; first-use's per-CPU memory poisoned (it is never zeroed)."""
    w = seg.words
    lw = int(w[L.H_LINE])
    possible = int(w[L.H_POSSIBLE])
    a = area(p.ncpu, possible, slots, group, lw)
    w[int(w[L.H_GLOBAL]) + R.P_EXT] = base
    opts = p.options or {}
    for x, v in ((R.X_SWITCHES, opts.get("switches") or 0), (R.X_REMOTE_EVERY, opts.get("remote_every") or 0),
                 (R.X_FORK_GLOBALS, int(bool(opts.get("fork_globals")))), (R.X_GROUP, group or 1),
                 (R.X_POOLS, base + a.pools), (R.X_POOL_STRIDE, a.pool_stride), (R.X_PRES, base + a.pres),
                 (R.X_PRES_STRIDE, a.pres_stride), (R.X_TALLY, base + a.tally),
                 (R.X_TALLY_STRIDE, a.tally_stride)):
        w[base + x] = v
    for q in range(a.npools):  # each pool holds CACHE_DEPTH objects per CPU of its group that runs
        cpus = min(group, p.ncpu - q * group)
        w[base + a.pools + q * a.pool_stride + R.Q_DEPTH] = CACHE_DEPTH * cpus
    if variant == "first-use":
        w[_pcpu_words(w, possible, slots)] = R.POISON


def _pcpu_words(w, possible: int, slots: int) -> np.ndarray:
    """Every word of every slot's slice in every possible CPU's unit (_common.pcpu_word's formula)."""
    base, cs, ks, kw = (int(w[x]) for x in (L.H_PCPU, L.H_PCPU_CSTRIDE, L.H_PCPU_KSTRIDE, L.H_PCPU_KWORDS))
    cpu = np.arange(possible, dtype=np.int64)[:, None]
    k = np.arange(slots * kw, dtype=np.int64)[None, :]
    return (base + cpu * cs + k * ks).ravel()


def collect(seg, ncpu: int, tsc_per_ns: float) -> dict:
    """The area's tallies after the run: per-CPU sums, the pools', the global locks'."""
    w = seg.words
    base = int(w[int(w[L.H_GLOBAL]) + R.P_EXT])
    lw = int(w[L.H_LINE])
    tb, ts = int(w[base + R.X_TALLY]), int(w[base + R.X_TALLY_STRIDE])
    sums = [sum(int(w[tb + c * ts + t]) for c in range(ncpu)) for t in range(R.TALLY_WORDS)]
    group = int(w[base + R.X_GROUP])
    pb, pstride = int(w[base + R.X_POOLS]), int(w[base + R.X_POOL_STRIDE])
    pools = [pb + q * pstride for q in range(-(-ncpu // group))]
    glob = [base + R.X_PARAM_WORDS + line * lw for line in (R.G_LRU, R.G_PGD)]
    return {
        "switches": sums[R.T_SWITCHES], "switch_ns": sums[R.T_SWITCH_TICKS] / tsc_per_ns,
        "cpus_touched": sums[R.T_TOUCHED], "remote_updates": sums[R.T_REMOTE],
        "pool_acquisitions": sum(int(w[q + R.Q_ACQ]) for q in pools),
        "pool_wait_ns": sum(int(w[q + R.Q_WAIT]) for q in pools) / tsc_per_ns,
        "retained_objects": sum(int(w[q + R.Q_COUNT]) for q in pools), "npools": len(pools),
        "globals_ns": sums[R.T_GLOBALS_TICKS] / tsc_per_ns, "globals_wait_ns": sums[R.T_GLOBALS_WAIT] / tsc_per_ns,
        "globals_acquisitions": sum(int(w[g + 1]) for g in glob),
        "slice_bytes": 2 * lw * 8,  # one slot's slice in one CPU's unit: the counters' line, mm_cid's line
    }


def figures(rem: dict | None, variant: str, total: int, possible: int, phases_ns: float | None) -> dict:
    """The result's figures of the remedies that ran: per mm (``total`` lifecycles), per switch."""
    if not rem or not total:
        return {}
    out: dict = {}
    if rem["switches"]:
        out["switches_per_mm"] = rem["switches"] / total
        out["switch_ns_per_switch"] = rem["switch_ns"] / rem["switches"]
    if rem["remote_updates"]:
        out["remote_updates"] = rem["remote_updates"]
    if variant == "first-use":
        out["cpus_touched_per_mm"] = rem["cpus_touched"] / total
    if variant == "coarse":
        out.update({"pools": rem["npools"], "pool_lock_acquisitions_per_mm": rem["pool_acquisitions"] / total,
                    "pool_lock_wait_ns_per_mm": rem["pool_wait_ns"] / total,
                    "retained_objects": rem["retained_objects"],
                    "retained_bytes": rem["retained_objects"] * rem["slice_bytes"] * possible,
                    "slice_bytes_per_cpu": rem["slice_bytes"]})
    if rem["globals_acquisitions"]:
        out.update({"fork_globals_ns_per_mm": rem["globals_ns"] / total,
                    "fork_globals_wait_ns_per_mm": rem["globals_wait_ns"] / total,
                    "fork_globals_acquisitions_per_mm": rem["globals_acquisitions"] / total})
        if phases_ns:
            out["fork_globals_share"] = out["fork_globals_ns_per_mm"] / phases_ns
    return out


def params(group: int | None) -> dict:
    return {"coarse_group": group} if group else {}


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    return f"{n / 1024:,.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MiB"


def cell(lc: dict) -> str:
    """The table's remedies column: what issue 22's figures say for one result (measured values only)."""
    parts = []
    if "cpus_touched_per_mm" in lc:
        parts.append(f"{lc['cpus_touched_per_mm']:.2f} CPUs/mm")
    if "switch_ns_per_switch" in lc:
        parts.append(f"switch {lc['switch_ns_per_switch']:.1f} ns")
    if "pool_lock_acquisitions_per_mm" in lc:
        parts.append(f"pool {lc['pool_lock_acquisitions_per_mm']:.2f}/mm, wait "
                     f"{lc['pool_lock_wait_ns_per_mm']:,.0f} ns, kept {_bytes(lc['retained_bytes'])}")
    if "fork_globals_share" in lc:
        parts.append(f"globals {lc['fork_globals_share'] * 100:.0f}%")
    return "; ".join(parts) or "-"
