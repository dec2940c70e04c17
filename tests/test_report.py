"""shmrss report on a hand-written results file: the markdown (min / median / max across repeats, a failed
invariant flagged), every figure as a PNG, the will-it-scale CSVs, skipped figures named, bad input exit 2."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from shmrss.cli import main
from shmrss.wis_csv import HEADER

PNG = b"\x89PNG\r\n\x1a\n"
HOST = {"topology": {"model": "Test CPU 9000", "cores": [[0], [1], [2], [3]], "usable": [0, 1, 2, 3],
                     "numa_nodes": [[0, 1, 2, 3]], "llc_groups": [[0, 1, 2, 3]], "smt_active": False},
        "cache_line": 64, "kernel": "6.1-test"}
# events/s of each repeat: (design, mode, cpus) -> three values; medians are the middle ones
EPS = {("atomic", "processes", 1): (400e6, 450e6, 500e6), ("atomic", "processes", 2): (800e6, 900e6, 950e6),
       ("atomic", "processes", 4): (1500e6, 1700e6, 1800e6), ("atomic", "threads", 1): (440e6, 460e6, 470e6),
       ("atomic", "threads", 2): (150e6, 190e6, 200e6), ("atomic", "threads", 4): (90e6, 100e6, 120e6),
       ("percpu", "processes", 1): (300e6, 310e6, 320e6), ("percpu", "processes", 2): (600e6, 615e6, 630e6),
       ("percpu", "processes", 4): (1100e6, 1200e6, 1250e6), ("percpu", "threads", 1): (290e6, 300e6, 330e6),
       ("percpu", "threads", 2): (550e6, 570e6, 580e6), ("percpu", "threads", 4): (1000e6, 1100e6, 1150e6)}


def run_result(design, mode, cpus, rep, eps, possible=None, workload="page_fault1", mms=None, oom=None,
               bad=False, warnings=("the TSC advances in steps of 10 ns on this host",)):
    possible = possible or cpus
    bound = 0 if design == "atomic" else cpus * 31
    key = {"workload": workload, "mode": mode, "design": design, "cpus": cpus, "possible_cpus": possible,
           "duration_s": 1.0, "repeat": rep}
    return {
        "sweep": {"key": key, "status": "invariant_failed" if bad else "ok", "exit_code": int(bad), "wall_s": 2.0},
        "design": design, "workload": workload, "partial": False,
        "params": {"mode": mode, "cpus": cpus, "possible_cpus": possible, "mms": mms or cpus, "duration_s": 1.0},
        "host": HOST,
        "throughput": {"events_per_s": eps, "ns_per_event": cpus * 1e9 / eps},
        "accuracy": {"approx_max_abs_error": bound - rep, "approx_bound": bound},
        "reads": {"approx_latency_ns": {"median": 10.0 + rep, "p99": 50.0},
                  "precise_latency_ns": {"median": (40.0 + rep) * (possible if design != "atomic" else 1),
                                         "p99": 900.0}},
        "oom": oom,
        "invariants": {"precise_equals_truth": True, "zero_at_teardown": not bad},
        "warnings": list(warnings),
    }


def life_result(variant, design, possible, rep, rate):
    key = {"workload": "fork_exit", "mode": "processes", "design": design, "lifecycle": variant, "cpus": 2,
           "possible_cpus": possible, "pages": 256, "clones": 0, "duration_s": 1.0, "repeat": rep}
    return {"sweep": {"key": key, "status": "ok", "exit_code": 0, "wall_s": 2.0}, "design": design,
            "workload": "fork_exit", "partial": False,
            "params": {"lifecycle": variant, "cpus": 2, "possible_cpus": possible, "pages": 256, "clones": 0,
                       "duration_s": 1.0},
            "host": HOST,
            "lifecycle": {"mm_per_s": rate, "init_ns_per_mm": 10.0 * possible, "teardown_ns_per_mm": 9.0 * possible,
                          "mutex_wait_ns_per_mm": 40.0, "reused_fraction": 0.0},
            "invariants": {"zero_at_teardown": True, "made_progress": True},
            "warnings": ["fork's other global serialisation is outside this model"]}


def oom_block(mms, possible, two_pass, precise):
    return {"selections": 300, "judged": 299, "disagreements": 0, "precise_sums_mean": 0.0, "cap_hits": 0,
            "two_pass_latency_ns": {"median": two_pass, "p99": two_pass * 3},
            "precise_latency_ns": {"median": precise, "p99": precise * 3}}


def write_results(path: Path, *, bad_point=True) -> None:
    recs = []
    for (design, mode, cpus), vals in EPS.items():
        for rep, eps in enumerate(vals):
            bad = bad_point and (design, mode, cpus, rep) == ("percpu", "threads", 2, 1)
            recs.append(run_result(design, mode, cpus, rep, eps, bad=bad))
    for design in ("atomic", "percpu"):
        for p in (4, 64, 512):  # not 2: P=2 at 2 CPUs is the same point as the default one above
            for rep in range(2):
                recs.append(run_result(design, "processes", 2, rep, 500e6 + rep, possible=p))
    for variant, design in (("upstream", "percpu"), ("lazy", "single")):
        for p in (2, 64, 512):
            for rep in range(3):
                recs.append(life_result(variant, design, p, rep, 2e6 / p * (1 + 0.1 * rep)))
    for design in ("percpu", "tree"):
        for mms in (40, 400):
            for p in (2, 256):
                r = run_result(design, "processes", 2, 0, 100e6, possible=p, workload="oom_select", mms=mms,
                               oom=oom_block(mms, p, 100.0 * mms, 50.0 * mms * p))
                r["sweep"]["key"]["tasks"] = mms
                recs.append(r)
    # a partial and a failed attempt: reported as unfinished, not in the tables
    partial = run_result("atomic", "processes", 1, 3, 1.0)
    partial["sweep"]["status"], partial["partial"] = "partial", True
    failed = {"sweep": {"key": {**partial["sweep"]["key"], "repeat": 4}, "status": "failed", "exit_code": 1,
                        "error": "ERROR: atomic: run failed: emulated CPU 0 died"}}
    recs += [partial, failed]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    res = d / "results.jsonl"
    write_results(res)
    out = d / "out"
    code = main(["report", str(res), "--out", str(out), "--csv", str(d / "all.csv")])
    return code, out, d / "all.csv"


def test_markdown_tables_give_min_median_max_and_flag_the_failed_invariant(report):
    code, out, _ = report
    assert code == 0
    md = (out / "report.md").read_text()
    assert "Test CPU 9000, 4 cores / 4 usable CPUs, SMT off, 1 NUMA node" in md
    assert "### page_fault1 (processes): throughput and accuracy" in md
    assert "### page_fault1 (threads): throughput and accuracy" in md
    assert "| atomic | 4 | 4 | 3 | 1,500.0 / **1,700.0** / 1,800.0 |" in md
    assert "| percpu | 1 | 1 | 3 | 300.0 / **310.0** / 320.0 |" in md
    # ns/event = cpus * 1e9 / eps: atomic 4 CPUs -> 4e9 / 1.7e9
    assert f"**{4e9 / 1700e6:.2f}**" in md
    assert "## INVARIANT FAILED" in md
    assert "percpu page_fault1 threads 2 CPUs P=2 repeat 2: zero_at_teardown" in md
    assert "**FAILED** in 1 of 3: zero_at_teardown" in md
    assert "1 partial" in md and "emulated CPU 0 died" in md
    assert "### fork_exit: mm lifecycles (fork/exit)" in md
    assert "### oom_select (processes): OOM victim selection, 2-pass vs all-precise" in md
    # 56 tape runs carry the TSC warning, the 18 fork/exit runs do not
    assert "(56 of 74 runs) the TSC advances" in md


def test_every_figure_is_a_png(report):
    _, out, _ = report
    for name in ("scaling_events_per_s.png", "scaling_ns_per_event.png", "approx_error_vs_bound.png",
                 "read_latency_vs_possible.png", "lifecycle_vs_possible.png", "oom_latency_vs_mms.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 20_000, name
        assert f"]({name})" in (out / "report.md").read_text()


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_follows_will_it_scale_runtest_convention(report):
    _, out, combined = report
    rows = read_csv(out / "wis" / "page_fault1-atomic.csv")
    assert tuple(rows[0]) == HEADER == ("tasks", "processes", "processes_idle", "threads", "threads_idle", "linear")
    assert rows[1] == ["0", "0", "100", "0", "100", "0"]
    base = max(statistics.median(EPS[("atomic", m, 1)]) for m in ("processes", "threads"))
    for row, n in zip(rows[2:], (1, 2, 4)):
        assert int(row[0]) == n
        assert int(row[1]) == round(statistics.median(EPS[("atomic", "processes", n)]))
        assert int(row[3]) == round(statistics.median(EPS[("atomic", "threads", n)]))
        assert row[2] == row[4] == ""  # these synthetic results recorded no idle time
        assert int(row[5]) == round(base * n)
    assert len(rows) == 5
    title = (out / "wis" / "page_fault1-percpu.title").read_text()
    assert "INVARIANT FAILED" in title and "Test CPU 9000" in title
    # fork/exit: mm lifecycles/s in the processes column, no threads run
    # P=2 at 2 CPUs is P following the CPU count (no suffix); P=64 is a series of its own
    life = read_csv(out / "wis" / "fork_exit-upstream.csv")
    assert life[2][0] == "2" and life[2][3] == "0" and life[2][5] == ""  # no 1-CPU point: no linear
    assert int(life[2][1]) == round(2e6 / 2 * 1.1)
    life64 = read_csv(out / "wis" / "fork_exit-upstream-P64.csv")
    assert int(life64[2][1]) == round(2e6 / 64 * 1.1)
    comb = read_csv(combined)
    assert comb[0] == ["series", "workload", "design", "variant", "possible_cpus", *HEADER]
    assert {r[0] for r in comb[1:]} >= {"page_fault1-atomic", "page_fault1-percpu"}


def test_a_figure_the_data_cannot_draw_is_skipped_and_said(tmp_path):
    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps(run_result("atomic", "processes", 2, 0, 9e8)) + "\n")
    assert main(["report", str(res), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "- events/s vs CPUs (scaling curve): every series has one CPU count (2)" in md
    assert "- fork/exit rate vs possible CPUs: no fork_exit result" in md
    assert not (tmp_path / "o" / "scaling_events_per_s.png").exists()
    assert (tmp_path / "o" / "approx_error_vs_bound.png").read_bytes()[:8] == PNG


def test_a_plain_run_json_is_accepted(tmp_path):
    res = tmp_path / "run.json"
    a, b = run_result("atomic", "processes", 1, 0, 4e8), run_result("atomic", "processes", 2, 0, 8e8)
    for r in (a, b):
        del r["sweep"]
    res.write_text(json.dumps([a, b], indent=1))
    assert main(["report", str(res), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "scaling_events_per_s.png").exists()


def usage_error(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    lns = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lns) == 1 and lns[0].startswith("shmrss: error:"), err
    assert "Traceback" not in err + out
    return lns[0]


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    assert "no such file" in usage_error(capsys, ["report", str(tmp_path / "none.jsonl")])
    junk = tmp_path / "junk.txt"
    junk.write_text("tasks,processes\n1,2\n")
    assert "not a shmrss results file" in usage_error(capsys, ["report", str(junk)])
    only_failed = tmp_path / "failed.jsonl"
    only_failed.write_text(json.dumps({"sweep": {"key": {"design": "atomic"}, "status": "failed"}}) + "\n")
    assert "no finished point" in usage_error(capsys, ["report", str(only_failed), "--out", str(tmp_path / "o")])
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(run_result("atomic", "processes", 1, 0, 4e8)) + "\n")
    assert "not a directory" in usage_error(capsys, ["report", str(good), "--out", str(junk)])
    assert "does not exist" in usage_error(capsys, ["report", str(good), "--out", str(tmp_path / "a" / "b")])
    assert "does not exist" in usage_error(capsys, ["report", str(good), "--out", str(tmp_path / "o"),
                                                    "--csv", str(tmp_path / "x" / "all.csv")])
    assert "RESULTS" in usage_error(capsys, ["report"])


def test_every_csv_row_is_one_lkp_tests_parser_keeps(report):
    """programs/will-it-scale/parse of lkp-tests takes the header by /^[a-z_,]+$/ and rows by /^[0-9.,]+$/: a
    row it does not match (a -1 for a mode not run) is silently dropped."""
    import re

    _, out, _ = report
    for path in (out / "wis").glob("*.csv"):
        lines = path.read_text().splitlines()
        assert re.fullmatch(r"[a-z_,]+", lines[0])
        assert all(re.fullmatch(r"[0-9.,]+", ln) for ln in lines[1:]), path.name
        stats = (path.with_suffix(".lkp")).read_text()
        assert "per_process_ops: " in stats and "per_thread_ops: " in stats


def test_lkp_stats_are_what_lkp_computes():
    from shmrss.wis_csv import lkp_stats

    table = [[0, 0, 100, 0, 100, 0], [1, 100, "50.00", 80, "50.00", 100], [2, 180, "0.10", 0, "", 200]]
    assert lkp_stats(table) == {"scalability": 0.9, "per_process_ops": 95, "per_thread_ops": 40, "workload": 360}


def test_idle_time_measured_is_written_with_two_decimals():
    from shmrss.report_data import Group
    from shmrss.wis_csv import rows

    r = {"throughput": {"events_per_s": 1e6, "host_idle_pct": 12.345}}
    g = Group({"cpus": 1, "mode": "threads"}, "run", [r])
    assert rows([g])[1] == [1, 0, "", 1000000, "12.35", 1000000]


def test_results_of_different_kernels_are_both_shown_never_merged(tmp_path):
    """The same point from two kernels: two rows, each with its own value; neither merged nor dropped."""
    paths = []
    for kernel, eps in (("6.1-test", 123e6), ("6.2-test", 321e6)):
        r = run_result("atomic", "processes", 2, 0, eps)
        del r["sweep"]
        r["host"] = {**HOST, "hostname": "box", "kernel": kernel}
        path = tmp_path / f"{kernel}.json"
        path.write_text(json.dumps({"schema_version": 1, "results": [r]}))
        paths.append(str(path))
    from shmrss import report_data

    loaded = report_data.load(paths)
    assert sorted(len(g.results) for g in loaded.groups) == [1, 1] and loaded.duplicates == 0
    assert main(["report", *paths, "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "box 6.1-test" in md and "box 6.2-test" in md, md
    assert "123" in md and "321" in md and "more than once" not in md


def test_the_gather_step_writes_its_csv_into_the_out_it_creates(tmp_path, monkeypatch):
    """The example workflow's gather job: ``report results-*.jsonl --out report --csv
    report/will-it-scale.csv``, with ``report`` not there yet (it failed with exit 2 when --csv was checked
    before --out was made)."""
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "results-0.jsonl")
    assert main(["report", "results-0.jsonl", "--out", "report", "--csv", "report/will-it-scale.csv"]) == 0
    rows = read_csv(tmp_path / "report" / "will-it-scale.csv")
    assert rows and rows[0][0] == "series" and len(rows) > 1
    assert (tmp_path / "report" / "report.md").is_file()


def test_report_md_describes_the_csv_as_it_is_written(report):
    """report.md once said a mode not run is -1 and the idle columns are empty; the CSV writes 0 and the
    measured idle time (issue 18)."""
    _, out, _ = report
    md = (out / "report.md").read_text()
    section = md[md.index("## CSV (will-it-scale convention)"):]
    assert "`0` where the mode was not run" in section and "`-1` where" not in section
    assert "the host's median idle time" in section and "shmrss does not measure idle" not in section
    assert "`0,0,100,0,100,0`" in section
    assert read_csv(out / "wis" / "fork_exit-upstream.csv")[2][3] == "0"  # what the text says: 0, not -1
