"""Number formats of the PIM MAC units: operands (bf16, fp16, int8) and accumulators (fp32, fp16, int32).

Operand values are kept in float32 arrays holding exactly the values the format can represent, so a
product of two operands is exact in float32 (8 + 8 or 11 + 11 significant bits, or two int8s) and the
only rounding is where the hardware rounds: when a product or partial sum is added to an accumulator.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

OPERAND_BITS = {"bf16": 16, "fp16": 16, "int8": 8}
ACC_FP32, ACC_FP16, ACC_INT32 = 0, 1, 2
ACCUMULATORS = {"fp32": ACC_FP32, "fp16": ACC_FP16, "int32": ACC_INT32}

FP16_MAX = 65504.0


def to_bf16(values) -> np.ndarray:
    """Round to bfloat16 (round to nearest, ties to even); returned as float32."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    bits = x.view(np.uint32)
    # uint32 arithmetic wraps only for NaNs with the sign bit set, which are restored below
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    out = rounded.view(np.float32)
    nan = np.isnan(x)
    out[nan] = np.nan  # rounding a NaN's payload could carry it into infinity
    return out


def to_operands(values, fmt: str) -> np.ndarray:
    """Values as the PIM operand format holds them (float32 array of representable values).

    int8 operands must already be integers in [-128, 127]: quantizing (choosing a scale) is the
    workload's business, not the memory's.
    """
    x = np.asarray(values, dtype=np.float32)
    if fmt == "bf16":
        return to_bf16(x)
    if fmt == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if fmt == "int8":
        if not (np.all(np.isfinite(x)) and np.all(x == np.rint(x)) and x.min(initial=0) >= -128
                and x.max(initial=0) <= 127):
            raise ValueError("int8 operands must be integers in [-128, 127] (quantize them first)")
        return x.copy()
    raise ValueError(f"unknown operand format {fmt!r} (known: {', '.join(OPERAND_BITS)})")


@njit(cache=True)
def round_fp16(x):
    """Round a float64 to the nearest fp16 value (ties to even), overflowing to infinity."""
    if x != x or x == 0.0 or math.isinf(x):
        return x
    a = abs(x)
    mantissa, exponent = math.frexp(a)  # a = mantissa * 2**exponent, mantissa in [0.5, 1)
    # fp16 keeps 11 significant bits for normal numbers (exponent of a in [1, 2) form >= -14), and a
    # fixed quantum of 2**-24 below that
    quantum = math.ldexp(1.0, max(exponent - 11, -24))
    r = np.rint(a / quantum) * quantum
    if r > FP16_MAX:
        r = math.inf
    return r if x > 0 else -r


@njit(cache=True)
def round_acc(x, kind):
    """Round an exact (float64) sum to the accumulator format `kind` (ACC_*)."""
    if kind == ACC_FP32:
        return np.float64(np.float32(x))
    if kind == ACC_FP16:
        return round_fp16(x)
    v = np.int64(x)  # int32 accumulators wrap around like two's-complement hardware
    v = (v + 2**31) % 2**32 - 2**31
    return np.float64(v)
