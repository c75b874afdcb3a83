"""GDDR6-AiM: GDDR6 with a MAC unit in every bank (SK hynix Accelerator-in-Memory).

The plain GDDR6 rules are DDR4's with split activate-to-read/-write delays (nRCDRD, nRCDWR). The PIM
commands are extra rows of the same table, as in AiM's public simulator (arkhadem/aim_simulator,
src/dram/impl/GDDR6.cpp and src/dram_controller/impl/AiM_dram_controller.cpp; REFERENCE.md section 2):

- ``ACTAB``  opens the same row in every bank of the channel (AiM's ACT16);
- ``MACAB``  every bank multiplies one 32 B column of its open row by the matching 32 B of the global
  buffer and accumulates (MAC16); ``MACSB`` does the same in one bank;
- ``WRGB``   writes 32 B of the input vector into the channel's global buffer;
- ``RDMAC``  reads the MAC accumulators of all banks (RDMAC16);
- ``MODCH``  toggles the channel between its MAC mode and its register-access mode (AiM's TMOD).

Modes: the device accepts global-buffer writes and MAC-result reads only in register-access mode
(AiM's instruction table marks WR_GB, WR_BIAS, RD_MAC and RD_AF ``require_reg_RW_mod``) and MACs only
in MAC mode; a mode change blocks the channel for nMODCH (32 cycles in AiM's preset). pimsim's
streams start and end in register mode, where a GEMV leaves the channel (a freshly reset AiM channel
starts in MAC mode and pays one switch before its first buffer write: 32 cycles once per run that
pimsim leaves out). Row commands and refresh are accepted in either mode: AiM's controller switches
to MAC mode before the precharge and activate that start a MAC instruction (pimsim's mapper does the
same), and AiM never refreshes, so it has no rule for a refresh in register mode.

Other rules from the same model: the host waits for a MAC-result read's data before it hands the
channel its next instruction (AiM's RD_MAC is ``AiM_DMA_blocking``; the DMA decodes the next one a
cycle after the data returns); a read-to-write turnaround of nCL + nBL + 3 - nCWL + nWPRE (so RDMAC
to WRGB is 5 cycles); no spacing from a buffer write to a MAC beyond the mode change between them
(pimsim keeps the buffer data's nCWLGB + nBL, which only binds where nMODCH is set below it);
the mode change into register mode issues when the register access it precedes could (a MAC's
nCCDL before RDMAC), as AiM's controller issues it. AiM disables nFAW for its all-bank activates (its
source says "deprecated because of the paper"); pimsim keeps nFAW for single-bank ACTs only, so
all-bank ACTs are spaced by nRRD as in AiM.
"""

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
from pimsim.dram.standards.ddr4 import SANITY as DDR4_SANITY
from pimsim.dram.standards.ddr4 import TIMING as DDR4_TIMING
from pimsim.dram.standards.ddr4 import bus_constraints, row_constraints
from pimsim.dram.standards.pim_rules import pim_rows

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK
ACTIVATION, ARRAY, REGISTER_E, REFRESH_E, MAC_E = (EnergyClass.ACTIVATION, EnergyClass.ARRAY, EnergyClass.REGISTER,
                                                  EnergyClass.REFRESH, EnergyClass.MAC)
PLAIN = PimRole.NONE

TIMING = tuple(p for p in DDR4_TIMING if p.name != "nRCD") + (
    TimingParam("nRCDRD", "ACT to RD in the same bank"),
    TimingParam("nRCDWR", "ACT to WR in the same bank"),
    TimingParam("nRCDRDMAC", "ACT/ACTAB to MAC in the same bank"),
    TimingParam("nCLREG", "RDMAC to first data (MAC result register read latency)"),
    TimingParam("nCWLGB", "WRGB to first data into the global buffer"),
)
# TIMING and COMMANDS are the PIM vocabulary HBM2-PIM shares; AiM's register modes are AiM's own
AIM_TIMING = TIMING + (
    TimingParam("nWPRE", "write preamble: the extra cycle a read-to-write turnaround takes (AiM GDDR6.cpp)"),
    TimingParam("nMODCH", "MODCH to any command: the channel is blocked while it changes mode (AiM GDDR6.cpp)"),
)

MAC, REGISTER = "mac", "register"

COMMANDS = (
    Command("ACT", BK, Effect.OPEN, done="nRCDRD", description="open a row in one bank", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("PRE", BK, Effect.CLOSE, done="nRP", description="close the open row of one bank", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("PREA", RK, Effect.CLOSE, done="nRP", description="close every bank of the channel", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("RD", BK, Effect.ACCESS, Transfer.READ, done="nCL + nBL", description="read one 32 B burst",
            energy=ARRAY, pim_role=PLAIN),
    Command("WR", BK, Effect.ACCESS, Transfer.WRITE, done="nCWL + nBL", description="write one 32 B burst",
            energy=ARRAY, pim_role=PLAIN),
    Command("REF", RK, Effect.REFRESH, done="nRFC", description="all-bank refresh", energy=REFRESH_E, pim_role=PLAIN),
    Command("ACTAB", RK, Effect.OPEN, done="nRCDRDMAC", description="open the same row in every bank",
            energy=ACTIVATION, pim_role=PimRole.ACTIVATE_ALL),
    Command("MACAB", RK, Effect.ACCESS, done="nBL",
            description="all-bank MAC: every bank x one 32 B column of its open row against the global buffer",
            mode=MAC, energy=MAC_E, pim_role=PimRole.MAC_ALL),
    Command("MACSB", BK, Effect.ACCESS, done="nBL", description="single-bank MAC", mode=MAC, energy=MAC_E,
            pim_role=PimRole.MAC_ONE),
    Command("WRGB", CH, Effect.NONE, Transfer.WRITE, done="nCWLGB + nBL",
            description="write 32 B into the global buffer", mode=REGISTER, energy=REGISTER_E,
            pim_role=PimRole.INPUT_WRITE),
    Command("RDMAC", RK, Effect.NONE, Transfer.READ, done="nCLREG + nBL",
            description="read the MAC accumulators of all banks", mode=REGISTER, energy=REGISTER_E,
            pim_role=PimRole.RESULT_READ),
)
AIM_COMMANDS = COMMANDS + (
    Command("MODCH", CH, Effect.NONE, done="nMODCH",
            description="toggle between MAC mode and register-access mode (AiM's TMOD)", energy=REGISTER_E,
            pim_role=PimRole.MODE),
)

ALL = tuple(c.name for c in AIM_COMMANDS)
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

# bus occupancy as DDR4's; the read-to-write turnaround is AiM's (below), not DDR4's nCL + nBL + 2 - nCWL
TURNAROUND = tuple(
    Constraint(CH, (rd,), (wr,), f"{lat_r} + nBL + 3 + nWPRE - ({lat_w})",
               note="read-to-write bus turnaround (AiM GDDR6.cpp: nCL + nBL + 3 - nCWL + nWPRE)")
    for rd, lat_r in BUS_READS.items() for wr, lat_w in BUS_WRITES.items())

CONSTRAINTS = (
    bus_constraints(BUS_READS, {}, ALL) + bus_constraints({}, BUS_WRITES) + TURNAROUND
    + row_constraints(ACTS, PRES, BANK_READS, ("WR",), ("REF",), ALL, faw_acts=("ACT",))
    # AiM has no WRGB -> MAC rule: a mode change (nMODCH) always lies between them. Where a config has no
    # mode-change time (pim-gpt.yaml) the buffer data must still land before a MAC reads it (the shared row).
    + pim_rows(ACTS, MACS, ("WRGB",), MACS, tuple(BUS_READS), ("RDMAC",))
    + (
        # register-access mode (AiM GDDR6.cpp: TMOD -> every command, nMODCH)
        Constraint(CH, ("MODCH",), ALL, "nMODCH", note="the channel is blocked while it changes mode"),
        # AiM's controller issues the mode change only when the command it serves could issue; after a
        # MAC that is the RDMAC reading its result (MAC16 -> RDMAC16: nCCDL)
        Constraint(CH, MACS, ("MODCH",), "nCCDL", note="a switch to register mode waits for the MACs to settle"),
        Constraint(CH, MACS, ("MODCH",), "nMAC", note="a switch to register mode waits for the MACs to settle"),
        # AiM's RD_MAC blocks the host (AiM_DMA_blocking): the next instruction reaches the channel the
        # cycle after the result returned (nCLREG + nBL)
        Constraint(CH, ("RDMAC",), ALL, "nCLREG + nBL + 1", note="the host waits for the MAC results"),
    )
)

SANITY = tuple(s for s in DDR4_SANITY if "nRCD" not in s[0]) + (
    ("nRCDRD", "<=", "nRAS", "a row must be readable before it may be closed"),
    ("nRCDRD", "<=", "nRCDRDMAC", "a MAC reads the row through the column path, no sooner than a read"),
)

GDDR6_AIM = Standard(
    name="GDDR6-AiM",
    description="GDDR6 with an all-bank MAC unit per bank and a per-channel global buffer (SK hynix AiM)",
    timing_params=AIM_TIMING,
    commands=AIM_COMMANDS,
    constraints=CONSTRAINTS,
    sanity=SANITY,
    activate_all="ACTAB",
    modes=(REGISTER, MAC),
    mode_change="MODCH",
    initial_mode=REGISTER,
    lazy_precharge=True,
    levels=(LevelName(CH, "channel"), LevelName(RK, "rank", fixed=1), LevelName(BG, "bankgroup"),
            LevelName(BK, "bank")),
    derived_params=(TimingParam("nMAC", "cycles one MAC keeps a PIM unit busy (pim.lanes_per_unit, pim.mac_cycles)"),),
)
