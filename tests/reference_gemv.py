"""The command-by-command GEMV builder that pimsim.mapper.gemv replaced (its _Builder emitting one command at a
time), kept only to hold the run-based builder to it: tests/test_stream_reuse.py compares the two."""
from __future__ import annotations

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.modes import ModeTracker
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


def gemv_program(compiled: Compiled, placement: GemvPlacement, lanes_out: int = 1,
                 groups: list[tuple[int, int]] | None = None, rows_active: int | None = None,
                 vectors: int = 1, buffer_vectors: int = 1, vectors_per_mac: int = 1) -> GemvProgram:
    """Build the command streams; `lanes_out` is how many accumulators each unit returns per RDMAC.

    ``groups`` splits the columns into independent dot products, as (first column access, number of
    accesses) over the padded input: each group gets its own RDMAC (attention reads one score per
    head from a row holding all heads). Columns in no group are never read. Default: one group of all
    columns. ``rows_active`` limits the work to the first output rows (a KV cache filled so far).

    ``vectors`` > 1 multiplies W by several input vectors (a speculative verify step's k + 1 tokens)
    reusing each activated row: the row opens once and every vector's MACs and RDMAC run on it. A global
    buffer that holds ``buffer_vectors`` >= ``vectors`` inputs side by side (a wider buffer) gets each
    vector's block once; a one-vector buffer gets the next vector's block written in while the row
    stays open. Timing only for several vectors: the commands name no vector (a real device would need a
    buffer-select field), so the functional bank model cannot run such a program.

    ``vectors_per_mac`` > 1 (a multi-vector datapath, ``pim.vectors_per_mac``): one MAC command multiplies
    the open row's burst by that many buffered vectors, so the vectors go through each row in
    ceil(vectors / vectors_per_mac) passes of MACs; every vector still gets its own RDMAC (its own
    accumulator's results).
    """
    b = _Builder(compiled, placement, lanes_out, groups, rows_active, vectors)
    g = b.g
    resident = vectors == 1 or buffer_vectors >= vectors
    for ch, rank, chan, part, first_slot, waves in b.channels():
        b.begin_channel(chan)
        for seg in range(placement.segments):
            ncol = placement.segment_columns(seg, part)
            for b0 in range(0, ncol, g.gb_chunks):
                parts = b.parts(part, seg, b0, min(ncol, b0 + g.gb_chunks))
                if not parts:
                    continue
                if resident:
                    for v in range(vectors):
                        for _, lo, hi in parts:
                            b.emit_buffer(chan, part, seg, range(lo, hi), v)
                for row_waves in b.by_dram_row(waves):
                    r = b.row_of(row_waves[0], seg)
                    b.open_row(rank, r)
                    for first in range(0, vectors, vectors_per_mac):
                        batch = range(first, min(vectors, first + vectors_per_mac))  # one MAC pass
                        if not resident:
                            for v in batch:
                                for _, lo, hi in parts:
                                    b.emit_buffer(chan, part, seg, range(lo, hi), v)
                        for w in row_waves:
                            off = placement.access_offset(w)
                            for sel, base in b.selects(w, first_slot):
                                for gi, lo, hi in parts:
                                    b.emit_macs(rank, r, off + lo, off + hi, sel, len(batch))
                                    for _ in batch:
                                        b.read(rank, ch, w, seg, sel, gi, base)
                    b.close_row(rank)
        b.end_channel()
    return b.program()


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
    b = _Builder(compiled, placement, lanes_out, groups, rows_active)
    g = b.g
    for ch, rank, chan, part, first_slot, waves in b.channels():
        b.begin_channel(chan)
        for seg in range(placement.segments):
            parts = b.parts(part, seg, 0, placement.segment_columns(seg, part))
            if not parts:
                continue
            used = sorted({k for _, lo, hi in parts for k in range(lo, hi)})
            fits = len({k // g.gb_chunks for k in used}) == 1
            if fits:  # the whole segment in the buffer at once: write it once for all waves
                b.emit_buffer(chan, part, seg, used)
            for row_waves in b.by_dram_row(waves):
                r = b.row_of(row_waves[0], seg)
                b.open_row(rank, r)
                for w in row_waves:
                    off = placement.access_offset(w)
                    for sel, base in b.selects(w, first_slot):
                        loaded = used[0] // g.gb_chunks if fits else -1
                        for gi, lo, hi in parts:
                            k = lo
                            while k < hi:
                                block = k // g.gb_chunks
                                if block != loaded:  # bring this block of x into the buffer
                                    b.emit_buffer(chan, part, seg,
                                                  [kk for kk in used if kk // g.gb_chunks == block])
                                    loaded = block
                                end = min(hi, (block + 1) * g.gb_chunks)
                                b.emit_macs(rank, r, off + k, off + end, sel)
                                k = end
                            b.read(rank, ch, w, seg, sel, gi, base)
                b.close_row(rank)
        b.end_channel()
    return b.program()


