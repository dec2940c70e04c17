"""pcpcache as Kairui Song's RFC: the reader's transient error (a flush missed or counted twice by the
walk) is measured against the design's slack and beyond it reported as a violation; the exec tape step
(the argument copy into a new mm) and the exec workload."""

from __future__ import annotations

import pytest

import design_drivers as D
from shmrss import layout as L
from shmrss.designs import pcpcache as P
from shmrss.engine import engine_for
from shmrss.workload import WorkloadError, compile_workload

NM = L.NMEMBERS
A = L.ANON


def _lines(seg, cpu):
    """(mm line, count line, flushed line) of a CPU."""
    line = seg.h(L.H_LINE)
    g = seg.h(L.H_GLOBAL) + cpu * P.LINES_PER_CPU * line
    return g, g + line, g + 2 * line


def _reader(seg):
    r = seg.h(L.H_READER)
    w = seg.words
    return dict(ap_tr=int(w[r + L.R_APPROX_TRANSIENT]), ap_tr_max=int(w[r + L.R_APPROX_TRANSIENT_MAX]),
                pr_tr=int(w[r + L.R_PRECISE_TRANSIENT]), pr_tr_max=int(w[r + L.R_PRECISE_TRANSIENT_MAX]),
                ap_viol=int(w[r + L.R_APPROX_VIOL]), pr_viol=int(w[r + L.R_PRECISE_VIOL]))


@pytest.fixture
def flushed_seg(new_segment):
    """CPU 0 faulted 10 anon pages into mm 0 and switched away: the flush moved 10 into the atomic."""
    g = D.geometry("pcpcache", 2, nmm=1, ntask=1)
    with new_segment(g) as seg:
        D.prepare("pcpcache", seg, [0])
        ops = [D.op_switch(0, -1, 0)] + [D.op_add(0, 0, 0, A, 1, 1)] * 10 + [D.op_switch(0, 0, -1)]
        D.run("pcpcache", seg, ops, record=False)
        seg.words[seg.h(L.H_TRUTH) + 0 * seg.h(L.H_TRUTH_STRIDE) + 0 * NM + A] = 10
        yield seg


def test_a_flush_the_walk_misses_or_counts_twice_is_transient_within_the_slack(flushed_seg):
    seg, w = flushed_seg, flushed_seg.words
    eng = engine_for("pcpcache")
    atomic = D.mm_addr(seg, 0, A)
    mm_line, count_line, flushed = _lines(seg, 0)
    assert int(w[atomic]) == 10 and int(w[flushed + A]) == 10  # the flush recorded what it moved
    assert int(w[flushed + P._FLUSHED_SUM + A]) == 10
    assert P.transient_slack(w, 0, A, P.slack_mark(w, 0, A)) == (10, 10)
    eng.reader_pass(w)
    assert _reader(seg) == dict(ap_tr=0, ap_tr_max=0, pr_tr=0, pr_tr_max=0, ap_viol=0, pr_viol=0)

    # missed: the read took the atomic before the flush's lock xadd landed, the count after its zeroing
    w[atomic] = 0
    eng.reader_pass(w)
    assert _reader(seg) == dict(ap_tr=1, ap_tr_max=10, pr_tr=1, pr_tr_max=10, ap_viol=0, pr_viol=0)

    # counted twice: the xadd had landed before the atomic was read, the count not yet zeroed
    w[atomic] = 10
    w[mm_line + P._MM] = 1
    w[count_line + P._COUNT + A] = 10
    w[D.mm_addr(seg, 0, seg.h(L.H_LINE))] = 1  # CPU 0's bit in mm 0's cpumask
    assert P.read_precise(w, 0, A) == 20
    eng.reader_pass(w)
    assert _reader(seg)["pr_tr"] == 2 and _reader(seg)["ap_viol"] == 0 and _reader(seg)["pr_viol"] == 0


def test_flushes_during_the_read_widen_its_slack_by_what_they_moved(flushed_seg):
    """A walk preempted over several flushes of one CPU (an oversubscribed host, updates of both signs in
    mixed) can miss them all: the slack is the largest flushed delta plus what was flushed since the mark."""
    seg, w = flushed_seg, flushed_seg.words
    mark = P.slack_mark(w, 0, A)
    assert P.transient_slack(w, 0, A, mark) == (10, 10)
    for pages in (6, -8):  # two more flushes of CPU 0 while the read would be in its walk
        ops = [D.op_switch(0, -1, 0)] + [D.op_add(0, 0, 0, A, 1 if pages > 0 else -1, 1)] * abs(pages)
        D.run("pcpcache", seg, ops + [D.op_switch(0, 0, -1)], record=False)
    assert P.slack_mark(w, 0, A) == mark + 14
    assert P.transient_slack(w, 0, A, mark) == (10 + 14, 10 + 14)
    assert P.transient_slack(w, 0, A, P.slack_mark(w, 0, A)) == (10, 10)  # a later read: none in its window


def test_an_error_beyond_the_largest_flushed_deltas_is_a_violation(flushed_seg):
    seg, w = flushed_seg, flushed_seg.words
    _, _, flushed = _lines(seg, 0)
    w[D.mm_addr(seg, 0, A)] = 0  # a missed flush of 10 ...
    w[flushed + A] = 4  # ... but no CPU ever flushed more than 4: not the RFC's transient error
    engine_for("pcpcache").reader_pass(w)
    got = _reader(seg)
    assert got["ap_viol"] == 1 and got["pr_viol"] == 1 and got["pr_tr"] == 0
    r = seg.h(L.H_READER)
    assert int(w[r + L.R_VIOL_KIND]) == 1 and int(w[r + L.R_VIOL_VALUE]) == 0


def test_the_read_does_not_wait_for_a_cpu_inside_the_fast_path(flushed_seg):
    """in_use set, sync_count odd: the RFC's read neither waits nor retries."""
    seg, w = flushed_seg, flushed_seg.words
    mm_line, count_line, _ = _lines(seg, 0)
    w[count_line + P._IN_USE] = 1
    w[mm_line + P._SYNC] += 1
    assert P.read_precise(w, 0, A) == 10
    assert P.consistent(w) == 1  # quiescent with in_use set: caught
    w[count_line + P._IN_USE] = 0
    assert P.consistent(w) == 0


def _exec_spec(step):
    return {"name": "x", "mms": 2, "tapes": {"t": [step]}, "tasks": [{"mm": 0, "tape": "t"}]}


def test_exec_step_parses_and_refuses_bad_arguments():
    wl = compile_workload(_exec_spec(["exec", "anon", 3, 1]), 1)
    assert wl.tape[0].tolist() == [L.OP_EXEC, A, 3, 1]
    assert compile_workload(_exec_spec(["exec", "file", 2]), 1).tape[0].tolist() == [L.OP_EXEC, L.FILE, 2, 1]
    for bad in (["exec", "anon", 0, 1], ["exec", "anon", -2, 1], ["exec", "anon"], ["exec", "anon", 1, -1]):
        with pytest.raises(WorkloadError) as e:
            compile_workload(_exec_spec(bad), 1)
        assert "\n" not in str(e.value)


def test_exec_workload_misses_only_on_the_argument_copy(run_cli, tmp_path):
    from shmrss.workloads import exec as X

    code, r = run_cli(["run", "--design", "pcpcache", "--workload", "exec", "--cpus", "2", "--oversubscribe",
                       "--duration", "0.5"], tmp_path)
    assert code == 0
    th = r["throughput"]
    assert th["misses"] > 0 and th["hits"] > 0
    per_round_hits = X.SHELL_PAGES + X.IMAGE_FILE_PAGES + X.IMAGE_ANON_PAGES
    # misses are the argument pages: ARG_PAGES per shell round, hits the rest (rounds cut by the stop differ)
    ratio = th["hits"] / th["misses"]
    assert 0.8 * per_round_hits / X.ARG_PAGES < ratio < 1.25 * per_round_hits / X.ARG_PAGES
    assert all(v for v in r["invariants"].values()), r["invariants"]
    assert r["reads"]["precise_violations"] == 0 and r["reads"]["approx_violations"] == 0


# ---- issue 23 item 5: the RFC's text (4/7, 6/7) where it settles what was "our reading"

def test_a_switch_with_in_use_set_or_to_the_cached_mm_does_nothing(new_segment):
    """switch_pcp_rss_cache_no_irq: ``if (cpu_mm == next_mm) return;`` then ``if (this_cpu_read(
    cpu_rss_cache.in_use)) return;``. Before, both flushed the cache and bumped sync_count."""
    with new_segment(D.geometry("pcpcache", 2, nmm=2, ntask=1)) as seg:
        D.prepare("pcpcache", seg, [0])
        w = seg.words
        D.run("pcpcache", seg, [D.op_switch(0, -1, 0), D.op_add(0, 0, 0, A, 3, 1)], record=False)
        mm_line, count_line, _ = _lines(seg, 0)
        sync = int(w[mm_line + P._SYNC])
        D.run("pcpcache", seg, [D.op_switch(0, 0, 0)], record=False)
        assert int(w[mm_line + P._SYNC]) == sync and int(w[count_line + P._COUNT + A]) == 3
        w[count_line + P._IN_USE] = 1  # an interrupt switching the mm inside the fast path
        D.run("pcpcache", seg, [D.op_switch(0, 0, 1)], record=False)
        assert int(w[mm_line + P._MM]) == 1 and int(w[count_line + P._COUNT + A]) == 3
        assert int(w[D.mm_addr(seg, 0, A)]) == 0  # nothing flushed
        w[count_line + P._IN_USE] = 0
        D.run("pcpcache", seg, [D.op_switch(0, 0, 1)], record=False)
        assert int(w[mm_line + P._MM]) == 2 and int(w[D.mm_addr(seg, 0, A)]) == 3


def test_get_mm_counter_clamps_and_rechecks_the_cached_mm(flushed_seg):
    """``if (ret < 0) ret = 0;`` (the precise read, check_discard's sum, keeps the sign); a CPU whose
    cached mm changed while its delta was read is skipped, as the RFC re-reads ``mm`` after ``count``."""
    seg, w = flushed_seg, flushed_seg.words
    w[D.mm_addr(seg, 0, A)] = -4
    assert P.read_approx(w, 0, A) == 0 and P.read_precise(w, 0, A) == -4


def test_the_fast_path_tallies_misses_only_and_hits_are_derived(run_cli, tmp_path, new_segment):
    """The RFC's fast path does no tally: a hit adds nothing to the CPU's stat line (before: one more
    read-modify-write per fault); the run's hits are its fault events minus its misses."""
    with new_segment(D.geometry("pcpcache", 1, nmm=1, ntask=1)) as seg:
        D.prepare("pcpcache", seg, [0])
        D.run("pcpcache", seg, [D.op_switch(0, -1, 0)] + [D.op_add(0, 0, 0, A, 1, 1)] * 5, record=False)
        assert D.stat(seg, 0, L.S_HITS) == 0 and D.stat(seg, 0, L.S_MISSES) == 0
    code, r = run_cli(["run", "--design", "pcpcache", "--workload", "page_fault1", "--cpus", "1",
                       "--duration", "0.3"], tmp_path)
    th = r["throughput"]
    assert code == 0 and th["hits"] > 0 and th["hits"] + th["misses"] == th["fault_pages"]
