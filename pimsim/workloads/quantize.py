"""Weight and activation quantizers for ternary and binary transformers, with an integer reference.

Two published recipes are implemented from their descriptions:

- BitNet b1.58 (S. Ma et al., "The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits", 2024):
  one absmean scale per weight tensor, ``gamma = mean|W| + eps``, codes ``clip(round(W / gamma), -1, 1)``.
  Activations are int8 with one absmax scale per token, ``s = 127 / max|x|``.
- Z. Liu et al., "Binary and Ternary Natural Language Generation" (ACL 2023): one scale per output row;
  ternary ``alpha = 4/3 * mean|W_row|`` with codes ``clip(round(W / alpha), -1, 1)``, binary
  ``alpha = mean|W_row|`` with codes ``sign(W)`` (``sign(0) = +1``). Only these closed-form, statistics-based
  scales are modelled (no training-time refinements). The paper's 8-bit activations are modelled with the same
  per-token absmax int8 quantizer as BitNet, so the two recipes differ only in their weights.

Rounding is half-to-even (``np.rint``, as ``torch.round``). Scales are float32; codes are divided by the
float32 scale, so ``codes * scale`` is exactly what the stored numbers describe.

:func:`quantized_linear` computes in the order a PIM + ASIC system does: exact integer MACs of weight
codes and activation codes in the banks (:func:`int_gemv`), then the scales on the ASIC, in float64, with one
cast to float32 at the end. :func:`fake_quantize_model` runs the same numbers inside a torch model.
numpy is the only hard dependency here; torch and transformers are imported when first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

EPS = 1e-5
CODE_SETS = {"ternary": frozenset((-1, 0, 1)), "binary": frozenset((-1, 1))}


def _as_float64(a, ndims: tuple[int, ...], what: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor: bf16/fp16 have no numpy dtype, so widen first
        a = a.detach().to("cpu").double().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim not in ndims:
        raise ValueError(f"{what} must have {' or '.join(map(str, ndims))} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has non-finite values")
    return arr


@dataclass(frozen=True, eq=False)  # eq=False: element-wise array == would make equality ambiguous
class QuantizedWeight:
    codes: np.ndarray  # int8, (rows, cols)
    scale: np.ndarray  # float32, () per tensor or (rows,) per row
    fmt: str  # "ternary" | "binary"
    granularity: str  # "tensor" | "row"

    def __post_init__(self):
        # numpy reductions hand back scalars, not 0-d arrays; hold arrays so both granularities look alike
        object.__setattr__(self, "codes", np.asarray(self.codes))
        object.__setattr__(self, "scale", np.asarray(self.scale))
        if self.fmt not in CODE_SETS:
            raise ValueError(f"unknown weight format {self.fmt!r}; known: {sorted(CODE_SETS)}")
        if self.codes.dtype != np.int8 or self.codes.ndim != 2:
            raise ValueError("codes must be a 2-D int8 array")
        if self.scale.dtype != np.float32:
            raise ValueError("scale must be float32")
        want = {"tensor": (), "row": (self.codes.shape[0],)}.get(self.granularity)
        if want is None or self.scale.shape != want:
            raise ValueError(f"granularity {self.granularity!r} does not match scale shape {self.scale.shape}")
        if not set(np.unique(self.codes).tolist()) <= CODE_SETS[self.fmt]:
            raise ValueError(f"codes outside the {self.fmt} set {sorted(CODE_SETS[self.fmt])}")

    @property
    def row_scale(self) -> np.ndarray:
        """The scale as a column vector (rows, 1) or a scalar, ready to broadcast against the codes."""
        return self.scale[:, None] if self.granularity == "row" else self.scale

    def dequantize(self) -> np.ndarray:
        return self.codes.astype(np.float32) * self.row_scale


def quantize_activation_int8(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8: ``x`` is one token (1-D) or tokens x features (2-D); one float32 scale per token."""
    x = _as_float64(x, (1, 2), "activation")
    amax = np.abs(x).max(axis=-1)
    scale = (127.0 / np.maximum(amax, EPS)).astype(np.float32)
    # float32 x float32 products are exact in float64, so rint sees the true value of x * s
    codes = np.clip(np.rint(x * scale.astype(np.float64)[..., None]), -128, 127).astype(np.int8)
    return codes, scale


@dataclass(frozen=True)
class Quantizer:
    name: str
    weight_format: str  # "ternary" | "binary"
    granularity: str  # "tensor" | "row"
    mean_factor: float  # scale = mean_factor * mean|W| + eps_added
    eps_added: float = 0.0  # BitNet adds eps to the mean; Liu et al. only need the zero-row guard below

    def quantize_weight(self, w) -> QuantizedWeight:
        w = _as_float64(w, (2,), "weight")
        absw = np.abs(w)
        mean = absw.mean(axis=1) if self.granularity == "row" else np.asarray(absw.mean())
        # the floor keeps all-zero rows (or tensors) from dividing by zero; their codes come out 0 or +1
        scale = np.maximum(self.mean_factor * mean + self.eps_added, EPS).astype(np.float32)
        per_row = scale.astype(np.float64)[:, None] if self.granularity == "row" else scale.astype(np.float64)
        if self.weight_format == "binary":
            codes = np.where(w >= 0, 1, -1)
        else:
            codes = np.clip(np.rint(w / per_row), -1, 1)
        return QuantizedWeight(codes.astype(np.int8), scale, self.weight_format, self.granularity)

    def quantize_activation(self, x) -> tuple[np.ndarray, np.ndarray]:
        return quantize_activation_int8(x)


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q
    for q in (
        Quantizer("bitnet", "ternary", "tensor", 1.0, eps_added=EPS),
        Quantizer("liu-ternary", "ternary", "row", 4.0 / 3.0),
        Quantizer("liu-binary", "binary", "row", 1.0),
    )
}


def get_quantizer(name: str | Quantizer) -> Quantizer:
    if isinstance(name, Quantizer):
        return name
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(sorted(QUANTIZERS))}") from None


def int_gemv(codes_w, codes_x) -> np.ndarray:
    """Exact int64 dot products: W (rows, cols) with x (cols,) -> (rows,), or x (tokens, cols) -> (tokens, rows)."""
    w, x = np.asarray(codes_w), np.asarray(codes_x)
    if not (np.issubdtype(w.dtype, np.integer) and np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"int_gemv takes integer codes, got {w.dtype} and {x.dtype}")
    if w.ndim != 2 or x.ndim not in (1, 2) or x.shape[-1] != w.shape[1]:
        raise ValueError(f"shapes do not match: W {w.shape}, x {x.shape}")
    # widen before multiplying: int8 x int8 sums overflow int8/int16 after a handful of terms
    return x.astype(np.int64) @ w.astype(np.int64).T


def quantized_linear(qw: QuantizedWeight, x, quantizer: str | Quantizer = "bitnet") -> np.ndarray:
    """``y = (W_codes . x_codes) * w_scale / x_scale``: integer MACs, then scales in float64, then float32."""
    x_codes, x_scale = get_quantizer(quantizer).quantize_activation(x)
    acc = int_gemv(qw.codes, x_codes).astype(np.float64)  # exact: |acc| < 2**53 for any realistic width
    y = acc * qw.scale.astype(np.float64) / x_scale.astype(np.float64)[..., None]
    return y.astype(np.float32)


@cache
def _fake_quant_linear_class():
    import torch

    class FakeQuantLinear(torch.nn.Module):
        """A linear layer with ternary/binary weights (quantized once) and per-token int8 activations."""

        def __init__(self, qw: QuantizedWeight, bias, quantizer: str):
            super().__init__()
            self.quantizer = quantizer
            self.out_features, self.in_features = qw.codes.shape
            self.register_buffer("codes", torch.from_numpy(qw.codes.copy()))
            self.register_buffer("scale", torch.from_numpy(qw.scale.copy()))
            self.register_buffer("weight", torch.from_numpy(qw.dequantize()))  # (out, in), float32
            self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

        def forward(self, x):
            xf = x.to(torch.float32)
            # scale and rounding in float64 so the codes match quantize_activation_int8 bit for bit
            amax = xf.abs().amax(dim=-1, keepdim=True).double().clamp_min(EPS)
            s = (127.0 / amax).float()
            xq = torch.round(xf.double() * s.double()).clamp(-128, 127).float()
            y = (xq / s) @ self.weight.T
            if self.bias is not None:
                y = y + self.bias
            return y.to(x.dtype)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, quantizer={self.quantizer!r}"

    return FakeQuantLinear


def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is optional: without it there are no Conv1D layers to find
        return None
    return Conv1D


def fake_quantize_model(model, quantizer_name: str,
                        exclude: Callable[[str], bool] | Iterable[str] = ("lm_head",)):
    """Replace every ``nn.Linear`` (and GPT-2 ``Conv1D``) in place with a fake-quantized copy.

    ``exclude`` is a predicate on the module's dotted name, or substrings of names to leave alone; the default
    keeps the LM head in high precision, as BitNet does (embeddings are not linear layers, so they stay too).
    Returns ``(model, replaced_names)``; if ``model`` itself is a linear layer, the returned model is its copy.
    """
    import torch

    quantizer = get_quantizer(quantizer_name)
    if not callable(exclude):
        parts = tuple(exclude)
        exclude = lambda name: any(p in name for p in parts)  # noqa: E731
    conv1d, cls = _conv1d_class(), _fake_quant_linear_class()
    replaced = []
    for name, module in list(model.named_modules()):
        if exclude(name):
            continue
        if isinstance(module, torch.nn.Linear):
            weight = module.weight
        elif conv1d is not None and isinstance(module, conv1d):
            weight = module.weight.T  # Conv1D stores (in, out) and computes x @ W
        else:
            continue
        new = cls(quantizer.quantize_weight(weight), module.bias, quantizer.name).to(module.weight.device)
        if not name:
            return new, [name]
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, new)
        replaced.append(name)
    return model, replaced


# ---- 4-bit weights with group-wise scales (GPTQ / AWQ storage) ------------------------------------------------

INT4_GROUP = 128


@dataclass(frozen=True, eq=False)
class GroupQuantizedWeight:
    """int4 codes with one FP16 scale per group of ``group`` consecutive inputs of each output row:
    weight[m, n] = codes[m, n] x scale[m, n // group]. Codes are signed, [-8, 7]; GPTQ stores them as
    code + 8 in [0, 15] (:meth:`packed`), two to a byte, the even input in the low nibble."""

    codes: np.ndarray  # int8, (rows, cols), in [-8, 7]
    scale: np.ndarray  # float32 holding FP16 values, (rows, ceil(cols / group))
    group: int = INT4_GROUP

    def __post_init__(self):
        if self.codes.dtype != np.int8 or self.codes.ndim != 2:
            raise ValueError("codes must be a 2-D int8 array")
        if self.codes.size and (self.codes.min() < -8 or self.codes.max() > 7):
            raise ValueError("int4 codes must be in [-8, 7]")
        groups = -(-self.codes.shape[1] // self.group)
        if self.scale.dtype != np.float32 or self.scale.shape != (self.codes.shape[0], groups):
            raise ValueError(f"scale must be float32 of shape {(self.codes.shape[0], groups)}, got "
                             f"{self.scale.dtype} {self.scale.shape}")
        if not np.array_equal(self.scale.astype(np.float16).astype(np.float32), self.scale):
            raise ValueError("scales must be FP16 values")

    def scale_per_weight(self) -> np.ndarray:
        return np.repeat(self.scale, self.group, axis=1)[:, :self.codes.shape[1]]

    def dequantize(self) -> np.ndarray:
        """float32 weights; exact (a 4-bit code times an 11-bit scale needs 15 bits)."""
        return self.codes.astype(np.float32) * self.scale_per_weight()

    def packed(self) -> np.ndarray:
        """uint8 (rows, ceil(cols / 2)): code + 8 of input 2k in the low nibble, of 2k + 1 in the high one."""
        u = (self.codes.astype(np.int16) + 8).astype(np.uint8)
        if u.shape[1] % 2:
            u = np.concatenate([u, np.full((u.shape[0], 1), 8, np.uint8)], axis=1)  # a zero code pads
        return u[:, 0::2] | (u[:, 1::2] << 4)

    @staticmethod
    def unpack(packed: np.ndarray, cols: int) -> np.ndarray:
        """The int8 codes of :meth:`packed` bytes."""
        p = np.asarray(packed, np.uint8)
        u = np.empty((p.shape[0], 2 * p.shape[1]), np.int16)
        u[:, 0::2], u[:, 1::2] = p & 0xF, p >> 4
        return (u[:, :cols] - 8).astype(np.int8)

    def nbytes(self) -> int:
        """Bytes stored: packed codes plus 2 B per scale."""
        return self.packed().nbytes + 2 * self.scale.size


def quantize_int4_groupwise(w, group: int = INT4_GROUP) -> GroupQuantizedWeight:
    """Round-to-nearest int4 on GPTQ's symmetric grid (GPTQ's quantizer with ``sym=True``, without its
    Hessian-based error feedback): per group ``scale = 2 max|w| / 15``, rounded to FP16, codes
    ``clip(round(w / scale), -8, 7)`` (half to even), so ``codes x scale`` is what is stored. An all-zero
    group gets scale 1 (codes 0); a scale that would underflow FP16 is held at its smallest normal."""
    w = _as_float64(w, (2,), "weight")
    rows, cols = w.shape
    groups = -(-cols // group)
    padded = np.zeros((rows, groups * group))
    padded[:, :cols] = w
    amax = np.abs(padded.reshape(rows, groups, group)).max(axis=2)
    raw = np.where(amax > 0, 2.0 * amax / 15.0, 1.0)
    scale = np.maximum(raw, 2.0 ** -14).astype(np.float16).astype(np.float32)
    per = np.repeat(scale.astype(np.float64), group, axis=1)[:, :cols]
    codes = np.clip(np.rint(w / per), -8, 7).astype(np.int8)
    return GroupQuantizedWeight(codes, scale, group)


def fp8_weight(w) -> np.ndarray:
    """A weight rounded to FP8 E4M3 (no scale: the values as the banks hold them), float32."""
    from pimsim.pim.formats import to_fp8_e4m3

    return to_fp8_e4m3(_as_float64(w, (2,), "weight"))


def weight_rounding_model(model, fmt: str, exclude: Callable[[str], bool] | Iterable[str] = ("lm_head",)):
    """Replace, in place, the weight of every ``nn.Linear`` (and GPT-2 ``Conv1D``) not excluded by the
    values `fmt` stores (``int4-g128``: the dequantized group-quantized weight; ``fp8-e4m3``: the weight
    rounded to E4M3), keeping FP32 arithmetic: the reference a weight-only format is compared with.
    Returns ``(model, replaced_names)``."""
    import torch

    rounding = {"int4-g128": lambda w: quantize_int4_groupwise(w).dequantize(), "fp8-e4m3": fp8_weight}
    if fmt not in rounding:
        raise ValueError(f"no weight rounding for {fmt!r}; known: {', '.join(rounding)}")
    if not callable(exclude):
        parts = tuple(exclude)
        exclude = lambda name: any(p in name for p in parts)  # noqa: E731
    conv1d = _conv1d_class()
    replaced = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if exclude(name):
                continue
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.from_numpy(rounding[fmt](module.weight)))
            elif conv1d is not None and isinstance(module, conv1d):
                module.weight.copy_(torch.from_numpy(rounding[fmt](module.weight.T)).T)
            else:
                continue
            replaced.append(name)
    return model, replaced
