"""A whole model in the PIM memory: every weight and embedding table placed, a KV cache per layer,
and the command streams of every op of a decode step.

Tensors of the same shape get the same program with their rows shifted, so a program is built once
per shape (GPT-2 XL: 5 GEMV shapes for 193 matrices) and once per context length for attention.
Each :class:`Stream` carries a ``key`` naming what it computes regardless of where it sits, which is
what the ``fast`` fidelity reuses timings by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import Compiled
from pimsim.errors import PimsimError
from pimsim.mapper.attention import KVLayout, append_program, kv_layout, read_row_program
from pimsim.mapper.gemv import RD_CHANNEL, STRATEGIES
from pimsim.mapper.placement import GemvPlacement, Geometry, RowAllocator, auto_pack, auto_split, place_gemv
from pimsim.workloads.opgraph import OpGraph


@dataclass
class Stream:
    """Per-channel command streams of one op (all channels in one array, in order per channel).

    ``row`` is the prototype's (the tensor placed at DRAM row 0); the real rows are ``rows()``, shifted
    by ``row_offset`` only when a cycle-level run needs them."""

    key: tuple
    cmd: np.ndarray
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    to_pim_bytes: np.ndarray  # per channel: bytes the ASIC sends before the stream (x, q, p, K/V values)
    from_pim_bytes: np.ndarray  # per channel: bytes the ASIC receives after it (partial sums, table rows)
    asic_adds: int = 0  # partial sums the ASIC adds up after it
    outputs: int = 0
    row_offset: int = 0
    _rows: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.cmd)

    def rows(self) -> np.ndarray:
        """The real row arguments (computed once: a model's streams are reused token after token)."""
        if self.row_offset == 0:
            return self.row
        if self._rows is None:
            self._rows = np.where(self.row >= 0, self.row + self.row_offset, self.row)
        return self._rows


@dataclass
class ModelMap:
    hw: HardwareConfig
    compiled: Compiled
    graph: OpGraph
    max_context: int
    geometry: Geometry = field(init=False)  # of the block weights (in the configured weight format)
    kv_geometry: Geometry = field(init=False)  # of the KV cache, embedding tables and LM head
    tables: dict[str, GemvPlacement] = field(init=False)
    kv: dict[int, KVLayout] = field(init=False)
    rows_used: int = field(init=False)

    def __post_init__(self):
        g = self.geometry = Geometry.of(self.hw)
        self.kv_geometry = Geometry.of(self.hw, kv=True)
        self.low_bit = self._block_weights() if g != self.kv_geometry else set()
        alloc = RowAllocator(g, f"{self.hw.name} ({self.hw.dram.organization.capacity_bytes / 2**30:g} GiB)")
        meta = self.graph.meta
        self._programs: dict = {}
        self._shifts: dict = {}
        self._need = self._rows_needed(g)
        if self._need > g.rows:
            raise PimsimError(self._does_not_fit(g))
        self.tables = {name: self._place(name, t["rows"], t["cols"], alloc) for name, t in self.graph.tensors.items()}
        self.kv = {layer: kv_layout(self.kv_geometry, meta["kv_heads"], meta["head_dim"], self.max_context, alloc,
                                    f"L{layer}.")
                   for layer in sorted({op.layer for op in self.graph.ops if op.kind == "scores"})}
        self.rows_used = alloc.next_row

    def _block_weights(self) -> set[str]:
        """Tensors that only transformer blocks multiply by: these take the weight format. Embedding
        tables and the LM head stay in the KV cache's (higher-precision) format, as BitNet keeps them."""
        used: dict[str, bool] = {}
        for op in self.graph.ops:
            if op.tensor is not None:
                in_block = op.kind == "gemv" and op.layer is not None
                used[op.tensor] = used.get(op.tensor, True) and in_block
        return {name for name, ok in used.items() if ok}

    def _layout(self, name: str, rows: int, cols: int) -> tuple:
        """(geometry, rows, cols, first row 0, split, pack) of a weight matrix or table: split over
        channel groups if it has few rows, packed if they are short."""
        g = self.tensor_geometry(name)
        split = auto_split(g, rows, cols)
        return g, rows, cols, 0, split, auto_pack(g, rows, cols, split)

    def _place(self, name: str, rows: int, cols: int, alloc: RowAllocator) -> GemvPlacement:
        g, rows, cols, _, split, pack = self._layout(name, rows, cols)
        return place_gemv(g, rows, cols, alloc, name, split, pack)

    def tensor_geometry(self, tensor: str) -> Geometry:
        return self.geometry if tensor in self.low_bit or self.geometry == self.kv_geometry else self.kv_geometry

    def gemv_bytes(self) -> float:
        """Bytes of the weights a decode step multiplies by (each GEMV's matrix once, in its format)."""
        return sum(op.rows * op.cols * self.tensor_geometry(op.tensor).operand_bytes
                   for op in self.graph.ops if op.kind == "gemv")

    # ---- fitting -------------------------------------------------------------------------------
    def _rows_needed(self, g: Geometry) -> int:
        rows = sum(GemvPlacement(*self._layout(name, t["rows"], t["cols"])).dram_rows
                   for name, t in self.graph.tensors.items())
        kv = self._proto_kv()
        self._kv_rows = self.graph.meta["layers"] * (kv.k.dram_rows + kv.v.dram_rows)
        return rows + self._kv_rows

    def _does_not_fit(self, g: Geometry) -> str:
        kv_rows = self._kv_rows
        row_bytes = g.row_elems * g.operand_bytes * g.slots
        return (f"{self.graph.model} does not fit in {self.hw.name}: its {g.fmt} weights take "
                f"{self._need - kv_rows:,} rows of every bank and a KV cache for {self.max_context:,} tokens "
                f"{kv_rows:,} more, "
                f"{self._need:,} in all ({self._need * row_bytes / 2**30:.2f} GiB with padding); the memory has "
                f"{g.rows:,} rows per bank ({g.rows * row_bytes / 2**30:.2f} GiB). Use a shorter prompt or fewer "
                f"tokens, a narrower --weight-format, or more memory (--set dram.organization.rows=... or channels)")

    # ---- streams -------------------------------------------------------------------------------
    def _shifted(self, proto: Stream, first_row: int, asic_adds: int | None = None, outputs: int | None = None
                 ) -> Stream:
        """The prototype's stream for a tensor placed at `first_row` (memoised: layers repeat)."""
        key = (proto.key, first_row, asic_adds, outputs)
        got = self._shifts.get(key)
        if got is None:
            got = self._shifts[key] = Stream(
                proto.key, proto.cmd, proto.node, proto.row, proto.column, proto.to_pim_bytes, proto.from_pim_bytes,
                proto.asic_adds if asic_adds is None else asic_adds, proto.outputs if outputs is None else outputs,
                first_row)
        return got

    def _gemv_stream(self, key, placement: GemvPlacement, repeat: int = 1, groups=None, rows_active=None) -> Stream:
        """The GEMV program of `placement` (at row 0), `repeat` times (a fresh input vector each time).
        The ASIC sends each channel what its global-buffer writes carry, and gets back its RDMAC results."""
        g = placement.geometry
        program = STRATEGIES[self.hw.mapping.gemv](self.compiled, placement, g.lanes_out, groups, rows_active)
        reads = np.bincount(program.reads[:, RD_CHANNEL], minlength=g.channels)
        to_pim = self._count_by_channel(program, "WRGB") * self.hw.dram.organization.access_bytes * repeat
        from_pim = reads * g.units * g.lanes_out * g.acc_bytes * repeat
        arrays = [np.tile(a, repeat) for a in (program.cmd, program.node, program.row, program.column)]
        return Stream(key, *arrays, to_pim, from_pim, program.asic_adds * repeat, program.outputs * repeat)

    def gemv(self, tensor: str) -> Stream:
        t = self.tables[tensor]
        key = ("gemv", t.rows_out, t.cols_in, t.geometry.fmt)
        if key not in self._programs:
            proto = GemvPlacement(t.geometry, t.rows_out, t.cols_in, 0, t.split, t.pack)
            self._programs[key] = self._gemv_stream(key, proto)
        return self._shifted(self._programs[key], t.first_row)

    def scores(self, layer: int, context: int, heads: int) -> Stream:
        """q.K^T of every query head over `context` cached tokens; grouped query heads take turns.

        Cached tokens are output rows dealt to PIM units, so the commands change only when the context
        reaches the next unit: the stream of the context rounded up to whole units is the same, with
        fewer partial sums (every token row has as many)."""
        layout = self.kv[layer]
        g = self.kv_geometry
        whole = min(-(-context // g.units) * g.units, layout.max_context)
        key = ("scores", whole, heads)
        if key not in self._programs:
            proto = self._proto_kv()
            group = heads // layout.heads
            self._programs[key] = self._gemv_stream(key, proto.k, group, proto.k_groups(), whole)
        s = self._programs[key]
        partials = (s.asic_adds + s.outputs) * context // whole
        outputs = s.outputs * context // whole
        return self._shifted(s, layout.k.first_row, asic_adds=partials - outputs, outputs=outputs)

    def context(self, layer: int, context: int, heads: int) -> Stream:
        """p.V of every query head over `context` cached tokens. The commands change only when the
        context reaches the next column access (p is sent in whole accesses, zero-padded)."""
        layout = self.kv[layer]
        g = self.kv_geometry
        whole = -(-context // g.elems_per_access) * g.elems_per_access
        key = ("context", whole, heads)
        if key not in self._programs:
            proto = self._proto_kv()
            group = heads // layout.heads
            self._programs[key] = self._gemv_stream(key, proto.v, group, proto.v_groups(whole), layout.head_dim)
        return self._shifted(self._programs[key], layout.k.first_row)  # V sits after K, as in the prototype

    def append(self, layer: int, token: int, which: str) -> Stream:
        """Writing the new token's keys or values (`which` = "k" or "v") into the cache. A token's K row
        sits in slot token mod slots, one wave further down for every round of slots: the same
        commands as that slot's first token, rows shifted."""
        layout = self.kv[layer]
        if which == "k":
            wave, first = divmod(token, layout.k.slots_per_wave)
            s = self._append_stream(first, which)
            return self._shifted(s, layout.k.first_row + wave * layout.k.segments)
        # A value lands in column access token // e of rows that depend only on that access: every token
        # of one access has the same commands (timing only; the payload differs)
        e = self.kv_geometry.elems_per_access
        return self._shifted(self._append_stream(token // e * e, which), layout.k.first_row)

    def _append_stream(self, token: int, which: str) -> Stream:
        key = ("append", token, which)
        if key not in self._programs:
            proto = self._proto_kv()
            prog = append_program(self.compiled, proto, token, parts=which)
            writes = self._count_by_channel(prog, "WR")
            nbytes = writes * self.hw.dram.organization.access_bytes
            self._programs[key] = Stream(key, prog.cmd, prog.node, prog.row, prog.column, nbytes,
                                         np.zeros_like(nbytes))
        return self._programs[key]

    def embedding(self, tensor: str, entry: int) -> Stream:
        t = self.tables[tensor]
        if not 0 <= entry < t.rows_out:
            raise PimsimError(f"{tensor}: entry {entry} is outside its {t.rows_out} rows")
        key = ("embedding", t.rows_out, t.cols_in, entry)
        if key not in self._programs:
            proto = GemvPlacement(t.geometry, t.rows_out, t.cols_in, 0, t.split, t.pack)
            prog = read_row_program(self.compiled, proto, entry)
            nbytes = self._count_by_channel(prog, "RD") * self.hw.dram.organization.access_bytes
            self._programs[key] = Stream(key, prog.cmd, prog.node, prog.row, prog.column, np.zeros_like(nbytes),
                                         nbytes)
        return self._shifted(self._programs[key], t.first_row)

    def _proto_kv(self) -> KVLayout:
        """The KV layout of a layer placed at row 0 (every layer's programs are this one's, shifted)."""
        if "kv" not in self._programs:
            meta = self.graph.meta
            self._programs["kv"] = kv_layout(self.kv_geometry, meta["kv_heads"], meta["head_dim"], self.max_context)
        return self._programs["kv"]

    def _count_by_channel(self, prog, name: str) -> np.ndarray:
        c = self.compiled
        mask = prog.cmd == c.command_names.index(name)
        channels = np.asarray(c.channel_of(prog.node[mask]), np.int64)
        return np.bincount(channels, minlength=self.geometry.channels).astype(np.int64)
