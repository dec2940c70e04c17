"""The compiled call into C: ``ccall(seg, slot, a, b, c)`` calls ``long f(long base, long a, long b, long c)``.

The function's address is read from segment word ``slot`` at run time (the parent
loaded the shared object before forking, so the address is the same in every
child); ``base`` is this process's address of the segment. Nothing process-specific
is compiled in, so numba's disk cache stays valid across runs.

``entry_call(design, name)`` is the same call for one glue function of a C
design, inlined when the design's library was built on the inlined route
(``shmrss.kernel.inline``): the loop calls the copy's ``name`` by symbol, and
LLVM inlines its body (the kernel's instructions) into the loop; otherwise it
is ``ccall`` through ``slot``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from shmrss.kernel import inline

_I64 = ir.IntType(64)
_FN = ir.FunctionType(_I64, [_I64, _I64, _I64, _I64])


def _base_ptr(context, builder, segty, seg):
    if isinstance(segty, types.CPointer):
        return seg
    return context.make_array(segty)(context, builder, seg).data


def _check(seg) -> None:
    if not (seg == types.CPointer(types.int64) or (isinstance(seg, types.Array) and seg.dtype == types.int64)):
        raise TypeError("ccall takes the segment's int64 words")


def _lower(context, builder, sig, args, symbol, design):
    ptr = _base_ptr(context, builder, sig.args[0], args[0])
    vals = [context.cast(builder, v, t, types.int64) for v, t in zip(args[2:], sig.args[2:])]
    if symbol is not None:
        context.active_code_library.add_linking_library(inline.linking_library(context.codegen(), design))
        fn = cgutils.get_or_insert_function(builder.module, _FN, symbol)
    else:
        slot_v = context.cast(builder, args[1], sig.args[1], types.int64)
        addr = builder.load(builder.gep(ptr, [slot_v]))
        fn = builder.inttoptr(addr, _FN.as_pointer())
    return builder.call(fn, [builder.ptrtoint(ptr, _I64), *vals])


@intrinsic
def ccall(typingctx, seg, slot, a, b, c):
    """``((long (*)(long, long, long, long)) seg[slot])((long) seg, a, b, c)``."""
    _check(seg)

    def codegen(context, builder, sig, args):
        return _lower(context, builder, sig, args, None, None)

    return types.int64(seg, slot, a, b, c), codegen


def entry_call(design: str, name: str):
    """An intrinsic ``call(seg, slot, a, b, c)``: glue function ``name`` of ``design``, inlined or called."""

    @intrinsic
    def call(typingctx, seg, slot, a, b, c):
        _check(seg)

        def codegen(context, builder, sig, args):
            return _lower(context, builder, sig, args, inline.symbol(design, name), design)

        return types.int64(seg, slot, a, b, c), codegen

    return call
