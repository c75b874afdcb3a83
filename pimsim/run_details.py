"""What a run produced, as typed records: :class:`DecodeRun` (token generation, on one device or several)
and :class:`SpecDecRun` (speculative decoding), each made of smaller records with units in their names.

Their JSON form (:func:`pimsim.json_fields.to_json`) is the ``pimsim run --json`` record, key for key and
in the same order as before these types existed; :func:`pimsim.json_fields.from_json` reads it back.
Figures whose keys are open-ended (time per part, energy per component, commands by kind) are mappings
from that name to the number; what other schemas own (the model card, the resolved config, the
interconnect preset, the traced graph's metadata) is carried as its JSON.

This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pimsim.json_fields import jfield
from pimsim.workloads.opgraph import GraphMeta

record = dataclass(frozen=True, kw_only=True)


@record
class TokenLatency:
    """Time per generated token (per lock-step step for a batch), and the run's total."""

    JSON_ORDER = ("latency_per_token_s", "latency_first_token_s", "latency_last_token_s", "latency_median_token_s",
                  "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "tokens_per_s", "total_time_s")
    latency_per_token_s: float  # the mean: total_time_s / tokens
    latency_first_token_s: float
    latency_last_token_s: float
    latency_median_token_s: float
    # TPOT (time per output token) percentiles, where there are several tokens
    tpot_p50_s: float | None = jfield(optional=True)
    tpot_p90_s: float | None = jfield(optional=True)
    tpot_p99_s: float | None = jfield(optional=True)
    tokens_per_s: float = jfield()  # every sequence's tokens
    total_time_s: float = jfield()


@record
class TimeBreakdown:
    """Busy time per part of the model (summed over the run) and its share of the summed busy time."""

    JSON_ORDER = ("breakdown_s", "breakdown_share", "breakdown_titles")
    busy_s: Mapping[str, float] = jfield("breakdown_s")
    share: Mapping[str, float] = jfield("breakdown_share")
    titles: Mapping[str, str] | None = jfield("breakdown_titles", optional=True)  # part -> its title


@record
class DramCounts:
    """DRAM/PIM commands by kind and what the row buffers did (all channels, all devices)."""

    JSON_ORDER = ("row_hit_rate", "commands", "row_hits", "row_misses", "row_conflicts", "distinct_streams")
    commands: Mapping[str, int]
    row_hits: int
    row_misses: int
    row_conflicts: int
    row_hit_rate: float | None  # None when no row was accessed
    distinct_streams: int | None = jfield(optional=True)  # command streams simulated (one device)


@record
class DataMoved:
    """Bytes read by the MAC units inside the banks and moved over the memory's pins."""

    JSON_ORDER = ("bytes_internal", "bytes_external")
    internal_bytes: int = jfield("bytes_internal")
    external_bytes: int = jfield("bytes_external")


@record
class Bound:
    """The internal-bandwidth bound: every weight and cached K/V read once at the peak MAC rate."""

    JSON_ORDER = ("bound_time_s", "bound_efficiency")
    bound_time_s: float
    bound_efficiency: float  # bound_time_s / total_time_s


@record
class ProtocolCheck:
    JSON_ORDER = ("commands_checked", "violations")
    commands_checked: int
    violations: int


@record
class ExpertLoads:
    """Mixture-of-experts routing over the run: tokens per expert per MoE layer and how uneven they are
    (imbalance: the busiest expert's tokens over the mean)."""

    JSON_ORDER = ("routing", "experts", "top_k", "moe_layers", "tokens", "tokens_per_expert", "imbalance_max",
                  "imbalance_mean", "imbalance_all_layers", "unused_experts", "trace_sha256")
    routing: str
    experts: int
    top_k: int
    moe_layers: int
    tokens: int
    tokens_per_expert: Mapping[str, tuple[int, ...]]  # layer (as text) -> tokens of each expert
    imbalance_max: float
    imbalance_mean: float
    imbalance_all_layers: float
    unused_experts: int
    trace_sha256: str | None = jfield(optional=True)


@record
class MemoryUse:
    """How full the banks are: rows per bank used, the KV cache reserved."""

    JSON_ORDER = ("rows_per_bank_used", "rows_per_bank", "memory_used_fraction", "kv_cache_tokens_reserved",
                  "sequences", "kv_rows_per_bank_per_sequence", "sequences_that_fit", "fits", "kv_window_layers",
                  "kv_window_tokens", "cross_kv_tokens_reserved", "cross_kv_rows_per_bank")
    rows_per_bank_used: int
    rows_per_bank: int
    memory_used_fraction: float
    kv_cache_tokens_reserved: int
    # a batch: the sequences and what one costs
    sequences: int | None = jfield(optional=True)
    kv_rows_per_bank_per_sequence: int | None = jfield(optional=True)
    sequences_that_fit: int | None = jfield(optional=True)
    fits: bool | None = jfield(optional=True)
    # sliding-window layers keep a ring of tokens
    kv_window_layers: int | None = jfield(optional=True)
    kv_window_tokens: int | None = jfield(optional=True)
    # an encoder-decoder's cross-attention K/V
    cross_kv_tokens_reserved: int | None = jfield(optional=True)
    cross_kv_rows_per_bank: int | None = jfield(optional=True)


@record
class GraphSummary:
    """The traced graph: its op count, weights, and the graph's own metadata (layers, heads, ...: the
    tracer's typed :class:`~pimsim.workloads.opgraph.GraphMeta`, written at this level of the JSON)."""

    ops: int
    weights: int  # weight elements held in the memory
    meta: GraphMeta
    encoder_ops: int | None = None  # an encoder-decoder's encoder graph

    @property
    def layers(self) -> int:
        return self.meta.layers

    def to_json_dict(self) -> dict:
        out = {"ops": self.ops, "weights": self.weights, **self.meta.to_dict()}
        if self.encoder_ops is not None:
            out["encoder_ops"] = self.encoder_ops
        return out

    @classmethod
    def from_json_dict(cls, data: Mapping, where: str = "graph") -> GraphSummary:
        from pimsim.errors import PimsimError

        missing = [k for k in ("ops", "weights") if k not in data]
        if missing:
            raise PimsimError(f"{where}: no {', '.join(map(repr, missing))}")
        try:
            meta = GraphMeta.from_dict({k: v for k, v in data.items() if k not in ("ops", "weights", "encoder_ops")})
        except (ValueError, TypeError, KeyError) as exc:
            raise PimsimError(f"{where}: {exc}") from None
        return cls(ops=data["ops"], weights=data["weights"], meta=meta, encoder_ops=data.get("encoder_ops"))


@record
class EnergyActions:
    """What the energy was charged for."""

    JSON_ORDER = ("commands", "pin_bytes", "link_bytes", "asic_lane_ops", "asic_sram_bytes", "total_s",
                  "channel_busy_s")
    commands: Mapping[str, int]
    pin_bytes: int
    link_bytes: int
    asic_lane_ops: int
    asic_sram_bytes: int
    total_s: float
    channel_busy_s: tuple[float, ...]


@record
class EnergyDetail:
    """The energy model's answer: total, per component, and the costs and actions it priced
    (``costs`` is the resolved energy section's figures, as :func:`pimsim.energy.model.energy_J` gives)."""

    JSON_ORDER = ("total_J", "breakdown_J", "average_power_W", "costs", "actions")
    total_J: float
    breakdown_J: Mapping[str, float]
    average_power_W: float
    costs: Mapping[str, Any]
    actions: EnergyActions


@record
class RunEnergy:
    """A run's energy: per generated token, in all, by component."""

    JSON_ORDER = ("energy_per_token_J", "energy_total_J", "energy_breakdown_J", "energy_per_token_per_param_J",
                  "average_power_W", "energy", "energy_per_step_J")
    energy_per_token_J: float
    energy_total_J: float
    energy_breakdown_J: Mapping[str, float]  # component -> J over the whole run
    energy_per_token_per_param_J: float
    average_power_W: float
    detail: EnergyDetail | None = jfield("energy", optional=True)  # one device
    energy_per_step_J: float | None = jfield(optional=True)  # a batch: one lock-step step


@record
class PrefillRoofline:
    """The prefill's GEMMs on the ASIC or a host device, in closed form (the roofline)."""

    JSON_ORDER = ("time_s", "memory_s", "compute_s", "overhead_s", "bound", "weight_bytes", "asic_macs", "device",
                  "dtype", "bytes", "flops", "energy_J", "power_W", "energy_kind")
    time_s: float
    memory_s: float
    compute_s: float
    bound: str  # memory or compute
    overhead_s: float | None = jfield(optional=True)  # a host device's launch overheads
    # ASIC: the weights read (a number, not always whole: a narrow format packs weights into parts of a byte)
    weight_bytes: float | None = jfield(optional=True)
    asic_macs: int | None = jfield(optional=True)
    device: str | None = jfield(optional=True)  # a host device: its dtype, bytes moved and operations
    dtype: str | None = jfield(optional=True)
    bytes: float | None = jfield(optional=True)
    flops: float | None = jfield(optional=True)
    energy_J: float | None = jfield(optional=True)
    power_W: float | None = jfield(optional=True)
    energy_kind: str | None = jfield(optional=True)


@record
class PassEnergy:
    """The energy of one pass apart from the decode steps (a prefill or an encoder pass)."""

    JSON_ORDER = ("energy_J", "energy_breakdown_J", "average_power_W")
    energy_J: float
    energy_breakdown_J: Mapping[str, float]
    average_power_W: float


@record
class PrefillFigures:
    """The prefill, on its own: where it ran, its time, what was counted, its energy."""

    JSON_ORDER = ("on", "time_s", "prompt_tokens", "sequences", "weights_multiplied", "gemv_vectors", "gemv_chunks",
                  "breakdown_s", "breakdown_share", "row_hit_rate", "commands", "roofline", "kv_write_s",
                  *PassEnergy.JSON_ORDER)
    on: str  # pim, asic or a host device
    time_s: float
    prompt_tokens: int
    sequences: int
    weights_multiplied: int
    gemv_vectors: int | None = jfield(optional=True)  # in PIM
    gemv_chunks: int | None = jfield(optional=True)
    time: TimeBreakdown = jfield(flat=True)
    row_hit_rate: float | None = jfield()
    commands: Mapping[str, int] = jfield()
    roofline: PrefillRoofline | None = jfield(optional=True)  # on the ASIC or a host device
    kv_write_s: float | None = jfield(optional=True)  # the KV writes into the banks, simulated
    energy: PassEnergy | None = jfield(flat=True, default=None)


@record
class EncoderCounted:
    """What an encoder pass was made of."""

    JSON_ORDER = ("gemv_passes", "weights_streamed", "cross_kv_token_writes", "table_rows_read", "asic_matmul_macs",
                  "source_len")
    gemv_passes: int
    weights_streamed: int
    cross_kv_token_writes: int
    table_rows_read: int
    asic_matmul_macs: int
    source_len: int


@record
class EncoderFigures:
    """An encoder-decoder's encoder pass: once, before the first decode step, apart from its figures."""

    JSON_ORDER = ("time_s", "time_to_first_token_s", "source_len", "layers", "weights", "breakdown_s",
                  "breakdown_share", "breakdown_titles", "counted", "activation_bytes", "row_hit_rate", "commands",
                  "protocol_check", *PassEnergy.JSON_ORDER)
    time_s: float
    time_to_first_token_s: float
    source_len: int
    layers: int
    weights: int
    time: TimeBreakdown = jfield(flat=True)
    counted: EncoderCounted
    activation_bytes: int
    row_hit_rate: float | None
    commands: Mapping[str, int]
    protocol_check: ProtocolCheck | None = jfield(optional=True)
    energy: PassEnergy | None = jfield(flat=True, default=None)


@record
class HeteroPlacement:
    JSON_ORDER = ("fc", "attention", "link")
    fc: str
    attention: str
    link: str


@record
class HostDevice:
    JSON_ORDER = ("name", "dtype", "memory_bandwidth_GBps", "power_W")
    name: str
    dtype: str
    memory_bandwidth_GBps: float
    power_W: float


@record
class LinkFigures:
    JSON_ORDER = ("bandwidth_GBps", "latency_ns", "energy_pJ_per_bit")
    bandwidth_GBps: float
    latency_ns: float
    energy_pJ_per_bit: float


@record
class DecodePlacement:
    """The hetero placement (:mod:`pimsim.hetero`): FC GEMMs on a host device, attention in PIM, beside
    the run's all-PIM figures."""

    JSON_ORDER = ("placement", "fc_device", "link", "schedule", "schedule_per_step", "host_fc_s", "pim_attention_s",
                  "link_s", "serial_step_s", "overlap_step_s", "per_step_s", "latency_per_token_s", "total_time_s",
                  "tokens_per_s", "host_fc_J", "link_J", "pim_attention_J", "total_J", "energy_per_token_J", "note")
    placement: HeteroPlacement
    fc_device: HostDevice
    link: LinkFigures
    schedule: str
    schedule_per_step: tuple[str, ...]
    host_fc_s: float
    pim_attention_s: float
    link_s: float
    serial_step_s: tuple[float, ...]
    overlap_step_s: tuple[float, ...]
    per_step_s: tuple[float, ...]
    latency_per_token_s: float
    total_time_s: float
    tokens_per_s: float
    host_fc_J: float
    link_J: float
    pim_attention_J: float | None = jfield(optional=True)
    total_J: float | None = jfield(optional=True)
    energy_per_token_J: float | None = jfield(optional=True)
    note: str = jfield()


@record
class StageFigures:
    """One pipeline stage of a run on several devices."""

    JSON_ORDER = ("layers", "simulated_as_stage", "device_time_per_token_s", "shared_asic_extra_per_token_s",
                  "communication_per_token_s", "memory")
    layers: tuple[int, ...]
    simulated_as_stage: int
    device_time_per_token_s: float
    shared_asic_extra_per_token_s: float
    communication_per_token_s: float
    memory: MemoryUse


@record
class InterconnectFigures:
    """The interconnect the run used (its config section, :class:`pimsim.config.models.InterconnectConfig`)."""

    JSON_ORDER = ("preset", "topology", "bandwidth_GBps", "latency_ns", "switch_latency_ns", "energy_pJ_per_bit")
    preset: str | None
    topology: str  # ring or switch
    bandwidth_GBps: float
    latency_ns: float
    switch_latency_ns: float
    energy_pJ_per_bit: float


@record
class SystemFigures:
    """A run on several devices: the split, the interconnect, and what the exchanges between devices cost."""

    JSON_ORDER = ("devices", "tensor_parallel", "pipeline_parallel", "host_asic", "activation_bytes", "interconnect",
                  "communication_per_token_s", "communication_share", "communication_energy_per_token_J",
                  "communication_energy_share", "communication_bits_per_token", "exchanges_per_token",
                  "distinct_simulations", "stages")
    devices: int
    tensor_parallel: int
    pipeline_parallel: int
    host_asic: str
    activation_bytes: int  # bytes per activation element sent between devices
    interconnect: InterconnectFigures
    communication_per_token_s: float
    communication_share: float
    communication_energy_per_token_J: float
    communication_energy_share: float
    communication_bits_per_token: int
    exchanges_per_token: Mapping[str, int]
    distinct_simulations: int
    stages: tuple[StageFigures, ...]


# the top-level keys of a token-generation record, in the order they are written
_DECODE_HEAD = ("model", "hw", "tokens", "prompt_len", "schedule", "fidelity", "weight_format", "kv_format",
                *TokenLatency.JSON_ORDER, *TimeBreakdown.JSON_ORDER, "row_hit_rate", *DataMoved.JSON_ORDER,
                *Bound.JSON_ORDER, "commands", "row_hits", "row_misses", "row_conflicts", "distinct_streams",
                "protocol_check", "experts", "per_token_s", "memory", "graph", "model_card", "pimsim_version")
ONE_DEVICE_ORDER = (*_DECODE_HEAD, "config_hash", "notes", "batch", "tokens_generated", *RunEnergy.JSON_ORDER,
                    "prefill", "prefill_s", "ttft_s", "decode_placement", "source_len", "encoder")
SEVERAL_DEVICES_ORDER = (*_DECODE_HEAD, *RunEnergy.JSON_ORDER, "system", "config_hash", "notes")


@record
class DecodeRun:
    """Token generation: `gen_tokens` decode steps after `prompt_len` prompt tokens, on one device or
    several (``system``); with a prefill, a hetero placement or an encoder pass where the run had one."""

    model: str
    hw: str
    gen_tokens: int = jfield("tokens")  # decode steps (each sequence's tokens, for a batch)
    prompt_len: int
    schedule: str
    fidelity: str
    weight_format: str | None
    kv_format: str | None
    latency: TokenLatency = jfield(flat=True)
    per_token_s: tuple[float, ...]  # each step's time
    time: TimeBreakdown = jfield(flat=True)
    dram: DramCounts = jfield(flat=True)
    data: DataMoved = jfield(flat=True)
    bound: Bound = jfield(flat=True)
    protocol_check: ProtocolCheck | None = jfield(optional=True)
    experts: ExpertLoads | None = jfield(optional=True)
    memory: MemoryUse
    graph: GraphSummary
    model_card: Mapping[str, Any]  # the model card's JSON
    pimsim_version: str
    config_hash: str
    notes: tuple[str, ...]
    batch: int | None = jfield(optional=True)  # sequences in lock step (absent: one)
    tokens_generated: int | None = jfield(optional=True)  # a batch: every sequence's tokens
    energy: RunEnergy | None = jfield(flat=True, default=None)  # when the hardware has an energy section
    prefill: PrefillFigures | None = jfield(optional=True)
    prefill_s: float | None = jfield(optional=True)
    ttft_s: float | None = jfield(optional=True)  # time to first token: the prefill and the first step
    decode_placement: DecodePlacement | None = jfield(optional=True)
    source_len: int | None = jfield(optional=True)  # an encoder-decoder's source tokens
    encoder: EncoderFigures | None = jfield(optional=True)
    system: SystemFigures | None = jfield(optional=True)  # several devices

    def json_order(self):
        return ONE_DEVICE_ORDER if self.system is None else SEVERAL_DEVICES_ORDER

    @property
    def sequences(self) -> int:
        return self.batch or 1

    @property
    def energy_per_token_J(self) -> float | None:
        return self.energy.energy_per_token_J if self.energy is not None else None


@record
class SpecDecAcceptanceSettings:
    """The spec-dec card's acceptance: a rate (alpha, seed), a trace file or a measurement."""

    JSON_ORDER = ("alpha", "seed", "trace", "measure")
    alpha: float | None
    seed: int | None
    trace: str | None
    measure: Mapping[str, Any] | None


@record
class SpecDecSettings:
    """The spec-dec card the run used (:class:`pimsim.workloads.specdec.SpecDec`'s JSON)."""

    JSON_ORDER = ("version", "kind", "name", "description", "target", "draft", "k", "policy", "placement",
                  "draft_channels", "acceptance")
    version: int
    kind: str
    name: str
    description: str
    target: str
    draft: str
    k: int  # drafts per verify step
    policy: str  # vanilla or pearl
    placement: str  # same, group or asic
    draft_channels: int | None
    acceptance: SpecDecAcceptanceSettings


@record
class AcceptanceUsed:
    """How the run drew accepted counts: a rate (alpha, seed) or a trace of counts replayed (a file, or
    counts measured with real weights)."""

    JSON_ORDER = ("kind", "alpha", "seed", "file", "steps", "mean_accepted", "wrapped")
    kind: str  # rate or trace
    alpha: float | None = jfield(optional=True)
    seed: int | None = jfield(optional=True)
    file: str | None = jfield(optional=True)  # the trace's file, or "measured (weights)"
    steps: int | None = jfield(optional=True)
    mean_accepted: float | None = jfield(optional=True)
    wrapped: bool | None = jfield(optional=True)  # the run outlasted the trace and started it again


@record
class SpecDecTimes:
    JSON_ORDER = ("draft", "verify")
    draft_s: float = jfield("draft")  # busy time of the draft model
    verify_s: float = jfield("verify")  # of the target's verify passes


@record
class AutoregressiveBaseline:
    """The target decoding the same tokens on its own: what speed-up and energy ratio are over."""

    JSON_ORDER = ("latency_per_token_s", "energy_per_token_J", "config_hash")
    latency_per_token_s: float
    energy_per_token_J: float | None
    config_hash: str


@record
class AsicDraft:
    """A draft run on the ASIC, in closed form."""

    JSON_ORDER = ("ps", "reads", "macs", "method")
    time_ps: int = jfield("ps")
    reads: int
    macs: int
    method: str


@record
class SpecDecEnergy:
    JSON_ORDER = ("energy_per_token_J", "energy_total_J", "energy_by_model_J", "energy_ratio_over_autoregressive")
    energy_per_token_J: float
    energy_total_J: float
    energy_by_model_J: Mapping[str, float]
    energy_ratio_over_autoregressive: float | None = jfield(optional=True)


@record
class SpecDecRun:
    """Speculative decoding: rounds of drafts and verify passes, against the target alone."""

    JSON_ORDER = ("spec_dec", "weight_format", "model_cards", "config_hash", "target", "draft", "hw", "prompt_len",
                  "tokens", "fidelity", "rounds", "target_passes", "drafts", "accepted", "kept",
                  "tokens_per_verify_step", "latency_per_token_s", "tokens_per_s", "total_time_s", "time_s",
                  "autoregressive", "speedup_over_autoregressive", "acceptance", "notes",
                  "expected_tokens_per_verify_step", "measured_acceptance", "asic_draft", *SpecDecEnergy.JSON_ORDER)
    spec_dec: SpecDecSettings
    weight_format: str | None
    model_cards: Mapping[str, Mapping[str, Any]]  # target and draft: each card's JSON
    config_hash: str
    target: str
    draft: str
    hw: str
    prompt_len: int
    gen_tokens: int = jfield("tokens")
    fidelity: str
    rounds: int
    target_passes: int
    drafts: tuple[int, ...]  # per round
    accepted: tuple[int, ...]
    kept: tuple[int, ...]
    tokens_per_verify_step: float
    latency_per_token_s: float
    tokens_per_s: float
    total_time_s: float
    time_s: SpecDecTimes
    autoregressive: AutoregressiveBaseline
    speedup_over_autoregressive: float
    acceptance: AcceptanceUsed
    notes: tuple[str, ...]
    expected_tokens_per_verify_step: float | None = jfield(optional=True)  # vanilla with a rate
    measured_acceptance: Mapping[str, Any] | None = jfield(optional=True)
    asic_draft: AsicDraft | None = jfield(optional=True)
    energy: SpecDecEnergy | None = jfield(flat=True, default=None)

    @property
    def energy_per_token_J(self) -> float | None:
        return self.energy.energy_per_token_J if self.energy is not None else None
