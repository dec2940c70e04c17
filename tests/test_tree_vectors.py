"""Upstream test vectors for ``tree``, run through the compiled design code a measurement runs.

The scenarios of HPCC's kunit test (lib/tests/percpu_counter_tree_kunit.c, compudj/linux-dev) and of
librseq's tests/percpu_counter_test.c (branch percpu-counter-hierarchical), written here in our own
code. Every add, read and compare goes through tests/design_driver_template.py, which inlines tree's
``add``, ``read_approx``, ``read_precise``, ``approx_bound`` and ``compare_value`` exactly as the
engine does. Two kernel counters are two members of one mm (FILE and ANON).

What each scenario checks after its updates, as the kunit ``check_counters`` does:
- precise sum == the expected value, and ``compare_value(expected) == 0`` (precise_compare_value);
- the approximate compare: ``compare_delta(v - approx, under, over) == 0``;
- ``v - under <= approx <= v + over``;
- the two counters that saw the same increments: equal precise sums, and their approximate compare
  ``compare_delta(a0 - a1, over0 + under1, under0 + over1) == 0``.
Updates are sequential (the kunit single-thread cases wait for each kthread; the multi-thread cases
only check once every thread is done, which a sequential order of the same adds reproduces).
Batch orders other than 5 are set in the segment's design parameters, which the compiled code reads.
"""

from __future__ import annotations

import numpy as np
import pytest

import design_drivers as D
from shmrss import layout as L
from shmrss.designs import tree

C0, C1 = L.FILE, L.ANON  # the two counters
VALUES = [5, 100, 127, 128, 255, 256, 4095, 4096, 500000, 0,
          -5, -100, -127, -128, -255, -256, -4095, -4096, -500000]  # hpcc_test_set's list


def compare_delta(delta: int, accuracy_neg: int, accuracy_pos: int) -> int:
    """lib/percpu_counter_tree.c's compare_delta, the convention every compare uses."""
    if delta >= 0:
        return 0 if delta <= accuracy_pos else 1
    return 0 if -delta <= accuracy_neg else -1


class Counter2:
    """One segment of tree with two counters; ops built as numpy rows and run in the compiled driver."""

    def __init__(self, seg, possible: int, batch_order: int = 5):
        self.seg, self.possible = seg, possible
        D.prepare("tree", seg)
        m, _, _ = tree.accuracy(possible, tree.orders_for(possible))
        w, p = seg.words, L.H_DPARAM
        w[p + 0] = batch_order  # the level-0 batch, log2
        w[p + 3] = (1 << batch_order) * m  # under
        w[p + 4] = ((1 << batch_order) - 1) * m  # over
        self.truth = [0, 0]

    def reset(self):
        D.run("tree", self.seg, [D.op_init(0)], record=False)
        self.truth = [0, 0]

    def add(self, cpus, k: int, incs) -> None:
        cpus = np.broadcast_to(np.asarray(cpus, dtype=np.int64), np.shape(incs))
        incs = np.asarray(incs, dtype=np.int64)
        ops = np.zeros((len(incs), D.OPW), dtype=np.int64)
        ops[:, 0], ops[:, 1], ops[:, 2], ops[:, 4], ops[:, 5] = D.ADD, cpus, -1, k, incs
        if len(ops):
            D.run("tree", self.seg, ops, record=False)
        self.truth[0 if k == C0 else 1] += int(incs.sum())

    def set(self, k: int, v: int) -> None:
        """percpu_counter_tree_set: ``bias = v - precise_sum_unbiased`` (the mm's bias word)."""
        unbiased = sum(int(self.seg.words[D.pcpu_addr(self.seg, c, 0, k)]) for c in range(self.possible))
        self.seg.words[D.mm_addr(self.seg, 0, k)] = v - unbiased  # one bias per counter (struct percpu_counter_tree)
        self.truth[0 if k == C0 else 1] = v

    def check(self, same: bool = True) -> None:
        rows = D.read_all("tree", self.seg)
        got = {}
        for i, k in enumerate((C0, C1)):
            precise, approx, under, over = (int(x) for x in rows[k])
            v = self.truth[i]
            assert precise == v
            assert compare_delta(v - approx, under, over) == 0, (v, approx, under, over)
            assert v - under <= approx <= v + over
            got[k] = (approx, under, over)
        _, res = D.run("tree", self.seg, [D.op_compare(0, C0, self.truth[0]), D.op_compare(0, C1, self.truth[1])],
                       record=False)
        assert res.tolist() == [0, 0]  # precise_compare_value
        if same:
            (a0, u0, o0), (a1, u1, o1) = got[C0], got[C1]
            assert self.truth[0] == self.truth[1]
            assert compare_delta(a0 - a1, o0 + u1, u0 + o1) == 0  # approximate_compare


@pytest.fixture
def counters(new_segment):
    """``counters(possible, batch_order=5)``: a fresh Counter2 (the segment is removed afterwards)."""
    made = []

    def make(possible: int, batch_order: int = 5) -> Counter2:
        cm = new_segment(D.geometry("tree", possible))
        seg = cm.__enter__()
        made.append(cm)
        return Counter2(seg, possible, batch_order)

    D.driver("tree")
    yield make
    for cm in made:
        cm.__exit__(None, None, None)


# ================================================================= kunit: single-thread cases
def _kunit_increments(kind: str, n: int, rng) -> np.ndarray:
    if kind == "one":
        return np.ones(n, dtype=np.int64)
    if kind == "minus_one":
        return -np.ones(n, dtype=np.int64)
    return rng.integers(-49999, 50000, n)  # (long) get_random_long() % 50000


@pytest.mark.parametrize("possible", [6, 8, 16])
@pytest.mark.parametrize("cpus", ["first", "first_random", "random"])
@pytest.mark.parametrize("kind", ["one", "minus_one", "random"])
def test_kunit_single_thread(counters, possible, cpus, kind):
    """hpcc_test_single_thread_{first,first_random,random}: batch 32, 10000 rounds of one increment to
    counter 0 on cpu0 and the same to counter 1 on cpu1, checked after every round."""
    rng = np.random.default_rng(possible * 7 + len(cpus) + len(kind))
    c = counters(possible)
    incs = _kunit_increments(kind, 10000, rng)
    cpu0 = np.zeros(10000, dtype=np.int64) if cpus != "random" else rng.integers(0, possible, 10000)
    cpu1 = np.zeros(10000, dtype=np.int64) if cpus == "first" else rng.integers(0, possible, 10000)
    for i in range(0, 10000, 250):  # checks every round for the first 250, then every 250th round
        step = 1 if i == 0 else 250
        for j in range(i, i + 250, step):
            c.add(cpu0[j:j + step], C0, incs[j:j + step])
            c.add(cpu1[j:j + step], C1, incs[j:j + step])
            c.check()


# ================================================================= kunit: multi-thread batch increments
PATTERNS = ("each_cpu", "even_cpus", "single_cpu", "random_cpu")


def _batch_round(c: Counter2, pattern: str, nr_inc: int, inc: int, rng) -> None:
    """One do_hpcc_multi_thread_increment_*: for each online CPU, nr_inc adds of inc to counter 0 on
    that CPU and to counter 1 on the pattern's CPU; then check_counters."""
    c.reset()
    n = c.possible
    cpus0 = np.repeat(np.arange(n), nr_inc)
    other = {"each_cpu": np.arange(n), "even_cpus": np.arange(n) & ~1, "single_cpu": np.zeros(n, dtype=np.int64),
             "random_cpu": rng.integers(0, n, n)}[pattern]
    c.add(cpus0, C0, np.full(len(cpus0), inc))
    c.add(np.repeat(other, nr_inc), C1, np.full(len(cpus0), inc))
    c.check()


@pytest.mark.parametrize("possible", [6, 16])
@pytest.mark.parametrize("batch_order", range(2, 10))
def test_kunit_multi_thread_batch_increment(counters, possible, batch_order):
    """hpcc_test_multi_thread_batch_increment: batch orders 2..9, nr_inc 1..512 (doubling), increments
    1..10000 (times 10), the four CPU patterns."""
    rng = np.random.default_rng(batch_order)
    c = counters(possible, batch_order)
    for nr_inc in (1 << i for i in range(10)):
        for inc in (1, 10, 100, 1000, 10000):
            for pattern in PATTERNS:
                _batch_round(c, pattern, nr_inc, inc, rng)


def test_kunit_multi_thread_random_walk(counters):
    """hpcc_test_multi_thread_random_walk: increments of get_random_long() % 512 repeated
    get_random_long() % 1024 times on random CPUs, 1000 per loop (4 loops here, 100 in kunit)."""
    rng = np.random.default_rng(11)
    c = counters(8)
    for _ in range(4):
        c.reset()
        for _ in range(1000):
            inc = int(rng.integers(-511, 512))
            nr = int(rng.integers(0, 1024))
            c.add(int(rng.integers(0, 8)), C0, np.full(nr, inc))
            c.add(int(rng.integers(0, 8)), C1, np.full(nr, inc))
        c.check()


@pytest.mark.parametrize("possible", [2, 6, 8, 64])
@pytest.mark.parametrize("cpu", ["first", "last"])
def test_kunit_set_add_compare(counters, possible, cpu):
    """hpcc_test_set: set v, add v, add -2v; precise and approximate compares after each step."""
    c = counters(possible)
    on = 0 if cpu == "first" else possible - 1
    for v in VALUES:
        c.set(C0, v)
        c.set(C1, v)
        c.check()
        c.add(on, C0, [v])
        c.add(on, C1, [v])
        assert c.truth == [2 * v, 2 * v]
        c.check()
        c.add(on, C0, [-2 * v])
        c.add(on, C1, [-2 * v])
        assert c.truth == [0, 0]
        c.check()


# ================================================================= librseq: percpu_counter_test.c
def _rseq_values(possible: int, n: int, rng) -> np.ndarray:
    """get_value: a random int masked to [0, 2^depth * batch), depth = the tree's CPU order."""
    mask = (1 << sum(tree.orders_for(possible))) * 32 - 1
    return (rng.integers(0, 1 << 31, n) - (1 << 30)) & mask


@pytest.mark.parametrize("possible", [4, 6, 8])
def test_librseq_negative(counters, possible):
    """test_counter_negative: one add of -1; the precise sum is -1 and the approximation within range."""
    c = counters(possible)
    c.add(possible - 1, C0, [-1])
    c.add(0, C1, [-1])
    c.check()


@pytest.mark.parametrize("possible", [4, 6, 8])
def test_librseq_incdec(counters, possible):
    """test_counter_incdec: v1, -v2, -v1, +v2 (back to 0) on the running CPU, checked after each quad."""
    rng = np.random.default_rng(possible)
    c = counters(possible)
    for _ in range(2000):
        v1, v2 = (int(x) for x in _rseq_values(possible, 2, rng))
        cpu = int(rng.integers(0, possible))
        for k in (C0, C1):
            c.add(cpu, k, [v1, -v2, -v1, v2])
        assert c.truth == [0, 0]
        c.check()


@pytest.mark.parametrize("possible", [4, 6, 8])
def test_librseq_random(counters, possible):
    """test_counter_random: random non-negative values on the running CPU, checked after every add."""
    rng = np.random.default_rng(100 + possible)
    c = counters(possible)
    cpu = int(rng.integers(0, possible))
    for v in _rseq_values(possible, 3000, rng):
        c.add(cpu, C0, [int(v)])
        c.add(cpu, C1, [int(v)])
        c.check()


@pytest.mark.parametrize("possible", [4, 6, 8])
def test_librseq_random_cpu_hop(counters, possible):
    """test_counter_random_cpu_hop: each round hops over every CPU in turn, one random add on each."""
    rng = np.random.default_rng(200 + possible)
    c = counters(possible)
    for _ in range(300):
        for cpu in range(possible):
            v = int(_rseq_values(possible, 1, rng)[0])
            c.add(cpu, C0, [v])
            c.add(cpu, C1, [v])
            c.check()


def test_each_counter_has_its_own_bias(new_segment):
    """struct percpu_counter_tree carries ``long bias;``: one per rss counter. Before issue 23 the tree kept one
    bias word per mm, read by all four counters."""
    with new_segment(D.geometry("tree", 2, nmm=1)) as seg:
        D.prepare("tree", seg, [])
        seg.words[D.mm_addr(seg, 0, L.ANON)] = 5  # percpu_counter_tree_set(&rss_stat[MM_ANONPAGES], 5) on zeros
        rows = D.read_all("tree", seg)
        assert rows[L.ANON, :2].tolist() == [5, 5]
        assert rows[L.FILE, :2].tolist() == [0, 0] and rows[L.SHMEM, :2].tolist() == [0, 0]
