"""Compiled memory intrinsics over int64 words of a numpy array (or a raw pointer to them).

Every counter operation an emulated CPU performs goes through one of these, so
that the instruction the host executes is the one the kernel executes:

=====================  ====================  ==================================
kernel primitive       intrinsic             x86-64 instruction
=====================  ====================  ==================================
this_cpu_add           ``local_add``         ``add  reg, (mem)`` (no lock)
this_cpu_cmpxchg       ``local_cmpxchg``     ``cmpxchg reg, (mem)`` (no lock)
this_cpu_add_return    ``local_xadd``        ``xadd reg, (mem)`` (no lock)
atomic_add_return      ``xadd``              ``lock xadd``
atomic_cmpxchg         ``cmpxchg``           ``lock cmpxchg``
xchg                   ``xchg``              ``xchg`` (implicitly locked)
READ_ONCE/WRITE_ONCE   ``load``/``store``    ``mov`` (never elided)
cpu_relax              ``pause``             ``pause``
get_cycles             ``rdtsc``             ``rdtsc``
smp_mb                 ``fence``             ``lock or`` to the stack (LLVM's full fence)
=====================  ====================  ==================================

Loads are acquire and stores release at the LLVM level: on x86 both are a plain
``mov``, but the compiler may neither drop them nor move other memory accesses
across them, which the truth-before-update protocol of the engine relies on.
Indexing is unchecked: callers compute indices from the segment layout.
"""

from __future__ import annotations

import time

import llvmlite.binding as _llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# numba's JIT does not register an assembly parser; inline asm (needed for the
# lock-less cmpxchg that this_cpu_cmpxchg is) fails to compile without it.
_llvm.initialize_native_asmparser()

_I64 = ir.IntType(64)


_WORDS = types.CPointer(types.int64)


def _word_ptr(context, builder, arrty, arr, idx):
    if isinstance(arrty, types.CPointer):
        return builder.gep(arr, [idx])
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(
        context, builder, arrty, ary, [idx], wraparound=False, boundscheck=False
    )


def _check_array(arr):
    if arr == _WORDS:
        return
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        raise TypeError("shmrss intrinsics work on 1-d int64 arrays or int64 pointers")


@intrinsic
def raw(typingctx, arr):
    """The array's data as an int64 pointer.

    Hot loops index the segment through this pointer: an array passed to a
    compiled helper is reference counted on every call (an atomic increment
    and decrement per event), a pointer is not. The array must outlive it.
    """
    _check_array(arr)

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return _WORDS(arr), codegen


@intrinsic
def load(typingctx, arr, idx):
    """Acquire load of one word (``mov``)."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, types.intp), codegen


@intrinsic
def store(typingctx, arr, idx, val):
    """Release store of one word (``mov``)."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, types.int64), codegen


@intrinsic
def local_add(typingctx, arr, idx, val):
    """this_cpu_add: one read-modify-write ``add`` to memory without a lock prefix.

    Not atomic against other CPUs (the word must be owned by the caller's CPU),
    but never kept in a register: every call touches the cache line.
    """
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        old = builder.load_atomic(ptr, "monotonic", 8)
        builder.store_atomic(builder.add(old, args[2]), ptr, "monotonic", 8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, types.int64), codegen


@intrinsic
def xadd(typingctx, arr, idx, val):
    """atomic_fetch_add (``lock xadd``); returns the old value."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return types.int64(arr, types.intp, types.int64), codegen


@intrinsic
def cmpxchg(typingctx, arr, idx, old, new):
    """atomic_cmpxchg (``lock cmpxchg``); returns the value found (== old on success)."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(arr, types.intp, types.int64, types.int64), codegen


@intrinsic
def local_cmpxchg(typingctx, arr, idx, old, new):
    """this_cpu_cmpxchg: ``cmpxchg`` without the lock prefix; returns the value found.

    Atomic against interrupts on the same CPU, not against other CPUs, exactly
    like the kernel's per-CPU variant.
    """
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        fnty = ir.FunctionType(_I64, [ptr.type, _I64, _I64])
        return builder.asm(
            fnty, "cmpxchgq $3, ($1)", "={rax},r,0,r,~{memory},~{cc}", [ptr, args[2], args[3]], True
        )

    return types.int64(arr, types.intp, types.int64, types.int64), codegen


@intrinsic
def local_xadd(typingctx, arr, idx, val):
    """this_cpu_add_return's instruction: ``xadd`` without the lock prefix; returns the old value."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        fnty = ir.FunctionType(_I64, [ptr.type, _I64])
        return builder.asm(fnty, "xaddq $0, ($1)", "=r,r,0,~{memory},~{cc}", [ptr, args[2]], True)

    return types.int64(arr, types.intp, types.int64), codegen


@intrinsic
def xchg(typingctx, arr, idx, val):
    """atomic_xchg (``xchg``, implicitly locked); returns the old value."""
    _check_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("xchg", ptr, args[2], "seq_cst")

    return types.int64(arr, types.intp, types.int64), codegen


def _call_intrinsic(builder, name, retty, argtys=(), args=()):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(retty, list(argtys)), name)
    return builder.call(fn, list(args))


@intrinsic
def pause(typingctx):
    """cpu_relax (``pause``)."""

    def codegen(context, builder, sig, args):
        _call_intrinsic(builder, "llvm.x86.sse2.pause", ir.VoidType())
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def rdtsc(typingctx):
    """Time-stamp counter (``rdtsc``)."""

    def codegen(context, builder, sig, args):
        return _call_intrinsic(builder, "llvm.x86.rdtsc", _I64)

    return types.int64(), codegen


@intrinsic
def fence(typingctx):
    """Full barrier (LLVM emits ``lock or $0, (%rsp)``, as the kernel's smp_mb does on x86-64)."""

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def compiler_barrier(typingctx):
    """Stop the compiler moving memory accesses across this point; emits no instruction.

    x86 keeps stores in program order by itself (TSO), so ordering the
    engine's truth stores only needs the compiler held back.
    """

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst", "singlethread")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always")
def spin_lock(a, i, owner):
    """Test-and-test-and-set spinlock: spin with ``pause`` on a plain load, take with ``lock cmpxchg``.

    The lock word holds ``owner`` (non-zero) while taken, so that the locks a
    killed process held can be found and released. Returns the number of failed
    attempts (0 when uncontended), so that callers can tally contention.
    """
    spins = 0
    while True:
        if load(a, i) == 0 and cmpxchg(a, i, 0, owner) == 0:
            return spins
        spins += 1
        pause()


@njit(inline="always")
def spin_unlock(a, i):
    store(a, i, 0)


def calibrate_tsc(seconds: float = 0.05) -> float:
    """TSC ticks per nanosecond, measured against the monotonic clock."""
    tick = tsc_now
    tick()  # compile before timing
    t0, c0 = time.perf_counter_ns(), tick()
    deadline = t0 + int(seconds * 1e9)
    while time.perf_counter_ns() < deadline:
        pass
    t1, c1 = time.perf_counter_ns(), tick()
    return (c1 - c0) / (t1 - t0)


@njit(cache=True)
def tsc_now():
    """The time-stamp counter now, callable from Python (one compiled ``rdtsc``, cached on disk): the one
    TSC reading outside a compiled loop (calibration, the fault driver's kill time, the monitor)."""
    return rdtsc()


@njit(cache=True)
def _tsc_overhead(n):
    best = 1 << 62
    for _ in range(n):
        a = rdtsc()
        b = rdtsc()
        if b - a < best:
            best = b - a
    return best


def tsc_overhead_ticks(samples: int = 10_000) -> int:
    """Smallest cost of a back-to-back ``rdtsc`` pair: subtracted from timed reads."""
    return int(_tsc_overhead(samples))


def tsc_granularity_ticks(samples: int = 2000) -> int:
    """The step in which the TSC advances (1 on bare metal; larger on some virtualised hosts)."""
    import numpy as np

    x = np.array([tsc_now() for _ in range(samples)], dtype=np.int64)
    d = np.diff(x)
    d = d[d > 0]
    return int(np.gcd.reduce(d)) if d.size else 1
