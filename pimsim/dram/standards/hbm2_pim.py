"""HBM2-PIM: HBM2 pseudo-channels with one PIM unit per two banks (Samsung HBM-PIM / FIMDRAM style).

HBM2 has separate row and column command buses, so a row command and a column command may issue in
the same cycle; each bus carries one command per cycle. In all-bank PIM mode Samsung's device triggers
one PIM instruction in every PIM unit per column command and treats all banks as one bank group, so
consecutive PIM column commands are spaced max(nCCDL, nBL) (REFERENCE.md section 3). pimsim names
those commands as on the other PIM standard (ACTAB, MACAB, WRGB, RDMAC), so a mapper writes one
command stream for both; the config, not the code, says how many banks share a PIM unit. As on
GDDR6-AiM, the all-bank activate is spaced by nRRD but kept out of the four-activate window: the
device activates all banks by design in PIM mode, which a per-activate power window does not describe.
"""

from pimsim.dram.standard import Command, Constraint, Level, Standard, TimingParam
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints
from pimsim.dram.standards.gddr6_aim import COMMANDS as _AIM_COMMANDS
from pimsim.dram.standards.gddr6_aim import SANITY as GDDR6_SANITY
from pimsim.dram.standards.gddr6_aim import TIMING as GDDR6_TIMING

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK

TIMING = GDDR6_TIMING  # the same parameter names; the values differ, and live in the config

COMMANDS = tuple(
    Command(c.name, c.scope, c.effect, c.transfer, c.done,
            c.description.replace("every bank x", "every PIM unit x").replace("AiM", "HBM-PIM"))
    for c in _AIM_COMMANDS
)

ALL = tuple(c.name for c in COMMANDS)
ROW_CMDS = ("ACT", "PRE", "PREA", "REF", "ACTAB")
COL_CMDS = tuple(n for n in ALL if n not in ROW_CMDS)
ACTS = ("ACT", "ACTAB")
PRES = ("PRE", "PREA")
MACS = ("MACAB", "MACSB")
BANK_READS = ("RD",) + MACS
BUS_READS = {"RD": "nCL", "RDMAC": "nCLREG"}
BUS_WRITES = {"WR": "nCWL", "WRGB": "nCWLGB"}

CONSTRAINTS = (
    (
        Constraint(CH, ROW_CMDS, ROW_CMDS, "1", note="one command per cycle on the row command bus"),
        Constraint(CH, COL_CMDS, COL_CMDS, "1", note="one command per cycle on the column command bus"),
    )
    + bus_constraints(BUS_READS, BUS_WRITES)
    + row_constraints(ACTS, PRES, BANK_READS, ("WR",), ("REF",), ALL, faw_acts=("ACT",))
    + (
        Constraint(BK, ACTS, ("RD",), "nRCDRD"),
        Constraint(BK, ACTS, ("WR",), "nRCDWR"),
        Constraint(BK, ACTS, MACS, "nRCDRDMAC"),
        # all-bank PIM mode: every PIM column command occupies all banks as if one bank group
        Constraint(RK, MACS, MACS, "max(nCCDL, nBL)",
                   note="all-bank PIM mode spaces PIM column commands like one bank group"),
        Constraint(RK, ("RDMAC",), ("RDMAC", "RD"), "nCCDS"),
        Constraint(CH, ("WRGB",), MACS, "nCWLGB + nBL"),
        Constraint(CH, ("WRGB",), tuple(BUS_READS), "nCWLGB + nBL + nWTRS"),
        Constraint(CH, ("WR",), ("RDMAC",), "nCWL + nBL + nWTRL"),
        Constraint(CH, MACS, ("RDMAC",), "nCCDL"),
        Constraint(RK, MACS, MACS, "nMAC", note="a unit finishes one MAC's passes over its lanes before the next"),
        Constraint(CH, MACS, ("RDMAC",), "nMAC", note="the last MAC's passes end before its result is read"),
    )
)

HBM2_PIM = Standard(
    name="HBM2-PIM",
    description="HBM2 pseudo-channel with a 16-lane PIM unit per bank pair (Samsung HBM-PIM style)",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=CONSTRAINTS,
    sanity=GDDR6_SANITY,
    activate_all="ACTAB",
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)
