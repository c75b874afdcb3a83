"""The row_partition GEMV program: per-channel PIM command streams for y = W x.

Per channel, for each segment of the input dimension and each global-buffer-sized block of it: write
the block of x into the global buffer (WRGB), then for every wave open the wave's DRAM row in all banks
(ACTAB), run one all-bank MAC per column of the block for each bank of a unit (MACAB), read the
accumulators after each (RDMAC), and close the row (PREA). Every RDMAC returns one partial sum per unit
(per lane, for lane-accumulating units); the ASIC adds the partial sums of an output row, which is all
the reduction a split row needs. On GDDR6-AiM a block is a whole DRAM row, so each row opens once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.mapper.placement import GemvPlacement

# columns of GemvProgram.reads
RD_POS, RD_CHANNEL, RD_WAVE, RD_SEGMENT, RD_SELECT, RD_GROUP = range(6)


@dataclass
class GemvProgram:
    placement: GemvPlacement
    cmd: np.ndarray
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    select: np.ndarray  # bank within each unit, for MACAB
    payload: np.ndarray  # index of the x chunk a WRGB writes (-1 for other commands)
    reads: np.ndarray  # int64[RDMACs, 6]: stream position, channel, wave, segment, bank select, group
    outputs: int  # output values: active rows x column groups
    n_groups: int  # column groups (independent dot products per output row)
    partial_sums: int  # values the ASIC adds up (RDMAC results of real output rows, lanes included)

    @property
    def asic_adds(self) -> int:
        return self.partial_sums - self.outputs

    def __len__(self) -> int:
        return len(self.cmd)


def gemv_program(compiled: Compiled, placement: GemvPlacement, lanes_out: int = 1,
                 groups: list[tuple[int, int]] | None = None, rows_active: int | None = None) -> GemvProgram:
    """Build the command streams; `lanes_out` is how many accumulators each unit returns per RDMAC.

    ``groups`` splits the columns into independent dot products, as (first column access, number of
    accesses) over the padded input: each group gets its own RDMAC (attention reads one score per
    head from a row holding all heads). Columns in no group are never read. Default: one group of all
    columns. ``rows_active`` limits the work to the first output rows (a KV cache filled so far).
    """
    g = placement.geometry
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    cmd, node, row, column, select, payload, reads = [], [], [], [], [], [], []
    per_channel = g.units * g.banks_per_unit
    accesses_per_row = g.row_elems // g.elems_per_access
    if groups is None:
        groups = [(0, placement.cols_padded // g.elems_per_access)]
    rows_active = placement.rows_out if rows_active is None else rows_active
    partials = 0

    def emit(name, n, r=-1, k=-1, s=0, p=-1):
        cmd.append(ids[name]), node.append(n), row.append(r), column.append(k), select.append(s), payload.append(p)

    def emit_macs(n, r, lo, hi, s):
        """MACAB over column accesses lo..hi-1 (the bulk of every program: lists, not calls)."""
        count = hi - lo
        cmd.extend([ids["MACAB"]] * count), node.extend([n] * count), row.extend([r] * count)
        column.extend(range(lo * g.burst_length, hi * g.burst_length, g.burst_length))
        select.extend([s] * count), payload.extend([-1] * count)

    for ch in range(g.channels):
        rank, chan = int(compiled.rank_node(ch)), int(compiled.channel_node(ch))
        first_slot = ch * per_channel
        waves = [w for w in range(placement.waves) if w * g.slots + first_slot < rows_active]
        if not waves:
            continue
        for seg in range(placement.segments):
            ncol = placement.segment_columns(seg)
            first = seg * accesses_per_row  # global index of the segment's first column access
            for b0 in range(0, ncol, g.gb_chunks):
                b1 = min(ncol, b0 + g.gb_chunks)
                # each group's column accesses within this block, as segment-local indices
                parts = [(gi, max(b0, lo - first), min(b1, lo + n - first)) for gi, (lo, n) in enumerate(groups)]
                parts = [(gi, lo, hi) for gi, lo, hi in parts if lo < hi]
                if not parts:
                    continue
                for _, lo, hi in parts:
                    for k in range(lo, hi):
                        emit("WRGB", chan, k=k * g.burst_length, p=first + k)
                for w in waves:
                    r = placement.first_row + w * placement.segments + seg
                    emit("ACTAB", rank, r=r)
                    for sel in range(g.banks_per_unit):
                        base = w * g.slots + first_slot + sel * g.units
                        if base >= rows_active:
                            break
                        for gi, lo, hi in parts:
                            emit_macs(rank, r, lo, hi, sel)
                            emit("RDMAC", rank)
                            reads.append((len(cmd) - 1, ch, w, seg, sel, gi))
                            partials += min(g.units, rows_active - base) * lanes_out
                    emit("PREA", rank)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return GemvProgram(placement, a(cmd), a(node), a(row), a(column), a(select), a(payload),
                       np.asarray(reads, np.int64).reshape(-1, 6), rows_active * len(groups), len(groups), partials)


def gemv_program_wave_major(compiled: Compiled, placement: GemvPlacement, lanes_out: int = 1,
                            groups: list[tuple[int, int]] | None = None,
                            rows_active: int | None = None) -> GemvProgram:
    """The ``wave_major`` strategy: the same placement, but each wave's row stays open while every
    global-buffer block of its segment goes through, and the units accumulate across blocks.

    Where a segment fits the global buffer (GDDR6-AiM: always) this is the same program as
    ``row_partition``. Where it does not (HBM-PIM: 8 of the 32 column accesses of a row), x is written
    into the buffer again for every wave and bank of a unit, but each row opens once and each output
    takes one RDMAC per segment instead of one per block: fewer activations, fewer partial sums for
    the ASIC, more global-buffer writes. Arguments as for :func:`gemv_program`.
    """
    g = placement.geometry
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    cmd, node, row, column, select, payload, reads = [], [], [], [], [], [], []
    per_channel = g.units * g.banks_per_unit
    accesses_per_row = g.row_elems // g.elems_per_access
    if groups is None:
        groups = [(0, placement.cols_padded // g.elems_per_access)]
    rows_active = placement.rows_out if rows_active is None else rows_active
    partials = 0

    def emit(name, n, r=-1, k=-1, s=0, p=-1):
        cmd.append(ids[name]), node.append(n), row.append(r), column.append(k), select.append(s), payload.append(p)

    def emit_macs(n, r, lo, hi, s):
        """MACAB over column accesses lo..hi-1 (the bulk of every program: lists, not calls)."""
        count = hi - lo
        cmd.extend([ids["MACAB"]] * count), node.extend([n] * count), row.extend([r] * count)
        column.extend(range(lo * g.burst_length, hi * g.burst_length, g.burst_length))
        select.extend([s] * count), payload.extend([-1] * count)

    for ch in range(g.channels):
        rank, chan = int(compiled.rank_node(ch)), int(compiled.channel_node(ch))
        first_slot = ch * per_channel
        waves = [w for w in range(placement.waves) if w * g.slots + first_slot < rows_active]
        if not waves:
            continue
        for seg in range(placement.segments):
            ncol = placement.segment_columns(seg)
            first = seg * accesses_per_row
            # each group's column accesses within this segment, as segment-local ranges
            parts = [(gi, max(0, lo - first), min(ncol, lo + n - first)) for gi, (lo, n) in enumerate(groups)]
            parts = [(gi, lo, hi) for gi, lo, hi in parts if lo < hi]
            if not parts:
                continue
            used = sorted({k for _, lo, hi in parts for k in range(lo, hi)})
            fits = len({k // g.gb_chunks for k in used}) == 1
            if fits:  # the whole segment in the buffer at once: write it once for all waves
                for k in used:
                    emit("WRGB", chan, k=k * g.burst_length, p=first + k)
            for w in waves:
                r = placement.first_row + w * placement.segments + seg
                emit("ACTAB", rank, r=r)
                for sel in range(g.banks_per_unit):
                    base = w * g.slots + first_slot + sel * g.units
                    if base >= rows_active:
                        break
                    loaded = -1 if not fits else used[0] // g.gb_chunks
                    for gi, lo, hi in parts:
                        k = lo
                        while k < hi:
                            block = k // g.gb_chunks
                            if block != loaded:  # bring this block of x into the buffer
                                for kk in used:
                                    if kk // g.gb_chunks == block:
                                        emit("WRGB", chan, k=kk * g.burst_length, p=first + kk)
                                loaded = block
                            end = min(hi, (block + 1) * g.gb_chunks)
                            emit_macs(rank, r, k, end, sel)
                            k = end
                        emit("RDMAC", rank)
                        reads.append((len(cmd) - 1, ch, w, seg, sel, gi))
                        partials += min(g.units, rows_active - base) * lanes_out
                emit("PREA", rank)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return GemvProgram(placement, a(cmd), a(node), a(row), a(column), a(select), a(payload),
                       np.asarray(reads, np.int64).reshape(-1, 6), rows_active * len(groups), len(groups), partials)


STRATEGIES = {"row_partition": gemv_program, "wave_major": gemv_program_wave_major}
