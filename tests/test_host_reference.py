"""--host-reference: the /proc sampler reads a process whose RSS is known and brackets it right; the figures,
the KS statistic and the verdict rule; bad combinations refused with one line; a run records it all."""

from __future__ import annotations

import json
import mmap
import os
import resource

import numpy as np
import pytest

from shmrss import host_reference as H, host_reference_stats as S, layout as L

PAGES = 2048  # far above any kernel's per-CPU slack at a few CPUs (online * batch)


def _slack() -> int:
    """The most an approximate read of one process may miss: every online CPU's delta below the batch, plus
    a few pages the child's own code may touch outside its region."""
    k = H.kernel_info()
    return k["online_cpus"] * k["batch"] + 16


def _touch(w: np.ndarray, region: mmap.mmap, pages: int) -> None:
    """Touch ``pages`` pages, announcing the work before it and recording it after, as faultbody does."""
    w[L.S_FB_BEGUN] += pages
    for i in range(pages):
        region[i * mmap.PAGESIZE] = 1
    w[L.S_FB_CURSOR] = pages
    w[L.S_FB_DONE] += pages


@pytest.fixture
def synthetic():
    """A child that maps PAGES anonymous pages and, on each command, touches them (announcing the work in a
    shared word record as faultbody does) or exits. Yields (pid, words, command)."""
    shared = mmap.mmap(-1, L.S_WORDS * 8)  # MAP_SHARED: the child's writes are seen here
    w = np.frombuffer(shared, dtype=np.int64)
    cmd_r, cmd_w = os.pipe()
    ack_r, ack_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no interpreter exit handlers
        try:
            region = mmap.mmap(-1, PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            # the same code on a warm-up mapping first: the interpreter's and libraries' pages a forked child
            # faults in on first use are then resident before the baseline, as the CPU processes' are
            _touch(w, mmap.mmap(-1, 64 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), 64)
            w[:] = 0
            os.write(ack_w, b"r")
            while os.read(cmd_r, 1) == b"t":
                _touch(w, region, PAGES)
                os.write(ack_w, b"d")
        finally:
            os._exit(0)

    def command(c: bytes) -> None:
        os.write(cmd_w, c)
        if c == b"t":
            assert os.read(ack_r, 1) == b"d"

    assert os.read(ack_r, 1) == b"r"
    try:
        yield pid, w, command
    finally:
        os.write(cmd_w, b"x")
        os.waitpid(pid, 0)


def test_the_sampler_reads_a_process_whose_rss_is_known_and_brackets_it(synthetic):
    pid, w, command = synthetic
    files = H.ProcFiles(pid)
    base = files.read(H.FILES.index(H.PRECISE_FILE))  # quiescent, nothing of the region touched
    command(b"t")  # PAGES pages touched: the child's RSS grew by PAGES
    for i, name in enumerate(H.FILES):
        err, window = H._bracketed(w, 0, files, i, base)
        assert window == 0, "no page work was in flight"
        assert abs(files.read(i) - base - PAGES) <= _slack(), name
        assert abs(err) <= _slack(), (name, err)
    # a baseline 1000 pages too high shows as an error of -1000 (the bracket does not hide a wrong baseline)
    err, _ = H._bracketed(w, 0, files, H.FILES.index(H.PRECISE_FILE), base + 1000)
    assert -1000 - _slack() <= err <= -1000 + _slack()
    files.close()


def test_work_announced_and_not_done_widens_the_envelope(synthetic):
    pid, w, command = synthetic
    files = H.ProcFiles(pid)
    base = files.read(H.FILES.index(H.PRECISE_FILE))
    w[L.S_FB_BEGUN] += 5000  # as if 5000 pages of work had begun and not ended during the read
    err, window = H._bracketed(w, 0, files, H.FILES.index(H.PRECISE_FILE), base + 3000)
    assert window == 5000 and err == 0  # 3000 pages off lies inside the in-flight window
    files.close()


def test_settle_faults_and_releases_one_page_table_span_of_the_region():
    from shmrss import faultbody

    small = mmap.mmap(-1, 64 * mmap.PAGESIZE)
    assert not faultbody.settle(small, np.frombuffer(small, dtype=np.uint8).ctypes.data)  # no 2 MiB span
    big = mmap.mmap(-1, 4 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = np.frombuffer(big, dtype=np.uint8).ctypes.data
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert faultbody.settle(big, addr)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before >= faultbody.SETTLE_PAGES  # really faulted
    first = -addr % faultbody.PMD_SPAN
    assert big[first] == 0  # released: the page reads as a fresh zero page again


def test_the_proc_files_are_parsed_as_the_kernel_writes_them():
    assert H.parse("statm", "9000 1234 300 10 0 800 0\n") == 1234
    assert H.parse("status", "Name:\tx\nVmHWM:\t  9000 kB\nVmRSS:\t    4096 kB\nRssAnon:\t 100 kB\n") == 1024
    stat = "77 (a) b (c)) S 1 77 77 0 -1 4194560 " + " ".join(str(n) for n in range(10, 24)) + " 4321 18446744"
    assert H.parse("stat", stat) == 4321  # the 24th field, counted after a comm holding ') ' and spaces
    with pytest.raises(H.HostReferenceError):
        H.parse("status", "Name:\tkthread\n")
    with pytest.raises(H.HostReferenceError, match=r"cannot read /proc/\d+/statm"):
        H.ProcFiles(2 ** 22 + 7)  # above pid_max's largest value: no such process


def test_the_host_kernel_and_its_batch():
    assert H.counts_with("6.1.0-18-amd64") == "split" and H.counts_with("6.2.0") == "percpu"
    assert H.counts_with("6.18.44-fc-v1300") == "percpu" and H.counts_with("weird") is None
    k = H.kernel_info()
    assert k["release"] == os.uname().release and k["online_cpus"] >= 1
    assert k["batch"] == max(32, 2 * k["online_cpus"])


def test_ks_statistic_and_the_verdict_rule():
    rng = np.random.default_rng(1)
    a = rng.integers(-62, 1, 4000)
    assert S.ks_statistic(a, a) == 0.0
    assert S.ks_statistic(a, a - 200) == 1.0  # disjoint
    assert abs(S.ks_statistic(a, a - 10) - 10 / 63) < 0.03  # a shift of 10 on 63 even values
    assert S.verdict(4000, 4000, 0.05) == "agree"
    assert S.verdict(4000, 4000, 0.5) == "differ"
    assert S.verdict(4000, 4000, 0.2) == "cannot tell"
    assert S.verdict(100, 4000, 0.0) == "too few samples"


def test_describe_and_measured_kind():
    d = S.describe(np.array([0, 0, 1, 2, -3, 5]))
    assert (d["count"], d["min"], d["max"], d["max_abs"], d["nonzero"]) == (6, -3, 5, 5, 4)
    assert sum(d["histogram"]["counts"]) == 6 and d["histogram"]["lower_edges"][0] == -3
    assert S.measured_kind(np.full(1000, 7)) == "precise"  # a constant offset is not imprecision
    assert S.measured_kind(np.arange(-60, 0)) == "approximate"


def _raw(host_err: int, emu_err: np.ndarray, residue: int) -> dict:
    """Sampler output for one process (per-process unit: nmm 2) with every host read off by host_err."""
    rounds = emu_err.size
    host = np.full((rounds, len(H.FILES), 1, 2), host_err, dtype=np.int64)  # precise reads: the offset alone
    host[..., 1] = 0  # no window
    host[:, H.FILES.index(S.APPROX_FILE), 0, 0] = emu_err + residue + host_err
    emulated = np.zeros((rounds, 1, 4), dtype=np.int64)
    emulated[:, 0, 0] = emu_err
    base = {"pid": 1, "statm": 100, "status": 100, "stat": 100 + residue, "region_words": [0, 0]}
    return {"host": host, "emulated": emulated, "baseline": [base], "sampler_cpu": None, "interval_s": 0.001}


def test_summary_takes_off_the_offset_and_the_barrier_residue_and_compares():
    kernel = {"release": "x", "counts_with": "percpu", "online_cpus": 2, "batch": 32}
    emu = np.random.default_rng(2).integers(-31, 1, 3000)
    s = S.summary(_raw(3, emu, -20), kernel, "percpu", 2, nmm=2)
    assert s["offset_pages"] == 3.0 and s["barrier_residue_pages"] == [-20]
    assert s["host"]["status"]["measured"] == "precise" and s["host"]["stat"]["measured"] == "approximate"
    c = s["comparison"]
    assert c["verdict"] == "agree" and c["ks_d"] < 0.01
    assert c["uncorrected"]["verdict"] == "differ"  # 20 pages of residue shift the whole distribution
    assert S.summary(_raw(3, emu, -20), kernel, "tree", 2, nmm=2)["comparison"]["verdict"] == "not applicable"
    assert S.summary(_raw(3, emu, -20), kernel, "percpu", 4, nmm=2)["comparison"]["verdict"] == "not applicable"


@pytest.mark.parametrize("args, says", [
    (["--host-reference"], "goes with --fault-body page"),
    (["--host-reference", "--fault-body", "none"], "goes with --fault-body page"),
    (["--host-reference", "--fault-body", "page", "PROC"], "cannot read /proc"),
])
def test_bad_host_reference_input_is_one_line_and_exit_2(args, says, capsys, monkeypatch):
    from shmrss.cli import main

    if "PROC" in args:
        args = [a for a in args if a != "PROC"]
        real_open = os.open
        monkeypatch.setattr(H.os, "open", lambda p, *a: real_open("/nonexistent/statm", *a)
                            if str(p).startswith("/proc/") and str(p).endswith(H.FILES) else real_open(p, *a))
    code = main(["run", "--no-calibrate", "--design", "percpu", "--duration", "0.3", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and says in err, err


def test_a_run_records_the_host_reads_beside_the_design_and_prints_them(run_cli, tmp_path, capsys):
    code, r = run_cli(["run", "--design", "percpu", "--mode", "threads", "--cpus", "1", "--duration", "1",
                       "--fault-body", "page", "--host-reference"], tmp_path)
    assert code == 0
    hr = r["host_reference"]
    assert hr["kernel"]["release"] == os.uname().release and hr["rounds"] > 50
    assert set(hr["host"]) == set(H.FILES) and set(hr["emulated"]) == {"approximate", "precise"}
    assert hr["host"]["status"]["count"] > 0 and hr["emulated"]["precise"]["max_abs"] == 0
    assert hr["baseline"][0]["region_words"] == [0, 0]  # taken at the barrier, before any page work
    assert 0 < hr["sampler_busy_share"] <= 1.05
    assert "ks_d" in hr["comparison"] or hr["comparison"]["verdict"] in ("not applicable", "too few samples")
    json.dumps(hr)
    out = capsys.readouterr().out
    assert "host kernel reference" in out and "host stat " in out and "emulated approx." in out
    assert "batch" in out and "verdict" in out
