"""Number formats of the PIM MAC units: weights (bf16, fp16, int8, ternary, binary), activations (bf16,
fp16, int8) and accumulators (fp32, fp16, int32).

Operand values are kept in float32 arrays holding exactly the values the format can represent, so a
product of two operands is exact in float32 (8 + 8 or 11 + 11 significant bits, or two int8s) and the
only rounding is where the hardware rounds: when a product or partial sum is added to an accumulator.

Ternary weights are {-1, 0, +1}, packed 2 bits each (``ternary``) or 5 trits to a byte (``ternary-b3``,
3^5 = 243 <= 256: 1.6 bits each); binary weights are {-1, +1}, 1 bit each. Their "multiplier" is a sign
select: the product with an activation is that activation, its negation, or zero, so integer activations
and an int32 accumulator make a ternary or binary dot product exact. Scales (per tensor or per output
row) are not stored in the banks; the ASIC applies them to the dot products (see
:mod:`pimsim.workloads.quantize`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# bits one weight occupies in a DRAM row (ternary-b3: 8 bits per 5 trits)
WEIGHT_BITS = {"bf16": Fraction(16), "fp16": Fraction(16), "int8": Fraction(8), "ternary": Fraction(2),
               "ternary-b3": Fraction(8, 5), "binary": Fraction(1)}
WEIGHT_FORMATS = tuple(WEIGHT_BITS)
ACTIVATION_FORMATS = ("bf16", "fp16", "int8")
OPERAND_BITS = {"bf16": 16, "fp16": 16, "int8": 8}  # activation (and native weight) formats
LOW_BIT = ("ternary", "ternary-b3", "binary")
_LEVELS = {"ternary": (-1.0, 0.0, 1.0), "ternary-b3": (-1.0, 0.0, 1.0), "binary": (-1.0, 1.0)}


def pad_value(fmt: str) -> float:
    """What padding weights hold: zero, except binary, which has no zero (its +1 padding meets zero
    activations, so it adds nothing either)."""
    return 1.0 if fmt == "binary" else 0.0


def elements_in(nbytes: int, fmt: str) -> int:
    """Weights of format `fmt` that `nbytes` bytes hold (whole weights only)."""
    return int(Fraction(8 * nbytes) / WEIGHT_BITS[fmt])
ACC_FP32, ACC_FP16, ACC_INT32 = 0, 1, 2
ACCUMULATORS = {"fp32": ACC_FP32, "fp16": ACC_FP16, "int32": ACC_INT32}

FP16_MAX = 65504.0


def to_bf16(values) -> np.ndarray:
    """Round to bfloat16 (round to nearest, ties to even); returned as float32."""
    import numpy as np  # here, not at the top: config checks read this module's tables without numpy

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

    int8 operands must already be integers in [-128, 127], ternary ones in {-1, 0, 1} and binary ones in
    {-1, 1}: quantizing (choosing a scale) is the workload's business, not the memory's.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float32)
    if fmt in _LEVELS:
        if not np.all(np.isin(x, _LEVELS[fmt])):
            raise ValueError(f"{fmt} operands must be in {{{', '.join(f'{v:g}' for v in _LEVELS[fmt])}}} "
                             f"(quantize them first)")
        return x.copy()
    if fmt == "bf16":
        return to_bf16(x)
    if fmt == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if fmt == "int8":
        if not (np.all(np.isfinite(x)) and np.all(x == np.rint(x)) and x.min(initial=0) >= -128
                and x.max(initial=0) <= 127):
            raise ValueError("int8 operands must be integers in [-128, 127] (quantize them first)")
        return x.copy()
    raise ValueError(f"unknown operand format {fmt!r} (known: {', '.join(WEIGHT_FORMATS)})")


def __getattr__(name: str):
    # The accumulator rounding kernels live in `pimsim.pim.rounding` so that the format tables above can be
    # read (config checks, `pimsim validate`) without importing numba; `from ...formats import round_acc`
    # still works.
    if name in ("round_fp16", "round_acc"):
        from pimsim.pim import rounding

        return getattr(rounding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
