"""Number formats of the PIM MAC units: weights (bf16, fp16, fp8-e4m3, int8, int4-g128, ternary, binary),
activations (bf16, fp16, int8), KV cache values (bf16, fp16, int8, fp8-e4m3) and accumulators (fp32, fp16,
int32).

Operand values are kept in float32 arrays holding exactly the values the format can represent, so a
product of two operands is exact in float32 (8 + 8 or 11 + 11 significant bits, or two int8s) and the
only rounding is where the hardware rounds: when a product or partial sum is added to an accumulator.

Ternary weights are {-1, 0, +1}, packed 2 bits each (``ternary``) or 5 trits to a byte (``ternary-b3``,
3^5 = 243 <= 256: 1.6 bits each); binary weights are {-1, +1}, 1 bit each. Their "multiplier" is a sign
select: the product with an activation is that activation, its negation, or zero, so integer activations
and an int32 accumulator make a ternary or binary dot product exact. Scales (per tensor or per output
row) are not stored in the banks; the ASIC applies them to the dot products (see
:mod:`pimsim.workloads.quantize`).

``fp8-e4m3`` is OCP FP8 E4M3 ("fn": exponent bias 7, 3 mantissa bits, no infinities, largest finite 448,
NaN = S.1111.111), one byte per weight or KV value; values are rounded to it to nearest, ties to even,
and saturate at +-448 as PyTorch's float32 -> ``float8_e4m3fn`` cast does.

``int4-g128`` is 4-bit weights with one FP16 scale per group of 128 consecutive inputs of an output row,
as GPTQ (symmetric) and AWQ store them: codes in [-8, 7] (GPTQ keeps q + 8 in [0, 15]), two to a byte,
weight = code x scale. Its *layout in the banks* ("row-tail scales"): every DRAM row of a weight matrix
holds whole groups of one output row's segment, their codes first (64 to a 32 B column access), then the
groups' scales packed into the row's last column accesses (16 to 32 B); a row holds as many groups as fit
that way (:func:`row_elements`: 31 groups on a 2 KB row, 15 on a 1 KB row). Stored bytes per weight are
0.5 + 2/128 (:data:`WEIGHT_BITS`, :func:`stored_bytes`); a column access holds 64 codes
(:data:`CODE_BITS`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# bits one weight occupies in the memory, its share of group scales included (ternary-b3: 8 bits per 5 trits;
# int4-g128: 4 bits + a 16-bit scale per 128 weights)
WEIGHT_BITS = {"bf16": Fraction(16), "fp16": Fraction(16), "fp8-e4m3": Fraction(8), "int8": Fraction(8),
               "int4-g128": Fraction(4) + Fraction(16, 128), "ternary": Fraction(2),
               "ternary-b3": Fraction(8, 5), "binary": Fraction(1)}
WEIGHT_FORMATS = tuple(WEIGHT_BITS)
# bits of one weight's code inside a column access (scales of grouped formats sit in columns of their own)
CODE_BITS = {**WEIGHT_BITS, "int4-g128": Fraction(4)}
# weights sharing one FP16 scale (along the input dimension), and the bytes of that scale
GROUP_SIZE = {"int4-g128": 128}
SCALE_BYTES = 2
ACTIVATION_FORMATS = ("bf16", "fp16", "int8")
KV_FORMATS = ("bf16", "fp16", "int8", "fp8-e4m3")  # formats the KV cache (and the LM head, embeddings) may take
OPERAND_BITS = {"bf16": 16, "fp16": 16, "int8": 8, "fp8-e4m3": 8}  # activation, KV and float weight formats
LOW_BIT = ("ternary", "ternary-b3", "binary")
_LEVELS = {"ternary": (-1.0, 0.0, 1.0), "ternary-b3": (-1.0, 0.0, 1.0), "binary": (-1.0, 1.0)}
FP8_E4M3_MAX = 448.0
INT4_MIN, INT4_MAX = -8, 7


def pad_value(fmt: str) -> float:
    """What padding weights hold: zero, except binary, which has no zero (its +1 padding meets zero
    activations, so it adds nothing either)."""
    return 1.0 if fmt == "binary" else 0.0


def elements_in(nbytes: int, fmt: str) -> int:
    """Weight codes of format `fmt` that `nbytes` bytes hold (whole weights only; for a column access of a
    grouped format, its codes: the scales take accesses of their own)."""
    return int(Fraction(8 * nbytes) / CODE_BITS[fmt])


def scale_accesses(groups: int, access_bytes: int) -> int:
    """Column accesses the FP16 scales of `groups` groups take (16 to a 32 B access)."""
    return -(-groups * SCALE_BYTES // access_bytes)


def row_elements(row_bytes: int, access_bytes: int, fmt: str) -> int:
    """Weights one DRAM row holds: every code for formats without groups; for a grouped format, the most
    whole groups whose codes and scales (each in whole column accesses) fit the row."""
    if fmt not in GROUP_SIZE:
        return elements_in(row_bytes, fmt)
    group, accesses = GROUP_SIZE[fmt], row_bytes // access_bytes
    per_group = group // elements_in(access_bytes, fmt)  # column accesses of one group's codes
    groups = accesses // per_group
    while groups and groups * per_group + scale_accesses(groups, access_bytes) > accesses:
        groups -= 1
    return groups * group


def stored_bytes(fmt: str, rows: int, cols: int) -> Fraction:
    """Bytes an M x N weight matrix takes in `fmt`, exactly: a grouped format stores ceil(N / group) scales
    per row (a last, partial group has a scale too) and ceil(N / 2) bytes of codes."""
    if fmt in GROUP_SIZE:
        codes = -(-cols * CODE_BITS[fmt] // 8)
        return Fraction(rows * (int(codes) + -(-cols // GROUP_SIZE[fmt]) * SCALE_BYTES))
    return Fraction(rows * cols) * WEIGHT_BITS[fmt] / 8
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


def to_fp8_e4m3(values) -> np.ndarray:
    """Round to FP8 E4M3 (nearest, ties to even; saturating at +-448, NaN kept); returned as float32."""
    import numpy as np

    x = np.asarray(values, dtype=np.float32)
    a = np.nan_to_num(np.minimum(np.abs(x).astype(np.float64), 1024.0))  # beyond 448 saturates (inf too)
    # the spacing of E4M3 values around |x|: 2^(e - 3) for normal numbers (e >= -6), 2^-9 below
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    step = np.exp2(np.maximum(e, -6.0) - 3.0)
    rounded = np.rint(a / step) * step  # |x| / step < 2^4: exact in float64; rint ties to even
    out = np.copysign(np.minimum(rounded, FP8_E4M3_MAX), x).astype(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), out)


def fp8_e4m3_bits(values) -> np.ndarray:
    """The uint8 encoding of values already representable in E4M3 (S EEEE MMM, bias 7)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float32)
    if not np.array_equal(to_fp8_e4m3(x), x, equal_nan=True):
        raise ValueError("fp8_e4m3_bits takes values representable in E4M3 (round them with to_fp8_e4m3)")
    a = np.abs(x).astype(np.float64)
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    normal = a >= 2.0 ** -6
    exp_field = np.where(normal, e + 7, 0)
    mant = np.where(normal, a / np.exp2(e) - 1.0, a / 2.0 ** -6) * 8
    bits = (exp_field.astype(np.int64) << 3) | np.rint(mant).astype(np.int64)
    bits = np.where(np.isnan(x), 0x7F, bits) | (np.signbit(x).astype(np.int64) << 7)
    return bits.astype(np.uint8)


def fp8_e4m3_values(bits) -> np.ndarray:
    """Decode uint8 E4M3 encodings to float32 (0x7F and 0xFF are NaN)."""
    import numpy as np

    b = np.asarray(bits, dtype=np.uint8).astype(np.int64)
    exp_field, mant = (b >> 3) & 0xF, b & 0x7
    mag = np.where(exp_field == 0, mant / 8.0 * 2.0 ** -6, (1 + mant / 8.0) * np.exp2(exp_field - 7.0))
    mag = np.where((exp_field == 0xF) & (mant == 0x7), np.nan, mag)
    return np.where(b & 0x80, -mag, mag).astype(np.float32)


def to_operands(values, fmt: str) -> np.ndarray:
    """Values as the PIM operand format holds them (float32 array of representable values).

    int8 operands must already be integers in [-128, 127], int4-g128 ones (codes) in [-8, 7], ternary ones in
    {-1, 0, 1} and binary ones in {-1, 1}: quantizing (choosing a scale) is the workload's business, not the
    memory's. fp8-e4m3 values are rounded (and saturated), as bf16 and fp16 ones are.
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
    if fmt == "fp8-e4m3":
        return to_fp8_e4m3(x)
    if fmt == "int4-g128":
        if not (np.all(np.isfinite(x)) and np.all(x == np.rint(x)) and x.min(initial=0) >= INT4_MIN
                and x.max(initial=0) <= INT4_MAX):
            raise ValueError("int4-g128 operands (codes) must be integers in [-8, 7] (quantize them first)")
        return x.copy()
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
