"""Small hand-made ``shmrss run`` results: the fields the run table and ``shmrss show`` read, with values
chosen by the test (no run needed)."""

from __future__ import annotations

import json
from pathlib import Path

HOST = {"hostname": "testhost", "cpu_model": "Test CPU", "kernel": "6.1.0-test",
        "topology": {"model": "Test CPU", "cores": [[0], [1]], "usable": [0, 1]}}
INVARIANTS = ("precise_equals_truth", "approx_within_bound_at_end", "zero_at_teardown", "design_state_consistent")


def result(design: str = "percpu", eps: float = 200e6, *, samples=None, err: int = 31, bound: int = 31,
           ratio: float = 0.99, precise_ok: bool = True, approx_ns=(10, 100), precise_ns=(10, 200),
           failed: tuple[str, ...] = (), cpus: int = 2, mode: str = "processes", possible: int | None = None,
           workload: str = "page_fault1", partial: bool = False, timings_valid: bool = True,
           label: str = "") -> dict:
    samples = [eps] if samples is None else list(samples)
    return {
        "design": design, "workload": workload, "partial": partial,
        "params": {"mode": mode, "cpus": cpus, "possible_cpus": possible or cpus, "online_cpus": possible or cpus,
                   "duration_s": 1.0, "read_interval_s": 0.01, "line": 64, "pack": False, "label": label,
                   "fault_pages": [1], "fault_body": "none"},
        "host": HOST,
        "throughput": {"events_per_s": eps, "events_per_s_per_cpu": eps / cpus, "ns_per_event": cpus * 1e9 / eps,
                       "switches_per_s": 0.0, "hit_rate": None, "timings_valid": timings_valid,
                       "events_per_s_samples": samples,
                       "events_per_s_intervals": {"min": min(samples), "median": sorted(samples)[len(samples) // 2],
                                                  "max": max(samples), "n": len(samples)}},
        "accuracy": {"approx_max_abs_error": err, "approx_bound": bound, "approx_min_ratio_to_truth": ratio,
                     "precise_equals_truth": precise_ok},
        "reads": {"approx_latency_ns": {"median": approx_ns[0], "p99": approx_ns[1]},
                  "precise_latency_ns": {"median": precise_ns[0], "p99": precise_ns[1]}},
        "invariants": {k: k not in failed for k in INVARIANTS},
        "warnings": [],
    }


def write_run_json(path: Path, results: list[dict]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "results": results}))
    return path


def table_rows(text: str) -> list[list[str]]:
    """The body and header rows of a rich table as printed: the cells of each line between the bars."""
    out = []
    for line in text.splitlines():
        if line[:1] in ("│", "┃"):
            out.append([c.strip() for c in line.replace("┃", "│").strip("│").split("│")])
    return out
