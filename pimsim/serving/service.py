"""A serving run of a model card on a hardware description, end to end: the requests, the engine's step
costs, the scheduler and the summary (what ``pimsim serve`` and the Python API call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.serving.arrivals import Request
from pimsim.serving.engine import DEFAULT_CONTEXT_BUCKET, EngineCosts
from pimsim.serving.scheduler import ServeRun, serve
from pimsim.serving.summary import ServeSummary, Slo, summarize
from pimsim.workloads.cards import ModelCard


@dataclass(frozen=True)
class ServeOutcome:
    run: ServeRun
    summary: ServeSummary
    costs: EngineCosts


def engine_costs(hw: HardwareConfig, card: ModelCard, max_batch: int, weight_format: str | None = None,
                 context_bucket: int = DEFAULT_CONTEXT_BUCKET) -> EngineCosts:
    """The engine's step costs, refusing at once a batch its decode steps cannot take."""
    if max_batch > EngineCosts.max_batch:
        raise PimsimError(f"--max-batch {max_batch}: batched decode is not yet available in pimsim (a decode step "
                          f"runs {EngineCosts.max_batch} sequence); serve with --max-batch 1")
    return EngineCosts(hw, card, weight_format, context_bucket)


def serve_model(hw: HardwareConfig, card: ModelCard, requests: Sequence[Request], max_batch: int = 1,
                slo: Slo = Slo(), weight_format: str | None = None, context_bucket: int = DEFAULT_CONTEXT_BUCKET,
                progress: Callable[[int], None] | None = None) -> ServeOutcome:
    costs = engine_costs(hw, card, max_batch, weight_format, context_bucket)
    run = serve(requests, costs, max_batch, progress)
    return ServeOutcome(run, summarize(run, slo, tuple(costs.notes())), costs)
