"""How many devices a model needs: the smallest split whose every device holds its share of the weights
and a KV cache for the run (the mapper's own placement decides, not an estimate)."""

from __future__ import annotations

import math

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.system.plan import ParallelPlan
from pimsim.system.shard import pipeline_stages, tensor_shard
from pimsim.workloads.opgraph import OpGraph

MAX_DEVICES = 4096


def fits(hw: HardwareConfig, graph: OpGraph, plan: ParallelPlan, context: int, compiled=None) -> bool:
    """Whether every stage's shard of `plan` fits one device with a KV cache for `context` tokens."""
    from pimsim.dram.compile import compile_standard
    from pimsim.mapper.model import ModelMap

    compiled = compiled or compile_standard(hw)
    seen = set()
    for stage in pipeline_stages(tensor_shard(graph, plan.tp), plan.pp):
        key = stage.signature()
        if key in seen:
            continue
        seen.add(key)
        try:
            ModelMap(hw, compiled, stage.graph, context, None, 0)
        except PimsimError:
            return False
    return True


def tensor_sizes(graph: OpGraph) -> list[int]:
    """Tensor-parallel sizes the heads allow, smallest first."""
    heads, kv = graph.meta.heads, graph.meta.kv_heads
    return [t for t in range(1, math.gcd(heads, kv) + 1) if heads % t == 0 and kv % t == 0]


def smallest_plan(hw: HardwareConfig, graph: OpGraph, context: int) -> ParallelPlan | None:
    """The split over the fewest devices that holds the model (at a device count, the widest tensor-parallel
    group: it divides every layer's time, where pipeline stages only divide the memory); None if no split
    up to MAX_DEVICES devices (or one stage per layer) fits."""
    from pimsim.dram.compile import compile_standard

    if graph.meta.encoder_decoder or graph.meta.moe:
        return None
    compiled = compile_standard(hw)
    layers = graph.meta.layers
    sizes = tensor_sizes(graph)
    capacity = hw.dram.organization.capacity_bytes
    from pimsim.pim.formats import WEIGHT_BITS

    bits = WEIGHT_BITS[hw.pim.weight_format] if hw.pim is not None else 16
    # a lower bound to start from: every weight at the block format's width (embeddings may be wider)
    start = max(1, math.floor(graph.weight_elements() * bits / 8 / capacity))
    for devices in range(start, MAX_DEVICES + 1):
        for tp in reversed(sizes):
            if devices % tp or devices // tp > layers:
                continue
            plan = ParallelPlan(tp, devices // tp)
            if fits(hw, graph, plan, context, compiled):
                return plan
        if devices >= max(sizes) * layers:
            return None
    return None


def needs_text(hw: HardwareConfig, graph: OpGraph, context: int) -> str:
    """'; it needs N devices of HW: --devices N --parallel tp=T,pp=P ...' (or that no split fits), to follow
    a message that the model does not fit."""
    plan = smallest_plan(hw, graph, context)
    if plan is None:
        return f"; no split over up to {MAX_DEVICES} devices of {hw.name} holds it"
    return (f"; it needs {plan.devices} devices of {hw.name}: --devices {plan.devices} --parallel {plan.text()} "
            "(with an interconnect: system.interconnect in the hardware file)")
