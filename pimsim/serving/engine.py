"""Step costs simulated by pimsim's decode engine: :class:`EngineCosts` answers the
:class:`~pimsim.serving.costs.StepCosts` protocol for a model card on a hardware description, through
:class:`pimsim.step_costs.StepCosts` (fast fidelity, serial schedule; a batched decode step composed of
the weight GEMVs of its batch size and each sequence's attention over its own context, each piece
simulated once and cached, so no context is rounded).

A request of P prompt tokens and O output tokens, as ``pimsim run --prefill`` times it: its prefill
writes the prompt's KV at positions 0 .. P - 1 (the prompt's GEMVs ``pim.buffer_vectors`` token vectors at
a time, LM head left out), then the decode step at position P makes its first token (time to first token
= prefill + that step, as ``ttft_s`` of ``pimsim run --prefill``), and the decode step at position P + g
its token g + 1. Its cache holds P + O tokens at the end.

Prefill costs are simulated once per prompt length, and a prefill's steps grow with its prompt (attention
and KV writes token by token), so prompt lengths are rounded **up** to a multiple of ``prompt_bucket``
tokens (default 16; 1: exact) for the prefill's cost only: the request's cache, its first token's step
and its decode steps keep its true length. A prefill is charged as if its prompt had up to
``prompt_bucket - 1`` tokens more (a prefill's time grows about linearly with the prompt: for a 65-token
prompt rounded to 80, about a quarter more); prompts of a multiple of ``prompt_bucket`` tokens are exact.
Decode steps are never rounded (each context's attention is its own piece).

KV memory, as the mapper lays out a batch: every running request holds one KV cache (every attention
layer's K and V) sized for the longest request of the run, beside the weights; as many requests run at
once as such caches fit (``sequences_that_fit``), however large ``--max-batch`` is, and the others wait.
Counted in DRAM rows per bank.
"""

from __future__ import annotations

from typing import Sequence

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.step_costs import StepCost
from pimsim.workloads.cards import ModelCard

DEFAULT_PROMPT_BUCKET = 16


class EngineCosts:
    kv_unit = "DRAM rows per bank"

    def __init__(self, hw: HardwareConfig, card: ModelCard, max_batch: int, longest: int,
                 weight_format: str | None = None, prompt_bucket: int = DEFAULT_PROMPT_BUCKET,
                 prefill_on: str = "pim"):
        """`longest`: the longest request the run serves, prompt + output - 1 tokens; `prefill_on`: where
        prefills run, as ``pimsim run --prefill-on`` (pim, asic or a host device spec)."""
        from pimsim.dram.compile import compile_standard
        from pimsim.mapper.model import ModelMap
        from pimsim.step_costs import StepCosts
        from pimsim.workloads.cards import hardware_for
        from pimsim.workloads.tracer import traced_graph

        if hw.pim is None or hw.asic is None:
            raise PimsimError(f"{hw.name}: serving needs PIM memory and an ASIC (a pim and an asic section)")
        if not (isinstance(max_batch, int) and max_batch >= 1):
            raise PimsimError(f"max_batch must be a whole number >= 1, not {max_batch!r}")
        if not (isinstance(prompt_bucket, int) and prompt_bucket >= 1):
            raise PimsimError(f"prompt bucket must be a whole number of tokens >= 1, not {prompt_bucket!r}")
        self.prompt_bucket, self.prefill_on = prompt_bucket, prefill_on
        self.hw = hardware_for(hw, card, weight_format)
        self.card = card
        graph = traced_graph(card)
        if graph.meta.encoder_decoder:
            raise PimsimError(f"{card.name}: serving encoder-decoder models is not supported")
        # a request's cache ends with P + O tokens: at most the model's context
        self.max_context = int(graph.meta.context) - 1
        self.layout_context = min(max(longest, 1), self.max_context) + 1
        lone = ModelMap(self.hw, compile_standard(self.hw), graph, self.layout_context)  # refuses what cannot fit
        self.sequences_that_fit = lone.sequences_that_fit()
        self.kv_rows_per_request = lone.kv_rows_per_sequence()
        self.kv_capacity = self.sequences_that_fit * self.kv_rows_per_request
        self.max_batch = max_batch
        self.batch_laid_out = min(max_batch, self.sequences_that_fit)
        self.steps = StepCosts(self.hw, card, max_batch=self.batch_laid_out, max_context=self.layout_context)
        self._batch_sizes: set[int] = set()
        self._prompt_lens: set[int] = set()

    def kv_need(self, tokens: int) -> int:
        return self.kv_rows_per_request  # one cache of the run's longest request, whatever this one's length

    def decode_step(self, contexts: Sequence[int]) -> StepCost:
        # prompt + tokens out so far: the position the step's token is written at
        self._batch_sizes.add(len(contexts))
        return self.steps.decode_step(list(contexts))

    def prefill(self, prompt_len: int) -> StepCost:
        b = self.prompt_bucket
        rounded = min(-(-prompt_len // b) * b, self.layout_context)
        self._prompt_lens.add(rounded)
        return self.steps.prefill(rounded, 1, self.prefill_on) + self.steps.decode_step([prompt_len])

    def distinct_shapes(self) -> dict[str, int]:
        """How many distinct pieces were simulated: batch sizes of the weight GEMVs and prompt lengths
        (each sequence's attention is simulated once per context on top)."""
        return {"batch_sizes": len(self._batch_sizes), "prompt_lens": len(self._prompt_lens)}

    def notes(self) -> list[str]:
        shapes = self.distinct_shapes()
        return [f"step costs: pimsim's batched decode step and prefill (fast fidelity, serial schedule), from "
                f"{shapes['batch_sizes']} batch size(s) and {shapes['prompt_lens']} prompt length(s), each piece "
                "simulated once (no context rounded)",
                f"time to first token = prefill of the prompt (on {self.prefill_on}) + the decode step that makes "
                "the first token; "
                f"prefill costs with the prompt rounded up to a multiple of {self.prompt_bucket} token(s)",
                f"KV memory: each running request holds a cache for {self.layout_context:,} tokens (the longest "
                f"request), {self.kv_rows_per_request:,} DRAM rows per bank; {self.sequences_that_fit:,} fit beside "
                f"the weights",
                "energy counts the device's steps only; idle time between requests is not charged"]
