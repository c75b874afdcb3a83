"""The op graph of one decode step: what the mapper places and the engine times.

Ops come in trace order (a valid order of execution). Each reads activation *values* and writes one;
values are plain integers, so the engine can follow data dependencies. Kinds:

- ``gemv``: y = W x (+ bias) with weight tensor ``tensor`` of ``rows`` outputs and ``cols`` inputs.
- ``embedding``: ``count`` rows of table ``tensor`` read out of memory.
- ``scores`` / ``context``: q.K^T and p.V of every head over the KV cache of layer ``layer``
  (``heads`` query heads sharing ``kv_heads`` cached heads of ``head_dim``); with ``cross`` over the
  layer's cross-attention K/V (an encoder-decoder's projections of the source, ``source`` tokens long).
- ``kv_append``: the new token's keys (``which`` = "k") or values ("v") written into the cache.
- ``asic``: vector work of ``asic_kind`` over ``elements`` values in ``rows`` independent rows; the
  counts depend on the context length c and the source length s as
  ``elements + elements_per_token * c + elements_per_source * s`` (softmax grows with them).
- ``join``: free (a concatenation or reshaping); it only passes its inputs on.

A mixture-of-experts layer has a ``router`` (top-``top_k`` of ``experts`` router scores, picked on the
ASIC) and ``expert_gemv`` ops: y = W_e x for each of the token's ``top_k`` chosen experts e of the
stacked weight ``tensor`` (``experts`` matrices of ``rows`` x ``cols``, stored as the tensors
``expert_tensor(tensor, e)``). Which experts a token picks is the run's routing (pimsim.workloads.routing).

A layer whose attention looks back over a sliding window (Mistral v0.1, every other layer of Gemma 2)
marks its ``scores``, ``context``, ``kv_append`` and context-growing ``asic`` ops with ``window``: they
cover ``min(context, window)`` cached tokens (:meth:`Op.attended`), and the layer's KV cache is a ring
of that many tokens.

An encoder-decoder model has a second graph, its *encoder pass* (``meta.phase == "encoder"``),
traced at one source length S: the encoder over S tokens, then each decoder layer's cross-attention K
and V projected from its output. There a ``gemv`` or ``embedding`` has ``count`` = S rows (S passes
of the weight's stream, S table rows), a ``matmul`` is a product of two activations (the encoder's
self-attention, ``elements`` multiply-adds done on the ASIC), and a ``kv_append`` with ``cross``
writes ``count`` tokens into the cross-attention K/V region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

PARTS = ("embedding", "qkv", "attn_scores", "softmax", "attn_context", "out_proj", "ffn", "lm_head", "asic",
         "quantize", "kv_write", "transfers", "cross_scores", "cross_context", "cross_kv", "router", "experts")
PART_TITLES = {"embedding": "embedding reads", "qkv": "QKV projection", "attn_scores": "attention scores",
               "softmax": "softmax", "attn_context": "attention context", "out_proj": "output projection",
               "ffn": "FFN", "lm_head": "LM head", "asic": "other ASIC ops (norms, activations, residuals)",
               "quantize": "activation quantization (ASIC)",
               "kv_write": "KV-cache writes", "transfers": "ASIC<->memory transfers",
               "cross_scores": "cross-attention scores", "cross_context": "cross-attention context",
               "cross_kv": "cross-attention K/V projection", "router": "MoE router (gate GEMV, top-k)",
               "experts": "MoE experts (active experts' GEMVs)"}
# Op fields added for encoder-decoder models: left out of the JSON at their defaults, so a decoder-only
# graph serializes as it did before they existed
# Versions of the libraries that traced a graph: recorded in its meta, left out of its identity
# (TracedWith.to_dict(with_libraries=False)).
LIBRARY_VERSION_KEYS = ("torch", "transformers")
_OPTIONAL = {"cross": False, "elements_per_source": 0, "rows_per_source": 0, "window": 0, "experts": 0, "top_k": 0}


def expert_tensor(stacked: str, expert: int) -> str:
    """The name of expert `expert`'s matrix of a stacked expert weight."""
    return f"{stacked}[{expert}]"


@dataclass
class Op:
    kind: str
    name: str  # module path and aten op, for people
    part: str
    layer: int | None
    inputs: list[int]
    output: int
    tensor: str | None = None
    rows: int = 0
    cols: int = 0
    bias: bool = False
    count: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    which: str = ""
    asic_kind: str = ""
    elements: int = 0
    elements_per_token: int = 0
    rows_per_token: int = 0
    cross: bool = False  # scores/context/kv_append over the cross-attention K/V (encoder-decoder models)
    elements_per_source: int = 0
    rows_per_source: int = 0
    window: int = 0  # the layer's sliding attention window in tokens (0: full attention)
    experts: int = 0  # router / expert_gemv: experts of the layer
    top_k: int = 0  # router / expert_gemv: experts each token uses

    def attended(self, context: int) -> int:
        """Cached tokens this op covers at a context length: all of them, or its window's worth."""
        return min(context, self.window) if self.window else context

    def elements_at(self, context: int, source: int = 0) -> int:
        return self.elements + self.elements_per_token * context + self.elements_per_source * source

    def rows_at(self, context: int, source: int = 0) -> int:
        return self.rows + self.rows_per_token * context + self.rows_per_source * source

    def to_dict(self) -> dict:
        # the fields as dataclasses.asdict gives them (only `inputs` holds anything but a scalar), without its
        # deep copy: ~10 ms per graph of a few hundred ops, paid on every run (its config hash)
        d = {name: getattr(self, name) for name in _OP_FIELDS}
        d["inputs"] = type(self.inputs)(self.inputs)
        for key, default in _OPTIONAL.items():
            if d[key] == default:
                del d[key]
        return d


_OP_FIELDS = tuple(f.name for f in fields(Op))


@dataclass(frozen=True)
class MoeShape:
    """The MoE layers of a traced graph and their router's choice size."""

    layers: tuple[int, ...]
    experts: int
    top_k: int

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "experts": self.experts, "top_k": self.top_k}


@dataclass(frozen=True)
class TracedWith:
    """What traced a graph: the library versions (provenance, left out of the graph's identity), the
    tracer's version and the cache (and source) lengths it traced at."""

    tracer: int
    torch: str | None = None  # None: left out where it was written (a record made to compare across installs)
    transformers: str | None = None
    cache_lengths: tuple[int, ...] | None = None  # decoder graphs
    source_lengths: tuple[int, ...] | None = None  # encoder-decoder decoder graphs

    def to_dict(self, with_libraries: bool = True) -> dict:
        d: dict[str, Any] = {}
        if with_libraries:
            d.update({k: v for k, v in (("torch", self.torch), ("transformers", self.transformers)) if v is not None})
        d["tracer"] = self.tracer
        if self.cache_lengths is not None:
            d["cache_lengths"] = list(self.cache_lengths)
        if self.source_lengths is not None:
            d["source_lengths"] = list(self.source_lengths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TracedWith:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown traced_with key(s): {', '.join(unknown)}")
        lengths = {k: tuple(d[k]) for k in ("cache_lengths", "source_lengths") if d.get(k) is not None}
        return cls(d["tracer"], d.get("torch"), d.get("transformers"), **lengths)


PHASES = ("decode", "encoder")


@dataclass
class GraphMeta:
    """The shape facts of a traced graph (a decode step's, or an encoder pass's: ``phase``).

    Fields left at None (or False) do not apply to the graph and are left out of its JSON; a decode
    graph always records ``max_positions`` and ``sliding_window`` (None: the config names none). The
    JSON keeps the order the tracer has always written (graph identities, and so config hashes, are
    taken over it)."""

    phase: str = "decode"
    layers: int | None = None  # decoder layers with self-attention (encoder pass: encoder layers)
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    d_model: int | None = None
    vocab: int | None = None  # the largest embedding table's rows
    context: int | None = None  # the model card's context (tokens)
    model_type: str | None = None
    traced_with: TracedWith | None = None
    moe: MoeShape | None = None
    encoder_decoder: bool = False
    cross_layers: int | None = None
    cross_kv_heads: int | None = None
    max_positions: int | None = None  # the model's position limit (its config's), None where it names none
    sliding_window: int | None = None  # the config's attention window in tokens, None for full attention
    windowed_layers: tuple[int, ...] | None = None  # the layers whose KV cache keeps only the window
    source_len: int | None = None  # encoder-decoder: the run's source tokens
    tensor_parallel: int | None = None  # a device's shard of a tensor-parallel split: the split's size
    pipeline_stage: int | None = None  # a pipeline stage's graph: its index

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"graph phase must be one of {', '.join(PHASES)}, not {self.phase!r}")

    # The JSON's key order per phase (the tracer's, from before the meta was typed)
    _DECODE_ORDER = ("layers", "heads", "kv_heads", "head_dim", "d_model", "vocab", "context", "model_type",
                     "traced_with", "moe", "encoder_decoder", "cross_layers", "cross_kv_heads", "max_positions",
                     "sliding_window", "windowed_layers", "source_len", "tensor_parallel", "pipeline_stage")
    _ENCODER_ORDER = ("phase", "source_len", "layers", "cross_layers", "model_type", "traced_with")
    _ALWAYS = ("max_positions", "sliding_window")  # written even when None, in decode graphs

    def to_dict(self, with_libraries: bool = True) -> dict:
        """The JSON form; ``with_libraries=False`` leaves the tracing libraries' versions out (identity)."""
        order = self._ENCODER_ORDER if self.phase == "encoder" else self._DECODE_ORDER
        out: dict[str, Any] = {}
        for key in order:
            value = getattr(self, key)
            if value is None and key not in self._ALWAYS or value is False:
                continue
            if isinstance(value, (MoeShape,)):
                value = value.to_dict()
            elif isinstance(value, TracedWith):
                value = value.to_dict(with_libraries)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: dict) -> GraphMeta:
        """From a graph's JSON (a cached or saved graph); an unknown key is an error, not dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown graph meta key(s): {', '.join(unknown)}")
        values = dict(d)
        if values.get("moe") is not None:
            m = values["moe"]
            values["moe"] = MoeShape(tuple(m["layers"]), m["experts"], m["top_k"])
        if values.get("traced_with") is not None:
            values["traced_with"] = TracedWith.from_dict(values["traced_with"])
        if values.get("windowed_layers") is not None:
            values["windowed_layers"] = tuple(values["windowed_layers"])
        return cls(**values)


@dataclass
class OpGraph:
    model: str
    ops: list[Op]
    tensors: dict[str, dict]  # name -> {"rows": outputs (or table entries), "cols": inputs (or width)}
    meta: GraphMeta = field(default_factory=GraphMeta)
    _windows: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.meta, dict):  # from JSON, or written out by hand
            self.meta = GraphMeta.from_dict(self.meta)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "meta": self.meta.to_dict(), "tensors": self.tensors,
                           "ops": [op.to_dict() for op in self.ops]})

    def identity_json(self) -> str:
        """What the graph *is*, for hashes: its ops, tensors and shape facts, without the versions of
        torch and transformers that traced it. Two installs that trace the same graph hash the same;
        a library that traces differently changes the ops and so the hash."""
        return json.dumps({"model": self.model, "meta": self.meta.to_dict(with_libraries=False),
                           "tensors": self.tensors, "ops": [op.to_dict() for op in self.ops]})

    @classmethod
    def from_json(cls, text: str) -> OpGraph:
        d = json.loads(text)
        return cls(d["model"], [Op(**op) for op in d["ops"]], d["tensors"], d["meta"])

    def attention_layers(self) -> list[int]:
        """The layers with (self-)attention over the KV cache."""
        return sorted({op.layer for op in self.ops if op.kind == "scores" and not op.cross})

    def layer_windows(self) -> dict[int, int]:
        """layer -> its sliding window, for the layers that have one."""
        if self._windows is None:  # asked once per token (the bandwidth bound): worked out once
            self._windows = {op.layer: op.window for op in self.ops
                             if op.kind == "scores" and not op.cross and op.window}
        return self._windows

    def weight_elements(self) -> int:
        """Every weight and embedding table stored (a tied table once)."""
        return sum(t["rows"] * t["cols"] for t in self.tensors.values())

    def gemv_elements(self) -> int:
        """Weights a decode step reads: every GEMV's matrix once, the token's active experts' matrices of
        a mixture-of-experts layer (embedding tables only by a row)."""
        return sum(op.rows * op.cols * (op.top_k if op.kind == "expert_gemv" else 1)
                   for op in self.ops if op.kind in ("gemv", "expert_gemv"))

    def kv_elements(self, context: int, source: int | None = None) -> int:
        """Cached K and V values a decode step reads at a context length; with cross-attention also
        the cross K/V of `source` tokens (default: the graph's ``source_len``, the card's)."""
        m = self.meta
        windows = self.layer_windows()
        if windows:
            tokens = sum(min(context, windows.get(layer, context)) for layer in self.attention_layers())
        else:
            tokens = m.layers * context
        kv = 2 * m.kv_heads * m.head_dim * tokens
        if m.cross_layers:
            source = (m.source_len or 0) if source is None else source
            kv += 2 * m.cross_layers * m.cross_kv_heads * m.head_dim * source
        return kv
