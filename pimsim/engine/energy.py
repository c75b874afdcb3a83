"""The energy of what a simulation did: its timing's command counts and busy time, and the engine's
:class:`~pimsim.engine.lowering.WorkTally`, priced by :mod:`pimsim.energy.model`. Shared by plain
decoding, speculative decoding, several devices and step costs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pimsim.engine.decode import DecodeSimulation


def energy_of(sim: DecodeSimulation, counts: dict, total_s: float, busy_ps, work) -> dict:
    """Energy of what `sim` did: its timing's counts (commands, MACs by datapath), per-channel busy
    time and :class:`~pimsim.engine.lowering.WorkTally` over `total_s`."""
    from pimsim.energy.model import Actions, energy_J, pin_bytes

    commands = counts["commands"]
    actions = Actions(commands=commands, total_s=total_s, busy_s=[b * 1e-12 for b in busy_ps],
                      macs_by_format=counts.get("macs_by_format"),
                      pin_bytes=pin_bytes(sim.compiled, commands), link_bytes=work.link_bytes,
                      lane_ops=work.asic_lane_ops, sram_bytes=work.asic_sram_bytes,
                      extra_vector_macs=work.extra_vector_macs)
    return energy_J(sim.compiled, actions)


def asic_roofline_energy(sim: DecodeSimulation, roofline: dict) -> dict:
    """The ASIC prefill's weight reads (RD commands streaming whole rows) and multiply-adds at the
    config's costs, the memory in precharged standby and the ASIC leaking over the roofline's time."""
    from pimsim.energy.model import Actions, energy_J

    org = sim.hw.dram.organization
    reads, rows = roofline["reads"], roofline["rows_opened"]
    actions = Actions(commands={"RD": reads, "ACT": rows, "PRE": rows}, total_s=roofline["time_s"],
                      busy_s=[0.0] * org.channels, pin_bytes=reads * org.access_bytes,
                      link_bytes=reads * org.access_bytes, lane_ops=roofline["asic_macs"], sram_bytes=0)
    return energy_J(sim.compiled, actions)
