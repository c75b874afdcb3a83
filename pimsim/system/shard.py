"""One device's part of a traced decode step: the op graph split Megatron-style (tensor parallel) and
cut into pipeline stages.

Tensor parallel over T devices follows the data: a GEMV whose input is whole on every device is split by
its outputs (a *column* split: Q/K/V, up and gate projections, the LM head by vocabulary), so its output
is a shard; attention, KV appends and vector work on a shard take 1/T of the heads or values; a GEMV whose
input is a shard is split by its inputs (a *row* split: the attention output projection, the FFN down
projection), so every device holds a partial sum of the whole output, which an all-reduce makes whole
again. Norms and residual adds work on whole vectors and run on every device. The embedding table is
split by vocabulary; the device holding the token's row reads it and an all-reduce gives it to all
(smaller tables, such as GPT-2's position embeddings, are whole on every device).

Pipeline parallel over P stages gives each stage a run of whole layers (the first stage the embedding,
the last the final norm and LM head); the activation goes to the next stage at each boundary.

Heads that do not divide by T are an error (Megatron-LM asks the same); other sizes that do not divide
(a vocabulary of 50,257) are padded up, so the largest shard, which every device in lock step waits for,
sets the time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from pimsim.errors import PimsimError
from pimsim.workloads.opgraph import Op, OpGraph

WHOLE, SHARD = "whole", "shard"


@dataclass(frozen=True)
class Collective:
    """A value the devices of a tensor-parallel group exchange: ``all_reduce`` of the partial sums a
    row-split GEMV leaves (or the embedding row), ``gather`` of each device's best logit."""

    kind: str  # "all_reduce" or "gather"
    after: int  # index (into the shard's ops) of the op whose output it carries
    values: int  # values on each device (all_reduce: the whole vector; gather: per device)


@dataclass
class DeviceShard:
    """The graph one device runs (all devices of a tensor-parallel group run the same one in lock
    step), the collectives of one decode step, and which ASIC ops work on a shard (1/T of a vector)."""

    graph: OpGraph
    collectives: list[Collective] = field(default_factory=list)
    sharded_asic_ops: frozenset[int] = frozenset()  # indices into graph.ops
    layers: tuple[int, int] = (0, 0)  # [first, last) layer of the model this stage runs

    def signature(self) -> str:
        """What the simulation of this shard depends on, without names: two stages of the same shape
        (the middle stages of a pipeline) have the same signature and are simulated once."""
        first = self.layers[0]
        tensors = {name: i for i, name in enumerate(self.graph.tensors)}
        ops = []
        values: dict[int, int] = {}  # value ids renumbered in order of first use
        for op in self.graph.ops:
            d = op.to_dict()
            d.pop("name")
            d["inputs"] = [values.setdefault(v, len(values)) for v in op.inputs]
            d["output"] = values.setdefault(op.output, len(values))
            d["tensor"] = tensors.get(op.tensor)
            d["layer"] = None if op.layer is None else op.layer - first
            ops.append(d)
        meta = {k: v for k, v in self.graph.meta.to_dict().items() if k not in ("traced_with", "pipeline_stage")}
        return json.dumps([ops, list(self.graph.tensors.values()), meta], sort_keys=True)


def check_tensor_parallel(graph: OpGraph, tp: int) -> None:
    """Heads split whole over the devices, or an error saying which counts would work."""
    meta = graph.meta
    problems = []
    for key, what in (("heads", "query heads"), ("kv_heads", "KV heads")):
        count = getattr(meta, key)
        if count and count % tp:
            divisors = [d for d in range(1, count + 1) if count % d == 0]
            problems.append(f"its {count} {what} do not split over {tp} devices (tensor-parallel sizes that "
                            f"divide them: {', '.join(map(str, divisors))})")
    if problems:
        raise PimsimError(f"{graph.model}: " + "; ".join(problems))


def _split(count: int, parts: int) -> int:
    return -(-count // parts)


def _shard_asic(op: Op, tp: int) -> Op:
    """Vector work on a shard: 1/T of its values; its independent rows too when they are heads."""
    rows = op.rows // tp if op.rows > 1 and op.rows % tp == 0 else op.rows
    return replace(op, elements=_split(op.elements, tp), elements_per_token=_split(op.elements_per_token, tp),
                   rows=rows, rows_per_token=_split(op.rows_per_token, tp))


def tensor_shard(graph: OpGraph, tp: int) -> DeviceShard:
    """One device's graph of a tensor-parallel group of `tp` devices (the graph itself when tp is 1)."""
    if graph.meta.encoder_decoder:
        raise PimsimError(f"{graph.model}: several devices do not run encoder-decoder models yet")
    if graph.meta.moe:  # experts would need expert parallelism and the card's routing on every device
        raise PimsimError(f"{graph.model}: several devices do not run mixture-of-experts models yet")
    if tp == 1:
        return DeviceShard(graph, [], frozenset(), (0, graph.meta.layers))
    check_tensor_parallel(graph, tp)
    state: dict[int, str] = {}
    ops: list[Op] = []
    tensors = {name: dict(t) for name, t in graph.tensors.items()}
    collectives: list[Collective] = []
    sharded_asic: set[int] = set()
    for op in graph.ops:
        sharded_in = any(state.get(v) == SHARD for v in op.inputs)
        if op.kind == "gemv":
            if sharded_in:  # row split: each device a slice of the inputs, the whole output as a partial sum
                new = replace(op, cols=_split(op.cols, tp))
                tensors[op.tensor]["cols"] = new.cols
                collectives.append(Collective("all_reduce", len(ops), op.rows))
                state[op.output] = WHOLE
            else:  # column split: each device a slice of the outputs
                new = replace(op, rows=_split(op.rows, tp))
                tensors[op.tensor]["rows"] = new.rows
                state[op.output] = SHARD
        elif op.kind == "embedding":
            new = op
            if graph.tensors[op.tensor]["rows"] == graph.meta.vocab:  # the token table: by vocabulary
                tensors[op.tensor]["rows"] = _split(graph.tensors[op.tensor]["rows"], tp)
                collectives.append(Collective("all_reduce", len(ops), op.count * op.cols))
            state[op.output] = WHOLE  # other tables (GPT-2's positions) are small and whole on every device
        elif op.kind in ("scores", "context", "kv_append"):
            new = replace(op, heads=op.heads // tp, kv_heads=op.kv_heads // tp)
            state[op.output] = SHARD
        elif op.kind == "asic" and sharded_in:
            new = _shard_asic(op, tp)
            sharded_asic.add(len(ops))
            state[op.output] = SHARD
        else:  # whole-vector ASIC work (norms, residual adds) and joins pass their inputs' state on
            new = op
            state[op.output] = SHARD if sharded_in else WHOLE
        ops.append(new)
    last = graph.ops[-1] if graph.ops else None
    if last is not None and state.get(last.output) == SHARD:
        # the LM head's logits stay split: each device picks its best and the (value, index) pairs are
        # gathered, instead of moving the whole vocabulary's logits
        collectives.append(Collective("gather", len(ops) - 1, 2))
    meta = replace(graph.meta, heads=graph.meta.heads // tp, kv_heads=graph.meta.kv_heads // tp, tensor_parallel=tp)
    if meta.vocab is not None:
        meta.vocab = _split(meta.vocab, tp)
    # tensors in the order the ops first use them, as the tracer lists them
    return DeviceShard(OpGraph(graph.model, ops, tensors, meta), collectives, frozenset(sharded_asic),
                       (0, graph.meta.layers))


def stage_layers(layers: int, pp: int) -> list[tuple[int, int]]:
    """[first, last) layers of each of `pp` stages, as even as whole layers allow (earlier stages take
    the extra ones)."""
    if pp > layers:
        raise PimsimError(f"{pp} pipeline stages need at least {pp} layers; the model has {layers}")
    base, extra = divmod(layers, pp)
    out, first = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append((first, first + n))
        first += n
    return out


def pipeline_stages(shard: DeviceShard, pp: int) -> list[DeviceShard]:
    """The tensor shard cut into `pp` stages of whole layers (the shard itself when pp is 1). Ops before
    the first layer go to the first stage, ops after the last to the last."""
    if pp == 1:
        return [shard]
    graph = shard.graph
    bounds = stage_layers(graph.meta.layers, pp)
    layered = [i for i, op in enumerate(graph.ops) if op.layer is not None]
    first_layered, last_layered = layered[0], layered[-1]

    def stage_of(index: int, op: Op) -> int:
        if op.layer is not None:
            return next(s for s, (a, b) in enumerate(bounds) if a <= op.layer < b)
        return 0 if index < first_layered else pp - 1 if index > last_layered else _no_layer(op)

    by_stage: list[list[int]] = [[] for _ in range(pp)]
    for i, op in enumerate(graph.ops):
        by_stage[stage_of(i, op)].append(i)
    stages = []
    for s, indices in enumerate(by_stage):
        ops = [graph.ops[i] for i in indices]
        used = {op.tensor for op in ops if op.tensor}
        tensors = {name: t for name, t in graph.tensors.items() if name in used}
        meta = replace(graph.meta, layers=bounds[s][1] - bounds[s][0], pipeline_stage=s)
        position = {old: new for new, old in enumerate(indices)}
        stages.append(DeviceShard(
            OpGraph(graph.model, ops, tensors, meta),
            [replace(c, after=position[c.after]) for c in shard.collectives if c.after in position],
            frozenset(position[i] for i in shard.sharded_asic_ops if i in position), bounds[s]))
    return stages


def _no_layer(op: Op) -> int:
    raise PimsimError(f"pimsim cannot place {op.name!r} in a pipeline stage: it has no layer and sits between "
                      "two layers' ops")


def stage_boundary_values(graph: OpGraph) -> int:
    """Values sent from one pipeline stage to the next: the hidden state."""
    return graph.meta.d_model
