"""The compiled call into C: ``ccall(seg, slot, a, b, c)`` calls ``long f(long base, long a, long b, long c)``.

The function's address is read from segment word ``slot`` at run time (the parent
loaded the shared object before forking, so the address is the same in every
child); ``base`` is this process's address of the segment. Nothing process-specific
is compiled in, so numba's disk cache stays valid across runs.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_FN = ir.FunctionType(_I64, [_I64, _I64, _I64, _I64])


def _base_ptr(context, builder, segty, seg):
    if isinstance(segty, types.CPointer):
        return seg
    return context.make_array(segty)(context, builder, seg).data


@intrinsic
def ccall(typingctx, seg, slot, a, b, c):
    """``((long (*)(long, long, long, long)) seg[slot])((long) seg, a, b, c)``."""
    if not (seg == types.CPointer(types.int64) or (isinstance(seg, types.Array) and seg.dtype == types.int64)):
        raise TypeError("ccall takes the segment's int64 words")

    def codegen(context, builder, sig, args):
        ptr = _base_ptr(context, builder, sig.args[0], args[0])
        slot_v = context.cast(builder, args[1], sig.args[1], types.int64)
        addr = builder.load(builder.gep(ptr, [slot_v]))
        fn = builder.inttoptr(addr, _FN.as_pointer())
        vals = [context.cast(builder, v, t, types.int64) for v, t in zip(args[2:], sig.args[2:])]
        return builder.call(fn, [builder.ptrtoint(ptr, _I64), *vals])

    return types.int64(seg, slot, a, b, c), codegen
