"""The seven designs, single process, through compiled code: every update checked against a running truth.

A compiled driver per design (design_drivers.py) calls the design's (inlined)
functions on a real segment, the way the engine does (through ``atomics.raw``):
add with its ``fault`` flag, switch_mm as the scheduler makes it, clones,
exits, migrations, CPU offline, mm init and destroy. Where a design's
semantics differ the tests say so: split's fast path is only a fault by a task
of the mm; pcpcache caches the mm a CPU switched to; single switches to percpu
at the second thread; pernode's node map comes from ``setup``; tree's shape
from the possible CPUs. ``percpu`` is also checked against a Python model of
upstream ``percpu_counter_add_batch`` (test_models.py has a model of each).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import design_drivers as D
from shmrss import designs, layout as L
from shmrss.designs import percpu, pernode, split, tree
from shmrss.engine import engine_for

NM = L.NMEMBERS
relaxed = settings(deadline=None, max_examples=40,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])


@pytest.fixture(scope="module", params=designs.DESIGNS)
def design(request):
    engine_for(request.param)  # compile (or load) the engine and the driver before the hypothesis examples
    D.driver(request.param)
    return request.param


def pcpu_value(seg, cpu, mm, k):
    return int(seg.words[D.pcpu_addr(seg, cpu, mm, k)])


def _segment(design, cfg, new_segment):
    return D.new_segment_for(design, cfg, new_segment, options=None)


def _run_scenario(design, seg, cfg, steps, leave=False):
    D.prepare(design, seg, cfg["task_mms"], nodes=cfg["nodes"])
    ops = D.expand(cfg, steps, leave=leave)
    out, res = D.run(design, seg, ops)
    return ops, out, D.truth_after_each(ops, cfg["nmm"])


def expected_bound(design, cfg):
    """The (under, over) a design states, from its documentation."""
    n = cfg["ncpu"]
    if design in ("atomic", "pcpcache"):
        return 0, 0
    if design == "percpu":  # N online CPUs (the segment's default: every possible CPU), B = max(32, 2N)
        online = cfg["possible"]
        b = max(32, 2 * online)
        return online * (b - 1), online * (b - 1)
    if design == "pernode":  # (batch - 1) per node counter in use; batch max(32, (P >> NODES_SHIFT 6) * 2)
        e = (max(32, (cfg["possible"] >> 6) * 2) - 1) * min(max(cfg["nodes"]) + 1, 32)
        return e, e
    if design == "tree":
        p = cfg["possible"]
        if p == 1:
            return 0, 0
        _, under, over = tree.accuracy(p, tree.orders_for(p))
        return under, over
    raise ValueError(design)


class PercpuModel:
    """percpu_counter_add_batch, in Python; an offline recomputes the batch from the CPUs left, then folds."""

    def __init__(self, possible, nmm, batch, online=None):
        self.b = batch
        self.online = possible if online is None else online
        self.gone = set()
        self.count = np.zeros((nmm, NM), dtype=object)
        self.local = np.zeros((possible, nmm, NM), dtype=object)
        self.slow = np.zeros(possible, dtype=object)

    def add(self, cpu, mm, k, d):
        c = self.local[cpu, mm, k]
        if abs(c + d) >= self.b:
            self.count[mm, k] += c + d
            self.local[cpu, mm, k] = 0
            self.slow[cpu] += 1
        else:
            self.local[cpu, mm, k] = c + d

    def offline(self, cpu):
        """percpu_counter_cpu_dead: compute_batch_value (the CPU already out of the online mask), the fold."""
        self.gone.add(cpu)
        self.b = max(32, 2 * (self.online - len(self.gone)))
        for mm in range(self.count.shape[0]):
            for k in range(NM):
                self.count[mm, k] += self.local[cpu, mm, k]
                self.local[cpu, mm, k] = 0


# ================================================================= every op against the truth
@relaxed
@given(sc=D.scenario(max_cpu=64))
def test_random_ops_precise_exact_and_approx_within_bound(design, sc, new_segment):
    cfg, steps = sc
    with _segment(design, cfg, new_segment) as seg:
        ops, out, truth = _run_scenario(design, seg, cfg, steps, leave=True)
        if not ops:
            return
        precise, approx, under, over = (out[:, :, i] for i in range(4))
        assert np.array_equal(precise, truth)  # after every op, every counter
        inside = (approx >= truth - under) & (approx <= truth + over)
        if design == "split":
            # the atomic is clamped at 0: the bound holds for counters that are not negative;
            # faults add +1 to caches, so the clamped atomic never exceeds the truth
            assert np.all(inside | (truth < 0))
            assert np.all(approx >= 0) and np.all(approx <= np.maximum(truth, 0))
        elif design == "pcpcache":  # get_mm_counter: if (ret < 0) ret = 0;
            assert np.all(inside | (truth < 0))
        else:
            assert np.all(inside)
        if design == "atomic":
            assert np.array_equal(approx, truth)  # exact, bound 0
            assert not under.any() and not over.any()
        elif design == "pcpcache":
            assert np.array_equal(approx, np.maximum(truth, 0))  # exact but clamped, bound 0
            assert not under.any() and not over.any()
        elif design in ("percpu", "pernode", "tree"):
            u, o = expected_bound(design, cfg)
            assert np.all(under == u) and np.all(over == o)
        elif design == "split":
            # 66 faults' worth per thread of the mm (its tasks plus clones not yet exited)
            assert np.all(under == over) and np.all(under % split.PER_THREAD == 0)
            threads = np.bincount(cfg["task_mms"], minlength=cfg["nmm"]) if cfg["task_mms"] else np.zeros(cfg["nmm"])
            assert np.all(under[0].reshape(cfg["nmm"], NM) >= 66 * threads[:, None])
        elif design in ("single", "single-atomic"):
            # single mode (an mm that never had 2 threads): exact, bound 0; after the switch percpu's
            pc = expected_bound("percpu", cfg)
            zero = (under == 0) & (over == 0)
            assert np.all(zero | ((under == pc[0]) & (over == pc[1])))
            assert np.array_equal(approx[zero], truth[zero])
            # the switch is one-way: once an mm's bound is percpu's it stays so
            switched = ~zero
            assert np.all(np.maximum.accumulate(switched, axis=0) == switched)
        if design == "tree":
            # floor carries: the root is never above the truth (README: the error is one-sided)
            assert np.all(approx <= truth)
        if design == "percpu":
            n, b = cfg["ncpu"], percpu.batch_for(cfg["possible"])  # online: every possible CPU here
            model = PercpuModel(cfg["possible"], cfg["nmm"], b)
            for i, op in enumerate(ops):
                if op[0] == D.ADD:
                    _, cpu, _, mm, k, d, _ = op
                    model.add(cpu, mm, k, d)
                    assert approx[i, mm * NM + k] == model.count[mm, k]
                elif op[0] == D.OFFLINE:
                    model.offline(op[1])
            for cpu in range(cfg["possible"]):
                for mm in range(cfg["nmm"]):
                    for k in range(NM):
                        assert pcpu_value(seg, cpu, mm, k) == model.local[cpu, mm, k]
                        assert abs(pcpu_value(seg, cpu, mm, k)) < b  # every CPU's value stays in (-B, B)
            for cpu in range(n):
                assert D.stat(seg, cpu, L.S_SLOW) == model.slow[cpu]


@relaxed
@given(n=st.integers(1, 64), data=st.data())
def test_percpu_batch_and_bound_for_each_cpu_count(n, data, new_segment):
    b = max(32, 2 * n)
    shape = percpu.shape(n, n, 1)
    assert shape.params == (b, b)  # percpu_counter_batch, and the batch at boot
    assert percpu.batch_for(n) == b
    D.driver("percpu")
    ops = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, NM - 1), st.integers(-2 * b, 2 * b),
                                       st.integers(0, 1)), min_size=1, max_size=80))
    ops = [D.op_add(cpu, -1, 0, k, d, f) for cpu, k, d, f in ops]
    with new_segment(D.geometry("percpu", n)) as seg:
        assert seg.h(L.H_DPARAM) == b
        D.prepare("percpu", seg)
        out, _ = D.run("percpu", seg, ops)
        truth = D.truth_after_each(ops, 1)
        assert np.array_equal(out[:, :, 0], truth)
        assert np.all(out[:, :, 2] == n * (b - 1)) and np.all(out[:, :, 3] == n * (b - 1))
        assert np.all(np.abs(out[:, :, 1] - truth) <= n * (b - 1))
        assert all(abs(pcpu_value(seg, c, 0, k)) < b for c in range(n) for k in range(NM))


@pytest.mark.parametrize("n", [1, 16, 17, 40])
def test_percpu_threshold_exactly_at_batch(n, new_segment):
    b = max(32, 2 * n)
    with new_segment(D.geometry("percpu", n)) as seg:
        D.prepare("percpu", seg)
        cpu = n - 1

        def add(d, fault=0):
            D.run("percpu", seg, [D.op_add(cpu, -1, 0, L.ANON, d, fault)], record=False)

        add(b - 1, 1)  # |c + d| = B - 1: stays on the CPU
        assert pcpu_value(seg, cpu, 0, L.ANON) == b - 1
        assert D.read_all("percpu", seg)[L.ANON, 1] == 0 and D.stat(seg, cpu, L.S_SLOW) == 0
        add(1, 1)  # |c + d| = B: folded into count
        assert pcpu_value(seg, cpu, 0, L.ANON) == 0
        assert D.read_all("percpu", seg)[L.ANON, :2].tolist() == [b, b]
        assert D.stat(seg, cpu, L.S_SLOW) == 1
        add(-(b - 1))
        assert pcpu_value(seg, cpu, 0, L.ANON) == -(b - 1)
        add(-1)
        assert pcpu_value(seg, cpu, 0, L.ANON) == 0
        assert D.read_all("percpu", seg)[L.ANON, :2].tolist() == [0, 0]
        assert D.stat(seg, cpu, L.S_SLOW) == 2


@pytest.mark.parametrize("fault", [0, 1])
def test_split_fast_path_only_for_a_fault_by_a_task_of_the_mm(fault, new_segment):
    """A fault by task 0 of mm 0 is cached; with fault 0, by a task of mm 1, or by no task it is not."""
    with new_segment(D.geometry("split", 2, nmm=2, ntask=2)) as seg:
        D.prepare("split", seg, [0, 1])
        ops = [D.op_add(0, 0, 0, L.ANON, 1, fault), D.op_add(1, 1, 0, L.ANON, 1, fault),
               D.op_add(1, -1, 0, L.ANON, 1, fault)]
        out, _ = D.run("split", seg, ops)
        assert out[:, L.ANON, 0].tolist() == [1, 2, 3]
        assert out[:, L.ANON, 1].tolist() == ([0, 1, 2] if fault else [1, 2, 3])
        assert int(seg.words[D.task_addr(seg, 0, 2 + L.ANON)]) == fault  # the task's cache
        assert int(seg.words[D.task_addr(seg, 1, 2 + L.ANON)]) == 0


# ================================================================= cpu offline
@relaxed
@given(sc=D.scenario(max_cpu=8), data=st.data())
def test_cpu_offline_keeps_precise(design, sc, data, new_segment):
    cfg, steps = sc
    victim = data.draw(st.integers(0, cfg["ncpu"] - 1))
    with _segment(design, cfg, new_segment) as seg:
        _run_scenario(design, seg, cfg, steps)
        before = D.read_all(design, seg)
        held = np.zeros(cfg["nmm"] * NM, dtype=np.int64)
        if design in ("percpu", "single", "single-atomic"):
            held = np.array([pcpu_value(seg, victim, mm, k) for mm in range(cfg["nmm"]) for k in range(NM)])
        others = {(c, mm, k): pcpu_value(seg, c, mm, k) for c in range(cfg["possible"]) if c != victim
                  for mm in range(cfg["nmm"]) for k in range(seg.h(L.H_PCPU_KWORDS))}
        D.run(design, seg, [D.op_offline(victim)], record=False)
        after = D.read_all(design, seg)
        assert np.array_equal(after[:, 0], before[:, 0])  # precise unchanged
        assert np.array_equal(after[:, 2:], before[:, 2:])  # so are the bounds
        if design in ("percpu", "single", "single-atomic"):
            # the CPU's values went to count (a single-mode mm's slices hold nothing)
            assert np.array_equal(after[:, 1], before[:, 1] + held * (before[:, 2] > 0))
            assert all(pcpu_value(seg, victim, mm, k) == 0 for mm in range(cfg["nmm"]) for k in range(NM))
        else:
            assert np.array_equal(after[:, 1], before[:, 1])  # nothing per CPU to fold, or already in the read
        if design == "pcpcache":
            line = seg.h(L.H_LINE)
            g = seg.h(L.H_GLOBAL) + victim * 3 * line  # mm line, then in_use and count[4]
            assert seg.words[g] == 0 and not seg.words[g + line: g + line + 1 + NM].any()  # flushed, caches nothing
        assert all(pcpu_value(seg, *key) == v for key, v in others.items())  # nobody else touched
        # the counters still work afterwards, also on the CPU when it comes back
        ops = [D.op_add(0, -1, 0, L.FILE, 5), D.op_add(victim, -1, 0, L.FILE, 2)]
        out, _ = D.run(design, seg, ops)
        assert out[-1, L.FILE, 0] == before[L.FILE, 0] + 7


def test_percpu_offline_moves_a_known_value(new_segment):
    with new_segment(D.geometry("percpu", 4, possible=6, nmm=2)) as seg:
        D.prepare("percpu", seg)
        D.run("percpu", seg, [D.op_add(2, -1, 1, L.SHMEM, 7), D.op_add(3, -1, 1, L.SHMEM, -5)], record=False)
        assert D.read_all("percpu", seg)[1 * NM + L.SHMEM, :2].tolist() == [2, 0]
        D.run("percpu", seg, [D.op_offline(2)], record=False)
        assert D.read_all("percpu", seg)[1 * NM + L.SHMEM, :2].tolist() == [2, 7]
        assert pcpu_value(seg, 2, 1, L.SHMEM) == 0 and pcpu_value(seg, 3, 1, L.SHMEM) == -5


def test_percpu_offline_leaves_the_online_mask_and_recomputes_the_batch(new_segment):
    """percpu_counter_cpu_dead (6.1 lib/percpu_counter.c): compute_batch_value, nr = num_online_cpus() with the
    dead CPU already out of cpu_online_mask, then the fold; every later add uses the new batch."""
    n = 20  # batch max(32, 2 * 20) = 40 at boot
    with new_segment(D.geometry("percpu", n)) as seg:
        D.prepare("percpu", seg)
        D.run("percpu", seg, [D.op_add(n - 1, -1, 0, L.ANON, 39), D.op_add(0, -1, 0, L.ANON, 38)], record=False)
        assert (seg.h(L.H_DPARAM + percpu.D_BATCH), seg.h(L.H_DPARAM + percpu.D_BOOT_BATCH)) == (40, 40)
        D.run("percpu", seg, [D.op_offline(n - 1)], record=False)
        mask = seg.words[seg.h(L.H_GLOBAL)]
        assert mask == 1 << (n - 1)  # in cpu_dying_mask, so out of cpu_online_mask: 19 online
        assert seg.h(L.H_DPARAM + percpu.D_BATCH) == 38  # max(32, 19 * 2)
        assert pcpu_value(seg, n - 1, 0, L.ANON) == 0  # folded
        assert D.read_all("percpu", seg)[L.ANON, :2].tolist() == [39 + 38, 39]
        # CPU 0 holds 38, as much as the new batch: its next add takes the slow path (with 40 it would not)
        D.run("percpu", seg, [D.op_add(0, -1, 0, L.ANON, -1)], record=False)
        assert pcpu_value(seg, 0, 0, L.ANON) == 37  # |38 - 1| < 38: the fast path
        D.run("percpu", seg, [D.op_add(0, -1, 0, L.ANON, 1)], record=False)
        assert pcpu_value(seg, 0, 0, L.ANON) == 0 and D.stat(seg, 0, L.S_SLOW) == 1
        assert D.read_all("percpu", seg)[L.ANON, :2].tolist() == [77, 77]
        # a second CPU offline: 18 online, batch 36; the same CPU again changes nothing
        D.run("percpu", seg, [D.op_offline(3), D.op_offline(3)], record=False)
        assert seg.h(L.H_DPARAM + percpu.D_BATCH) == 36 and seg.words[seg.h(L.H_GLOBAL)] == (1 << 19) | (1 << 3)
        # the stated bound keeps the boot batch: values written under 40 stay until their CPU's next add
        assert D.read_all("percpu", seg)[L.ANON, 2:].tolist() == [n * 39, n * 39]


@pytest.mark.parametrize("name", ["single", "single-atomic"])
def test_single_per_cpu_mode_carries_percpus_batch_and_dying_mask(name):
    """single's per-CPU mode runs percpu's offline: its segment has the mask words and both batches."""
    shape = designs.get(name).shape(20, 70, 1, options={"online_cpus": 20})
    assert shape.params == (40, 40) and shape.global_words == 2


# ================================================================= mm destroy
@relaxed
@given(sc=D.scenario(max_cpu=8), data=st.data())
def test_mm_destroy_zero_when_balanced_else_counts_leaks(design, sc, data, new_segment):
    cfg, steps = sc
    nmm = cfg["nmm"]
    leak = data.draw(st.lists(st.tuples(st.integers(0, nmm - 1), st.integers(0, NM - 1)), unique=True, max_size=6))
    leak_by = data.draw(st.integers(1, 3) | st.integers(-3, -1) | st.integers(1000, 10 ** 9))
    with _segment(design, cfg, new_segment) as seg:
        ops, _, truth = _run_scenario(design, seg, cfg, steps)
        truth = truth[-1] if len(ops) else np.zeros(nmm * NM, dtype=np.int64)
        # unmap everything from random CPUs, except the leaked counters (left off by leak_by)
        undo = []
        for mm in range(nmm):
            for k in range(NM):
                cpu = data.draw(st.integers(0, cfg["ncpu"] - 1))
                undo.append(D.op_add(cpu, -1, mm, k, -int(truth[mm * NM + k]) + (leak_by if (mm, k) in leak else 0)))
        out, _ = D.run(design, seg, undo)
        _, bad = D.run(design, seg, [D.op_destroy(mm) for mm in range(nmm)], record=False)
        # "Bad rss-counter state" for each leaked member
        assert bad.tolist() == [sum(1 for m, _ in leak if m == mm) for mm in range(nmm)]
        assert np.count_nonzero(out[-1, :, 0]) == len(leak)


def test_mm_destroy_sees_a_leak_held_privately(design, new_segment):
    """One page faulted by task 0 of mm 1 on CPU 3 sits where the design keeps it (a per-CPU word,
    split's task cache, pcpcache's CPU delta, single's local word, a node counter under the batch,
    a level-0 counter): mm_destroy must find it there."""
    cfg = dict(ncpu=4, possible=6, nmm=2, ntask=1, task_mms=[1], task_cpus=[3], nodes=(0, 0, 1, 1), pack=False,
               line_words=8)
    with _segment(design, cfg, new_segment) as seg:
        D.prepare(design, seg, [1], nodes=cfg["nodes"])
        _, bad = D.run(design, seg, [D.op_destroy(0), D.op_destroy(1)], record=False)
        assert bad.tolist() == [0, 0]
        D.run(design, seg, D.expand(cfg, [("faults", 0, L.SWAP, 1)]), record=False)
        seen = D.read_all(design, seg)[1 * NM + L.SWAP]
        assert seen[0] == 1
        assert seen[1] == (1 if design in ("atomic", "pcpcache", "single", "single-atomic") else 0)  # the approximate read
        _, bad = D.run(design, seg, [D.op_destroy(0), D.op_destroy(1)], record=False)
        assert bad.tolist() == [0, 1]
        # sums to 0 across CPUs: not a leak
        D.run(design, seg, [D.op_add(1, -1, 1, L.ANON, 1), D.op_add(2, -1, 1, L.ANON, -1)], record=False)
        assert D.run(design, seg, [D.op_destroy(1)], record=False)[1].tolist() == [1]
        D.run(design, seg, [D.op_add(0, -1, 1, L.FILE, -2)], record=False)
        assert D.run(design, seg, [D.op_destroy(1)], record=False)[1].tolist() == [2]


# ================================================================= mm init
def design_words(design, seg, cfg, mm):
    """Addresses of the words mm_init must zero for mm, and those it may leave (single's lazy slices)."""
    shape = designs.get(design).shape(cfg["ncpu"], cfg["possible"], cfg["nmm"], line_words=cfg["line_words"],
                                      nodes=cfg["nodes"])
    own = [D.mm_addr(seg, mm, j) for j in range(shape.mm_words)]
    if design == "pcpcache":  # atomic[4] on the first line (the rest of it unused), the cpumask from the second
        line = cfg["line_words"]
        own = own[:NM] + own[line:]
    slices = [D.pcpu_addr(seg, c, mm, k) for c in range(cfg["possible"]) for k in range(shape.pcpu_words_per_mm)]
    if design == "split":  # the caches of the mm's tasks live in their task records
        own += [D.task_addr(seg, t, j) for t, m in enumerate(cfg["task_mms"]) if m == mm
                for j in range(2 + NM)]
    if design in ("single", "single-atomic"):
        return own, slices
    return own + slices, []


@pytest.mark.parametrize("pack", [False, True])
def test_mm_init_zeroes_every_word_of_the_mm(design, pack, new_segment):
    rng = np.random.default_rng(1)
    cfg = dict(ncpu=3, possible=7, nmm=3, ntask=3, task_mms=[0, 1, 2], task_cpus=[0, 1, 2], nodes=(0, 1, 1),
               pack=pack, line_words=8)
    with _segment(design, cfg, new_segment) as seg:
        w = seg.words
        D.prepare(design, seg, cfg["task_mms"], nodes=cfg["nodes"], init=False)
        words = {mm: design_words(design, seg, cfg, mm) for mm in range(cfg["nmm"])}
        # garbage in every design word, as a reused allocation would hold (locks included: a lock
        # left set would hang the reads)
        for own, lazy in words.values():
            w[own + lazy] = rng.integers(1, 1 << 40, len(own + lazy))
        if design in ("percpu", "single", "single-atomic"):  # the struct percpu_counters are garbage too
            assert all(w[D.mm_addr(seg, 1, percpu.STRUCT_WORDS * k)] != 0 for k in range(NM))
        garbage = w.copy()
        D.run(design, seg, [D.op_init(1)], record=False)
        own, lazy = words[1]
        # percpu's fbc->counters hold the allocation's pointer (its word in CPU 0's unit), not 0
        ptrs = {D.mm_addr(seg, 1, percpu.STRUCT_WORDS * k + 4): D.pcpu_addr(seg, 0, 1, k)
                for k in range(NM)} if design == "percpu" else {}
        assert not w[[a for a in own if a not in ptrs]].any()  # mm 1: every other word (every slice, caches)
        assert {a: int(w[a]) for a in ptrs} == ptrs
        assert np.array_equal(w[lazy], garbage[lazy])  # single: no per-CPU memory touched in single mode
        for mm in (0, 2):  # the others are untouched
            assert np.array_equal(w[sum(words[mm], [])], garbage[sum(words[mm], [])])
        touched = np.flatnonzero(w != garbage)
        assert set(touched.tolist()) <= set(own)
        D.run(design, seg, [D.op_init(0), D.op_init(2)] + [D.op_clone(-1, mm) for mm in cfg["task_mms"]],
              record=False)
        assert not D.read_all(design, seg)[:, :2].any()
        assert D.run(design, seg, [D.op_destroy(mm) for mm in range(3)], record=False)[1].tolist() == [0, 0, 0]
        if design in ("single", "single-atomic"):  # the switch to percpu allocates (zeroes) the slices: still 0
            D.run(design, seg, [D.op_clone(0, 1)], record=False)
            assert not w[lazy].any()
            assert not D.read_all(design, seg)[:, :2].any()
            assert D.read_all(design, seg)[NM, 2] > 0  # mm 1 now states percpu's bound


def test_engine_init_mms_zeroes_all(design, new_segment):
    cfg = dict(ncpu=2, possible=4, nmm=3, ntask=1, task_mms=[], task_cpus=[], nodes=(0, 0), pack=False,
               line_words=8)
    with _segment(design, cfg, new_segment) as seg:
        lo = seg.h(L.H_PCPU)
        hi = seg.h(L.H_MM) + 3 * seg.h(L.H_MM_STRIDE)
        seg.words[lo:hi] = 99
        engine_for(design).init_mms(seg.words)
        assert not D.read_all(design, seg)[:, :2].any()
        assert D.run(design, seg, [D.op_destroy(mm) for mm in range(3)], record=False)[1].tolist() == [0, 0, 0]


# ================================================================= the engine's end-of-run checks
def _publish_truth(seg, ops):
    """Each CPU's truth line, as the engine's _apply keeps it."""
    w = seg.words
    for op in ops:
        if op[0] == D.ADD:
            _, cpu, _, mm, k, d, _ = op
            w[seg.h(L.H_TRUTH) + cpu * seg.h(L.H_TRUTH_STRIDE) + mm * NM + k] += d


@relaxed
@given(sc=D.scenario(max_cpu=6))
def test_engine_quiescent_check_and_teardown(design, sc, new_segment):
    """quiescent_check reports (truth, precise, approx, bound) from the truth lines; teardown brings all to 0."""
    cfg, steps = sc
    with _segment(design, cfg, new_segment) as seg:
        eng = engine_for(design)
        ops, _, truth = _run_scenario(design, seg, cfg, steps)
        truth = truth[-1] if len(ops) else np.zeros(cfg["nmm"] * NM, dtype=np.int64)
        w = seg.words
        _publish_truth(seg, ops)
        check = np.zeros((cfg["nmm"] * NM, 5), dtype=np.int64)
        eng.quiescent_check(w, check)
        assert np.array_equal(check[:, 0], truth)
        assert np.array_equal(check[:, 1], truth)
        now = D.read_all(design, seg)
        assert np.array_equal(check[:, 2:], now[:, 1:])  # the same approximate read and bound
        inside = (check[:, 2] >= truth - check[:, 3]) & (check[:, 2] <= truth + check[:, 4])
        assert np.all(inside | ((truth < 0) if design in ("split", "pcpcache") else False))
        bad = eng.teardown(w, 0)
        assert bad.tolist() == [0] * cfg["nmm"]
        assert not D.read_all(design, seg)[:, 0].any()


@relaxed
@given(sc=D.scenario(max_cpu=4, offline=False))
def test_engine_exit_all_folds_tasks_and_leaves_cpus(design, sc, new_segment):
    """exit_all: every queued task exits on its CPU, then every CPU leaves its mm. Afterwards no
    task cache (split) nor CPU cache (pcpcache) holds anything: the approximate read is exact."""
    cfg, steps = sc
    with _segment(design, cfg, new_segment) as seg:
        D.prepare(design, seg, cfg["task_mms"], nodes=cfg["nodes"])
        s = D.Sched(cfg["ncpu"], cfg["nmm"], cfg["task_mms"], cfg["task_cpus"])
        for step in steps:
            for _ in range(step[3] if step[0] == "faults" else 1):
                s.step(("fault", step[1], step[2]) if step[0] == "faults" else step)
        # balance the clones: the tasks' own exits in exit_all end the threads init_mms created
        for t in range(cfg["ntask"]):
            while s.extra[s.mm[t]] > 0:
                s.step(("exit", t))
        D.run(design, seg, s.ops, record=False)
        w = seg.words
        rq, rs = seg.h(L.H_RQ), seg.h(L.H_RQ_STRIDE)
        for cpu in range(cfg["ncpu"]):
            mine = [t for t in range(cfg["ntask"]) if s.cpu[t] == cpu]
            w[rq + cpu * rs + L.Q_N] = len(mine)
            w[rq + cpu * rs + L.Q_IDS: rq + cpu * rs + L.Q_IDS + len(mine)] = mine
            w[seg.h(L.H_CPUSTAT) + cpu * seg.h(L.H_CPUSTAT_STRIDE) + L.S_CUR_MM] = s.cur[cpu]
        truth = D.truth_after_each(s.ops, cfg["nmm"])[-1]
        engine_for(design).exit_all(w)
        vals = D.read_all(design, seg)
        assert np.array_equal(vals[:, 0], truth)
        if design in ("split", "pcpcache", "atomic"):
            assert np.array_equal(vals[:, 1], np.maximum(truth, 0) if design in ("split", "pcpcache") else truth)
        if design == "split":
            assert not vals[:, 2].any()  # every thread exited: bound 0
            for t in range(cfg["ntask"]):
                assert not w[D.task_addr(seg, t, 2): D.task_addr(seg, t, 2 + NM)].any()
        if design == "pcpcache":
            for cpu in range(cfg["ncpu"]):
                assert w[seg.h(L.H_GLOBAL) + cpu * 3 * seg.h(L.H_LINE)] == 0  # caches no mm
            assert all(w[seg.h(L.H_CPUSTAT) + c * seg.h(L.H_CPUSTAT_STRIDE) + L.S_CUR_MM] == -1
                       for c in range(cfg["ncpu"]))


def test_pernode_setup_writes_the_node_map(new_segment):
    nodes = (0, 0, 1, 2, 2)
    shape = pernode.shape(5, 5, 1, nodes=nodes)
    # 3 counters in use, batch 32, slack: counters 0 and 2 have 2 CPUs, 1 has one (updates of 1)
    assert shape.params == (3, 32, 2 * (31 + 2), 2 * 2 * (31 + 2) + 32) and shape.global_words == 5
    assert shape.mm_words == 4 * 33  # rss_stat[NR_MM_COUNTERS] of {global, numa_counters[32]}
    with new_segment(D.geometry("pernode", 5, nodes=nodes)) as seg:
        pernode.setup(seg.words, 5, nodes)
        g = seg.h(L.H_GLOBAL)
        assert seg.words[g: g + 5].tolist() == list(nodes)
        D.prepare("pernode", seg, nodes=nodes)
        # 20 on each CPU: counters 0 (CPUs 0, 1) and 2 (CPUs 3, 4) reach 40 and move to the global
        D.run("pernode", seg, [D.op_add(c, -1, 0, L.ANON, 20) for c in range(5)], record=False)
        anon = D.mm_addr(seg, 0, L.ANON * 33)
        assert int(seg.words[anon]) == 80
        assert seg.words[anon + 1: anon + 4].tolist() == [0, 20, 0] and not seg.words[anon + 4: anon + 33].any()
        assert D.read_all("pernode", seg)[L.ANON].tolist() == [100, 80, 93, 93]


def test_pernode_batch_and_node_index_follow_the_rfc():
    """max(32, (num_possible_cpus() >> NODES_SHIFT) * 2) with NODES_SHIFT 6; numa_node_id() % 32."""
    assert [pernode.batch_for(p) for p in (2, 64, 1087, 1088, 4096)] == [32, 32, 32, 34, 128]
    assert pernode.NCOUNTERS == 32 and pernode.STRUCT == 33
    assert pernode.slots_in_use((0, 1, 2)) == 3 and pernode.slots_in_use(tuple(range(64))) == 32
    # nodes 0 and 32 share counter 0: 2 CPUs there, one on counter 1
    assert pernode.slack_for((0, 32, 1), 3, 32, 1) == (31 + 2, 2 * (31 + 2) + 32)


def _reader_on(seg, truth, glob, counters, k=L.ANON):
    """Craft mm 0's member k (truth on CPU 0's line, the global, the node counters) and run one reader pass."""
    w = seg.words
    w[seg.h(L.H_TRUTH) + k] = truth
    base = D.mm_addr(seg, 0, k * 33)
    w[base] = glob
    w[base + 1: base + 1 + len(counters)] = counters
    r = seg.h(L.H_READER)
    w[r: r + L.R_HEAD_WORDS] = 0
    engine_for("pernode").reader_pass(w)
    return {name: int(w[r + slot]) for name, slot in (
        ("approx_viol", L.R_APPROX_VIOL), ("approx_transient", L.R_APPROX_TRANSIENT),
        ("approx_transient_max", L.R_APPROX_TRANSIENT_MAX), ("precise_viol", L.R_PRECISE_VIOL),
        ("precise_transient", L.R_PRECISE_TRANSIENT), ("precise_transient_max", L.R_PRECISE_TRANSIENT_MAX))}


def test_pernode_double_move_is_transient_within_the_slack_and_a_violation_beyond(new_segment):
    """The reader's verdicts on states a double move leaves (4 CPUs, 2 per node: bound 62, approximate
    slack 2 * (31 + 2) = 66, precise slack 2 * 2 * (31 + 2) = 132)."""
    nodes = (0, 0, 1, 1)
    with new_segment(D.geometry("pernode", 4, nodes=nodes, ring=16)) as seg:
        D.prepare("pernode", seg, nodes=nodes)
        assert pernode.slack_for(nodes, 4, 32, 1) == (66, 132)
        # each node left at -45 and -45 by double moves: global 190 for a truth of 100, 28 past the bound
        assert _reader_on(seg, 100, 190, [-45, -45]) == dict(
            approx_viol=0, approx_transient=1, approx_transient_max=28, precise_viol=0, precise_transient=0,
            precise_transient_max=0)
        # chained races (-100, -100): 138 past the bound, beyond the slack: a violation
        got = _reader_on(seg, 100, 300, [-100, -100])
        assert got["approx_viol"] == 1 and got["approx_transient"] == 0 and got["precise_viol"] == 0
        # a move of 40 between its global add and its node subtraction: the precise read counts it twice
        got = _reader_on(seg, 100, 100, [40, 0])
        assert (got["precise_transient"], got["precise_transient_max"], got["precise_viol"]) == (1, 40, 0)
        got = _reader_on(seg, 100, 100, [140, 0])  # beyond the precise slack
        assert got["precise_viol"] == 1 and got["precise_transient"] == 0


def test_pernode_consistent_finds_a_write_to_a_counter_no_cpu_uses(new_segment):
    nodes = (0, 0, 1, 1)
    with new_segment(D.geometry("pernode", 4, nodes=nodes)) as seg:
        D.prepare("pernode", seg, nodes=nodes)
        D.run("pernode", seg, [D.op_add(c, -1, 0, k, 40 - 7 * c) for c in range(4) for k in range(NM)],
              record=False)
        eng = engine_for("pernode")
        assert eng.design_consistent(seg.words) == 0
        seg.words[D.mm_addr(seg, 0, L.SWAP * 33 + 1 + 5)] = 1  # counter 5: no CPU is on node 5
        assert eng.design_consistent(seg.words) == 1
