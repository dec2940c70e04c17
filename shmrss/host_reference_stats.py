"""The figures of ``--host-reference``: the host kernel's and the emulated design's read errors, described
(count, quantiles, max, histogram), and the comparison that can fail, with its rule fixed here before any run.

Errors are signed pages outside the truth envelope (0 inside). Each host read has had the CPU process's
non-workload pages (the baseline at the start barrier) taken off; whatever the precise read still shows is the
*offset*, reported, and taken off the approximate read's errors before they are compared.

The unit of the host read follows the workload: with one mm (``--mode threads``) the emulated mm is updated by
every CPU, and each CPU process's host mm by its one pinned CPU, so the host's error is summed over the CPU
processes (N per-CPU deltas either way); with one mm per CPU each process's error stands beside each mm's.
"""

from __future__ import annotations

import numpy as np

from shmrss.host_reference import FILES, PRECISE_FILE

# the host's approximate read: /proc/PID/stat's rss is get_mm_rss() -> get_mm_counter() ->
# percpu_counter_read_positive() on every kernel with percpu rss_stat (6.2 on); see docs/host-reference.md
APPROX_FILE = "stat"
PRECISE_SLACK = 2  # pages: a read whose errors stay this close to their median (99% of them) is precise
QUANTILES = (1, 10, 25, 50, 75, 90, 99)
# the verdict rule, fixed before the first run (docs/host-reference.md says why these numbers)
MIN_SAMPLES = 500
AGREE_D = 0.15
DIFFER_D = 0.30
HIST_BINS = 256  # integer-wide bins up to this many pages of range (pooled figures line up)


def describe(errs: np.ndarray) -> dict:
    """Count, mean, quantiles, extremes and an integer-aligned histogram of one read's errors."""
    e = np.asarray(errs, dtype=np.int64)
    if e.size == 0:
        return {"count": 0}
    lo, hi = int(e.min()), int(e.max())
    width = max(1, -(-(hi - lo + 1) // HIST_BINS))
    edges = np.arange(lo, hi + width + 1, width)
    counts, _ = np.histogram(e, bins=edges - 0.5)
    return {"count": int(e.size), "mean": float(e.mean()), "min": lo, "median": float(np.median(e)),
            "p1": float(np.percentile(e, 1)), "p99": float(np.percentile(e, 99)), "max": hi,
            "max_abs": int(np.abs(e).max()), "nonzero": int(np.count_nonzero(e)),
            "histogram": {"lower_edges": edges[:-1].tolist(), "counts": counts.tolist()}}


def measured_kind(errs: np.ndarray) -> str | None:
    """What the measurement says the read is: precise when 99% of its errors lie within PRECISE_SLACK of
    their median (a constant offset is not imprecision), approximate otherwise."""
    if len(errs) == 0:
        return None
    spread = np.percentile(np.abs(errs - np.median(errs)), 99)
    return "precise" if spread <= PRECISE_SLACK else "approximate"


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest distance between the two empirical CDFs."""
    a, b = np.sort(np.asarray(a)), np.sort(np.asarray(b))
    at = np.concatenate([a, b])
    fa = np.searchsorted(a, at, side="right") / a.size
    fb = np.searchsorted(b, at, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def verdict(n_host: int, n_emulated: int, d: float) -> str:
    """The rule: too few samples under MIN_SAMPLES a side; agree at D <= AGREE_D; differ at D >= DIFFER_D;
    cannot tell between (the samples of one run are autocorrelated: no p-value is claimed)."""
    if min(n_host, n_emulated) < MIN_SAMPLES:
        return "too few samples"
    if d <= AGREE_D:
        return "agree"
    return "differ" if d >= DIFFER_D else "cannot tell"


def _unit_errors(host: np.ndarray, emulated: np.ndarray, summed: bool, limit: int):
    """Per file: the host's errors in the comparison's unit; then the emulated (approx, precise) errors; each
    kept only where its window (the variation that could have happened during the read) is within ``limit``."""
    if summed:
        err, win = host[..., 0].sum(axis=2), host[..., 1].sum(axis=2)  # (rounds, files)
    else:
        err = host[..., 0].transpose(0, 2, 1).reshape(-1, host.shape[1])
        win = host[..., 1].transpose(0, 2, 1).reshape(-1, host.shape[1])
    per_file = {name: (err[:, i][win[:, i] <= limit], int((win[:, i] > limit).sum())) for i, name in
                enumerate(FILES)}
    e = emulated.reshape(-1, 4)
    emu = {kind: (e[:, 2 * j][e[:, 2 * j + 1] <= limit], int((e[:, 2 * j + 1] > limit).sum()))
           for j, kind in enumerate(("approximate", "precise"))}
    return per_file, emu


def comparison(host_approx: np.ndarray, emu_approx: np.ndarray, applicable: str | None) -> dict:
    """The emulated approximate error against the host's (offset removed): quantiles side by side, KS D, verdict."""
    out = {"host_read": APPROX_FILE, "rule": f"fewer than {MIN_SAMPLES} samples a side: too few samples; "
           f"KS D <= {AGREE_D}: agree; D >= {DIFFER_D}: differ; else cannot tell (one run)"}
    if applicable:
        return {**out, "verdict": "not applicable", "why": applicable}
    if host_approx.size == 0 or emu_approx.size == 0:
        return {**out, "verdict": "too few samples", "why": "no samples on one side"}
    d = ks_statistic(host_approx, emu_approx)
    quant = {f"p{q}": [float(np.percentile(host_approx, q)), float(np.percentile(emu_approx, q))]
             for q in QUANTILES}
    return {**out, "quantiles_host_emulated": quant, "ks_d": d,
            "verdict": verdict(host_approx.size, emu_approx.size, d),
            "host_errors": describe(host_approx), "emulated_errors": describe(emu_approx)}


def summary(raw: dict, kernel: dict, design: str, emulated_online: int, nmm: int) -> dict:
    """The result's ``host_reference`` record from the sampler's raw samples."""
    summed = nmm == 1
    limit = kernel["batch"]
    per_file, emu = _unit_errors(raw["host"], raw["emulated"], summed, limit)
    offset = float(np.median(per_file[PRECISE_FILE][0])) if per_file[PRECISE_FILE][0].size else 0.0
    reads = {name: {**describe(e), "wide_windows": wide, "measured": measured_kind(e)}
             for name, (e, wide) in per_file.items()}
    emulated = {kind: {**describe(e), "wide_windows": wide, "measured": measured_kind(e)}
                for kind, (e, wide) in emu.items()}
    why = None
    host_design = kernel.get("counts_with")
    if host_design is None:
        why = f"which design the host kernel {kernel['release']} counts with is not known from its release"
    elif design != host_design:
        why = f"the host kernel {kernel['release']} counts as {host_design} does; this run's design is {design}"
    elif design == "percpu" and emulated_online != kernel["online_cpus"]:
        why = (f"the emulated percpu has {emulated_online} online CPUs (batch {max(32, 2 * emulated_online)}), "
               f"the host {kernel['online_cpus']} (batch {kernel['batch']})")
    # what the host mm's approximate read lacked at the barrier (deltas left on CPUs the process no longer runs
    # on: fork's copy on the parent's CPU, start-up before pinning); an emulated mm starts with none
    residue = np.array([b[APPROX_FILE] - b[PRECISE_FILE] for b in raw["baseline"]], dtype=np.int64)
    shifted = raw["host"].copy()
    shifted[:, FILES.index(APPROX_FILE), :, 0] -= residue
    corrected = _unit_errors(shifted, raw["emulated"], summed, limit)[0][APPROX_FILE][0] - int(round(offset))
    compared = comparison(corrected, emu["approximate"][0], why)
    uncorrected = comparison(per_file[APPROX_FILE][0] - int(round(offset)), emu["approximate"][0], why)
    compared["uncorrected"] = {k: uncorrected[k] for k in ("ks_d", "verdict", "quantiles_host_emulated")
                               if k in uncorrected}
    return {"kernel": kernel, "unit": "sum over the CPU processes" if summed else "each CPU process",
            "window_limit_pages": limit, "sampler_cpu": raw["sampler_cpu"], "interval_s": raw["interval_s"],
            "rounds": int(raw["host"].shape[0]), "baseline": raw["baseline"], "offset_pages": offset,
            # the sampler's own CPU time over its sampling window: what it took from the CPUs it shares
            "sampler_busy_share": raw["busy_s"] / raw["wall_s"] if raw.get("wall_s") else None,
            "barrier_residue_pages": residue.tolist(), "host": reads, "emulated": emulated, "comparison": compared}


def _caption(design: str, hr: dict) -> str:
    """The kernel, the offset and the comparison of one design's run, under the table."""
    k, c = hr["kernel"], hr["comparison"]
    line = (f"{design}: kernel {k['release']}, {k['online_cpus']} online CPUs, batch {k['batch']}; {hr['unit']}; "
            f"offset {hr['offset_pages']:g} pages; host stat vs emulated approximate: ")
    if "ks_d" in c:
        line += f"KS D {c['ks_d']:.3f}"
        if "ks_d" in c.get("uncorrected", {}):
            line += (f" ({c['uncorrected']['ks_d']:.3f} before taking off the barrier residue "
                     f"{sum(hr['barrier_residue_pages']):+d})")
        line += ", "
    return line + f"verdict {c['verdict']}" + (f" ({c['why']})" if c.get("why") else "")


def table(results: list[dict]):
    """The host-reference table (None when no result has one)."""
    from rich.table import Table

    rows = [r for r in results if r.get("host_reference")]
    if not rows:
        return None
    t = Table(title="host kernel reference (--host-reference): read errors, pages outside the truth envelope",
              title_justify="left", caption="\n".join(_caption(r["design"], r["host_reference"]) for r in rows),
              caption_justify="left")
    for col in ("design", "read", "samples", "median", "p1", "p99", "max |err|", "measured"):
        t.add_column(col, justify="left" if col in ("design", "read", "measured") else "right",
                     no_wrap=col in ("read", "measured"))
    for r in rows:
        hr = r["host_reference"]
        named = [(f"host {f}", hr["host"][f]) for f in FILES]
        named += [(f"emulated {kind[:6]}.", hr["emulated"][kind]) for kind in ("approximate", "precise")]
        for label, s in named:
            if not s.get("count"):
                t.add_row(r["design"], label, "0", "-", "-", "-", "-", "-")
                continue
            t.add_row(r["design"], label, str(s["count"]), f"{s['median']:g}", f"{s['p1']:g}", f"{s['p99']:g}",
                      str(s["max_abs"]), {"approximate": "approx."}.get(s["measured"], s["measured"] or "-"))
    return t
