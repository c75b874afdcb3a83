"""Tracing one decode step of a Hugging Face decoder into an :class:`OpGraph`.

The model is built from its card's config on the ``meta`` device (no memory, no weights), a short
prompt fills a KV cache, and one more token runs under a ``TorchDispatchMode`` that sees every aten op.
Each tensor carries a tag saying what it is: a weight (by parameter name), a KV-cache tensor (layer,
K or V), an activation (a value id), or a constant (masks, rotary tables: computable ahead of time).
Views pass their input's tag on; everything else is classified by its aten name and its inputs' tags:

- a matrix product with a weight operand is a GEMV; with a K or V cache operand, attention scores or
  context; ``cat`` onto a cache tensor is a KV append; ``embedding`` reads table rows;
- ops on activations are ASIC vector work (``_softmax`` and ``native_layer_norm`` whole, RMSNorm as
  the pow/mean/rsqrt/mul it is made of); ops on constants only are free;
- adding a constant *mask* (built from comparisons) to scores is free: one decode query sees every
  cached token, or, in a layer whose KV cache transformers keeps as a sliding window (its cache layer
  has a ``sliding_window``), the last ``window`` of them: that layer's attention ops carry the window.

Mixture-of-experts layers are recognised by structure, not by family: ``topk`` over activations is a
*router* (its indices are the expert choice); indexing a stacked 3-D weight with that choice selects
expert matrices, and a batched product with them is an *expert GEMV* (one per chosen expert at run time).
The model is built with transformers' ``batched_mm`` experts implementation, which computes the chosen
experts without data-dependent control flow (its eager loop over the experts hit cannot run on ``meta``).

The step is traced at two cache lengths, and op sizes that grow with the context are stored per token.
Nothing here knows a model family: only aten ops and the cache API.

Encoder-decoder models (``config.is_encoder_decoder``: BART) are built as sequence-to-sequence LMs. The
encoder runs over a source of S tokens, the decoder's prompt fills its self-attention cache and the
cross-attention K/V (the source projected by each decoder layer), and one more decoder token is traced
as above; cross-attention K/V tensors are tagged like the self cache, with a ``cross`` flag, and the
decode step only reads them (q.K^T and p.V over S tokens). A third trace at a second source length
gives the sizes that grow with S per source token. The encoder pass itself (the encoder over S tokens
and the cross K/V projections, run once before decoding) is a second graph, :func:`traced_encoder`,
traced at the run's S: there a weight's matrix product over n rows is n GEMV passes, a product of two
activations (the encoder's self-attention) is a ``matmul`` for the ASIC.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from pimsim.errors import PimsimError, TraceError
from pimsim.workloads.architecture import attention_window
from pimsim.workloads.cards import ModelCard
from pimsim.workloads.opgraph import GraphMeta, MoeShape, Op, OpGraph, TracedWith, expert_tensor

TRACER_VERSION = 4  # bump when the graph a trace produces changes; part of the cache key
_PAST = (3, 7)  # cache lengths of the two traces
_SOURCE = (16, 24)  # source lengths of an encoder-decoder's traces (the third at _PAST[0], _SOURCE[1])

# ops that only re-describe or move their first tensor input: the output is the same value
_ALIASES = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "clone", "contiguous",
            "_to_copy", "slice", "select", "unsqueeze", "squeeze", "alias", "detach", "split", "split_with_sizes",
            "unbind", "chunk", "lift_fresh", "flatten", "unflatten", "_reshape_alias", "as_strided", "copy",
            "expand_as", "to", "type_as", "view_as", "narrow", "lift_fresh_copy"}
# ops whose outputs are masks (boolean or built from comparisons)
_MASK_MAKERS = {"le", "lt", "ge", "gt", "eq", "ne", "logical_and", "logical_or", "logical_not", "bitwise_and",
                "bitwise_or", "bitwise_not", "where", "masked_fill", "tril", "triu"}
_MASK_APPLY = {"add", "where", "masked_fill"}
_MATMUL = {"mm", "addmm", "bmm", "matmul", "baddbmm"}
# aten op -> ASIC kind; how each kind is costed is pimsim.asic.costs
_ASIC = {"add": "add", "sub": "add", "rsub": "add", "mul": "mul", "neg": "mul", "div": "div", "mean": "reduce",
         "sum": "reduce", "amax": "reduce", "max": "reduce", "exp": "exp", "tanh": "tanh", "sigmoid": "sigmoid",
         "silu": "silu", "gelu": "gelu", "relu": "relu", "rsqrt": "rsqrt", "sqrt": "sqrt",
         "reciprocal": "reciprocal", "_softmax": "softmax", "softmax": "softmax",
         "native_layer_norm": "layernorm", "pow": "pow", "maximum": "add", "minimum": "add", "clamp": "relu"}


@dataclass
class _Tag:
    kind: str  # "param", "kv", "act", "const", "route" (a router's expert choice), "experts" (weights it selects)
    name: str = ""  # parameter name
    value: int = -1  # activation value id
    layer: int = -1  # KV cache layer
    which: str = ""  # "k" or "v"
    mask: bool = False  # a constant that is a mask
    cross: bool = False  # cross-attention K/V of an encoder-decoder
    heads: int = 0  # cached heads (cross K/V)
    experts: int = 0  # route / experts: the layer's experts
    top_k: int = 0  # route / experts: experts chosen per token


def trace_card(card: ModelCard) -> OpGraph:
    """Trace the card's model (uncached; see :func:`traced_graph`)."""
    torch, transformers = _import_torch()
    model = _build(card, torch, transformers)
    seq2seq = is_encoder_decoder(model.config)
    _check_kind(card, seq2seq)
    points = [(past, _SOURCE[0] if seq2seq else None) for past in _PAST]
    if seq2seq:
        points.append((_PAST[0], _SOURCE[1]))
    runs = _running(card, lambda: [_trace_once(model, past, torch, source) for past, source in points])
    ops = _merge(runs, [p + 1 for p in _PAST], card, _SOURCE if seq2seq else None)
    _window_context_growth(ops)
    _assign_parts(ops)
    tensors = _tensors(ops)
    meta = _meta(card, ops, torch, transformers)
    meta.max_positions = max_positions(model.config)
    meta.sliding_window = attention_window(model.config)
    if meta.sliding_window is not None:
        windowed = sorted({op.layer for op in ops if op.kind == "scores" and op.window})
        if not windowed:  # the mask would hide the old tokens, which the traces at 3 and 7 never see
            raise PimsimError(f"model card {card.name}: its config names a sliding window of "
                              f"{meta.sliding_window} tokens, but no layer's KV cache keeps a window (transformers "
                              f"{transformers.__version__} builds them all full); pimsim cannot tell which layers "
                              f"attend over the window")
        meta.windowed_layers = tuple(windowed)
    return _checked(card, OpGraph(card.name, ops, tensors, meta))


def _running(card: ModelCard, run):
    try:
        return run()
    except (TraceError, PimsimError):
        raise
    except Exception as exc:  # a config transformers accepts but cannot run (zero layers, odd sizes)
        raise PimsimError(f"model card {card.name}: running the model failed: {type(exc).__name__}: {exc}") from None


def is_encoder_decoder(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def _check_kind(card: ModelCard, seq2seq: bool) -> None:
    source = card.defaults.source_len
    if seq2seq and source is None:
        raise PimsimError(f"model card {card.name}: an encoder-decoder model needs defaults.source_len (the source "
                          f"tokens the encoder runs over)")
    if not seq2seq and source is not None:
        raise PimsimError(f"model card {card.name}: defaults.source_len is for encoder-decoder models; "
                          f"{card.hf.model_type} is decoder-only")


def _checked(card: ModelCard, graph: OpGraph) -> OpGraph:
    positions = graph.meta.max_positions
    if positions is not None and card.context > positions:
        raise PimsimError(f"model card {card.name}: context {card.context} is longer than the model's "
                          f"{positions} positions (its config's max_position_embeddings / n_positions)")
    _check_kind(card, graph.meta.encoder_decoder)
    if graph.meta.encoder_decoder:
        graph.meta.source_len = card.defaults.source_len
        check_source_len(graph, card.defaults.source_len, f"model card {card.name}: defaults.source_len")
    return graph


def check_source_len(graph: OpGraph, source_len: int | None, what: str = "--source-len") -> None:
    """A source length fits the model: given for (and only for) an encoder-decoder, within its positions."""
    if not graph.meta.encoder_decoder:
        if source_len is not None:
            raise PimsimError(f"{what}: {graph.model} is decoder-only; a source length is for encoder-decoder models")
        return
    if source_len is None or source_len < 1:
        raise PimsimError(f"{what}: {graph.model} is an encoder-decoder model and needs a source length of at "
                          f"least 1, got {source_len}")
    positions = graph.meta.max_positions
    if positions is not None and source_len > positions:
        raise PimsimError(f"{what}: {source_len} source tokens are more than {graph.model}'s {positions} positions")


def _import_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise PimsimError(f"tracing a model needs torch and transformers ({exc}); install pimsim with "
                          f"`pip install .` from the repository") from None
    return torch, transformers


def _config(card: ModelCard, transformers):
    """The card's transformers config, refused here if pimsim cannot time its architecture."""
    known = getattr(getattr(transformers, "CONFIG_MAPPING", None), "keys", lambda: None)()
    if known is not None and card.hf.model_type not in known:  # not transformers' 12 KB list of every type
        import difflib

        close = difflib.get_close_matches(card.hf.model_type, list(known), n=4)
        raise PimsimError(f"model card {card.name}: hf.model_type {card.hf.model_type!r} is not a model type of "
                          f"transformers {transformers.__version__}"
                          + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""))
    try:
        # a deep copy: transformers rewrites nested fields (rope_scaling) in place, which would change
        # the card (and its shape key) under the caller's feet
        config = transformers.AutoConfig.for_model(card.hf.model_type, **copy.deepcopy(card.hf.config))
    except Exception as exc:  # whatever transformers raises for a bad config is the card's problem
        raise PimsimError(f"model card {card.name}: transformers cannot build a {card.hf.model_type!r} config "
                          f"from it: {type(exc).__name__}: {exc}") from None
    window = attention_window(config)
    if window is not None and window <= _PAST[-1]:
        # the traces keep up to _PAST[-1] tokens: a shorter window would cut them and hide the growth
        raise PimsimError(f"model card {card.name}: a sliding window of {window} tokens is shorter than the "
                          f"{_PAST[-1] + 1} cached tokens pimsim traces a decode step at; give a window of at least "
                          f"{_PAST[-1] + 1}")
    return config


def check_architecture(card: ModelCard) -> None:
    """Refuse, without tracing, a card whose architecture transformers cannot build or pimsim cannot time
    (a sliding window too short to trace)."""
    _, transformers = _import_torch()
    _config(card, transformers)


def _build(card: ModelCard, torch, transformers):
    config = _config(card, transformers)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        seq2seq = is_encoder_decoder(config)
        auto = transformers.AutoModelForSeq2SeqLM if seq2seq else transformers.AutoModelForCausalLM
        try:
            # batched_mm: the chosen experts' products without a data-dependent loop (a dense model ignores it)
            model = auto.from_config(config, attn_implementation="eager", **_experts_implementation(transformers))
        except Exception as exc:
            what = "sequence-to-sequence LM" if seq2seq else "causal LM"
            raise PimsimError(f"model card {card.name}: transformers cannot build a {card.hf.model_type!r} "
                              f"{what} from it: {type(exc).__name__}: {exc}") from None
    return model.eval()  # eval: no dropout ops in the trace


def _experts_implementation(transformers) -> dict:
    """``experts_implementation="batched_mm"`` where transformers has the experts interface (5.x)."""
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    except ImportError:
        return {}
    return {"experts_implementation": "batched_mm"} if "batched_mm" in ALL_EXPERTS_FUNCTIONS else {}


def max_positions(config) -> int | None:
    """How many positions the model's position embedding or rotary setup is built for."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _cache_keyword(model) -> str:
    """The forward's name for the KV cache: ``cache`` in newer transformers (5.24 deprecates
    ``past_key_values``), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = out.get("cache")
    return out.get("past_key_values") if cache is None else cache


def _cache_layers(cache, what: str = "KV cache") -> list:
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        raise TraceError(f"{type(cache).__name__}: pimsim reads the {what} through .layers[i].keys/.values "
                         f"(transformers 5); this cache has another layout")
    return layers


def _ids(torch, n: int):
    return torch.zeros((1, n), dtype=torch.long, device="meta")


def _trace_once(model, past: int, torch, source: int | None = None) -> list[Op]:
    """Ops of one decode step after `past` tokens (and, for an encoder-decoder, a source of `source`)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source is None:
            cache = _cache_of(model(input_ids=_ids(torch, past), use_cache=True))
            layers, cross = _cache_layers(cache), []
            step = {"input_ids": _ids(torch, 1)}
        else:
            encoded = model.get_encoder()(input_ids=_ids(torch, source))
            cache = _cache_of(model(encoder_outputs=encoded, decoder_input_ids=_ids(torch, past), use_cache=True))
            layers = _cache_layers(getattr(cache, "self_attention_cache", None))
            cross = _cache_layers(getattr(cache, "cross_attention_cache", None), "cross-attention cache")
            step = {"encoder_outputs": encoded, "decoder_input_ids": _ids(torch, 1)}
        tagger = _Tagger(model, layers, cross)
        with _recording(model, tagger, torch):
            model(**step, **{_cache_keyword(model): cache}, use_cache=True)
    _check_supported(tagger)
    return tagger.ops


class _recording:
    """Every aten op of the calls inside goes through ``tagger.op``; module hooks keep its path."""

    def __init__(self, model, tagger, torch):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                result = func(*args, **kwargs)
                tagger.op(func, args, kwargs, result)
                return result

        self.model, self.tagger, self.mode = model, tagger, Recorder()

    def __enter__(self):
        modules = list(self.model.modules())
        self.hooks = [m.register_forward_pre_hook(self.tagger.enter) for m in modules]
        self.hooks += [m.register_forward_hook(self.tagger.leave) for m in modules]
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            return self.mode.__exit__(*exc)
        finally:
            for h in self.hooks:
                h.remove()


def _check_supported(tagger) -> None:
    if tagger.unsupported:
        where = "; ".join(f"{op} (first in {path})" for op, path in sorted(tagger.unsupported.items()))
        raise TraceError(f"aten ops on activations that pimsim has no ASIC model for: {where}. The tracer maps "
                         "weight products, attention over the KV cache and the element-wise/normalisation ops "
                         "listed in the README; a model that needs others cannot be timed yet")


# Integer powers of activations the ASIC computes by repeated multiplication.
_MAX_POWER = 8


def _integer_power(args) -> int | None:
    """n for x ** n with a whole exponent 2 <= n <= _MAX_POWER (the tensor first, the exponent second)."""
    if len(args) < 2 or isinstance(args[1], bool) or not isinstance(args[1], (int, float)):
        return None
    n = args[1]
    return int(n) if float(n).is_integer() and 2 <= n <= _MAX_POWER else None


class _Tagger:
    def __init__(self, model, cache_layers, cross_layers=(), passes: bool = False):
        import torch

        self.torch = torch
        self.passes = passes  # the encoder pass: a weight's product over n rows is n GEMV passes
        self.tags: dict[int, _Tag] = {}
        self.keep = []  # tensors stay alive during the trace, so their ids stay unique
        for name, p in model.named_parameters():
            self._set(p, _Tag("param", name=name))
        # layer -> the sliding window transformers keeps its cache to (its cache layer says so)
        self.windows = {i: w for i, layer in enumerate(cache_layers)
                        if isinstance(w := getattr(layer, "sliding_window", None), int) and w > 0}
        for i, layer in enumerate(cache_layers):
            self._set(layer.keys, _Tag("kv", layer=i, which="k"))
            self._set(layer.values, _Tag("kv", layer=i, which="v"))
        for i, layer in enumerate(cross_layers):
            self._set(layer.keys, _Tag("kv", layer=i, which="k", cross=True, heads=layer.keys.shape[1]))
            self._set(layer.values, _Tag("kv", layer=i, which="v", cross=True, heads=layer.values.shape[1]))
        self.paths = {m: n for n, m in model.named_modules()}
        self.stack: list[str] = []
        self.ops: list[Op] = []
        self.next_value = 0
        self.unsupported: dict[str, str] = {}  # aten op -> the module that first ran it

    # module context, for names and layer numbers
    def enter(self, module, args):
        self.stack.append(self.paths.get(module, "?"))

    def leave(self, module, args, output):
        self.stack.pop()

    def _where(self) -> tuple[str, int | None]:
        path = self.stack[-1] if self.stack else ""
        layer = next((int(p) for p in path.split(".") if p.isdigit()), None)
        return path, layer

    def _set(self, t, tag: _Tag) -> None:
        self.tags[id(t)] = tag
        self.keep.append(t)

    def _tag(self, t) -> _Tag:
        return self.tags.get(id(t)) or _Tag("const")

    def _new_value(self) -> int:
        self.next_value += 1
        return self.next_value

    def _emit(self, kind: str, aten: str, outputs, inputs: list[_Tag], layer: int | None = None, **fields) -> None:
        path, module_layer = self._where()
        layer = module_layer if layer is None else layer
        value = self._new_value()
        self.ops.append(Op(kind=kind, name=f"{path}:{aten}" if path else aten, part="", layer=layer,
                           inputs=sorted({t.value for t in inputs if t.kind == "act"}), output=value, **fields))
        for o in outputs:
            self._set(o, _Tag("act", value=value))

    def op(self, func, args, kwargs, result) -> None:
        torch = self.torch
        flat_in = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        outs = [o for o in torch.utils._pytree.tree_leaves(result) if isinstance(o, torch.Tensor)]
        if not outs:
            return
        aten = func.overloadpacket.__name__
        tags = [self._tag(t) for t in flat_in]
        acts = [t for t in tags if t.kind == "act"]
        if aten in _ALIASES and flat_in:
            for o in outs:
                self._set(o, tags[0])
            return
        if aten == "embedding":
            weight, indices = flat_in[0], flat_in[1]
            self._emit("embedding", aten, outs, [], tensor=tags[0].name, rows=weight.shape[0], cols=weight.shape[1],
                       count=indices.numel())
            return
        if aten == "topk" and acts:
            self._router(aten, flat_in[0], outs)
            return
        routes = [t for t in tags if t.kind == "route"]
        if aten == "index" and routes and tags[0].kind == "param" and flat_in[0].dim() == 3:
            route = routes[0]
            if flat_in[0].shape[0] != route.experts:
                raise TraceError(f"{self._where()[0]}: {tags[0].name} stacks {flat_in[0].shape[0]} matrices, the "
                                 f"router before it chooses among {route.experts} experts")
            self._set(outs[0], _Tag("experts", name=tags[0].name, value=route.value, experts=route.experts,
                                    top_k=route.top_k))
            return
        if (routes or any(t.kind == "experts" for t in tags)) and aten not in _MATMUL:
            path, layer = self._where()
            raise TraceError(f"{aten} in {path or 'the top level'} (layer {layer}): uses the expert choice of a "
                             f"router in a way pimsim cannot map; it recognises experts' weights indexed by the "
                             f"top-k choice and multiplied by an activation (transformers' batched_mm experts)")
        kv = [t for t in tags if t.kind == "kv"]
        if aten == "cat" and kv:
            new = [t for t in tags if t.kind == "act"]
            k = kv[0]
            out = outs[0]
            if k.cross:  # cross-attention K/V are the source's, fixed once the encoder has run
                raise TraceError(f"{self._where()[0]}: the decode step appends to the cross-attention K/V; pimsim "
                                 f"expects them computed once from the encoder's output")
            self._emit("kv_append", aten, [], new, layer=k.layer, which=k.which, kv_heads=out.shape[1],
                       head_dim=out.shape[-1], window=self.windows.get(k.layer, 0))
            self._set(out, _Tag("kv", layer=k.layer, which=k.which))
            return
        if aten in _MATMUL:
            self._matmul(aten, flat_in, tags, outs)
            return
        if not acts:  # computable ahead of time: masks, rotary tables, positions
            for o in outs:
                self._set(o, _Tag("const", mask=aten in _MASK_MAKERS or o.dtype == torch.bool
                                  or any(t.mask for t in tags)))
            return
        if aten in _MASK_APPLY and any(t.kind == "const" and t.mask for t in tags):
            for o in outs:  # a decode query's causal mask hides nothing
                self._set(o, acts[0])
            return
        if aten in ("cat", "stack"):
            self._emit("join", aten, outs, acts)
            return
        kind = _ASIC.get(aten) or (_ASIC.get(aten[:-1]) if aten.endswith("_") else None)  # in place: x /= s
        power = _integer_power(args) if kind == "pow" else None
        if power is not None:  # x**n as n - 1 multiplies (GPT-J's GELU cubes, RMSNorm squares)
            elements = outs[0].numel()
            for _ in range(power - 2):
                self._emit("asic", aten, [], acts, asic_kind="mul", elements=elements, rows=1)
                acts = [_Tag("act", value=self.next_value)]  # the multiply just emitted
            kind = "mul"
        if kind is None or kind == "pow":
            path, _ = self._where()
            self.unsupported.setdefault(aten, path or "the model's top level")
            return
        x = flat_in[0]
        elements, rows = x.numel(), outs[0].numel()
        if kind == "softmax":
            rows = x.numel() // x.shape[args[1]]
        elif kind == "layernorm":
            width = 1
            for s in args[1]:
                width *= s
            rows = x.numel() // width
        elif kind != "reduce":
            elements, rows = outs[0].numel(), 1
        if kind == "div" and not (len(flat_in) > 1 and flat_in[1].numel() > 1):
            kind = "mul"  # division by a scalar: multiply by its reciprocal, computed once
        self._emit("asic", aten, outs, acts, asic_kind=kind, elements=elements, rows=rows)

    def _router(self, aten, scores, outs) -> None:
        """top-k over router scores: the values weight the experts' outputs, the indices choose them."""
        values, indices = outs[0], outs[1]
        experts, top_k = scores.shape[-1], values.shape[-1]
        if values.numel() != top_k:
            raise TraceError(f"{aten} in {self._where()[0]}: top-{top_k} over {tuple(scores.shape)}; pimsim traces "
                             f"decoding, one token's router at a time")
        self._emit("router", aten, [values], [self._tag(scores)], experts=experts, top_k=top_k,
                   elements=experts * top_k, rows=top_k)
        value = self.next_value
        self._set(indices, _Tag("route", value=value, experts=experts, top_k=top_k))

    def _expert_gemv(self, aten, operands, op_tags, out) -> None:
        """A batched product of the chosen experts' matrices with the token's activation (repeated top-k
        times): rows and columns from the selected weights' shape and the product's."""
        which = next(i for i, t in enumerate(op_tags) if t.kind == "experts")
        sel, weights = op_tags[which], operands[which]
        acts = [t for t in op_tags if t.kind == "act"]
        if len(operands) != 2 or weights.dim() != 3 or weights.shape[0] != sel.top_k or not acts:
            raise TraceError(f"{aten} of {[tuple(t.shape) for t in operands]} in {self._where()[0]}: a product with "
                             f"selected experts' weights that is not one token's top-{sel.top_k} batch")
        rows = out.numel() // sel.top_k
        cols = weights[0].numel() // rows
        route = _Tag("act", value=sel.value)  # it waits for the router's choice
        self._emit("expert_gemv", aten, [out], acts + [route], tensor=sel.name, rows=rows, cols=cols,
                   experts=sel.experts, top_k=sel.top_k)

    def _matmul(self, aten, flat_in, tags, outs) -> None:
        operands = flat_in[1:] if aten in ("addmm", "baddbmm") else flat_in
        op_tags = tags[1:] if aten in ("addmm", "baddbmm") else tags
        out = outs[0]
        if any(t.kind == "experts" for t in op_tags):
            self._expert_gemv(aten, operands, op_tags, out)
            return
        params = [t for t in op_tags if t.kind == "param"]
        kv = [t for t in op_tags if t.kind == "kv"]
        acts = [t for t in op_tags if t.kind == "act"]
        if params and len(operands) == 2 and operands[1].dim() == 2:
            x = operands[0]
            bias = aten == "addmm"
            if self.passes:  # n rows: n passes of the weight's stream
                self._emit("gemv", aten, outs, acts, tensor=params[0].name, rows=out.shape[-1], cols=x.shape[-1],
                           bias=bias, count=x.numel() // x.shape[-1])
                return
            if x.numel() != x.shape[-1]:
                raise TraceError(f"{aten} on {tuple(x.shape)} in {self._where()[0] or 'the top level'}: pimsim traces "
                                 f"decoding, one token at a time")
            self._emit("gemv", aten, outs, acts, tensor=params[0].name, rows=out.shape[-1], cols=x.shape[-1],
                       bias=bias)
            return
        if kv and acts:
            k = kv[0]
            heads = out.shape[0] if out.dim() == 3 else out.shape[-3]
            if k.which == "k":
                head_dim = operands[0].shape[-1]
                kind = "scores"
            else:
                head_dim = out.shape[-1]
                kind = "context"
            cross = {"cross": True, "kv_heads": k.heads} if k.cross else {"window": self.windows.get(k.layer, 0)}
            self._emit(kind, aten, outs, acts, heads=heads, head_dim=head_dim, which=k.which, layer=k.layer,
                       **cross)
            return
        if self.passes and len(acts) == 2 and len(operands) == 2:  # the encoder's attention, on the ASIC
            a, b = operands
            batch = out.numel() // (out.shape[-2] * out.shape[-1])
            self._emit("matmul", aten, outs, acts, heads=batch, rows=a.shape[-2], head_dim=a.shape[-1],
                       cols=b.shape[-1], elements=batch * a.shape[-2] * a.shape[-1] * b.shape[-1])
            return
        path, layer = self._where()
        raise TraceError(f"{aten} of {[tuple(t.shape) for t in operands]} in {path or 'the top level'} (layer "
                         f"{layer}): a matrix product of two activations is not something pimsim maps yet")


def _merge(runs: list[list[Op]], contexts: list[int], card: ModelCard,
           sources: tuple[int, int] | None = None) -> list[Op]:
    """One op list from traces at two context lengths (the first two runs): sizes that differ grow
    linearly with the context. With `sources`, a third run at the first context and the second source
    length gives the growth with the source length."""
    a = runs[0]
    for b in runs[1:]:
        if len(a) != len(b) or any((x.kind, x.name, x.asic_kind) != (y.kind, y.name, y.asic_kind)
                                   for x, y in zip(a, b)):
            raise TraceError(f"{card.name}: the decode step's ops change with the context or source length; pimsim "
                             f"expects one graph for every position")
    ca, cb = contexts
    sa, sb = sources or (0, 0)
    for i, x in enumerate(a):
        if x.kind != "asic":
            continue
        y = runs[1][i]
        for attr, per, per_source in (("elements", "elements_per_token", "elements_per_source"),
                                      ("rows", "rows_per_token", "rows_per_source")):
            va, vb = getattr(x, attr), getattr(y, attr)
            slope, rest = divmod(vb - va, cb - ca)
            source_slope = 0
            if sources:
                vs = getattr(runs[2][i], attr)
                source_slope, rest_s = divmod(vs - va, sb - sa)
                rest = rest or rest_s
            base = va - slope * ca - source_slope * sa
            if rest or base < 0:
                at_source = f" (and {getattr(runs[2][i], attr)} at source length {sb})" if sources else ""
                raise TraceError(f"{x.name}: {attr} {va} at context {ca} and {vb} at {cb}{at_source} is not linear in "
                                 f"them")
            setattr(x, attr, base)
            setattr(x, per, slope)
            setattr(x, per_source, source_slope)
    return a


def _window_context_growth(ops: list[Op]) -> None:
    """ASIC work that grows with the context in a windowed layer (its softmax, score scaling and soft-capping)
    grows with the window's tokens only: it gets the layer's window, like the layer's q.K^T."""
    windows = {op.layer: op.window for op in ops if op.kind == "scores" and op.window}
    for op in ops:
        if op.kind == "asic" and op.layer in windows and (op.elements_per_token or op.rows_per_token):
            op.window = windows[op.layer]


def _assign_parts(ops: list[Op]) -> None:
    """Which part of the model each op belongs to, from the graph alone (no per-family names)."""
    # (layer, cross) -> kind -> op indices: a decoder layer of an encoder-decoder has two attentions
    by_layer: dict[tuple[int, bool], dict[str, list[int]]] = {}
    for i, op in enumerate(ops):
        if op.kind in ("scores", "context"):
            by_layer.setdefault((op.layer, op.cross), {}).setdefault(op.kind, []).append(i)
    attention = _attention_windows(ops, by_layer, "scores", "context")
    vocab = max((op.rows for op in ops if op.kind == "embedding"), default=-1)
    routers = {op.name.split(":")[0] for op in ops if op.kind == "router"}
    for i, op in enumerate(ops):
        if op.kind == "gemv":
            op.part = _gemv_part(op, i, attention)
            if op.part == "ffn" and op.rows == vocab and op.layer is None:
                op.part = "lm_head"
            if op.name.split(":")[0] in routers:  # the gate's product, in the module that picks the experts
                op.part = "router"
        elif op.kind == "asic":
            op.part = "softmax" if op.asic_kind == "softmax" else "asic"
        elif op.kind in ("scores", "context") and op.cross:
            op.part = "cross_scores" if op.kind == "scores" else "cross_context"
        else:
            op.part = {"scores": "attn_scores", "context": "attn_context", "kv_append": "kv_write",
                       "embedding": "embedding", "join": "asic", "router": "router",
                       "expert_gemv": "experts"}[op.kind]
    appends = sorted((op.layer, op.which) for op in ops if op.kind == "kv_append")
    self_layers = sorted(layer for layer, cross in by_layer if not cross)
    if appends != [(layer, w) for layer in self_layers for w in "kv"]:
        raise TraceError(f"KV appends {appends} do not match the attention layers {self_layers}: expected one "
                         f"K and one V append each")


def _attention_windows(ops: list[Op], by_layer: dict, first_kind: str, last_kind: str) -> dict:
    """(layer, cross) -> (module path of the attention, index of its first q.K^T, of its last p.V)."""
    attention = {}
    for key, found in by_layer.items():
        if first_kind not in found or last_kind not in found:
            raise TraceError(f"layer {key[0]}: attention without both q.K^T and p.V")
        first, last = found[first_kind][0], found[last_kind][-1]
        prefix = os.path.commonprefix([ops[first].name.split(":")[0], ops[last].name.split(":")[0]]).rstrip(".")
        attention[key] = (prefix, first, last)
    return attention


def _gemv_part(op: Op, index: int, attention: dict) -> str:
    """A weight product in a layer is the projection into an attention of that layer whose module it
    sits in, when before that attention's q.K^T; its output projection when after its p.V; else FFN."""
    path = op.name.split(":")[0]
    for (layer, _), (prefix, first, last) in attention.items():
        if layer == op.layer and path.startswith(prefix):
            if index < first:
                return "qkv"
            if index > last:
                return "out_proj"
    return "ffn"


def _tensors(ops: list[Op]) -> dict[str, dict]:
    tensors: dict[str, dict] = {}
    for op in ops:
        names = [op.tensor] if op.kind in ("gemv", "embedding") else []
        if op.kind == "expert_gemv":  # every expert's matrix is stored; a token reads top_k of them
            names = [expert_tensor(op.tensor, e) for e in range(op.experts)]
        for name in names:
            shape = {"rows": op.rows, "cols": op.cols}
            if tensors.setdefault(name, shape) != shape:
                raise TraceError(f"weight {name} used with shapes {tensors[name]} and {shape}")
    return tensors


def _meta(card: ModelCard, ops: list[Op], torch, transformers) -> GraphMeta:
    scores = [op for op in ops if op.kind == "scores" and not op.cross]
    cross = [op for op in ops if op.kind == "scores" and op.cross]
    appends = [op for op in ops if op.kind == "kv_append"]
    embed = [op for op in ops if op.kind == "embedding"]
    experts = [op for op in ops if op.kind == "expert_gemv"]
    meta = GraphMeta(
        layers=len({op.layer for op in scores}), heads=scores[0].heads, kv_heads=appends[0].kv_heads,
        head_dim=scores[0].head_dim, d_model=embed[0].cols, vocab=max(op.rows for op in embed),
        context=card.context, model_type=card.hf.model_type,
        traced_with=TracedWith(TRACER_VERSION, torch.__version__, transformers.__version__, tuple(_PAST),
                               tuple(_SOURCE) if cross else None))
    if experts:
        meta.moe = MoeShape(tuple(sorted({op.layer for op in experts})), experts[0].experts, experts[0].top_k)
        if any((op.experts, op.top_k) != (experts[0].experts, experts[0].top_k) for op in experts):
            raise TraceError("mixture-of-experts layers with different expert counts or top-k: pimsim routes every "
                             "layer alike")
    if cross:
        meta.encoder_decoder, meta.cross_layers = True, len({op.layer for op in cross})
        meta.cross_kv_heads = cross[0].kv_heads
    return meta


# ---- the encoder pass -----------------------------------------------------------------------------
def trace_encoder(card: ModelCard, source_len: int) -> OpGraph:
    """The encoder pass of an encoder-decoder card over `source_len` source tokens (uncached; see
    :func:`traced_encoder`): the encoder's ops, then each decoder layer's cross-attention K and V
    projections of its output and their writes into the cross K/V region."""
    torch, transformers = _import_torch()
    model = _build(card, torch, transformers)
    if not is_encoder_decoder(model.config):
        raise PimsimError(f"{card.name}: a decoder-only model has no encoder")
    positions = max_positions(model.config)
    if source_len < 1 or (positions is not None and source_len > positions):
        raise PimsimError(f"{card.name}: a source of {source_len} tokens; the encoder takes 1 to {positions}")
    ops = _running(card, lambda: _trace_encoder(model, source_len, torch))
    _assign_encoder_parts(ops)
    meta = GraphMeta(phase="encoder", source_len=source_len,
                     layers=len({op.layer for op in ops if op.kind == "matmul"}),
                     cross_layers=len({op.layer for op in ops if op.kind == "kv_append"}),
                     model_type=card.hf.model_type,
                     traced_with=TracedWith(TRACER_VERSION, torch.__version__, transformers.__version__))
    return OpGraph(card.name, ops, _tensors(ops), meta)


def _trace_encoder(model, source: int, torch) -> list[Op]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tagger = _Tagger(model, [], passes=True)
        with _recording(model, tagger, torch):
            encoded = model.get_encoder()(input_ids=_ids(torch, source))
        encoder_ops = list(tagger.ops)
        # The decoder's first step projects the encoder's output into every layer's cross-attention K/V
        # (its other ops, the first token's, are the decode step's and are left out here)
        with _recording(model, tagger, torch):
            out = model(encoder_outputs=encoded, decoder_input_ids=_ids(torch, 1), use_cache=True)
        cross = _cache_layers(getattr(_cache_of(out), "cross_attention_cache", None), "cross-attention cache")
    _check_supported(tagger)
    return encoder_ops + _cross_fill(tagger, cross, source)


def _cross_fill(tagger: _Tagger, cross_layers, source: int) -> list[Op]:
    """Per decoder layer, the GEMV passes that made its cross K and V (found by following the cached
    tensors back to the weight products they came from) and the writes of S tokens into the region."""
    producer = {op.output: op for op in tagger.ops}
    ops: list[Op] = []
    for layer, cache in enumerate(cross_layers):
        for which, t in (("k", cache.keys), ("v", cache.values)):
            op = producer.get(tagger._tag(t).value)
            while op is not None and op.kind == "join" and len(op.inputs) == 1:
                op = producer.get(op.inputs[0])
            if op is None or op.kind != "gemv" or op.count != source:
                raise TraceError(f"cross-attention {which.upper()} of decoder layer {layer}: not a weight's product "
                                 f"over the {source} source tokens; pimsim cannot tell how it was computed")
            gemv = dataclasses.replace(op, layer=layer, part="cross_kv", inputs=list(op.inputs))
            ops.append(gemv)
            ops.append(Op(kind="kv_append", name=f"{op.name.split(':')[0]}:cross_{which}", part="kv_write",
                          layer=layer, inputs=[gemv.output], output=tagger._new_value(), which=which,
                          kv_heads=t.shape[1], head_dim=t.shape[-1], count=source, cross=True))
    return ops


def _assign_encoder_parts(ops: list[Op]) -> None:
    """Parts of the encoder pass: a layer's first product of activations is q.K^T, its last p.V; weight
    products by where they sit against them (as in a decode step); the cross K/V ops are set already."""
    by_layer: dict[tuple[int, bool], dict[str, list[int]]] = {}
    for i, op in enumerate(ops):
        if op.kind == "matmul":
            by_layer.setdefault((op.layer, False), {}).setdefault("matmul", []).append(i)
    for found in by_layer.values():
        ops[found["matmul"][0]].part = "attn_scores"
        ops[found["matmul"][-1]].part = "attn_context"
    attention = _attention_windows(ops, by_layer, "matmul", "matmul")
    for i, op in enumerate(ops):
        if op.part:
            continue
        if op.kind == "gemv":
            op.part = _gemv_part(op, i, attention)
        elif op.kind == "asic":
            op.part = "softmax" if op.asic_kind == "softmax" else "asic"
        else:
            op.part = {"embedding": "embedding", "join": "asic", "matmul": "attn_scores"}[op.kind]


# ---- cached graphs ----------------------------------------------------------------------------------
def traced_graph(card: ModelCard, use_cache: bool = True) -> OpGraph:
    """The card's graph, from the on-disk cache when the same shapes were traced by the same versions."""
    path = cache_dir() / f"{card.hf.model_type}-{card.shape_key()}-t{TRACER_VERSION}-{_versions()}.json"

    def adopt(graph: OpGraph) -> OpGraph:
        graph.model = card.name
        graph.meta.context = card.context  # not part of the shape key: the card's own
        return _checked(card, graph)

    return _windows_within(_cached(path, lambda: trace_card(card), adopt, use_cache, _current), card.context)


def _windows_within(graph: OpGraph, context: int) -> OpGraph:
    """A window as long as the card's context never hides a token (no run is longer): left out, so such
    a card's graph, and its runs' config hash, are those of full attention (phi-3-mini's 2047-token window
    over its 2047-token card, gemma-2-2b's at a context of 4096)."""
    if not any(op.window >= context for op in graph.ops):
        return graph
    for op in graph.ops:
        if op.window >= context:
            op.window = 0
    graph._windows = None
    windowed = sorted({op.layer for op in graph.ops if op.kind == "scores" and op.window})
    graph.meta.windowed_layers = tuple(windowed) if windowed else None
    return graph


def _current(graph: OpGraph) -> bool:
    """A cached graph of a windowed model written before the tracer recorded its windowed layers is
    traced again (it would time full attention)."""
    return graph.meta.sliding_window is None or graph.meta.windowed_layers is not None


def traced_encoder(card: ModelCard, source_len: int, use_cache: bool = True) -> OpGraph:
    """The encoder pass over `source_len` tokens, cached like :func:`traced_graph` (per source length:
    its attention grows with the square of it)."""
    path = (cache_dir() / f"{card.hf.model_type}-{card.shape_key()}-encoder{source_len}-t{TRACER_VERSION}-"
                          f"{_versions()}.json")

    def adopt(graph: OpGraph) -> OpGraph:
        graph.model = card.name
        return graph

    return _cached(path, lambda: trace_encoder(card, source_len), adopt, use_cache)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError

    try:
        return f"{_installed_version('torch')}-{_installed_version('transformers')}"
    except PackageNotFoundError:
        return "missing"


def _installed_version(name: str) -> str:
    """``importlib.metadata.version(name)`` without parsing the whole METADATA file as e-mail (about 10 ms
    for transformers' long description, on every run): the Version header is read from the header block,
    and the full parse is the fallback where there is none."""
    from importlib.metadata import distribution

    dist = distribution(name)
    for line in (dist.read_text("METADATA") or "").splitlines():
        if not line:  # the end of the headers
            break
        if line.startswith("Version:"):
            return line[len("Version:"):].lstrip(" \t")  # as the e-mail parser reads a header's value
    return dist.version


CACHE_FORMAT = "pimsim-graph-cache/1"


def cache_enabled() -> bool:
    """``pimsim run --no-cache`` (or PIMSIM_NO_CACHE=1): trace afresh and leave the cache alone."""
    return os.environ.get("PIMSIM_NO_CACHE", "") in ("", "0")


def _cached(path: Path, trace, adopt, use_cache: bool, current=lambda graph: True) -> OpGraph:
    """A cached graph is used only when its file names the same key and its graph text has the checksum
    written beside it: a file edited by hand, cut short or copied under another name is traced again."""
    use_cache = use_cache and cache_enabled()
    if use_cache and path.is_file():
        graph = _read_cached(path)
        if graph is not None and current(graph):
            return adopt(graph)
    graph = trace()
    if use_cache:
        text = graph.to_json()
        record = {"format": CACHE_FORMAT, "key": path.stem, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                  "graph": text}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(path)
        except OSError:
            pass  # no cache directory (or a full disk): trace every time
    return graph


def _read_cached(path: Path) -> OpGraph | None:
    try:
        record = json.loads(path.read_text())
        text = record["graph"]
        if (record.get("format") != CACHE_FORMAT or record.get("key") != path.stem
                or hashlib.sha256(text.encode()).hexdigest() != record.get("sha256")):
            raise ValueError("checksum or key mismatch")
        return OpGraph.from_json(text)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # a damaged or edited file is traced again (and replaced); say so, a silent re-trace takes seconds
        logging.getLogger("pimsim").warning("graph cache %s: %s; tracing again", path.name, exc)
        return None


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pimsim" / "graphs"


def cache_files() -> list[Path]:
    root = cache_dir()
    return sorted(p for p in root.glob("*") if p.is_file() and p.suffix in (".json", ".tmp")) if root.is_dir() else []


def clear_cache() -> tuple[int, int]:
    """Remove every cached graph: (files, bytes) removed."""
    count = size = 0
    for path in cache_files():
        try:
            size += path.stat().st_size
            path.unlink()
            count += 1
        except OSError:
            continue
    return count, size
