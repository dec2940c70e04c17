"""Turns a run's raw measurements into the result object (JSON schema in the README) and the comparison table."""

from __future__ import annotations

import platform
import statistics
import sys
import time

import numpy as np
from rich.table import Table

from shmrss import __version__, designs, layout as L


def host_info(topo, line: int) -> dict:
    import numba

    from shmrss.host_meta import axes

    return {
        **axes(),
        "topology": topo.to_dict(),
        "cache_line": line,
        "cache_line_host": topo.cache_line,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "shmrss": __version__,
    }


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if a.size else None


def interval_rates(samples) -> list[float]:
    """Total events/s in each sampling interval, the first (warm-up) interval dropped."""
    rates = []
    for prev, cur in zip(samples, samples[1:]):
        dt = cur.t - prev.t
        if dt > 0.2:
            rates.append(float((cur.events - prev.events).sum() / dt))
    return rates[1:] if len(rates) > 1 else rates


def raced_moves(per_cpu, reclaimer, warnings: list) -> dict:
    """pernode's racing movers: moves that left their node counter a batch or more from 0, and the largest
    counter left; a warning when there were any."""
    rows = list(per_cpu) + ([reclaimer] if reclaimer else [])
    raced = {"count": sum(c.get("raced_moves", 0) for c in rows),
             "max_left": max((c.get("raced_left_max", 0) for c in rows), default=0)}
    if raced["count"]:
        warnings.append(f"{raced['count']} moves raced another CPU's add and left their node counter up to "
                        f"{raced['max_left']} from 0 (pernode's double move: its bound is broken until that "
                        "node's next update)")
    return raced


WINDOW_TOLERANCE = 0.10


def window_outliers(per_cpu: list[dict]) -> list[tuple[int, float, float]]:
    """(CPU, its window, the others' median) of each CPU that ran to the end and whose measured window (first
    event to stop) differs from the others' by more than 10%: it was stalled (SIGSTOP, a long preemption)
    or started late, and its events/s and ns/event do not describe the same run."""
    ran = [(c["cpu"], c["seconds"]) for c in per_cpu if c.get("state", "ran") == "ran"]
    out = []
    for cpu, secs in ran:
        others = [s for c, s in ran if c != cpu]
        if not others:
            continue
        med = statistics.median(others)
        if med > 0 and abs(secs - med) > WINDOW_TOLERANCE * med:
            out.append((cpu, secs, med))
    # two CPUs that differ: the longer window is the stalled one (it answered the stop late)
    if len(ran) == 2 and len(out) == 2:
        out = [max(out, key=lambda o: o[1])]
    return out


def _validity(per_cpu: list[dict], raw: dict, warnings: list[str]) -> tuple[list, dict | None, bool]:
    """Window outliers (warned here), what shared the CPUs (contention.py warned), and whether the timings
    are valid."""
    outliers = window_outliers(per_cpu)
    for cpu, secs, med in outliers:
        warnings.append(f"emulated CPU {cpu}'s measured window was {secs:.3f} s, the other CPUs' {med:.3f} s (more "
                        f"than {WINDOW_TOLERANCE:.0%} apart): it was stalled or descheduled; timings are not valid")
    contention = raw.get("contention")
    shared = bool(contention and (contention["other_runs"] or contention["busy_host_cpus"]))
    return outliers, contention, not outliers and not shared


def build(params, raw: dict, calibration: dict | None) -> dict:
    """The result object of one design's run."""
    per_cpu = raw["per_cpu"]
    check = raw["check"]
    truth, precise, approx, under, over = (check[:, i] for i in range(5))
    precise_ok = bool(np.all(precise == truth))
    invariants = _invariants(raw, precise_ok, bool(np.all((approx >= truth - under) & (approx <= truth + over))))
    warnings = list(raw["warnings"])
    _reader_checks(raw["reader"], invariants, warnings)
    rates = interval_rates(raw["samples"])
    if len(rates) < 2:
        warnings.append("fewer than 2 one-second samples after warm-up: min/median/max are not meaningful")
    outliers, contention, timings_valid = _validity(per_cpu, raw, warnings)
    oom = _oom(raw.get("oom"), invariants, warnings)
    perf = None
    if "perf" in raw:  # --perf (shmrss/perf_report.py): perf stat's counters, per event
        from shmrss.perf_report import section

        perf = section(raw["perf"])
        warnings += [w for w in perf.get("warnings", []) if w not in warnings]
    throughput = _throughput(raw, rates, warnings)
    throughput.update(timings_valid=timings_valid, window_outliers=[o[0] for o in outliers],
                      host_idle_pct=raw.get("host_idle_pct"),  # the host's idle % of all CPUs' time in the window
                      fault_body=_fault_body(per_cpu, [c["ns_per_event"] for c in per_cpu if c["ns_per_event"]]))
    faults = raw.get("faults")
    return {
        "design": params.design,
        "workload": params.workload.name,
        "partial": raw["partial"],
        "params": _params(params),
        "host": host_info(params.topo, params.line),
        "throughput": throughput,
        "contention": contention,
        "accuracy": _accuracy(raw, precise_ok, getattr(designs.get(params.design), "TRANSIENT_CAUSE", None)),
        "reads": _reads(raw),
        "oom": oom,
        # mm->hiwater_rss as update_hiwater_rss left it (the unmap paths' approximate reads), over the mms
        "hiwater_rss": {"max": int(max(raw["hiwater"])), "min": int(min(raw["hiwater"]))} if len(raw.get("hiwater", ()))
        else None,
        "faults": faults if faults and (faults["injected"] or faults["checks"]) else None,
        "perf": perf,
        "host_reference": raw.get("host_reference"),  # --host-reference (shmrss/host_reference_stats.py)
        "invariants": invariants,
        **_kernel_c(params.design),
        "warnings": warnings,
        "calibration": calibration,
        "tsc_per_ns": raw["tsc_per_ns"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _kernel_c(design: str) -> dict:
    """A C design's provenance (docs/kernel-c.md): source, kernel version, compiler, called or inlined."""
    describe = getattr(designs.get(design), "describe", None)
    return {"kernel_c": describe()} if describe is not None else {}


def _invariants(raw: dict, precise_ok: bool, approx_end_ok: bool) -> dict:
    """The invariants checked at the end of the run (the reader's and OOM's are added by their steps)."""
    invariants = {
        "precise_equals_truth": precise_ok,
        "approx_within_bound_at_end": approx_end_ok,
        "zero_at_teardown": bool(np.all(raw["teardown_bad"] == 0)),
        "no_update_in_flight_at_end": all(c["var"] == c["commit"] for c in raw["per_cpu"]),
        "design_state_consistent": raw.get("design_bad", 0) == 0,
    }
    if raw.get("threads_off") is not None:
        invariants["thread_counts_match_tapes"] = raw["threads_off"] == 0
    faults = raw.get("faults")
    if faults and faults["injected"]:
        invariants["faults_recovered"] = all(e["inconsistencies"] == 0 and e["settled"] != "INCONSISTENT"
                                             for e in faults["injected"])
    if faults and faults["checks"]:
        invariants["soak_checks_clean"] = not faults["violations"]
    return invariants


def _reader_checks(rd: dict, invariants: dict, warnings: list[str]) -> None:
    """The reader's mid-run invariants, and its transient errors as warnings (not violations)."""
    if rd["approx_reads"] <= 0:
        warnings.append("the reader made no read: read latency and mid-run bounds were not checked")
        return
    invariants["approx_within_bound_throughout"] = rd["approx_violations"] == 0
    invariants["precise_within_truth_throughout"] = rd["precise_violations"] == 0
    if rd.get("approx_transient", 0):
        warnings.append(f"{rd['approx_transient']} approximate reads broke the stated bound by up to "
                        f"{rd['approx_transient_max']} while an update was in flight (this design's documented "
                        "transient error; not counted as violations)")
    if rd.get("precise_transient", 0):
        warnings.append(f"{rd['precise_transient']} precise reads were off the truth by up to "
                        f"{rd['precise_transient_max']} while an update was in flight (this design's documented "
                        "transient error; not counted as violations)")


def _oom(oom: dict | None, invariants: dict, warnings: list[str]) -> dict | None:
    """The OOM selector's figures (--oom), and its invariant when a selection could be judged."""
    if oom is None:
        return None
    n = oom["selections"]
    out = {
        "selections": n, "judged": oom["judged"], "disagreements": oom["disagreements"],
        "precise_sums_mean": oom["precise_sums"] / n if n else None, "cap_hits": oom["cap_hits"],
        "cap": L.OOM_CAP,
        "two_pass_latency_ns": {"median": _pct(oom["lat_two_pass_ns"], 50), "p99": _pct(oom["lat_two_pass_ns"], 99)},
        "precise_latency_ns": {"median": _pct(oom["lat_precise_ns"], 50), "p99": _pct(oom["lat_precise_ns"], 99)},
        "last_victims": {"two_pass": oom["last_two_pass_victim"], "precise": oom["last_precise_victim"]},
    }
    if oom["judged"]:
        invariants["oom_two_pass_agrees_with_precise"] = oom["disagreements"] == 0
    else:
        warnings.append("no OOM selection ran while the counters were still: none could be judged")
    return out


def _params(params) -> dict:
    """The options of the run, the user's and the ones it derived."""
    from shmrss.orchestrator import online_cpus

    mod = designs.get(params.design)
    return {
        **params.options,
        "design": params.design, "workload": params.workload.name, "cpus": params.nwork,
        "design_cpus": params.ncpu, "reclaimer": params.reclaimer,
        "host_cpus": list(params.placement.cpus), "reader_cpu": params.placement.reader_cpu,
        "duration_s": params.duration, "read_interval_s": params.read_interval, "line": params.line,
        "pack": params.pack, "slice": params.slice, "possible_cpus": params.possible or params.ncpu,
        "online_cpus": online_cpus(params), "fault_pages": list(params.fault_pages),
        "mms": params.workload.nmm, "tasks": len(params.workload.tasks),
        "oversubscribed": params.placement.oversubscribed,
        "design_params": {"summary": mod.SUMMARY, "bound": mod.BOUND},
    }


def _throughput(raw: dict, rates: list[float], warnings: list[str]) -> dict:
    """Events, their rate and cost, the scheduler's and the caches' figures, summed over the CPUs."""
    per_cpu = raw["per_cpu"]
    ns = [c["ns_per_event"] for c in per_cpu if c["ns_per_event"]]
    total_eps = sum(c["events_per_s"] for c in per_cpu)
    hits = sum(c["hits"] for c in per_cpu)
    misses = sum(c["misses"] for c in per_cpu) + ((raw.get("reclaimer") or {}).get("misses") or 0)
    per_page = [c["seconds"] * 1e9 / c["pages"] for c in per_cpu if c.get("pages")]
    return {
        "events_per_s": total_eps,
        "ns_per_event": statistics.median(ns) if ns else None,
        "events_per_s_per_cpu": total_eps / len(per_cpu) if per_cpu else 0.0,
        "events_per_s_intervals": _spread(rates),
        "events_per_s_samples": rates,  # every per-second rate of the measured window (warm-up dropped)
        "events": sum(c["events"] for c in per_cpu),
        "fault_pages": sum(c.get("pages", 0) for c in per_cpu),
        "ns_per_page": statistics.median(per_page) if per_page else None,
        "slow_paths": sum(c["slow_paths"] for c in per_cpu),
        "lock_spins": sum(c["lock_spins"] for c in per_cpu),
        "per_cpu": per_cpu,
        "startup_s": raw["startup_s"],
        "switches_per_s": sum(c["switches"] / c["seconds"] for c in per_cpu if c["seconds"] > 0),
        "slow_paths_per_s": sum(c["slow_paths"] / c["seconds"] for c in per_cpu if c["seconds"] > 0),
        "migrations": sum(c["migrations"] for c in per_cpu),
        "hits": hits, "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "reclaimer": raw.get("reclaimer"),
        "raced_moves": raced_moves(per_cpu, raw.get("reclaimer"), warnings),
    }


def err_bound_text(acc: dict) -> str:
    """The table's "approx err max/bound" cell: the stated bound beside the error, and when the error
    passed it, by how much and why (e.g. ``509/31 (+478 in flight: racing moves on one node, RFC v2)``)."""
    if acc.get("approx_max_abs_error") is None or acc.get("approx_bound") is None:
        return "-"
    text = f"{acc['approx_max_abs_error']:,}/{acc['approx_bound']:,}"
    ex = acc.get("approx_excess")
    return text if not ex else f"{text} (+{ex['beyond_bound']:,} in flight: {ex['cause']})"


def _accuracy(raw: dict, precise_ok: bool, cause: str | None = None) -> dict:
    """The approximate reads' error against the truth and the stated bound; the counters at the end.

    An error above the stated bound is never shown alone: ``approx_excess`` says by how much (the
    largest error minus the bound) and why (the design's ``TRANSIENT_CAUSE``, the property of the patch
    that lets a read leave its bound while updates are in flight; reads beyond that documented
    slack are violations and fail ``approx_within_bound_throughout``)."""
    rd = raw["reader"]
    truth, precise, approx, under, over = (raw["check"][:, i] for i in range(5))
    end_err = int(np.max(np.abs(approx - truth))) if len(truth) else 0
    bound = max(int(rd["max_bound"]), int(np.max(np.maximum(under, over))) if len(under) else 0)
    approx_max_err = max(int(rd["approx_max_err"]), end_err)
    return {
        "approx_max_abs_error": approx_max_err,
        "approx_bound": bound,
        # the stated range: truth - under <= approx <= truth + over (largest over the counters)
        "approx_range": {"under": int(np.max(under)) if len(under) else 0,
                         "over": int(np.max(over)) if len(over) else 0},
        "error_to_bound": approx_max_err / bound if bound else (0.0 if approx_max_err == 0 else None),
        "approx_excess": ({"beyond_bound": approx_max_err - bound,
                           "cause": cause or "no documented in-flight error for this design: see the violations"}
                          if approx_max_err > bound else None),
        "approx_min_ratio_to_truth": rd["min_ratio_ppm"] / 1e6 if rd["min_ratio_ppm"] < (1 << 62) else None,
        "precise_equals_truth": precise_ok,
        "precise_max_abs_error_live": int(rd["precise_max_err"]),
        "final": [{"mm": i // L.NMEMBERS, "member": L.MEMBER_NAMES[i % L.NMEMBERS], "truth": int(truth[i]),
                   "precise": int(precise[i]), "approx": int(approx[i])}
                  for i in range(len(truth)) if truth[i] or precise[i] or approx[i]][:64],
    }


def _reads(raw: dict) -> dict:
    """The reader's counts, latencies and first violation."""
    rd = raw["reader"]
    violation = None
    if rd["viol_kind"]:
        violation = {"kind": "approximate" if rd["viol_kind"] == 1 else "precise", "mm": rd["viol_mm"],
                     "member": L.MEMBER_NAMES[rd["viol_member"]], "value": rd["viol_value"],
                     "allowed": [rd["viol_lo"], rd["viol_hi"]]}
    return {
        "approx_count": rd["approx_reads"], "precise_count": rd["precise_reads"],
        "approx_latency_ns": {"median": _pct(raw["lat_approx_ns"], 50), "p99": _pct(raw["lat_approx_ns"], 99)},
        "precise_latency_ns": {"median": _pct(raw["lat_precise_ns"], 50),
                               "p99": _pct(raw["lat_precise_ns"], 99)},
        "approx_violations": rd["approx_violations"], "precise_violations": rd["precise_violations"],
        "first_violation": violation, "reader_died": raw["reader_died"],
        # reads outside the stated bound (or, precise, the truth) by no more than the design's own
        # documented transient error, while an update was in flight: measured, not violations
        "approx_transient": {"count": rd.get("approx_transient", 0), "max_beyond_bound": rd.get("approx_transient_max", 0)},
        "precise_transient": {"count": rd.get("precise_transient", 0),
                              "max_error": rd.get("precise_transient_max", 0)},
        "timer_overhead_ns_subtracted": raw["timer_overhead_ns"],
        "timer_step_ns": raw["tsc_step_ns"],
    }


def _fault_body(per_cpu: list[dict], ns: list[float]) -> dict | None:
    from shmrss.faultbody import summary

    return summary(per_cpu, statistics.median(ns) if ns else None)


def _fmt(v, spec: str = ",.0f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def table(results: list[dict]) -> Table:
    """One comparison row per result."""
    t = Table(title="shmrss results", title_justify="left")
    for col in ("design", "workload", "CPUs", "M events/s", "M ev/s/CPU", "ns/event", "M ev/s (1 s)\nmin/med/max",
                "approx err\nmax/bound", "min approx\n/ truth", "precise\n= truth", "approx read\nns med/p99",
                "precise read\nns med/p99", "switches/s", "hit\nrate", "invariants"):
        t.add_column(col, justify="left" if col in ("design", "workload", "invariants") else "right")
    for r in results:
        th, acc, rd = r["throughput"], r["accuracy"], r["reads"]
        iv = th["events_per_s_intervals"]
        spread = "-" if iv is None else f"{iv['min'] / 1e6:.1f}/{iv['median'] / 1e6:.1f}/{iv['max'] / 1e6:.1f}"
        bad = [k for k, ok in r["invariants"].items() if not ok]
        mode = r["params"].get("mode")
        t.add_row(
            r["design"], r["workload"] + (f" ({mode})" if mode else "") + (" PARTIAL" if r["partial"] else "")
            + ("" if th.get("timings_valid", True) else " TIMINGS NOT VALID"),
            str(r["params"]["cpus"]), f"{th['events_per_s'] / 1e6:.1f}", f"{th['events_per_s_per_cpu'] / 1e6:.1f}",
            _fmt(th["ns_per_event"], ".2f"), spread,
            err_bound_text(acc),
            _fmt(acc["approx_min_ratio_to_truth"], ".3f"),
            "yes" if acc["precise_equals_truth"] else "NO",
            f"{_fmt(rd['approx_latency_ns']['median'])}/{_fmt(rd['approx_latency_ns']['p99'])}",
            f"{_fmt(rd['precise_latency_ns']['median'])}/{_fmt(rd['precise_latency_ns']['p99'])}",
            _fmt(th["switches_per_s"]), _fmt(th["hit_rate"], ".4f"),
            "all hold" if not bad else "FAILED: " + ", ".join(bad),
        )
    return t
