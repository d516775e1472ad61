"""A software prefetch for numba kernels: start loading the cache line a later iteration will read.

Why: the synapse kernels look both roots of every synapse up in a hash table over the ~10^5 nucleus
roots (4-8 MiB: in the shared L3 cache, not in a core's L2). The loads are independent from row to row,
but the loop's branches (is this root a cell?) are unpredictable, so the processor rarely has more than
one or two of them in flight. When another core streams memory (polars decoding the next range) the
table is evicted from L3 and every lookup waits for DRAM. Asking for row i + 32's slots while row i is
looked up measured 21 -> 17 ns per synapse quiet and 35-52 -> 18-20 ns with a core streaming beside it
(benchmarks/README.md). A prefetch is only a hint: it never faults and never changes a result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_READ, _KEEP_IN_ALL_CACHES, _DATA = 0, 3, 1  # llvm.prefetch's rw, locality and cache-type operands


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """Hint that `array[index]` (its first element in row `index` for a 2-D array) is read soon.

    `index` must lie within the array's first axis (no bounds check: a prefetch is on the hot path)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type, index_type = signature.args
        view = context.make_array(array_type)(context, builder, args[0])
        row = context.cast(builder, args[1], index_type, types.intp)
        indices = [row] + [context.get_constant(types.intp, 0)] * (array_type.ndim - 1)
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)
        i32 = ir.IntType(32)
        signature_ir = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        function = builder.module.declare_intrinsic("llvm.prefetch", [cgutils.voidptr_t], signature_ir)
        operands = [builder.bitcast(pointer, cgutils.voidptr_t), i32(_READ), i32(_KEEP_IN_ALL_CACHES), i32(_DATA)]
        builder.call(function, operands)
        return context.get_dummy_value()

    return types.void(array, index), codegen


# called from numba kernels only (the intrinsic itself: typing it for mypy changes nothing for numba)
prefetch = cast("Callable[[Any, int], None]", _prefetch)
