"""The prefill: the prompt simulated instead of assumed in the KV cache (``pimsim run --prefill`` or
``--prefill-on pim|asic|DEVICE``).

- ``pim``: each sequence's prompt of P tokens goes through every layer on the PIM system
  (:meth:`pimsim.engine.decode.DecodeSimulation.prefill_steps`: every weight GEMV multiplies the prompt's
  vectors ``pim.buffer_vectors`` at a time, ``pim.vectors_per_mac`` per MAC command; causal attention and
  KV writes token by token; the LM head skipped), simulated command by command.
- ``asic``: the prompt's products on the ASIC beside the memory, as a roofline: the weights read once
  over the memory's pins at peak bandwidth, or the multiply-adds (P per weight, and the causal
  attention's) on the ASIC's lanes, whichever is longer; then every prompt token's keys and values
  written into the banks (the KV-append streams, simulated).
- a host device (a :mod:`pimsim.baseline.devices` spec: ``h100``, ``a100``, ...): the roofline of
  :mod:`pimsim.baseline.roofline` over the whole prompt (weights and the prompt's KV once over its
  memory bandwidth, or 2 FLOPs per weight per token plus the causal attention's over its peak, plus one
  launch per op), energy as its power x time; then the KV written into the banks as above. The link
  between the host and the memory is not modelled (its transfer is left out).

Each runs on its own DRAM timing state from an idle memory (serial: a process submitting its steps to a
system engine of its own, :mod:`pimsim.engine.system`), so its time, counts and energy are reported
apart from the decode steps', whose figures are those of a run without it; time to first token is the
prefill plus the first decode step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pimsim.engine.dram_timing import timing_for
from pimsim.engine.lowering import Step, WorkTally
from pimsim.engine.system import System
from pimsim.workloads.opgraph import PARTS

ON_PIM, ON_ASIC = "pim", "asic"
PREFILL_NOTES = {
    ON_PIM: "prefill simulated on the PIM system: the prompt's GEMVs multiply pim.buffer_vectors token vectors at a "
            "time (pim.vectors_per_mac per MAC command), causal attention and KV writes run token by token, the LM "
            "head is skipped for prompt tokens",
    ON_ASIC: "prefill on the ASIC, a roofline: the weights once over the pins at peak bandwidth or the multiply-adds "
             "on the ASIC lanes, whichever is longer (vector ops and buffer traffic left out); then the prompt's KV "
             "written into the banks (simulated)",
    "device": "prefill on a host device, its roofline (pimsim.baseline.roofline over the whole prompt; energy = "
              "power_W x time, an estimate); then the prompt's KV written into the banks (simulated); the host-to-"
              "memory link is not modelled",
}
COMMON_NOTE = ("the prefill runs on its own DRAM timing state (serial) before the first decode step; ttft_s = "
               "prefill_s + latency_first_token_s")


@dataclass
class PrefillResult:
    time_ps: int  # the whole prefill
    breakdown_ps: dict[str, int]  # of what was simulated on the memory (all of it on PIM; the KV writes else)
    counts: dict
    work: WorkTally
    channel_busy_ps: tuple
    counted: dict  # what was simulated: prompt tokens, GEMV vectors and chunks, weights multiplied
    on: str = ON_PIM
    simulated_ps: int = 0  # of time_ps, what the memory's streams took (the rest is the roofline's)
    roofline: dict = field(default_factory=dict)  # asic / device: the roofline's terms and its energy inputs


def run_prefill(sim, sequences: int = 1, on: str = ON_PIM) -> PrefillResult:
    """The prefill of `sequences` prompts of ``sim.prompt_len`` tokens (a
    :class:`~pimsim.engine.decode.DecodeSimulation`) on `on` (``pim``, ``asic`` or a device spec), with
    a DRAM timing state of its own."""
    if on == ON_PIM:
        steps = sim.prefill_steps(sim.prompt_len, sequences)
        roofline: dict = {}
    else:
        steps = kv_write_steps(sim, sim.prompt_len, sequences)
        roofline = (asic_roofline(sim, sim.prompt_len, sequences) if on == ON_ASIC
                    else device_roofline(sim, sim.prompt_len, sequences, on))
    timing = timing_for(sim.compiled, sim.fidelity)
    breakdown, work = dict.fromkeys(PARTS, 0), WorkTally()
    system = System()  # the prefill's own: a process submitting its steps (serial) from an idle memory
    t = system.run(system.start(system.submit(system.group(timing), steps, breakdown, work)))
    vectors = sim.prompt_len * sequences
    gemvs = [sim.graph.ops[i] for i in sim._work_ops if sim.graph.ops[i].kind == "gemv"
             and sim.graph.ops[i].part != "lm_head"]
    counted = {"prompt_tokens": sim.prompt_len, "sequences": sequences,
               "weights_multiplied": sum(op.rows * op.cols for op in gemvs)}
    if on == ON_PIM:
        counted.update({"gemv_vectors": vectors, "gemv_chunks": -(-vectors // sim.hw.pim.buffer_vectors)})
    total = t + round(roofline.get("time_s", 0.0) * 1e12)
    return PrefillResult(total, breakdown, timing.counts(), work, tuple(float(b) for b in timing.busy_ps), counted,
                         on if on in (ON_PIM, ON_ASIC) else roofline["device"], t, roofline)


def kv_write_steps(sim, prompt_len: int, sequences: int) -> list[Step]:
    """Writing every prompt token's keys and values into each sequence's cache (the KV-append ops'
    steps, token by token): what a prefill computed elsewhere leaves the banks to do."""
    out: list[Step] = []
    shared: dict[int, dict] = {}
    fast = sim.fidelity == "fast"
    for index in sim._work_ops:
        op = sim.graph.ops[index]
        if op.kind != "kv_append":
            continue
        for seq in range(sequences):
            for position in range(prompt_len):
                if seq == 0 or fast:
                    out += sim._op_steps(index, op, position, position + 1, shared.setdefault(position, {}))
                else:
                    out += sim.lowerers[seq].steps(op, position, position + 1)
    return out


def _causal_attention_macs(graph, prompt_len: int) -> int:
    """Multiply-adds of causal attention over a prompt: token j's query against j + 1 keys, then its
    probabilities over j + 1 values, every query head of every layer."""
    meta = graph.meta
    return 2 * meta.layers * meta.heads * meta.head_dim * prompt_len * (prompt_len + 1) // 2


def asic_roofline(sim, prompt_len: int, sequences: int) -> dict:
    """The ASIC's prefill of `sequences` prompts of `prompt_len` tokens (see the module's notes)."""
    hw, graph, p = sim.hw, sim.graph, prompt_len
    weight_bytes = sum(op.rows * op.cols * sim.map.tensor_geometry(op.tensor).operand_bytes
                       for op in graph.ops if op.kind == "gemv" and op.part != "lm_head")
    macs = sequences * (p * sum(op.rows * op.cols for op in graph.ops if op.kind == "gemv" and op.part != "lm_head")
                        + _causal_attention_macs(graph, p))
    memory_s = weight_bytes / hw.dram.peak_bandwidth_Bps
    compute_s = macs / (hw.asic.lanes * hw.asic.freq_MHz * 1e6)
    org = hw.dram.organization
    reads = math.ceil(weight_bytes / org.access_bytes)
    return {"time_s": max(memory_s, compute_s), "memory_s": memory_s, "compute_s": compute_s,
            "bound": "memory" if memory_s >= compute_s else "compute", "weight_bytes": weight_bytes,
            "asic_macs": macs, "reads": reads, "rows_opened": math.ceil(reads / org.accesses_per_row)}


def device_roofline(sim, prompt_len: int, sequences: int, name: str) -> dict:
    """Host device `name`'s prefill of `sequences` prompts of `prompt_len` tokens (its roofline)."""
    from pimsim.baseline.devices import load_device
    from pimsim.baseline.roofline import DTYPE_BYTES, default_dtype

    spec = load_device(name)
    dtype = default_dtype(spec)
    graph, p = sim.graph, prompt_len
    weights = sum(op.rows * op.cols for op in graph.ops if op.kind == "gemv" and op.part != "lm_head")
    nbytes = (weights + sequences * graph.kv_elements(p)) * DTYPE_BYTES[dtype]
    flops = sequences * 2 * (p * weights + _causal_attention_macs(graph, p))
    memory_s = nbytes / (spec.memory_bandwidth_GBps * 1e9)
    compute_s = flops / (spec.peak_TFLOPS[dtype] * 1e12)
    overhead_s = sum(op.kind != "join" for op in graph.ops) * spec.launch_overhead_us * 1e-6
    time_s = max(memory_s, compute_s) + overhead_s
    return {"time_s": time_s, "memory_s": memory_s, "compute_s": compute_s, "overhead_s": overhead_s,
            "bound": "memory" if memory_s >= compute_s else "compute", "device": spec.name, "dtype": dtype,
            "bytes": nbytes, "flops": flops, "energy_J": spec.power_W * time_s, "power_W": spec.power_W,
            "energy_kind": "estimate (power_W x time)"}
