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
RD_POS, RD_CHANNEL, RD_WAVE, RD_SEGMENT, RD_SELECT = range(5)


@dataclass
class GemvProgram:
    placement: GemvPlacement
    cmd: np.ndarray
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    select: np.ndarray  # bank within each unit, for MACAB
    payload: np.ndarray  # index of the x chunk a WRGB writes (-1 for other commands)
    reads: np.ndarray  # int64[RDMACs, 5]: stream position, channel, wave, segment, bank select
    partial_sums: int  # values the ASIC adds up (RDMAC results of real output rows, lanes included)
    asic_adds: int  # additions that takes: partial_sums - outputs

    def __len__(self) -> int:
        return len(self.cmd)


def gemv_program(compiled: Compiled, placement: GemvPlacement, lanes_out: int = 1) -> GemvProgram:
    """Build the command streams; `lanes_out` is how many accumulators each unit returns per RDMAC."""
    g = placement.geometry
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    cmd, node, row, column, select, payload, reads = [], [], [], [], [], [], []
    per_channel = g.units * g.banks_per_unit
    partials = 0

    def emit(name, n, r=-1, k=-1, s=0, p=-1):
        cmd.append(ids[name]), node.append(n), row.append(r), column.append(k), select.append(s), payload.append(p)

    accesses_per_row = g.row_elems // g.elems_per_access
    for ch in range(g.channels):
        rank, chan = int(compiled.rank_node(ch)), int(compiled.channel_node(ch))
        first_slot = ch * per_channel
        waves = [w for w in range(placement.waves) if w * g.slots + first_slot < placement.rows_out]
        if not waves:
            continue
        for seg in range(placement.segments):
            ncol = placement.segment_columns(seg)
            for b0 in range(0, ncol, g.gb_chunks):
                block = range(b0, min(ncol, b0 + g.gb_chunks))
                for k in block:
                    emit("WRGB", chan, k=k * g.burst_length, p=seg * accesses_per_row + k)
                for w in waves:
                    r = placement.first_row + w * placement.segments + seg
                    emit("ACTAB", rank, r=r)
                    for sel in range(g.banks_per_unit):
                        base = w * g.slots + first_slot + sel * g.units
                        if base >= placement.rows_out:
                            break
                        for k in block:
                            emit("MACAB", rank, r=r, k=k * g.burst_length, s=sel)
                        emit("RDMAC", rank)
                        reads.append((len(cmd) - 1, ch, w, seg, sel))
                        partials += min(g.units, placement.rows_out - base) * lanes_out
                    emit("PREA", rank)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return GemvProgram(placement, a(cmd), a(node), a(row), a(column), a(select), a(payload),
                       np.asarray(reads, np.int64).reshape(-1, 5), partials, partials - placement.rows_out)
