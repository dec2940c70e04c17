"""tree (HPCC) over many shapes: the accuracy formula, the orders table, the root's range, compare_value,
the in-flight slack the reader allows.

lib/percpu_counter_tree.c, calculate_accuracy_topology: level 0 counts 2^k items
(k = order of nr_cpu_ids), not the CPUs that exist; levels 1..L have
2^(k - o1 - ... - ol) items; the batch of level 0 is B = 32 and each level's
batch is the previous one times its arity. M = sum over levels 0..L-1 of
(batch of the level at B = 1) x (items at that level) = L * 2^k; under = B*M,
over = (B-1)*M; 6 and 8 CPUs: M = 24 (768, 744). Shapes: possible CPUs
1..4096 with the table's orders and with explicit ``--tree-orders`` overrides.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import design_drivers as D
import design_models as M
from shmrss import layout as L
from shmrss.designs import tree

NM = L.NMEMBERS
B = 32
relaxed = settings(deadline=None, max_examples=60,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])

# ALGORITHMS.md's table; k = 17..19 are elided there ("..."): between {4,3,3,3,3} and {4,4,4,4,4}
# each step turns the leftmost 3 into a 4 (orders never increase towards the root)
TABLE = {1: (1,), 2: (1, 1), 3: (1, 1, 1), 4: (2, 1, 1), 5: (2, 2, 1), 6: (2, 2, 2), 7: (3, 2, 2), 8: (3, 3, 2),
         9: (3, 3, 3), 10: (3, 3, 2, 2), 11: (3, 3, 3, 2), 12: (3, 3, 3, 3), 13: (3, 3, 3, 2, 2),
         14: (3, 3, 3, 3, 2), 15: (3, 3, 3, 3, 3), 16: (4, 3, 3, 3, 3), 17: (4, 4, 3, 3, 3), 18: (4, 4, 4, 3, 3),
         19: (4, 4, 4, 4, 3), 20: (4, 4, 4, 4, 4)}
# the orders table of shared/design/ALGORITHMS.md, copied under tests/ so any checkout checks it; when the
# reference itself is beside the checkout, the copy must still be the reference's words
ALGORITHMS = Path(__file__).resolve().parent / "data" / "algorithms_orders.txt"
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "design" / "ALGORITHMS.md"


def m_by_definition(possible: int, orders) -> int:
    """M straight from the kernel's definition: level l (0..L-1) has 2^(k - o1 - ... - ol) items of
    batch 2^(o1 + ... + ol) at B = 1, level 0 counting 2^k items whatever the CPUs (the root is not counted)."""
    k = sum(orders)
    m = 2 ** k if orders else 0
    shift = 0
    for o in list(orders)[:-1]:
        shift += o
        m += (2 ** shift) * (2 ** (k - shift))
    return m


POSSIBLE = st.one_of(st.integers(1, 16), st.integers(1, 4096),
                     st.sampled_from([2 ** i + j for i in range(13) for j in (-1, 0, 1) if 1 <= 2 ** i + j <= 4096]))


@st.composite
def shapes(draw, possible=POSSIBLE):
    """(possible, orders, override): the table's orders, or a random --tree-orders composition of k."""
    p = draw(possible)
    k = M.ceil_log2(p)
    if k == 0 or draw(st.booleans()):
        return p, TABLE.get(k, ()), None
    parts = draw(st.integers(1, min(5, k)))
    cuts = sorted(draw(st.lists(st.integers(1, k - 1), min_size=parts - 1, max_size=parts - 1, unique=True))) \
        if parts > 1 else []
    orders = tuple(b - a for a, b in zip([0, *cuts], [*cuts, k]))
    return p, orders, orders


# ================================================================= the formula and the table
def test_eight_cpu_binary_example():
    assert tree.orders_for(8) == (1, 1, 1)
    assert tree.accuracy(8, (1, 1, 1)) == (24, 768, 744)
    assert m_by_definition(8, (1, 1, 1)) == 8 + 2 * 4 + 4 * 2 == 24


@pytest.mark.parametrize("possible,expect", [(6, (24, 768, 744)), (5, (24, 768, 744)), (3, (8, 256, 248)),
                                             (12, (48, 1536, 1488)), (384, (1536, 49152, 47616))])
def test_accuracy_counts_level_items_from_the_cpu_order(possible, expect):
    """calculate_accuracy_topology: ``level_items = 1U << nr_cpus_order``: 6 CPUs is 768/744, not 704/682."""
    orders = tree.orders_for(possible)
    assert tree.accuracy(possible, orders) == expect
    assert expect[0] == len(orders) * 2 ** sum(orders)


@settings(deadline=None, max_examples=400)
@given(shape=shapes())
def test_accuracy_matches_the_definition(shape):
    p, orders, override = shape
    assert tree.orders_for(p, override) == orders
    m = m_by_definition(p, orders)
    assert tree.accuracy(p, orders) == (m, B * m, (B - 1) * m)
    assert M.TreeShape(p, orders).m() == m
    # the shape stores what the compiled code reads: log2 B, levels, items, under, over, the orders
    s = tree.shape(p, p, 1, options={"tree_orders": override})
    nitems = sum(2 ** (sum(orders) - sum(orders[: i + 1])) for i in range(len(orders))) if orders else 1
    assert s.params == (5, len(orders), nitems, B * m, (B - 1) * m, *orders)
    assert len(s.params) <= L.H_WORDS - L.H_DPARAM
    assert s.pcpu_words_per_mm == NM and s.mm_words == (1 + NM * nitems) * 8


@pytest.mark.parametrize("k", range(1, 21))
def test_orders_table(k):
    assert tree.ORDERS[k] == TABLE[k]
    assert sum(TABLE[k]) == k and len(TABLE[k]) <= tree.MAX_LEVELS
    assert tree.orders_for(2 ** k) == TABLE[k]
    assert tree.orders_for(2 ** (k - 1) + 1) == TABLE[k]  # k = ceil(log2 P)
    if k > 1:
        assert tree.orders_for(2 ** (k - 1)) == TABLE[k - 1]


def test_orders_table_is_the_one_in_algorithms_md():
    copy = [ln for ln in ALGORITHMS.read_text().splitlines() if not ln.startswith("#")]
    if REFERENCE.exists():  # the copy has not drifted from the reference it was taken from
        assert " ".join(" ".join(copy).split()) in " ".join(REFERENCE.read_text().split())
    text = " ".join(" ".join(copy).split())
    found = {int(k): tuple(int(x) for x in v.split(",")) for k, v in re.findall(r"k=(\d+):(?: L=\d+)? \{([\d,]+)\}", text)}
    assert len(found) >= 17, found
    for k, orders in found.items():
        assert tree.ORDERS[k] == orders == TABLE[k], k


def test_one_possible_cpu_has_no_levels():
    assert tree.orders_for(1) == ()
    assert tree.shape(1, 1, 1).params[:3] == (5, 0, 1)


@pytest.mark.parametrize("possible,orders", [(8, (2,)), (8, (1, 1, 1, 0)), (8, (4, -1)), (64, (1, 1, 1, 1, 1, 1)),
                                             (5, (1, 1)), (5, (4,))])
def test_bad_orders_refused(possible, orders):
    with pytest.raises(ValueError, match="tree-orders"):
        tree.orders_for(possible, orders)


# ================================================================= the root's range, run through compiled code
DELTA = st.one_of(st.integers(-3, 3), st.sampled_from([32, -32, 31, -31, 33, -33, 64, -64, 1 << 12, -(1 << 12)]),
                  st.integers(-5000, 5000), st.integers(-(1 << 31), 1 << 31))


@relaxed
@given(shape=shapes(), data=st.data())
def test_root_stays_within_range_after_every_add(shape, data, new_segment):
    p, orders, override = shape
    options = {"tree_orders": override}
    nmm = data.draw(st.integers(1, 2))
    cpu = st.one_of(st.integers(0, min(p, 8) - 1), st.integers(0, p - 1))
    adds = data.draw(st.lists(st.tuples(cpu, st.integers(0, nmm - 1), st.integers(0, NM - 1), DELTA),
                              min_size=10, max_size=120))
    ops = [D.op_add(c, -1, mm, k, d) for c, mm, k, d in adds]
    model = M.Tree(p, p, nmm, 0, options=options)
    D.driver("tree")
    with new_segment(D.geometry("tree", p, p, nmm, options=options)) as seg:
        D.prepare("tree", seg)
        out, _ = D.run("tree", seg, ops)
    truth = D.truth_after_each(ops, nmm)
    precise, root, under, over = (out[:, :, j] for j in range(4))
    assert np.array_equal(precise, truth)
    if not orders:  # one possible CPU: the read is exact
        assert np.array_equal(root, truth) and not under.any() and not over.any()
        return
    _, u, o = tree.accuracy(p, orders)
    assert np.all(under == u) and np.all(over == o)
    assert np.all(root >= truth - under), "root below truth - under"
    assert np.all(root <= truth + over), "root above truth + over"
    # floor carries: 0 <= truth - root <= sum over levels 0..L-1 of (batch - 1) * counters
    tight = model.shape.tight()
    assert tight < u
    assert np.all(truth - root >= 0) and np.all(truth - root <= tight)
    # and exactly the model's root
    for i, (c, mm, k, d) in enumerate(adds):
        model.add(c, -1, mm, k, d, 0)
        assert root[i, mm * NM + k] == model.approx(mm, k), f"after add {i} {adds[i]}"


@relaxed
@given(shape=shapes(), data=st.data())
def test_compare_value_agrees_with_the_precise_sign(shape, data, new_segment):
    p, orders, override = shape
    options = {"tree_orders": override}
    adds = data.draw(st.lists(st.tuples(st.integers(0, p - 1), st.integers(0, NM - 1), DELTA), max_size=60))
    ops = [D.op_add(c, -1, 0, k, d) for c, k, d in adds]
    truth = D.truth_after_each(ops, 1)[-1] if ops else np.zeros(NM, dtype=np.int64)
    _, u, o = tree.accuracy(p, orders)
    near = st.integers(-(u + o + 8), u + o + 8)
    probes = data.draw(st.lists(st.tuples(st.integers(0, NM - 1), st.one_of(near, near, st.integers(-(1 << 40),
                                                                                                    1 << 40))),
                                min_size=1, max_size=40))
    D.driver("tree")
    with new_segment(D.geometry("tree", p, p, 1, options=options)) as seg:
        D.prepare("tree", seg)
        D.run("tree", seg, ops, record=False)
        cmp_ops, expect = [], []
        for k, off in probes:
            v = int(truth[k]) + off if abs(off) <= u + o + 8 else off
            cmp_ops.append(D.op_compare(0, k, v))
            expect.append((int(truth[k]) > v) - (int(truth[k]) < v))
        _, res = D.run("tree", seg, cmp_ops, record=False)
        assert res.tolist() == expect


def test_compare_value_at_the_edges_of_the_range(new_segment):
    """8 CPUs: the root lags the truth; values just outside [root - over, root + under] are decided
    from the root, values inside are summed: every answer is the precise sign."""
    D.driver("tree")
    with new_segment(D.geometry("tree", 8)) as seg:
        D.prepare("tree", seg)
        D.run("tree", seg, [D.op_add(c, -1, 0, L.ANON, 31) for c in range(8)] + [D.op_add(0, -1, 0, L.ANON, 159)],
              record=False)
        vals = D.read_all("tree", seg)[L.ANON]
        precise, root, under, over = (int(x) for x in vals)
        assert (precise, root, under, over) == (8 * 31 + 159, 128, 768, 744)
        vs = [root - over - 1, root - over, root, precise - 1, precise, precise + 1, root + under, root + under + 1]
        _, res = D.run("tree", seg, [D.op_compare(0, L.ANON, v) for v in vs], record=False)
        assert res.tolist() == [(precise > v) - (precise < v) for v in vs]


def _root_addr(seg, mm, k):
    """The root item of (mm, k): the last item of the member's block, every item on its own line."""
    nitems = seg.h(L.H_DPARAM + 2)
    return D.mm_addr(seg, mm, (1 + k * nitems + nitems - 1) * seg.h(L.H_LINE))


def test_compare_value_decides_from_the_root_with_the_kernels_sides(new_segment):
    """precise_compare_value: ``compare_delta(v - count, under, over)``: v above the root by more than
    ``over`` is "v greater than the counter" without a sum. A crafted state (level 0 far above a root
    that never saw it) tells the kernel's sides from the swapped ones: the precise sum would say 1."""
    D.driver("tree")
    with new_segment(D.geometry("tree", 8)) as seg:
        D.prepare("tree", seg)
        seg.words[D.pcpu_addr(seg, 0, 0, L.ANON)] = 1000  # precise 1000, root 0
        precise, root, under, over = (int(x) for x in D.read_all("tree", seg)[L.ANON])
        assert (precise, root, under, over) == (1000, 0, 768, 744)
        vs = [over + 1, over, -under - 1, -under]
        _, res = D.run("tree", seg, [D.op_compare(0, L.ANON, v) for v in vs], record=False)
        # over + 1: decided (counter < v); over: summed (1000 > 744); -under - 1: decided; -under: summed
        assert res.tolist() == [-1, 1, 1, 1]


# ================================================================= in flight: the reader's transient slack
def _reader_words(seg):
    r = seg.h(L.H_READER)
    w = seg.words
    return {"viol": int(w[r + L.R_APPROX_VIOL]), "transient": int(w[r + L.R_APPROX_TRANSIENT]),
            "transient_max": int(w[r + L.R_APPROX_TRANSIENT_MAX]), "precise_viol": int(w[r + L.R_PRECISE_VIOL])}


@pytest.mark.parametrize("ncpu,possible", [(6, 6), (2, 8), (3, 16)])
def test_reader_counts_an_in_flight_carry_apart_from_violations(ncpu, possible, new_segment):
    """The measurement's own reader (the compiled engine): a root beyond the stated bound by no more than
    one carry per online CPU (each less than the batch of the last level below the root) is a transient
    read, counted and measured; beyond that slack it is a violation. Truth 0, no update in flight."""
    from shmrss.engine import engine_for

    eng = engine_for("tree")
    orders = tree.orders_for(possible)
    _, under, over = tree.accuracy(possible, orders)
    top = B << (sum(orders) - orders[-1])
    slack = ncpu * top
    assert top == (128 if possible <= 8 else 256)  # the header's Level 2: [-128 .. +127] for 8 CPUs
    g = D.geometry("tree", ncpu, possible)
    for root, side in ((over + 1, "transient"), (over + slack, "transient"), (-(under + slack), "transient"),
                       (over + slack + 1, "viol"), (-(under + slack + 1), "viol")):
        with new_segment(g) as seg:
            D.prepare("tree", seg)
            seg.words[_root_addr(seg, 0, L.ANON)] = root
            eng.reader_pass(seg.words)
            got = _reader_words(seg)
            beyond = root - over if root > 0 else -root - under
            if side == "transient":
                assert got == {"viol": 0, "transient": 1, "transient_max": beyond, "precise_viol": 0}, root
            else:
                assert got["viol"] == 1 and got["transient"] == 0, root


def test_settled_reads_stay_within_the_stated_bound(new_segment):
    """A settled counter (every carry landed) needs no slack: after many -1/+1 updates on every CPU the
    reader counts neither transient reads nor violations."""
    from shmrss.engine import engine_for

    eng = engine_for("tree")
    D.driver("tree")
    with new_segment(D.geometry("tree", 6)) as seg:
        D.prepare("tree", seg)
        rng = np.random.default_rng(7)
        ops = [D.op_add(int(rng.integers(0, 6)), -1, 0, L.ANON, int(rng.choice([-1, 1, -33, 100])))
               for _ in range(500)]
        D.run("tree", seg, ops, record=False)
        truth = int(D.truth_after_each(ops, 1)[-1][L.ANON])
        seg.words[seg.h(L.H_TRUTH) + L.ANON] = truth  # CPU 0's truth word holds the whole truth
        eng.reader_pass(seg.words)
        assert _reader_words(seg) == {"viol": 0, "transient": 0, "transient_max": 0, "precise_viol": 0}
