"""The designs, single process, through compiled code: every update checked against a running truth.

Small @njit drivers call a design's (inlined) functions on a real segment, the
way the engine does (through ``atomics.raw``). ``percpu`` is also checked
against a Python model of upstream ``percpu_counter_add_batch``: the same
``count``, the same per-CPU values and the same number of slow paths.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from shmrss import designs, layout as L
from shmrss.atomics import load, raw
from shmrss.designs import percpu
from shmrss.designs._common import pcpu_word
from shmrss.engine import engine_for

NM = L.NMEMBERS
relaxed = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ----------------------------------------------------------------- compiled drivers, one set per design
_drivers: dict[str, dict] = {}


def drivers(name: str) -> dict:
    if name in _drivers:
        return _drivers[name]
    mod = designs.get(name)
    add, read_approx, read_precise, approx_bound = mod.add, mod.read_approx, mod.read_precise, mod.approx_bound
    cpu_offline, mm_init, mm_destroy = mod.cpu_offline, mod.mm_init, mod.mm_destroy

    @njit
    def apply_ops(words, ops, out, pcpu_max):
        """ops rows (cpu, mm, k, d); after op i: out[i, mm*4+k] = (precise, approx, under, over) of every
        counter, pcpu_max[i] = the largest |per-CPU word| of any CPU, mm, member."""
        seg = raw(words)
        nmm = seg[L.H_NMM]
        kw = seg[L.H_PCPU_KWORDS]
        for i in range(ops.shape[0]):
            add(seg, ops[i, 0], -1, ops[i, 1], ops[i, 2], ops[i, 3])
            for mm in range(nmm):
                for k in range(L.NMEMBERS):
                    row = mm * L.NMEMBERS + k
                    out[i, row, 0] = read_precise(seg, mm, k)
                    out[i, row, 1] = read_approx(seg, mm, k)
                    u, o = approx_bound(seg, mm, k)
                    out[i, row, 2] = u
                    out[i, row, 3] = o
            m = 0
            if kw > 0:
                for c in range(seg[L.H_POSSIBLE]):
                    for mm in range(nmm):
                        for j in range(kw):
                            v = abs(load(seg, pcpu_word(seg, c, mm, j)))
                            if v > m:
                                m = v
            pcpu_max[i] = m

    @njit
    def read_all(words, out):
        seg = raw(words)
        for mm in range(seg[L.H_NMM]):
            for k in range(L.NMEMBERS):
                out[mm * L.NMEMBERS + k, 0] = read_precise(seg, mm, k)
                out[mm * L.NMEMBERS + k, 1] = read_approx(seg, mm, k)

    @njit
    def offline(words, cpu):
        cpu_offline(raw(words), cpu)

    @njit
    def init(words, mm):
        mm_init(raw(words), mm)

    @njit
    def destroy(words, mm):
        return mm_destroy(raw(words), mm)

    @njit
    def add_one(words, cpu, mm, k, d):
        add(raw(words), cpu, -1, mm, k, d)

    _drivers[name] = dict(apply_ops=apply_ops, read_all=read_all, offline=offline, init=init, destroy=destroy,
                          add=add_one)
    return _drivers[name]


def run_ops(name, seg, ops):
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, 4)
    nmm = seg.h(L.H_NMM)
    out = np.zeros((len(ops), nmm * NM, 4), dtype=np.int64)
    pmax = np.zeros(len(ops), dtype=np.int64)
    drivers(name)["apply_ops"](seg.words, ops, out, pmax)
    return out, pmax


def read_all(name, seg):
    out = np.zeros((seg.h(L.H_NMM) * NM, 2), dtype=np.int64)
    drivers(name)["read_all"](seg.words, out)
    return out


def pcpu_addr(seg, cpu, mm, k):
    """Independent of _common.pcpu_word: from the header strides."""
    kk = mm * seg.h(L.H_PCPU_KWORDS) + k
    return seg.h(L.H_PCPU) + cpu * seg.h(L.H_PCPU_CSTRIDE) + kk * seg.h(L.H_PCPU_KSTRIDE)


def mm_addr(seg, mm, j):
    return seg.h(L.H_MM) + mm * seg.h(L.H_MM_STRIDE) + j


def pcpu_value(seg, cpu, mm, k):
    return int(seg.words[pcpu_addr(seg, cpu, mm, k)])


def slow_tally(seg, cpu):
    return int(seg.words[seg.h(L.H_CPUSTAT) + cpu * seg.h(L.H_CPUSTAT_STRIDE) + L.S_SLOW])


class PercpuModel:
    """percpu_counter_add_batch, in Python."""

    def __init__(self, possible, nmm, batch):
        self.b = batch
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


@pytest.fixture(scope="module", params=["atomic", "percpu"])
def design(request):
    engine_for(request.param)  # compile (or load) the engine before the timed hypothesis examples
    drivers(request.param)
    return request.param


# ----------------------------------------------------------------- op sequences
DELTA = st.one_of(st.integers(-3, 3), st.integers(-100, 100), st.integers(-(1 << 31), 1 << 31))


@st.composite
def scenario(draw, max_cpu=64):
    ncpu = draw(st.integers(1, max_cpu))
    possible = ncpu + draw(st.integers(0, 4))
    nmm = draw(st.integers(1, 3))
    pack = draw(st.booleans())
    line = draw(st.sampled_from([8, 16]))
    op = st.tuples(st.integers(0, ncpu - 1), st.integers(0, nmm - 1), st.integers(0, NM - 1), DELTA)
    ops = draw(st.lists(op, min_size=1, max_size=60))
    return dict(ncpu=ncpu, possible=possible, nmm=nmm, pack=pack, line_words=line), ops


def _segment(geometry, new_segment, design, cfg):
    return new_segment(geometry(design, cfg["ncpu"], cfg["possible"], cfg["nmm"], line_words=cfg["line_words"],
                                pack=cfg["pack"]))


def _truth_after_each(ops, nmm):
    truth = np.zeros((len(ops), nmm * NM), dtype=np.int64)
    running = np.zeros(nmm * NM, dtype=np.int64)
    for i, (_, mm, k, d) in enumerate(ops):
        running[mm * NM + k] += d
        truth[i] = running
    return truth


# ================================================================= every op against the truth
@relaxed
@given(sc=scenario())
def test_random_ops_precise_exact_and_approx_within_bound(design, sc, geometry, new_segment):
    cfg, ops = sc
    with _segment(geometry, new_segment, design, cfg) as seg:
        engine_for(design).init_mms(seg.words)
        out, pmax = run_ops(design, seg, ops)
        truth = _truth_after_each(ops, cfg["nmm"])
        precise, approx, under, over = (out[:, :, i] for i in range(4))
        assert np.array_equal(precise, truth)
        assert np.all(approx >= truth - under) and np.all(approx <= truth + over)
        n, b = cfg["ncpu"], percpu.batch_for(cfg["ncpu"])
        if design == "atomic":
            assert np.array_equal(approx, truth)  # exact, bound 0
            assert not under.any() and not over.any()
        else:
            assert np.all(under == n * (b - 1)) and np.all(over == n * (b - 1))
            assert np.all(pmax < b)  # every CPU's value stays in (-B, B)
            # exactly upstream's arithmetic
            model = PercpuModel(cfg["possible"], cfg["nmm"], b)
            for i, (cpu, mm, k, d) in enumerate(ops):
                model.add(cpu, mm, k, d)
                assert approx[i, mm * NM + k] == model.count[mm, k]
            for cpu in range(cfg["possible"]):
                for mm in range(cfg["nmm"]):
                    for k in range(NM):
                        assert pcpu_value(seg, cpu, mm, k) == model.local[cpu, mm, k]
            for cpu in range(cfg["ncpu"]):
                assert slow_tally(seg, cpu) == model.slow[cpu]


@relaxed
@given(n=st.integers(1, 64), data=st.data())
def test_percpu_batch_and_bound_for_each_cpu_count(n, data, geometry, new_segment):
    b = max(32, 2 * n)
    shape = percpu.shape(n, n, 1)
    assert shape.params == (b,)
    assert percpu.batch_for(n) == b
    engine_for("percpu")
    ops = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.just(0), st.integers(0, NM - 1),
                                       st.integers(-2 * b, 2 * b)), min_size=1, max_size=80))
    with new_segment(geometry("percpu", n)) as seg:
        assert seg.h(L.H_DPARAM) == b
        engine_for("percpu").init_mms(seg.words)
        out, pmax = run_ops("percpu", seg, ops)
        truth = _truth_after_each(ops, 1)
        assert np.array_equal(out[:, :, 0], truth)
        assert np.all(out[:, :, 2] == n * (b - 1))
        assert np.all(np.abs(out[:, :, 1] - truth) <= n * (b - 1))
        assert np.all(pmax < b)


@pytest.mark.parametrize("n", [1, 16, 17, 40])
def test_percpu_threshold_exactly_at_batch(n, geometry, new_segment):
    b = max(32, 2 * n)
    with new_segment(geometry("percpu", n)) as seg:
        engine_for("percpu").init_mms(seg.words)
        add = drivers("percpu")["add"]
        cpu = n - 1
        add(seg.words, cpu, 0, L.ANON, b - 1)  # |c + d| = B - 1: stays on the CPU
        assert pcpu_value(seg, cpu, 0, L.ANON) == b - 1
        assert read_all("percpu", seg)[L.ANON, 1] == 0 and slow_tally(seg, cpu) == 0
        add(seg.words, cpu, 0, L.ANON, 1)  # |c + d| = B: folded into count
        assert pcpu_value(seg, cpu, 0, L.ANON) == 0
        assert read_all("percpu", seg)[L.ANON].tolist() == [b, b]
        assert slow_tally(seg, cpu) == 1
        add(seg.words, cpu, 0, L.ANON, -(b - 1))
        assert pcpu_value(seg, cpu, 0, L.ANON) == -(b - 1)
        add(seg.words, cpu, 0, L.ANON, -1)
        assert pcpu_value(seg, cpu, 0, L.ANON) == 0
        assert read_all("percpu", seg)[L.ANON].tolist() == [0, 0]
        assert slow_tally(seg, cpu) == 2


# ================================================================= cpu offline
@relaxed
@given(sc=scenario(max_cpu=8), data=st.data())
def test_cpu_offline_folds_into_count(design, sc, data, geometry, new_segment):
    cfg, ops = sc
    victim = data.draw(st.integers(0, cfg["ncpu"] - 1))
    with _segment(geometry, new_segment, design, cfg) as seg:
        engine_for(design).init_mms(seg.words)
        run_ops(design, seg, ops)
        before = read_all(design, seg)
        others = {(c, mm, k): pcpu_value(seg, c, mm, k) for c in range(cfg["possible"]) if c != victim
                  for mm in range(cfg["nmm"]) for k in range(NM)} if design == "percpu" else {}
        held = [pcpu_value(seg, victim, mm, k) for mm in range(cfg["nmm"]) for k in range(NM)] \
            if design == "percpu" else [0] * (cfg["nmm"] * NM)
        drivers(design)["offline"](seg.words, victim)
        after = read_all(design, seg)
        assert np.array_equal(after[:, 0], before[:, 0])  # precise unchanged
        assert np.array_equal(after[:, 1], before[:, 1] + np.array(held))  # the CPU's value went to count
        if design == "percpu":
            for mm in range(cfg["nmm"]):
                for k in range(NM):
                    assert pcpu_value(seg, victim, mm, k) == 0
            assert all(pcpu_value(seg, *key) == v for key, v in others.items())  # nobody else touched
        # the counters still work afterwards
        drivers(design)["add"](seg.words, 0, 0, L.FILE, 5)
        assert read_all(design, seg)[L.FILE, 0] == before[L.FILE, 0] + 5


def test_percpu_offline_moves_a_known_value(geometry, new_segment):
    with new_segment(geometry("percpu", 4, possible=6, nmm=2)) as seg:
        engine_for("percpu").init_mms(seg.words)
        add = drivers("percpu")["add"]
        add(seg.words, 2, 1, L.SHMEM, 7)
        add(seg.words, 3, 1, L.SHMEM, -5)
        assert read_all("percpu", seg)[1 * NM + L.SHMEM].tolist() == [2, 0]
        drivers("percpu")["offline"](seg.words, 2)
        assert read_all("percpu", seg)[1 * NM + L.SHMEM].tolist() == [2, 7]
        assert pcpu_value(seg, 2, 1, L.SHMEM) == 0 and pcpu_value(seg, 3, 1, L.SHMEM) == -5


# ================================================================= mm destroy
@relaxed
@given(sc=scenario(max_cpu=8), data=st.data())
def test_mm_destroy_zero_when_balanced_else_counts_leaks(design, sc, data, geometry, new_segment):
    cfg, ops = sc
    nmm = cfg["nmm"]
    leak = data.draw(st.lists(st.tuples(st.integers(0, nmm - 1), st.integers(0, NM - 1)), unique=True, max_size=6))
    leak_by = data.draw(st.integers(1, 3) | st.integers(-3, -1) | st.integers(1000, 10 ** 9))
    with _segment(geometry, new_segment, design, cfg) as seg:
        engine_for(design).init_mms(seg.words)
        run_ops(design, seg, ops)
        truth = _truth_after_each(ops, nmm)[-1]
        # unmap everything from random CPUs, except the leaked counters (left off by leak_by)
        undo = []
        for mm in range(nmm):
            for k in range(NM):
                cpu = data.draw(st.integers(0, cfg["ncpu"] - 1))
                undo.append((cpu, mm, k, -int(truth[mm * NM + k]) + (leak_by if (mm, k) in leak else 0)))
        out, _ = run_ops(design, seg, undo)
        destroy = drivers(design)["destroy"]
        for mm in range(nmm):
            expect = sum(1 for m, _ in leak if m == mm)
            assert destroy(seg.words, mm) == expect  # "Bad rss-counter state" for each leaked member
        assert np.count_nonzero(out[-1, :, 0]) == len(leak)


def test_mm_destroy_sees_a_leak_held_on_a_cpu(design, geometry, new_segment):
    """A leak of 1 page in percpu lives only in a per-CPU word: destroy must sum the CPUs, not read count."""
    with new_segment(geometry(design, 4, possible=6, nmm=2)) as seg:
        engine_for(design).init_mms(seg.words)
        add = drivers(design)["add"]
        destroy = drivers(design)["destroy"]
        assert destroy(seg.words, 0) == 0 and destroy(seg.words, 1) == 0
        add(seg.words, 3, 1, L.SWAP, 1)
        assert read_all(design, seg)[1 * NM + L.SWAP, 1] == (1 if design == "atomic" else 0)  # not in count
        assert destroy(seg.words, 0) == 0
        assert destroy(seg.words, 1) == 1
        add(seg.words, 1, 1, L.ANON, 1)
        add(seg.words, 2, 1, L.ANON, -1)  # sums to 0 across CPUs: not a leak
        assert destroy(seg.words, 1) == 1
        add(seg.words, 0, 1, L.FILE, -2)
        assert destroy(seg.words, 1) == 2


# ================================================================= mm init
@pytest.mark.parametrize("pack", [False, True])
def test_mm_init_zeroes_every_possible_cpu(design, pack, geometry, new_segment):
    rng = np.random.default_rng(1)
    ncpu, possible, nmm = 3, 7, 3
    with new_segment(geometry(design, ncpu, possible=possible, nmm=nmm, pack=pack)) as seg:
        w = seg.words
        # garbage in every design word, as a reused allocation would hold
        mm_words = designs.get(design).shape(ncpu, possible, nmm).mm_words
        kw = seg.h(L.H_PCPU_KWORDS)
        design_words = {mm: [mm_addr(seg, mm, j) for j in range(mm_words)]
                        + [pcpu_addr(seg, c, mm, k) for c in range(possible) for k in range(kw)]
                        for mm in range(nmm)}
        for addrs in design_words.values():
            w[addrs] = rng.integers(1, 1 << 40, len(addrs))
        if design == "percpu":  # the locks too, as garbage: a lock left set would hang the reads
            assert all(w[mm_addr(seg, 1, 2 * k)] != 0 for k in range(NM))
        garbage = w.copy()
        init = drivers(design)["init"]
        init(w, 1)
        assert not w[design_words[1]].any()  # mm 1: every word, all possible CPUs' slices
        for mm in (0, 2):  # the others are untouched
            assert np.array_equal(w[design_words[mm]], garbage[design_words[mm]])
        touched = np.flatnonzero(w != garbage)
        assert set(touched.tolist()) <= set(design_words[1])
        init(w, 0)
        init(w, 2)
        vals = read_all(design, seg)
        assert not vals.any()
        for mm in range(nmm):
            assert drivers(design)["destroy"](w, mm) == 0


def test_engine_init_mms_zeroes_all(design, geometry, new_segment):
    with new_segment(geometry(design, 2, possible=4, nmm=3)) as seg:
        lo = seg.h(L.H_PCPU)
        hi = seg.h(L.H_MM) + 3 * seg.h(L.H_MM_STRIDE)
        seg.words[lo:hi] = 99
        engine_for(design).init_mms(seg.words)
        assert not read_all(design, seg).any()
        for mm in range(3):
            assert drivers(design)["destroy"](seg.words, mm) == 0


# ================================================================= the engine's end-of-run checks
@relaxed
@given(sc=scenario(max_cpu=6))
def test_engine_quiescent_check_and_teardown(design, sc, geometry, new_segment):
    """quiescent_check reports (truth, precise, approx, bound) from the truth lines; teardown brings all to 0."""
    cfg, ops = sc
    with _segment(geometry, new_segment, design, cfg) as seg:
        eng = engine_for(design)
        eng.init_mms(seg.words)
        run_ops(design, seg, ops)
        # publish the truth per CPU, as the engine does
        w = seg.words
        for cpu, mm, k, d in ops:
            w[seg.h(L.H_TRUTH) + cpu * seg.h(L.H_TRUTH_STRIDE) + mm * NM + k] += d
        truth = _truth_after_each(ops, cfg["nmm"])[-1]
        check = np.zeros((cfg["nmm"] * NM, 5), dtype=np.int64)
        eng.quiescent_check(w, check)
        assert np.array_equal(check[:, 0], truth)
        assert np.array_equal(check[:, 1], truth)
        assert np.all(np.abs(check[:, 2] - truth) <= np.maximum(check[:, 3], check[:, 4]))
        bad = eng.teardown(w, 0)
        assert bad.tolist() == [0] * cfg["nmm"]
        assert not read_all(design, seg)[:, 0].any()
