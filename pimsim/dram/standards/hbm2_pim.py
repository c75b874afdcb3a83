"""HBM2-PIM: HBM2 pseudo-channels with one PIM unit per two banks (Samsung HBM-PIM / Aquabolt-XL / FIMDRAM).

HBM2 has separate row and column command buses, so a row command and a column command may issue in
the same cycle; each bus carries one command per cycle. In all-bank PIM mode Samsung's device triggers
one PIM instruction in every PIM unit per column command and treats all banks as one bank group, so
consecutive PIM column commands are spaced max(nCCDL, nBL) (REFERENCE.md section 3). pimsim names
those commands as on the other PIM standard (ACTAB, MACAB, WRGB, RDMAC), so a mapper writes one
command stream for both; the config, not the code, says how many banks share a PIM unit. As on
GDDR6-AiM, the all-bank activate is spaced by nRRD but kept out of the four-activate window: the
device activates all banks by design in PIM mode, which a per-activate power window does not describe.

Samsung's programming model (ISCA'21 "Hardware Architecture and Software Stack for PIM Based on
Commercial DRAM Technology"; public PIMSimulator, src/tests/PIMKernel.cpp and src/PIMRank.cpp) adds:

- three modes: single-bank (SB, a plain HBM2 device), all-bank (AB: one command reaches every bank of
  the addressed parity) and all-bank-PIM (AB-PIM: every column command also runs the next instruction
  of the command register file, CRF, in every PIM unit). :data:`MODE_SEQUENCES` lists the command
  sequences that move between them; pimsim issues them as ordinary rows of this table
  (``ACT``/``PRE`` to reserved rows, and the register writes ``WRCRF``, ``PIMON``, ``PIMOFF``);
- per unit, GRF_A and GRF_B, eight 256-bit registers each (16 FP16 lanes), and a 32-entry CRF. The
  host writes GRF_A (``WRGB``, a write to reserved row 0x3fff, columns 0x08-0x0f) and the CRF
  (``WRCRF``, columns 0x04-0x07, eight 32-bit instructions per write); :mod:`pimsim.pim.hbm_pim` holds
  the registers, the instruction set and the GEMV program;
- ``WRAB``: a column write in AB-PIM mode whose CRF instruction is a NOP stores GRF_B[k] of every
  unit into its bank (the GEMV kernel's "GRFB_TO_BANK" write-back);
- ``RDMAC`` here reads one GRF_B register of every PIM unit of the channel, one 32 B burst per unit
  (PIMSimulator README 4.1, read_pim: "the PIM block satisfying ID == BA supplies partial sums to DQ").
  pimsim folds the channel's per-unit reads of one register into one command that holds the data bus
  for ``nBLRES`` cycles (= units x nBL): the same data-bus time as the back-to-back per-unit reads
  (their spacing nCCDS equals nBL), one command instead of eight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pimsim.dram.standard import (
    Command,
    Constraint,
    Effect,
    EnergyClass,
    Level,
    LevelName,
    PimRole,
    Standard,
    TimingParam,
    Transfer,
)
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints
from pimsim.dram.standards.gddr6_aim import COMMANDS as _AIM_COMMANDS
from pimsim.dram.standards.gddr6_aim import SANITY as GDDR6_SANITY
from pimsim.dram.standards.gddr6_aim import TIMING as GDDR6_TIMING
from pimsim.dram.standards.pim_rules import pim_rows

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK

TIMING = GDDR6_TIMING + (  # the same parameter names as GDDR6-AiM (values differ, in the config), and:
    TimingParam("nBLRES", "data-bus cycles of one RDMAC: one GRF_B register of every PIM unit, a burst per unit"),
)

_RENAMED = {"RDMAC": Command("RDMAC", RK, Effect.NONE, Transfer.READ, done="nCLREG + nBLRES",
                             description="read one GRF_B register (16 FP16 lanes) of every PIM unit, a 32 B burst "
                                         "per unit (PIMSimulator read_pim)", energy=EnergyClass.REGISTER,
                             pim_role=PimRole.RESULT_READ)}
COMMANDS = tuple(
    _RENAMED.get(c.name) or replace(c, mode="", description=c.description.replace("every bank x", "every PIM unit x")
                                    .replace("AiM", "HBM-PIM").replace("the global buffer", "GRF_A"))
    for c in _AIM_COMMANDS
) + (
    Command("WRCRF", CH, Effect.NONE, Transfer.WRITE, done="nCWLGB + nBL",
            description="write eight 32-bit PIM instructions into the CRF of every unit (reserved row 0x3fff, "
                        "columns 0x04-0x07)", energy=EnergyClass.REGISTER, pim_role=PimRole.PROGRAM),
    Command("PIMON", CH, Effect.NONE, Transfer.WRITE, done="nCWLGB + nBL",
            description="AB -> AB-PIM: set PIM_OP_MODE (reserved row 0x3fff, column 0), reset every unit's CRF "
                        "program counter and zero GRF_B", energy=EnergyClass.REGISTER, pim_role=PimRole.MODE),
    Command("PIMOFF", CH, Effect.NONE, Transfer.WRITE, done="nCWLGB + nBL",
            description="AB-PIM -> AB: clear PIM_OP_MODE (reserved row 0x3fff, column 0)", energy=EnergyClass.REGISTER,
            pim_role=PimRole.MODE),
    Command("WRAB", RK, Effect.ACCESS, Transfer.NONE, done="nCWL + nBL",
            description="all-bank write-back in AB-PIM mode (CRF NOP): every unit stores one GRF_B register into "
                        "its bank's open row", energy=EnergyClass.ARRAY, pim_role=PimRole.RESULT_WRITEBACK),
)

ALL = tuple(c.name for c in COMMANDS)
ROW_CMDS = ("ACT", "PRE", "PREA", "REF", "ACTAB")
COL_CMDS = tuple(n for n in ALL if n not in ROW_CMDS)
ACTS = ("ACT", "ACTAB")
PRES = ("PRE", "PREA")
MACS = ("MACAB", "MACSB")
BANK_READS = ("RD",) + MACS
BANK_WRITES = ("WR", "WRAB")
REGISTER_WRITES = ("WRGB", "WRCRF", "PIMON", "PIMOFF")  # host writes into the units' registers
BUS_READS = {"RD": "nCL", "RDMAC": "nCLREG"}
BUS_WRITES = {"WR": "nCWL"} | {w: "nCWLGB" for w in REGISTER_WRITES}
BURST = {"RDMAC": "nBLRES"}  # data-bus cycles per command where they are not nBL


def _with_bursts(rules: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    """The shared bus rules, with a longer burst where a command carries several (RDMAC: one per unit)."""
    out = []
    for c in rules:
        first = c.preceding[0] if len(c.preceding) == 1 else None
        if first in BURST and c.note in ("data bus busy for a burst", "read-to-write bus turnaround"):
            c = Constraint(c.level, c.preceding, c.following, c.latency.replace("nBL", BURST[first], 1), c.window,
                           c.note)
        out.append(c)
    return tuple(out)


CONSTRAINTS = (
    (
        Constraint(CH, ROW_CMDS, ROW_CMDS, "1", note="one command per cycle on the row command bus"),
        Constraint(CH, COL_CMDS, COL_CMDS, "1", note="one command per cycle on the column command bus"),
    )
    + _with_bursts(bus_constraints(BUS_READS, BUS_WRITES))
    + row_constraints(ACTS, PRES, BANK_READS, BANK_WRITES, ("REF",), ALL, faw_acts=("ACT",))
    # register writes to a MAC: the write-to-read row below (a MAC is a RD), longer than the shared row
    + pim_rows(ACTS, MACS, REGISTER_WRITES, ("WRAB",), tuple(BUS_READS), ("RDMAC", "WRAB", "PIMOFF"),
               array_writes=BANK_WRITES,
               input_note="a register write lands before the next PIM instruction uses the registers (assumed: "
                          "write latency plus the burst, as a global-buffer write on GDDR6-AiM)",
               settle_note="the last MAC's result is in GRF_B before it is read, written back or the mode left "
                           "(a PIM ALU operation costs tCCD_L: REFERENCE.md section 3)")
    + (
        # all-bank PIM mode: every PIM column command occupies all banks as if one bank group
        Constraint(RK, MACS, MACS, "max(nCCDL, nBL)",
                   note="all-bank PIM mode spaces PIM column commands like one bank group"),
        # a MAC reaches the device as a RD (PIMSimulator: alu_pim is a read transaction; ISCA'21: standard
        # commands from an unmodified controller), so the controller keeps JEDEC's write-to-read and
        # read-to-write spacing around it
        Constraint(CH, REGISTER_WRITES, MACS, "nCWLGB + nBL + nWTRL",
                   note="write-to-read: a register write (a WR) to the next MAC (a RD)"),
        Constraint(CH, MACS, REGISTER_WRITES + ("WRAB",), "nCL + nBL + 2 - nCWLGB",
                   note="read-to-write bus turnaround: a MAC (a RD) to the next write"),
        Constraint(CH, REGISTER_WRITES, REGISTER_WRITES, "nCCDL",
                   note="register writes all address one bank (reserved row 0x3fff of bank group 0: PIMSimulator "
                        "PIMKernel.cpp): spaced like column writes in one bank group"),
        Constraint(RK, ("WRAB",), ("WRAB",) + MACS, "max(nCCDL, nBL)",
                   note="write-backs are PIM column commands too (a CRF NOP per write, PIMSimulator PIMRank): "
                        "spaced like one bank group"),
        Constraint(CH, ("WRAB",), ("PIMOFF",), "nCWL + nBL",
                   note="the write-back's data leaves GRF_B before PIM mode ends (assumed: write latency + burst)"),
    )
)

SANITY = GDDR6_SANITY + (
    ("nBLRES", ">=", "nBL", "a read of every unit's register takes at least one burst"),
)

HBM2_PIM = Standard(
    name="HBM2-PIM",
    description="HBM2 pseudo-channel with a 16-lane PIM unit per bank pair (Samsung HBM-PIM / Aquabolt-XL)",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=CONSTRAINTS,
    sanity=SANITY,
    activate_all="ACTAB",
    levels=(LevelName(CH, "pseudo-channel"), LevelName(RK, "rank", fixed=1), LevelName(BG, "bankgroup"),
            LevelName(BK, "bank")),
    burst_params=tuple(BURST.items()),
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)


# --- mode transitions as data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModeStep:
    """One command of a mode transition: ``command`` to (bank group, bank) at ``row`` (``None``: the
    command's own scope decides; register writes name the reserved row 0x3fff by their command)."""

    command: str
    bankgroup: int = 0
    bank: int = 0
    row: int | None = None


def _act_pre(pairs, row):
    return tuple(s for bg, ba in pairs for s in (ModeStep("ACT", bg, ba, row), ModeStep("PRE", bg, ba)))


# The row commands to reserved rows that switch the device's mode, in issue order. Source: PIMSimulator
# src/tests/PIMKernel.cpp, PIMKernel::changePIMMode: SB -> AB touches row 0x17ff of (bg0, ba0), (bg0, ba1),
# (bg2, ba0), (bg2, ba1); AB -> SB touches row 0x1fff of (bg0, ba0), (bg0, ba1); AB <-> AB-PIM writes the
# PIM_OP_MODE register (row 0x3fff, column 0). The ISCA'21 paper describes the AB entry and exit as
# ACT/PRE pairs to reserved rows (the simulator issues them as writes, whose ACT and PRE are what reach
# the row: its write data is discarded).
SB_ROW_ENTER_AB = 0x17FF
SB_ROW_EXIT_AB = 0x1FFF
PIM_REGISTER_ROW = 0x3FFF
MODE_SEQUENCES: dict[tuple[str, str], tuple[ModeStep, ...]] = {
    ("SB", "AB"): _act_pre(((0, 0), (0, 1), (2, 0), (2, 1)), SB_ROW_ENTER_AB),
    ("AB", "SB"): _act_pre(((0, 0), (0, 1)), SB_ROW_EXIT_AB),
    ("AB", "AB-PIM"): (ModeStep("PIMON"),),
    ("AB-PIM", "AB"): (ModeStep("PIMOFF"),),
}
MODE_SOURCE = "PIMSimulator src/tests/PIMKernel.cpp (changePIMMode, programCrf); ISCA'21 Aquabolt-XL paper"

# What each command may do in each mode (checked by pimsim.pim.hbm_pim.check_modes)
ALLOWED = {
    "SB": {"ACT", "PRE", "PREA", "RD", "WR", "REF"},
    "AB": {"ACTAB", "PREA", "WRGB", "WRCRF", "PIMON", "REF", "ACT", "PRE"},
    "AB-PIM": {"ACTAB", "PREA", "WRGB", "MACAB", "WRAB", "RDMAC", "PIMOFF", "REF"},
}
