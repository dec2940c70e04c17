"""Plain-Python reference models of the designs (slow, obviously right).

Written from ../shared/design/ALGORITHMS.md and the design modules' docstrings,
not from their code: each model keeps the design's state as Python ints (no
wrap-around), applies the same raw calls as the compiled driver (see
design_drivers: add, switch, clone, exit, offline, init, destroy, settask) and
answers the reads. Every model also keeps the true value (the sum of every
delta applied) separately from its design state.

``approx(mm, k)`` is the value the design's approximate read must return
exactly (every model defines it: these single-process sequences have no
concurrency), ``bound(mm, k)`` the (under, over) it states, ``precise`` its
precise read, ``truth`` the ground truth. ``slow[cpu]`` counts the slow paths
the design tallies (S_SLOW); pcpcache counts ``hits`` and ``misses``.
"""

from __future__ import annotations

import math
from collections import defaultdict

from shmrss import layout as L
from shmrss.designs._common import UNMAP

NM = L.NMEMBERS


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


class Model:
    name = "?"

    def __init__(self, ncpu: int, possible: int, nmm: int, ntask: int, nodes=None, options=None):
        self.ncpu, self.possible, self.nmm, self.ntask = ncpu, possible, nmm, ntask
        self.online = (options or {}).get("online_cpus") or possible  # the segment's default: every possible CPU
        self.true = [[0] * NM for _ in range(nmm)]
        self.task_mm = [0] * max(ntask, 1)
        self.slow = defaultdict(int)
        self.hits = defaultdict(int)
        self.misses = defaultdict(int)

    # ---- the raw calls
    def add(self, cpu, task, mm, k, d, fault):
        self.true[mm][k] += d
        self._add(cpu, task, mm, k, d, fault)

    def settask(self, task, mm, cpu):
        self.task_mm[task] = mm

    def switch(self, cpu, old, new):
        pass

    def clone(self, cpu, mm):
        pass

    def exit(self, cpu, task, mm):
        pass

    def offline(self, cpu):
        pass

    def init(self, mm):
        self.true[mm] = [0] * NM
        self._init(mm)

    def destroy(self, mm) -> int:
        """mm_destroy: members whose precise value is not 0."""
        return sum(1 for k in range(NM) if self.precise(mm, k) != 0)

    def compare(self, mm, k, v) -> int:
        return 0  # only tree has compare_value

    # ---- reads
    def truth(self, mm, k):
        return self.true[mm][k]

    def precise(self, mm, k):
        raise NotImplementedError

    def approx(self, mm, k):
        raise NotImplementedError

    def bound(self, mm, k):
        return 0, 0

    def _add(self, cpu, task, mm, k, d, fault):
        raise NotImplementedError

    def _init(self, mm):
        raise NotImplementedError


# ================================================================= 1 atomic
class Atomic(Model):
    """One shared atomic per counter: every update lands in it; reads are exact."""

    name = "atomic"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.v = [[0] * NM for _ in range(self.nmm)]

    def _add(self, cpu, task, mm, k, d, fault):
        self.v[mm][k] += d

    def _init(self, mm):
        self.v[mm] = [0] * NM

    def precise(self, mm, k):
        return self.v[mm][k]

    def approx(self, mm, k):
        return self.v[mm][k]


# ================================================================= 2 split
class Split(Model):
    """Per-task cache (kernel <= 6.1): a fault by a task of the mm goes to the task's count[];
    check_sync_rss_stat runs first, for every fault of the task (also on a foreign mm):
    ``if (events++ > 64) sync_mm_rss()`` (fold count[] into the task's own mm's atomics, clear it
    and events). An unmap (UNMAP) of the task's own mm syncs first, then goes to the atomics;
    everything else goes to the atomics; exit folds.
    Approximate = the atomic clamped at 0, bound 66 per thread of the mm."""

    name = "split"
    THRESH = 64
    PER_THREAD = 66

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.atomic = [[0] * NM for _ in range(self.nmm)]
        self.threads = [0] * self.nmm
        n = max(self.ntask, 1)
        self.events = [0] * n
        self.cache = [[0] * NM for _ in range(n)]

    def _sync(self, task, mm):
        for k in range(NM):
            self.atomic[mm][k] += self.cache[task][k]
            self.cache[task][k] = 0
        self.events[task] = 0

    def _add(self, cpu, task, mm, k, d, fault):
        if fault & 1 and task >= 0:  # every fault of the task counts; the fold goes to its own mm
            ev = self.events[task]
            self.events[task] = ev + 1
            if ev > self.THRESH:
                self._sync(task, self.task_mm[task])
                self.slow[cpu] += 1
            if abs(d) < 512 and self.task_mm[task] == mm:  # a PMD fault (512 pages) is add_mm_counter
                self.cache[task][k] += d
                return
        elif fault & UNMAP and task >= 0 and self.task_mm[task] == mm:  # add_mm_rss_vec syncs first
            self._sync(task, mm)
        self.atomic[mm][k] += d

    def clone(self, cpu, mm):
        self.threads[mm] += 1

    def exit(self, cpu, task, mm):
        self._sync(task, mm)
        self.threads[mm] -= 1

    def _init(self, mm):
        self.atomic[mm] = [0] * NM
        self.threads[mm] = 0
        for t in range(len(self.task_mm)):
            if self.task_mm[t] == mm:
                self.events[t] = 0
                self.cache[t] = [0] * NM

    def precise(self, mm, k):
        return self.atomic[mm][k] + sum(self.cache[t][k] for t in range(len(self.task_mm)) if self.task_mm[t] == mm)

    def approx(self, mm, k):
        return max(self.atomic[mm][k], 0)

    def bound(self, mm, k):
        e = self.PER_THREAD * max(self.threads[mm], 0)
        return e, e


# ================================================================= 3 percpu
class Percpu(Model):
    """percpu_counter_add_batch with B = max(32, 2N): the CPU's value c; if |c + d| < B it
    becomes c + d, else count += c + d and the CPU's value is cleared (a slow path).
    approx = count (bound N*(B-1), B the boot batch); precise = count + every possible CPU's value;
    offline takes the CPU out of the online set, recomputes B from the CPUs left (compute_batch_value),
    then folds the CPU's value into count (percpu_counter_cpu_dead)."""

    name = "percpu"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.b = self.boot_b = max(32, 2 * self.online)  # percpu_counter_batch: num_online_cpus()
        self.gone = set()  # CPUs taken offline (they stay in cpu_dying_mask)
        self.count = [[0] * NM for _ in range(self.nmm)]
        self.local = [[[0] * NM for _ in range(self.nmm)] for _ in range(self.possible)]

    def _add(self, cpu, task, mm, k, d, fault):
        self._pc_add(cpu, mm, k, d)

    def _pc_add(self, cpu, mm, k, d):
        c = self.local[cpu][mm][k]
        if abs(c + d) >= self.b:
            self.count[mm][k] += c + d
            self.local[cpu][mm][k] = 0
            self.slow[cpu] += 1
        else:
            self.local[cpu][mm][k] = c + d

    def offline(self, cpu):
        self.gone.add(cpu)
        self.b = max(32, 2 * (self.online - len(self.gone)))
        for mm in range(self.nmm):
            for k in range(NM):
                self.count[mm][k] += self.local[cpu][mm][k]
                self.local[cpu][mm][k] = 0

    def _init(self, mm):
        self.count[mm] = [0] * NM
        for cpu in range(self.possible):
            self.local[cpu][mm] = [0] * NM

    def precise(self, mm, k):
        return self.count[mm][k] + sum(self.local[c][mm][k] for c in range(self.possible))

    def approx(self, mm, k):
        return self.count[mm][k]

    def bound(self, mm, k):
        e = self.online * (self.boot_b - 1)  # every online CPU's word is below the boot batch
        return e, e


# ================================================================= 4 pcpcache
class Pcpcache(Model):
    """Kairui Song's RFC (x86): each CPU caches (mm, count[4]) of the mm it runs. Only the page-fault
    path (fault 1) uses the cache: to the cached mm it adds to the count (hit), to any other mm it
    goes to the mm's atomic (miss). Every other update (unmap, remote, reclaimer) goes to the atomic
    and is neither. switch_mm flushes the counts into the cached mm, caches the new one, bumps
    sync_count, clears the CPU's bit in the old mm's cpumask and sets it in the new one's.
    A switch to the mm already cached does nothing. Read = atomic + counts of cpumask CPUs caching this
    mm; the approximate read (get_mm_counter, bound 0) clamps a negative sum to 0. ``flushed[cpu][k]``:
    the largest |count| one flush moved (the transient slack is their sum over the CPUs)."""

    name = "pcpcache"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.atomic = [[0] * NM for _ in range(self.nmm)]
        self.cached = [-1] * self.possible
        self.delta = [[0] * NM for _ in range(self.possible)]
        self.sync = [0] * self.possible
        self.flushed = [[0] * NM for _ in range(self.possible)]
        self.mask = [set() for _ in range(self.nmm)]

    def _add(self, cpu, task, mm, k, d, fault):
        if not (fault & 1 and cpu >= 0):
            self.atomic[mm][k] += d
        elif self.cached[cpu] == mm:
            self.delta[cpu][k] += d
            self.hits[cpu] += 1
        else:
            self.atomic[mm][k] += d
            self.misses[cpu] += 1

    def switch(self, cpu, old, new):
        c = self.cached[cpu]
        if c == new:  # switch_pcp_rss_cache_no_irq: if (cpu_mm == next_mm) return;
            return
        if c >= 0:
            for k in range(NM):
                self.atomic[c][k] += self.delta[cpu][k]
                self.flushed[cpu][k] = max(self.flushed[cpu][k], abs(self.delta[cpu][k]))
            if c != new:
                self.mask[c].discard(cpu)
        self.delta[cpu] = [0] * NM
        self.sync[cpu] += 1
        if new >= 0:
            self.mask[new].add(cpu)
        self.cached[cpu] = new if new >= 0 else -1

    def offline(self, cpu):
        self.switch(cpu, self.cached[cpu], -1)

    def _init(self, mm):
        self.atomic[mm] = [0] * NM
        self.mask[mm] = set()

    def precise(self, mm, k):
        return self.atomic[mm][k] + sum(self.delta[c][k] for c in self.mask[mm] if self.cached[c] == mm)

    def approx(self, mm, k):
        return max(self.precise(mm, k), 0)  # get_mm_counter: if (ret < 0) ret = 0;

    def slack(self, k):
        return sum(self.flushed[c][k] for c in range(self.possible))


# ================================================================= 5 single
class Single(Percpu):
    """While the mm has one thread: local[4] (the owner's plain adds) and remote[4] (anyone else,
    under arg_lock: a slow path); value = local + remote, bound 0, no per-CPU memory. At the 2nd
    thread_created a one-way switch to percpu: its per-CPU slices zeroed, count = local + remote.
    mm_init zeroes only the mm's own words (the per-CPU slices are allocated lazily)."""

    name = "single"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.mode = ["single"] * self.nmm
        self.threads = [0] * self.nmm
        self.lcl = [[0] * NM for _ in range(self.nmm)]
        self.remote = [[0] * NM for _ in range(self.nmm)]

    def _add(self, cpu, task, mm, k, d, fault):
        if self.mode[mm] == "single":
            if task >= 0 and self.task_mm[task] == mm:
                self.lcl[mm][k] += d
            else:
                self.remote[mm][k] += d
                self.slow[cpu] += 1
            return
        self._pc_add(cpu, mm, k, d)

    def clone(self, cpu, mm):
        self.threads[mm] += 1
        if self.threads[mm] >= 2 and self.mode[mm] == "single":
            for c in range(self.possible):
                self.local[c][mm] = [0] * NM
            self.count[mm] = [self.lcl[mm][k] + self.remote[mm][k] for k in range(NM)]
            self.mode[mm] = "percpu"

    def exit(self, cpu, task, mm):
        self.threads[mm] -= 1

    def _init(self, mm):
        self.count[mm] = [0] * NM  # the (lock, count) pairs are mm words
        self.mode[mm] = "single"
        self.threads[mm] = 0
        self.lcl[mm] = [0] * NM
        self.remote[mm] = [0] * NM

    def precise(self, mm, k):
        if self.mode[mm] == "single":
            return self.lcl[mm][k] + self.remote[mm][k]
        return super().precise(mm, k)

    def approx(self, mm, k):
        if self.mode[mm] == "single":
            return self.lcl[mm][k] + self.remote[mm][k]
        return self.count[mm][k]

    def bound(self, mm, k):
        if self.mode[mm] == "single":
            return 0, 0
        return super().bound(mm, k)


# ================================================================= 5b single-atomic
class SingleAtomic(Percpu):
    """Krisman's 2025 RFC. While the mm has one thread: local[4] (the owner's plain adds) and
    remote[4] (anyone else: one atomic add, no lock; a slow path); value = local + remote, bound 0,
    no per-CPU memory. At the 2nd thread_created a one-way switch to percpu: its per-CPU slices
    zeroed, count = local; remote is never folded and stays part of every read, so a remote add that
    raced with the switch still counts: approx = count + remote, precise = percpu's + remote."""

    name = "single-atomic"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.mode = ["single"] * self.nmm
        self.threads = [0] * self.nmm
        self.lcl = [[0] * NM for _ in range(self.nmm)]
        self.remote = [[0] * NM for _ in range(self.nmm)]

    def _add(self, cpu, task, mm, k, d, fault):
        if self.mode[mm] == "single":
            if task >= 0 and self.task_mm[task] == mm:
                self.lcl[mm][k] += d
            else:
                self.remote[mm][k] += d
                self.slow[cpu] += 1
            return
        self._pc_add(cpu, mm, k, d)

    def clone(self, cpu, mm):
        self.threads[mm] += 1
        if self.threads[mm] >= 2 and self.mode[mm] == "single":
            for c in range(self.possible):
                self.local[c][mm] = [0] * NM
            self.count[mm] = list(self.lcl[mm])
            self.mode[mm] = "percpu"

    def exit(self, cpu, task, mm):
        self.threads[mm] -= 1

    def _init(self, mm):
        self.count[mm] = [0] * NM
        self.mode[mm] = "single"
        self.threads[mm] = 0
        self.lcl[mm] = [0] * NM
        self.remote[mm] = [0] * NM

    def precise(self, mm, k):
        if self.mode[mm] == "single":
            return self.lcl[mm][k] + self.remote[mm][k]
        return super().precise(mm, k) + self.remote[mm][k]

    def approx(self, mm, k):
        if self.mode[mm] == "single":
            return self.lcl[mm][k] + self.remote[mm][k]
        return self.count[mm][k] + self.remote[mm][k]

    def bound(self, mm, k):
        if self.mode[mm] == "single":
            return 0, 0
        return super().bound(mm, k)


# ================================================================= 6 pernode
class Pernode(Model):
    """Dorminy's RFC v2: per mm and member, ``global`` and 32 node counters. An update adds to the
    counter of its CPU's node mod 32 (no CPU: counter 0); if that counter's new value is a batch or
    more from 0 (batch max(32, (possible >> NODES_SHIFT) * 2), NODES_SHIFT 6), the value is added to
    the global and taken from the node counter (a slow path). approx = global, bound
    (batch - 1) * min(nodes, 32); precise = global + every node counter."""

    name = "pernode"
    NCOUNTERS = 32

    def __init__(self, *a, nodes=None, **kw):
        super().__init__(*a, nodes=nodes, **kw)
        self.node_of = list(nodes) if nodes else [0] * self.ncpu
        self.nnodes = max(self.node_of) + 1 if nodes else 1
        self.batch = max(32, (self.possible >> 6) * 2)
        self.glob = [[0] * NM for _ in range(self.nmm)]
        self.counters = [[[0] * self.NCOUNTERS for _ in range(NM)] for _ in range(self.nmm)]

    def _add(self, cpu, task, mm, k, d, fault):
        slot = self.node_of[cpu] % self.NCOUNTERS if cpu >= 0 else 0
        self.counters[mm][k][slot] += d
        val = self.counters[mm][k][slot]
        if abs(val) >= self.batch:
            self.glob[mm][k] += val
            self.counters[mm][k][slot] -= val
            self.slow[cpu] += 1

    def _init(self, mm):
        self.glob[mm] = [0] * NM
        self.counters[mm] = [[0] * self.NCOUNTERS for _ in range(NM)]

    def precise(self, mm, k):
        return self.glob[mm][k] + sum(self.counters[mm][k])

    def approx(self, mm, k):
        return self.glob[mm][k]

    def bound(self, mm, k):
        e = (self.batch - 1) * min(self.nnodes, self.NCOUNTERS)
        return e, e


# ================================================================= 7 tree
TREE_ORDERS = {  # ALGORITHMS.md, by k = ceil(log2(nr_cpu_ids)); k = 0 (one CPU): no levels
    0: (), 1: (1,), 2: (1, 1), 3: (1, 1, 1), 4: (2, 1, 1), 5: (2, 2, 1), 6: (2, 2, 2), 7: (3, 2, 2),
    8: (3, 3, 2), 9: (3, 3, 3), 10: (3, 3, 2, 2), 11: (3, 3, 3, 2), 12: (3, 3, 3, 3), 13: (3, 3, 3, 2, 2),
    14: (3, 3, 3, 3, 2), 15: (3, 3, 3, 3, 3), 16: (4, 3, 3, 3, 3), 20: (4, 4, 4, 4, 4),
}
TREE_B = 32


def ceil_log2(n: int) -> int:
    k = 0
    while (1 << k) < n:
        k += 1
    return k


class TreeShape:
    """Levels 1..L from the arity orders: level l has 2^(k - o1 - ... - ol) items and batch
    B * 2^(o1 + ... + ol); level 0 is one counter per possible CPU with batch B."""

    def __init__(self, possible: int, orders):
        self.possible = possible
        self.orders = tuple(orders)
        self.k = sum(self.orders)
        self.levels = []  # (items, batch)
        shift = 0
        for o in self.orders:
            shift += o
            self.levels.append((2 ** (self.k - shift), TREE_B * 2 ** shift))

    def m(self) -> int:
        """calculate_accuracy_topology's M: sum over levels 0..L-1 of (batch at B = 1) * items, level 0
        counting 2^k items (not the possible CPUs)."""
        m = 2 ** self.k if self.orders else 0  # level 0
        for items, batch in self.levels[:-1]:
            m += (batch // TREE_B) * items
        return m

    def tight(self) -> int:
        """What floor carries can leave below the root: sum of (batch - 1) * counters, levels 0..L-1."""
        t = (TREE_B - 1) * self.possible
        for items, batch in self.levels[:-1]:
            t += (batch - 1) * items
        return t


class Tree(Model):
    """HPCC: the CPU's level-0 counter keeps its whole value; a carry is the change of the part at
    or above the level's batch (floor), added to the CPU's item one level up (cpu & (items - 1)),
    whose own carry goes on up; a carry that is a multiple of an item's batch passes over it; the last level's single item is the root. approx = root, bound
    (B*M, (B-1)*M); precise = sum of level-0 counters. One possible CPU: no levels, exact."""

    name = "tree"

    def __init__(self, *a, options=None, **kw):
        super().__init__(*a, options=options, **kw)
        override = (options or {}).get("tree_orders")
        orders = tuple(override) if override else TREE_ORDERS[ceil_log2(self.possible)]
        self.shape = TreeShape(self.possible, orders)
        self.l0 = [[[0] * NM for _ in range(self.nmm)] for _ in range(self.possible)]
        self.items = [[[[0] * n for n, _ in self.shape.levels] for _ in range(NM)] for _ in range(self.nmm)]

    @staticmethod
    def _hi(x, batch):
        return (x // batch) * batch  # floor, also for negative x

    def _add(self, cpu, task, mm, k, d, fault):
        old = self.l0[cpu][mm][k]
        self.l0[cpu][mm][k] = old + d
        carry = self._hi(old + d, TREE_B) - self._hi(old, TREE_B)
        if carry == 0:
            return
        self.slow[cpu] += 1
        levels = self.shape.levels
        for lev, (n, batch) in enumerate(levels):
            if lev < len(levels) - 1 and abs(carry) % batch == 0:
                continue  # no bits below this item's batch: the carry passes over it
            i = cpu % n
            old = self.items[mm][k][lev][i]
            self.items[mm][k][lev][i] = old + carry
            if lev == len(levels) - 1:
                return
            carry = self._hi(old + carry, batch) - self._hi(old, batch)
            if carry == 0:
                return

    def _init(self, mm):
        for c in range(self.possible):
            self.l0[c][mm] = [0] * NM
        self.items[mm] = [[[0] * n for n, _ in self.shape.levels] for _ in range(NM)]

    def precise(self, mm, k):
        return sum(self.l0[c][mm][k] for c in range(self.possible))

    def approx(self, mm, k):
        if not self.shape.levels:
            return self.precise(mm, k)
        return self.items[mm][k][-1][0]

    def bound(self, mm, k):
        if not self.shape.levels:
            return 0, 0
        m = self.shape.m()
        return TREE_B * m, (TREE_B - 1) * m

    def compare(self, mm, k, v):
        return _sign(self.precise(mm, k) - v)


MODELS = {m.name: m for m in (Atomic, Split, Percpu, Pcpcache, Single, SingleAtomic, Pernode, Tree)}


def model_for(name, ncpu, possible, nmm, ntask, nodes=None, options=None) -> Model:
    return MODELS[name](ncpu, possible, nmm, ntask, nodes=nodes, options=options)


def apply(model: Model, op) -> int:
    """One raw op row (design_drivers' format) on the model; returns the op's result."""
    from design_drivers import ADD, CLONE, COMPARE, DESTROY, EXIT, INIT, NOP, OFFLINE, SETTASK, SWITCH

    kind, a, b, c, d, e, f = (int(x) for x in op)
    if kind == ADD:
        model.add(a, b, c, d, e, f)
    elif kind == SWITCH:
        model.switch(a, b, c)
    elif kind == CLONE:
        model.clone(a, b)
    elif kind == EXIT:
        model.exit(a, b, c)
    elif kind == OFFLINE:
        model.offline(a)
    elif kind == INIT:
        model.init(a)
    elif kind == DESTROY:
        return model.destroy(a)
    elif kind == COMPARE:
        return model.compare(a, b, c)
    elif kind == SETTASK:
        model.settask(a, b, c)
    elif kind == NOP:
        pass
    else:  # pragma: no cover
        raise ValueError(kind)
    return 0


assert math.log2(TREE_B) == 5
