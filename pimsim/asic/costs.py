"""How long the ASIC takes for each kind of vector work, and for the link transfers.

The ASIC has ``lanes`` vector lanes; one *pass* pushes ``lanes`` elements through one arithmetic
step (a multiply, an add, a compare, a multiply-add) per cycle. An operation over n elements costs
``passes x ceil(n / lanes)`` cycles plus the pipeline fill, where the passes per element come from
the algorithm the PIM-GPT ASIC uses for it:

- exp: range reduction (1) then a Taylor polynomial by Horner's rule (one multiply-add per term);
- GELU: its Taylor polynomial (one multiply-add per term) and the final x * (...) (2);
- 1/x: a seed (1) and Newton-Raphson steps y = y (2 - x y) (2 each);
- 1/sqrt(x): the fast inverse square root bit trick (1) and Newton steps y = y (1.5 - 0.5 x y^2) (4 each);
- tanh, sigmoid, SiLU through exp and a reciprocal; a row reduction is a pass over the row, then an
  adder tree of log2(lanes) levels per row (rows reduced side by side when they are short);
- softmax over rows: max, subtract, exp, sum, one reciprocal per row, multiply;
- LayerNorm over rows: sum, subtract mean, square, sum, one 1/sqrt per row, scale, shift;
- quantize (int8 absmax per row, BitNet's activations): max of |x|, one reciprocal per row for the
  scale, then scale and round-and-clip (2 passes).

Partial-sum reduction of a split GEMV is one add per partial sum beyond the first of each output.
"""

from __future__ import annotations

import math

from pimsim.config.models import AsicConfig


def _passes(asic: AsicConfig) -> dict[str, int]:
    exp = 1 + asic.exp_taylor_terms
    recip = 1 + 2 * asic.reciprocal_newton_iterations
    rsqrt = 1 + 4 * asic.rsqrt_newton_iterations
    return {"add": 1, "mul": 1, "relu": 1, "exp": exp, "reciprocal": recip, "div": recip + 1, "rsqrt": rsqrt,
            "sqrt": rsqrt + 1, "gelu": asic.gelu_taylor_terms + 2, "tanh": exp + recip + 2,
            "sigmoid": exp + recip + 1, "silu": exp + recip + 2}


ELEMENTWISE = ("add", "mul", "relu", "exp", "reciprocal", "div", "rsqrt", "sqrt", "gelu", "tanh", "sigmoid", "silu")
ROWWISE = ("reduce", "softmax", "layernorm", "quantize")
KINDS = ELEMENTWISE + ROWWISE


def vector_cycles(asic: AsicConfig, kind: str, elements: int, rows: int = 1) -> int:
    """ASIC cycles for one operation of ``kind`` over ``elements`` values in ``rows`` rows."""
    if kind not in KINDS:
        raise ValueError(f"no ASIC cost for {kind!r}; known: {', '.join(KINDS)}")
    if elements <= 0:
        return 0
    lanes = asic.lanes
    p = _passes(asic)
    sweep = -(-elements // lanes)  # cycles of one pass over every element
    fill = asic.pipeline_cycles
    if kind in ELEMENTWISE:
        return p[kind] * sweep + fill
    rows = max(1, rows)
    per_row = -(-rows // lanes)  # one scalar step for every row, rows side by side in the lanes
    tree = math.ceil(math.log2(lanes)) if lanes > 1 else 0
    reduction = sweep + tree * per_row  # sum or max of every row
    if kind == "reduce":
        return reduction + per_row + fill  # + the mean's scaling (free for sum/max, kept simple)
    if kind == "softmax":
        return 2 * reduction + (1 + p["exp"] + 1) * sweep + p["reciprocal"] * per_row + fill
    if kind == "quantize":
        return reduction + p["reciprocal"] * per_row + 2 * sweep + fill
    # layernorm: sum, subtract, square, sum, 1/sqrt per row, normalise, scale, shift
    return 2 * reduction + 4 * sweep + p["rsqrt"] * per_row + fill


def reduce_cycles(asic: AsicConfig, adds: int, bias: int = 0) -> int:
    """Adding the partial sums of a split GEMV (and its bias, or any one-step-per-output work such as
    scaling quantized outputs back): one add per lane per cycle."""
    work = adds + bias
    return -(-work // asic.lanes) + asic.pipeline_cycles if work > 0 else 0


def reduce_sram_bytes(adds: int, outputs: int) -> int:
    """Buffer traffic of a partial-sum reduction: every partial sum read and every output written,
    4 bytes (FP32) each. Partial sums = adds + outputs (an output of k partial sums takes k - 1 adds)."""
    return 4 * (adds + outputs) + 4 * outputs


def link_ps(asic: AsicConfig, nbytes: int) -> int:
    """Picoseconds to move ``nbytes`` over one ASIC<->channel link."""
    if nbytes <= 0:
        return 0
    link = asic.link
    beats = -(-nbytes * 8 // link.width_bits)
    return round(beats * 1e6 / link.freq_MHz + link.latency_ns * 1000)


def cycles_to_ps(asic: AsicConfig, cycles: int) -> int:
    return round(cycles * asic.period_ps)
