"""``shmrss verify``: each port and its kernel C run one generated op stream, compared after every op.

For each pair (``percpu`` and ``k-percpu``, the kernel's lib/percpu_counter.c; ``tree`` and
``k-tree``, HPCC's lib/percpu_counter_tree.c) both designs get a segment of the same
geometry in this process; the ops (mixed CPUs, deltas +-1, +-16, +-512 and odd sizes, a
CPU going offline half way) go through each design's compiled functions
(``verify_driver``), and after every op the approximate read, the precise read, the
accuracy range and every CPU's per-CPU value must be equal (for percpu also
``percpu_counter_batch`` and ``cpu_online_mask``, which an offline changes), and for the tree every item
of every level and which levels the op wrote (an item whose value changed). Prints "N
ops, M mismatches" per pair, the writes per level, and the first mismatch; exit 1 on any.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from shmrss import layout as L, verify_writes as VW
from shmrss.kernel import kpercpu, ktree
from shmrss.options import int_at_least
from shmrss.segment import Geometry, Segment

PAIRS = {"percpu": "k-percpu", "tree": "k-tree"}  # port -> its kernel C
KERNEL_LIBS = {"k-percpu": kpercpu.LIB, "k-tree": ktree.LIB}
DELTAS = (1, 16, 512, 3, 7, 33, 100, 1023, 31, 32)
OFFLINE, INIT = 1, 2  # verify_driver's kinds (ADD is 0)


def add_parser(sub) -> None:
    v = sub.add_parser("verify", help="run each port and its kernel C on one op stream and compare every read")
    v.add_argument("--kernel-src", metavar="DIR", help="kernel tree (default $SHMRSS_KERNEL_SRC)")
    v.add_argument("--design", default="percpu", metavar="LIST",
                   help=f"ports to verify (default percpu; ports with kernel C: {', '.join(PAIRS)})")
    v.add_argument("--events", type=int_at_least(1), default=100_000, metavar="N", help="ops (default 100000)")
    v.add_argument("--seed", type=int_at_least(0), default=1, metavar="S", help="op stream seed (default 1)")
    v.add_argument("--cpus", type=int_at_least(1, 64), default=4, metavar="N", help="emulated CPUs (default 4)")


def ops(n: int, ncpu: int, seed: int) -> np.ndarray:
    """Rows (kind, cpu, member, delta): adds on random CPUs, CPU ncpu-1 offline half way (if ncpu > 1)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4), dtype=np.int64)
    out[:, 1] = rng.integers(0, ncpu, n)
    out[:, 2] = rng.integers(0, L.NMEMBERS, n)
    out[:, 3] = rng.choice(DELTAS, n) * rng.choice((-1, 1), n)
    if ncpu > 1:
        half = n // 2
        out[half:, 1] = rng.integers(0, ncpu - 1, n - half)
        out[half] = (OFFLINE, ncpu - 1, 0, 0)
    return out


def _segment(design: str, ncpu: int) -> Segment:
    """A segment for ``design`` with verify's lock log after its global words; a kernel C design is
    bound to verify's build of its library, which logs every lock taken (``verify_writes``)."""
    from shmrss import designs
    from shmrss.designs import _kernel

    mod = designs.get(design)
    shape = mod.shape(ncpu, ncpu, 1, line_words=8, options={"online_cpus": ncpu})
    shape = dataclasses.replace(shape, global_words=shape.global_words + VW.LOG_WORDS)
    seg = Segment.create(Geometry(ncpu=ncpu, possible=ncpu, nmm=1, ntask=1, line_words=8, pack=False, slice=100,
                                  design_id=mod.ID, shape=shape, tape_steps=2, ring=16))
    if hasattr(mod, "setup"):
        mod.setup(seg.words, ncpu, None)
    if design in KERNEL_LIBS:
        _kernel.bind(seg.words, _logging(design), KERNEL_LIBS[design].setup, mod.G_SHARED)
    return seg


def _logging(design: str):
    return VW.logging_lib(KERNEL_LIBS[design])


def _port_pcpu(w: np.ndarray, ncpu: int) -> np.ndarray:
    """percpu's per-CPU values of mm 0: one word per member in each CPU's unit (designs/percpu.py)."""
    base, stride = int(w[L.H_PCPU]), int(w[L.H_PCPU_CSTRIDE])
    return np.array([[w[base + cpu * stride + k] for cpu in range(ncpu)] for k in range(L.NMEMBERS)])


def _kernel_pcpu(w: np.ndarray, ncpu: int) -> np.ndarray:
    """k-percpu's: ``*per_cpu_ptr(fbc->counters, cpu)``, an s32, for each ``rss_stat[k]`` of mm 0."""
    from shmrss.designs import k_percpu as K

    size, counters = int(w[L.H_DPARAM + K.D_SIZE]), int(w[L.H_DPARAM + K.D_COUNTERS])
    s32, unit = w.view(np.int32), int(w[L.H_PCPU_CSTRIDE]) * 8
    out = np.zeros((L.NMEMBERS, ncpu), dtype=np.int64)
    for k in range(L.NMEMBERS):
        first = int(w[(int(w[L.H_MM]) * 8 + k * size + counters) // 8])  # the __percpu pointer: CPU 0's copy
        out[k] = [s32[(first + cpu * unit) // 4] for cpu in range(ncpu)]
    return out


def _tree_pcpu(w: np.ndarray, ncpu: int) -> np.ndarray:
    """tree's level-0 counters of mm 0: one word per member in each CPU's unit (as percpu's)."""
    return _port_pcpu(w, ncpu)


def _ktree_pcpu(w: np.ndarray, ncpu: int) -> np.ndarray:
    """k-tree's: ``*per_cpu_ptr(counter->level0, cpu)``, an unsigned long, for each ``rss_stat[k]`` of mm 0."""
    from shmrss.designs import k_tree as K

    return np.array([[w[K.level0_word(w, 0, k, cpu)] for cpu in range(ncpu)] for k in range(L.NMEMBERS)])


def _tree_items(w: np.ndarray) -> np.ndarray:
    """tree's items of mm 0, levels 1.. then the root, one line each after the bias line."""
    n, line, base = int(w[L.H_DPARAM + 2]), int(w[L.H_LINE]), int(w[L.H_MM])
    return np.array([[w[base + (1 + k * n + j) * line] for j in range(n)] for k in range(L.NMEMBERS)])


def _ktree_items(w: np.ndarray) -> np.ndarray:
    """k-tree's ``counter->items[j].count`` of each ``rss_stat[k]`` of mm 0 (the root last)."""
    from shmrss.designs import k_tree as K

    n = int(w[L.H_DPARAM + K.D_ITEMS]) // int(w[L.H_DPARAM + K.D_ITEM])
    return np.array([[w[K.item_word(w, 0, k, j)] for j in range(n)] for k in range(L.NMEMBERS)])


def _port_hotplug(w: np.ndarray, ncpu: int) -> np.ndarray:
    """percpu's ``percpu_counter_batch`` (D0) and its ``cpu_online_mask`` bits of CPUs 0..ncpu-1 (the online
    prefix less the emulated ``cpu_dying_mask``, designs/percpu.py)."""
    from shmrss.designs import percpu as P

    g, n = int(w[L.H_GLOBAL]), int(w[L.H_ONLINE])
    online = [int(cpu < n and not (int(w[g + cpu // 64]) >> (cpu % 64)) & 1) for cpu in range(ncpu)]
    return np.array([int(w[L.H_DPARAM + P.D_BATCH]), *online], dtype=np.int64)


def _kernel_hotplug(w: np.ndarray, ncpu: int) -> np.ndarray:
    """k-percpu's: the library's ``percpu_counter_batch`` (verify's own build, in this process: verify runs
    the offline here) and the shim's ``cpu_online_mask`` (the second bitmap of the shared area,
    shmrss_shim.h ``SHIM_MASK(1)``)."""
    import ctypes

    from shmrss.designs import k_percpu as K

    lib, _ = _logging("k-percpu").loaded()
    mask = int(w[L.H_GLOBAL]) + K.G_SHARED + K.MASK_WORDS
    online = [int((int(w[mask + cpu // 64]) >> (cpu % 64)) & 1) for cpu in range(ncpu)]
    return np.array([ctypes.c_int.in_dll(lib, "percpu_counter_batch").value, *online], dtype=np.int64)


PCPU_VALUES = {"percpu": _port_pcpu, "k-percpu": _kernel_pcpu, "tree": _tree_pcpu, "k-tree": _ktree_pcpu}
HOTPLUG = {"percpu": _port_hotplug, "k-percpu": _kernel_hotplug}  # the batch and the online mask
ITEMS = {"tree": _tree_items, "k-tree": _ktree_items}  # the shared words, per tree level


@dataclass
class Outcome:
    """One pair's comparison: ops with any difference, the first in full, and what each design wrote."""
    ops: int
    bad: int = 0
    first: str = ""
    kinds: dict[str, int] = field(default_factory=dict)  # mismatching ops by what differed
    writes: dict[str, list[int]] = field(default_factory=dict)  # per design: items written per level 1..L
    wrote: dict[str, dict[str, int]] = field(default_factory=dict)  # per design: writes per shared word
    c_only: list[str] = field(default_factory=list)  # the C's words no port has: counted, not compared


def compare(port: str, n: int, seed: int, ncpu: int, mutate=None) -> tuple[int, str]:
    """(mismatches, the first one in full) over ``n`` ops of port against its kernel C."""
    o = outcome(port, n, seed, ncpu, mutate)
    return o.bad, o.first


def outcome(port: str, n: int, seed: int, ncpu: int, mutate=None) -> Outcome:
    """``mutate`` changes the port's source text before it compiles (a planted mutant, in the tests)."""
    kernel = PAIRS[port]
    drivers = {port: VW.copy(port, mutate), kernel: VW.copy(kernel)}
    segs: dict[str, Segment] = {}
    try:
        for d in drivers:
            segs[d] = _segment(d, ncpu)
        return _run(drivers, segs, port, kernel, ops(n, ncpu, seed), ncpu)
    finally:
        for s in segs.values():
            s.unlink()
            s.close()


def _item_levels(w: np.ndarray) -> np.ndarray:
    """The level (1..L, the root L) of each tree item, from the tree port's params (designs/tree.py)."""
    from shmrss.designs import tree

    nlev = int(w[L.H_DPARAM + 1])
    orders = tuple(int(w[L.H_DPARAM + 5 + i]) for i in range(nlev))
    out = [lev + 1 for lev, (items, _, _) in enumerate(tree.levels(int(w[L.H_POSSIBLE]), orders))
           for _ in range(items)]
    return np.array(out or [1], dtype=np.int64)


def _struct(design: str, w: np.ndarray) -> VW.Struct | None:
    from shmrss.designs import k_percpu

    if design == "percpu":
        return VW.port_struct(w)
    if design == "k-percpu":
        return VW.kernel_struct(w, _logging(design), k_percpu.G_SHARED)
    return None


class _View:
    """One design under verify: its compiled copy, what it read after an op, and what the op wrote."""

    def __init__(self, design, seg, ncpu, driver):
        self.design, self.seg, self.ncpu, self.driver = design, seg, ncpu, driver
        self.out = np.zeros((L.NMEMBERS, 4), dtype=np.int64)
        self.items = self.pcpu = self.hotplug = None
        self.locks = VW.Locks(seg, _logging(design) if design in KERNEL_LIBS else None)
        self.struct = _struct(design, seg.words)
        self.ops: dict[str, int] = {}  # the last op's writes, by word
        self.wrote: dict[str, int] = {}  # every op's

    def init(self) -> None:
        self.driver.verify_apply(self.seg.words, INIT, 0, 0, 0)
        self.items = ITEMS[self.design](self.seg.words) if self.design in ITEMS else None

    def op(self, op, levels: np.ndarray | None, writes: list[int]) -> np.ndarray | None:
        """Apply one op, tally its writes, read every member (``take``)."""
        w = self.seg.words
        before = self.struct.words(w) if self.struct is not None else None
        n0 = self.locks.count()
        self.driver.verify_apply(w, *op)
        locks = self.locks.since(n0)
        self.ops = VW.tally(self.struct, before, self.struct.words(w) if before is not None else None, locks)
        for name, c in self.ops.items():
            self.wrote[name] = self.wrote.get(name, 0) + c
        self.driver.verify_read(w, self.out)
        return self.take(levels, writes)

    def take(self, levels: np.ndarray | None, writes: list[int]) -> np.ndarray | None:
        """Read the per-CPU values and items; add the items the op changed to ``writes``; those per level."""
        self.pcpu = PCPU_VALUES[self.design](self.seg.words, self.ncpu)
        if self.design in HOTPLUG:
            self.hotplug = HOTPLUG[self.design](self.seg.words, self.ncpu)
        if self.items is None:
            return None
        now = ITEMS[self.design](self.seg.words)
        changed = (now != self.items).sum(axis=0)
        self.items = now
        wrote = np.bincount(levels, weights=changed, minlength=len(writes) + 1)[1:].astype(np.int64)
        for i, c in enumerate(wrote):
            writes[i] += int(c)
        return wrote


def _differences(a: _View, b: _View, wa, wb, skip) -> list[str]:
    diffs = []
    if not np.array_equal(a.out, b.out):
        diffs.append("reads")
    if not np.array_equal(a.pcpu, b.pcpu):
        diffs.append("per-CPU")
    if a.hotplug is not None and not np.array_equal(a.hotplug, b.hotplug):
        diffs.append("batch or online mask")
    if a.items is not None and not np.array_equal(a.items, b.items):
        diffs.append("items")
    if wa is not None and not np.array_equal(wa, wb):
        diffs.append("level writes")
    for name in sorted((set(a.ops) | set(b.ops)) - skip):
        if a.ops.get(name, 0) != b.ops.get(name, 0):
            diffs.append(f"writes to {name}")
    return diffs


def _describe(i, op, diffs, a: _View, b: _View, wa, wb) -> str:
    kind, cpu, k, delta = (int(x) for x in op)
    what = f"add {delta:+d} to member {k} on CPU {cpu}" if kind == 0 else f"CPU {cpu} offline"
    text = (f"op {i} ({what}) differs in {', '.join(diffs)}: (approx, precise, under, over) per member "
            f"{a.design} {a.out.tolist()} {b.design} {b.out.tolist()}; per-CPU {a.design} {a.pcpu.tolist()} "
            f"{b.design} {b.pcpu.tolist()}; writes (locks taken, words changed) {a.design} {a.ops} "
            f"{b.design} {b.ops}")
    if a.hotplug is not None:
        text += (f"; batch, online mask {a.design} {a.hotplug[0]}, {a.hotplug[1:].tolist()} "
                 f"{b.design} {b.hotplug[0]}, {b.hotplug[1:].tolist()}")
    if a.items is not None:
        shown = [m for m in range(L.NMEMBERS) if not np.array_equal(a.items[m], b.items[m])] or [k]
        for m in shown:
            text += (f"; items of member {m} (levels 1.., root last) {a.design} {a.items[m].tolist()} "
                     f"{b.design} {b.items[m].tolist()}")
        text += f"; items written per level {a.design} {wa.tolist()} {b.design} {wb.tolist()}"
    return text


def _run(drivers, segs, port, kernel, stream, ncpu) -> Outcome:
    views = {d: _View(d, segs[d], ncpu, drivers[d]) for d in drivers}
    for v in views.values():
        v.init()
    levels = _item_levels(segs[port].words) if port in ITEMS else None
    a, b = views[port], views[kernel]
    res = Outcome(ops=len(stream), c_only=sorted(VW.c_only(b.struct)))
    if levels is not None:
        res.writes = {d: [0] * int(levels.max()) for d in drivers}
    for i, row in enumerate(stream):
        op = tuple(int(x) for x in row)
        wa = a.op(op, levels, res.writes.get(port, []))
        wb = b.op(op, levels, res.writes.get(kernel, []))
        diffs = _differences(a, b, wa, wb, set(res.c_only))
        if not diffs:
            continue
        res.bad += 1
        for what in diffs:
            res.kinds[what] = res.kinds.get(what, 0) + 1
        if not res.first:
            res.first = _describe(i, stream[i], diffs, a, b, wa, wb)
    res.wrote = {d: v.wrote for d, v in views.items()}
    return res


def kernel_designs(text: str) -> str:
    """The kernel C designs the ports named in ``text`` are checked against (UsageError for another port)."""
    from shmrss.errors import UsageError

    ports = [d.strip() for d in text.split(",") if d.strip()]
    for p in ports:
        if p not in PAIRS:
            raise UsageError(f"verify: no kernel C for design {p!r} (ports with kernel C: {', '.join(PAIRS)})")
    return ",".join(PAIRS[p] for p in ports)


def _writes_line(port: str, o: Outcome) -> str:
    """The writes per shared word over the stream, port / C (the C's own statics apart)."""
    p, c = o.wrote.get(port, {}), o.wrote.get(PAIRS[port], {})
    names = sorted((set(p) | set(c)) - set(o.c_only))
    text = ", ".join(f"{n} {p.get(n, 0):,}/{c.get(n, 0):,}" for n in names) or "no lock taken by either"
    only = ", ".join(f"{n} {c.get(n, 0):,}" for n in o.c_only)
    return f"  writes per shared word, {port} / {PAIRS[port]}: {text}" + (
        f"; the C only (no port has it): {only}" if only else "")


def _print(port: str, version: str, args, o: Outcome) -> None:
    print(f"{port} vs {PAIRS[port]} ({version}, {args.cpus} CPUs, seed {args.seed}): "
          f"{o.ops} ops, {o.bad} mismatches", flush=True)
    print(_writes_line(port, o), flush=True)
    if o.kinds:
        print("  ops differing in: " + ", ".join(f"{k} {v}" for k, v in o.kinds.items()), flush=True)
    for d, per_level in o.writes.items():
        print(f"  {d} items written per level (1.., root last): {per_level}", flush=True)
    if o.bad:
        print(f"first mismatch: {o.first}", flush=True)


def main(args, err) -> int:
    from shmrss import designs

    failed = 0
    for p in kernel_designs(args.design) and [d.strip() for d in args.design.split(",") if d.strip()]:
        designs.get(p)
        lib = KERNEL_LIBS[PAIRS[p]]
        _, version = lib.loaded()
        version = f"kernel {version}" if version != "unknown" else lib.provenance()["source"]  # a copy: its path
        o = outcome(p, args.events, args.seed, args.cpus)
        _print(p, version, args, o)
        failed += o.bad > 0
    return 1 if failed else 0
