"""``shmrss verify``: each port and its kernel C run one generated op stream, compared after every op.

For each pair (``percpu`` and ``k-percpu``, the kernel's lib/percpu_counter.c) both
designs get a segment of the same geometry in this process; the ops (mixed CPUs,
deltas +-1, +-16, +-512 and odd sizes, a CPU going offline half way) go through
each design's compiled functions (``verify_driver``), and after every op the
approximate read, the precise read, the accuracy range and every CPU's per-CPU value must be equal.
Prints "N ops, M mismatches" per pair and the first mismatch; exit 1 on any.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shmrss import layout as L
from shmrss.options import int_at_least
from shmrss.segment import Geometry, Segment

TEMPLATE = Path(__file__).resolve().parent / "verify_driver.py"
PAIRS = {"percpu": "k-percpu"}  # port -> its kernel C
DELTAS = (1, 16, 512, 3, 7, 33, 100, 1023, 31, 32)
OFFLINE = 1


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
    from shmrss import designs

    mod = designs.get(design)
    shape = mod.shape(ncpu, ncpu, 1, line_words=8, options={"online_cpus": ncpu})
    seg = Segment.create(Geometry(ncpu=ncpu, possible=ncpu, nmm=1, ntask=1, line_words=8, pack=False, slice=100,
                                  design_id=mod.ID, shape=shape, tape_steps=2, ring=16))
    if hasattr(mod, "setup"):
        mod.setup(seg.words, ncpu, None)
    return seg


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


PCPU_VALUES = {"percpu": _port_pcpu, "k-percpu": _kernel_pcpu}


def compare(port: str, n: int, seed: int, ncpu: int) -> tuple[int, str]:
    """(mismatches, the first one in full) over ``n`` ops of port against its kernel C."""
    from shmrss.specialise import compile_entries, specialised

    kernel = PAIRS[port]
    drivers = {d: specialised(TEMPLATE, d, "shmrss_verify") for d in (port, kernel)}
    for mod in drivers.values():
        compile_entries(mod, ("step",))
    segs = {d: _segment(d, ncpu) for d in drivers}
    try:
        return _run(drivers, segs, port, kernel, ops(n, ncpu, seed), ncpu)
    finally:
        for s in segs.values():
            s.unlink()
            s.close()


def _run(drivers, segs, port, kernel, stream, ncpu) -> tuple[int, str]:
    outs = {d: np.zeros((L.NMEMBERS, 4), dtype=np.int64) for d in drivers}
    bad, first = 0, ""
    for d in drivers:
        drivers[d].step(segs[d].words, 2, 0, 0, 0, outs[d])  # INIT
    for i, (kind, cpu, k, delta) in enumerate(stream):
        for d in drivers:
            drivers[d].step(segs[d].words, int(kind), int(cpu), int(k), int(delta), outs[d])
        pp, kp = PCPU_VALUES[port](segs[port].words, ncpu), PCPU_VALUES[kernel](segs[kernel].words, ncpu)
        if np.array_equal(outs[port], outs[kernel]) and np.array_equal(pp, kp):
            continue
        bad += 1
        if not first:
            what = f"add {delta:+d} to member {k} on CPU {cpu}" if kind == 0 else f"CPU {cpu} offline"
            first = (f"op {i} ({what}): (approx, precise, under, over) per member {port} {outs[port].tolist()} "
                     f"{kernel} {outs[kernel].tolist()}; per-CPU {port} {pp.tolist()} {kernel} {kp.tolist()}")
    return bad, first


def main(args, err) -> int:
    from shmrss import designs
    from shmrss.errors import UsageError
    from shmrss.kernel import kpercpu

    ports = [d.strip() for d in args.design.split(",") if d.strip()]
    for p in ports:
        if p not in PAIRS:
            raise UsageError(f"verify: no kernel C for design {p!r} (ports with kernel C: {', '.join(PAIRS)})")
    _, version = kpercpu.loaded()
    failed = 0
    for p in ports:
        designs.get(p)
        bad, first = compare(p, args.events, args.seed, args.cpus)
        print(f"{p} vs {PAIRS[p]} (kernel {version}, {args.cpus} CPUs, seed {args.seed}): "
              f"{args.events} ops, {bad} mismatches", flush=True)
        if bad:
            print(f"first mismatch: {first}", flush=True)
            failed += 1
    return 1 if failed else 0
