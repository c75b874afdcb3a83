"""A serving run of a model card on a hardware description, end to end: the requests, the engine's step
costs, the scheduler and the summary (what ``pimsim serve`` and the Python API call)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.serving.arrivals import Request
from pimsim.serving.engine import DEFAULT_PROMPT_BUCKET, EngineCosts
from pimsim.serving.scheduler import ServeRun, serve
from pimsim.serving.summary import ServeSummary, Slo, summarize
from pimsim.workloads.cards import ModelCard


@dataclass(frozen=True)
class ServeOutcome:
    run: ServeRun
    summary: ServeSummary
    costs: EngineCosts


def serve_model(hw: HardwareConfig, card: ModelCard, requests: Sequence[Request], max_batch: int = 1,
                slo: Slo = Slo(), weight_format: str | None = None,
                progress: Callable[[int], None] | None = None,
                prompt_bucket: int = DEFAULT_PROMPT_BUCKET, prefill_on: str = "pim") -> ServeOutcome:
    """Serve `requests` with the engine's step costs for the longest of them."""
    if not requests:
        raise PimsimError("no requests to serve")
    costs = EngineCosts(hw, card, max_batch, max(r.max_context for r in requests), weight_format, prompt_bucket,
                        prefill_on)
    run = serve(requests, costs, max_batch, progress)
    return ServeOutcome(run, summarize(run, slo, tuple(costs.notes())), costs)


# what a serving sweep point takes (``run: {serve: {...}}`` and ``serve.KEY`` axes)
SWEEP_SETTINGS = {"rate": "requests per second (Poisson arrivals)", "requests": "how many requests",
                  "prompt_len": "prompt tokens (default: the card's)",
                  "output_len": "output tokens (default: the card's)",
                  "seed": "arrivals seed (default 0)", "max_batch": "the most sequences per decode step (default 1)",
                  "prompt_bucket": f"prefill costs' prompt rounding (default {DEFAULT_PROMPT_BUCKET})",
                  "prefill_on": "where prefills run: pim (default), asic or a host device spec",
                  "slo_ttft_s": "TTFT target for goodput", "slo_tpot_s": "TPOT target for goodput"}


def serving_row(hw_name: str, model: str, settings: dict, overrides: dict, weight_format: str | None) -> dict:
    """One serving sweep point as a flat row: the settings it ran with and its summary's figures
    (``ttft_p50_s`` ..., throughput, goodput, energy per token)."""
    from pimsim.config.loader import load_hardware
    from pimsim.serving.arrivals import poisson_requests
    from pimsim.workloads.cards import load_card

    problems = [f"serve.{k}: unknown (known: {', '.join(SWEEP_SETTINGS)})" for k in settings if k not in SWEEP_SETTINGS]
    for key in ("rate", "requests"):
        if key not in settings:
            problems.append(f"serve.{key}: missing ({SWEEP_SETTINGS[key]})")
    if problems:
        raise PimsimError("a serving point: " + "; ".join(problems))
    card = load_card(model)
    hw = load_hardware(hw_name, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])  # as --set reads them
    prompt_len = settings.get("prompt_len", card.defaults.prompt_len)
    output_len = settings.get("output_len", card.defaults.gen_tokens)
    requests = poisson_requests(settings["rate"], settings["requests"], prompt_len, output_len,
                                settings.get("seed", 0))
    slo = Slo(settings.get("slo_ttft_s"), settings.get("slo_tpot_s"))
    outcome = serve_model(hw, card, requests, settings.get("max_batch", 1), slo, weight_format,
                          prompt_bucket=settings.get("prompt_bucket", DEFAULT_PROMPT_BUCKET),
                          prefill_on=settings.get("prefill_on", "pim"))
    s = outcome.summary
    row = {"hw": outcome.costs.hw.name, "weight_format": outcome.costs.hw.pim.weight_format,
           "rate_per_s": float(settings["rate"]), "requests": s.requests, "prompt_len": prompt_len,
           "output_len": output_len, "max_batch": s.max_batch}
    for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        stats = getattr(s, name)
        row.update({f"{name[:-2]}_{q}_s": stats[q] for q in ("p50", "p90", "p99", "mean")})
    row.update({k: getattr(s, k) for k in ("throughput_tokens_per_s", "throughput_requests_per_s",
                                           "goodput_requests_per_s", "slo_attainment", "energy_per_token_J",
                                           "mean_batch", "duration_s")})
    return row
