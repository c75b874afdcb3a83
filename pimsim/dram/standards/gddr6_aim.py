"""GDDR6-AiM: GDDR6 with a MAC unit in every bank (SK hynix Accelerator-in-Memory).

The plain GDDR6 rules are DDR4's with split activate-to-read/-write delays (nRCDRD, nRCDWR). The PIM
commands are extra rows of the same table, as in AiM's public simulator (REFERENCE.md section 2):

- ``ACTAB``  opens the same row in every bank of the channel (AiM's ACT16);
- ``MACAB``  every bank multiplies one 32 B column of its open row by the matching 32 B of the global
  buffer and accumulates (MAC16); ``MACSB`` does the same in one bank;
- ``WRGB``   writes 32 B of the input vector into the channel's global buffer;
- ``RDMAC``  reads the MAC accumulators of all banks (RDMAC16).

Differences from the AiM simulator, deliberately: AiM switches the channel into a register mode for
WRGB/RDMAC and back (nMODCH = 32 cycles each way); pimsim does not model that mode switch yet, and
instead requires the global-buffer data to have landed (nCWLGB + nBL) before a MAC consumes it. AiM
disables nFAW for its all-bank activates (its source says "deprecated because of the paper"); pimsim
keeps nFAW for single-bank ACTs only, so all-bank ACTs are spaced by nRRD as in AiM.
"""

from pimsim.dram.standard import Command, Constraint, Effect, Level, Standard, TimingParam, Transfer
from pimsim.dram.standards.ddr4 import SANITY as DDR4_SANITY
from pimsim.dram.standards.ddr4 import TIMING as DDR4_TIMING
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK

TIMING = tuple(p for p in DDR4_TIMING if p.name != "nRCD") + (
    TimingParam("nRCDRD", "ACT to RD in the same bank"),
    TimingParam("nRCDWR", "ACT to WR in the same bank"),
    TimingParam("nRCDRDMAC", "ACT/ACTAB to MAC in the same bank"),
    TimingParam("nCLREG", "RDMAC to first data (MAC result register read latency)"),
    TimingParam("nCWLGB", "WRGB to first data into the global buffer"),
)

COMMANDS = (
    Command("ACT", BK, Effect.OPEN, done="nRCDRD", description="open a row in one bank"),
    Command("PRE", BK, Effect.CLOSE, done="nRP", description="close the open row of one bank"),
    Command("PREA", RK, Effect.CLOSE, done="nRP", description="close every bank of the channel"),
    Command("RD", BK, Effect.ACCESS, Transfer.READ, done="nCL + nBL", description="read one 32 B burst"),
    Command("WR", BK, Effect.ACCESS, Transfer.WRITE, done="nCWL + nBL", description="write one 32 B burst"),
    Command("REF", RK, Effect.REFRESH, done="nRFC", description="all-bank refresh"),
    Command("ACTAB", RK, Effect.OPEN, done="nRCDRDMAC", description="open the same row in every bank"),
    Command("MACAB", RK, Effect.ACCESS, done="nBL",
            description="all-bank MAC: every bank x one 32 B column of its open row against the global buffer"),
    Command("MACSB", BK, Effect.ACCESS, done="nBL", description="single-bank MAC"),
    Command("WRGB", CH, Effect.NONE, Transfer.WRITE, done="nCWLGB + nBL",
            description="write 32 B into the global buffer"),
    Command("RDMAC", RK, Effect.NONE, Transfer.READ, done="nCLREG + nBL",
            description="read the MAC accumulators of all banks"),
)

ALL = tuple(c.name for c in COMMANDS)
ACTS = ("ACT", "ACTAB")
PRES = ("PRE", "PREA")
MACS = ("MACAB", "MACSB")
# Column-path reads: MACs read the open row through the same column path as RD (AiM puts them in the
# same nCCD groups), so they share its column spacing and read-to-precharge rules.
BANK_READS = ("RD",) + MACS
# Commands that move data over the channel, with their latency to the first beat: the MAC registers and
# the global buffer sit nearer the pins than the array, so their bursts start sooner.
BUS_READS = {"RD": "nCL", "RDMAC": "nCLREG"}
BUS_WRITES = {"WR": "nCWL", "WRGB": "nCWLGB"}

CONSTRAINTS = (
    bus_constraints(BUS_READS, BUS_WRITES, ALL)
    + row_constraints(ACTS, PRES, BANK_READS, ("WR",), ("REF",), ALL, faw_acts=("ACT",))
    + (
        Constraint(BK, ACTS, ("RD",), "nRCDRD"),
        Constraint(BK, ACTS, ("WR",), "nRCDWR"),
        Constraint(BK, ACTS, MACS, "nRCDRDMAC"),
        Constraint(RK, ("RDMAC",), ("RDMAC", "RD"), "nCCDS"),
        Constraint(CH, ("WRGB",), MACS, "nCWLGB + nBL", note="global-buffer data in place before a MAC reads it"),
        Constraint(CH, ("WRGB",), tuple(BUS_READS), "nCWLGB + nBL + nWTRS"),
        Constraint(CH, ("WR",), ("RDMAC",), "nCWL + nBL + nWTRL"),
        Constraint(CH, MACS, ("RDMAC",), "nCCDL", note="accumulators settle before they are read"),
        Constraint(RK, MACS, MACS, "nMAC", note="a unit finishes one MAC's passes over its lanes before the next"),
        Constraint(CH, MACS, ("RDMAC",), "nMAC", note="the last MAC's passes end before its result is read"),
    )
)

SANITY = tuple(s for s in DDR4_SANITY if "nRCD" not in s[0]) + (
    ("nRCDRD", "<=", "nRAS", "a row must be readable before it may be closed"),
    ("nRCDRD", "<=", "nRCDRDMAC", "a MAC reads the row through the column path, no sooner than a read"),
)

GDDR6_AIM = Standard(
    name="GDDR6-AiM",
    description="GDDR6 with an all-bank MAC unit per bank and a per-channel global buffer (SK hynix AiM)",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=CONSTRAINTS,
    sanity=SANITY,
    activate_all="ACTAB",
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)
