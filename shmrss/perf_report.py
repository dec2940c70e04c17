"""``--perf`` in results: the ``perf`` section of a result object (figures per event) and its table."""

from __future__ import annotations

from rich.table import Table

from shmrss.perf import HARDWARE, notes, probe

_PER_EVENT = (("cycles", "cycles"), ("instructions", "instructions"), ("cache-misses", "cache_misses"))


def announce() -> list[str]:
    """Probe perf (cached) and return what to tell the user once, before the runs."""
    return notes(probe())


def section(raw: dict | None, unit: str = "event") -> dict | None:
    """The result's ``perf`` object from ``PerfStat.stop()``'s dict, with figures per ``unit``.

    ``per_<unit>`` divides each counted total by the run's count of ``unit``s
    inside perf's window (emulated counter updates, or mm lifecycles for
    fork/exit); an event perf could not count stays None, with its reason in
    ``events``.
    """
    if raw is None:
        return None
    out = dict(raw)
    n = raw.get("events_in_window")
    per = None
    if raw.get("available") and n:
        totals = {e: v.get("total") for e, v in raw.get("events", {}).items()}
        per = {key: (totals[e] / n if totals.get(e) is not None else None) for e, key in _PER_EVENT}
        tc = raw["events"].get("task-clock", {})
        per["task_clock_ns"] = tc["total"] * 1e6 / n if tc.get("total") is not None and tc.get("unit") == "msec" \
            else None
        c2c = raw.get("c2c") or {}
        per["hitm_sampled"] = c2c["hitm"] / n if c2c.get("available") and "hitm" in c2c else None
    out[f"per_{unit}"] = per
    out["per_unit"] = unit
    window = raw.get("window_s")
    cs = (raw.get("events") or {}).get("context-switches", {}).get("total")
    out["context_switches_per_s"] = cs / window if cs is not None and window else None
    return out


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict]) -> Table | None:
    """One row per result that carries a perf section; None when none does."""
    rows = [r for r in results if r.get("perf")]
    if not rows:
        return None
    unit = rows[0]["perf"].get("per_unit", "event")
    t = Table(title="perf stat (the emulated CPU processes)", title_justify="left")
    for col in ("design", "workload", "window s", "CPU util", "ctx sw/s", "migrations", "page faults",
                f"cycles\n/{unit}", f"instr\n/{unit}", "IPC", f"cache miss\n/{unit}", f"task-clock\nns/{unit}",
                "HITM\n(sampled)"):
        t.add_column(col, justify="left" if col in ("design", "workload") else "right")
    missing: dict[str, str] = {}
    for r in rows:
        p = r["perf"]
        label = r["params"].get("lifecycle") or r["design"]
        if not p.get("available"):
            t.add_row(label, r["workload"], *["-"] * 10, "-")
            missing["perf"] = p.get("reason") or "unavailable"
            continue
        ev = p.get("events", {})
        for e in HARDWARE:
            if ev.get(e, {}).get("reason"):
                missing[e] = ev[e]["reason"]
        per = p.get(f"per_{p.get('per_unit', 'event')}") or {}
        c2c = p.get("c2c") or {}
        if not c2c.get("available"):
            missing["HITM"] = c2c.get("reason") or "perf c2c unavailable"

        def total(e):
            return ev.get(e, {}).get("total")

        t.add_row(label, r["workload"], _fmt(p.get("window_s"), ".2f"),
                  _fmt((p.get("derived") or {}).get("cpu_utilization"), ".3f"),
                  _fmt(p.get("context_switches_per_s"), ",.1f"), _fmt(total("cpu-migrations"), ",.0f"),
                  _fmt(total("page-faults"), ",.0f"), _fmt(per.get("cycles"), ".2f"),
                  _fmt(per.get("instructions"), ".2f"), _fmt((p.get("derived") or {}).get("ipc"), ".2f"),
                  _fmt(per.get("cache_misses"), ".4f"), _fmt(per.get("task_clock_ns"), ".2f"),
                  _fmt(c2c.get("hitm"), ",.0f") if c2c.get("available") else "-")
    if missing:
        by_reason: dict[str, list[str]] = {}
        for what, why in missing.items():
            by_reason.setdefault(why, []).append(what)
        t.caption = "-: " + "; ".join(f"{', '.join(whats)}: {why}" for why, whats in by_reason.items())
        t.caption_justify = "left"
    return t
