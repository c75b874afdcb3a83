"""Runs: :func:`simulate` takes a :class:`~pimsim.run_types.RunSpec` (any mode) and returns a typed
:class:`~pimsim.run_types.RunResult`; :func:`decode_run` is token generation itself, returning the
typed :class:`~pimsim.run_details.DecodeRun` the result carries (:func:`run_model`: its JSON record).

    from pimsim.run_types import RunSpec
    from pimsim.runs import simulate
    r = simulate(RunSpec(model="gpt2", hw="gddr6-aim.yaml", gen_tokens=8))
    r.latency_per_token_s, r.breakdown_s, r.to_json()

Every number in the result comes from the simulation of the resolved config and the traced graph that
are named in it (``config``, ``model_card``, ``graph``); ``config_hash`` covers both, the traced ops
included (so a different torch/transformers that traces differently changes it), and the run options.

An encoder-decoder model (BART) runs its encoder once over ``source_len`` source tokens before the
first decode step; that pass is timed on its own and reported under ``encoder`` (time, energy, what
was counted), never inside the per-token figures.
"""

from __future__ import annotations

import dataclasses
import statistics

from pimsim import __version__
from pimsim.config.loader import load_hardware
from pimsim.config.models import HardwareConfig
from pimsim.engine.decode import DecodeSimulation, config_hash
from pimsim.engine.encoder import ENCODER_NOTES, run_encoder
from pimsim.engine.energy import asic_roofline_energy, energy_of
from pimsim.engine.prefill import COMMON_NOTE, ON_ASIC, ON_PIM, PREFILL_NOTES, run_prefill
from pimsim.errors import PimsimError
from pimsim.json_fields import from_json, frozen_map, to_json
from pimsim.mapper.placement import Geometry
from pimsim.run_details import (
    Bound,
    DataMoved,
    DecodeRun,
    DramCounts,
    EncoderCounted,
    EncoderFigures,
    EnergyDetail,
    ExpertLoads,
    GraphSummary,
    MemoryUse,
    PassEnergy,
    PrefillFigures,
    PrefillRoofline,
    ProtocolCheck,
    RunEnergy,
    SpecDecRun,
    TimeBreakdown,
    TokenLatency,
)
from pimsim.run_types import RunResult, RunSpec, patched_spec_dec
from pimsim.units import S_PER_PS
from pimsim.workloads.cards import ModelCard, hardware_for, load_card
from pimsim.workloads.opgraph import PART_TITLES
from pimsim.workloads.tracer import check_source_len, traced_encoder, traced_graph


def simulate(spec: RunSpec, *, progress=None, timeline: bool = False) -> RunResult:
    """Run `spec`: token generation, or speculative decoding (``spec.mode == "spec_dec"``)."""
    if not isinstance(spec, RunSpec):
        raise PimsimError(f"simulate takes a RunSpec, not {type(spec).__name__}")
    hw = load_hardware(spec.hw, spec.override_texts())
    if spec.mode == "spec_dec":
        return _simulate_specdec(spec, hw, timeline)
    return simulate_loaded(spec, hw, load_card(spec.model), progress=progress, timeline=timeline)


def simulate_loaded(spec: RunSpec, hw: HardwareConfig, card: ModelCard, *, progress=None,
                    timeline: bool = False) -> RunResult:
    """Token generation of `spec` with its hardware (overrides applied) and model card already loaded."""
    hw = hardware_for(hw, card, spec.weight_format)
    from pimsim.system.plan import parallel_plan

    system = hw.system
    plan = parallel_plan(spec.devices, spec.parallel, system.devices if system else 1,
                         system.parallel if system else None)
    if plan.devices > 1:
        if spec.batch > 1 or spec.prefill is not None or spec.decode_fc_on is not None:
            raise PimsimError(f"{plan.devices} devices run one sequence with its prompt already in the KV cache so "
                              "far; drop --batch / --prefill / --decode-fc-on, or run on one "
                              "device")
        return _simulate_system(spec, hw, card, plan, progress, timeline)
    try:
        run, events = decode_run(hw, card, spec.prompt_len, spec.gen_tokens, spec.schedule, spec.fidelity,
                                 timeline=timeline, progress=progress, check_protocol=spec.check_protocol,
                                 weight_format=spec.weight_format, source_len=spec.source_len, batch=spec.batch,
                                 prefill=spec.prefill, decode_fc_on=spec.decode_fc_on, link=spec.link,
                                 decode_fc_schedule=spec.decode_fc_schedule, no_cache=spec.no_cache)
    except PimsimError as exc:
        raise PimsimError(f"{exc}{_devices_needed(hw, card, spec)}") from None
    return RunResult.of(spec, run, events, hw)


def _simulate_system(spec: RunSpec, hw: HardwareConfig, card: ModelCard, plan, progress, timeline: bool) -> RunResult:
    from pimsim.system.run import run_system

    unsupported = [name for name, on in (("a timeline", timeline), ("source_len", spec.source_len is not None))
                   if on]
    if unsupported:
        raise PimsimError(f"runs on several devices do not take {', '.join(unsupported)} (yet)")
    run = run_system(hw, card, plan, spec.prompt_len, spec.gen_tokens, spec.schedule, spec.fidelity,
                     spec.check_protocol, progress, use_cache=not spec.no_cache)
    return RunResult.of(spec, run, (), hw)


def _devices_needed(hw: HardwareConfig, card: ModelCard, spec: RunSpec) -> str:
    """For a model too large for one device: how many it needs (empty for any other error)."""
    from pimsim.system.fit import needs_text

    graph = traced_graph(card, use_cache=not spec.no_cache)
    prompt = card.defaults.prompt_len if spec.prompt_len is None else spec.prompt_len
    tokens = card.defaults.gen_tokens if spec.gen_tokens is None else spec.gen_tokens
    if graph.meta.encoder_decoder or hw.pim is None:
        return ""
    from pimsim.system.fit import fits
    from pimsim.system.plan import ParallelPlan

    if fits(hw, graph, ParallelPlan(1, 1), prompt + tokens):
        return ""
    return needs_text(hw, graph, prompt + tokens)


def specdec_run(hw: HardwareConfig, spec, prompt_len: int | None = None, gen_tokens: int | None = None,
                fidelity: str = "fast", weight_format: str | None = None, no_cache: bool = False) -> SpecDecRun:
    """:func:`run_specdec`'s result, typed."""
    return from_json(SpecDecRun, run_specdec(hw, spec, prompt_len, gen_tokens, fidelity, weight_format, no_cache),
                     "spec_dec record")


def run_specdec(hw: HardwareConfig, spec, prompt_len: int | None = None, gen_tokens: int | None = None,
                fidelity: str = "fast", weight_format: str | None = None, no_cache: bool = False) -> dict:
    """Speculative decoding of `spec` (a parsed :class:`~pimsim.workloads.specdec.SpecDec`) on `hw`: the
    run's JSON record (the engine writes it; :func:`specdec_run` gives it typed), with its target decoding
    the same tokens on its own as the baseline of its ratios. ``no_cache``: both models traced afresh."""
    from pimsim.engine.specdec import SpecDecRun

    run = SpecDecRun(hw, spec, prompt_len, gen_tokens, fidelity, weight_format, use_cache=not no_cache)
    autoregressive = run_model(run.hw, run.target_card, run.prompt_len, run.gen_tokens, "serial", run.fidelity,
                               weight_format=run.target.hw.pim.weight_format, no_cache=no_cache)
    return run.run(autoregressive)


def _simulate_specdec(spec: RunSpec, hw: HardwareConfig, timeline: bool) -> RunResult:
    from pimsim.workloads.specdec import parse_spec

    unsupported = [name for name, on in (("the overlap schedule", spec.schedule == "overlap"),
                                         ("source_len", spec.source_len is not None),
                                         ("check_protocol", spec.check_protocol), ("a timeline", timeline),
                                         ("several devices", spec.devices not in (None, 1) or spec.parallel))
                   if on]
    if unsupported:
        raise PimsimError(f"speculative-decoding runs do not take {', '.join(unsupported)} (yet)")
    text = spec.spec_dec if spec.model is None else patched_spec_dec(spec.spec_dec, spec.model, {})
    sd = parse_spec(text)
    if spec.model is not None and load_card(spec.model).name != load_card(sd.target).name:
        raise PimsimError(f"model {spec.model} is not the spec-dec target {sd.target}")
    hw = hardware_for(hw, load_card(sd.target), spec.weight_format)
    return RunResult.of(spec, specdec_run(hw, sd, spec.prompt_len, spec.gen_tokens, spec.fidelity,
                                          spec.weight_format, spec.no_cache), (), hw)


def run_model(hw: HardwareConfig | str, model: ModelCard | str, prompt_len: int | None = None,
              gen_tokens: int | None = None, schedule: str = "serial", fidelity: str = "fast",
              overrides: list[str] | None = None, timeline: bool = False, progress=None,
              check_protocol: bool = False, weight_format: str | None = None,
              source_len: int | None = None, batch: int = 1, prefill: str | None = None,
              decode_fc_on: str | None = None, link: str | None = None,
              decode_fc_schedule: str | None = None, no_cache: bool = False) -> dict:
    """Token generation of `model` on `hw` as its JSON record (:func:`decode_run`'s, with the timeline
    under ``_timeline`` when asked for)."""
    run, events = decode_run(hw, model, prompt_len, gen_tokens, schedule, fidelity, overrides, timeline, progress,
                             check_protocol, weight_format, source_len, batch, prefill, decode_fc_on, link,
                             decode_fc_schedule, no_cache)
    out = to_json(run)
    if timeline:
        out["_timeline"] = events  # the engine's events (simulate() carries them as RunResult.timeline)
    return out


def decode_run(hw: HardwareConfig | str, model: ModelCard | str, prompt_len: int | None = None,
               gen_tokens: int | None = None, schedule: str = "serial", fidelity: str = "fast",
               overrides: list[str] | None = None, timeline: bool = False, progress=None,
               check_protocol: bool = False, weight_format: str | None = None,
               source_len: int | None = None, batch: int = 1, prefill: str | None = None,
               decode_fc_on: str | None = None, link: str | None = None,
               decode_fc_schedule: str | None = None, no_cache: bool = False) -> tuple[DecodeRun, tuple]:
    """Token generation of `model` on `hw`: `gen_tokens` decode steps after a prompt of `prompt_len`
    tokens already in the KV cache, for one sequence or a `batch` in lock step; the typed result and the
    timeline's events (empty unless `timeline`). With a batch, ``latency_per_token_s`` is one step's time
    (each sequence's time per output token), ``tokens_per_s`` counts every sequence's tokens and
    ``energy_per_token_J`` is per generated token of any sequence.
    ``prefill``: where the prompt runs (``pim``, ``asic`` or a host device spec, see
    :mod:`pimsim.engine.prefill`; None: assumed in the KV cache), reported apart under ``prefill`` with
    ``prefill_s`` and ``ttft_s``. ``decode_fc_on``: a host device spec running the FC layers while
    attention stays in PIM, over the `link` preset, schedule `decode_fc_schedule` (:mod:`pimsim.hetero`),
    reported under ``decode_placement`` beside the all-PIM figures. ``no_cache``: trace the model afresh
    instead of reading (or writing) the traced-graph cache."""
    hw = load_hardware(hw, overrides or []) if isinstance(hw, str) else hw
    card = load_card(model) if isinstance(model, str) else model
    hw = hardware_for(hw, card, weight_format)
    prompt_len = card.defaults.prompt_len if prompt_len is None else prompt_len
    gen_tokens = card.defaults.gen_tokens if gen_tokens is None else gen_tokens
    graph = traced_graph(card, use_cache=not no_cache)
    encoder = None
    if graph.meta.encoder_decoder and source_len is None:
        source_len = card.defaults.source_len
    check_source_len(graph, source_len)
    if graph.meta.encoder_decoder:
        graph.meta.source_len = source_len  # the run's (the card's by default)
        encoder = traced_encoder(card, source_len, use_cache=not no_cache)
    if prefill and (encoder is not None or prompt_len < 1):
        raise PimsimError("a prefill needs a prompt of at least one token" if encoder is None else
                          f"{card.name}: the prefill of encoder-decoder models is their encoder pass (already run)")
    if decode_fc_on and (encoder is not None or graph.meta.moe):
        raise PimsimError(f"{card.name}: the hetero decode placement (--decode-fc-on) takes dense decoder-only models")
    if prefill and graph.meta.moe:
        raise PimsimError(f"{card.name}: the prefill of a mixture-of-experts model is not simulated yet (each prompt "
                          "token routes its own experts); drop --prefill")
    sim = DecodeSimulation(hw, graph, prompt_len, gen_tokens, schedule, fidelity, check_protocol, encoder, source_len,
                           batch=batch, routing=card.routing())
    result = sim.run(timeline=timeline, progress=progress)
    weights = sim.map.weight_elements()
    per_token_s = [ps * S_PER_PS for ps in result.per_token_ps]
    total = sum(result.per_token_ps) * S_PER_PS  # from integer picoseconds, as every other total is
    counts = result.counts
    g = Geometry.of(hw)
    macs = counts["commands"].get("MACAB", 0) + counts["commands"].get("MACSB", 0)
    notes = _notes(schedule, fidelity)
    if batch > 1:
        notes.append(f"a batch of {batch} sequences in lock step: each GEMV multiplies the {batch} vectors at "
                     f"once (mapping.verify {hw.mapping.verify}, pim.buffer_vectors {hw.pim.buffer_vectors}, "
                     f"pim.vectors_per_mac {hw.pim.vectors_per_mac}); attention, KV appends, embeddings and "
                     "ASIC work run per sequence over its own cache; latency_per_token_s is one step, "
                     "tokens_per_s and energy_per_token_J count every sequence's tokens")
    energy = None
    if hw.energy is not None:
        energy = _energy(sim, result, total, gen_tokens * batch, weights, gen_tokens if batch > 1 else None)
    prefill_figures = prefill_s = ttft_s = None
    if prefill:
        prefill_figures = _prefill(sim, batch, prefill)
        prefill_s = prefill_figures.time_s
        ttft_s = prefill_s + per_token_s[0]
        kind = prefill if prefill in (ON_PIM, ON_ASIC) else "device"
        notes[0:1] = [PREFILL_NOTES[kind], COMMON_NOTE]
    placement = None
    if decode_fc_on:
        from pimsim.hetero import DEFAULT_LINK, decode_placement
        from pimsim.step_costs import StepCosts

        costs = StepCosts(hw, card, max_batch=batch, max_context=prompt_len + gen_tokens, use_cache=not no_cache)
        placement = decode_placement(costs, decode_fc_on, link or DEFAULT_LINK, decode_fc_schedule or "auto",
                                     prompt_len, gen_tokens, batch)
    encoder_figures = None
    if encoder is not None:
        encoder_figures = _encoder(sim, per_token_s[0])
        notes += ENCODER_NOTES + [f"cross-attention: every decode step reads each decoder layer's cross K/V "
                                  f"of {source_len} source tokens from the PIM (in the bound too)"]
    identity = config_hash(hw.model_dump(mode="json"), card.model_dump(mode="json"), graph.identity_json(),
                           prompt_len, gen_tokens, schedule, fidelity, __version__,
                           *((encoder.identity_json(), source_len) if encoder is not None else ()),
                           *((counts["experts"].get("trace_sha256"),) if "experts" in counts else ()),
                           *((("batch", batch),) if batch > 1 else ()),
                           *((("prefill", prefill),) if prefill else ()),
                           *((("decode_fc_on", decode_fc_on, link, decode_fc_schedule),) if decode_fc_on else ()))
    run = DecodeRun(
        **run_header(card, hw, prompt_len, gen_tokens, schedule, fidelity),
        latency=token_latency(per_token_s, total, gen_tokens * batch / total),
        per_token_s=tuple(per_token_s),
        time=breakdown_of(result.breakdown_ps, with_titles=True),
        dram=DramCounts(commands=frozen_map(counts["commands"]), row_hits=counts["row_hits"],
                        row_misses=counts["row_misses"], row_conflicts=counts["row_conflicts"],
                        row_hit_rate=counts["row_hit_rate"], distinct_streams=counts["distinct_streams"]),
        data=DataMoved(internal_bytes=macs * g.units * hw.dram.organization.access_bytes,
                       external_bytes=counts["bytes_over_pins"]),
        bound=Bound(bound_time_s=result.ideal_ps * S_PER_PS, bound_efficiency=result.ideal_ps * S_PER_PS / total),
        protocol_check=_protocol_check(counts),
        experts=from_json(ExpertLoads, counts["experts"], "experts") if "experts" in counts else None,
        memory=from_json(MemoryUse, sim.describe(), "memory"),
        graph=GraphSummary(ops=len(graph.ops), weights=weights, meta=dataclasses.replace(graph.meta),
                           encoder_ops=len(encoder.ops) if encoder is not None else None),
        model_card=frozen_map(card.model_dump(mode="json")),
        pimsim_version=__version__,
        config_hash=identity,
        notes=tuple(notes),
        batch=batch if batch > 1 else None,
        tokens_generated=gen_tokens * batch if batch > 1 else None,
        energy=energy, prefill=prefill_figures, prefill_s=prefill_s, ttft_s=ttft_s, decode_placement=placement,
        source_len=source_len if encoder is not None else None, encoder=encoder_figures)
    return run, tuple(result.timeline) if timeline else ()


TPOT_PERCENTILES = (50, 90, 99)


def run_header(card: ModelCard, hw: HardwareConfig, prompt_len: int, gen_tokens: int, schedule: str,
               fidelity: str) -> dict:
    """What ran and how: the first fields of every token-generation result, on one device or several."""
    return {"model": card.name, "hw": hw.name, "gen_tokens": gen_tokens, "prompt_len": prompt_len,
            "schedule": schedule, "fidelity": fidelity, "weight_format": hw.pim.weight_format,
            "kv_format": hw.pim.cache_format}


def token_latency(per_token_s: list[float], total_s: float, tokens_per_s: float) -> TokenLatency:
    """The time per step (``total_s`` over the steps; ``per_token_s`` each step's), with TPOT (time per
    output token) percentiles where there are several: linear interpolation between the sorted tokens,
    numpy's default; its mean is latency_per_token_s."""
    percentiles = {}
    if len(per_token_s) > 1:
        import numpy as np

        values = np.percentile(np.asarray(per_token_s, float), TPOT_PERCENTILES)
        percentiles = {f"tpot_p{q}_s": float(v) for q, v in zip(TPOT_PERCENTILES, values)}
    return TokenLatency(latency_per_token_s=total_s / len(per_token_s), latency_first_token_s=per_token_s[0],
                        latency_last_token_s=per_token_s[-1], latency_median_token_s=statistics.median(per_token_s),
                        **percentiles, tokens_per_s=tokens_per_s, total_time_s=total_s)


def breakdown_of(breakdown_ps: dict[str, int], with_titles: bool,
                 titles: dict[str, str] = PART_TITLES) -> TimeBreakdown:
    """Each part's busy time (parts that took none left out) and its share of the summed busy time."""
    busy = sum(breakdown_ps.values())
    return TimeBreakdown(busy_s=frozen_map({k: v * S_PER_PS for k, v in breakdown_ps.items() if v}),
                         share=frozen_map({k: v / busy for k, v in breakdown_ps.items() if v}),
                         titles=frozen_map({k: titles[k] for k, v in breakdown_ps.items() if v})
                         if with_titles else None)


def _protocol_check(counts: dict) -> ProtocolCheck | None:
    check = counts.get("protocol_check")
    return None if check is None else ProtocolCheck(commands_checked=check["commands_checked"],
                                                    violations=check["violations"])


def _notes(schedule: str, fidelity: str) -> list[str]:
    notes = ["prefill is not simulated: the KV cache holds prompt_len tokens when generation starts",
             "breakdown_s is the busy time of each part; with the overlap schedule parts overlap, so the "
             "shares are of the summed busy time, not of the total"]
    if fidelity == "fast":
        notes.append("fast fidelity: each distinct command stream was simulated once from an idle memory and "
                     "reused; refresh is added as its average cost; command counts are those streams' counts "
                     "times their uses, with one REF per nREFI per rank")
    return notes


def _encoder(sim: DecodeSimulation, first_token_s: float) -> EncoderFigures:
    """The encoder pass, simulated on its own: time, where it went, energy, and what was counted."""
    enc = run_encoder(sim)
    time_s = enc.time_ps * S_PER_PS
    own = set(sim.encoder.tensors) - set(sim.graph.tensors)
    energy = None
    if sim.hw.energy is not None:
        e = energy_of(sim, enc.counts, time_s, enc.channel_busy_ps, enc.work)
        energy = PassEnergy(energy_J=e["total_J"], energy_breakdown_J=frozen_map(e["breakdown_J"]),
                            average_power_W=e["average_power_W"])
    return EncoderFigures(
        time_s=time_s, time_to_first_token_s=time_s + first_token_s, source_len=sim.source_len,
        layers=sim.encoder.meta.layers,
        weights=sum(sim.map.tensors[n]["rows"] * sim.map.tensors[n]["cols"] for n in own),
        time=breakdown_of(enc.breakdown_ps, with_titles=True),
        counted=from_json(EncoderCounted, enc.counted, "encoder.counted"),
        activation_bytes=enc.activation_bytes, row_hit_rate=enc.counts["row_hit_rate"],
        commands=frozen_map(enc.counts["commands"]), protocol_check=_protocol_check(enc.counts), energy=energy)


def _prefill(sim: DecodeSimulation, sequences: int, on: str) -> PrefillFigures:
    """The prefill, on its own: time, where it went, energy, and what was counted (on the ASIC or a host
    device: the roofline's terms, then the KV writes into the banks, simulated)."""
    pre = run_prefill(sim, sequences, on)
    time_s = pre.time_ps * S_PER_PS
    simulated_s = pre.simulated_ps * S_PER_PS
    roofline = None
    if pre.roofline:
        roofline = from_json(PrefillRoofline, {k: v for k, v in pre.roofline.items()
                                               if k not in ("reads", "rows_opened")}, "prefill.roofline")
    energy = None
    if sim.hw.energy is not None:
        e = energy_of(sim, pre.counts, simulated_s, pre.channel_busy_ps, pre.work)
        total, parts = e["total_J"], dict(e["breakdown_J"])
        if on == ON_ASIC:
            r = asic_roofline_energy(sim, pre.roofline)
            total += r["total_J"]
            parts = {k: parts[k] + r["breakdown_J"][k] for k in parts}
        elif pre.roofline:
            total += pre.roofline["energy_J"]
            parts["host_device"] = pre.roofline["energy_J"]
        energy = PassEnergy(energy_J=total, energy_breakdown_J=frozen_map(parts), average_power_W=total / time_s)
    return PrefillFigures(on=pre.on, time_s=time_s, **pre.counted, time=breakdown_of(pre.breakdown_ps, False),
                          row_hit_rate=pre.counts["row_hit_rate"], commands=frozen_map(pre.counts["commands"]),
                          roofline=roofline, kv_write_s=simulated_s if pre.roofline else None, energy=energy)


def _energy(sim: DecodeSimulation, result, total_s: float, tokens: int, params: int,
            steps: int | None) -> RunEnergy:
    """The decode steps' energy over `tokens` generated tokens of `params` weights (``steps``: a batch's
    lock-step steps, for the energy of one)."""
    e = energy_of(sim, result.counts, total_s, result.channel_busy_ps, result.work)
    return RunEnergy(energy_per_token_J=e["total_J"] / tokens, energy_total_J=e["total_J"],
                     energy_breakdown_J=frozen_map(e["breakdown_J"]),
                     energy_per_token_per_param_J=e["total_J"] / tokens / params,
                     average_power_W=e["average_power_W"], detail=from_json(EnergyDetail, e, "energy"),
                     energy_per_step_J=e["total_J"] / steps if steps else None)
