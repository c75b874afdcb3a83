"""Token generation on several devices: each device's shard simulated by the single-device engine, the
exchanges between devices added in closed form (:mod:`pimsim.system.interconnect`).

The devices of a tensor-parallel group run the same shard in lock step, so one simulation stands for all
of them (its counts and energy are multiplied by the group's size). Pipeline stages of the same shape
(the middle stages) are simulated once too. At batch 1 a token passes the stages one after another, so
stage times add, with a send at each boundary and the sampled token sent back to the first stage: there
is nothing for the stages to overlap with. An all-reduce sits on the path of the next op (the residual
add needs the whole vector), so exchange times add to the token's time under either schedule.
"""

from __future__ import annotations

import dataclasses

from pimsim import __version__
from pimsim.config.models import HardwareConfig
from pimsim.engine.decode import DecodeResult, DecodeSimulation, config_hash
from pimsim.errors import PimsimError
from pimsim.json_fields import from_json, frozen_map
from pimsim.mapper.placement import Geometry
from pimsim.run_details import (
    Bound,
    DataMoved,
    DecodeRun,
    DramCounts,
    GraphSummary,
    InterconnectFigures,
    MemoryUse,
    RunEnergy,
    StageFigures,
    SystemFigures,
)
from pimsim.system.fit import fits, needs_text
from pimsim.system.interconnect import Interconnect, Transfer
from pimsim.system.plan import ParallelPlan
from pimsim.system.shard import DeviceShard, pipeline_stages, stage_boundary_values, tensor_shard
from pimsim.units import S_PER_PS
from pimsim.workloads.cards import ModelCard
from pimsim.workloads.opgraph import PART_TITLES, OpGraph
from pimsim.workloads.tracer import traced_graph

LOGIT_BYTES = 8  # a device's best logit (FP32) and its index (int32), gathered after a split LM head
TOKEN_ID_BYTES = 4  # the sampled token sent back from the last stage to the first
COMM_PART = "interconnect"
COMM_TITLE = "interconnect between devices"
ASIC_PARTS = ("asic", "softmax", "quantize")


def shards_of(graph: OpGraph, plan: ParallelPlan) -> list[DeviceShard]:
    """The stage shards of `plan` (one per pipeline stage; each run by `plan.tp` devices)."""
    return pipeline_stages(tensor_shard(graph, plan.tp), plan.pp)


def stage_transfers(stage: DeviceShard, plan: ParallelPlan, link: Interconnect, activation_bytes: int,
                    shared_host: bool) -> list[Transfer]:
    """The exchanges of one decode step of a stage's tensor-parallel group, in order."""
    out = []
    for c in stage.collectives:
        if c.kind == "gather":
            out.append(link.gather(LOGIT_BYTES, plan.tp))
        elif shared_host:
            out.append(link.host_reduce(c.values * activation_bytes, plan.tp))
        else:
            out.append(link.all_reduce(c.values * activation_bytes, plan.tp))
    return out


def _shared_asic_extra_ps(sim: DecodeSimulation, stage: DeviceShard, position: int, devices: int) -> int:
    """With one host ASIC for the whole group, the vector work on shards runs once per device, one after
    another: (devices - 1) more times than the shard's simulation counted. Whole-vector work (norms,
    residual adds) runs once either way."""
    if devices == 1 or not stage.sharded_asic_ops:
        return 0
    extra = 0
    for index in sorted(stage.sharded_asic_ops):
        op = stage.graph.ops[index]
        for _, part, ps, stream, _ in sim.steps(op, position, position + 1):
            if stream is None and part in ASIC_PARTS:
                extra += ps
    return (devices - 1) * extra


def run_system(hw: HardwareConfig, card: ModelCard, plan: ParallelPlan, prompt_len: int | None,
               gen_tokens: int | None, schedule: str = "serial", fidelity: str = "fast",
               check_protocol: bool = False, progress=None, use_cache: bool = True) -> DecodeRun:
    """A run on ``plan.devices`` devices (the figures of a single-device run, plus ``system``: the split,
    the interconnect, the communication's time and energy and their shares)."""
    from pimsim.runs import breakdown_of, energy_of, run_header, token_latency

    system = hw.system
    if system is None or system.interconnect is None:
        raise PimsimError(f"{hw.name}: {plan.devices} devices need an interconnect (system.interconnect in the "
                          "hardware file, e.g. --set system.interconnect.preset=cxl2-x16, or --hw cent.yaml / "
                          "aimx.yaml)")
    if hw.energy is None:
        raise PimsimError(f"{hw.name}: a run on several devices reports energy and needs an energy section")
    prompt_len = card.defaults.prompt_len if prompt_len is None else prompt_len
    gen_tokens = card.defaults.gen_tokens if gen_tokens is None else gen_tokens
    graph = traced_graph(card, use_cache)
    stages = shards_of(graph, plan)
    link = Interconnect(system.interconnect)
    shared_host = system.host_asic == "shared"

    sims: dict[str, tuple[DecodeSimulation, DecodeResult]] = {}
    simulated_as: list[int] = []
    order: list[str] = []
    for s, stage in enumerate(stages):
        key = stage.signature()
        if key not in sims:
            try:
                sim = DecodeSimulation(hw, stage.graph, prompt_len, gen_tokens, schedule, fidelity, check_protocol)
            except PimsimError as exc:
                where = f"stage {s} of {plan.text()}" if plan.pp > 1 else plan.text()
                hint = "" if fits(hw, graph, plan, prompt_len + gen_tokens) else needs_text(
                    hw, graph, prompt_len + gen_tokens)
                raise PimsimError(f"{where}, one device's share: {exc}{hint}") from None
            sims[key] = (sim, sim.run(progress=progress if not sims else None))
            order.append(key)
        simulated_as.append(order.index(key))

    per_token_ps = [0] * gen_tokens
    comm_ps_per_token = 0
    comm_bits_per_token = 0
    kinds: dict[str, int] = {}
    stage_rows = []
    for s, stage in enumerate(stages):
        sim, result = sims[stage.signature()]
        transfers = stage_transfers(stage, plan, link, system.activation_bytes, shared_host)
        if s + 1 < len(stages):  # the hidden state to the next stage
            transfers.append(link.send(stage_boundary_values(stage.graph) * system.activation_bytes))
        elif len(stages) > 1:  # the sampled token back to the first stage
            transfers.append(link.send(TOKEN_ID_BYTES))
        stage_comm = sum(t.time_ps for t in transfers)
        comm_ps_per_token += stage_comm
        comm_bits_per_token += sum(t.bits for t in transfers)
        for t in transfers:
            kinds[t.kind] = kinds.get(t.kind, 0) + 1
        extra = [_shared_asic_extra_ps(sim, stage, prompt_len + i, plan.tp) if shared_host else 0
                 for i in range(gen_tokens)]
        for i in range(gen_tokens):
            per_token_ps[i] += result.per_token_ps[i] + extra[i] + stage_comm
        stage_rows.append(StageFigures(layers=tuple(stage.layers), simulated_as_stage=simulated_as[s],
                                       device_time_per_token_s=sum(result.per_token_ps) * S_PER_PS / gen_tokens,
                                       shared_asic_extra_per_token_s=sum(extra) * S_PER_PS / gen_tokens,
                                       communication_per_token_s=stage_comm * S_PER_PS,
                                       memory=from_json(MemoryUse, sim.describe(), "memory")))

    total_ps = sum(per_token_ps)
    total = total_ps * S_PER_PS
    comm_total_ps = comm_ps_per_token * gen_tokens
    per_token_s = [ps * S_PER_PS for ps in per_token_ps]

    # every device's busy time by part (a stage's group: tp devices in lock step, counted once, as one
    # device's time: parts are wall time, not device-seconds), the exchanges as their own part
    breakdown_ps = {}
    commands: dict[str, int] = {}
    hits = misses = conflicts = 0
    bytes_internal = bytes_external = 0
    energy_parts: dict[str, float] = {}
    energy_total = 0.0
    bound_ps = 0.0
    g = Geometry.of(hw)
    for stage in stages:
        sim, result = sims[stage.signature()]
        for part, ps in result.breakdown_ps.items():
            breakdown_ps[part] = breakdown_ps.get(part, 0) + ps
        if shared_host:
            breakdown_ps["asic"] = breakdown_ps.get("asic", 0) + sum(
                _shared_asic_extra_ps(sim, stage, prompt_len + i, plan.tp) for i in range(gen_tokens))
        counts = result.counts
        for cmd, n in counts["commands"].items():
            commands[cmd] = commands.get(cmd, 0) + n * plan.tp
        hits += counts["row_hits"] * plan.tp
        misses += counts["row_misses"] * plan.tp
        conflicts += counts["row_conflicts"] * plan.tp
        macs = counts["commands"].get("MACAB", 0) + counts["commands"].get("MACSB", 0)
        bytes_internal += macs * g.units * hw.dram.organization.access_bytes * plan.tp
        bytes_external += counts["bytes_over_pins"] * plan.tp
        bound_ps += result.ideal_ps
        # each device idles (background power) while the others and the interconnect work: its energy
        # over the whole run's time
        e = energy_of(sim, counts, total, result.channel_busy_ps, result.work)
        energy_total += e["total_J"] * plan.tp
        for part, joules in e["breakdown_J"].items():
            energy_parts[part] = energy_parts.get(part, 0.0) + joules * plan.tp
    breakdown_ps[COMM_PART] = comm_total_ps
    comm_energy = link.energy_J(comm_bits_per_token) * gen_tokens
    energy_parts[COMM_PART] = comm_energy
    energy_total += comm_energy
    accessed = hits + misses + conflicts
    weights = graph.weight_elements()
    return DecodeRun(
        **run_header(card, hw, prompt_len, gen_tokens, schedule, fidelity),
        latency=token_latency(per_token_s, total, gen_tokens / total),
        per_token_s=tuple(per_token_s),
        time=breakdown_of(breakdown_ps, True, {**PART_TITLES, COMM_PART: COMM_TITLE}),
        dram=DramCounts(commands=frozen_map(commands), row_hits=hits, row_misses=misses, row_conflicts=conflicts,
                        row_hit_rate=hits / accessed if accessed else None),
        data=DataMoved(internal_bytes=bytes_internal, external_bytes=bytes_external),
        bound=Bound(bound_time_s=bound_ps * S_PER_PS, bound_efficiency=bound_ps * S_PER_PS / total),
        memory=max(stage_rows, key=lambda r: r.memory.rows_per_bank_used).memory,
        graph=GraphSummary(ops=len(graph.ops), weights=weights, meta=dataclasses.replace(graph.meta)),
        model_card=frozen_map(card.model_dump(mode="json")),
        pimsim_version=__version__,
        energy=RunEnergy(energy_per_token_J=energy_total / gen_tokens, energy_total_J=energy_total,
                         energy_breakdown_J=frozen_map(energy_parts),
                         energy_per_token_per_param_J=energy_total / gen_tokens / weights,
                         average_power_W=energy_total / total),
        system=SystemFigures(
            devices=plan.devices, tensor_parallel=plan.tp, pipeline_parallel=plan.pp, host_asic=system.host_asic,
            activation_bytes=system.activation_bytes,
            interconnect=from_json(InterconnectFigures, system.interconnect.model_dump(mode="json"), "interconnect"),
            communication_per_token_s=comm_ps_per_token * S_PER_PS, communication_share=comm_total_ps / total_ps,
            communication_energy_per_token_J=comm_energy / gen_tokens,
            communication_energy_share=comm_energy / energy_total, communication_bits_per_token=comm_bits_per_token,
            exchanges_per_token=frozen_map(kinds), distinct_simulations=len(sims), stages=tuple(stage_rows)),
        config_hash=config_hash(hw.model_dump(mode="json"), card.model_dump(mode="json"), graph.identity_json(),
                                prompt_len, gen_tokens, schedule, fidelity, __version__, plan.text()),
        notes=tuple(_notes(plan, shared_host, fidelity)))


def _notes(plan: ParallelPlan, shared_host: bool, fidelity: str) -> list[str]:
    notes = ["prefill is not simulated: the KV cache holds prompt_len tokens when generation starts",
             f"{plan.devices} devices ({plan.text()}): Megatron-style split (Q/K/V, up, gate and the LM head by "
             "outputs, the output and down projections by inputs, KV heads per device, the embedding table by "
             "vocabulary); the devices of a tensor-parallel group run the same shard in lock step, simulated once",
             "exchanges between devices in closed form (pimsim.system.interconnect): a ring all-reduce after each "
             "row-split projection and the embedding, a gather of each vocabulary shard's best logit; they add to "
             "the token's time (the next op needs their result)",
             "commands, row hits, bytes and energy are over all devices; breakdown_s is wall time (a group's "
             "devices in lock step count once), interconnect included"]
    if plan.pp > 1:
        notes.append("pipeline stages at batch 1 run one after another (a token passes each in turn, nothing to "
                     "overlap); the hidden state is sent at each boundary and the sampled token back to stage 0")
    if shared_host:
        notes.append("one host ASIC: the partial sums go to it and the sums back (host_reduce), and its vector "
                     "work on shards runs once per device in turn; its energy is counted as if each device had "
                     "its own ASIC doing its share")
    if fidelity == "fast":
        notes.append("fast fidelity: each distinct command stream was simulated once from an idle memory and "
                     "reused; refresh is added as its average cost")
    return notes
