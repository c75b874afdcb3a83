"""Rounding of exact sums to the PIM accumulator formats (numba kernels the bank model inlines)."""

from __future__ import annotations

import math

import numpy as np

from pimsim._numba_cache import njit
from pimsim.pim.formats import ACC_FP16, ACC_FP32, FP16_MAX


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
