"""Pydantic models of a hardware description. Units live in field names; unknown keys are errors.

Structural checks (types, ranges, unknown keys) are here; relations between fields and checks that
need the DRAM standard (timing parameter names, nRAS <= nRC, ...) are in :mod:`pimsim.config.checks`,
which runs on the same input so that every problem is reported at once.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, model_serializer

from pimsim.dram.standards import STANDARDS


def _not_bool(value: Any) -> Any:
    # YAML reads `true` as a boolean, and pydantic would take it as the number 1
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, str):  # a quoted number would pass here but skip every cross-field check
        raise ValueError("expected a number, got text")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _QuietDefaults(BaseModel):
    """A section whose ``QUIET`` fields are left out of its dump while they hold their default: knobs added
    after results were published (a multi-vector datapath) that change nothing at their default, so a
    description that does not use them resolves, and hashes, as it did before they existed."""

    QUIET: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_quiet_defaults(self, handler):
        data = handler(self)
        for name in self.QUIET:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data


class Organization(StrictModel):
    channels: StrictInt = Field(ge=1, description="independent channels (pseudo-channels for HBM)")
    ranks: StrictInt = Field(1, ge=1, description="ranks per channel")
    bankgroups: StrictInt = Field(ge=1, description="bank groups per rank")
    banks_per_group: StrictInt = Field(ge=1, description="banks per bank group")
    rows: StrictInt = Field(ge=1, description="rows per bank")
    columns: StrictInt = Field(ge=1, description="column addresses per row (device columns)")
    channel_width_bits: StrictInt = Field(ge=1, description="data bus width of one channel")
    burst_length: StrictInt = Field(ge=1, description="beats per column access")

    @property
    def banks(self) -> int:
        return self.bankgroups * self.banks_per_group

    @property
    def access_bytes(self) -> int:
        """Bytes moved by one column command (one burst on the channel)."""
        return self.channel_width_bits * self.burst_length // 8

    @property
    def row_bytes(self) -> int:
        return self.columns * self.channel_width_bits // 8

    @property
    def accesses_per_row(self) -> int:
        return self.columns // self.burst_length

    @property
    def capacity_bytes(self) -> int:
        return self.channels * self.ranks * self.banks * self.rows * self.row_bytes


class Refresh(StrictModel):
    enabled: StrictBool = Field(True, description="issue refresh as the policy says (all-bank: every nREFI)")
    policy: str | None = Field(None, description="one of the standard's refresh policies (all-bank, per-bank, "
                                                 "...); unset: the standard's first")

    @model_serializer(mode="wrap")
    def _omit_unset_policy(self, handler):
        # an unset policy is left out, so configs that never name one dump (and hash) as before
        data = handler(self)
        if data.get("policy") is None:
            data.pop("policy", None)
        return data


class Controller(StrictModel):
    scheduler: Literal["fr-fcfs", "fcfs"] = Field("fr-fcfs", description="request scheduling policy")
    queue_depth: StrictInt = Field(32, ge=1, le=4096, description="request queue entries per channel")
    row_policy: Literal["open"] = Field("open", description="rows stay open until a conflict or a refresh")


ADDRESS_FIELDS = ("channel", "rank", "row", "bankgroup", "bank", "column", "offset")


class DramConfig(StrictModel):
    standard: Literal[tuple(STANDARDS)]  # type: ignore[valid-type]
    tCK_ps: Number = Field(ge=1e-3, le=1e6, description="clock period of the command clock")
    data_rate_Gbps_per_pin: Number = Field(ge=1e-3, le=1e3, description="data rate of one DQ pin")
    organization: Organization
    timing: dict[str, StrictInt] = Field(description="timing parameters in cycles of tCK_ps (n-prefix)")
    refresh: Refresh = Refresh()
    controller: Controller = Controller()
    address_mapping: list[Literal[ADDRESS_FIELDS]] = Field(  # type: ignore[valid-type]
        description="address fields from the most significant bit down"
    )

    @property
    def tCK_s(self) -> float:
        return self.tCK_ps * 1e-12

    @property
    def peak_bandwidth_Bps(self) -> float:
        """Peak external bandwidth of all channels."""
        org = self.organization
        return org.channels * org.channel_width_bits * self.data_rate_Gbps_per_pin * 1e9 / 8

    def field_bits(self) -> dict[str, int]:
        org = self.organization
        counts = {
            "channel": org.channels,
            "rank": org.ranks,
            "bankgroup": org.bankgroups,
            "bank": org.banks_per_group,
            "row": org.rows,
            "column": org.accesses_per_row,
            "offset": org.access_bytes,
        }
        return {k: int(math.log2(v)) for k, v in counts.items()}


WeightFormat = Literal["bf16", "fp16", "fp8-e4m3", "int8", "int4-g128", "ternary", "ternary-b3", "binary"]
ActivationFormat = Literal["bf16", "fp16", "int8"]
KvFormat = Literal["bf16", "fp16", "int8", "fp8-e4m3"]  # pimsim.pim.formats.KV_FORMATS
AccumulatorFormat = Literal["fp32", "fp16", "int32"]


class PimFormat(StrictModel):
    """The MAC datapath for one more weight format (ternary and binary weights use sign-select adders)."""

    lanes: StrictInt = Field(ge=1, le=65536, description="products one pass of a MAC works on (the adder tree's "
                                                          "width for accumulate: tree)")
    activation_format: ActivationFormat = Field(description="format of the input vector in the global buffer")
    accumulator_format: AccumulatorFormat = Field(description="format of the MAC accumulators")
    accumulate: Literal["tree", "lanes"] | None = Field(None, description="default: as the native format")
    mac_cycles: StrictInt = Field(0, ge=0, le=4096, description="tCK cycles one pass of the lanes keeps a unit "
                                                                "busy (0: as fast as the column path delivers)")


class PimConfig(StrictModel, _QuietDefaults):
    QUIET: ClassVar[tuple[str, ...]] = ("vectors_per_mac",)

    banks_per_unit: StrictInt = Field(ge=1, description="banks sharing one PIM MAC unit")
    lanes_per_unit: StrictInt = Field(ge=1, description="multiply-accumulate lanes per unit")
    global_buffer_bytes: StrictInt = Field(ge=1, description="input-vector buffer per channel")
    weight_format: WeightFormat = Field(description="format of weights in the banks")
    accumulator_format: AccumulatorFormat = Field(description="format of the MAC accumulators")
    accumulate: Literal["tree", "lanes"] = Field(
        description="tree: an adder tree sums a MAC's lane products into one accumulator per unit (AiM); "
                    "lanes: each lane accumulates on its own (SIMD, HBM-PIM)")
    activation_format: ActivationFormat | None = Field(
        None, description="format of the input vector in the global buffer (default: the weight format; "
                          "ternary and binary weights need one)")
    mac_cycles: StrictInt = Field(0, ge=0, le=4096, description="tCK cycles one pass of the lanes keeps a unit "
                                                                "busy (0: as fast as the column path delivers)")
    kv_format: KvFormat | None = Field(
        None, description="format of the KV cache, the embeddings and the LM head (default: the activation "
                          "format); attention MACs use its datapath")
    formats: dict[WeightFormat, PimFormat] = Field(
        default_factory=dict, description="more weight formats the MAC units support (pimsim run --weight-format)")
    accumulator_registers: StrictInt = Field(1, ge=1, le=64, description="accumulator registers per unit a MAC "
                                                                         "may name (HBM-PIM: GRF_B, 8); 1: one "
                                                                         "accumulator (AiM)")
    buffer_vectors: StrictInt = Field(1, ge=1, le=64, description="input vectors the global buffer holds side by "
                                                                  "side, global_buffer_bytes each (a wider buffer "
                                                                  "for speculative verify steps)")
    vectors_per_mac: StrictInt = Field(1, ge=1, le=64, description="buffered input vectors one MAC command "
                                                                   "multiplies the open row's burst by (more "
                                                                   "multipliers and accumulators per unit; 1: "
                                                                   "today's devices). Needs buffer_vectors at least "
                                                                   "as large, and energy.dram.mac_vector_pJ")

    @property
    def input_format(self) -> str:
        return self.activation_format or self.weight_format

    @property
    def cache_format(self) -> str:
        return self.kv_format or self.input_format

    @property
    def supported_formats(self) -> tuple[str, ...]:
        return (self.weight_format, *sorted(f for f in self.formats if f != self.weight_format))

    def datapath(self, fmt: str | None = None) -> PimFormat:
        """The MAC datapath for weights (or KV values) in `fmt` (default: the weight format)."""
        fmt = fmt or self.weight_format
        if fmt == self.weight_format:
            return PimFormat(lanes=self.lanes_per_unit, activation_format=self.input_format,
                             accumulator_format=self.accumulator_format, accumulate=self.accumulate,
                             mac_cycles=self.mac_cycles)
        if fmt not in self.formats:
            raise ValueError(f"the PIM units do not support {fmt} (supported: {', '.join(self.supported_formats)})")
        spec = self.formats[fmt]
        return spec if spec.accumulate else spec.model_copy(update={"accumulate": self.accumulate})


# activations, KV values and accumulators
FORMAT_BITS = {"bf16": 16, "fp16": 16, "int8": 8, "fp8-e4m3": 8, "fp32": 32, "int32": 32}


class MappingConfig(StrictModel):
    """Which mapper strategy places each kind of operation (see pimsim.mapper)."""

    gemv: Literal["row_partition", "wave_major", "hbm_pim_gemv"] = Field(
        "row_partition", description="row_partition: output rows over channels x PIM units, the input dimension "
                                     "along DRAM rows, one partial sum per global-buffer block; wave_major: the "
                                     "same placement, each row open across all blocks of its segment; "
                                     "hbm_pim_gemv: Samsung HBM-PIM's GEMV kernel (pimsim.mapper.hbm_pim_gemv): "
                                     "8 output rows per unit kept in GRF_B across the whole input, 128-element "
                                     "input tiles in GRF_A, mode switches and CRF program load per kernel "
                                     "(weight GEMVs; attention keeps row_partition)")
    channel_split: Literal["auto", "never"] = Field(
        "auto", description="auto: a matrix with at most half as many output rows as PIM slots (the transposed V "
                            "cache, a K cache reserved for few tokens) is split over channel groups, each group "
                            "holding one part of the input dimension; never: such matrices use only the channels "
                            "their rows reach")
    verify: Literal["auto", "row_reuse", "vector_major"] = Field(
        "auto", description="a GEMV of several input vectors (a speculative verify step): row_reuse opens each row "
                            "once for all vectors, rewriting the global buffer per vector unless pim.buffer_vectors "
                            "holds them all; vector_major runs the whole GEMV once per vector (the buffer written "
                            "once per vector, every row opened per vector); auto: row_reuse where the buffer holds "
                            "every vector, else vector_major (rewriting a one-vector buffer inside every open row "
                            "costs more than reopening the rows on both bundled PIM configs)")
    row_packing: Literal["auto", "never"] = Field(
        "auto", description="auto: a weight matrix whose rows fill at most half a DRAM row (narrow weight formats) "
                            "holds several output rows per DRAM row, each on a global-buffer boundary, so one row "
                            "activation serves them all; never: one output row's segment per DRAM row")


class LinkConfig(StrictModel):
    """The path between the ASIC and one channel's memory controller (one link per channel)."""

    width_bits: StrictInt = Field(ge=1, le=65536, description="bits moved per link clock")
    freq_MHz: Number = Field(ge=1e-3, le=1e5, description="link clock")
    latency_ns: Number = Field(ge=0, le=1e6, description="fixed latency of one transfer")


class AsicConfig(StrictModel):
    """The ASIC beside the PIM memory: vector lanes and a special-function unit (PIM-GPT section 3)."""

    freq_MHz: Number = Field(ge=1e-3, le=1e5, description="ASIC clock")
    lanes: StrictInt = Field(ge=1, le=65536, description="vector lanes (elements per cycle per pass)")
    pipeline_cycles: StrictInt = Field(ge=0, le=10000, description="fill latency added to every operation")
    sram_bytes: StrictInt = Field(ge=1, description="on-chip buffer for vectors (activations, scores, partial sums)")
    exp_taylor_terms: StrictInt = Field(ge=1, le=64, description="Taylor terms of exp (softmax, sigmoid, tanh)")
    gelu_taylor_terms: StrictInt = Field(ge=1, le=64, description="Taylor terms of GELU")
    reciprocal_newton_iterations: StrictInt = Field(ge=0, le=16, description="Newton-Raphson steps of 1/x")
    rsqrt_newton_iterations: StrictInt = Field(ge=0, le=16, description="Newton steps after the fast 1/sqrt guess")
    link: LinkConfig

    @property
    def period_ps(self) -> float:
        return 1e6 / self.freq_MHz


CURRENTS = ("IDD0", "IDD2N", "IDD3N", "IDD4R", "IDD4W", "IDD5B")
# commands whose energy the datasheet-current method gives (the rest must be stated in pJ): by the kind
# each command declares (pimsim.dram.standard.current_formula), not by name
def from_currents(standard) -> set[str]:
    from pimsim.dram.standard import current_formula

    return {c.name for c in standard.commands if current_formula(c) is not None}


Cost = Annotated[Number, Field(ge=0, le=1e7)]  # 10 uJ a command: far past any device, so a unit slip shows


class DramEnergy(StrictModel, _QuietDefaults):
    """Energy of the memory, per channel. Either pJ per command plus background power, or the
    datasheet currents of one channel's devices (with VDD) from which both follow; PIM commands the
    currents say nothing about (MACAB, WRGB, RDMAC, ...) are given in pJ either way."""

    VDD_V: Number | None = Field(None, gt=0, le=5, description="supply voltage the currents are measured at")
    currents_mA: dict[str, Annotated[Number, Field(gt=0, le=1e5)]] | None = Field(
        None, description=f"per channel: {', '.join(CURRENTS)}")
    per_command_pJ: dict[str, Cost] = Field(
        default_factory=dict, description="energy of one command")
    background_mW: dict[str, Annotated[Number, Field(ge=0, le=1e6)]] | None = Field(
        None, description="per channel: 'active' (a row open) and 'precharged' standby power")
    mac_pJ_by_format: dict[WeightFormat, dict[Literal["MACAB", "MACSB"], Cost]] = Field(
        default_factory=dict, description="MACAB and MACSB energy for each extra weight format of pim.formats")
    mac_vector_pJ: Cost | None = Field(
        None, description="what each buffered vector after the first adds to a MAC command's energy (its "
                          "multipliers and accumulator; the row's column read is shared): needed when "
                          "pim.vectors_per_mac > 1")

    QUIET: ClassVar[tuple[str, ...]] = ("mac_vector_pJ",)


class AsicEnergy(StrictModel):
    # upper limits far beyond any real circuit: a value past them is a unit mistake (fJ for pJ, uW for mW)
    lane_op_pJ: Number = Field(ge=0, le=1e4, description="one lane's arithmetic step (one pass over one element)")
    sram_pJ_per_byte: Number = Field(ge=0, le=1e4, description="reading or writing one byte of the ASIC's buffer")
    leakage_mW: Number = Field(ge=0, le=1e6, description="static power of the ASIC")


class EnergyConfig(StrictModel):
    dram: DramEnergy
    io_pJ_per_bit: Number = Field(ge=0, le=1e3, description="moving one bit over the memory's pins (RD, WR, WRGB, "
                                                            "RDMAC)")
    link_pJ_per_bit: Number = Field(0.0, ge=0, le=1e3, description="moving one bit over an ASIC<->controller link")
    asic: AsicEnergy | None = None


class InterconnectConfig(StrictModel):
    """The links between the devices of a system (``pimsim run --devices N``). ``preset`` names the bundled
    file (hwconfigs/interconnects/NAME.yaml) the other values were read from; values given beside it win."""

    preset: str | None = Field(None, description="bundled interconnect the values came from (pcie5-x16, cxl2-x16)")
    topology: Literal["ring", "switch"] = Field(description="ring: each device linked to the next; switch: every "
                                                            "device on one port of a switch")
    bandwidth_GBps: Number = Field(gt=0, le=1e5, description="one device's link, each direction (1 GB = 1e9 B)")
    latency_ns: Number = Field(ge=0, le=1e6, description="one message device to device (with a switch: to and "
                                                         "from the switch), before its first byte arrives")
    switch_latency_ns: Number = Field(0.0, ge=0, le=1e6, description="added per message by the switch "
                                                                     "(topology switch only)")
    energy_pJ_per_bit: Number = Field(ge=0, le=1e3, description="moving one bit from one device to another")


class SystemConfig(StrictModel):
    """Several devices of this hardware joined by an interconnect (each device is the rest of the file)."""

    devices: StrictInt = Field(1, ge=1, le=4096, description="devices of the system as built (--devices overrides)")
    parallel: str | None = Field(None, description="how a model is split over them: tp, pp or tp=T,pp=P "
                                                   "(--parallel overrides)")
    host_asic: Literal["per_device", "shared"] = Field(
        "per_device", description="per_device: each device has its own ASIC; shared: one host ASIC does every "
                                  "device's vector work, one device after another")
    activation_bytes: StrictInt = Field(2, ge=1, le=8, description="bytes of one activation value sent between "
                                                                   "devices")
    interconnect: InterconnectConfig | None = None


class HardwareConfig(StrictModel):
    version: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(description="schema version of this file")
    name: str = Field(min_length=1)
    description: str = ""
    dram: DramConfig
    pim: PimConfig | None = None
    asic: AsicConfig | None = None
    energy: EnergyConfig | None = None
    mapping: MappingConfig = MappingConfig()
    system: SystemConfig | None = None

    @model_serializer(mode="wrap")
    def _without_absent_system(self, handler):
        # a single-device description dumps (and hashes) as it did before systems existed
        data = handler(self)
        if self.system is None and isinstance(data, dict):
            data.pop("system", None)
        return data

    @property
    def standard(self):
        return STANDARDS[self.dram.standard]

    def with_weight_format(self, fmt: str) -> HardwareConfig:
        """This hardware holding its weights in `fmt`: the MAC datapath of ``pim.formats[fmt]`` (and its
        MAC energy) becomes the active one; the KV cache stays in the format it had. A format the units
        do not support is a ValueError naming those they do."""
        pim = self.pim
        if pim is None:
            raise ValueError(f"{self.name}: has no pim section, so it holds no weights in any format")
        if fmt == pim.weight_format:
            return self
        spec = pim.formats.get(fmt)
        if spec is None:
            raise ValueError(f"{self.name}: its PIM units do not support {fmt} weights (supported: "
                             f"{', '.join(pim.supported_formats)}; add pim.formats.{fmt} to the config)")
        native = pim.datapath()  # kept, so the run can switch back and its KV cache keeps a datapath
        formats = {k: v for k, v in pim.formats.items() if k != fmt}
        formats[pim.weight_format] = native
        new_pim = pim.model_copy(update=dict(
            weight_format=fmt, lanes_per_unit=spec.lanes, activation_format=spec.activation_format,
            accumulator_format=spec.accumulator_format, accumulate=spec.accumulate or pim.accumulate,
            mac_cycles=spec.mac_cycles, kv_format=pim.cache_format, formats=formats))
        update: dict[str, Any] = {"pim": new_pim}
        if self.energy is not None:
            dram = self.energy.dram
            by_format = dict(dram.mac_pJ_by_format)
            costs = dict(dram.per_command_pJ)
            if fmt in by_format:
                by_format[pim.weight_format] = {k: costs[k] for k in ("MACAB", "MACSB") if k in costs}
                costs.update(by_format.pop(fmt))
            update["energy"] = self.energy.model_copy(update={"dram": dram.model_copy(
                update={"per_command_pJ": costs, "mac_pJ_by_format": by_format})})
        return self.model_copy(update=update)
