"""--perf: parsing perf's output, probing what works (fake perf binaries on PATH, and none), PerfStat's
window against a fake perf that speaks the --control protocol, the real perf on this host, and a real run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from rich.console import Console

from shmrss import perf, perf_report
from shmrss.perf_parse import COUNTED, NOT_COUNTED, NOT_SUPPORTED, base_event, error_line, parse_c2c_stats, \
    parse_stat_csv

# ---- parsing

PER_THREAD_VM = """\
# started on Wed Nov 25 16:10:15 2026

python3-31123,<not supported>,,cycles,0,100.00,,
python3-31124,<not supported>,,cycles,0,100.00,,
python3-31123,458.75,msec,task-clock,458748294,100.00,0.973,CPUs utilized
python3-31124,<not counted>,msec,task-clock,0,100.00,,
python3-31123,34,,context-switches,458750928,100.00,74.115,/sec
python3-31124,<not counted>,,context-switches,0,100.00,,
Events disabled
Events enabled
"""

AGGREGATED_PMU = """\
# started on Thu Jan  1 00:00:00 2026

8123456789,,cycles:u,2004000000,100.00,,
16246913578,,instructions:u,2004000000,100.00,2.00,insn per cycle
1234567,,cache-misses:u,1002000000,50.00,,
1002.00,msec,task-clock,1002000000,100.00,1.000,CPUs utilized
"""


def test_parse_per_thread_with_unsupported_and_not_counted():
    rs = parse_stat_csv(PER_THREAD_VM, ["cycles", "task-clock", "context-switches"])
    assert len(rs) == 6  # the comment, the blank line and perf's "Events ..." messages are skipped
    by = {(r.tid, r.event): r for r in rs}
    assert by[(31123, "cycles")].status == NOT_SUPPORTED and by[(31123, "cycles")].value is None
    tc = by[(31123, "task-clock")]
    assert (tc.status, tc.value, tc.unit, tc.comm, tc.enabled_pct) == (COUNTED, 458.75, "msec", "python3", 100.0)
    assert by[(31124, "task-clock")].status == NOT_COUNTED and by[(31124, "task-clock")].value is None
    assert by[(31123, "context-switches")].value == 34


def test_parse_aggregated_with_modifiers_and_multiplexing():
    rs = {r.event: r for r in parse_stat_csv(AGGREGATED_PMU, perf.EVENTS)}
    assert set(rs) == {"cycles", "instructions", "cache-misses", "task-clock"}
    assert rs["cycles"].value == 8123456789 and rs["cycles"].tid is None and rs["cycles"].comm is None
    assert rs["instructions"].value / rs["cycles"].value == pytest.approx(2.0)
    assert rs["cache-misses"].enabled_pct == 50.0


def test_parse_thread_names_with_dashes_and_commas():
    text = "shmrss-cpu0-4242,100.5,msec,task-clock,1,100.00,,\nodd,name-77,3,,context-switches,1,100.00,,\n"
    rs = parse_stat_csv(text, ["task-clock", "context-switches"])
    assert [(r.comm, r.tid, r.event, r.value) for r in rs] == [
        ("shmrss-cpu0", 4242, "task-clock", 100.5), ("odd,name", 77, "context-switches", 3)]


def test_parse_ignores_events_not_asked_for_and_garbage():
    text = "12,,branch-misses,1,100.00,,\nnot,a,perf,line\n\n<not supported>,,cycles,0,100.00,,\n"
    assert [r.event for r in parse_stat_csv(text, ["cycles"])] == ["cycles"]


@pytest.mark.parametrize("name, base", [("cycles", "cycles"), ("cycles:u", "cycles"), ("cpu_core/cycles/", "cycles"),
                                        ("cpu/event=0x3c,umask=0/", "event"), ("task-clock", "task-clock")])
def test_base_event(name, base):
    assert base_event(name) == base


C2C_STATS = """\
=================================================
            Trace Event Information
=================================================
  Total records                     :      52000
  Locked Load/Store Operations      :       1300
  Load Operations                   :      21000
  Load Local HITM                   :        410
  Load Remote HITM                  :         90
  LLC Misses to Remote cache (HITM) :       18.0%
  Store Operations                  :      31000
"""


def test_parse_c2c_stats():
    s = parse_c2c_stats(C2C_STATS)
    assert s == {"records": 52000, "locked": 1300, "loads": 21000, "local_hitm": 410, "remote_hitm": 90,
                 "stores": 31000, "hitm": 500}
    assert parse_c2c_stats("Total records : 12\n") is None  # no HITM line: no figure


def test_error_line_prefers_the_failure():
    assert error_line("\nsome banner\nfailed: memory events not supported\n") == "failed: memory events not supported"
    assert error_line("just this\n") == "just this"
    assert error_line("") == "no message"


# ---- a fake perf on PATH

FAKE_PERF = r'''
import os, signal, sys, time
mode = os.environ.get("FAKE_PERF_MODE", "vm")
a = sys.argv[1:]
HW = ("cycles", "instructions", "cache-misses")

def opt(name):
    return a[a.index(name) + 1] if name in a else None

if a[:1] == ["--version"]:
    if mode == "broken":
        sys.stderr.write("WARNING: perf not found for kernel 9.9\n"); sys.exit(2)
    print("perf version 0.fake"); sys.exit(0)
if a[:1] == ["c2c"]:
    if a[1] == "report":
        print(open(os.environ["FAKE_C2C_STATS"]).read()); sys.exit(0)
    if mode != "pmu":
        sys.stderr.write("failed: memory events not supported\n"); sys.exit(255)
    signal.signal(signal.SIGINT, lambda *_: (open(opt("-o"), "w").write("data"), sys.exit(0)))
    if "-p" in a:
        while True: time.sleep(0.05)
    open(opt("-o"), "w").write("data"); sys.exit(0)
assert a[0] == "stat", a
if "-h" in a:
    sys.stderr.write(" Usage: perf stat [<options>]\n        --control <fd:ctl-fd[,ack-fd]>\n"); sys.exit(129)
events, out = opt("-e").split(","), opt("-o")

def value(ev, seconds):
    if ev in HW and mode != "pmu":
        return "<not supported>", ""
    return {"cycles": ("3000000", ""), "instructions": ("6000000", ""), "cache-misses": ("500", ""),
            "task-clock": (f"{seconds * 1e3:.2f}", "msec"), "context-switches": ("7", ""),
            "cpu-migrations": ("0", ""), "page-faults": ("2", "")}[ev]

if "--" in a:  # the probe: count a command
    with open(out, "w") as f:
        f.write("# started on a fake day\n\n")
        for ev in events:
            v, u = value(ev, 0.012)
            f.write(f"{v},{u},{ev}{':u' if ev in HW else ''},12000000,100.00,,\n")
    sys.exit(0)
if mode == "noattach":
    sys.stderr.write("Problems finding threads of monitor\n"); sys.exit(255)
pids = [int(p) for p in opt("-p").split(",")]
enabled_at, counted = None, 0.0

def finish(*_):
    with open(out, "w") as f:
        f.write("# started on a fake day\n\n")
        for ev in events:
            for p in pids:
                v, u = value(ev, counted)
                f.write(f"fake-{p},{v},{u},{ev},1,100.00,,\n")
    sys.exit(0)

signal.signal(signal.SIGINT, finish)
ctl = opt("--control")
if ctl is None:
    counted_from = time.monotonic()
    while True:
        time.sleep(0.01); counted = time.monotonic() - counted_from
r, w = (int(x) for x in ctl[3:].split(","))
while True:
    cmd = os.read(r, 64).decode().strip()
    if not cmd:
        finish()
    if cmd == "enable":
        enabled_at = time.monotonic()
    elif cmd == "disable" and enabled_at is not None:
        counted += time.monotonic() - enabled_at; enabled_at = None
    os.write(w, b"ack\n\x00")
'''


@pytest.fixture
def fake_perf(tmp_path, monkeypatch):
    """PATH holds only a fake ``perf``; returns a function setting its mode (vm, pmu, broken, noattach)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "perf"
    exe.write_text(f"#!{sys.executable}\n{FAKE_PERF}")
    exe.chmod(0o755)
    stats = tmp_path / "c2c.txt"
    stats.write_text(C2C_STATS)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_C2C_STATS", str(stats))

    def mode(name: str) -> perf.PerfSupport:
        monkeypatch.setenv("FAKE_PERF_MODE", name)
        return perf.probe(refresh=True)

    yield mode
    perf._cache.clear()


def test_probe_vm_without_pmu(fake_perf):
    s = fake_perf("vm")
    assert s.binary.endswith("/bin/perf") and s.version == "perf version 0.fake" and s.available and s.control
    assert s.working == list(perf.SOFTWARE)
    assert {e: s.events[e] for e in perf.HARDWARE} == {e: "not supported on this host" for e in perf.HARDWARE}
    assert s.c2c == "perf c2c record: failed: memory events not supported"
    assert perf.notes(s) == ["perf: hardware events not supported on this host (no PMU in this VM?); "
                             "collecting software events only"]
    assert perf.probe() is s  # cached


def test_probe_with_pmu_and_c2c(fake_perf):
    s = fake_perf("pmu")
    assert s.working == list(perf.EVENTS) and s.c2c is None and perf.notes(s) == []


def test_probe_perf_that_does_not_run(fake_perf):
    s = fake_perf("broken")
    assert not s.available and "perf not found for kernel" in s.reason
    assert perf.notes(s)[0].startswith("perf: not available (perf does not run: WARNING: perf not found")


def test_no_perf_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        s = perf.probe(refresh=True)
        assert s.binary is None and not s.available and s.reason == "perf not found on PATH"
        st = perf.PerfStat([os.getpid()])
        st.start()
        out = st.stop()
        assert out["available"] is False and out["reason"] == "perf not found on PATH"
        assert out["warnings"] == ["perf: not available (perf not found on PATH); --perf collects nothing"]
        assert perf_report.section(out)["per_event"] is None
    finally:
        perf._cache.clear()


def _sleepers(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(n)]


def test_perfstat_window_and_figures_with_a_pmu(fake_perf):
    """The fake reports task-clock = the enabled time, and fixed hardware counts per process."""
    fake_perf("pmu")
    procs = _sleepers(2)
    count = iter([1_000, 3_001_000])  # the run's events when the window opens and closes
    try:
        st = perf.PerfStat([p.pid for p in procs], events_fn=lambda: next(count))
        st.start()
        time.sleep(0.3)
        raw = st.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert raw["available"] and raw["window_exact"] and raw["events_in_window"] == 3_000_000
    ev = raw["events"]
    assert ev["cycles"]["total"] == 6_000_000 and ev["instructions"]["total"] == 12_000_000
    assert raw["derived"]["ipc"] == pytest.approx(2.0)
    # perf counted only between enable and disable, which is the window we timed
    per_proc_ms = ev["task-clock"]["total"] / 2
    assert per_proc_ms == pytest.approx(raw["window_s"] * 1e3, rel=0.1)
    assert raw["derived"]["cpu_utilization"] == pytest.approx(1.0, rel=0.1)
    assert [p["pid"] for p in raw["per_pid"]] == [p.pid for p in procs]
    assert all(p["cycles"] == 3_000_000 for p in raw["per_pid"])
    assert raw["c2c"]["available"] and raw["c2c"]["hitm"] == 500 and raw["c2c"]["sampled"]
    sec = perf_report.section(raw)
    assert sec["per_event"]["cycles"] == pytest.approx(2.0) and sec["per_event"]["instructions"] == 4.0
    assert sec["per_event"]["cache_misses"] == pytest.approx(1000 / 3e6)
    assert sec["per_event"]["task_clock_ns"] == pytest.approx(ev["task-clock"]["total"] * 1e6 / 3e6)
    assert sec["context_switches_per_s"] == pytest.approx(14 / raw["window_s"])
    assert raw["warnings"] == []


def test_perfstat_failure_to_attach_is_a_reason_not_an_exception(fake_perf):
    fake_perf("noattach")
    st = perf.PerfStat([os.getpid()])
    st.start()
    out = st.stop()
    assert out["available"] is False and "Problems finding threads of monitor" in out["reason"]
    assert out["warnings"][0].startswith("perf: perf stat did not start")


def test_perfstat_stop_without_start_and_double_kill(fake_perf):
    fake_perf("vm")
    st = perf.PerfStat([os.getpid()])
    assert st.stop()["available"] is False
    st.kill()
    st.kill()


# ---- the real perf of this host

@pytest.fixture
def real_perf():
    perf._cache.clear()
    s = perf.probe()
    if not s.available:
        pytest.skip(f"perf unusable here: {s.reason}")
    return s


def test_real_perf_counts_busy_processes(real_perf):
    code = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        time.sleep(0.1)
        st = perf.PerfStat([p.pid for p in procs])
        st.start()
        time.sleep(0.5)
        raw = st.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert raw["available"], raw
    for e, why in real_perf.events.items():
        if why is None:
            assert raw["events"][e]["total"] is not None, e
        else:
            assert raw["events"][e] == {"total": None, "reason": why}
    if "task-clock" in real_perf.working:
        # two spinning processes on a shared 2-core host: each ran for some, at most all, of the window
        # (how much depends on what else the host runs, e.g. the other test workers)
        util = raw["derived"]["cpu_utilization"]
        assert 0.0 < util <= 1.05, util


def test_run_with_perf_carries_a_perf_section(run_cli, tmp_path, capsys):
    code, res = run_cli(["run", "--design", "atomic", "--perf", "--duration", "0.5"], tmp_path)
    out, err = capsys.readouterr()
    assert code == 0, err
    p = res["perf"]
    assert res["params"]["perf"] is True
    if not p["available"]:
        assert p["reason"] and p["warnings"][0] in res["warnings"]
        return
    assert p["window_s"] == pytest.approx(0.5, abs=0.25) and p["events_in_window"] > 0
    for e, v in p["events"].items():
        assert (v["total"] is None) == ("reason" in v), (e, v)
    tc = p["per_event"]["task_clock_ns"]
    if tc is not None:
        # CPU time per event against the TSC's wall time per event: the same cost seen two ways; a CPU
        # process descheduled by a competing one has less CPU time than wall time (the run says so)
        ratio = tc / res["throughput"]["ns_per_event"]
        assert ratio < 1.5, (tc, res["throughput"]["ns_per_event"])
        if res["throughput"]["timings_valid"]:
            assert ratio > 0.3, (tc, res["throughput"]["ns_per_event"])
        assert p["events"]["cpu-migrations"]["total"] == 0  # the CPU processes are pinned
    for w in p["warnings"]:
        assert w in res["warnings"]
        assert err.count(w) == 1  # said once, not once per design and again at the end
    assert "perf stat (the emulated CPU processes)" in out


def test_run_without_perf_has_none(run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "atomic", "--duration", "0.3", "--no-reader"], tmp_path)
    assert code == 0 and res["perf"] is None and res["params"]["perf"] is False


def test_fork_exit_with_perf_is_per_mm(run_cli, tmp_path):
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "upstream", "--perf", "--duration", "0.3"],
                        tmp_path)
    assert code == 0
    p = res["perf"]
    assert p["per_unit"] == "mm"
    if p["available"] and p["events"].get("task-clock", {}).get("total") is not None:
        assert p["per_mm"]["task_clock_ns"] > 0


def test_table_shows_what_is_missing_and_why():
    raw = {"available": True, "events": {"cycles": {"total": None, "reason": "not supported on this host"},
                                         "task-clock": {"total": 2000.0, "unit": "msec"},
                                         "context-switches": {"total": 10.0, "unit": ""}},
           "window_s": 1.0, "events_in_window": 1_000_000_000, "derived": {"ipc": None, "cpu_utilization": 1.0},
           "c2c": {"available": False, "reason": "perf c2c record: failed: memory events not supported"},
           "warnings": []}
    res = {"design": "atomic", "workload": "page_fault1", "params": {}, "perf": perf_report.section(raw)}
    assert res["perf"]["per_event"]["task_clock_ns"] == pytest.approx(2.0)
    con = Console(record=True, width=250)
    con.print(perf_report.table([res]))
    text = con.export_text()
    assert "2.00" in text and "10.0" in text
    assert "cycles: not supported on this host" in text and "memory events not supported" in text
    assert perf_report.table([{**res, "perf": None}]) is None
