"""LPDDR5-PIM: an LPDDR5 x16 channel with a PIM unit per bank pair (Samsung LPDDR5-PIM).

Samsung presented LPDDR5-PIM at Hot Chips 33 (2021) and LPDDR-PIM at Hot Chips 2023 (102.4 GB/s) as its
HBM-PIM design carried over to mobile DRAM; the unit organisation is not published beyond that, so the
config's PIM section says what is assumed. The DRAM rules are LPDDR5's (JESD209-5) in bank-group mode
(4 bank groups of 4 banks, BL16), as in Ramulator 2's LPDDR5 model (src/dram/impl/LPDDR5.cpp):

- one command/address bus per channel; an activate takes two of its cycles (ACT-1, ACT-2);
- precharge: nRP for one bank (tRPpb), nRPAB after a precharge of all banks (tRPab);
- same-bank-group column spacing nCCDL, different-group nCCDS (= the burst, BL16 at 2 cycles);
- refresh: all-bank (REF = REFab, every nREFI, nRFC = tRFCab). LPDDR5's per-bank refresh (REFpb)
  refreshes a pair of banks (BA and BA + 8) at once every tREFI / 8; pimsim's per-bank policy refreshes
  one bank, so LPDDR5-PIM declares only the all-bank policy until bank pairs are modelled.

The PIM vocabulary is the shared one (ACTAB, MACAB, MACSB, WRGB, RDMAC, spacing rules of
:mod:`pimsim.dram.standards.pim_rules`); there are no device modes. Not modelled: the WCK-to-CK
synchronisation (CAS-WS) LPDDR5 needs before data after an idle stretch (pimsim keeps WCK running).
"""

from __future__ import annotations

from dataclasses import replace

from pimsim.dram.standard import Constraint, Level, LevelName, Standard, TimingParam
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints
from pimsim.dram.standards.gddr6_aim import COMMANDS as PIM_COMMANDS
from pimsim.dram.standards.gddr6_aim import SANITY as PIM_SANITY
from pimsim.dram.standards.gddr6_aim import TIMING as PIM_TIMING
from pimsim.dram.standards.pim_rules import pim_rows

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK

TIMING = PIM_TIMING + (
    TimingParam("nRPAB", "PREA (all-bank precharge) to ACT (tRPab)"),
)

COMMANDS = tuple(replace(c, mode="", description=c.description.replace("every bank x", "every PIM unit x"))
                 for c in PIM_COMMANDS)
ALL = tuple(c.name for c in COMMANDS)
ACTS = ("ACT", "ACTAB")
PRES = ("PRE", "PREA")
MACS = ("MACAB", "MACSB")
BANK_READS = ("RD",) + MACS
BUS_READS = {"RD": "nCL", "RDMAC": "nCLREG"}
BUS_WRITES = {"WR": "nCWL", "WRGB": "nCWLGB"}

CONSTRAINTS = (
    bus_constraints(BUS_READS, BUS_WRITES, ALL)
    + row_constraints(ACTS, PRES, BANK_READS, ("WR",), ("REF",), ALL, faw_acts=("ACT",))
    + pim_rows(ACTS, MACS, ("WRGB",), MACS, tuple(BUS_READS), ("RDMAC",))
    + (
        Constraint(CH, ACTS, ALL, "2", note="an activate takes two command-bus cycles (ACT-1, ACT-2)"),
        Constraint(BK, ("PREA",), ACTS + ("REF",), "nRPAB", note="all-bank precharge (tRPab)"),
    )
)

SANITY = PIM_SANITY + (
    ("nRP", "<=", "nRPAB", "an all-bank precharge takes no less than a single-bank one"),
)

LPDDR5_PIM = Standard(
    name="LPDDR5-PIM",
    description="LPDDR5 x16 channel (bank-group mode) with a PIM unit per bank pair (Samsung LPDDR5-PIM)",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=CONSTRAINTS,
    sanity=SANITY,
    activate_all="ACTAB",
    levels=(LevelName(CH, "channel"), LevelName(RK, "rank", fixed=1), LevelName(BG, "bankgroup"),
            LevelName(BK, "bank")),
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)
