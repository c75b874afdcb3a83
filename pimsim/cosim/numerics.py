"""The numbers a PIM GEMV produces, computed for whole matrices at once.

The bank model (:mod:`pimsim.pim.banks`) executes the mapper's command streams element by element;
this module gives the same result, bit for bit, from the same rules (a test holds them together), fast
enough to run every GEMV of a model token after token:

- W and x are held in the operand format (BF16 or FP16); products of two operands are exact;
- the input dimension is cut as the placement cuts it: channel-group parts, then DRAM-row segments,
  then (``row_partition``) global-buffer blocks; one RDMAC per block (per segment for ``wave_major``)
  returns the unit's accumulators; ``hbm_pim_gemv`` keeps one GRF_B register per output row across the
  whole input (padded to 128-element tiles), even tiles first, then odd tiles, and reads it once;
- within a block, ``accumulate: tree`` adds each column access's lane products pairwise, rounding every
  sum to the accumulator format, and adds the result to one accumulator; ``accumulate: lanes`` adds
  each lane's product to that lane's accumulator (rounded each time);
- the ASIC adds an output's partial sums in FP32, one after another, in the order they were read
  (parts, segments, blocks, then lanes).

:class:`GroupQuantGemv` does the same for int4-g128 weights (see its rules), and :class:`PimGemv` takes
fp8-e4m3 weights with bf16 or fp16 activations (their products are exact in float32 too).

:class:`QuantizedGemv` does the same for integer weights (ternary, binary, int8 codes) and int8
activations: every RDMAC's partial sum is exact in its int32 accumulator (wrapping like the hardware if
it ever overflowed), the ASIC adds them exactly and applies the scales (:mod:`pimsim.workloads.quantize`).
"""

from __future__ import annotations

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.mapper.placement import Geometry, auto_split


def hbm_pim_order(geometry: Geometry, cols: int) -> np.ndarray:
    """The column accesses of x in the order Samsung's GEMV kernel (``hbm_pim_gemv``) accumulates them
    into a GRF_B register: the input padded to whole tiles of ``gb_chunks`` accesses, the even tiles
    (even bank) first, then the odd tiles (odd bank), each tile's accesses in order."""
    t = geometry.gb_chunks
    tiles = -(-cols // (t * geometry.elems_per_access))
    order = [i for parity in (0, 1) for i in range(parity, tiles, 2)]
    return (np.asarray(order, np.int64)[:, None] * t + np.arange(t)[None, :]).ravel()


def blocks_of(geometry: Geometry, cols: int, split: int, strategy: str = "row_partition") -> list[tuple[int, int]]:
    """Column-access ranges [a, b) of x, one per RDMAC, in the order the ASIC adds them:
    ``row_partition`` reads the accumulators after every global-buffer block, ``wave_major`` once per
    segment (the units keep accumulating while the next block of x is loaded), ``hbm_pim_gemv`` once
    for the whole (tile-padded) input."""
    e, per_row, gb = geometry.elems_per_access, geometry.row_elems // geometry.elems_per_access, geometry.gb_chunks
    accesses = -(-cols // e)
    if strategy == "hbm_pim_gemv":
        return [(0, len(hbm_pim_order(geometry, cols)))]
    part = -(-accesses // split)
    out = []
    for p0 in range(0, accesses, part):
        p1 = min(accesses, p0 + part)
        for s0 in range(p0, p1, per_row):
            s1 = min(p1, s0 + per_row)
            step = gb if strategy == "row_partition" else s1 - s0
            out += [(b0, min(s1, b0 + step)) for b0 in range(s0, s1, step)]
    return out


def _round(values: np.ndarray, acc: str) -> np.ndarray:
    """Sums rounded to the accumulator format: float32 sums already are; exact float64 sums of FP16
    values are rounded to FP16 and kept as float64."""
    if acc == "fp32":
        return values
    if acc == "fp16":
        return values.astype(np.float16).astype(np.float64)
    raise PimsimError(f"functional co-simulation supports fp32 and fp16 accumulators, not {acc}")


def _input_accesses(x: np.ndarray, cols: int, padded: int, per_access: int, fmt: str) -> np.ndarray:
    """The input vector as the units see it: rounded to `fmt`, zero-padded to `padded` and cut into
    column accesses of `per_access` lanes ([accesses, lanes])."""
    from pimsim.pim.formats import to_operands

    xq = np.zeros(padded, np.float32)
    xq[:cols] = to_operands(np.asarray(x, np.float32).ravel(), fmt)
    return xq.reshape(-1, per_access)


class PimGemv:
    """y = W x as the PIM memory computes it, for one weight matrix (stored once, in operand format)."""

    def __init__(self, hw: HardwareConfig, W: np.ndarray, split: int | None = None):
        pim = hw.pim
        if pim.weight_format not in ("bf16", "fp16", "fp8-e4m3"):
            raise PimsimError(f"functional co-simulation of floating-point weights covers bf16, fp16 and fp8-e4m3, "
                              f"not {pim.weight_format}")
        from pimsim.pim.formats import to_operands

        self.hw, self.g = hw, Geometry.of(hw)
        self.fmt, self.acc, self.mode = pim.weight_format, pim.accumulator_format, pim.accumulate
        self.input_format = pim.input_format  # the activations' format (as the weights' but for fp8 weights)
        rows, cols = W.shape
        e = self.g.elems_per_access
        self.cols = cols
        if hw.mapping.gemv == "hbm_pim_gemv":  # one read per output row, accesses in the kernel's order
            order = hbm_pim_order(self.g, cols)
            self.padded = len(order) * e
            self.blocks = [order]
        else:
            self.padded = -(-cols // e) * e
            split = auto_split(self.g, rows, cols) if split is None else split
            self.blocks = [np.arange(a, b) for a, b in blocks_of(self.g, cols, split, hw.mapping.gemv)]
        wq = np.zeros((rows, self.padded), np.float32)
        wq[:, :cols] = to_operands(W, self.fmt)
        self.W = wq.reshape(rows, self.padded // e, e)  # [rows, accesses, lanes]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        e = self.g.elems_per_access
        xq = _input_accesses(x, self.cols, self.padded, e, self.input_format)
        rows = self.W.shape[0]
        y = np.zeros(rows, np.float32)
        # FP32 accumulators: float32 adds are the exact sum rounded once, as the hardware does; FP16
        # ones are summed exactly in float64 and rounded (numpy's float16 adds could round twice)
        wide = np.float32 if self.acc == "fp32" else np.float64
        for idx in self.blocks:
            prod = (self.W[:, idx, :] * xq[idx]).astype(wide)  # exact products
            if self.mode == "tree":
                level = prod
                while level.shape[-1] > 1:
                    level = _round(level[..., 0::2] + level[..., 1::2], self.acc)
                terms = level[..., 0]  # [rows, accesses]
                acc = np.zeros(rows, wide)
                for k in range(terms.shape[1]):
                    acc = _round(acc + terms[:, k], self.acc)
                y = (y + acc.astype(np.float32)).astype(np.float32)
            else:
                acc = np.zeros((rows, e), wide)
                for k in range(prod.shape[1]):
                    acc = _round(acc + prod[:, k, :], self.acc)
                for lane in range(e):
                    y = (y + acc[:, lane].astype(np.float32)).astype(np.float32)
        return y


class QuantizedGemv:
    """y = W x for a quantized weight: integer codes in the banks, per-token int8 activations, scales on
    the ASIC. The result equals :func:`pimsim.workloads.quantize.quantized_linear` bit for bit unless an
    int32 accumulator wraps (it would need more than 2**31 / 127 / 127 = 133k full-scale products)."""

    def __init__(self, hw: HardwareConfig, W: np.ndarray, quantizer: str, split: int | None = None):
        from pimsim.workloads.quantize import get_quantizer

        self.g = Geometry.of(hw)
        if not self.g.integer or hw.pim.input_format != "int8":
            raise PimsimError(f"quantized co-simulation needs int8 activations and int32 accumulators; "
                              f"{hw.name} holds {hw.pim.weight_format} weights with {hw.pim.input_format} inputs and "
                              f"{hw.pim.accumulator_format} accumulators")
        self.quantizer = get_quantizer(quantizer)
        self.weight = self.quantizer.quantize_weight(W)
        rows, cols = W.shape
        split = auto_split(self.g, rows, cols) if split is None else split
        e = self.g.elems_per_access
        self.columns = [(a * e, min(cols, b * e)) for a, b in blocks_of(self.g, cols, split, hw.mapping.gemv)]
        self.codes = self.weight.codes.astype(np.int64)
        self.scale = self.weight.scale.astype(np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        codes, x_scale = self.quantizer.quantize_activation(np.asarray(x, np.float32).ravel())
        xc = codes.astype(np.int64)
        acc = np.zeros(self.codes.shape[0], np.int64)
        for lo, hi in self.columns:  # one RDMAC per block: an int32 accumulator each
            partial = self.codes[:, lo:hi] @ xc[lo:hi]
            acc += (partial + 2**31) % 2**32 - 2**31
        return (acc.astype(np.float64) * self.scale / np.float64(x_scale)).astype(np.float32)


class GroupQuantGemv:
    """y = W x for int4-g128 weights as the MAC units compute it (``accumulate: tree``, FP32 accumulators):

    - W is quantized group-wise (:func:`pimsim.workloads.quantize.quantize_int4_groupwise`): int4 codes,
      one FP16 scale per 128 inputs of a row; x is held in the datapath's activation format (BF16/FP16);
    - per column access, the adder tree sums its 64 code x activation products (exact: 4 x 11 bits),
      rounding every sum to FP32;
    - per group within a global-buffer block (one RDMAC's worth; a group split by a block or channel-group
      boundary is scaled once per piece), the group's access sums are added in FP32, multiplied by the
      group's FP16 scale (rounded to FP32) and added to the unit's FP32 accumulator;
    - the ASIC adds each RDMAC's partial sum in FP32, in the order read, as for :class:`PimGemv`.
    """

    def __init__(self, hw: HardwareConfig, W: np.ndarray, split: int | None = None):
        from pimsim.workloads.quantize import quantize_int4_groupwise

        pim = hw.pim
        if pim.weight_format != "int4-g128":
            raise PimsimError(f"GroupQuantGemv computes int4-g128 weights; {hw.name} holds {pim.weight_format}")
        if pim.accumulate != "tree" or pim.accumulator_format != "fp32":
            raise PimsimError(f"functional co-simulation of int4-g128 covers an adder tree into FP32 accumulators; "
                              f"{hw.name} has accumulate: {pim.accumulate}, {pim.accumulator_format}")
        self.g = g = Geometry.of(hw)
        self.input_format = pim.input_format
        self.weight = quantize_int4_groupwise(W)
        rows, cols = W.shape
        e = g.elems_per_access
        self.cols, self.padded = cols, -(-cols // e) * e
        split = auto_split(g, rows, cols) if split is None else split
        self.blocks = [np.arange(a, b) for a, b in blocks_of(g, cols, split, hw.mapping.gemv)]
        codes = np.zeros((rows, self.padded), np.float32)
        codes[:, :cols] = self.weight.codes
        self.codes = codes.reshape(rows, self.padded // e, e)  # [rows, accesses, lanes]
        self.group_of_access = np.arange(self.padded // e) * e // self.weight.group
        self.scale = self.weight.scale  # float32 holding FP16 values, [rows, groups]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xq = _input_accesses(x, self.cols, self.padded, self.g.elems_per_access, self.input_format)
        rows = self.codes.shape[0]
        y = np.zeros(rows, np.float32)
        for idx in self.blocks:
            level = self.codes[:, idx, :] * xq[idx]  # exact products, float32
            while level.shape[-1] > 1:  # the adder tree, every sum rounded to FP32
                level = level[..., 0::2] + level[..., 1::2]
            terms = level[..., 0]  # [rows, accesses of the block]
            acc = np.zeros(rows, np.float32)
            groups = self.group_of_access[idx]
            for grp in np.unique(groups):  # in order: accesses ascend within a block
                cols = np.flatnonzero(groups == grp)
                total = terms[:, cols[0]]
                for k in cols[1:]:
                    total = total + terms[:, k]
                acc = acc + total * self.scale[:, grp]
            y = y + acc
        return y
