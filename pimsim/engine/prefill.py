"""The prefill: the prompt simulated instead of assumed in the KV cache (``pimsim run --prefill``).

Each sequence's prompt of P tokens goes through every layer on the PIM system before the first decode
step (:meth:`pimsim.engine.decode.DecodeSimulation.prefill_steps`: every weight GEMV multiplies the
prompt's vectors ``pim.buffer_vectors`` at a time, ``pim.vectors_per_mac`` per MAC command; causal
attention and KV writes token by token). It runs on its own DRAM timing state from an idle memory
(the serial schedule), so its time, counts and energy are reported apart from the decode steps', whose
figures are those of a run without it; time to first token is the prefill plus the first decode step.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.engine.dram_timing import timing_for
from pimsim.engine.lowering import WorkTally
from pimsim.workloads.opgraph import PARTS

PREFILL_NOTES = [
    "prefill simulated on the PIM system (--prefill): the prompt's GEMVs multiply pim.buffer_vectors token vectors "
    "at a time (pim.vectors_per_mac per MAC command), causal attention and KV writes run token by token, the LM "
    "head is skipped for prompt tokens; on its own DRAM timing state, serial schedule, before the first decode "
    "step; ttft_s = prefill_s + latency_first_token_s",
]


@dataclass
class PrefillResult:
    time_ps: int
    breakdown_ps: dict[str, int]
    counts: dict
    work: WorkTally
    channel_busy_ps: tuple
    counted: dict  # what was simulated: prompt tokens, GEMV vectors and chunks, weights read


def run_prefill(sim, sequences: int = 1) -> PrefillResult:
    """Time the prefill of `sequences` prompts of ``sim.prompt_len`` tokens (a
    :class:`~pimsim.engine.decode.DecodeSimulation`) on a DRAM timing state of its own."""
    timing = timing_for(sim.compiled, sim.fidelity)
    steps = sim.prefill_steps(sim.prompt_len, sequences)
    t, breakdown, work = 0, dict.fromkeys(PARTS, 0), WorkTally()
    for step in steps:
        end = timing.run(step.stream, t) if step.stream is not None else t + step.ps
        breakdown[step.part] += end - t
        t = end
        work.add(step.work)
    vectors = sim.prompt_len * sequences
    gemvs = [op for i, op in ((i, sim.graph.ops[i]) for i in sim._work_ops) if op.kind == "gemv"
             and op.part != "lm_head"]
    counted = {"prompt_tokens": sim.prompt_len, "sequences": sequences, "gemv_vectors": vectors,
               "gemv_chunks": -(-vectors // sim.hw.pim.buffer_vectors),
               "weights_multiplied": sum(op.rows * op.cols for op in gemvs)}
    return PrefillResult(t, breakdown, timing.counts(), work, tuple(float(b) for b in timing.busy_ps), counted)
