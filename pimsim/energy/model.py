"""Energy = sum over actions of count x cost + background power x time. SI units inside (J, W, s).

Costs come from the ``energy`` section of the hardware config (each with its source beside it):
either pJ per command, or the datasheet currents of one channel, turned into energies by the usual
current-based method (Micron TN-41-01; the form DRAMPower uses), per channel with tRC, tRAS, the burst
time and tRFC from the config's timing:

    E(ACT + PRE) = VDD (IDD0 tRC - IDD3N tRAS - IDD2N (tRC - tRAS))     (charged on ACT; PRE is 0)
    E(RD burst)  = VDD (IDD4R - IDD3N) tBURST          E(WR burst) = VDD (IDD4W - IDD3N) tBURST
    E(REF)       = VDD (IDD5B - IDD3N) tRFC            background  = VDD IDD3N (a row open), VDD IDD2N
    E(ACTAB)     = banks x E(ACT + PRE)                E(PREA)     = 0

Commands the currents say nothing about (the PIM ones) are given in pJ; a pJ figure overrides the
derived one. Background: a channel counts as active (rows open) while it runs a command stream and
precharged otherwise (PIM streams keep rows open almost throughout; between streams every row is
closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pimsim.dram.standard import current_formula
from pimsim.errors import PimsimError

if TYPE_CHECKING:  # annotations only: a plot that needs COMPONENTS does not load pydantic or numba
    from pimsim.config.models import HardwareConfig
    from pimsim.dram.compile import Compiled

COMPONENTS = {  # component -> title (report order)
    "activations": "row activations (ACT, ACTAB, PRE, PREA)",
    "mac": "PIM MACs in the banks (MACAB, MACSB)",
    "array_rw": "array reads/writes (RD, WR, WRAB)",
    "global_buffer": "PIM registers (WRGB, RDMAC, mode changes)",
    "refresh": "refresh (REF)",
    "io": "data over the memory's pins",
    "link": "data over the ASIC<->controller links",
    "asic_compute": "ASIC vector lanes",
    "asic_sram": "ASIC buffer reads and writes",
    "dram_background": "memory standby (active while streaming)",
    "asic_leakage": "ASIC static power",
}
# Each DRAM/PIM command's energy class (the component its energy counts to) is declared by the command
# itself (pimsim.dram.standard.Command.energy, one of these components); a standard whose command leaves it
# undeclared is refused when it is built, so nothing is ever billed to a default component.


@dataclass
class Actions:
    """Everything a run did that costs energy."""

    commands: dict[str, int]  # DRAM/PIM commands by kind, all channels
    total_s: float  # simulated time
    busy_s: np.ndarray  # per channel: time spent running command streams
    pin_bytes: int = 0  # bytes over the memory's pins
    link_bytes: int = 0  # bytes over the ASIC<->controller links
    lane_ops: int = 0  # ASIC lane steps
    sram_bytes: int = 0  # ASIC buffer traffic
    macs_by_format: dict[str, int] | None = None  # MAC commands by the datapath's format (default: all the active one)
    extra_vector_macs: int = 0  # MAC commands x vectors each multiplied beyond its first (pim.vectors_per_mac)
    notes: list[str] = field(default_factory=list)


def command_energies_J(compiled: Compiled) -> dict[str, float]:
    """Energy of one command of each kind (J), per the config."""
    hw = compiled.hw
    if hw.energy is None:
        raise PimsimError(f"{hw.name}: has no energy section; add one to get energy figures")
    dram = hw.energy.dram
    out: dict[str, float] = {}
    if dram.currents_mA is not None:
        t, tck = compiled.timing, hw.dram.tCK_s
        i = {k: v * 1e-3 for k, v in dram.currents_mA.items()}
        vdd = dram.VDD_V
        trc, tras, tburst, trfc = t["nRC"] * tck, t["nRAS"] * tck, t["nBL"] * tck, t["nRFC"] * tck
        act = vdd * (i["IDD0"] * trc - i["IDD3N"] * tras - i["IDD2N"] * (trc - tras))
        banks = hw.dram.organization.banks
        ref = vdd * (i["IDD5B"] - i["IDD3N"]) * trfc
        # a per-bank refresh: assumed the same charge per bank as an all-bank one (every row is refreshed
        # once per nREFI either way), so the rank's refresh energy does not depend on the policy
        by_formula = {"activate": act, "activate-all": act * banks, "precharge": 0.0,
                      "read": vdd * (i["IDD4R"] - i["IDD3N"]) * tburst,
                      "write": vdd * (i["IDD4W"] - i["IDD3N"]) * tburst, "refresh": ref, "refresh-bank": ref / banks}
        for c in compiled.standard.commands:
            formula = current_formula(c)
            if formula is not None:
                out[c.name] = by_formula[formula]
    out.update({k: v * 1e-12 for k, v in dram.per_command_pJ.items()})
    missing = [c for c in compiled.command_names if c not in out]
    if missing:  # validation prevents this; kept as a guard for hand-built configs
        raise PimsimError(f"{hw.name}: no energy for {', '.join(missing)}")
    return out


def background_W(hw: HardwareConfig) -> tuple[float, float]:
    """(active, precharged) standby power of one channel."""
    dram = hw.energy.dram
    if dram.currents_mA is not None:
        return dram.VDD_V * dram.currents_mA["IDD3N"] * 1e-3, dram.VDD_V * dram.currents_mA["IDD2N"] * 1e-3
    return dram.background_mW["active"] * 1e-3, dram.background_mW["precharged"] * 1e-3


def pin_bytes(compiled: Compiled, commands: dict[str, int]) -> int:
    """Bytes the data-carrying commands move over the pins."""
    return sum(n * compiled.transfer_bytes(c) for c, n in commands.items())


def _other_datapaths_J(hw: HardwareConfig, macs_by_format: dict[str, int], per_command: dict[str, float]) -> float:
    """What MACs on another datapath than the active weight format's (the KV cache, embeddings and LM head
    of a run with narrow block weights) cost beyond the active MACAB price they were counted at."""
    extra = 0.0
    table = hw.energy.dram.mac_pJ_by_format
    for fmt, n in macs_by_format.items():
        if fmt == hw.pim.weight_format or not n:
            continue
        if fmt not in table or "MACAB" not in table[fmt]:
            raise PimsimError(f"{hw.name}: {n:,} MACs ran in {fmt}, but energy.dram.mac_pJ_by_format has no {fmt} "
                              "MACAB cost")
        extra += n * (table[fmt]["MACAB"] * 1e-12 - per_command["MACAB"])
    return extra


def _command_classes(compiled: Compiled, commands) -> dict[str, str]:
    """The component each command counts to, as its standard declares it; a name the standard does not
    know is refused (an action count from another standard's stream)."""
    std = compiled.standard
    unknown = sorted({c for c in commands if c not in std.command_names})
    if unknown:
        raise PimsimError(f"{compiled.hw.name} ({std.name}): command{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)} {'are' if len(unknown) > 1 else 'is'} not in the standard, so "
                          "no energy class is declared for it")
    return {c.name: c.energy.value for c in std.commands}


def energy_J(compiled: Compiled, actions: Actions) -> dict:
    """Energy by component (J), the total, and the costs used."""
    hw = compiled.hw
    e = hw.energy
    per_command = command_energies_J(compiled)
    parts = dict.fromkeys(COMPONENTS, 0.0)
    classes = _command_classes(compiled, actions.commands)
    for cmd, n in actions.commands.items():
        parts[classes[cmd]] += n * per_command[cmd]
    parts["mac"] += _other_datapaths_J(hw, actions.macs_by_format or {}, per_command)
    if actions.extra_vector_macs:  # a multi-vector datapath's further multipliers and accumulators
        if e.dram.mac_vector_pJ is None:
            raise PimsimError(f"{hw.name}: MACs multiplied several vectors, but energy.dram.mac_vector_pJ is not given")
        parts["mac"] += actions.extra_vector_macs * e.dram.mac_vector_pJ * 1e-12
    parts["io"] = actions.pin_bytes * 8 * e.io_pJ_per_bit * 1e-12
    parts["link"] = actions.link_bytes * 8 * e.link_pJ_per_bit * 1e-12
    active, precharged = background_W(hw)
    busy = np.minimum(np.asarray(actions.busy_s, float), actions.total_s)
    parts["dram_background"] = float((active * busy + precharged * (actions.total_s - busy)).sum())
    if e.asic is not None:
        parts["asic_compute"] = actions.lane_ops * e.asic.lane_op_pJ * 1e-12
        parts["asic_sram"] = actions.sram_bytes * e.asic.sram_pJ_per_byte * 1e-12
        parts["asic_leakage"] = e.asic.leakage_mW * 1e-3 * actions.total_s
    total = sum(parts.values())
    return {
        "total_J": total,
        "breakdown_J": parts,
        "average_power_W": total / actions.total_s if actions.total_s else 0.0,
        "costs": {"per_command_pJ": {k: v * 1e12 for k, v in per_command.items()},
                  "background_mW_per_channel": {"active": active * 1e3, "precharged": precharged * 1e3},
                  "io_pJ_per_bit": e.io_pJ_per_bit, "link_pJ_per_bit": e.link_pJ_per_bit,
                  "asic": e.asic.model_dump() if e.asic else None,
                  "method": "currents" if e.dram.currents_mA is not None else "per-command pJ"},
        "actions": {"commands": dict(actions.commands), "pin_bytes": actions.pin_bytes,
                    "link_bytes": actions.link_bytes, "asic_lane_ops": actions.lane_ops,
                    "asic_sram_bytes": actions.sram_bytes, "total_s": actions.total_s,
                    "channel_busy_s": [float(b) for b in busy]},
    }
