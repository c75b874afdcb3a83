"""Samsung's PIMSimulator GEMV, re-stated: its kernel's transaction sequence and its controller's rules.

    python analysis/pimsimulator_rules.py          # the 4096 x 4096 bench, with each rule's share

Samsung's public simulator (SAITPublic/PIMSimulator, DRAMSim2 based) cannot be built or run here. Its
cycles for a GEMV are derived instead from what its sources document, re-stated in this module (facts
carried over, no code):

The kernel (src/tests/PIMKernel.cpp executeGemv / computeGemv / changePIMMode / programCrf / parkIn /
parkOut; PIMBenchTestCases.h: 64 channels, one PIM rank) queues, per channel, these transactions, each
group closed by a barrier:

- park-in: 16 writes, one to every bank (bank-major over the 4 bank groups), row 0x1000;
- SB -> AB: writes to row 0x17ff of (bg0, ba0), (bg0, ba1), (bg2, ba0), (bg2, ba1);
- the CRF program: one write per 8 instructions to (bg0, ba1) row 0x3fff;
- per output tile: PIMON (a write to (bg0, ba0) row 0x3fff); for the even input tiles, then the odd
  ones: 8 GRF_A writes to (bg0, ba1) row 0x3fff (one group), then 64 MAC reads of the tile's bank
  (bg0, ba0 even / ba1 odd), 8 groups of 8, at row 0 column 64 x (tile / 2 + output tile x tiles / 2)
  + k, a column past 31 carried into the next row (KernelAddrGen addrGenSafe: 32 bursts per 1 KB row);
  8 write-backs to (bg0, ba1) at column 64 x output tiles x (tiles / 2) + 8 j; PIMOFF (row 0x3fff,
  bank 0);
- AB -> SB: writes to row 0x1fff of (bg0, ba0), (bg0, ba1); park-out: writes to row 0x1000 of the same.

The controller (src/MemoryController.cpp, src/CommandQueue.cpp; system_hbm_64ch.ini: per-rank queue of
depth 64, open page, rank-then-bank round robin) moves one transaction a cycle into the command queue
and issues at most one command a cycle, in this priority: refresh (precharge the rank's open banks, then
REF); the first issuable column command in queue order (none past a barrier that has not issued: a
barrier-tagged command issues only from the queue's head); an ACT for the first queued command whose
bank is idle (scanning up to the next barrier); a precharge of an open bank that no queued command (up
to the first barrier) wants. In PIM modes only banks 0 and 1 (bg0's ba0/ba1: the even and odd banks of
every unit) may be activated; after SB -> AB the kernel addresses no other, so the re-statement needs
no mode check. Timing (DRAMSim2's rules, HBM2_samsung_2M_16B_x64.ini's values as
hbm-pim.yaml holds them):

- a READ (a MAC in PIM mode) spaces the next read max(tCCD, BL/2) (tCCD_L in its bank group, tCCD_S
  elsewhere) and the next write by RL + BL/2 + tRTRS - WL; a WRITE the next read by WL + BL/2 + tWTR_L
  and the next write by max(tCCD, BL/2);
- ACT: read tRCDRD, write tRCDWR, precharge tRAS, same-bank ACT tRC, other banks tRRD_L/tRRD_S, at most
  4 ACTs in tXAW; PRE: tRP; precharge after a read AL + BL/2 + max(tRTP, 2) - 2, after a write
  WL + BL/2 + tWR;
- refresh: every tREFI per rank, rank r first at (r + 1) tREFI / ranks (staggered), blocking the rank
  tRFC; the bench's device has 2 ranks per channel (256 MB x 64 x 2 of storage) of which the kernel
  uses rank 0 (rank 1's refresh takes one command slot);
- the run ends when every transaction has left the controller (the last write has issued; a read
  has returned its data, RL + BL/2 after it issued).

:func:`gemv_cycles` runs those rules cycle by cycle on one channel (every channel runs the same
stream). Items named ``assumed`` below are not in the sources read: tRTRS (1, DRAMSim2's usual value),
the end-of-run tail, and that a transaction reaches the command queue the cycle after it moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

REGISTER_ROW = 0x3FFF
PARK_ROW = 1 << 12
ENTER_AB_ROW = 0x17FF
EXIT_AB_ROW = 0x1FFF
BANKS = 16
BANKS_PER_GROUP = 4
COLUMNS_PER_ROW = 32  # bursts of 32 B in a 1 KB row (addrGenSafe carries columns past 31 into the next row)
GRF = 8  # GRF_A / GRF_B registers per unit
UNITS = 8  # PIM units per channel
LANES = 16
CMD_QUEUE_DEPTH = 64  # system_hbm_64ch.ini CMD_QUEUE_DEPTH
XAW = 4  # activates per tXAW window (HBM2_samsung_2M_16B_x64.ini, as hbm-pim.yaml's nFAW note says)
SOURCE = "derived from SAITPublic/PIMSimulator (PIMKernel.cpp executeGemv, CommandQueue.cpp, MemoryController.cpp)"


@dataclass(frozen=True)
class Txn:
    write: bool
    bank: int  # bg x 4 + ba
    row: int
    barrier: bool = False  # the last transaction of a group (the kernel's addBarrier)


@dataclass(frozen=True)
class Rules:
    """The controller's rules, each switchable so that each one's share of the cycles can be measured."""

    ranks: int = 2  # ranks per channel (rank 0 runs the kernel); refresh staggered by tREFI / ranks
    refresh: bool = True
    park: bool = True  # park-in / park-out writes
    register_row: bool = True  # register writes (GRF_A, CRF, PIMON/OFF) need row 0x3fff open in their bank
    bus_turnaround: bool = True  # MACs are READs: read-to-write and write-to-read turnarounds apply
    register_write_ccd: bool = True  # register writes spaced tCCD_L (they all go to one bank), not BL/2
    trtrs: int = 1  # assumed: DRAMSim2's usual tRTRS


def gemv_transactions(rows: int, cols: int, channels: int, crf_writes: int = 1, rules: Rules = Rules()) -> list[Txn]:
    """One channel's transactions for PIMKernel::executeGemv (batch 1, not the adder-tree variant)."""
    out_tiles = -(-rows // (GRF * UNITS * channels))
    in_tiles = -(-cols // (GRF * LANES))
    seq: list[Txn] = []

    def group(items):
        items = list(items)
        seq.extend(items[:-1])
        seq.append(replace(items[-1], barrier=True))

    def at(bank, column):  # (bank, row) of a column in the kernel's row-0-based addressing
        return bank, column // COLUMNS_PER_ROW

    if rules.park:
        group(Txn(True, bg * BANKS_PER_GROUP + ba, PARK_ROW) for ba in range(4) for bg in range(4))
    group(Txn(True, b, ENTER_AB_ROW) for b in (0, 1, 8, 9))
    group(Txn(True, 1, REGISTER_ROW) for _ in range(crf_writes))
    for j in range(out_tiles):
        group([Txn(True, 0, REGISTER_ROW)])  # PIMON
        for parity in (0, 1):
            for i in range(parity, in_tiles, 2):
                group(Txn(True, 1, REGISTER_ROW) for _ in range(GRF))  # GRF_A <- the input tile
                base = GRF * GRF * (i // 2 + j * (in_tiles // 2))
                for g in range(0, 64, 8):
                    group(Txn(False, *at(parity, base + g + k)) for k in range(GRF))
        base = GRF * GRF * out_tiles * (in_tiles // 2) + j * GRF
        group(Txn(True, *at(1, base + k)) for k in range(GRF))  # GRFB_TO_BANK
        group([Txn(True, 0, REGISTER_ROW)])  # PIMOFF
    group(Txn(True, b, EXIT_AB_ROW) for b in (0, 1))
    if rules.park:
        group(Txn(True, b, PARK_ROW) for b in (0, 1))
    return seq


@dataclass
class _Bank:
    open_row: int | None = None
    idle_at: int = 0  # precharging / refreshing until
    next_act: int = 0
    next_pre: int = 0
    next_read: int = 0
    next_write: int = 0


@dataclass
class Result:
    cycles: int
    commands: dict = field(default_factory=dict)


def _same_group(a: int, b: int) -> bool:
    return a // BANKS_PER_GROUP == b // BANKS_PER_GROUP


def run(seq: list[Txn], t: dict, rules: Rules = Rules()) -> Result:
    """Cycles the controller takes for one channel's transactions, by the rules of the module docstring."""
    bl2, rl, wl = t["nBL"], t["nCL"], t["nCWL"]
    timing = _Timing(
        read_to_pre=bl2 + max(t["nRTP"], 2) - 2,
        write_to_pre=wl + bl2 + t["nWR"],
        read_to_write=rl + bl2 + rules.trtrs - wl if rules.bus_turnaround else 1,
        write_to_read=wl + bl2 + t["nWTRL"] if rules.bus_turnaround else t["nCWLGB"] + bl2,
        register_spacing=t["nCCDL"] if rules.register_write_ccd else bl2,
    )
    banks = [_Bank() for _ in range(BANKS)]
    acts: list[int] = []  # issue cycles of recent ACTs (the tXAW window)
    pending = list(reversed(seq))
    queue: list[Txn] = []
    counts = {"ACT": 0, "PRE": 0, "RD": 0, "WR": 0, "REF": 0}
    refresh_due = [(r + 1) * t["nREFI"] // rules.ranks for r in range(rules.ranks)]
    refresh_rank, refresh_waiting = 0, None
    last_data = cycle = 0
    while pending or queue:
        cycle += 1
        issued = None
        if rules.refresh and refresh_waiting is None and cycle >= refresh_due[refresh_rank]:
            refresh_waiting = refresh_rank
            refresh_due[refresh_rank] += t["nREFI"]
            refresh_rank = (refresh_rank + 1) % rules.ranks
        if refresh_waiting is not None:  # refresh first: precharge the rank's open banks, then REF
            if refresh_waiting != 0:  # the idle rank: REF at once, one command slot
                issued, refresh_waiting = "REF", None
            elif all(b.open_row is None for b in banks):
                for b in banks:
                    b.idle_at = b.next_act = cycle + t["nRFC"]
                issued, refresh_waiting = "REF", None
            else:
                for b in banks:
                    if b.open_row is not None and cycle >= b.next_pre:
                        _close(b, cycle, t)
                        issued = "PRE"
                        break
        if issued is None:  # otherwise (a refresh waiting on a precharge too) the queue's commands
            txn = _column(queue, banks, cycle, t, timing, rules)
            if txn is not None:
                issued = "WR" if txn.write else "RD"
                last_data = max(last_data, cycle + (0 if txn.write else rl + bl2))
        if issued is None:
            issued = _activate(queue, banks, cycle, t, acts, rules)
        if issued is None:
            issued = _precharge(queue, banks, cycle, t)
        if issued is not None:
            counts[issued] += 1
        if pending and len(queue) < CMD_QUEUE_DEPTH:  # one transaction a cycle into the command queue
            queue.append(pending.pop())
    return Result(max(cycle, last_data), counts)


@dataclass(frozen=True)
class _Timing:
    read_to_pre: int
    write_to_pre: int
    read_to_write: int
    write_to_read: int
    register_spacing: int


def _close(b: _Bank, cycle: int, t: dict) -> None:
    b.open_row, b.idle_at = None, cycle + t["nRP"]
    b.next_act = max(b.next_act, cycle + t["nRP"])


def _rowless(q: Txn, rules: Rules) -> bool:
    """A register write that needs no open row (the register_row rule off)."""
    return not rules.register_row and q.row == REGISTER_ROW


def _column(queue, banks, cycle, t, timing: _Timing, rules: Rules) -> Txn | None:
    """The first issuable column command: none past an unissued barrier, a barrier only from the head."""
    for i, q in enumerate(queue):
        if i and (q.barrier or queue[i - 1].barrier):
            break
        bank = banks[q.bank]
        ready = bank.next_write if q.write else bank.next_read
        if cycle < ready or not (_rowless(q, rules) or bank.open_row == q.row):
            continue
        if any(p.bank == q.bank and p.row == q.row for p in queue[:i]):  # same-address order
            continue
        del queue[i]
        for k, b in enumerate(banks):
            near = _same_group(k, q.bank)
            if q.write:
                spacing = timing.register_spacing if q.row == REGISTER_ROW else t["nCCDL"]
                b.next_read = max(b.next_read, cycle + timing.write_to_read)
                b.next_write = max(b.next_write, cycle + max(spacing if near else t["nCCDS"], t["nBL"]))
            else:
                b.next_read = max(b.next_read, cycle + max(t["nCCDL"] if near else t["nCCDS"], t["nBL"]))
                b.next_write = max(b.next_write, cycle + timing.read_to_write)
        if not _rowless(q, rules):
            bank.next_pre = max(bank.next_pre, cycle + (timing.write_to_pre if q.write else timing.read_to_pre))
        return q
    return None


def _activate(queue, banks, cycle, t, acts, rules: Rules) -> str | None:
    """An ACT for the first queued command (up to the next barrier) whose bank is idle."""
    while acts and acts[0] <= cycle - t["nFAW"]:
        acts.pop(0)
    for i, q in enumerate(queue):
        if i and q.barrier:
            break
        b = banks[q.bank]
        if _rowless(q, rules) or b.open_row is not None or cycle < max(b.idle_at, b.next_act) or len(acts) >= XAW:
            continue
        b.open_row = q.row
        b.next_pre = max(b.next_pre, cycle + t["nRAS"])
        b.next_read = max(b.next_read, cycle + t["nRCDRD"])
        b.next_write = max(b.next_write, cycle + t["nRCDWR"])
        b.next_act = max(b.next_act, cycle + t["nRC"])
        for k, other in enumerate(banks):
            if k != q.bank:
                other.next_act = max(other.next_act, cycle + (t["nRRDL"] if _same_group(k, q.bank) else t["nRRDS"]))
        acts.append(cycle)
        return "ACT"
    return None


def _precharge(queue, banks, cycle, t) -> str | None:
    """A precharge of an open bank whose row no queued command (up to the first barrier) wants."""
    for k, b in enumerate(banks):
        if b.open_row is None or cycle < b.next_pre:
            continue
        wanted = False
        for q in queue:
            wanted = wanted or (q.bank == k and q.row == b.open_row)
            if q.barrier:
                break
        if not wanted:
            _close(b, cycle, t)
            return "PRE"
    return None


def gemv_cycles(rows: int, cols: int, channels: int, timing: dict, rules: Rules = Rules()) -> Result:
    return run(gemv_transactions(rows, cols, channels, rules=rules), timing, rules)


def main() -> None:
    from validation_hbm_pim import VENDOR_PIM_CYCLES, bench_hardware, vendor_decomposition

    hw = bench_hardware()
    d = vendor_decomposition(4096, 4096, hw.dram.organization.channels, dict(hw.dram.timing), refresh=True)
    print(f"4096 x 4096 on 64 channels, refresh on: {d['derived']:,} cycles derived "
          f"(published {VENDOR_PIM_CYCLES:,}; {SOURCE})")
    for name, share, cause in d["shares"]:
        print(f"  {share:+7,}  {name}: {cause}")
    print(f"  {d['without_rules']:,} cycles without those rules")


if __name__ == "__main__":
    main()
