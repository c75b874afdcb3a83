"""Step costs simulated by pimsim's decode engine: :class:`EngineCosts` answers the
:class:`~pimsim.serving.costs.StepCosts` protocol for a model card on a hardware description.

A decode step over a sequence whose cache holds C tokens after the step is timed as a batch-1 fast-
fidelity run of one token at position C - 1 (:func:`pimsim.runs.run_model`). Contexts are rounded **up**
to a multiple of ``context_bucket`` tokens (at most the model's context) and each bucket is simulated once
and reused: a step is charged as if its cache held the bucket's tokens, which over-states its attention
time and energy by at most ``context_bucket - 1`` tokens' worth (``context_bucket=1``: no rounding).

Prefill is not simulated as its own pass here: a prompt of P tokens is charged as P decode steps at
contexts 1..P, token by token (what a one-vector PIM datapath does with a prompt; its weight reads are
those of P decode steps).

The KV memory is counted in DRAM rows per bank: what the model's weights leave free, and per sequence
the rows of a KV region (K row-major, V transposed, as the mapper lays it out) for every attention layer
for the tokens its cache grows to.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.serving.costs import StepCost
from pimsim.workloads.cards import ModelCard

DEFAULT_CONTEXT_BUCKET = 64


class EngineCosts:
    kv_unit = "DRAM rows per bank"
    max_batch = 1  # batch-1 decode steps: the engine has no batched decode step yet

    def __init__(self, hw: HardwareConfig, card: ModelCard, weight_format: str | None = None,
                 context_bucket: int = DEFAULT_CONTEXT_BUCKET):
        from pimsim.dram.compile import compile_standard
        from pimsim.mapper.model import ModelMap
        from pimsim.runs import hardware_for
        from pimsim.workloads.tracer import traced_graph

        if not (isinstance(context_bucket, int) and context_bucket >= 1):
            raise PimsimError(f"context bucket must be a whole number of tokens >= 1, not {context_bucket!r}")
        if hw.pim is None or hw.asic is None:
            raise PimsimError(f"{hw.name}: serving needs PIM memory and an ASIC (a pim and an asic section)")
        self.hw = hardware_for(hw, card, weight_format)
        self.card = card
        self.graph = traced_graph(card)
        if self.graph.meta.get("encoder_decoder"):
            raise PimsimError(f"{card.name}: serving encoder-decoder models is not supported")
        self.max_context = int(self.graph.meta["context"])
        self.context_bucket = context_bucket
        self.has_energy = self.hw.energy is not None
        # the weights' rows: a map with a one-token cache, less that cache
        one = ModelMap(self.hw, compile_standard(self.hw), self.graph, 1)
        self._kv_layers = len(one.kv)
        self._kv_geometry = one.kv_geometry
        self.weight_rows = one.rows_used - self.kv_need(1)
        self.kv_capacity = one.geometry.rows - self.weight_rows
        self._step = lru_cache(maxsize=None)(self._simulate_step)
        self._prefill = lru_cache(maxsize=None)(self._prefill_cost)

    def kv_need(self, tokens: int) -> int:
        return self._kv_rows(tokens)

    @lru_cache(maxsize=None)  # noqa: B019 (one instance per run; the cache lives as long as it)
    def _kv_rows(self, tokens: int) -> int:
        from pimsim.mapper.attention import kv_layout

        meta = self.graph.meta
        layout = kv_layout(self._kv_geometry, meta["kv_heads"], meta["head_dim"], tokens)
        return self._kv_layers * (layout.k.dram_rows + layout.v.dram_rows)

    def bucket(self, context: int) -> int:
        """`context` rounded up to a multiple of the bucket, at most the model's context."""
        b = self.context_bucket
        return min(-(-context // b) * b, self.max_context)

    def decode_step(self, contexts: Sequence[int]) -> StepCost:
        if len(contexts) != 1:
            raise PimsimError(f"a decode step of {len(contexts)} sequences: batched decode is not yet available "
                              "(serve with --max-batch 1)")
        return self._step(self.bucket(contexts[0]))

    def prefill(self, prompt_len: int) -> StepCost:
        return self._prefill(prompt_len)

    def _prefill_cost(self, prompt_len: int) -> StepCost:
        seconds, joules = 0.0, 0.0
        b = self.context_bucket
        for start in range(1, prompt_len + 1, b):  # contexts start .. start + b - 1 share one bucket
            count = min(b, prompt_len - start + 1)
            step = self._step(self.bucket(start))
            seconds += step.time_s * count
            joules = None if step.energy_J is None else joules + step.energy_J * count
        return StepCost(seconds, joules)

    def _simulate_step(self, context: int) -> StepCost:
        from pimsim.runs import run_model

        record = run_model(self.hw, self.card, prompt_len=context - 1, gen_tokens=1, fidelity="fast")
        return StepCost(record["total_time_s"], record.get("energy_total_J"))

    def distinct_steps(self) -> int:
        return self._step.cache_info().currsize

    def notes(self) -> list[str]:
        return [f"decode steps timed as batch-1 fast-fidelity runs, contexts rounded up to a multiple of "
                f"{self.context_bucket} tokens (at most {self.max_context}); {self.distinct_steps()} distinct "
                "step shape(s) simulated",
                "prefill charged as one decode step per prompt token (token by token, at contexts 1..P)",
                f"KV memory: {self.kv_capacity:,} DRAM rows per bank left by the weights ({self.weight_rows:,} rows); "
                "each request reserves the rows of its whole cache (prompt + output - 1 tokens) at admission",
                "energy counts the device's steps only; idle time between requests is not charged"]
