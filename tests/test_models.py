"""Every design against its plain-Python reference model (design_models.py), one process.

The same random sequences of raw design calls go to the compiled design (through
design_drivers' @njit driver on a real Segment) and to the model: faults (the
fault path, +1, by a task of the mm), batched updates of any size and sign,
remote updates (another mm, fault 0 or 1), updates with no task (the
reclaimer), switch_mm as the engine's scheduler makes it, clones and exits,
migrations (a task's per-task state moves with it), CPU offline. After every
call, every counter's reads are compared: the precise read exactly equal to
the truth, the approximate read exactly equal to the model's, the stated bound
equal to the model's, and the approximate read within that bound. At the end
the design's private words (per-CPU values, task caches, tree items, node
counters, CPU caches) and its slow-path / hit / miss tallies match the model.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import design_drivers as D
import design_models as M
from shmrss import designs, layout as L
from shmrss.designs import single

NM = L.NMEMBERS
relaxed = settings(deadline=None, max_examples=60,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])


@pytest.fixture(scope="module", params=designs.DESIGNS)
def design(request):
    D.driver(request.param)  # compile (or load) before the hypothesis examples
    return request.param


def _first_bad(mask):
    idx = np.argwhere(mask)
    return tuple(idx[0]) if len(idx) else None


def check_sequence(name, seg, cfg, ops, model, options=None):
    """Run ``ops`` on the design and the model; compare every read after every op. Returns out."""
    nmm = cfg["nmm"]
    base = [model.truth(mm, k) for mm in range(nmm) for k in range(NM)]
    out, res = D.run(name, seg, ops)
    truth = D.truth_after_each(ops, nmm, base)
    n = len(ops)
    if n == 0:
        check_state(name, seg, cfg, model)
        return out
    approx_m = np.zeros((n, nmm * NM), dtype=object)
    bound_m = np.zeros((n, nmm * NM, 2), dtype=object)
    res_m = np.zeros(n, dtype=object)
    for i, op in enumerate(ops):
        res_m[i] = M.apply(model, op)
        for mm in range(nmm):
            for k in range(NM):
                approx_m[i, mm * NM + k] = model.approx(mm, k)
                bound_m[i, mm * NM + k] = model.bound(mm, k)
    precise, approx, under, over = (out[:, :, j] for j in range(4))

    bad = _first_bad(precise != truth)
    assert bad is None, f"precise {precise[bad]} != truth {truth[bad]} after op {bad[0]} {ops[bad[0]]}"
    assert [model.truth(mm, k) for mm in range(nmm) for k in range(NM)] == truth[-1].tolist()
    assert [model.precise(mm, k) for mm in range(nmm) for k in range(NM)] == truth[-1].tolist()  # the model itself
    bad = _first_bad(approx != approx_m.astype(np.int64))
    assert bad is None, (f"approx {approx[bad]} != model {approx_m[bad]} (truth {truth[bad]}) "
                         f"after op {bad[0]} {ops[bad[0]]}")
    bad = _first_bad((under != bound_m[:, :, 0].astype(np.int64)) | (over != bound_m[:, :, 1].astype(np.int64)))
    assert bad is None, f"bound {under[bad], over[bad]} != model {tuple(bound_m[bad])} after op {ops[bad[0]]}"
    assert res.tolist() == res_m.tolist()
    # within the stated bound; split's and pcpcache's clamp at 0 (get_mm_counter's ``if (ret < 0) ret = 0;``)
    # only holds it for a counter that is not negative
    inside = (approx >= truth - under) & (approx <= truth + over)
    if name in ("split", "pcpcache"):
        inside |= truth < 0
    bad = _first_bad(~inside)
    assert bad is None, (f"approx {approx[bad]} outside truth {truth[bad]} -{under[bad]}/+{over[bad]} "
                         f"after op {bad[0]} {ops[bad[0]]}")
    check_state(name, seg, cfg, model)
    return out


def check_state(name, seg, cfg, model):
    """The design's own words and tallies equal the model's state."""
    w = seg.words
    ncpu, possible, nmm = cfg["ncpu"], cfg["possible"], cfg["nmm"]
    for cpu in range(ncpu):
        assert D.stat(seg, cpu, L.S_SLOW) == model.slow[cpu], f"slow paths of cpu {cpu}"
    if name in ("percpu", "single", "single-atomic"):
        for c in range(possible):
            for mm in range(nmm):
                assert [int(w[D.pcpu_addr(seg, c, mm, k)]) for k in range(NM)] == model.local[c][mm], (c, mm)
    if name == "tree":
        for c in range(possible):
            for mm in range(nmm):
                assert [int(w[D.pcpu_addr(seg, c, mm, k)]) for k in range(NM)] == model.l0[c][mm], (c, mm)
        nitems = sum(n for n, _ in model.shape.levels)
        line = seg.h(L.H_LINE)
        for mm in range(nmm):
            for k in range(NM):
                first = 0
                for lev, (n, _) in enumerate(model.shape.levels):
                    got = [int(w[D.mm_addr(seg, mm, (1 + k * nitems + first + i) * line)]) for i in range(n)]
                    assert got == model.items[mm][k][lev], (mm, k, lev)
                    first += n
    if name == "split":
        for t in range(cfg["ntask"]):
            assert int(w[D.task_addr(seg, t, 0)]) == model.events[t], f"events of task {t}"
            assert [int(w[D.task_addr(seg, t, 2 + k)]) for k in range(NM)] == model.cache[t], f"cache of task {t}"
    if name == "pcpcache":
        line = seg.h(L.H_LINE)
        for c in range(possible):
            g = seg.h(L.H_GLOBAL) + c * 3 * line  # mm line, count line, flushed line
            assert int(w[g]) - 1 == model.cached[c], f"cached mm of cpu {c}"
            assert int(w[g + 1]) == model.sync[c], f"sync_count of cpu {c}"
            assert int(w[g + line]) == 0, f"in_use of cpu {c}"
            assert [int(w[g + line + 1 + k]) for k in range(NM)] == model.delta[c], f"counts of cpu {c}"
            assert [int(w[g + 2 * line + k]) for k in range(NM)] == model.flushed[c], f"flushed of cpu {c}"
        for mm in range(nmm):
            mask = {c for c in range(possible) if int(w[D.mm_addr(seg, mm, line + c // 64)]) >> (c % 64) & 1}
            assert mask == model.mask[mm], f"cpumask of mm {mm}"
        for cpu in range(ncpu):  # hits are not tallied on the fast path (publish_hits derives them)
            assert D.stat(seg, cpu, L.S_HITS) == 0
            assert D.stat(seg, cpu, L.S_MISSES) == model.misses[cpu]
    if name == "pernode":  # rss_stat[k] = {global, numa_counters[32]}, back to back
        for mm in range(nmm):
            for k in range(NM):
                b = D.mm_addr(seg, mm, k * 33)
                assert int(w[b]) == model.glob[mm][k], (mm, k)
                assert [int(v) for v in w[b + 1: b + 33]] == model.counters[mm][k], (mm, k)


def start(name, seg, cfg, options=None):
    """Prepare the segment like the engine and a model in the same state."""
    D.prepare(name, seg, cfg["task_mms"], nodes=cfg["nodes"])
    model = M.model_for(name, cfg["ncpu"], cfg["possible"], cfg["nmm"], cfg["ntask"], nodes=cfg["nodes"],
                        options=options)
    for t, mm in enumerate(cfg["task_mms"]):
        model.settask(t, mm, cfg["task_cpus"][t])
    for op in D.init_ops(cfg["nmm"], cfg["task_mms"]):
        M.apply(model, op)
    return model


# ================================================================= random sequences, every design
@relaxed
@given(sc=D.scenario())
def test_design_matches_model(design, sc, new_segment):
    cfg, steps = sc
    ops = D.expand(cfg, steps, leave=True)
    with D.new_segment_for(design, cfg, new_segment) as seg:
        model = start(design, seg, cfg)
        check_sequence(design, seg, cfg, ops, model)


@relaxed
@given(sc=D.scenario(max_cpu=4, max_mm=2, max_steps=25), data=st.data())
def test_teardown_and_reuse_match_model(design, sc, data, new_segment):
    """After a sequence: every CPU leaves, each mm is unmapped (no task, some CPU), destroyed
    (0 bad members unless a leak was left) and initialised again, then used again."""
    cfg, steps = sc
    nmm = cfg["nmm"]
    leak = data.draw(st.lists(st.tuples(st.integers(0, nmm - 1), st.integers(0, NM - 1)), unique=True, max_size=3))
    with D.new_segment_for(design, cfg, new_segment) as seg:
        model = start(design, seg, cfg)
        ops = D.expand(cfg, steps, leave=True)
        check_sequence(design, seg, cfg, ops, model)
        truth = [model.truth(mm, k) for mm in range(nmm) for k in range(NM)]
        undo = []
        for mm in range(nmm):
            for k in range(NM):
                cpu = data.draw(st.integers(0, cfg["ncpu"] - 1))
                undo.append(D.op_add(cpu, -1, mm, k, -int(truth[mm * NM + k]) + (1 if (mm, k) in leak else 0)))
        undo += [D.op_destroy(mm) for mm in range(nmm)]
        out = check_sequence(design, seg, cfg, undo, model)
        _, res = D.run(design, seg, [D.op_destroy(mm) for mm in range(nmm)], record=False)
        assert res.tolist() == [sum(1 for m, _ in leak if m == mm) for mm in range(nmm)]
        assert np.count_nonzero(out[-1, :, 0]) == len(leak)
        # reuse: init (a freed mm's counters come back at 0) and run the same steps again
        again = D.init_ops(nmm, cfg["task_mms"]) + D.expand(cfg, steps, leave=True)
        check_sequence(design, seg, cfg, again, model)


# ================================================================= named scenarios
def _cfg(ncpu=2, possible=None, nmm=2, task_mms=(0,), task_cpus=None, nodes=None):
    task_mms = list(task_mms)
    return dict(ncpu=ncpu, possible=possible or ncpu, nmm=nmm, ntask=len(task_mms), task_mms=task_mms,
                task_cpus=list(task_cpus) if task_cpus is not None else [0] * len(task_mms),
                nodes=nodes or tuple([0] * ncpu), pack=False, line_words=8)


def test_split_cache_moves_with_the_task(new_segment):
    """40 faults on CPU 0, migrate, 30 on CPU 1: the 66th fault folds the 65 cached pages, on CPU 1."""
    cfg = _cfg(ncpu=2, task_mms=(0,))
    steps = [("faults", 0, L.ANON, 40), ("migrate", 0, 1), ("faults", 0, L.ANON, 30)]
    ops = D.expand(cfg, steps)
    with D.new_segment_for("split", cfg, new_segment) as seg:
        model = start("split", seg, cfg)
        out = check_sequence("split", seg, cfg, ops, model)
        assert out[-1, L.ANON].tolist() == [70, 65, 66, 66]  # precise, approx (the fold), bound 66 * 1 thread
        assert D.stat(seg, 0, L.S_SLOW) == 0 and D.stat(seg, 1, L.S_SLOW) == 1
        assert int(seg.words[D.task_addr(seg, 0, 2 + L.ANON)]) == 5


def test_split_bound_is_tight_at_66(new_segment):
    """After a fold a thread's cache reaches 66 pages: the error equals the bound of one thread."""
    cfg = _cfg(ncpu=1, nmm=1, task_mms=(0,))
    ops = D.expand(cfg, [("faults", 0, L.FILE, 66 + 65)])
    with D.new_segment_for("split", cfg, new_segment) as seg:
        model = start("split", seg, cfg)
        out = check_sequence("split", seg, cfg, ops, model)
        adds = [i for i, op in enumerate(ops) if op[0] == D.ADD]
        err = out[adds, L.FILE, 0] - out[adds, L.FILE, 1]
        assert err.max() == 66 == out[-1, L.FILE, 2]
        assert err[64] == 65 and err[65] == 1  # fault 66 folded the first 65
        assert err[-1] == 66 and np.argmax(err) == len(err) - 1


def test_split_remote_and_foreign_faults_go_to_the_atomic(new_segment):
    cfg = _cfg(ncpu=2, nmm=2, task_mms=(0, 1), task_cpus=(0, 1))
    steps = [("remote", 0, 1, L.ANON, 7, False), ("remote", 0, 1, L.ANON, 0, True), ("reclaim", 1, 0, L.SWAP, 4),
             ("faults", 1, L.ANON, 3)]
    with D.new_segment_for("split", cfg, new_segment) as seg:
        model = start("split", seg, cfg)
        out = check_sequence("split", seg, cfg, D.expand(cfg, steps), model)
        assert out[-1, NM + L.ANON, :2].tolist() == [11, 8]  # 7 + 1 (foreign fault) in the atomic, 3 cached
        assert out[-1, L.SWAP, :2].tolist() == [4, 4]


def test_split_owner_unmap_folds_the_cache_first(new_segment):
    """add_mm_rss_vec: ``if (current->mm == mm) sync_mm_rss(mm)``. After 10 cached faults, the owner's unmap
    of 4 pages leaves the mm's atomic at 6 (the fold, then -4) and clears events; another task's update of
    the same mm (a remote update, not an unmap) folds nothing. Before the fix the atomic read -4 (approx 0)."""
    cfg = _cfg(ncpu=2, nmm=1, task_mms=(0, 0), task_cpus=(0, 1))
    steps = [("faults", 0, L.ANON, 10), ("faults", 1, L.ANON, 3), ("unmap", 0, L.ANON, -4),
             ("remote", 1, 0, L.ANON, 2, False)]
    with D.new_segment_for("split", cfg, new_segment) as seg:
        model = start("split", seg, cfg)
        out = check_sequence("split", seg, cfg, D.expand(cfg, steps), model)
        assert int(seg.words[D.mm_addr(seg, 0, L.ANON)]) == 6 + 2  # task 0's fold, its unmap, the remote 2
        assert out[-1, L.ANON, :2].tolist() == [11, 8]
        assert int(seg.words[D.task_addr(seg, 0, 0)]) == 0  # sync_mm_rss cleared task 0's events
        assert int(seg.words[D.task_addr(seg, 1, 2 + L.ANON)]) == 3  # task 1's cache untouched


def test_split_every_fault_of_the_task_counts_an_event(new_segment):
    """check_sync_rss_stat(current) runs for every fault of the task, also on a foreign mm (get_user_pages on
    another process): 5 own faults, then foreign ones; the 66th fault folds the 5 cached pages into the
    task's own mm. Before the fix foreign faults were not counted and nothing was folded."""
    cfg = _cfg(ncpu=1, nmm=2, task_mms=(0,), task_cpus=(0,))
    steps = [("faults", 0, L.FILE, 5)] + [("remote", 0, 1, L.FILE, 0, True)] * 60
    with D.new_segment_for("split", cfg, new_segment) as seg:
        model = start("split", seg, cfg)
        out = check_sequence("split", seg, cfg, D.expand(cfg, steps), model)
        assert int(seg.words[D.task_addr(seg, 0, 0)]) == 65
        assert out[-1, L.FILE, :2].tolist() == [5, 0]  # not yet: events++ > 64 is false for 65 faults
        out2 = check_sequence("split", seg, cfg, D.expand(cfg, [("remote", 0, 1, L.FILE, 0, True)]), model)
        assert out2[-1, L.FILE, :2].tolist() == [5, 5]  # folded into mm 0, the task's own
        assert int(seg.words[D.task_addr(seg, 0, 0)]) == 0  # events++ made it 66, sync_mm_rss cleared it
        assert out2[-1, NM + L.FILE, :2].tolist() == [61, 61]  # the foreign faults went to mm 1's atomic


def test_single_atomic_remote_updates_are_one_atomic_and_no_lock(new_segment):
    """Krisman's RFC: the owner's faults go to local (plain adds), any other update to the remote atomic
    (a slow path, no lock word exists); at the second thread the mm switches to percpu with count = local,
    and remote stays part of every read."""
    cfg = _cfg(ncpu=2, nmm=2, task_mms=(0, 1), task_cpus=(0, 1))
    steps = [("faults", 0, L.ANON, 5), ("remote", 1, 1, L.ANON, 3, False), ("reclaim", 1, 0, L.SWAP, 4),
             ("clone", 0), ("faults", 0, L.ANON, 4), ("remote", 1, 1, L.ANON, 2, False), ("exit", 0)]
    with D.new_segment_for("single-atomic", cfg, new_segment) as seg:
        model = start("single-atomic", seg, cfg)
        out = check_sequence("single-atomic", seg, cfg, D.expand(cfg, steps), model)
        line = seg.h(L.H_LINE)
        mode_line = single.own_words(line) - 2 * line  # after percpu's structs, rounded up to a line
        remote = [int(seg.words[D.mm_addr(seg, 0, mode_line + 2 + k)]) for k in range(NM)]
        assert remote[L.ANON] == 3 and remote[L.SWAP] == 4  # never folded; the later 2 went per CPU
        assert model.mode == ["percpu", "single"]
        assert out[-1, L.ANON, 0] == 14 and out[-1, L.ANON, 2] > 0  # percpu's bound after the switch
        assert D.stat(seg, 1, L.S_SLOW) == 2  # the remote update and the reclaim of mm 0 while it was single
        # a remote xadd that read the old mode and lands after the switch is still counted
        seg.words[D.mm_addr(seg, 0, mode_line + 2 + L.ANON)] += 7
        assert D.read_all("single-atomic", seg)[L.ANON, :2].tolist() == [21, out[-1, L.ANON, 1] + 7]


def test_single_switches_at_the_second_thread_and_never_back(new_segment):
    cfg = _cfg(ncpu=2, nmm=2, task_mms=(0, 1), task_cpus=(0, 1))
    b = max(32, 2 * 2)
    steps = [("faults", 0, L.ANON, 5), ("remote", 1, 1, L.ANON, 3, False), ("clone", 0), ("faults", 0, L.ANON, 4),
             ("exit", 0), ("faults", 0, L.ANON, 2)]
    ops = D.expand(cfg, steps)
    with D.new_segment_for("single", cfg, new_segment) as seg:
        model = start("single", seg, cfg)
        out = check_sequence("single", seg, cfg, ops, model)
        kinds = [op[0] for op in ops]
        clone_at = kinds.index(D.CLONE)
        before, after = out[clone_at - 1, L.ANON], out[clone_at, L.ANON]
        assert before.tolist() == [8, 8, 0, 0]  # single mode: exact, bound 0
        assert after.tolist() == [8, 8, 2 * (b - 1), 2 * (b - 1)]  # seeded count, percpu's bound
        assert out[-1, L.ANON].tolist() == [14, 8, 2 * (b - 1), 2 * (b - 1)]  # after the exit: still percpu
        assert model.mode == ["percpu", "single"]


def test_pcpcache_hits_misses_and_flush(new_segment):
    """Only the page-fault path uses the cache: a fault on the cached mm hits, a fault on another mm
    (exec's argument copy) misses; a remote update and the reclaimer go to the atomic and are neither.
    Each switch clears the CPU's bit in the old mm's cpumask."""
    cfg = _cfg(ncpu=2, nmm=2, task_mms=(0, 1), task_cpus=(0, 0))
    steps = [("faults", 0, L.ANON, 3), ("remote", 0, 1, L.FILE, 5, False), ("remote", 0, 1, L.ANON, 1, True),
             ("faults", 1, L.ANON, 2), ("switch", 1, 0), ("reclaim", 1, 0, L.ANON, 10), ("switch", 1, -1)]
    ops = D.expand(cfg, steps)
    with D.new_segment_for("pcpcache", cfg, new_segment) as seg:
        model = start("pcpcache", seg, cfg)
        out = check_sequence("pcpcache", seg, cfg, ops, model)
        assert out[-1, L.ANON].tolist() == [13, 13, 0, 0] and out[-1, NM + L.ANON, 0] == 3
        # faults 3 + 2 hit, the exec-like fault on mm 1 misses; the remote update and the reclaimer are neither;
        # the fast path tallies misses only (hits = fault events - misses, written when the engine publishes)
        assert model.hits[0] == 5 and D.stat(seg, 0, L.S_MISSES) == 1
        assert D.stat(seg, 0, L.S_HITS) == 0 and D.stat(seg, 1, L.S_MISSES) == 0
        assert model.mask == [set(), {0}]  # CPU 0 left mm 0, CPU 1 came and went
        assert model.flushed[0][L.ANON] == 3 and model.slack(L.ANON) == 3


def test_pernode_folds_per_node(new_segment):
    cfg = _cfg(ncpu=4, nmm=1, task_mms=(), nodes=(0, 0, 1, 1))
    steps = [("reclaim", 0, 0, L.ANON, 31), ("reclaim", 2, 0, L.ANON, 31), ("reclaim", 1, 0, L.ANON, 1),
             ("reclaim", 3, 0, L.ANON, -62), ("reclaim", 3, 0, L.ANON, -1)]
    with D.new_segment_for("pernode", cfg, new_segment) as seg:
        model = start("pernode", seg, cfg)
        out = check_sequence("pernode", seg, cfg, D.expand(cfg, steps), model)
        # node 0 moves its 32 to the global; node 1 (31 - 62 = -31) only at -32
        assert out[:, L.ANON, 1].tolist()[-5:] == [0, 0, 32, 32, 0]
        assert out[-1, L.ANON, 0] == 0
        assert out[-1, L.ANON, 2:].tolist() == [62, 62]
        assert model.counters[0][L.ANON][:2] == [0, 0]  # each move takes the whole value it returned


def test_pernode_node_index_and_batch_from_possible_cpus(new_segment):
    """2048 possible CPUs: batch (2048 >> 6) * 2 = 64; nodes 0 and 32 share counter 0 (numa_node_id() % 32)."""
    cfg = _cfg(ncpu=3, possible=2048, nmm=1, task_mms=(), nodes=(0, 32, 33))
    steps = [("reclaim", 0, 0, L.ANON, 40), ("reclaim", 1, 0, L.ANON, 30), ("reclaim", 2, 0, L.ANON, -63),
             ("reclaim", 2, 0, L.ANON, -1)]
    with D.new_segment_for("pernode", cfg, new_segment) as seg:
        model = start("pernode", seg, cfg)
        out = check_sequence("pernode", seg, cfg, D.expand(cfg, steps), model)
        assert out[-4:, L.ANON, 1].tolist() == [0, 70, 70, 6]
        assert out[-1, L.ANON, 2:].tolist() == [63 * 32, 63 * 32]
        assert [D.stat(seg, c, L.S_SLOW) for c in range(3)] == [0, 1, 1]


def test_tree_carries_up_the_levels(new_segment):
    """8 CPUs, binary tree (orders 1,1,1): CPUs 5, 1, 3 share the level-2 item 1; CPUs 5 and 1 the
    level-1 item 1. Carries reach the root only when every level's batch is crossed; a -1 then
    borrows all the way down from the root; a carry that is a multiple of a level's batch skips it."""
    cfg = _cfg(ncpu=8, nmm=1, task_mms=())
    with D.new_segment_for("tree", cfg, new_segment) as seg:
        model = start("tree", seg, cfg)
        ops = D.expand(cfg, [("reclaim", 5, 0, L.SHMEM, 31), ("reclaim", 5, 0, L.SHMEM, 1),
                             ("reclaim", 1, 0, L.SHMEM, 32), ("reclaim", 3, 0, L.SHMEM, 64),
                             ("reclaim", 5, 0, L.SHMEM, -1)])
        out = check_sequence("tree", seg, cfg, ops, model)
        assert out[:, L.SHMEM, 0].tolist() == [31, 32, 64, 128, 127]
        assert out[:, L.SHMEM, 1].tolist() == [0, 0, 0, 128, 0]
        # CPU 3's carry of 64 has no bits below level 1's batch (64): it passes over item 3
        assert model.items[0][L.SHMEM] == [[0, 32, 0, 0], [0, 64], [0]]
        assert out[-1, L.SHMEM, 2:].tolist() == [768, 744]
        assert [D.stat(seg, c, L.S_SLOW) for c in range(8)] == [0, 1, 0, 1, 0, 2, 0, 0]
