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
  cached token.

The step is traced at two cache lengths, and op sizes that grow with the context are stored per token.
Nothing here knows a model family: only aten ops and the cache API.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from pimsim.errors import PimsimError, TraceError
from pimsim.workloads.cards import ModelCard
from pimsim.workloads.opgraph import Op, OpGraph

TRACER_VERSION = 2  # bump when the graph a trace produces changes; part of the cache key
_PAST = (3, 7)  # cache lengths of the two traces

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
    kind: str  # "param", "kv", "act", "const"
    name: str = ""  # parameter name
    value: int = -1  # activation value id
    layer: int = -1  # KV cache layer
    which: str = ""  # "k" or "v"
    mask: bool = False  # a constant that is a mask


def trace_card(card: ModelCard) -> OpGraph:
    """Trace the card's model (uncached; see :func:`traced_graph`)."""
    torch, transformers = _import_torch()
    model = _build(card, torch, transformers)
    try:
        runs = [_trace_once(model, past, torch) for past in _PAST]
    except (TraceError, PimsimError):
        raise
    except Exception as exc:  # a config transformers accepts but cannot run (zero layers, odd sizes)
        raise PimsimError(f"model card {card.name}: running the model failed: {type(exc).__name__}: {exc}") from None
    ops = _merge(runs, [p + 1 for p in _PAST], card)
    _assign_parts(ops)
    tensors = _tensors(ops)
    meta = _meta(card, ops, torch, transformers)
    meta["max_positions"] = max_positions(model.config)
    return _checked(card, OpGraph(card.name, ops, tensors, meta))


def _checked(card: ModelCard, graph: OpGraph) -> OpGraph:
    positions = graph.meta.get("max_positions")
    if positions is not None and card.context > positions:
        raise PimsimError(f"model card {card.name}: context {card.context} is longer than the model's "
                          f"{positions} positions (its config's max_position_embeddings / n_positions)")
    return graph


def _import_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise PimsimError(f"tracing a model needs torch and transformers ({exc}); install pimsim with "
                          f"`pip install .` from the repository") from None
    return torch, transformers


def _build(card: ModelCard, torch, transformers):
    try:
        config = transformers.AutoConfig.for_model(card.hf.model_type, **card.hf.config)
    except Exception as exc:  # whatever transformers raises for a bad config is the card's problem
        raise PimsimError(f"model card {card.name}: transformers cannot build a {card.hf.model_type!r} config "
                          f"from it: {type(exc).__name__}: {exc}") from None
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        except Exception as exc:
            raise PimsimError(f"model card {card.name}: transformers cannot build a {card.hf.model_type!r} "
                              f"causal LM from it: {type(exc).__name__}: {exc}") from None
    return model.eval()  # eval: no dropout ops in the trace


def max_positions(config) -> int | None:
    """How many positions the model's position embedding or rotary setup is built for."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _trace_once(model, past: int, torch) -> list[Op]:
    from torch.utils._python_dispatch import TorchDispatchMode

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model(input_ids=torch.zeros((1, past), dtype=torch.long, device="meta"), use_cache=True)
        cache = out.past_key_values
        layers = getattr(cache, "layers", None)
        if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
            raise TraceError(f"{type(cache).__name__}: pimsim reads the KV cache through .layers[i].keys/.values "
                             f"(transformers 5); this cache has another layout")
        tagger = _Tagger(model, layers)

        class Recorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                result = func(*args, **kwargs)
                tagger.op(func, args, kwargs, result)
                return result

        hooks = [m.register_forward_pre_hook(tagger.enter) for m in model.modules()]
        hooks += [m.register_forward_hook(tagger.leave) for m in model.modules()]
        try:
            with Recorder():
                model(input_ids=torch.zeros((1, 1), dtype=torch.long, device="meta"), past_key_values=cache,
                      use_cache=True)
        finally:
            for h in hooks:
                h.remove()
    if tagger.unsupported:
        names = ", ".join(sorted(tagger.unsupported))
        raise TraceError(f"aten ops pimsim has no ASIC model for, on activations: {names}")
    return tagger.ops


class _Tagger:
    def __init__(self, model, cache_layers):
        import torch

        self.torch = torch
        self.tags: dict[int, _Tag] = {}
        self.keep = []  # tensors stay alive during the trace, so their ids stay unique
        for name, p in model.named_parameters():
            self._set(p, _Tag("param", name=name))
        for i, layer in enumerate(cache_layers):
            self._set(layer.keys, _Tag("kv", layer=i, which="k"))
            self._set(layer.values, _Tag("kv", layer=i, which="v"))
        self.paths = {m: n for n, m in model.named_modules()}
        self.stack: list[str] = []
        self.ops: list[Op] = []
        self.next_value = 0
        self.unsupported: set[str] = set()

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
        kv = [t for t in tags if t.kind == "kv"]
        if aten == "cat" and kv:
            new = [t for t in tags if t.kind == "act"]
            k = kv[0]
            out = outs[0]
            self._emit("kv_append", aten, [], new, layer=k.layer, which=k.which, kv_heads=out.shape[1],
                       head_dim=out.shape[-1])
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
        if aten == "cat":
            self._emit("join", aten, outs, acts)
            return
        kind = _ASIC.get(aten)
        if kind == "pow" and len(args) > 1 and args[1] == 2:
            kind = "mul"
        if kind is None or kind == "pow":
            self.unsupported.add(aten)
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

    def _matmul(self, aten, flat_in, tags, outs) -> None:
        operands = flat_in[1:] if aten in ("addmm", "baddbmm") else flat_in
        op_tags = tags[1:] if aten in ("addmm", "baddbmm") else tags
        out = outs[0]
        params = [t for t in op_tags if t.kind == "param"]
        kv = [t for t in op_tags if t.kind == "kv"]
        acts = [t for t in op_tags if t.kind == "act"]
        if params and len(operands) == 2 and operands[1].dim() == 2:
            x = operands[0]
            if x.numel() != x.shape[-1]:
                raise TraceError(f"{aten} on {tuple(x.shape)}: pimsim traces decoding, one token at a time")
            bias = aten == "addmm"
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
            self._emit(kind, aten, outs, acts, heads=heads, head_dim=head_dim, which=k.which, layer=k.layer)
            return
        raise TraceError(f"{aten} of {[tuple(t.shape) for t in operands]}: a matrix product of two activations "
                         f"is not something pimsim maps yet")


def _merge(runs: list[list[Op]], contexts: list[int], card: ModelCard) -> list[Op]:
    """One op list from traces at two context lengths: sizes that differ grow linearly with the context."""
    a, b = runs
    if len(a) != len(b) or any((x.kind, x.name, x.asic_kind) != (y.kind, y.name, y.asic_kind) for x, y in zip(a, b)):
        raise TraceError(f"{card.name}: the decode step's ops change with the context length; pimsim expects one "
                         f"graph for every position")
    ca, cb = contexts
    for x, y in zip(a, b):
        if x.kind != "asic":
            continue
        for attr, per in (("elements", "elements_per_token"), ("rows", "rows_per_token")):
            va, vb = getattr(x, attr), getattr(y, attr)
            slope, rest = divmod(vb - va, cb - ca)
            if rest or va - slope * ca < 0:
                raise TraceError(f"{x.name}: {attr} {va} at context {ca} and {vb} at {cb} is not linear in it")
            setattr(x, attr, va - slope * ca)
            setattr(x, per, slope)
    return a


def _assign_parts(ops: list[Op]) -> None:
    """Which part of the model each op belongs to, from the graph alone (no per-family names)."""
    by_layer: dict[int, dict[str, list[int]]] = {}
    for i, op in enumerate(ops):
        if op.kind in ("scores", "context"):
            by_layer.setdefault(op.layer, {}).setdefault(op.kind, []).append(i)
    attention = {}  # layer -> (module path of attention, first scores index, last context index)
    for layer, found in by_layer.items():
        if "scores" not in found or "context" not in found:
            raise TraceError(f"layer {layer}: attention without both q.K^T and p.V")
        first, last = found["scores"][0], found["context"][-1]
        prefix = os.path.commonprefix([ops[first].name.split(":")[0], ops[last].name.split(":")[0]]).rstrip(".")
        attention[layer] = (prefix, first, last)
    vocab = max((op.rows for op in ops if op.kind == "embedding"), default=-1)
    for i, op in enumerate(ops):
        if op.kind == "gemv":
            path = op.name.split(":")[0]
            att = attention.get(op.layer)
            if att and path.startswith(att[0]) and i < att[1]:
                op.part = "qkv"
            elif att and path.startswith(att[0]) and i > att[2]:
                op.part = "out_proj"
            elif op.rows == vocab and op.layer is None:
                op.part = "lm_head"
            else:
                op.part = "ffn"
        elif op.kind == "asic":
            op.part = "softmax" if op.asic_kind == "softmax" else "asic"
        else:
            op.part = {"scores": "attn_scores", "context": "attn_context", "kv_append": "kv_write",
                       "embedding": "embedding", "join": "asic"}[op.kind]
    appends = sorted((op.layer, op.which) for op in ops if op.kind == "kv_append")
    if appends != [(layer, w) for layer in sorted(by_layer) for w in "kv"]:
        raise TraceError(f"KV appends {appends} do not match the attention layers {sorted(by_layer)}: expected one "
                         f"K and one V append each")


def _tensors(ops: list[Op]) -> dict[str, dict]:
    tensors: dict[str, dict] = {}
    for op in ops:
        if op.kind in ("gemv", "embedding"):
            shape = {"rows": op.rows, "cols": op.cols}
            if tensors.setdefault(op.tensor, shape) != shape:
                raise TraceError(f"weight {op.tensor} used with shapes {tensors[op.tensor]} and {shape}")
    return tensors


def _meta(card: ModelCard, ops: list[Op], torch, transformers) -> dict:
    scores = [op for op in ops if op.kind == "scores"]
    appends = [op for op in ops if op.kind == "kv_append"]
    embed = [op for op in ops if op.kind == "embedding"]
    return {
        "layers": len({op.layer for op in scores}),
        "heads": scores[0].heads,
        "kv_heads": appends[0].kv_heads,
        "head_dim": scores[0].head_dim,
        "d_model": embed[0].cols,
        "vocab": max(op.rows for op in embed),
        "context": card.context,
        "model_type": card.hf.model_type,
        "traced_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "tracer": TRACER_VERSION, "cache_lengths": list(_PAST)},
    }


def traced_graph(card: ModelCard, use_cache: bool = True) -> OpGraph:
    """The card's graph, from the on-disk cache when the same shapes were traced by the same versions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = f"{version('torch')}-{version('transformers')}"
    except PackageNotFoundError:
        versions = "missing"
    path = cache_dir() / f"{card.hf.model_type}-{card.shape_key()}-t{TRACER_VERSION}-{versions}.json"
    if use_cache and path.is_file():
        try:
            graph = OpGraph.from_json(path.read_text())
            graph.model = card.name
            graph.meta["context"] = card.context  # not part of the shape key: the card's own
            return _checked(card, graph)
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache file is traced again
    graph = trace_card(card)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(graph.to_json())
            tmp.replace(path)
        except OSError:
            pass  # no cache directory: trace every time
    return graph


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pimsim" / "graphs"
