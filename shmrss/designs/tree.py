"""Design 7, ``tree``: hierarchical per-CPU counters (HPCC, 2025-2026).

Level 0 is one counter per possible CPU holding that CPU's whole running value
(never reset), in the CPU's per-CPU unit. Levels 1..L are shared items, each on
its own cache line in the mm; the single item of level L is the root, the
approximate sum. The arity order of each level comes from a fixed table by
``k = ceil(log2(possible CPUs))`` (overridable with ``--tree-orders``); a CPU's
item at a level is ``cpu & (items_at_level - 1)``.

Fast path: ``old = this_cpu_add_return(level0, d) - d`` (an ``xadd`` without
lock). The carry into the next level is the change of the value's part at or
above the level's batch: ``hi(new) - hi(old)`` with ``hi(x) = x & ~(batch - 1)``
(the part of d above the batch bit, plus one batch when the low part wrapped;
negative d borrows). No carry (the common case): done. Otherwise ``lock xadd``
the carry into the level-1 item and compute that item's carry with its own
batch (the previous batch times the level's arity), and so on up to the root;
a carry with no bits below an item's batch passes over that item unwritten, as
``percpu_counter_tree_add_slowpath`` does in the C this port follows (linux-mm's
public tree, linux-mm/linux-mm ``lib/percpu_counter_tree.c``, the blob at commit
23b86b4b; ``shmrss verify --design tree`` runs it beside this port)::

    for (level = 1; level < nr_levels; level++) {
        if (abs(inc) & (bit_mask - 1)) {
            atomic_long_t *count = &item[cpu & (level_items - 1)].count;
            ...
            res = atomic_long_add_return_relaxed(inc, count);
            orig = res - inc;
            inc = percpu_counter_tree_carry(orig, res, inc, bit_mask);
            if (likely(!inc))
                return;
        }
        item += level_items;
        ...
    }
    atomic_long_add(inc, counter->approx_sum.a);

So an intermediate item keeps only the low bits of what reached it ("we therefore
don't care about higher order bits"), and the root everything. Which form v15
1/3 posted is not checked: the seeds hold v15 2/3 (mm), not 1/3 (lib); v15's
cover letter calls ``percpu_counter_tree_add`` inline, the copy has it out of line.

64-bit words stand in for the kernel's 32-bit counters: the arithmetic is the
same modular arithmetic with no wrap in reach.

Reads: approximate = the root. Its accuracy range is the kernel's
(lib/percpu_counter_tree.c, ``calculate_accuracy_topology``), which counts the
items of every level from ``1 << nr_cpus_order``, not from the CPUs that exist::

    unsigned int level_items = 1U << nr_cpus_order;
    ...
        accuracy_multiplier += batch_size * level_items;
        batch_size <<= n_arity_order;
        level_items >>= n_arity_order;

so ``M = nr_levels * 2^k`` and, from ``__percpu_counter_tree_init``,
``under = batch_size * accuracy_multiplier``, ``over = (batch_size - 1) *
accuracy_multiplier`` (6 or 8 possible CPUs, B = 32: under 768, over 744).
The header states the range as ``(precise_sum - approx_accuracy_range.under)
<= approx_sum <= (precise_sum + approx_accuracy_range.over)``.

That range holds for a *settled* counter ("settled" is our word, not the header's: the header
states the range with no condition, and a carry in flight breaks it, as below). While a carry is in flight (level 0
already changed, an item above not yet) the root misses it: a negative carry
puts the root above the truth by up to that carry. The largest carry one
update moves is a multiple of the batch of the level it leaves; the file's
header comment gives it per level (8 CPUs, B = 32)::

    *            per-counter     global
    *            accuracy        accuracy
    * Level 0:   [ -32 ..  +31]  ±256  (8 * 32)
    * Level 1:   [ -64 ..  +63]  ±256  (4 * 64)
    * Level 2:   [-128 .. +127]  ±256  (2 * 128)

and the carry into the root is ``inc &= ~0b01111111`` there: a multiple of the
batch of the last level below the root (128). Past what the update's own
delta explains (the reader's truth envelope already allows it), a carry in
flight adds less than that batch, and each CPU has at most one update in
flight: ``transient_slack`` is ``online CPUs * that batch`` for the
approximate read (0 for the precise one, which sums level 0). The reader
counts reads beyond the stated bound but within that slack apart from
violations (``reads.approx_transient``).

Precise = sum of the level-0 counters of all possible CPUs (+ the counter's bias, 0 here). The bias
is a field of each counter, so one per rss counter (four per mm, mm words 0..3), not one per mm
(include/linux/percpu_counter_tree.h of the copy, ``struct percpu_counter_tree``: ``long bias;``).

The level-0 allocation, what fork zeroes and exit frees per possible CPU, follows the copy's
``percpu_counter_tree_init_many``::

    size_t counter_size = sizeof(*counters->level0),
    ...
    level0 = __alloc_percpu_gfp(nr_counters * counter_size,
                                __alignof__(*counters->level0), gfp_flags);

with ``unsigned long __percpu *level0;``: 8 bytes per counter, 32 bytes per CPU for the four rss
counters, as here (``pcpu_words_per_mm`` = 4 words; ``mm_init`` and the ``inline`` lifecycle zero
them on every possible CPU; ``k-tree`` carves the same 8-byte steps from its arena). Issue
23 said v15 sizes it by the whole counter struct (``ALIGN(sizeof(*counters), ...)``, "about 224
B per CPU"); the copy does not, v15 1/3 is not among the seeds, and this port follows the code
(tests/test_tree_level0.py). ``get_mm_counter`` (``read_mm_counter``, the read every
``update_hiwater_rss`` makes) is the precise walk clamped at 0 in v15
(``percpu_counter_tree_precise_sum_positive``), not the root.
``compare_value`` is ``percpu_counter_tree_precise_compare_value``::

    res = compare_delta(v - count, counter->approx_accuracy_range.under,
                        counter->approx_accuracy_range.over);

decided from the root when ``v - root`` is above ``over`` or below
``-under``, else summed; the sign is returned as counter - v (the kernel returns
v - counter).
"""

import math

import numpy as np

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, local_xadd, store, xadd
from shmrss.designs._common import (
    JOURNAL, doubt, dparam, jget, jsave, jstep_save, jword, members_not_zero, mm_word, pcpu_word, settle,
    tally,
)
from shmrss.segment import DesignShape

NAME = "tree"
ID = 7
SUMMARY = "hierarchical per-CPU counter tree (HPCC): carries up levels of items, root = approximation"
BOUND = "truth - B*M <= root <= truth + (B-1)*M, M = levels * 2^k (calculate_accuracy_topology); settled counter"
# why an approximate read may pass BOUND while updates are in flight (result.approx_excess)
TRANSIENT_CAUSE = "a carry in flight (the range holds for a settled counter)"

LOG2_BATCH = 5  # B = 32, as for RSS
# arity orders of levels 1..L by k = ceil(log2(nr_cpu_ids))
ORDERS = {
    0: (), 1: (1,), 2: (1, 1), 3: (1, 1, 1), 4: (2, 1, 1), 5: (2, 2, 1), 6: (2, 2, 2), 7: (3, 2, 2),
    8: (3, 3, 2), 9: (3, 3, 3), 10: (3, 3, 2, 2), 11: (3, 3, 3, 2), 12: (3, 3, 3, 3), 13: (3, 3, 3, 2, 2),
    14: (3, 3, 3, 3, 2), 15: (3, 3, 3, 3, 3), 16: (4, 3, 3, 3, 3), 17: (4, 4, 3, 3, 3), 18: (4, 4, 4, 3, 3),
    19: (4, 4, 4, 4, 3), 20: (4, 4, 4, 4, 4),
}
MAX_LEVELS = 5
_BIAS = 0  # mm words 0..3: each counter's bias (``int bias;`` of struct percpu_counter_tree); items on their own lines


def orders_for(possible: int, override: tuple[int, ...] | None = None) -> tuple[int, ...]:
    k = math.ceil(math.log2(possible)) if possible > 1 else 0
    if override:
        if sum(override) != k or len(override) > MAX_LEVELS or min(override) < 1:
            raise ValueError(f"--tree-orders must be up to {MAX_LEVELS} positive orders summing to "
                             f"ceil(log2({possible})) = {k}, got {','.join(map(str, override))}")
        return tuple(override)
    if k not in ORDERS:
        raise ValueError(f"tree supports up to 2^20 possible CPUs, got {possible}")
    return ORDERS[k]


def levels(possible: int, orders: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(items, first item index, log2 of the level's batch) for levels 1..L."""
    k = sum(orders)
    out, first, shift = [], 0, 0
    for o in orders:
        shift += o
        items = 1 << (k - shift)
        out.append((items, first, LOG2_BATCH + shift))
        first += items
    return out


def accuracy(possible: int, orders: tuple[int, ...]) -> tuple[int, int, int]:
    """(M, under, over) as ``calculate_accuracy_topology``: items counted from 2^k at level 0."""
    k = sum(orders)
    m, batch, items = 0, 1, 1 << k
    for o in orders:  # levels 0 .. nr_levels - 1 (the root is not one)
        m += batch * items
        batch <<= o
        items >>= o
    b = 1 << LOG2_BATCH
    return m, b * m, (b - 1) * m


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    orders = orders_for(possible, (options or {}).get("tree_orders"))
    nitems = sum(items for items, _, _ in levels(possible, orders)) if orders else 1
    _, under, over = accuracy(possible, orders)
    return DesignShape(pcpu_words_per_mm=L.NMEMBERS, mm_words=(1 + L.NMEMBERS * nitems) * line_words,
                       params=(LOG2_BATCH, len(orders), nitems, under, over, *orders))


@njit(inline="always")
def _item(seg, mm, k, index):
    """First word of item ``index`` of member k: every item on its own line."""
    return mm_word(seg, mm, (1 + k * dparam(seg, 2) + index) * seg[L.H_LINE])


@njit(inline="always")
def _hi(x, log2b):
    return (x >> log2b) << log2b


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    jf = fault & JOURNAL
    w0 = pcpu_word(seg, cpu, mm, k)
    jstep_save(seg, cpu, jf, _L0, L.J_A, seg[w0])
    old = local_xadd(seg, w0, d)
    log2b = dparam(seg, 0)
    carry = _hi(old + d, log2b) - _hi(old, log2b)
    if carry == 0:
        return
    tally(seg, cpu, L.S_SLOW, 1)
    nlev = dparam(seg, 1)
    shift = 0
    first = 0
    for lev in range(nlev):
        shift += dparam(seg, 5 + lev)
        items = 1 << (_k(seg) - shift)
        log2b = dparam(seg, 0) + shift
        # percpu_counter_tree_add_slowpath: ``if (abs(inc) & (bit_mask - 1))``: a carry with no bits
        # below this item's batch passes over it (the root, after the loop, always takes it)
        if lev < nlev - 1 and (abs(carry) & ((1 << log2b) - 1)) == 0:
            first += items
            continue
        w = _item(seg, mm, k, first + (cpu & (items - 1)))
        jsave(seg, cpu, jf, L.J_B, lev)
        jstep_save(seg, cpu, jf, _CARRY, L.J_C, carry)
        old = xadd(seg, w, carry)
        if lev == nlev - 1:
            return  # the root keeps everything
        carry = _hi(old + carry, log2b) - _hi(old, log2b)
        if carry == 0:
            return
        first += items


_L0, _CARRY = 1, 2  # kill points


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update: its level-0 add is told by the saved old value; a carry in
    flight is left as a doubt, settled when quiescent by recomputing the CPU's path from below."""
    if op != L.JOP_ADD:
        return 0
    if step == _L0:
        old = jget(seg, cpu, L.J_A)
        if settle(seg, pcpu_word(seg, cpu, mm, k), old, old + d) == 2:
            return 1
        if dparam(seg, 1) > 0:
            carry = _hi(old + d, dparam(seg, 0)) - _hi(old, dparam(seg, 0))
            if carry != 0:
                seg[jword(seg, cpu, L.J_B)] = 0
                doubt(seg, cpu, L.DOUBT_TREE, mm, k, carry)
    elif step == _CARRY:
        doubt(seg, cpu, L.DOUBT_TREE, mm, k, jget(seg, cpu, L.J_C))
    return 0


@njit(inline="always")
def _lo(x, log2b):
    return x - _hi(x, log2b)


@njit(inline="always")
def _level0_carries(seg, mm, k):
    """What each level-0 counter has carried up: the part of its value at or above the batch."""
    out = np.zeros(seg[L.H_POSSIBLE], dtype=np.int64)
    for c in range(seg[L.H_POSSIBLE]):
        out[c] = _hi(seg[pcpu_word(seg, c, mm, k)], dparam(seg, 0))
    return out


@njit(inline="always")
def _arrivals(below, items):
    """What reached each of a level's items (written or passed over): its children's carries out."""
    out = np.zeros(items, dtype=np.int64)
    for c in range(below.size):
        out[c & (items - 1)] += below[c]
    return out


@njit(inline="always")
def _settled(value, arrived, log2b, root):
    """An item agrees with what reached it: the root holds it all; an intermediate item its low bits
    (the carries that passed over it had none below its batch)."""
    if root:
        return value == arrived
    return _lo(value, log2b) == _lo(arrived, log2b)


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    """Recompute the dead CPU's path bottom-up: the carry in doubt either landed or is added now."""
    if kind != L.DOUBT_TREE:
        return L.RES_BAD
    at = jget(seg, cpu, L.J_B)  # the level in doubt
    res = L.RES_LANDED
    nlev = dparam(seg, 1)
    below = _level0_carries(seg, mm, k)
    shift = 0
    first = 0
    for lev in range(nlev):
        shift += dparam(seg, 5 + lev)
        items, log2b = 1 << (_k(seg) - shift), dparam(seg, 0) + shift
        arrived = _arrivals(below, items)
        j = cpu & (items - 1)
        w = _item(seg, mm, k, first + j)
        if not _settled(seg[w], arrived[j], log2b, lev == nlev - 1):
            if lev < at:
                return L.RES_BAD
            fix = d if lev == at else arrived[j] - seg[w]
            if lev == nlev - 1 or lev == at:
                xadd(seg, w, fix)
            else:
                xadd(seg, w, _lo(arrived[j], log2b) - _lo(seg[w], log2b))
            if not _settled(seg[w], arrived[j], log2b, lev == nlev - 1):
                return L.RES_BAD
            res = L.RES_APPLIED
        for i in range(items):
            arrived[i] -= _lo(seg[_item(seg, mm, k, first + i)], log2b)
        below = arrived
        first += items
    return res


@njit(inline="always")
def consistent(seg):
    """Quiescent: every item agrees with what reached it (what the root's range rests on)."""
    bad = 0
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            nlev = dparam(seg, 1)
            below = _level0_carries(seg, mm, k)
            shift = 0
            first = 0
            for lev in range(nlev):
                shift += dparam(seg, 5 + lev)
                items, log2b = 1 << (_k(seg) - shift), dparam(seg, 0) + shift
                arrived = _arrivals(below, items)
                for j in range(items):
                    v = seg[_item(seg, mm, k, first + j)]
                    bad += not _settled(v, arrived[j], log2b, lev == nlev - 1)
                    arrived[j] -= _lo(v, log2b)
                below = arrived
                first += items
    return bad


@njit(inline="always")
def _k(seg):
    s = 0
    for lev in range(dparam(seg, 1)):
        s += dparam(seg, 5 + lev)
    return s


@njit(inline="always")
def _root(seg, mm, k):
    return _item(seg, mm, k, dparam(seg, 2) - 1)


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    if dparam(seg, 1) == 0:  # one possible CPU: no levels, the counter is its own root
        return read_precise(seg, mm, k)
    return load(seg, _root(seg, mm, k)) + load(seg, mm_word(seg, mm, _BIAS + k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    if dparam(seg, 1) == 0:
        return 0, 0
    return dparam(seg, 3), dparam(seg, 4)


@njit(inline="always")
def read_precise(seg, mm, k):
    """percpu_counter_tree_precise_sum: every possible CPU (0..H_POSSIBLE-1), whatever --online-cpus says.
    lib/percpu_counter_tree.c (compudj/linux-dev)::

        for_each_possible_cpu(cpu)
            sum += *per_cpu_ptr(counter->level0, cpu);
    """
    s = load(seg, mm_word(seg, mm, _BIAS + k))
    for cpu in range(seg[L.H_POSSIBLE]):
        s += load(seg, pcpu_word(seg, cpu, mm, k))
    return s


@njit(inline="always")
def read_mm_counter(seg, mm, k):
    """get_mm_counter in HPCC v15 2/3 (include/linux/mm.h), hence every ``update_hiwater_rss``::

        static inline unsigned long get_mm_counter(struct mm_struct *mm, int member)
        {
        -	return percpu_counter_sum_positive(&mm->rss_stat[member]);
        +	return percpu_counter_tree_precise_sum_positive(&mm->rss_stat[member]);
        }

    (v5 used the approximate sum; "Changes since v7: Use precise sum positive API"): the precise
    walk of every possible CPU, clamped at 0.
    """
    s = read_precise(seg, mm, k)
    return s if s > 0 else 0


@njit(inline="always")
def compare_value(seg, mm, k, v):
    """Sign of (counter - v), as percpu_counter_tree_precise_compare_value (which returns v - counter)."""
    a = read_approx(seg, mm, k)
    under, over = approx_bound(seg, mm, k)
    delta = v - a  # compare_delta(v - count, under, over)
    if delta > over:
        return -1
    if -delta > under:
        return 1
    p = read_precise(seg, mm, k)
    return (p > v) - (p < v)


# cpu_offline is the interface's default (nothing): a level-0 counter keeps the CPU's whole value, still summed


@njit(inline="always")
def mm_init(seg, mm):
    # the items live in the mm and are zeroed with it; level 0 is one per-CPU allocation
    for j in range((1 + L.NMEMBERS * dparam(seg, 2)) * seg[L.H_LINE]):
        store(seg, mm_word(seg, mm, j), 0)
    for cpu in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, cpu, mm, k), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    return members_not_zero(read_precise, seg, mm)


@njit(inline="always")
def transient_slack(seg, mm, k, mark):
    """(approximate, precise) slack while carries are in flight: one carry per online CPU, each adding
    less than the batch of the last level below the root beyond its update's delta (module docstring)."""
    nlev = dparam(seg, 1)
    if nlev == 0:
        return 0, 0
    top = 1 << (dparam(seg, 0) + _k(seg) - dparam(seg, 5 + nlev - 1))
    return seg[L.H_NCPU] * top, 0


def fits_header(h) -> bool:
    dp = h[L.H_DPARAM:]
    return (h[L.H_PCPU_KWORDS] >= L.NMEMBERS and 0 <= dp[1] <= MAX_LEVELS and 1 <= dp[2]
            and h[L.H_MM_STRIDE] >= (1 + L.NMEMBERS * dp[2]) * h[L.H_LINE])
