"""Where matrices live: DRAM rows handed out to tensors, and the tile layout of a GEMV weight matrix.

Every bank of every channel advances through its rows in step (an all-bank activate opens the same
row everywhere), so memory is handed out in *row indices*: a tensor owns rows [first, first + count)
in every bank of every channel. ``RowAllocator`` does that and refuses what does not fit.

``row_partition`` (the PIM-GPT layout): the input dimension of W (M x N) is padded to whole column
accesses and cut into *segments* of one DRAM row each; output rows are dealt to *slots*, one slot
being a (channel, PIM unit, bank of the unit) triple, so a *wave* of consecutive output rows occupies
every slot once. Tile (wave w, segment s) of every slot sits in DRAM row first + w x segments + s.

A matrix with at most half as many output rows as there are slots (the transposed V cache, whose
rows are the head dimensions; a K cache reserved for few tokens) would leave channels idle. Such a
matrix is *split*: the channels form ``split`` groups, the input dimension is cut into as many
contiguous parts, and part j lives on channel group j, its rows dealt over that group's slots.
Every group works on its own part of x (the global buffer is per channel) and the ASIC adds the
groups' partial sums like those of any split row.

A weight matrix whose rows need at most half a DRAM row (narrow formats: 128 ternary weights per
column access make a GPT-2 XL row of 1600 weights 13 of the 64 accesses of a GDDR6-AiM row) is
*packed*: ``pack`` output rows share each DRAM row of a slot, each starting on a global-buffer
boundary, so the one block of x in the buffer serves all of them and a row activation is paid once
per ``pack`` output rows. Output rows are dealt to slots first, then to the packed places of a DRAM
row ("virtual waves" v: DRAM row v // pack, place v % pack), so a partly filled matrix (a KV cache)
still spreads over every slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim.config.models import FORMAT_BITS, HardwareConfig
from pimsim.errors import PimsimError
from pimsim.pim.formats import GROUP_SIZE, OPERAND_BITS, WEIGHT_BITS, elements_in, row_elements


@dataclass(frozen=True)
class Geometry:
    """The shape of the PIM memory as the mapper sees it."""

    channels: int
    units: int  # PIM units per channel
    banks_per_unit: int
    rows: int  # DRAM rows per bank
    row_elems: int  # operands per DRAM row
    elems_per_access: int  # operands per column access (the products of one MAC)
    gb_chunks: int  # MACs whose activations the global buffer holds at once
    burst_length: int  # device columns per column access
    operand_bytes: float  # bytes one stored operand (weight or KV value) takes
    integer: bool  # integer operands and accumulators (partial sums are added exactly)
    split_small: bool = True  # split matrices with few output rows over channel groups
    pack_rows: bool = True  # pack narrow weight matrices several output rows to a DRAM row
    writes_per_mac: int = 1  # global-buffer writes (one column access each) carrying one MAC's activations
    lanes_out: int = 1  # accumulators a unit returns per RDMAC (its lanes, when they accumulate apart)
    acc_bytes: int = 4  # bytes of one accumulator value
    fmt: str = "bf16"  # format of the stored operands
    group_accesses: int = 0  # column accesses of one scale group's codes (int4-g128: 2); 0: no group scales

    @classmethod
    def of(cls, hw: HardwareConfig, kv: bool = False) -> Geometry:
        """The geometry of the weights (or, with `kv`, of the KV cache) in hw's configured formats."""
        if hw.pim is None:
            raise PimsimError(f"{hw.name}: has no pim section; PIM kernels need PIM hardware")
        org, pim = hw.dram.organization, hw.pim
        fmt = pim.cache_format if kv else pim.weight_format
        path = pim.datapath(fmt)
        elems = elements_in(org.access_bytes, fmt)
        act_bytes = elems * OPERAND_BITS[path.activation_format] // 8  # one MAC's activations
        if fmt in GROUP_SIZE and hw.mapping.gemv == "hbm_pim_gemv":
            raise PimsimError(f"{hw.name}: Samsung's GEMV kernel (mapping.gemv: hbm_pim_gemv) has no step that "
                              f"loads {fmt}'s group scales; run {fmt} weights with --set mapping.gemv=row_partition "
                              f"(or wave_major)")
        return cls(channels=org.channels, units=org.ranks * org.banks // pim.banks_per_unit,
                   banks_per_unit=pim.banks_per_unit, rows=org.rows,
                   row_elems=row_elements(org.row_bytes, org.access_bytes, fmt),
                   elems_per_access=elems, gb_chunks=pim.global_buffer_bytes // act_bytes,
                   burst_length=org.burst_length, operand_bytes=float(WEIGHT_BITS[fmt] / 8),
                   integer=path.accumulator_format == "int32", split_small=hw.mapping.channel_split == "auto",
                   pack_rows=hw.mapping.row_packing == "auto",
                   writes_per_mac=act_bytes // org.access_bytes,
                   lanes_out=path.lanes if path.accumulate == "lanes" else 1,
                   acc_bytes=FORMAT_BITS[path.accumulator_format] // 8, fmt=fmt,
                   group_accesses=GROUP_SIZE[fmt] // elems if fmt in GROUP_SIZE else 0)

    @property
    def slots(self) -> int:
        return self.channels * self.units * self.banks_per_unit


class RowAllocator:
    """Hands out DRAM row ranges (the same in every bank) to named tensors."""

    def __init__(self, geometry: Geometry, name: str = "memory"):
        self.geometry = geometry
        self.name = name
        self.next_row = 0
        self.regions: dict[str, tuple[int, int]] = {}

    def allocate(self, tensor: str, rows: int) -> int:
        if tensor in self.regions:
            raise PimsimError(f"tensor {tensor!r} is already placed")
        if rows < 1:
            raise PimsimError(f"tensor {tensor!r}: needs at least one row, asked for {rows}")
        g = self.geometry
        if self.next_row + rows > g.rows:
            need = (self.next_row + rows) * g.row_elems * g.operand_bytes * g.channels * g.units * g.banks_per_unit
            have = g.rows * g.row_elems * g.operand_bytes * g.channels * g.units * g.banks_per_unit
            raise PimsimError(f"{tensor!r} does not fit in {self.name}: needs {self.next_row + rows:,} rows per bank "
                              f"({need / 2**20:,.1f} MiB in all), the memory has {g.rows:,} "
                              f"({have / 2**20:,.1f} MiB)")
        first = self.next_row
        self.regions[tensor] = (first, rows)
        self.next_row += rows
        return first


@dataclass(frozen=True)
class GemvPlacement:
    """The row_partition layout of one M x N weight matrix."""

    geometry: Geometry
    rows_out: int  # M
    cols_in: int  # N
    first_row: int  # DRAM row of tile (wave 0, segment 0)
    split: int = 1  # channel groups, each holding one contiguous part of the input dimension
    pack: int = 1  # output rows per DRAM row of a slot (1: a row's segment starts every DRAM row)

    @property
    def cols_padded(self) -> int:
        e = self.geometry.elems_per_access
        return -(-self.cols_in // e) * e

    @property
    def part_accesses(self) -> int:
        """Column accesses of each channel group's part of the input (the last part may be shorter)."""
        return -(-self.cols_padded // self.geometry.elems_per_access // self.split)

    @property
    def part_cols(self) -> int:
        return self.part_accesses * self.geometry.elems_per_access

    def part_width(self, part: int) -> int:
        return max(0, min(self.part_cols, self.cols_padded - part * self.part_cols))

    @property
    def channels_per_group(self) -> int:
        return self.geometry.channels // self.split

    @property
    def slots_per_wave(self) -> int:
        return self.geometry.slots // self.split

    @property
    def segments(self) -> int:
        return -(-self.part_cols // self.geometry.row_elems)

    @property
    def waves(self) -> int:
        """Virtual waves: rounds of output rows over every slot (``pack`` of them share a DRAM row)."""
        return -(-self.rows_out // self.slots_per_wave)

    @property
    def pack_stride(self) -> int:
        """Column accesses from one packed output row to the next: the part, rounded up to whole
        global-buffer loads (so each packed row reads x from the same buffer places)."""
        gb = self.geometry.gb_chunks
        return -(-self.part_accesses // gb) * gb

    @property
    def dram_rows(self) -> int:
        return -(-self.waves // self.pack) * self.segments

    def row_of(self, wave: int, segment: int) -> int:
        """DRAM row of a virtual wave's segment."""
        return self.first_row + wave // self.pack * self.segments + segment

    def access_offset(self, wave: int) -> int:
        """Column accesses before a virtual wave's place in its DRAM row."""
        return wave % self.pack * self.pack_stride

    def segment_columns(self, segment: int, part: int = 0) -> int:
        """Column accesses of W in one segment of one part (the last ones may be shorter, or empty)."""
        g = self.geometry
        width = min(g.row_elems, self.part_width(part) - segment * g.row_elems)
        return max(0, width) // g.elems_per_access

    def column_tiles(self):
        """(first column, width) of every piece of a row of W that sits in one DRAM row."""
        g = self.geometry
        for part in range(self.split):
            for seg in range(self.segments):
                width = min(g.row_elems, self.part_width(part) - seg * g.row_elems)
                if width > 0:
                    yield part * self.part_cols + seg * g.row_elems, width

    def where(self, m: np.ndarray, n: np.ndarray):
        """(channel, bank, DRAM row, element in the row) of elements W[m, n]."""
        g = self.geometry
        m, n = np.asarray(m), np.asarray(n)
        part, local = np.divmod(n, self.part_cols)
        wave, slot = np.divmod(m, self.slots_per_wave)
        channel, rest = np.divmod(slot, g.units * g.banks_per_unit)
        select, unit = np.divmod(rest, g.units)
        segment, elem = np.divmod(local, g.row_elems)
        row = self.first_row + wave // self.pack * self.segments + segment
        elem = elem + wave % self.pack * self.pack_stride * g.elems_per_access
        return part * self.channels_per_group + channel, unit * g.banks_per_unit + select, row, elem

    @property
    def utilization(self) -> float:
        """Fraction of the bank area the matrix occupies that holds real (not padding) elements."""
        g = self.geometry
        return self.rows_out * self.cols_in / (self.dram_rows * g.row_elems * g.slots)


def auto_split(geometry: Geometry, rows_out: int, cols_in: int) -> int:
    """Channel groups for a matrix: as many as keep every slot of a group busy (1 for big matrices)."""
    if not geometry.split_small:
        return 1
    accesses = -(-cols_in // geometry.elems_per_access)
    split = 1
    while (split * 2 <= geometry.channels and geometry.channels % (split * 2) == 0
           and rows_out <= geometry.slots // (split * 2) and split * 2 <= accesses):
        split *= 2
    return split


def auto_pack(geometry: Geometry, rows_out: int, cols_in: int, split: int) -> int:
    """Output rows per DRAM row for a weight matrix: as many GB-aligned places as a DRAM row holds,
    when there are at least two (and rows enough to fill them)."""
    if not geometry.pack_rows:
        return 1
    probe = GemvPlacement(geometry, rows_out, cols_in, 0, split)
    pack = (geometry.row_elems // geometry.elems_per_access) // probe.pack_stride
    return max(1, min(pack, probe.waves))


def place_gemv(geometry: Geometry, rows_out: int, cols_in: int, allocator: RowAllocator | None = None,
               tensor: str = "W", split: int | None = None, pack: int = 1) -> GemvPlacement:
    """Place W (rows_out x cols_in); ``pack`` output rows per DRAM row (see :func:`auto_pack`), which
    only a segment of at most half a DRAM row allows."""
    if rows_out < 1 or cols_in < 1:
        raise PimsimError(f"a GEMV needs at least one row and one column, got {rows_out} x {cols_in}")
    split = auto_split(geometry, rows_out, cols_in) if split is None else split
    if split < 1 or geometry.channels % split or split & (split - 1):
        raise PimsimError(f"{tensor!r}: {split} channel groups must be a power of two dividing the "
                          f"{geometry.channels} channels")
    allocator = allocator or RowAllocator(geometry)
    draft = GemvPlacement(geometry, rows_out, cols_in, 0, split, pack)
    if pack < 1 or (pack > 1 and (draft.segments != 1 or pack * draft.pack_stride * geometry.elems_per_access
                                   > geometry.row_elems)):
        raise PimsimError(f"{tensor!r}: {pack} output rows of {draft.pack_stride} column accesses do not fit one "
                          f"DRAM row of {geometry.row_elems // geometry.elems_per_access}")
    first = allocator.allocate(tensor, draft.dram_rows)
    return GemvPlacement(geometry, rows_out, cols_in, first, split, pack)
