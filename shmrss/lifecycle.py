"""fork/exit runs: lay out the per-CPU allocator, run ``lifecycle_loop`` on every CPU, build the result.

``shmrss run --workload fork_exit --lifecycle all --possible-cpus 2,64,512,4096``
runs every variant at every P; each gives one result object with a
``lifecycle`` key (mm lifecycles per second and the time per mm in alloc /
init / run / teardown / free, and the allocator mutex wait).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from shmrss import designs, layout as L, remedies
from shmrss.orchestrator import Run, RunParams, online_cpus
from shmrss.segment import Geometry

VARIANT_DESIGN = {"upstream": "percpu", "merged": "percpu", "fused-check": "percpu", "ctor-cache": "percpu",
                  "lazy": "single", "inline": "tree", "first-use": "percpu", "coarse": "percpu"}
VARIANTS = tuple(VARIANT_DESIGN)
CACHE_DEPTH = 8  # retired mm objects a CPU keeps (ctor-cache)
DEFAULT_PAGES = 256


class UnknownVariant(ValueError):
    pass


def split_variant(variant: str) -> tuple[str, int | None]:
    """("coarse", N) for a run's "coarse/N" (RunSpec.units: one run per --coarse-group), else (variant, None)."""
    name, _, group = variant.partition("/")
    return name, (int(group) if group else None)


def design_of(variant: str) -> str:
    return VARIANT_DESIGN[split_variant(variant)[0]]


def parse_variants(text: str) -> list[str]:
    names = list(VARIANTS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for v in names:
        if v not in VARIANT_DESIGN:
            raise UnknownVariant(f"unknown lifecycle variant {v!r}; choose from {', '.join(VARIANTS)} or all")
    return list(dict.fromkeys(names))


def _round(n: int, lw: int) -> int:
    return -(-n // lw) * lw


def lifecycle_area(ncpu: int, lw: int) -> tuple[int, int, int, int]:
    """(slots, bitmap words, cache base offset, cache stride) of the lifecycle area."""
    from shmrss.lifecycle_loop import A_BITMAP_LINE, A_MUTEX_LINE, NBITMAPS, PARAM_WORDS

    assert PARAM_WORDS <= A_MUTEX_LINE * lw
    slots = ncpu * (CACHE_DEPTH + 2)
    bitmap_words = -(-slots // 64)
    bitmap_lines = -(-bitmap_words // lw)
    cache_base = (A_BITMAP_LINE + NBITMAPS * bitmap_lines) * lw
    cache_stride = _round(1 + CACHE_DEPTH, lw)
    return slots, bitmap_words, cache_base, cache_stride


class LifecycleRun(Run):
    """fork/exit of one variant at one P: every CPU creates, uses and destroys mms."""

    def __init__(self, p: RunParams, variant: str, pages: int, clones: int, progress=None, leak_every: int = 0):
        p = replace(p, design=design_of(variant), reader=False, reclaimer=False)
        super().__init__(p, progress)
        self.warnings = [w for w in self.warnings if "reader" not in w]  # a fork/exit run has none
        self.variant, self.group = split_variant(variant)
        self.pages = pages
        self.clones = clones
        self.leak_every = leak_every

    def _engine(self):
        return lifecycle_engine(self.p.design)

    def _make_geometry(self) -> Geometry:
        p = self.p
        lw = p.line // 8
        possible = max(p.possible or 0, p.ncpu)
        slots, _, cache_base, cache_stride = lifecycle_area(p.ncpu, lw)
        mod = designs.get(p.design)
        shape = mod.shape(p.ncpu, possible, slots, line_words=lw,
                          options={**p.design_options, "online_cpus": online_cpus(p)})
        # two lines per slot in each CPU's unit: the counters, then upstream's separate mm_cid line
        shape = replace(shape, pcpu_words_per_mm=2 * lw, global_words=cache_base + p.ncpu * cache_stride
                        + remedies.area(p.ncpu, possible, slots, self.group, lw).words)
        return Geometry(ncpu=p.ncpu, possible=possible, nmm=slots, ntask=p.ncpu, line_words=lw, pack=p.pack,
                        slice=p.slice, design_id=mod.ID, shape=shape, tape_steps=1, nwork=p.ncpu,
                        online=online_cpus(p))

    def _fill(self) -> None:
        from shmrss import lifecycle_loop as LL

        w = self.seg.words
        lw = int(w[L.H_LINE])
        slots, bitmap_words, cache_base, cache_stride = lifecycle_area(self.p.ncpu, lw)
        g = int(w[L.H_GLOBAL])
        w[g + LL.P_VARIANT] = VARIANTS.index(self.variant)
        w[g + LL.P_SLOTS] = slots
        w[g + LL.P_PAGES] = self.pages
        w[g + LL.P_CLONES] = self.clones
        w[g + LL.P_DEPTH] = CACHE_DEPTH
        w[g + LL.P_CACHE] = g + cache_base
        w[g + LL.P_CACHE_STRIDE] = cache_stride
        w[g + LL.P_BITMAP_WORDS] = bitmap_words
        w[g + LL.P_LEAK] = self.leak_every
        remedies.fill(self.seg, self.p, self.variant, self.group, g + cache_base + self.p.ncpu * cache_stride, slots)
        tb, ts = int(w[L.H_TASK]), int(w[L.H_TASK_STRIDE])
        for cpu in range(self.p.ncpu):
            w[tb + cpu * ts + L.T_MM] = -1
            w[tb + cpu * ts + L.T_CPU] = cpu

    def _cpu_target(self):
        return lifecycle_process

    def _collect(self, eng, tsc_per_ns: float, startup_s: float) -> dict:
        w = self.seg.words
        st, ss = int(w[L.H_CPUSTAT]), int(w[L.H_CPUSTAT_STRIDE])
        per_cpu = []
        for c in range(len(self.cpus)):
            b = st + c * ss
            n = int(w[b + L.S_LC_COUNT])
            span = (int(w[b + L.S_TSC_END]) - int(w[b + L.S_TSC_START])) / tsc_per_ns
            per = {"cpu": c, "host_cpu": int(w[b + L.S_HOSTCPU]), "mms": n, "seconds": span / 1e9,
                   "mm_per_s": n / span * 1e9 if span > 0 else 0.0, "bad": int(w[b + L.S_LC_BAD]),
                   "reuse_bad": int(w[b + L.S_LC_REUSE_BAD]), "reused": int(w[b + L.S_LC_REUSED])}
            for key, slot in (("alloc", L.S_LC_ALLOC), ("init", L.S_LC_INIT), ("run", L.S_LC_RUN),
                              ("teardown", L.S_LC_TEARDOWN), ("free", L.S_LC_FREE),
                              ("mutex_wait", L.S_LC_MUTEX_WAIT)):
                per[f"{key}_ns"] = int(w[b + slot]) / tsc_per_ns
            per_cpu.append(per)
        from shmrss.lifecycle_loop import A_MUTEX_LINE, A_PCL_LINE, A_PCPU_LOCK_LINE

        g, lw = int(w[L.H_GLOBAL]), int(w[L.H_LINE])
        locks = {"mutex_acquisitions": int(w[g + A_MUTEX_LINE * lw + 1]),
                 "pcpu_lock_acquisitions": int(w[g + A_PCPU_LOCK_LINE * lw + 1]),
                 "pcpu_lock_wait_ns": int(w[g + A_PCPU_LOCK_LINE * lw + 2]) / tsc_per_ns,
                 "list_lock_acquisitions": int(w[g + A_PCL_LINE * lw + 1]),
                 "list_lock_wait_ns": int(w[g + A_PCL_LINE * lw + 2]) / tsc_per_ns}
        return {"per_cpu": per_cpu, "samples": self.samples, "tsc_per_ns": tsc_per_ns, "startup_s": startup_s,
                "warnings": self.warnings, "partial": self.partial, "locks": locks,
                "remedies": remedies.collect(self.seg, len(self.cpus), tsc_per_ns)}


def lifecycle_process(seg_name: str, design: str, cpu: int, host_cpu: int | None, parent_pid: int) -> None:
    """Body of a fork/exit CPU: attach, pin, run the compiled lifecycle loop."""
    from shmrss.engine.processes import attach_as_cpu

    lifecycle_engine(design).lifecycle_main(attach_as_cpu(seg_name, cpu, host_cpu, parent_pid), cpu)


def lifecycle_engine(design: str):
    """``lifecycle_loop`` specialised to ``design`` (shmrss.specialise), its loop compiled."""
    from shmrss.specialise import compile_entries, specialised

    mod = specialised(Path(__file__).resolve().parent / "lifecycle_loop.py", design, "shmrss_lifecycle")
    compile_entries(mod, ("lifecycle_main",))  # once per process: a compiled entry is skipped
    return mod


def build(params: RunParams, variant: str, pages: int, clones: int, raw: dict, calibration) -> dict:
    """The result object of one variant at one P (``params`` as given to LifecycleRun)."""
    params = replace(params, design=design_of(variant), reader=False, reclaimer=False)
    variant, group = split_variant(variant)
    from shmrss.result import host_info, interval_rates

    per_cpu = raw["per_cpu"]
    total = sum(c["mms"] for c in per_cpu)
    phases = {}
    for key in ("alloc", "init", "run", "teardown", "free", "mutex_wait"):
        phases[f"{key}_ns_per_mm"] = sum(c[f"{key}_ns"] for c in per_cpu) / total if total else None
    # global tallies (the per-CPU allocator's mutex and pcpu_lock, percpu_counters_lock), per mm lifecycle
    for key, v in raw.get("locks", {}).items():
        phases[f"{key}_per_mm"] = v / total if total else None
    rates = interval_rates(raw["samples"])
    warnings = list(raw["warnings"])
    bad = sum(c["bad"] for c in per_cpu)
    if bad:
        warnings.append(f"Bad rss-counter state: {bad} destroyed mms did not sum to 0")
    if params.options.get("fork_globals"):
        warnings.append("--fork-globals: the LRU-gen mm list lock and pgd_lock are stand-ins (two spinlocks, each "
                        "taken at fork and at exit, nothing done under them); the mm's own allocation is not emulated")
    else:
        warnings.append("fork's other global serialisation (page tables, LRU lists, the mm's own allocation) is "
                        "outside this model: only the counters' per-CPU memory and its allocator are emulated")
    possible = max(params.possible or 0, params.ncpu)
    return {
        "design": params.design,
        "workload": "fork_exit",
        "partial": raw["partial"],
        "params": {**params.options, "lifecycle": variant, "possible_cpus": possible, "cpus": params.ncpu,
                   "online_cpus": online_cpus(params),
                   "host_cpus": list(params.placement.cpus), "duration_s": params.duration, "pages": pages,
                   "clones": clones, "line": params.line, "cache_depth": CACHE_DEPTH,
                   **remedies.params(group)},
        "host": host_info(params.topo, params.line),
        "lifecycle": {
            "mm_per_s": sum(c["mm_per_s"] for c in per_cpu),
            "host_idle_pct": raw.get("host_idle_pct"),  # the host's idle % of all CPUs' time in the window
            "mm_per_s_per_cpu": [c["mm_per_s"] for c in per_cpu],
            "mm_per_s_intervals": ({"min": min(rates), "median": statistics.median(rates), "max": max(rates)}
                                   if rates else None),
            "mms": total,
            "reused_fraction": sum(c["reused"] for c in per_cpu) / total if total else 0.0,
            "bad_rss_counter_state": bad,
            **phases,
            "per_cpu": per_cpu,
            **remedies.figures(raw.get("remedies"), variant, total, possible, _lifecycle_ns(phases)),
        },
        "invariants": {
            "reads_zero_at_creation_and_reuse": all(c["reuse_bad"] == 0 for c in per_cpu),
            "zero_at_teardown": all(c["bad"] == 0 for c in per_cpu),
            "made_progress": total > 0,
        },
        "warnings": warnings,
        "calibration": calibration,
        "tsc_per_ns": raw["tsc_per_ns"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _lifecycle_ns(phases: dict) -> float | None:
    """ns per mm over the five timed phases (the mutex wait is inside them)."""
    v = [phases[f"{k}_ns_per_mm"] for k in ("alloc", "init", "run", "teardown", "free")]
    return None if None in v else sum(v)


def table(results: list[dict]) -> Table:
    t = Table(title="shmrss fork/exit", title_justify="left")
    for col in ("variant", "design", "P", "CPUs", "mm/s", "mm/s/CPU", "alloc ns", "init ns", "run ns",
                "teardown ns", "free ns", "mutex wait ns", "mutex/mm", "pcpu_lock/mm", "list lock/mm", "reused",
                "remedies", "invariants"):
        t.add_column(col, justify="left" if col in ("variant", "design", "remedies", "invariants") else "right")
    for r in results:
        lc, pa = r["lifecycle"], r["params"]
        bad = [k for k, ok in r["invariants"].items() if not ok]

        def ns(key):
            v = lc[f"{key}_ns_per_mm"]
            return "-" if v is None else f"{v:,.0f}"

        def per(key):
            v = lc.get(f"{key}_per_mm")
            return "-" if v is None else f"{v:.2f}"

        name = pa["lifecycle"] + (f"/{pa['coarse_group']}" if pa.get("coarse_group") else "")
        t.add_row(name, r["design"], str(pa["possible_cpus"]), str(pa["cpus"]), f"{lc['mm_per_s']:,.0f}",
                  f"{lc['mm_per_s'] / max(1, pa['cpus']):,.0f}", ns("alloc"), ns("init"), ns("run"),
                  ns("teardown"), ns("free"), ns("mutex_wait"), per("mutex_acquisitions"),
                  per("pcpu_lock_acquisitions"), per("list_lock_acquisitions"), f"{lc['reused_fraction']:.2f}",
                  remedies.cell(lc),
                  "all hold" if not bad else "FAILED: " + ", ".join(bad))
    return t
