"""DDR4 (JESD79-4): the plain-DRAM standard every other one here extends.

The constraint set is the usual one for a single-rank DDR4 channel, written from the JEDEC timing
definitions: command-bus and data-bus occupancy at channel level, the short (different bank group)
column and activate spacing at rank level, the long (same bank group) spacing at bank-group level, and
the row cycle (nRCD, nRAS, nRP, nRC, nRTP, write recovery) at bank level.
"""

from pimsim.dram.standard import (
    Command,
    Constraint,
    Effect,
    EnergyClass,
    Level,
    PimRole,
    Standard,
    TimingParam,
    Transfer,
)

CH, RK, BG, BK = Level.CHANNEL, Level.RANK, Level.BANKGROUP, Level.BANK
ACTIVATION, ARRAY, REFRESH = EnergyClass.ACTIVATION, EnergyClass.ARRAY, EnergyClass.REFRESH
PLAIN = PimRole.NONE

TIMING = (
    TimingParam("nBL", "data burst duration on the bus"),
    TimingParam("nCL", "read latency: RD to first data (CAS latency)"),
    TimingParam("nCWL", "write latency: WR to first data"),
    TimingParam("nRCD", "ACT to RD/WR in the same bank"),
    TimingParam("nRP", "PRE to ACT in the same bank"),
    TimingParam("nRAS", "ACT to PRE in the same bank"),
    TimingParam("nRC", "ACT to ACT in the same bank"),
    TimingParam("nWR", "write recovery: end of write data to PRE"),
    TimingParam("nRTP", "RD to PRE in the same bank"),
    TimingParam("nCCDS", "column to column, different bank group"),
    TimingParam("nCCDL", "column to column, same bank group"),
    TimingParam("nRRDS", "ACT to ACT, different bank group"),
    TimingParam("nRRDL", "ACT to ACT, same bank group"),
    TimingParam("nWTRS", "end of write data to RD, different bank group"),
    TimingParam("nWTRL", "end of write data to RD, same bank group"),
    TimingParam("nFAW", "window in which at most four ACTs may issue per rank"),
    TimingParam("nRFC", "REF to the next ACT/REF (all-bank refresh cycle)"),
    TimingParam("nREFI", "average interval between all-bank refreshes"),
)

ALL_DDR4 = ("ACT", "PRE", "PREA", "RD", "WR", "REF")

COMMANDS = (
    Command("ACT", BK, Effect.OPEN, done="nRCD", description="open a row in one bank", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("PRE", BK, Effect.CLOSE, done="nRP", description="close the open row of one bank", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("PREA", RK, Effect.CLOSE, done="nRP", description="close every bank of the rank", energy=ACTIVATION,
            pim_role=PLAIN),
    Command("RD", BK, Effect.ACCESS, Transfer.READ, done="nCL + nBL", description="read one burst", energy=ARRAY,
            pim_role=PLAIN),
    Command("WR", BK, Effect.ACCESS, Transfer.WRITE, done="nCWL + nBL", description="write one burst", energy=ARRAY,
            pim_role=PLAIN),
    Command("REF", RK, Effect.REFRESH, done="nRFC", description="all-bank refresh", energy=REFRESH, pim_role=PLAIN),
)


def row_constraints(acts, pres, reads, writes, refs, everything, faw_acts=None):
    """Bank, bank-group and rank constraints shared by every standard derived from DDR4.

    Each argument is the tuple of command names playing that role (``everything``: all commands,
    which a refresh blocks for nRFC), so PIM standards can add their all-bank activates, MACs and so
    on to the same rules instead of restating them. Activate-to-column delays (nRCD and its
    variants) differ between standards and are added by each standard.
    """
    faw_acts = acts if faw_acts is None else faw_acts
    return (
        # rank: short spacing, write-to-read turnaround, four-activate window, refresh
        Constraint(RK, reads, reads, "nCCDS"),
        Constraint(RK, writes, writes, "nCCDS"),
        Constraint(RK, writes, reads, "nCWL + nBL + nWTRS"),
        Constraint(RK, acts, acts, "nRRDS"),
        Constraint(RK, faw_acts, faw_acts, "nFAW", window=4),
        Constraint(RK, refs, everything, "nRFC", note="only deselects while the rank refreshes"),
        # bank group: long spacing
        Constraint(BG, reads, reads, "nCCDL"),
        Constraint(BG, writes, writes, "nCCDL"),
        Constraint(BG, writes, reads, "nCWL + nBL + nWTRL"),
        Constraint(BG, acts, acts, "nRRDL"),
        # bank: the row cycle
        Constraint(BK, acts, acts, "nRC"),
        Constraint(BK, acts, pres, "nRAS"),
        Constraint(BK, pres, acts + refs, "nRP"),
        Constraint(BK, reads, pres, "nRTP"),
        Constraint(BK, writes, pres, "nCWL + nBL + nWR"),
        Constraint(BK, acts, refs, "nRC"),
    )


def bus_constraints(reads: dict[str, str], writes: dict[str, str], commands=None):
    """Channel-level data-bus occupancy, and command-bus occupancy if ``commands`` are given.

    ``reads`` and ``writes`` map each command that moves data over the channel to its latency from
    issue to the first beat (nCL for RD, nCWL for WR, ...). A burst may not start before the previous
    one has ended, and a write burst needs two idle cycles after a read burst to turn the bus round.
    """
    out = [] if commands is None else [
        Constraint(CH, commands, commands, "1", note="one command per cycle on the command bus")]
    for group in (reads, writes):
        for first, lat1 in group.items():
            for second, lat2 in group.items():
                out.append(Constraint(CH, (first,), (second,), f"{lat1} + nBL - ({lat2})",
                                      note="data bus busy for a burst"))
    for rd, lat_r in reads.items():
        for wr, lat_w in writes.items():
            out.append(Constraint(CH, (rd,), (wr,), f"{lat_r} + nBL + 2 - ({lat_w})",
                                  note="read-to-write bus turnaround"))
    return tuple(out)


SANITY = (
    ("nRAS", "<=", "nRC", "a row must be precharged within its row cycle"),
    ("nRAS + nRP", "<=", "nRC", "a row cycle holds activate-to-precharge plus precharge"),
    ("nRCD", "<=", "nRAS", "a row must be readable before it may be closed"),
    ("nCCDS", "<=", "nCCDL", "same-bank-group spacing cannot be shorter than different-group spacing"),
    ("nRRDS", "<=", "nRRDL", "same-bank-group spacing cannot be shorter than different-group spacing"),
    ("nWTRS", "<=", "nWTRL", "same-bank-group spacing cannot be shorter than different-group spacing"),
    ("nRFC", "<", "nREFI", "a refresh must finish before the next one is due"),
    ("nRC + nRFC", "<", "nREFI", "between two refreshes a row must be able to open and close once"),
    ("nBL", ">=", "1", "a burst takes at least one cycle"),
    ("nCL", ">=", "1", "read latency is at least one cycle"),
)

DDR4 = Standard(
    name="DDR4",
    description="JEDEC DDR4 SDRAM (JESD79-4), single rank, all-bank refresh",
    timing_params=TIMING,
    commands=COMMANDS,
    constraints=bus_constraints({"RD": "nCL"}, {"WR": "nCWL"}, ALL_DDR4)
    + row_constraints(("ACT",), ("PRE", "PREA"), ("RD",), ("WR",), ("REF",), ALL_DDR4)
    + (Constraint(BK, ("ACT",), ("RD", "WR"), "nRCD"),),
    sanity=SANITY,
)
