"""The command-by-command GEMV builder that pimsim.mapper.gemv replaced (its _Builder emitting one command at a
time), kept only to hold the run-based builder to it: tests/test_stream_reuse.py compares the two, each run
by the mapper's own drivers (gemv_program, gemv_program_wave_major)."""
from __future__ import annotations

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.modes import ModeTracker
from pimsim.mapper import gemv
from pimsim.mapper.gemv import GemvProgram
from pimsim.mapper.placement import GemvPlacement
from pimsim.pim.formats import CODE_BITS, SCALE_BYTES


class _Builder:
    """What both strategies share: the command lists, the channels' active waves, the column groups
    of a range of column accesses, and the bookkeeping of RDMACs and partial sums."""

    def __init__(self, compiled: Compiled, placement: GemvPlacement, lanes_out: int,
                 groups: list[tuple[int, int]] | None, rows_active: int | None, vectors: int = 1):
        self.g = g = placement.geometry
        self.placement = placement
        self.lanes_out = lanes_out
        self.ids = {n: i for i, n in enumerate(compiled.command_names)}
        self.compiled = compiled
        self.groups = groups if groups is not None else [(0, placement.cols_padded // g.elems_per_access)]
        self.rows_active = placement.rows_out if rows_active is None else rows_active
        self.vectors = vectors
        self.accesses_per_row = g.row_elems // g.elems_per_access
        # FP16 group scales one column access holds (only grouped formats read them)
        self.scales_per_access = int(g.elems_per_access * CODE_BITS[g.fmt] / 8) // SCALE_BYTES
        self.lists = tuple([] for _ in range(6))  # cmd, node, row, column, select, payload
        self.reads: list[tuple] = []
        self.partials = 0
        self.extra_vector_macs = 0
        self.std = compiled.standard
        self.modes = ModeTracker(self.std)
        self.mac_mode = self.std.command("MACAB").mode
        self.open_rank = -1  # rank whose rows a lazily precharging stream left open

    def begin_channel(self, chan: int) -> None:
        self.chan_node = chan
        self.modes = ModeTracker(self.std)
        self.open_rank = -1

    def _mode_change(self, count: int) -> None:
        for _ in range(count):
            self._append(self.ids[self.std.mode_change], self.chan_node, -1, -1, 0, -1)

    def _append(self, *values):
        for target, value in zip(self.lists, values):
            target.append(value)

    def emit(self, name, n, r=-1, k=-1, s=0, p=-1):
        self._mode_change(self.modes.changes_before(name))
        self._append(self.ids[name], n, r, k, s, p)

    def open_row(self, rank, r):
        """Start a row's MACs: into MAC mode first (where AiM's controller switches: before the precharge
        and activate of a MAC instruction), close the row a lazy stream left open, activate."""
        self._mode_change(self.modes.enter(self.mac_mode))
        if self.open_rank >= 0:
            self.emit("PREA", self.open_rank)
            self.open_rank = -1
        self.emit("ACTAB", rank, r=r)

    def close_row(self, rank):
        if self.std.lazy_precharge:
            self.open_rank = rank
        else:
            self.emit("PREA", rank)

    def end_channel(self):
        """Every stream ends with its banks closed and its channel in the initial mode."""
        if self.open_rank >= 0:
            self.emit("PREA", self.open_rank)
            self.open_rank = -1
        self._mode_change(self.modes.leave())

    def emit_macs(self, n, r, lo, hi, s, vectors: int = 1):
        """MACAB over column accesses lo..hi-1 (the bulk of every program: lists, not calls), each
        multiplying `vectors` buffered vectors (a multi-vector datapath). With group scales (int4-g128), the
        unit first reads the scale accesses of the groups these accesses belong to from the row's tail (one
        MACAB each, consuming no activations; see pimsim.pim.formats)."""
        self._mode_change(self.modes.changes_before("MACAB"))
        bl = self.g.burst_length
        columns = list(range(lo * bl, hi * bl, bl))
        if self.g.group_accesses:
            ga, per_scale_access = self.g.group_accesses, self.scales_per_access
            tail = self.accesses_per_row  # the row's codes end here; its scales follow
            scale_cols = sorted({tail + j // per_scale_access for j in range(lo // ga, (hi - 1) // ga + 1)})
            columns = [k * bl for k in scale_cols] + columns
        count = len(columns)
        self.extra_vector_macs += (hi - lo) * (vectors - 1)  # the code accesses' products with the extra vectors
        cmd, node, row, column, select, payload = self.lists
        cmd.extend([self.ids["MACAB"]] * count), node.extend([n] * count), row.extend([r] * count)
        column.extend(columns), select.extend([s] * count), payload.extend([-1] * count)

    def first_access(self, part, seg):
        """Index in x (in column accesses) of the first access of a segment of a channel group's part."""
        return part * self.placement.part_accesses + seg * self.accesses_per_row

    def emit_buffer(self, chan, part, seg, accesses, vector: int = 0):
        """WRGB of x for the given segment-local column accesses of W: each MAC's activations take
        ``writes_per_mac`` writes (several where narrow weights meet wider activations). Payload p is
        chunk p of x in writes; write j of access k lands in buffer slot (k x writes_per_mac + j) modulo
        the buffer, where the MAC on access k reads it."""
        g = self.g
        first, per, slots = self.first_access(part, seg), g.writes_per_mac, g.gb_chunks * g.writes_per_mac
        base = vector * (self.placement.cols_padded // g.elems_per_access) * per  # vector v's chunks of x
        for k in accesses:
            for j in range(per):
                self.emit("WRGB", chan, k=(k * per + j) % slots * g.burst_length, p=base + (first + k) * per + j)

    def read(self, rank, ch, wave, seg, sel, group, base):
        self.emit("RDMAC", rank)
        self.reads.append((len(self.lists[0]) - 1, ch, wave, seg, sel, group, base))
        self.partials += min(self.g.units, self.rows_active - base) * self.lanes_out

    def channels(self):
        """(channel, rank node, channel node, part, first slot, waves with work) for every busy channel."""
        g, p = self.g, self.placement
        for ch in range(g.channels):
            part, local = divmod(ch, p.channels_per_group)
            first_slot = local * g.units * g.banks_per_unit
            waves = [w for w in range(p.waves) if w * p.slots_per_wave + first_slot < self.rows_active]
            if waves and p.part_width(part) > 0:
                yield (ch, int(self.compiled.rank_node(ch)), int(self.compiled.channel_node(ch)), part, first_slot,
                       waves)

    def parts(self, part, seg, lo, hi):
        """Each group's column accesses within segment-local accesses [lo, hi): (group, lo, hi)."""
        first = self.first_access(part, seg)
        found = [(gi, max(lo, start - first), min(hi, start + n - first)) for gi, (start, n) in enumerate(self.groups)]
        return [(gi, a, b) for gi, a, b in found if a < b]

    def selects(self, wave, first_slot):
        """(bank select, first output row) of a wave's banks of a unit that hold active rows."""
        g = self.g
        for sel in range(g.banks_per_unit):
            base = wave * self.placement.slots_per_wave + first_slot + sel * g.units
            if base >= self.rows_active:
                return
            yield sel, base

    def row_of(self, wave, seg):
        return self.placement.row_of(wave, seg)

    def by_dram_row(self, waves):
        """The active virtual waves grouped by the DRAM row they share (one each without packing)."""
        groups: list[list[int]] = []
        for w in waves:
            if groups and groups[-1][0] // self.placement.pack == w // self.placement.pack:
                groups[-1].append(w)
            else:
                groups.append([w])
        return groups

    def program(self) -> GemvProgram:
        a = lambda v: np.asarray(v, np.int64)  # noqa: E731
        return GemvProgram(self.placement, *(a(v) for v in self.lists), np.asarray(self.reads, np.int64).reshape(-1, 7),
                           self.rows_active * len(self.groups) * self.vectors, len(self.groups), self.partials,
                           self.extra_vector_macs)


def gemv_program(*args, **kwargs) -> GemvProgram:
    """:func:`pimsim.mapper.gemv.gemv_program` with this builder: the drivers are shared, the builders differ."""
    return _with_this_builder(gemv.gemv_program, *args, **kwargs)


def gemv_program_wave_major(*args, **kwargs) -> GemvProgram:
    """:func:`pimsim.mapper.gemv.gemv_program_wave_major` with this builder."""
    return _with_this_builder(gemv.gemv_program_wave_major, *args, **kwargs)


def _with_this_builder(driver, *args, **kwargs) -> GemvProgram:
    if kwargs.get("pieces") is not None:
        raise ValueError("the reference builder keeps no channel pieces")
    run_based, gemv._Builder = gemv._Builder, _Builder
    try:
        return driver(*args, **kwargs)
    finally:
        gemv._Builder = run_based
