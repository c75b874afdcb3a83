"""HBM3-PIM: HBM3 pseudo-channels with a GEMV unit beside every bank or every bank group (AttAcc, ASPLOS'24).

AttAcc ("AttAcc! Unleashing the Power of PIM for Batched Transformer-based Generative Model Inference",
ASPLOS'24; public simulator scale-snu/attacc_simulator, pim_ramulator_src/HBM3-PIM.cpp) puts a GEMV unit
of 16 FP16 multipliers and an adder tree at every bank (AttAcc_bank) or every bank group (AttAcc_BG) of an
HBM3 stack, fed with one 32 B column per all-bank MAC. In pimsim both are this standard: the config's
``pim.banks_per_unit`` (1 or 4) says which. The vocabulary is the shared PIM one (ACTAB, MACAB, MACSB,
WRGB, RDMAC), so one mapper writes streams for every PIM standard:

- levels: the pseudo-channel is the independent unit (its own data bus and bank state, as in AttAcc's
  and Ramulator 2's HBM3 models); under it one stack ID (a 4-high stack; AttAcc's 8-high HBM3_8Gb_2R
  has two, which needs multi-rank timing pimsim does not have yet), 4 bank groups of 4 banks. The two
  pseudo-channels of a channel share its command bus in HBM3; pimsim times them independently.
- HBM3 has separate row and column command buses (one command per cycle each), as HBM2.
- all-bank MACs are spaced ``nCCDAB`` apart (AttAcc's power-constrained MACAB spacing), and by the
  column rules (nCCDL) like reads.
- refresh: all-bank (REF, every nREFI; what AttAcc's controller uses, RefreshManager AllBankHBM3) or
  per-bank (REFPB to one bank, the banks in turn every nREFIPB = nREFI / 16; HBM3's REFsb, timed as in
  Ramulator 2's HBM3 model: nRFCPB on the bank, nRREFD between per-bank refreshes and to the next ACT).
  A per-bank refresh stalls every all-bank PIM command for its nRFCPB, since those use every bank.
- ``RDMAC`` reads the adder-tree outputs of all units of the pseudo-channel (one FP16 value per unit)
  in one burst, as AiM's; AttAcc moves them to its softmax buffer (MVSB) instead, which pimsim does not
  model: the ASIC reads them.
"""

from __future__ import annotations

from dataclasses import replace

from pimsim.dram.standard import (
    Command,
    Constraint,
    Effect,
    EnergyClass,
    Level,
    LevelName,
    PimRole,
    RefreshPolicy,
    Standard,
    TimingParam,
)
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints
from pimsim.dram.standards.gddr6_aim import COMMANDS as PIM_COMMANDS
from pimsim.dram.standards.gddr6_aim import SANITY as PIM_SANITY
from pimsim.dram.standards.gddr6_aim import TIMING as PIM_TIMING
from pimsim.dram.standards.pim_rules import pim_rows

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK

TIMING = PIM_TIMING + (
    TimingParam("nCCDAB", "MACAB to MACAB: all-bank MAC spacing under the power budget (AttAcc HBM3-PIM.cpp)"),
    TimingParam("nRFCPB", "REFPB to the next command of the same bank (per-bank refresh cycle)"),
    TimingParam("nREFIPB", "interval between per-bank refreshes of a pseudo-channel (nREFI / banks)"),
    TimingParam("nRREFD", "REFPB to REFPB or ACT of another bank of the pseudo-channel"),
)

# AiM's commands without its register/MAC modes (HBM3-PIM has none), and the per-bank refresh
COMMANDS = tuple(replace(c, mode="", description=c.description.replace("every bank x", "every GEMV unit x"))
                 for c in PIM_COMMANDS) + (
    Command("REFPB", BK, Effect.REFRESH, done="nRFCPB", description="per-bank refresh (HBM3 REFsb)",
            energy=EnergyClass.REFRESH, pim_role=PimRole.NONE),
)

ALL = tuple(c.name for c in COMMANDS)
ROW_CMDS = ("ACT", "PRE", "PREA", "REF", "REFPB", "ACTAB")
COL_CMDS = tuple(n for n in ALL if n not in ROW_CMDS)
ACTS = ("ACT", "ACTAB")
PRES = ("PRE", "PREA")
MACS = ("MACAB", "MACSB")
BANK_READS = ("RD",) + MACS
BUS_READS = {"RD": "nCL", "RDMAC": "nCLREG"}
BUS_WRITES = {"WR": "nCWL", "WRGB": "nCWLGB"}
# what a bank under per-bank refresh cannot serve: every command that opens, closes, accesses or refreshes it
BANK_USERS = tuple(c.name for c in COMMANDS if c.effect != Effect.NONE)

CONSTRAINTS = (
    (
        Constraint(CH, ROW_CMDS, ROW_CMDS, "1", note="one command per cycle on the row command bus"),
        Constraint(CH, COL_CMDS, COL_CMDS, "1", note="one command per cycle on the column command bus"),
    )
    + bus_constraints(BUS_READS, BUS_WRITES)
    + row_constraints(ACTS, PRES, BANK_READS, ("WR",), ("REF",), ALL, faw_acts=("ACT",))
    + pim_rows(ACTS, MACS, ("WRGB",), MACS, tuple(BUS_READS), ("RDMAC",))
    + (
        Constraint(RK, ("MACAB",), ("MACAB",), "nCCDAB",
                   note="all-bank MACs spaced for the power budget (AttAcc HBM3-PIM.cpp nCCDAB)"),
        # per-bank refresh (Ramulator 2 HBM3.cpp REFsb rules)
        Constraint(BK, PRES, ("REFPB",), "nRP"),
        Constraint(BK, ACTS, ("REFPB",), "nRC"),
        Constraint(BK, ("REFPB",), BANK_USERS, "nRFCPB", note="the bank is busy while it refreshes"),
        Constraint(RK, ("REFPB",), ("REFPB",) + ACTS, "nRREFD"),
        Constraint(RK, ACTS, ("REFPB",), "nRRDS"),
    )
)

SANITY = PIM_SANITY + (
    ("nRFCPB", "<", "nREFIPB", "a per-bank refresh must finish before the next one is due"),
    ("nRFCPB", "<=", "nRFC", "refreshing one bank takes no longer than refreshing all of them"),
    ("nCCDAB", ">=", "nCCDL", "all-bank MACs are column accesses: no closer than nCCDL"),
)

HBM3_PIM = Standard(
    name="HBM3-PIM",
    description="HBM3 pseudo-channel with a 16-multiplier GEMV unit per bank or bank group (AttAcc)",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=CONSTRAINTS,
    sanity=SANITY,
    activate_all="ACTAB",
    levels=(LevelName(CH, "pseudo-channel"), LevelName(RK, "stack ID", fixed=1), LevelName(BG, "bankgroup"),
            LevelName(BK, "bank")),
    refresh_policies=(
        RefreshPolicy("all-bank", "REF", "PREA", "nREFI", description="every bank of the pseudo-channel at once"),
        RefreshPolicy("per-bank", "REFPB", "PRE", "nREFIPB", per_bank=True,
                      description="one bank at a time, the banks in turn (HBM3 REFsb)"),
    ),
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)
