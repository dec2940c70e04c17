"""Design 6, ``pernode``: Sweet Tea Dorminy's per-NUMA-node atomics, RFC v2 (2025).

Followed line by line from "[RFC PATCH v2] mm: use per-numa-node atomics instead of
percpu_counters" (Sweet Tea Dorminy, 31 Mar 2025, <20250331223516.7810-2-sweettea-kernel@dorminy.me>)::

    #define _MM_NUMA_COUNTERS MIN(MAX_NUMNODES, 32)
    #define _MM_NUMA_COUNTERS_BATCH max(32, (num_possible_cpus() >> NODES_SHIFT) * 2)
    struct mm_pernuma_counter {
            atomic64_t global;
            atomic64_t numa_counters[_MM_NUMA_COUNTERS];
    };
            struct mm_pernuma_counter rss_stat[NR_MM_COUNTERS];

    size_t index = numa_node_id() % _MM_NUMA_COUNTERS;
    s64 val = atomic64_add_return(value, numa_counter);
    if (abs(val) >= _MM_NUMA_COUNTERS_BATCH) {
            atomic64_add(val, &rss_stat->global);
            atomic64_add(-val, numa_counter);
    }

Layout: the four members' structs back to back, each ``global`` then 32 node counters
(33 words; packed, 8 to a 64-byte line, so the node counters and the next member's
global false-share, as in the RFC). ``NODES_SHIFT`` is the kernel's build constant
CONFIG_NODES_SHIFT, not the machine's node count: 6, x86_64's Kconfig default (MAXSMP
configs use 10), so ``MAX_NUMNODES`` = 64 and the array always has 32 counters; the batch
is 32 below 1088 possible CPUs (10: below 17408). Emulated node n uses counter n % 32.

Update: ``lock xadd`` on the node's counter; if the value it returns is a batch or more
away from 0, ``lock xadd`` it into the global and out of the node counter. No lock
(``atomic64_add`` is ``lock add``; the emulation issues ``lock xadd``, the same locked
read-modify-write). Reads: approximate = ``global`` (the RFC's ``get_mm_counter``;
the kernel clamps a negative value to 0, the emulation reports it signed, as percpu's
read does); precise = ``global`` + all 32 node counters, one load after another
(``get_mm_counter_slow``, which ``check_mm`` uses).

Bound. At rest every node counter is under the batch: |approx - truth| <= (B - 1) x the
counters in use (the RFC: "bounds the total error to 32 times the number of NUMA
nodes"). It breaks in the kernel too. Double move: CPU a's add returns val_a >= B;
before a subtracts it, CPU b of the same node adds and returns val_b, which still holds
a's val_a, and moves it again: after both, the node counter is val_b - val_a - val_b
= -val_a, global has gained val_a twice, and the approximate read is off by val_a
(>= B) until the node's next update (chained races make it worse, below).

Transient slack (``transient_slack``). Per counter s with m_s CPUs and updates of at
most D (setup: the largest size of a tape step; a fault is 1): from a settled node,
each of the m_s - 1 other CPUs that is between its add and its subtraction can make
one value be moved twice, and what it moves is at most what the counter held, B - 1
before the race plus at most D from each CPU of the node: approx slack
sum_s (m_s - 1)(B - 1 + m_s D). This is one race per node, not a worst case: a CPU
that moves while the node is still unsettled moves the earlier error again, so
chained races can grow it by D each, without limit; a read beyond the slack is
counted as a violation (it is a real break of the RFC's bound, not an emulation
fault). A precise read can be off too: a move whose global add lands after the read
of the global and whose subtraction lands before the read of its node is missed
(-val), one read between its two adds is counted twice (+val); each CPU can have one
move in flight: precise slack sum_s m_s (B - 1 + m_s D).

Faults: kill points before the node add, the global add and the node subtraction.
Each of the three ``lock xadd`` may or may not have landed when a CPU dies; recovery
does the steps surely not done and leaves the one in doubt, settled at quiescence by
the conservation law global + sum(nodes) = truth (``precise`` = truth).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, store, xadd
from shmrss.designs._common import (
    JOURNAL, doubt, dparam, jget, jsave, jstep, members_not_zero, mm_word, settle_shared, stat_word, tally,
    truth_sum,
)
from shmrss.segment import DesignShape

NAME = "pernode"
ID = 6
SUMMARY = "Dorminy's RFC v2: one atomic per NUMA node, moved to a global atomic past a batch, no lock"
BOUND = "|approx - truth| <= (batch - 1) * min(nodes, 32) at rest; racing movers break it (double move)"
# why an approximate read may pass BOUND while updates are in flight (result.approx_excess)
TRANSIENT_CAUSE = "moves raced on one node (RFC v2 property: a double move)"

NODES_SHIFT = 6  # CONFIG_NODES_SHIFT: x86_64's Kconfig default ("10" if MAXSMP)
MAX_NUMNODES = 1 << NODES_SHIFT
NCOUNTERS = min(MAX_NUMNODES, 32)  # _MM_NUMA_COUNTERS
STRUCT = 1 + NCOUNTERS  # words of one struct mm_pernuma_counter
# design parameters: counters in use (the bound), batch, approximate slack, precise slack
_P_SLOTS, _P_BATCH, _P_ASLACK, _P_PSLACK = 0, 1, 2, 3


def batch_for(possible: int) -> int:
    """_MM_NUMA_COUNTERS_BATCH: max(32, (num_possible_cpus() >> NODES_SHIFT) * 2)."""
    return max(32, (possible >> NODES_SHIFT) * 2)


def slots_in_use(nodes) -> int:
    """Node counters the CPUs update (node % 32); no CPU (the parent) uses counter 0."""
    return min(max(nodes) + 1, NCOUNTERS) if nodes else 1


def slack_for(nodes, ncpu: int, batch: int, dmax: int) -> tuple[int, int]:
    """(approximate, precise) transient slack: see the module docstring."""
    per = [0] * NCOUNTERS
    for cpu in range(ncpu):
        per[(nodes[cpu] if nodes else 0) % NCOUNTERS] += 1
    a = sum((m - 1) * (batch - 1 + m * dmax) for m in per if m)
    p = sum(m * (batch - 1 + m * dmax) for m in per if m)
    return a, p


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    b = batch_for(possible)
    a, p = slack_for(nodes, ncpu, b, 1)
    return DesignShape(pcpu_words_per_mm=0, mm_words=L.NMEMBERS * STRUCT, global_words=ncpu,
                       params=(slots_in_use(nodes), b, a, p))


def largest_update(words) -> int:
    """The largest |delta| one update of this run carries: a fault its pages per fault (1, or the step's
    size: --fault-pages), an unmap or a remote update its size, the reclaimer's moves its batch."""
    d = L.RECLAIM_BATCH if words[L.H_RECLAIMER] else 1
    tape = int(words[L.H_TAPE])
    for i in range(int(words[L.H_TAPE_STEPS])):
        op, arg, arg2 = (int(words[tape + i * L.STEP_WORDS + j]) for j in (0, 2, 3))
        if op == L.OP_UNMAP or op == L.OP_REMOTE:
            d = max(d, abs(arg))
        elif op == L.OP_FAULT:
            d = max(d, arg2)  # pages per fault; 0 is one page
    return d


def setup(words, ncpu: int, nodes) -> None:
    """Write each emulated CPU's node into the global words; the slack from the run's largest update."""
    base = int(words[L.H_GLOBAL])
    for cpu in range(ncpu):
        words[base + cpu] = nodes[cpu] if nodes else 0
    a, p = slack_for(nodes, ncpu, int(words[L.H_DPARAM + _P_BATCH]), largest_update(words))
    words[L.H_DPARAM + _P_ASLACK] = a
    words[L.H_DPARAM + _P_PSLACK] = p


@njit(inline="always")
def _global(seg, mm, k):
    """&mm->rss_stat[k].global"""
    return mm_word(seg, mm, k * STRUCT)


@njit(inline="always")
def _counter(seg, mm, k, slot):
    """&mm->rss_stat[k].numa_counters[slot]"""
    return mm_word(seg, mm, k * STRUCT + 1 + slot)


@njit(inline="always")
def _slot_of(seg, cpu):
    """numa_node_id() % _MM_NUMA_COUNTERS (no CPU, the parent: counter 0)."""
    return seg[seg[L.H_GLOBAL] + cpu] % NCOUNTERS if cpu >= 0 else 0


_NODE_ADD, _GLOBAL_ADD, _NODE_SUB = 1, 2, 3  # kill points


@njit(inline="always")
def add(seg, cpu, task, mm, k, d, fault):
    """__mm_update_numa_counter."""
    jf = fault & JOURNAL
    nc = _counter(seg, mm, k, _slot_of(seg, cpu))
    jstep(seg, cpu, jf, _NODE_ADD)
    val = xadd(seg, nc, d) + d  # atomic64_add_return(value, numa_counter)
    if abs(val) >= dparam(seg, _P_BATCH):
        jsave(seg, cpu, jf, L.J_A, val)
        jstep(seg, cpu, jf, _GLOBAL_ADD)
        xadd(seg, _global(seg, mm, k), val)  # atomic64_add(val, &rss_stat->global)
        jstep(seg, cpu, jf, _NODE_SUB)
        left = xadd(seg, nc, -val) - val  # atomic64_add(-val, numa_counter)
        tally(seg, cpu, L.S_SLOW, 1)
        if abs(left) >= dparam(seg, _P_BATCH):
            _note_race(seg, cpu, abs(left))


@njit(inline="always")
def _note_race(seg, cpu, left):
    """Instrumentation, no kernel step: another CPU's add landed between this move's add and its
    subtraction, and the counter is left past the batch (a value moved twice, or about to be)."""
    if cpu >= 0:
        tally(seg, cpu, L.S_RACED, 1)
        w = stat_word(seg, cpu, L.S_RACED_MAX)
        if left > seg[w]:
            store(seg, w, left)


@njit(inline="always")
def _move_if_due(seg, mm, k, slot):
    """The parent, completing a killed update whose value is lost: the move its node's next update would make."""
    nc = _counter(seg, mm, k, slot)
    val = seg[nc]
    if abs(val) >= dparam(seg, _P_BATCH):
        xadd(seg, _global(seg, mm, k), val)
        xadd(seg, nc, -val)


@njit(inline="always")
def recover(seg, cpu, op, step, mm, k, d):
    """Complete a killed CPU's update from its journal (the steps surely not done); returns 0.

    Killed at the node add: that add is in doubt (and the move it may have
    needed follows its resolution). At the global add: the global add is in
    doubt, the node subtraction is done now. At the node subtraction: the global
    add landed, the subtraction is in doubt. Each doubt is settled by
    global + sum(nodes) = truth at quiescence.
    """
    if op != L.JOP_ADD:
        return 0
    nc = _counter(seg, mm, k, _slot_of(seg, cpu))
    if step == _NODE_ADD:
        doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, d)
    elif step == _GLOBAL_ADD:
        val = jget(seg, cpu, L.J_A)
        xadd(seg, nc, -val)
        doubt(seg, cpu, L.DOUBT_PERNODE, mm, k, val)
    elif step == _NODE_SUB:
        doubt(seg, cpu, L.DOUBT_PRECISE, mm, k, -jget(seg, cpu, L.J_A))
    return 0


@njit(inline="always")
def resolve(seg, cpu, kind, mm, k, d, residue):
    """A doubtful ``lock xadd`` of ``d``: on the dead CPU's node counter (DOUBT_PRECISE: residue = precise -
    truth, from the engine) or on the global (DOUBT_PERNODE: the same residue, computed here)."""
    slot = _slot_of(seg, cpu)
    if kind == L.DOUBT_PRECISE:
        res = settle_shared(seg, _counter(seg, mm, k, slot), d, residue)
        _move_if_due(seg, mm, k, slot)
        return res
    if kind == L.DOUBT_PERNODE:
        return settle_shared(seg, _global(seg, mm, k), d, read_precise(seg, mm, k) - truth_sum(seg, mm, k))
    return L.RES_BAD


@njit(inline="always")
def consistent(seg):
    """Quiescent: the node counters no CPU maps to are 0 (only the nodes' own CPUs write a counter).

    Nothing else is redundant: global + sum(nodes) = truth is the precise read's invariant, and a
    node counter may legitimately stay past the batch after a double move."""
    used = 1  # counter 0: the parent's (no CPU)
    for cpu in range(seg[L.H_NCPU]):
        used |= 1 << _slot_of(seg, cpu)
    bad = 0
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            for slot in range(NCOUNTERS):
                if not (used >> slot) & 1 and seg[_counter(seg, mm, k, slot)] != 0:
                    bad += 1
    return bad


@njit(inline="always")
def switch_mm(seg, cpu, old_mm, new_mm):
    pass


@njit(inline="always")
def read_approx(seg, mm, k):
    """get_mm_counter: atomic64_read(&mm->rss_stat[member].global)."""
    return load(seg, _global(seg, mm, k))


@njit(inline="always")
def approx_bound(seg, mm, k):
    e = (dparam(seg, _P_BATCH) - 1) * dparam(seg, _P_SLOTS)
    return e, e


@njit(inline="always")
def read_precise(seg, mm, k):
    """get_mm_counter_slow: the global, then every one of the 32 node counters."""
    s = load(seg, _global(seg, mm, k))
    for slot in range(NCOUNTERS):
        s += load(seg, _counter(seg, mm, k, slot))
    return s


@njit(inline="always")
def mm_init(seg, mm):
    for j in range(L.NMEMBERS * STRUCT):
        store(seg, mm_word(seg, mm, j), 0)


@njit(inline="always")
def mm_destroy(seg, mm):
    """check_mm: get_mm_counter_slow of every member."""
    return members_not_zero(read_precise, seg, mm)


@njit(inline="always")
def transient_slack(seg, mm, k, mark):
    """(approximate, precise) error a double move can add while it is in flight or unsettled (docstring)."""
    return dparam(seg, _P_ASLACK), dparam(seg, _P_PSLACK)


def fits_header(h) -> bool:
    dp = h[L.H_DPARAM:]
    return 1 <= dp[0] <= NCOUNTERS and dp[1] >= 32 and h[L.H_MM_STRIDE] >= L.NMEMBERS * STRUCT
