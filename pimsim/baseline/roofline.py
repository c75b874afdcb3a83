"""The best a device could do on one decode step: its bytes over the memory bandwidth or its FLOPs
over the peak, whichever is longer, plus a fixed cost per operator (kernel launch or op dispatch).

Bytes per token: every GEMV weight once, and the cached K and V of every layer once. FLOPs: two per
weight and two per cached K or V element per query head. Operators: the traced graph's ops (views
excluded), one launch each as eager PyTorch does. An idealized runtime in the spirit of HELM's
(REFERENCE.md section 7): what the hardware allows, not what a framework achieves.
"""

from __future__ import annotations

from pimsim.baseline.devices import DeviceSpec
from pimsim.errors import PimsimError
from pimsim.workloads.opgraph import OpGraph

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def default_dtype(spec: DeviceSpec) -> str:
    """The data type a device runs a model in unless told: fp32 on a CPU, else fp16 where the device
    gives an fp16 peak, else fp32 (the roofline baselines, a prefill on a host, heterogeneous decode)."""
    return "fp32" if spec.kind == "cpu" else ("fp16" if "fp16" in spec.peak_TFLOPS else "fp32")


def token_time_s(spec: DeviceSpec, graph: OpGraph, context: int, dtype: str) -> dict:
    if dtype not in spec.peak_TFLOPS:
        raise PimsimError(f"{spec.name}: no {dtype} peak given (has {', '.join(spec.peak_TFLOPS)})")
    meta = graph.meta
    size = DTYPE_BYTES[dtype]
    weights = graph.gemv_elements()
    kv = graph.kv_elements(context)
    attention_flops = 2 * 2 * meta.layers * meta.heads * meta.head_dim * context
    nbytes = (weights + kv) * size
    flops = 2 * weights + attention_flops
    memory_s = nbytes / (spec.memory_bandwidth_GBps * 1e9)
    compute_s = flops / (spec.peak_TFLOPS[dtype] * 1e12)
    ops = sum(op.kind != "join" for op in graph.ops)
    overhead_s = ops * spec.launch_overhead_us * 1e-6
    return {"time_s": max(memory_s, compute_s) + overhead_s, "memory_s": memory_s, "compute_s": compute_s,
            "overhead_s": overhead_s, "bytes": nbytes, "flops": flops, "operators": ops}


def roofline(spec: DeviceSpec, graph: OpGraph, prompt_len: int, gen_tokens: int, dtype: str | None = None) -> dict:
    """Per-token latency and energy (power x time: an estimate) over a generation run."""
    dtype = dtype or default_dtype(spec)
    steps = [token_time_s(spec, graph, prompt_len + i + 1, dtype) for i in range(gen_tokens)]
    total = sum(s["time_s"] for s in steps)
    per_token = total / gen_tokens
    return {
        "kind": "roofline", "device": spec.name, "description": spec.description, "dtype": dtype,
        "model": graph.model, "prompt_len": prompt_len, "gen_tokens": gen_tokens,
        "latency_per_token_s": per_token,
        "energy_per_token_J": spec.power_W * per_token, "energy_kind": "estimate (power_W x time)",
        "bound": "memory" if steps[-1]["memory_s"] >= steps[-1]["compute_s"] else "compute",
        "last_token": steps[-1], "spec": spec.model_dump(),
    }
