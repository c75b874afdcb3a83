"""Pydantic models of a hardware description. Units live in field names; unknown keys are errors.

Structural checks (types, ranges, unknown keys) are here; relations between fields and checks that
need the DRAM standard (timing parameter names, nRAS <= nRC, ...) are in :mod:`pimsim.config.checks`,
which runs on the same input so that every problem is reported at once.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from pimsim.dram.standards import STANDARDS


def _not_bool(value: Any) -> Any:
    # YAML reads `true` as a boolean, and pydantic would take it as the number 1
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    enabled: StrictBool = Field(True, description="issue all-bank refresh every nREFI")


class Controller(StrictModel):
    scheduler: Literal["fr-fcfs", "fcfs"] = Field("fr-fcfs", description="request scheduling policy")
    queue_depth: StrictInt = Field(32, ge=1, le=4096, description="request queue entries per channel")
    row_policy: Literal["open"] = Field("open", description="rows stay open until a conflict or a refresh")


ADDRESS_FIELDS = ("channel", "rank", "row", "bankgroup", "bank", "column", "offset")


class DramConfig(StrictModel):
    standard: Literal[tuple(STANDARDS)]  # type: ignore[valid-type]
    tCK_ps: Number = Field(gt=0, le=1e6, description="clock period of the command clock")
    data_rate_Gbps_per_pin: Number = Field(gt=0, le=1e3, description="data rate of one DQ pin")
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


class PimConfig(StrictModel):
    banks_per_unit: StrictInt = Field(ge=1, description="banks sharing one PIM MAC unit")
    lanes_per_unit: StrictInt = Field(ge=1, description="multiply-accumulate lanes per unit")
    global_buffer_bytes: StrictInt = Field(ge=1, description="input-vector buffer per channel")
    weight_format: Literal["bf16", "fp16", "int8"] = Field(description="format of weights in the banks")
    accumulator_format: Literal["fp32", "fp16", "int32"] = Field(description="format of the MAC accumulators")
    accumulate: Literal["tree", "lanes"] = Field(
        description="tree: an adder tree sums a MAC's lane products into one accumulator per unit (AiM); "
                    "lanes: each lane accumulates on its own (SIMD, HBM-PIM)")


FORMAT_BITS = {"bf16": 16, "fp16": 16, "int8": 8, "fp32": 32, "int32": 32}


class MappingConfig(StrictModel):
    """Which mapper strategy places each kind of operation (see pimsim.mapper)."""

    gemv: Literal["row_partition", "wave_major"] = Field(
        "row_partition", description="row_partition: output rows over channels x PIM units, the input dimension "
                                     "along DRAM rows, one partial sum per global-buffer block; wave_major: the "
                                     "same placement, each row open across all blocks of its segment")
    channel_split: Literal["auto", "never"] = Field(
        "auto", description="auto: a matrix with at most half as many output rows as PIM slots (the transposed V "
                            "cache, a K cache reserved for few tokens) is split over channel groups, each group "
                            "holding one part of the input dimension; never: such matrices use only the channels "
                            "their rows reach")


class LinkConfig(StrictModel):
    """The path between the ASIC and one channel's memory controller (one link per channel)."""

    width_bits: StrictInt = Field(ge=1, le=65536, description="bits moved per link clock")
    freq_MHz: Number = Field(gt=0, le=1e5, description="link clock")
    latency_ns: Number = Field(ge=0, le=1e6, description="fixed latency of one transfer")


class AsicConfig(StrictModel):
    """The ASIC beside the PIM memory: vector lanes and a special-function unit (PIM-GPT section 3)."""

    freq_MHz: Number = Field(gt=0, le=1e5, description="ASIC clock")
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
# commands whose energy the datasheet-current method gives (the rest must be stated in pJ)
FROM_CURRENTS = ("ACT", "PRE", "PREA", "ACTAB", "RD", "WR", "REF")


class DramEnergy(StrictModel):
    """Energy of the memory, per channel. Either pJ per command plus background power, or the
    datasheet currents of one channel's devices (with VDD) from which both follow; PIM commands the
    currents say nothing about (MACAB, WRGB, RDMAC, ...) are given in pJ either way."""

    VDD_V: Number | None = Field(None, gt=0, le=5, description="supply voltage the currents are measured at")
    currents_mA: dict[str, Annotated[Number, Field(gt=0, le=1e5)]] | None = Field(
        None, description=f"per channel: {', '.join(CURRENTS)}")
    per_command_pJ: dict[str, Annotated[Number, Field(ge=0, le=1e9)]] = Field(
        default_factory=dict, description="energy of one command")
    background_mW: dict[str, Annotated[Number, Field(ge=0, le=1e6)]] | None = Field(
        None, description="per channel: 'active' (a row open) and 'precharged' standby power")


class AsicEnergy(StrictModel):
    lane_op_pJ: Number = Field(ge=0, description="one lane's arithmetic step (one pass over one element)")
    sram_pJ_per_byte: Number = Field(ge=0, description="reading or writing one byte of the ASIC's buffer")
    leakage_mW: Number = Field(ge=0, description="static power of the ASIC")


class EnergyConfig(StrictModel):
    dram: DramEnergy
    io_pJ_per_bit: Number = Field(ge=0, description="moving one bit over the memory's pins (RD, WR, WRGB, RDMAC)")
    link_pJ_per_bit: Number = Field(0.0, ge=0, description="moving one bit over an ASIC<->controller link")
    asic: AsicEnergy | None = None


class HardwareConfig(StrictModel):
    version: Annotated[Literal[1], BeforeValidator(_not_bool)] = Field(description="schema version of this file")
    name: str = Field(min_length=1)
    description: str = ""
    dram: DramConfig
    pim: PimConfig | None = None
    asic: AsicConfig | None = None
    energy: EnergyConfig | None = None
    mapping: MappingConfig = MappingConfig()

    @property
    def standard(self):
        return STANDARDS[self.dram.standard]
