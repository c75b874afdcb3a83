"""The ASIC's part of a PIM matrix-vector product: adding up the partial sums the banks return."""

from __future__ import annotations

import numpy as np

from pimsim._numba_cache import njit


@njit(cache=True)
def _sum_f32(out_id, partial, n):
    y = np.zeros(n, np.float32)
    for i in range(out_id.shape[0]):
        y[out_id[i]] = np.float32(y[out_id[i]] + partial[i])
    return y


@njit(cache=True)
def _sum_i64(out_id, partial, n):
    y = np.zeros(n, np.int64)
    for i in range(out_id.shape[0]):
        y[out_id[i]] += partial[i]
    return y


def sum_partials(out_id: np.ndarray, partial: np.ndarray, n: int, integer: bool) -> np.ndarray:
    """Sum partial sums into n outputs, each output's partials in the order given.

    Floating-point partials are added in FP32, one after another (assumed: the PIM-GPT paper does
    not give the ASIC's adder format); integer partials are added exactly (in 64 bits)."""
    if integer:
        return _sum_i64(out_id.astype(np.int64), np.rint(partial).astype(np.int64), n)
    return _sum_f32(out_id.astype(np.int64), partial.astype(np.float32), n)
