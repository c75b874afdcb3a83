"""Constraint rows every all-bank PIM standard shares, written once (GDDR6-AiM, HBM2-PIM, HBM3-PIM,
LPDDR5-PIM use them; each adds only what is its own).

The rows come from AiM's public simulator (REFERENCE.md section 2) and hold wherever PIM units sit
beside the banks' column path with an input buffer the host writes and accumulators it reads:
activate-to-column delays for reads, writes and MACs; result reads spaced like reads; data the host
writes into the units lands before a PIM instruction uses it and turns the bus round before a read;
a MAC's result settles (nCCDL) and its passes over the unit's lanes end (nMAC) before it is read; a
unit finishes one MAC's passes before the next.
"""

from __future__ import annotations

from pimsim.dram.standard import Constraint, Level

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK


def pim_rows(acts: tuple[str, ...], macs: tuple[str, ...], input_writes: tuple[str, ...],
             input_users: tuple[str, ...], bus_reads: tuple[str, ...], result_users: tuple[str, ...],
             array_writes: tuple[str, ...] = ("WR",), result_read: str = "RDMAC",
             input_note: str = "global-buffer data in place before a MAC reads it",
             settle_note: str = "accumulators settle before they are read") -> tuple[Constraint, ...]:
    """The shared rows. ``acts``: activates (single- and all-bank); ``macs``: MAC commands;
    ``input_writes``: host writes into the units (global buffer, registers); ``input_users``: the PIM
    instructions that use what they wrote; ``bus_reads``: commands that read over the data bus;
    ``result_users``: commands that need a MAC's result settled; ``array_writes``: column writes into
    the array (nRCDWR after an activate)."""
    return (
        Constraint(BK, acts, ("RD",), "nRCDRD"),
        Constraint(BK, acts, array_writes, "nRCDWR"),
        Constraint(BK, acts, macs, "nRCDRDMAC"),
        Constraint(RK, (result_read,), (result_read, "RD"), "nCCDS"),
        Constraint(CH, input_writes, input_users, "nCWLGB + nBL", note=input_note),
        Constraint(CH, input_writes, bus_reads, "nCWLGB + nBL + nWTRS"),
        Constraint(CH, ("WR",), (result_read,), "nCWL + nBL + nWTRL"),
        Constraint(CH, macs, result_users, "nCCDL", note=settle_note),
        Constraint(RK, macs, macs, "nMAC", note="a unit finishes one MAC's passes over its lanes before the next"),
        Constraint(CH, macs, (result_read,), "nMAC", note="the last MAC's passes end before its result is read"),
    )
