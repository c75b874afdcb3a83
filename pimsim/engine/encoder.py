"""The encoder pass of an encoder-decoder model: run once over the source before the first decode step.

What is counted (the encoder pass's graph, :func:`pimsim.workloads.tracer.traced_encoder`):

- every weight product of the encoder over the source's S tokens is S GEMV passes of that weight's
  stream (the weights sit in the PIM like the decoder's, in the same format): per pass, as in a decode
  step, the token's input over the links (quantized first for integer activations), the channels'
  MACs, the partial sums back and the ASIC adding them up;
- the encoder's self-attention (products of two activations, S x S per head) is ASIC work, one
  multiply-add per lane per cycle; its softmax, LayerNorms, GELU and residual adds are ASIC vector
  work as in a decode step, sized for S tokens;
- the token and position embeddings are S table-row reads;
- each decoder layer's cross-attention K and V projections of the encoder's output are S GEMV passes
  each, and the S tokens' keys and values are written into the layer's cross K/V region (one append
  stream per token, as a decode step writes its new token).

Assumed: the ASIC holds the S tokens' activations between ops (the largest is reported as
``activation_bytes``; a buffer smaller than that would spill, which is not modelled); passes of one
weight go one token after another, each from its own input vector (no batching of tokens into one MAC
stream: the PIM units multiply one broadcast vector at a time); the encoder's DRAM timing starts from an
idle memory, and the decode steps after it start from an idle memory too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.engine.dram_timing import timing_for
from pimsim.engine.events import Program
from pimsim.engine.lowering import FP32_BYTES, WorkTally
from pimsim.engine.system import System
from pimsim.workloads.opgraph import PARTS

ENCODER_NOTES = [
    "encoder pass (run once before decoding, not in the per-token latency): each encoder weight product over "
    "the source is source_len GEMV passes of that weight in the PIM, the encoder's self-attention (S x S per "
    "head) and its softmax, norms and activations are ASIC work, each decoder layer's cross-attention K/V "
    "projections are source_len GEMV passes plus source_len writes into its cross K/V region",
    "encoder pass: the ASIC is assumed to hold the source's activations between ops (encoder.activation_bytes "
    "is the largest in FP32; a smaller buffer would spill, not modelled); its DRAM timing starts from an idle "
    "memory and so do the decode steps after it",
]


@dataclass
class EncoderResult:
    time_ps: int
    breakdown_ps: dict[str, int]
    counts: dict
    work: WorkTally  # what the energy model charges beyond the DRAM commands
    channel_busy_ps: tuple
    counted: dict  # what was simulated: passes, matmul multiply-adds, token writes
    activation_bytes: int  # the largest activation of S tokens, FP32


def run_encoder(sim) -> EncoderResult:
    """Time `sim`'s encoder pass (a :class:`pimsim.engine.decode.DecodeSimulation` of an
    encoder-decoder) on its own DRAM timing state, with the run's schedule and fidelity: a process on a
    system engine of its own (:mod:`pimsim.engine.system`) submitting the pass's program."""
    graph = sim.encoder
    timing = timing_for(sim.compiled, sim.fidelity, record=sim.check_protocol)
    program, counted = _program(sim, graph)
    system = System()
    breakdown, work = dict.fromkeys(PARTS, 0), WorkTally()
    process = system.start(system.submit(system.group(timing), program, breakdown, work, sim.schedule == "serial"))
    end = system.run(process)
    counts = timing.counts()
    if sim.check_protocol:
        checked, violations = timing.protocol_violations()
        if violations:
            raise RuntimeError(f"pimsim bug: the encoder pass issued {len(violations)} command(s) that break the "
                               f"{sim.hw.dram.standard} protocol, for example: {violations[0]}")
        counts["protocol_check"] = {"commands_checked": checked, "violations": 0}
    source = graph.meta.source_len
    activation = max((FP32_BYTES * (op.elements if op.kind == "asic" else op.rows * op.count)
                      for op in graph.ops if op.kind in ("asic", "gemv")), default=0)
    activation = max([activation] + [FP32_BYTES * op.heads * op.rows * op.cols for op in graph.ops
                                     if op.kind == "matmul"])
    counted["source_len"] = source
    return EncoderResult(end, breakdown, counts, work, tuple(float(b) for b in timing.busy_ps), counted,
                         activation)


def _program(sim, graph) -> tuple[Program, dict]:
    """The encoder pass's instructions: every op's passes, in graph order. Passes of one op depend only on
    the ops that made its input (all of their passes), so the overlap schedule can pipeline them."""
    program = Program()
    counted = {"gemv_passes": 0, "weights_streamed": 0, "cross_kv_token_writes": 0, "table_rows_read": 0,
               "asic_matmul_macs": 0}
    done_by: dict[int, tuple] = {}
    for op in graph.ops:
        deps = tuple(sorted({ins for v in op.inputs for ins in done_by.get(v, ())}, key=lambda ins: ins.index))
        if op.kind == "join":
            done_by[op.output] = deps
            continue
        if op.kind in ("gemv", "embedding", "kv_append"):
            passes = op.count
            steps_of = _per_pass(sim, op)
        else:  # ASIC work over all S tokens at once
            passes = 1
            steps = sim.steps(op, 0, 0)
            steps_of = lambda _, steps=steps: steps  # noqa: E731
        ends = []
        for p in range(passes):
            steps = steps_of(p)
            ends.append(program.add_steps(steps, op.name, op.layer, deps))
        done_by[op.output] = tuple(ends)
        if op.kind == "gemv":
            counted["gemv_passes"] += passes
            counted["weights_streamed"] += passes * op.rows * op.cols
        elif op.kind == "kv_append":
            counted["cross_kv_token_writes"] += passes
        elif op.kind == "embedding":
            counted["table_rows_read"] += passes
        elif op.kind == "matmul":
            counted["asic_matmul_macs"] += op.elements
    return program, counted


def _per_pass(sim, op):
    """Steps of pass p of a per-token op: a GEMV's are the same every pass; an embedding reads table row
    p (as a decode step reads its position's); a cross K/V append writes source token p."""
    if op.kind == "gemv":
        steps = sim.steps(op, 0, 0)
        return lambda _: steps
    return lambda p: sim.steps(op, p, p + 1)
