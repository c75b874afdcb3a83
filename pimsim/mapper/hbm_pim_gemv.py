"""The ``hbm_pim_gemv`` strategy: Samsung HBM-PIM's GEMV kernel (PIMSimulator PIMKernel::executeGemv).

Tiling (facts from the public PIMSimulator, src/tests/PIMKernel.cpp: preloadGemv, executeGemv,
computeGemv; REFERENCE.md section 3):

- an *output tile* is ``R`` output rows (R = 8 GRF_B registers) per PIM unit of every channel:
  R x units x channels rows (1024 on 16 pseudo-channels); the matrix is padded to whole output tiles;
- an *input tile* is what GRF_A holds: T column accesses (T = 8 registers of 16 FP16 values, 128
  inputs); the input is padded to whole tiles;
- per unit and output tile, input tiles alternate between the unit's two banks (even tiles in the even
  bank, odd tiles in the odd bank); a tile takes R x T column accesses (64: two 1 KB rows), pimsim
  ordering them output-row-major (access k x T + b holds output row k's input burst b; the vendor
  orders them input-major, which costs the same commands);
- per channel: SB -> AB mode, CRF program load; per output tile: AB -> AB-PIM (which zeroes GRF_B),
  then for the even tiles and then the odd tiles: the previous tile's row closed (PREA, hidden behind the
  writes that follow), GRF_A <- the tile of x (T writes), one all-bank MAC
  per access (each row activation serves apr MACs, 32 on HBM2-PIM), then the R accumulators leave the
  units (``results="read"``: R reads, one 32 B burst per unit each; ``"write_back"``: R all-bank
  writes of GRF_B into a result row, as the vendor kernel does) and AB-PIM -> AB; finally AB -> SB.

The ASIC adds each output row's 16 lane partial sums (the vendor's host adds them by an adder tree).
A matrix placed for another strategy (the KV cache's row_partition layout, whose per-head column
groups this kernel has no form for) gets the row_partition program.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import Compiled
from pimsim.dram.standards.hbm2_pim import MODE_SEQUENCES
from pimsim.errors import PimsimError
from pimsim.mapper.gemv import GemvProgram, gemv_program
from pimsim.mapper.placement import Geometry, RowAllocator
from pimsim.pim.hbm_pim import crf_writes, gemv_crf_program

STRATEGY = "hbm_pim_gemv"


@dataclass(frozen=True)
class HbmPimPlacement:
    """Where W (rows_out x cols_in) lives under the vendor's tiling (see the module docstring)."""

    geometry: Geometry
    rows_out: int
    cols_in: int
    first_row: int
    registers: int  # R: GRF_B registers, output rows per unit per output tile
    split: int = 1  # (the interface of GemvPlacement: the vendor never splits over channel groups)
    pack: int = 1

    @property
    def tile_accesses(self) -> int:  # T
        return self.geometry.gb_chunks

    @property
    def tile_cols(self) -> int:
        return self.tile_accesses * self.geometry.elems_per_access

    @property
    def input_tiles(self) -> int:
        return -(-self.cols_in // self.tile_cols)

    @property
    def cols_padded(self) -> int:
        return self.input_tiles * self.tile_cols

    @property
    def out_tile_rows(self) -> int:
        g = self.geometry
        return self.registers * g.units * g.channels

    @property
    def output_tiles(self) -> int:
        return -(-self.rows_out // self.out_tile_rows)

    @property
    def rows_padded(self) -> int:
        return self.output_tiles * self.out_tile_rows

    @property
    def accesses_per_row(self) -> int:
        return self.geometry.row_elems // self.geometry.elems_per_access

    @property
    def rows_per_output_tile(self) -> int:
        """DRAM rows per bank one output tile takes (the even bank holds the extra tile of an odd count)."""
        return -(-(-(-self.input_tiles // 2)) * self.registers * self.tile_accesses // self.accesses_per_row)

    @property
    def dram_rows(self) -> int:
        return self.output_tiles * self.rows_per_output_tile

    def result_rows(self, vectors: int = 1) -> int:
        """Rows after the matrix that the ``write_back`` results take (8 registers per output tile and
        vector, one column access each); the caller keeps them free."""
        return -(-self.output_tiles * vectors * self.registers // self.accesses_per_row)

    # the GemvPlacement interface the kernels' statistics read
    segments = input_tiles
    waves = output_tiles

    @property
    def utilization(self) -> float:
        g = self.geometry
        return self.rows_out * self.cols_in / (self.dram_rows * g.row_elems * g.slots)

    def access(self, tile: int, register: int, burst) -> tuple:
        """(DRAM row offset within the output tile, column access) of input tile ``tile``'s burst ``burst``
        for output register ``register`` (in the tile's bank: even or odd by the tile's parity)."""
        off = tile // 2 * self.registers * self.tile_accesses + register * self.tile_accesses + burst
        return np.divmod(off, self.accesses_per_row)

    def output_row(self, tile: int, register: int, channel: int, unit) -> np.ndarray:
        g = self.geometry
        return tile * self.out_tile_rows + (register * g.channels + channel) * g.units + unit

    def where(self, m, n):
        """(channel, bank, DRAM row, element in the row) of elements W[m, n]."""
        g = self.geometry
        m, n = np.asarray(m), np.asarray(n)
        j, r = np.divmod(m, self.out_tile_rows)
        k, rest = np.divmod(r, g.units * g.channels)
        ch, u = np.divmod(rest, g.units)
        i, within = np.divmod(n, self.tile_cols)
        b, lane = np.divmod(within, g.elems_per_access)
        row_off, acc = self.access(i, k, b)
        row = self.first_row + j * self.rows_per_output_tile + row_off
        return ch, u * g.banks_per_unit + i % 2, row, acc * g.elems_per_access + lane

    def column_tiles(self):
        """(first column, width) of every piece of a row of W that sits contiguously in one DRAM row."""
        e = self.geometry.elems_per_access
        for lo in range(0, self.cols_padded, e):
            yield lo, min(e, self.cols_padded - lo)


def place(hw: HardwareConfig, geometry: Geometry, rows_out: int, cols_in: int,
          allocator: RowAllocator | None = None, tensor: str = "W") -> HbmPimPlacement:
    """Place W under the vendor's tiling (rows allocated from `allocator` if given, else at row 0)."""
    problems = check_device(hw, geometry)
    if problems:
        raise PimsimError(f"{hw.name}: the {STRATEGY} strategy needs Samsung HBM-PIM's organisation: "
                          + "; ".join(problems))
    if rows_out < 1 or cols_in < 1:
        raise PimsimError(f"a GEMV needs at least one row and one column, got {rows_out} x {cols_in}")
    p = HbmPimPlacement(geometry, rows_out, cols_in, 0, hw.pim.accumulator_registers)
    if allocator is not None:
        p = replace(p, first_row=allocator.allocate(tensor, p.dram_rows))
    return p


def check_device(hw: HardwareConfig, geometry: Geometry) -> list[str]:
    """What keeps a config from running this strategy (empty: nothing)."""
    out = []
    if hw.dram.standard != "HBM2-PIM":
        out.append(f"dram.standard is {hw.dram.standard}, not HBM2-PIM")
    if hw.pim is None:
        return out + ["no pim section"]
    if hw.pim.banks_per_unit != 2:
        out.append(f"pim.banks_per_unit is {hw.pim.banks_per_unit}; the kernel alternates input tiles over a "
                   "unit's two banks")
    if hw.pim.accumulator_registers < 2:
        out.append("pim.accumulator_registers must name GRF_B's registers (8)")
    apr = geometry.row_elems // geometry.elems_per_access
    if geometry.gb_chunks < 1 or apr % geometry.gb_chunks:
        out.append(f"an input tile of {geometry.gb_chunks} column accesses must divide a DRAM row of {apr}")
    if apr % hw.pim.accumulator_registers:
        out.append(f"the {hw.pim.accumulator_registers} GRF_B registers' write-back must fit a DRAM row of {apr}")
    return out


@dataclass
class HbmPimProgram(GemvProgram):
    register: np.ndarray | None = None  # GRF_B register of each MACAB / RDMAC / WRAB (the CRF's AAM index)
    crf: tuple = ()  # the CRF program the MACs follow


def hbm_pim_gemv_program(compiled: Compiled, placement, lanes_out: int = 1, groups=None, rows_active=None,
                         vectors: int = 1, buffer_vectors: int = 1, results: str = "read") -> GemvProgram:
    """The vendor's GEMV command streams for a matrix placed by :func:`place` (one per channel). A
    matrix placed another way (a KV cache) gets :func:`pimsim.mapper.gemv.gemv_program`. ``vectors``
    input vectors are multiplied one after another inside each output tile (the vendor's batch loop)."""
    if not isinstance(placement, HbmPimPlacement):
        return gemv_program(compiled, placement, lanes_out, groups, rows_active, vectors, buffer_vectors)
    if groups is not None or rows_active is not None:
        raise PimsimError(f"the {STRATEGY} kernel multiplies whole matrices: no column groups or partial rows")
    if results not in ("read", "write_back"):
        raise PimsimError(f"results must be 'read' or 'write_back', not {results!r}")
    p, g = placement, placement.geometry
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    lists = tuple([] for _ in range(7))  # cmd, node, row, column, select, payload, register
    reads: list[tuple] = []
    bl, R, T = g.burst_length, p.registers, p.tile_accesses
    per = g.writes_per_mac
    crf = gemv_crf_program(p.input_tiles, R, T)
    x_chunks = p.cols_padded // g.elems_per_access * per  # payload chunks of one input vector
    result_base = p.first_row + p.dram_rows  # the write-back rows (write_back only)

    def emit(name, n, r=-1, k=-1, s=0, pay=-1, reg=0):
        for target, value in zip(lists, (ids[name], n, r, k, s, pay, reg)):
            target.append(value)

    partials = 0
    for ch in range(g.channels):
        rank, chan = int(compiled.rank_node(ch)), int(compiled.channel_node(ch))

        def mode(src, dst):
            for step in MODE_SEQUENCES[(src, dst)]:
                if step.command in ("ACT", "PRE"):
                    node = int(compiled.bank_node(ch, 0, step.bankgroup, step.bank))
                    emit(step.command, node, r=step.row % g.rows if step.row is not None else -1)
                else:
                    emit(step.command, chan)

        mode("SB", "AB")
        for _ in range(crf_writes(crf)):
            emit("WRCRF", chan)
        for j in range(p.output_tiles):
            base_row = p.first_row + j * p.rows_per_output_tile
            for v in range(vectors):
                mode("AB", "AB-PIM")
                for parity in (0, 1):
                    open_row = -1
                    for i in range(parity, p.input_tiles, 2):
                        first_row = base_row + int(p.access(i, 0, 0)[0])
                        if open_row >= 0 and first_row != open_row:  # close the old row before the GRF_A writes
                            emit("PREA", rank)  # (they need no row: its precharge hides behind them)
                            open_row = -1
                        for s in range(T * per):  # GRF_A <- input tile i
                            emit("WRGB", chan, k=s * bl, pay=v * x_chunks + i * T * per + s)
                        for k in range(R):
                            rows, cols = p.access(i, k, np.arange(T))
                            for r_off, col in zip(rows.tolist(), cols.tolist()):
                                if base_row + r_off != open_row:
                                    if open_row >= 0:
                                        emit("PREA", rank)
                                    open_row = base_row + r_off
                                    emit("ACTAB", rank, r=open_row)
                                emit("MACAB", rank, r=open_row, k=col * bl, s=parity, reg=k)
                    if open_row >= 0:
                        emit("PREA", rank)
                if results == "read":
                    for k in range(R):
                        emit("RDMAC", rank, reg=k)
                        first = int(p.output_row(j, k, ch, 0))
                        reads.append((len(lists[0]) - 1, ch, j, v, k, 0, first))
                        partials += max(0, min(g.units, p.rows_out - first)) * lanes_out
                else:  # GRF_B[k] of every unit into its odd bank, column access (j, v, k) of the result rows
                    first = (j * vectors + v) * R
                    result_row = result_base + first // p.accesses_per_row
                    emit("ACTAB", rank, r=result_row)
                    for k in range(R):
                        emit("WRAB", rank, r=result_row, k=(first + k) % p.accesses_per_row * bl, s=1, reg=k)
                    emit("PREA", rank)
                mode("AB-PIM", "AB")
        mode("AB", "SB")
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    cmd, node, row, column, select, payload, register = (a(v) for v in lists)
    return HbmPimProgram(p, cmd, node, row, column, select, payload, a(reads).reshape(-1, 7),
                         p.rows_out * vectors, 1, partials, register=register, crf=crf)

