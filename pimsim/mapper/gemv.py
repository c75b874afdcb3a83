"""The row_partition GEMV program: per-channel PIM command streams for y = W x.

Per channel, for each segment of the input dimension and each global-buffer-sized block of it: write
the block of x into the global buffer (WRGB), then for every wave open the wave's DRAM row in all banks
(ACTAB), run one all-bank MAC per column of the block for each bank of a unit (MACAB), read the
accumulators after each (RDMAC), and close the row (PREA). Every RDMAC returns one partial sum per unit
(per lane, for lane-accumulating units); the ASIC adds the partial sums of an output row, which is all
the reduction a split row needs. On GDDR6-AiM a block is a whole DRAM row, so each row opens once.

Devices with modes (GDDR6-AiM) get their mode changes where the vendor's controller issues them: into
register mode before buffer writes and result reads, back into MAC mode before the precharge and
activate that start a row's MACs; a standard with ``lazy_precharge`` closes a row just before the next
activate (and at the end of the stream) instead of right after its last read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.modes import ModeTracker
from pimsim.mapper.placement import GemvPlacement
from pimsim.pim.formats import CODE_BITS, SCALE_BYTES

# columns of GemvProgram.reads
RD_POS, RD_CHANNEL, RD_WAVE, RD_SEGMENT, RD_SELECT, RD_GROUP, RD_FIRST_ROW = range(7)


@dataclass
class GemvProgram:
    placement: GemvPlacement
    cmd: np.ndarray
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    select: np.ndarray  # bank within each unit, for MACAB
    payload: np.ndarray  # index of the x chunk a WRGB writes (-1 for other commands)
    # int64[RDMACs, 7]: stream position, channel, wave, segment, bank select, group, and the output
    # row unit 0's accumulator belongs to (unit u's is that + u)
    reads: np.ndarray
    outputs: int  # output values: active rows x column groups
    n_groups: int  # column groups (independent dot products per output row)
    partial_sums: int  # values the ASIC adds up (RDMAC results of real output rows, lanes included)
    # MAC commands times the vectors each multiplied beyond its first (a multi-vector datapath's extra
    # multiplier work, which the energy model charges apart)
    extra_vector_macs: int = 0

    @property
    def asic_adds(self) -> int:
        return self.partial_sums - self.outputs

    def __len__(self) -> int:
        return len(self.cmd)


class _Builder:
    """What both strategies share: the commands, the channels' active waves, the column groups of a
    range of column accesses, and the bookkeeping of RDMACs and partial sums.

    Commands are kept as *runs* (one command repeated ``count`` times with its column and payload
    advancing by a fixed step: a row's MACs, a block of buffer writes) and expanded with numpy at the
    end, so the Python work grows with the runs, not with the commands."""

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
        self.part_accesses = placement.part_accesses
        # FP16 group scales one column access holds (only grouped formats read them)
        self.scales_per_access = int(g.elems_per_access * CODE_BITS[g.fmt] / 8) // SCALE_BYTES
        # (cmd, node, row, first column, column step, count, select, first payload, payload step)
        self.runs: list[tuple] = []
        self.commands = 0  # commands in the runs so far
        self.reads: list[tuple] = []
        self.run_blocks: list[np.ndarray] = []  # runs and reads made arrays, before those in the lists
        self.read_blocks: list[np.ndarray] = []
        self.partials = 0
        self.extra_vector_macs = 0
        self.std = compiled.standard
        self.modes = ModeTracker(self.std)
        # the mode each command needs (None: any); a standard without modes needs none
        self.mode_of = {c.name: (c.mode if self.std.modes else None) for c in self.std.commands}
        self.mac_mode = self.std.command("MACAB").mode
        self.open_rank = -1  # rank whose rows a lazily precharging stream left open

    def begin_channel(self, chan: int) -> None:
        self.chan_node = chan
        self.modes = ModeTracker(self.std)
        self.open_rank = -1

    def _mode_change(self, count: int) -> None:
        for _ in range(count):
            self._run(self.ids[self.std.mode_change], self.chan_node)

    def _run(self, cmd, n, r=-1, k=-1, k_step=0, count=1, s=0, p=-1, p_step=0) -> None:
        self.runs.append((cmd, n, r, k, k_step, count, s, p, p_step))
        self.commands += count

    def _enter_mode_for(self, name) -> None:
        """The mode changes the command needs (what ModeTracker.changes_before says, without its lookup)."""
        need = self.mode_of[name]
        if need and need != self.modes.mode:
            self._mode_change(self.modes.enter(need))

    def emit(self, name, n, r=-1, k=-1, s=0, p=-1):
        self._enter_mode_for(name)
        self._run(self.ids[name], n, r, k, s=s, p=p)

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
        """MACAB over column accesses lo..hi-1 (the bulk of every program: one run), each multiplying
        `vectors` buffered vectors (a multi-vector datapath). With group scales (int4-g128), the unit first
        reads the scale accesses of the groups these accesses belong to from the row's tail (one MACAB
        each, consuming no activations; see pimsim.pim.formats)."""
        self._enter_mode_for("MACAB")
        bl = self.g.burst_length
        mac = self.ids["MACAB"]
        if self.g.group_accesses:
            ga, per_scale_access = self.g.group_accesses, self.scales_per_access
            tail = self.accesses_per_row  # the row's codes end here; its scales follow
            for k in sorted({tail + j // per_scale_access for j in range(lo // ga, (hi - 1) // ga + 1)}):
                self._run(mac, n, r, k * bl, s=s)
        self.extra_vector_macs += (hi - lo) * (vectors - 1)  # the code accesses' products with the extra vectors
        if hi > lo:
            self._run(mac, n, r, lo * bl, bl, hi - lo, s)

    def first_access(self, part, seg):
        """Index in x (in column accesses) of the first access of a segment of a channel group's part."""
        return part * self.part_accesses + seg * self.accesses_per_row

    def emit_buffer(self, chan, part, seg, accesses, vector: int = 0):
        """WRGB of x for the given segment-local column accesses of W: each MAC's activations take
        ``writes_per_mac`` writes (several where narrow weights meet wider activations). Payload p is
        chunk p of x in writes; write j of access k lands in buffer slot (k x writes_per_mac + j) modulo
        the buffer, where the MAC on access k reads it."""
        g = self.g
        first, per, slots = self.first_access(part, seg), g.writes_per_mac, g.gb_chunks * g.writes_per_mac
        base = vector * (self.placement.cols_padded // g.elems_per_access) * per  # vector v's chunks of x
        accesses = list(accesses)
        if not accesses:
            return
        self._enter_mode_for("WRGB")
        wrgb, bl = self.ids["WRGB"], g.burst_length
        # write i = k x per + j goes to slot i mod slots with payload base + first x per + i: consecutive
        # accesses make consecutive writes, one run up to each wrap of the buffer
        start = prev = accesses[0]
        for k in accesses[1:] + [None]:
            if k is not None and k == prev + 1:
                prev = k
                continue
            i, end = start * per, (prev + 1) * per
            while i < end:
                count = min(end - i, slots - i % slots)
                self._run(wrgb, chan, -1, i % slots * bl, bl, count, 0, base + first * per + i, 1)
                i += count
            start = prev = k

    def read(self, rank, ch, wave, seg, sel, group, base):
        self.emit("RDMAC", rank)
        self.reads.append((self.commands - 1, ch, wave, seg, sel, group, base))
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
        first = part * self.part_accesses + seg * self.accesses_per_row  # first_access, without its lookups
        out = []
        for gi, (start, n) in enumerate(self.groups):
            a, b = start - first, start + n - first
            if a < lo:
                a = lo
            if b > hi:
                b = hi
            if a < b:
                out.append((gi, a, b))
        return out

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

    def _flush(self) -> None:
        """The runs and reads kept as tuples so far into arrays (after the blocks before them)."""
        if self.runs:
            self.run_blocks.append(np.asarray(self.runs, np.int64).reshape(-1, 9))
            self.runs = []
        if self.reads:
            self.read_blocks.append(np.asarray(self.reads, np.int64).reshape(-1, 7))
            self.reads = []

    def mark(self) -> tuple[int, int, int, int]:
        """Where the program stands (its runs and reads so far made arrays): commands, partial sums, extra
        vector MACs, and the blocks of runs and reads."""
        self._flush()
        return self.commands, self.partials, self.extra_vector_macs, len(self.run_blocks), len(self.read_blocks)

    def piece_since(self, mark) -> tuple:
        """What was added since `mark` (one channel's work), its reads' positions counted from its start."""
        commands, partials, extra, run_blocks, read_blocks = mark
        self._flush()
        runs = np.concatenate(self.run_blocks[run_blocks:] or [np.zeros((0, 9), np.int64)])
        reads = np.concatenate(self.read_blocks[read_blocks:] or [np.zeros((0, 7), np.int64)])
        reads[:, RD_POS] -= commands
        return runs, self.commands - commands, reads, self.partials - partials, self.extra_vector_macs - extra

    def add_piece(self, piece) -> None:
        """A piece from :meth:`piece_since` added at the end, as if built here."""
        runs, commands, reads, partials, extra = piece
        self._flush()
        self.run_blocks.append(runs)
        shifted = reads.copy()
        shifted[:, RD_POS] += self.commands
        self.read_blocks.append(shifted)
        self.commands += commands
        self.partials += partials
        self.extra_vector_macs += extra

    def program(self) -> GemvProgram:
        self._flush()
        runs = np.concatenate(self.run_blocks) if self.run_blocks else np.zeros((0, 9), np.int64)
        reads = np.concatenate(self.read_blocks) if self.read_blocks else np.zeros((0, 7), np.int64)
        counts = runs[:, 5]
        of = np.repeat(np.arange(len(runs)), counts)  # the run of every command
        step = np.arange(self.commands) - np.repeat(np.cumsum(counts) - counts, counts)  # its place in the run
        cmd, node, row, select = (runs[of, i] for i in (0, 1, 2, 6))
        column = runs[of, 3] + step * runs[of, 4]
        payload = runs[of, 7] + step * runs[of, 8]
        return GemvProgram(self.placement, cmd, node, row, column, select, payload, reads,
                           self.rows_active * len(self.groups) * self.vectors, len(self.groups), self.partials,
                           self.extra_vector_macs)


def gemv_program(compiled: Compiled, placement: GemvPlacement, lanes_out: int = 1,
                 groups: list[tuple[int, int]] | None = None, rows_active: int | None = None,
                 vectors: int = 1, buffer_vectors: int = 1, vectors_per_mac: int = 1,
                 pieces: dict | None = None) -> GemvProgram:
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

    ``pieces`` (a dict kept by the caller for programs of one ``compiled`` standard) remembers each
    channel's commands under everything they depend on, so a program that differs from an earlier one
    only in some channels (attention's scores as the context reaches the next PIM unit: one channel
    gains a wave) builds only those. A channel's work starts and ends in the initial mode with its rows
    closed, so it does not depend on the channels before it.
    """
    b = _Builder(compiled, placement, lanes_out, groups, rows_active, vectors)
    g = b.g
    resident = vectors == 1 or buffer_vectors >= vectors
    for ch, rank, chan, part, first_slot, waves in b.channels():
        key = None
        if pieces is not None:  # rows_active reaches the channel through its waves and their units' rows
            active = tuple(tuple(min(g.units, b.rows_active - base) for _, base in b.selects(w, first_slot))
                           for w in waves)
            key = (placement, lanes_out, tuple(map(tuple, b.groups)), vectors, buffer_vectors, vectors_per_mac,
                   ch, rank, chan, part, first_slot, tuple(waves), active)
            if key in pieces:
                b.add_piece(pieces[key])
                continue
        mark = b.mark() if key is not None else None  # (only a remembered channel needs its start)
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
        if key is not None:
            pieces[key] = b.piece_since(mark)
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


def _hbm_pim_gemv(*args, **kwargs) -> GemvProgram:
    from pimsim.mapper.hbm_pim_gemv import hbm_pim_gemv_program  # it builds on this module

    return hbm_pim_gemv_program(*args, **kwargs)


STRATEGIES = {"row_partition": gemv_program, "wave_major": gemv_program_wave_major, "hbm_pim_gemv": _hbm_pim_gemv}
