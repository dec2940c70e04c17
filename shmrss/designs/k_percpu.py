"""Design ``k-percpu``: the kernel's own ``lib/percpu_counter.c``, compiled from ``$SHMRSS_KERNEL_SRC``.

Not a port: the engine runs the kernel's C (built against the shim in ``shmrss/kernel/c``;
glue ``glue_percpu.c``): with clang, the add is inlined into the loop (``_kernel.adder``),
and every other entry is called through addresses the parent writes into the design's
global words before forking; without clang gcc builds it and the add is called too
(docs/kernel-c.md, the two routes). mm->rss_stat is laid out as the C lays it
out: four ``struct percpu_counter`` (40 bytes each on x86-64 with CONFIG_HOTPLUG_CPU:
lock, count, list, counters) packed in the mm's region, so the fast path's load of
``fbc->counters`` touches the line its slow path writes, as in the kernel. Each
counter's s32 lives in every CPU's unit (``alloc_percpu``). Pointers stay valid in
every process because the shim keeps them as segment offsets (docs/kernel-c.md).

The engine's reads that must not call C (the monitor, which maps the segment read-only
and never loads the library) read the C's words directly, at the offsets the C reports
(design params D0..D3). Deviations: no journal, so a CPU killed inside an update is not
recovered (``recover`` reports nothing); ``percpu_counter_batch``, which a CPU's offline
recomputes (``percpu_counter_cpu_dead``), is a global of the library in each process: the
new value stays in the process that ran the offline (the parent), while the port
recomputes its batch in the segment for every CPU (``shmrss verify``, in one process,
compares the two).
"""

from numba import njit

from shmrss import layout as L
from shmrss.atomics import load, store
from shmrss.designs import _kernel
from shmrss.designs._kernel import (  # noqa: F401  (the part of the interface every C design shares)
    PCPU_WORDS, cpu_offline, g as _g, mm_destroy, mm_init, obj as _obj, read_precise, recover, resolve,
    switch_mm,
)
from shmrss.designs._common import dparam
from shmrss.kernel import ccall as _cc
from shmrss.segment import DesignShape

NAME = "k-percpu"
ID = 9
SUMMARY = "the kernel's lib/percpu_counter.c (from --kernel-src), inlined into or called from the pinned loop"
BOUND = "|approx - truth| <= N * (B - 1), B = percpu_counter_batch after boot"
ccall = _cc.ccall
add = _kernel.adder(NAME, "kp_add")

G_ADD, G_SUM, G_INIT, G_DESTROY, G_OFFLINE = range(5)  # global words: kpercpu.ENTRIES' addresses
G_SHARED = 8  # the shim's shared area (cpumasks, WARN_ON count, moved statics) from this word on
SHARED_WORDS = 128  # shmrss_glue.h SHIM_SHARED_BYTES / 8
MASK_WORDS = 8  # one cpumask of the shared area (NR_CPUS / 64): possible, online, dying from G_SHARED on
D_SIZE, D_COUNT, D_COUNTERS, D_LOCK, D_BATCH = range(5)


def shape(ncpu, possible, nmm, line_words=8, nodes=None, options=None) -> DesignShape:
    from shmrss.kernel import kpercpu

    size, count, counters, lock = (kpercpu.call("kp_layout", i) for i in range(4))
    if size % 8 or count % 8 or counters % 8:
        raise ValueError(f"struct percpu_counter is {size} bytes, count at {count}, counters at {counters}: "
                         "k-percpu reads them as 8-byte words")
    return DesignShape(pcpu_words_per_mm=PCPU_WORDS, mm_words=L.NMEMBERS * size // 8,
                       global_words=G_SHARED + SHARED_WORDS, params=(size, count, counters, lock, 0))


def setup(words, ncpu: int, nodes) -> None:
    """Load the library, write its entry addresses, bind the shim to this run's CPUs, boot its callbacks."""
    from shmrss.kernel import kpercpu

    _kernel.bind(words, kpercpu.LIB, "kp_setup", G_SHARED)
    words[L.H_DPARAM + D_BATCH] = kpercpu.call("kp_layout", 4)



@njit(inline="always")
def read_approx(seg, mm, k):
    """percpu_counter_read: ``fbc->count`` (a static inline of the header: read here, not called)."""
    return load(seg, (_obj(seg, mm, k) + dparam(seg, D_COUNT)) // 8)


@njit(inline="always")
def approx_bound(seg, mm, k):
    e = seg[L.H_ONLINE] * (dparam(seg, D_BATCH) - 1)
    return e, e


@njit(inline="always")
def _pcpu_at(seg, mm, k, cpu):
    """Byte offset of ``per_cpu_ptr(fbc->counters, cpu)``: the C's __percpu pointer (a segment offset in
    the shim) plus the CPU's unit."""
    return load(seg, (_obj(seg, mm, k) + dparam(seg, D_COUNTERS)) // 8) + cpu * seg[L.H_PCPU_CSTRIDE] * 8


@njit(inline="always")
def _s32(seg, at):
    w = load(seg, at // 8)
    if at % 8:
        return w >> 32
    return (w << 32) >> 32


@njit(inline="always")
def pcpu_value(seg, mm, k, cpu):
    """CPU ``cpu``'s s32 of the counter: ``*per_cpu_ptr(fbc->counters, cpu)``, read from the words."""
    return _s32(seg, _pcpu_at(seg, mm, k, cpu))


@njit(inline="always")
def peek_precise(seg, mm, k):
    """The monitor's precise value: __percpu_counter_sum's sum without its lock (loads only), through the
    C's own ``counters`` pointer, followed only inside the segment (else UNREAD: an mm not initialised yet)."""
    if not _kernel.in_unit(seg, _pcpu_at(seg, mm, k, 0), 4):
        return _kernel.UNREAD, 0
    s = read_approx(seg, mm, k)
    for cpu in range(seg[L.H_ONLINE]):
        s += pcpu_value(seg, mm, k, cpu)
    return s, 1



@njit(inline="always")
def release_locks(seg, who):
    """The shim's spinlocks hold their owner's tag (the s32 at the lock's offset): release ``who``'s."""
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            at = _obj(seg, mm, k) + dparam(seg, D_LOCK)
            w = load(seg, at // 8)
            tag = w >> 32 if at % 8 else w & 0xFFFFFFFF
            if tag == who:
                store(seg, at // 8, (w & 0xFFFFFFFF) if at % 8 else (w & ~0xFFFFFFFF))


@njit(inline="always")
def consistent(seg):
    """Quiescent: every online CPU's s32 is below the batch (what the approximate bound rests on)."""
    bad = 0
    for mm in range(seg[L.H_NMM]):
        for k in range(L.NMEMBERS):
            for cpu in range(seg[L.H_ONLINE]):
                if abs(pcpu_value(seg, mm, k, cpu)) >= dparam(seg, D_BATCH):
                    bad += 1
    return bad


def fits_header(h) -> bool:
    """The structs and units this design's reads index lie inside their regions."""
    dp = h[L.H_DPARAM:]
    return (h[L.H_PCPU_KSTRIDE] == 1 and h[L.H_PCPU_KWORDS] >= PCPU_WORDS and dp[D_SIZE] > 0
            and h[L.H_MM_STRIDE] * 8 >= L.NMEMBERS * dp[D_SIZE]
            and all(0 <= dp[d] and dp[d] % 8 == 0 and dp[d] + 8 <= dp[D_SIZE] for d in (D_COUNT, D_COUNTERS))
            and 0 <= dp[D_LOCK] and dp[D_LOCK] % 4 == 0 and dp[D_LOCK] + 4 <= dp[D_SIZE])


def describe() -> dict:
    """What the result records of the C this run called (shmrss.kernel.kpercpu.provenance)."""
    from shmrss.kernel import kpercpu

    return kpercpu.provenance()
