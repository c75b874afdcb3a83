"""A whole model in the PIM memory: every weight and embedding table placed, a KV cache per layer,
and the command streams of every op of a decode step.

An encoder-decoder model also has its encoder's weights and each decoder layer's cross-attention K/V
projections placed (the encoder pass's graph, run once before decoding), and per decoder layer a
cross-attention K/V region laid out like the KV cache (K row-major, V transposed) but reserved for the
source's S tokens: decode steps read it (q.K^T and p.V over S tokens), the encoder pass writes it.

A mixture-of-experts model's expert matrices are placed like any weight (``spread`` over every channel),
or with ``expert_groups`` G > 1 *per channel group*: the channels form G groups and expert e lives on
group e mod G only, laid out for that group's channels; the G experts of a block share DRAM rows, each in
its own group's banks. A token's chosen experts then run as one stream: experts in different groups at
once, experts in the same group one after another (the imbalance of the routing shows in the time).

A layer with a sliding attention window keeps its KV cache as a ring of min(window, context) tokens:
token t's K row and V column sit in slot t mod ring, overwriting the token that left the window, and
its q.K^T and p.V read the ring's filled slots (every slot once the window is full).

Tensors of the same shape get the same program with their rows shifted, so a program is built once
per shape (GPT-2 XL: 5 GEMV shapes for 193 matrices) and once per context length for attention.
Each :class:`Stream` carries a ``key`` naming what it computes regardless of where it sits, which is
what the ``fast`` fidelity reuses timings by.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Level
from pimsim.errors import PimsimError
from pimsim.mapper import hbm_pim_gemv
from pimsim.mapper.attention import KVLayout, append_program, kv_layout, read_row_program
from pimsim.mapper.gemv import RD_CHANNEL, STRATEGIES
from pimsim.mapper.placement import GemvPlacement, Geometry, RowAllocator, auto_pack, auto_split, place_gemv
from pimsim.pim.formats import stored_bytes
from pimsim.workloads.opgraph import OpGraph, expert_tensor

# Shifted streams (a prototype placed at a layer's rows) kept, the most recently used. A token asks again
# for each layer's weight GEMVs and, for a few tokens, for attention's; a KV append (one per position) or
# the scores of a shorter context never again, and at cycle fidelity each holds its own row arguments
# (Stream.rows()): kept for good, gpt2-xl's 1024 tokens grew the process by some 3 GB. A stream made
# afresh costs a Stream object (its arrays are the prototype's) and, at cycle fidelity, its rows once more.
SHIFTED_KEPT = 4096


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
    fmt: str = ""  # the operand format its MACs compute in (their energy is that datapath's)
    extra_vector_macs: int = 0  # MAC commands x vectors each multiplied beyond its first (pim.vectors_per_mac)
    # a stream whose commands (cmd, node, row, column: the prototype's rows) are those of the stream keyed
    # so (None: its own key), which fast fidelity times once for both (an embedding's entries a round of
    # slots apart differ only in row_offset)
    commands_key: tuple | None = None
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
    encoder: OpGraph | None = None  # an encoder-decoder's encoder pass (its weights live here too)
    source_len: int = 0  # tokens of cross-attention K/V reserved per decoder layer
    base_row: int = 0  # rows below this belong to another model sharing the memory (a speculative draft's target)
    batch: int = 1  # sequences decoded together, each with its own KV cache of max_context tokens
    expert_groups: int = 1  # MoE: channel groups the experts are dealt to (1: every expert over every channel)
    geometry: Geometry = field(init=False)  # of the block weights (in the configured weight format)
    kv_geometry: Geometry = field(init=False)  # of the KV cache, embedding tables and LM head
    tables: dict[str, GemvPlacement] = field(init=False)
    kv: dict[int, KVLayout] = field(init=False)  # sequence 0's (see :meth:`sequence`)
    kv_by_sequence: list[dict[int, KVLayout]] = field(init=False)
    cross_kv: dict[int, KVLayout] = field(init=False)  # per decoder layer, for source_len tokens
    rows_used: int = field(init=False)

    def __post_init__(self):
        g = self.geometry = Geometry.of(self.hw)
        self.kv_geometry = Geometry.of(self.hw, kv=True)
        # in every stream key: models sharing one DRAM timing state (a speculative draft beside its
        # target) must not share timings of streams whose layouts differ (a KV cache of other shape)
        meta = self.graph.meta
        self.ns = (self.graph.model, meta.kv_heads, meta.head_dim, self.max_context, self.source_len)
        self.tensors = self._all_tensors()
        self.low_bit = self._block_weights() if g != self.kv_geometry else set()
        alloc = RowAllocator(g, f"{self.hw.name} ({self.hw.dram.organization.capacity_bytes / 2**30:g} GiB)")
        alloc.next_row = self.base_row
        meta = self.graph.meta
        self._programs: dict = {}
        self._shifts: OrderedDict = OrderedDict()  # the SHIFTED_KEPT most recently used
        self._channel_pieces: dict = {}  # attention scores' channels, shared by the programs of growing contexts
        self._cross_layers = sorted({op.layer for op in self.graph.ops if op.kind == "scores" and op.cross})
        if self._cross_layers and self.source_len < 1:
            raise PimsimError(f"{self.graph.model}: an encoder-decoder model needs a source length of at least 1")
        self._experts = self._expert_tensors()
        self._need = self._rows_needed(g) + self.base_row
        if self._need > g.rows:
            raise PimsimError(self._does_not_fit(g))
        self.tables = {name: self._place(name, t["rows"], t["cols"], alloc) for name, t in self.tensors.items()
                       if name not in self._experts}
        self.tables.update(self._place_experts(alloc))
        # one KV cache per sequence, each every layer's in turn (sequence 0's where a lone sequence's is); a
        # sliding-window layer's is a ring of min(window, run) tokens
        self.kv_by_sequence = [
            {layer: kv_layout(self.kv_geometry, meta.kv_heads, meta.head_dim, self.ring_tokens(layer), alloc,
                              f"S{seq}.L{layer}." if seq else f"L{layer}.")
             for layer in self.graph.attention_layers()}
            for seq in range(self.batch)]
        self.kv = self.kv_by_sequence[0]
        self.cross_kv = {layer: kv_layout(self.kv_geometry, meta.cross_kv_heads, meta.head_dim, self.source_len,
                                          alloc, f"L{layer}.cross.")
                         for layer in self._cross_layers}
        self.rows_used = alloc.next_row

    def _all_tensors(self) -> dict[str, dict]:
        """The decode step's tensors, then those only the encoder pass uses (a shared table once)."""
        tensors = dict(self.graph.tensors)
        for name, t in (self.encoder.tensors if self.encoder is not None else {}).items():
            if tensors.setdefault(name, t) != t:
                raise PimsimError(f"{name}: the encoder pass uses it as {t}, the decode step as {tensors[name]}")
        return tensors

    # ---- experts on channel groups ------------------------------------------------------------------
    def _expert_tensors(self) -> dict[str, tuple[str, int]]:
        """expert matrix name -> (stacked tensor, expert), when experts are dealt to channel groups."""
        groups = self.expert_groups
        stacked = {op.tensor: op.experts for op in self.graph.ops if op.kind == "expert_gemv"}
        if groups == 1 or not stacked:
            return {}
        g = self.geometry
        if groups < 1 or g.channels % groups:
            raise PimsimError(f"expert placement on {groups} channel groups: the group count must divide the "
                              f"{g.channels} channels of {self.hw.name}")
        if self.hw.mapping.gemv != "row_partition":
            raise PimsimError(f"expert placement on channel groups lays experts out with the row_partition GEMV; "
                              f"{self.hw.name} uses mapping.gemv {self.hw.mapping.gemv}")
        return {expert_tensor(t, e): (t, e) for t, n in stacked.items() for e in range(n)}

    def group_geometry(self, tensor: str) -> Geometry:
        """The geometry an expert of one channel group is laid out in: that group's channels only."""
        return replace(self.tensor_geometry(tensor), channels=self.geometry.channels // self.expert_groups)

    def _expert_layout(self, name: str) -> GemvPlacement:
        t = self.tensors[name]
        sub = self.group_geometry(name)
        split = auto_split(sub, t["rows"], t["cols"])
        return GemvPlacement(sub, t["rows"], t["cols"], 0, split, auto_pack(sub, t["rows"], t["cols"], split))

    def _place_experts(self, alloc: RowAllocator) -> dict[str, GemvPlacement]:
        """Block b of a stacked tensor (experts b x G .. b x G + G - 1) shares its rows: each expert sits
        in its own group's channels."""
        out, blocks = {}, {}
        for name, (stacked, expert) in self._experts.items():
            proto = self._expert_layout(name)
            block = (stacked, expert // self.expert_groups)
            if block not in blocks:
                blocks[block] = alloc.allocate(f"{stacked}[block {block[1]}]", proto.dram_rows)
            out[name] = replace(proto, first_row=blocks[block])
        return out

    def expert_group(self, name: str) -> int:
        return self._experts[name][1] % self.expert_groups

    def experts_stream(self, stacked: str, experts: tuple[int, ...]) -> Stream:
        """The chosen experts of a stacked tensor as one stream: each expert's program on its group's
        channels; where two share a group, one after the other on those channels."""
        names = [expert_tensor(stacked, e) for e in experts]
        groups = tuple(sorted(self.expert_group(n) for n in names))
        t = self.tables[names[0]]
        key = ("experts", t.rows_out, t.cols_in, t.geometry.fmt, self.expert_groups, groups, self.ns)
        parts = [self._group_stream(n) for n in names]
        cat = lambda field: np.concatenate([getattr(p, field) for p in parts])  # noqa: E731
        return Stream(key, cat("cmd"), cat("node"), np.concatenate([p.rows() for p in parts]), cat("column"),
                      sum(p.to_pim_bytes for p in parts), sum(p.from_pim_bytes for p in parts),
                      sum(p.asic_adds for p in parts), sum(p.outputs for p in parts), 0, parts[0].fmt)

    def _group_stream(self, name: str) -> Stream:
        """One expert's GEMV on its channel group: the group-sized program, its nodes moved to the group's
        channels, rows shifted to the expert's block."""
        t, group = self.tables[name], self.expert_group(name)
        key = ("gemv", t.rows_out, t.cols_in, t.geometry.fmt, 1, "", self.ns, "group", self.expert_groups, group)
        if key not in self._programs:
            c = self.compiled
            program = STRATEGIES["row_partition"](c, replace(t, first_row=0), t.geometry.lanes_out, None, None)
            offset = group * t.geometry.channels
            node = _move_channels(c, program.node, offset)
            channels = self.geometry.channels
            writes = np.bincount(np.asarray(c.channel_of(node[program.cmd == c.command_names.index("WRGB")]),
                                            np.int64), minlength=channels)
            reads = np.bincount(program.reads[:, RD_CHANNEL] + offset, minlength=channels)
            self._programs[key] = Stream(key, program.cmd, node, program.row, program.column,
                                         writes * self.hw.dram.organization.access_bytes,
                                         reads * c.result_read_bytes, program.asic_adds, program.outputs,
                                         fmt=t.geometry.fmt)
        return self._shifted(self._programs[key], t.first_row)

    def ring_tokens(self, layer: int) -> int:
        """Tokens the layer's KV cache holds: the whole context, or its sliding window's worth."""
        window = self.graph.layer_windows().get(layer)
        return min(window, self.max_context) if window else self.max_context

    def weight_elements(self) -> int:
        """Every weight and embedding table stored, the encoder's included (a tied table once)."""
        return sum(t["rows"] * t["cols"] for t in self.tensors.values())

    def _block_weights(self) -> set[str]:
        """Tensors that only transformer blocks multiply by (the encoder's and the cross-attention K/V
        projections included): these take the weight format. Embedding tables and the LM head stay in
        the KV cache's (higher-precision) format, as BitNet keeps them."""
        used: dict[str, bool] = {}
        ops = self.graph.ops + (self.encoder.ops if self.encoder is not None else [])
        for op in ops:
            if op.kind == "expert_gemv":
                for e in range(op.experts):
                    used[expert_tensor(op.tensor, e)] = used.get(expert_tensor(op.tensor, e), True)
            elif op.tensor is not None:
                in_block = op.kind == "gemv" and op.layer is not None
                used[op.tensor] = used.get(op.tensor, True) and in_block
        return {name for name, ok in used.items() if ok}

    def _layout(self, name: str, rows: int, cols: int) -> tuple:
        """(geometry, rows, cols, first row 0, split, pack) of a weight matrix or table: split over
        channel groups if it has few rows, packed if they are short."""
        g = self.tensor_geometry(name)
        split = auto_split(g, rows, cols)
        return g, rows, cols, 0, split, auto_pack(g, rows, cols, split)

    def _place(self, name: str, rows: int, cols: int, alloc: RowAllocator | None = None):
        g, rows, cols, _, split, pack = self._layout(name, rows, cols)
        if self.hw.mapping.gemv == hbm_pim_gemv.STRATEGY:  # the vendor's own tiling
            return hbm_pim_gemv.place(self.hw, g, rows, cols, alloc, name)
        if alloc is None:
            return GemvPlacement(g, rows, cols, 0, split, pack)
        return place_gemv(g, rows, cols, alloc, name, split, pack)

    def tensor_geometry(self, tensor: str) -> Geometry:
        return self.geometry if tensor in self.low_bit or self.geometry == self.kv_geometry else self.kv_geometry

    def gemv_bytes(self) -> float:
        """Bytes of the weights a decode step multiplies by (each GEMV's matrix once, in its format; of a
        mixture-of-experts layer, the top_k experts a token uses)."""
        def nbytes(tensor: str, rows: int, cols: int) -> float:
            g = self.tensor_geometry(tensor)  # group scales counted exactly (a partial group has one too)
            if g.group_accesses:
                return float(stored_bytes(g.fmt, rows, cols))
            return rows * cols * g.operand_bytes

        total = 0.0
        for op in self.graph.ops:
            if op.kind == "gemv":
                total += nbytes(op.tensor, op.rows, op.cols)
            elif op.kind == "expert_gemv":
                total += op.top_k * nbytes(expert_tensor(op.tensor, 0), op.rows, op.cols)
        return total

    # ---- fitting -------------------------------------------------------------------------------
    def _rows_needed(self, g: Geometry) -> int:
        rows = sum(self._place(name, t["rows"], t["cols"]).dram_rows
                   for name, t in self.tensors.items() if name not in self._experts)
        rows += sum(self._expert_layout(name).dram_rows  # a block of G experts shares its rows
                    for name, (_, e) in self._experts.items() if e % self.expert_groups == 0)
        self._kv_rows_per_sequence = 0
        for layer in self.graph.attention_layers():
            kv = self._proto_kv(tokens=self.ring_tokens(layer))
            self._kv_rows_per_sequence += kv.k.dram_rows + kv.v.dram_rows
        self._kv_rows = self.batch * self._kv_rows_per_sequence
        self._cross_rows = 0
        if self._cross_layers:
            cross = self._proto_kv(cross=True)
            self._cross_rows = len(self._cross_layers) * (cross.k.dram_rows + cross.v.dram_rows)
        return rows + self._kv_rows + self._cross_rows

    def _does_not_fit(self, g: Geometry) -> str:
        kv_rows, cross_rows = self._kv_rows, self._cross_rows
        row_bytes = g.row_elems * g.operand_bytes * g.slots
        if self.batch > 1:
            free = g.rows - (self._need - kv_rows)
            fit = max(free, 0) // self._kv_rows_per_sequence
            return (f"a batch of {self.batch} sequences of {self.graph.model} does not fit in {self.hw.name}: each "
                    f"sequence's KV cache for {self.max_context:,} tokens takes {self._kv_rows_per_sequence:,} rows of "
                    f"every bank, and {max(free, 0):,} of its {g.rows:,} rows per bank are left beside the weights, "
                    f"so {fit} sequence{'s' if fit != 1 else ''} fit{'s' if fit == 1 else ''}. Use a batch of at "
                    f"most {fit}, shorter sequences, or more memory")
        encoder = " (the encoder's included)" if self.encoder is not None else ""
        cross = (f", cross-attention K/V for {self.source_len:,} source tokens {cross_rows:,} more" if cross_rows
                 else "")
        shorter = "a shorter source or prompt" if cross_rows else "a shorter prompt"
        other = f" after the {self.base_row:,} rows per bank of the model sharing it" if self.base_row else ""
        return (f"{self.graph.model} does not fit in {self.hw.name}{other}: its {g.fmt} weights{encoder} take "
                f"{self._need - kv_rows - cross_rows - self.base_row:,} rows of every bank and a KV cache for "
                f"{self.max_context:,} tokens {kv_rows:,} more{cross}, "
                f"{self._need:,} in all ({self._need * row_bytes / 2**30:.2f} GiB with padding); the memory has "
                f"{g.rows:,} rows per bank ({g.rows * row_bytes / 2**30:.2f} GiB). Use {shorter} or fewer "
                f"tokens, a narrower --weight-format, or more memory (--set dram.organization.rows=... or channels)")

    def kv_rows_per_sequence(self) -> int:
        """DRAM rows per bank one sequence's KV cache takes (all layers)."""
        return self._kv_rows_per_sequence

    def sequences_that_fit(self) -> int:
        """How many sequences' KV caches (of max_context tokens) fit beside the weights."""
        return max(self.geometry.rows - (self._need - self._kv_rows), 0) // self._kv_rows_per_sequence

    def sequence(self, seq: int) -> ModelMap:
        """This placement seen from sequence `seq` of the batch: its attention and KV appends use that
        sequence's cache; programs and shifted streams are shared with every other view."""
        if not 0 <= seq < self.batch:
            raise PimsimError(f"sequence {seq} is outside the batch of {self.batch}")
        if seq == 0:
            return self
        view = copy.copy(self)
        view.kv = self.kv_by_sequence[seq]
        return view

    def cross_kv_rows(self) -> int:
        """DRAM rows per bank the cross-attention K/V regions take (0 for a decoder-only model)."""
        return self._cross_rows

    # ---- streams -------------------------------------------------------------------------------
    def _shifted(self, proto: Stream, first_row: int, asic_adds: int | None = None, outputs: int | None = None
                 ) -> Stream:
        """The prototype's stream for a tensor placed at `first_row` (memoised: layers repeat)."""
        return self._memo_shifted((proto.key, first_row, asic_adds, outputs), lambda: Stream(
            proto.key, proto.cmd, proto.node, proto.row, proto.column, proto.to_pim_bytes, proto.from_pim_bytes,
            proto.asic_adds if asic_adds is None else asic_adds, proto.outputs if outputs is None else outputs,
            first_row, proto.fmt, proto.extra_vector_macs))

    def _memo_shifted(self, key, make) -> Stream:
        """The shifted stream kept under `key`, else `make()`'s, kept (the SHIFTED_KEPT most recently used)."""
        got = self._shifts.get(key)
        if got is not None:
            self._shifts.move_to_end(key)
            return got
        got = self._shifts[key] = make()
        if len(self._shifts) > SHIFTED_KEPT:
            self._shifts.popitem(last=False)
        return got

    def _gemv_stream(self, key, placement: GemvPlacement, repeat: int = 1, groups=None, rows_active=None,
                     vectors: int = 1, pieces: dict | None = None) -> Stream:
        """The GEMV program of `placement` (at row 0), `repeat` times (a fresh input vector each time), each
        time over `vectors` input vectors sharing every opened row (row_partition only). The ASIC sends
        each channel what its global-buffer writes carry, and gets back its RDMAC results."""
        g = placement.geometry
        per_mac = self.hw.pim.vectors_per_mac
        if vectors > 1 and per_mac > 1:  # hbm_pim_gemv with a multi-vector datapath is refused by the engine
            program = STRATEGIES["row_partition"](self.compiled, placement, g.lanes_out, groups, rows_active,
                                                  vectors, self.hw.pim.buffer_vectors, per_mac)
        elif vectors > 1:
            reuse = self.hw.mapping.gemv if self.hw.mapping.gemv == hbm_pim_gemv.STRATEGY else "row_partition"
            program = STRATEGIES[reuse](self.compiled, placement, g.lanes_out, groups, rows_active,
                                        vectors, self.hw.pim.buffer_vectors)
        elif pieces is not None and self.hw.mapping.gemv == "row_partition":  # channels reused from earlier programs
            program = STRATEGIES["row_partition"](self.compiled, placement, g.lanes_out, groups, rows_active,
                                                  pieces=pieces)
        else:
            program = STRATEGIES[self.hw.mapping.gemv](self.compiled, placement, g.lanes_out, groups, rows_active)
        reads = np.bincount(program.reads[:, RD_CHANNEL], minlength=g.channels)
        to_pim = self._count_by_channel(program, "WRGB") * self.hw.dram.organization.access_bytes * repeat
        from_pim = reads * self.compiled.result_read_bytes * repeat  # one definition for pins and link
        arrays = [np.tile(a, repeat) for a in (program.cmd, program.node, program.row, program.column)]
        return Stream(key, *arrays, to_pim, from_pim, program.asic_adds * repeat, program.outputs * repeat,
                      fmt=g.fmt, extra_vector_macs=program.extra_vector_macs * repeat)

    def gemv(self, tensor: str, vectors: int = 1) -> Stream:
        """y = W x, or W times `vectors` input vectors at once (a speculative verify step, a batch, a
        prompt) as ``mapping.verify`` says: row_reuse (each row opened once for all of them) or
        vector_major (the one-vector program once per vector), auto choosing row_reuse only where the
        global buffer holds every vector. With a multi-vector datapath (``pim.vectors_per_mac`` = m > 1)
        each MAC multiplies m vectors: row_reuse runs ceil(vectors / m) MAC passes in each open row, and
        vector_major runs the m-vector program once per pass of m vectors."""
        t = self.tables[tensor]
        mode = self.hw.mapping.verify if vectors > 1 else ""
        if mode == "auto":
            mode = "row_reuse" if self.hw.pim.buffer_vectors >= vectors else "vector_major"
        per_mac = self.hw.pim.vectors_per_mac
        key = ("gemv", t.rows_out, t.cols_in, t.geometry.fmt, vectors, mode, self.ns) + ((per_mac,) if per_mac > 1
                                                                                       else ())
        if key not in self._programs:
            proto = replace(t, first_row=0)
            if mode == "row_reuse":
                self._programs[key] = self._gemv_stream(key, proto, vectors=vectors)
            elif per_mac > 1:  # one pass of m vectors after another (the last with what is left)
                full, rest = divmod(vectors, per_mac)
                passes = [self._gemv_stream(key, proto, repeat=full, vectors=per_mac)] if full else []
                if rest:
                    passes.append(self._gemv_stream(key, proto, vectors=rest))
                self._programs[key] = _concatenated(key, passes)
            else:
                self._programs[key] = self._gemv_stream(key, proto, repeat=vectors)
        return self._shifted(self._programs[key], t.first_row)

    def _kv_of(self, layer: int, cross: bool) -> tuple[KVLayout, tuple]:
        """A layer's K/V layout (self-attention cache or, with `cross`, cross-attention K/V) and what
        program keys of that layout add (cross K/V have their own length)."""
        if cross:
            return self.cross_kv[layer], ("cross", self.source_len)
        layout = self.kv[layer]
        return layout, (("ring", layout.max_context) if layout.max_context != self.max_context else ())

    def scores(self, layer: int, context: int, heads: int, cross: bool = False) -> Stream:
        """q.K^T of every query head over `context` cached tokens; grouped query heads take turns.
        With `cross`, over the layer's cross-attention K (context: the source length).

        Cached tokens are output rows dealt to PIM units, so the commands change only when the context
        reaches the next unit: the stream of the context rounded up to whole units is the same, with
        fewer partial sums (every token row has as many)."""
        layout, extra = self._kv_of(layer, cross)
        g = self.kv_geometry
        whole = min(-(-context // g.units) * g.units, layout.max_context)
        key = ("scores", whole, heads) + extra + (self.ns,)
        if key not in self._programs:
            proto = self._proto_kv(cross, layout.max_context)
            group = heads // layout.heads
            self._programs[key] = self._gemv_stream(key, proto.k, group, proto.k_groups(), whole,
                                                    pieces=self._channel_pieces)
        s = self._programs[key]
        partials = (s.asic_adds + s.outputs) * context // whole
        outputs = s.outputs * context // whole
        return self._shifted(s, layout.k.first_row, asic_adds=partials - outputs, outputs=outputs)

    def context(self, layer: int, context: int, heads: int, cross: bool = False) -> Stream:
        """p.V of every query head over `context` cached tokens (with `cross`, over the layer's
        cross-attention V). The commands change only when the context reaches the next column access
        (p is sent in whole accesses, zero-padded)."""
        layout, extra = self._kv_of(layer, cross)
        g = self.kv_geometry
        whole = -(-context // g.elems_per_access) * g.elems_per_access
        key = ("context", whole, heads) + extra + (self.ns,)
        if key not in self._programs:
            proto = self._proto_kv(cross, layout.max_context)
            group = heads // layout.heads
            self._programs[key] = self._gemv_stream(key, proto.v, group, proto.v_groups(whole), layout.head_dim)
        return self._shifted(self._programs[key], layout.k.first_row)  # V sits after K, as in the prototype

    def append(self, layer: int, token: int, which: str, cross: bool = False) -> Stream:
        """Writing the new token's keys or values (`which` = "k" or "v") into the cache (with `cross`,
        source token `token`'s into the layer's cross-attention K/V). A token's K row sits in slot
        token mod slots, one wave further down for every round of slots: the same commands as that
        slot's first token, rows shifted. A windowed layer's token goes to its ring slot."""
        layout, ring = self._kv_of(layer, cross)
        if ring and not cross:
            token %= layout.max_context
        if which == "k":
            wave, first = divmod(token, layout.k.slots_per_wave)
            s = self._append_stream(first, which, cross, layout.max_context)
            return self._shifted(s, layout.k.first_row + wave * layout.k.segments)
        # A value lands in column access token // e of rows that depend only on that access: every token
        # of one access has the same commands (timing only; the payload differs)
        e = self.kv_geometry.elems_per_access
        return self._shifted(self._append_stream(token // e * e, which, cross, layout.max_context),
                             layout.k.first_row)

    def _append_stream(self, token: int, which: str, cross: bool = False, tokens: int | None = None) -> Stream:
        ring = ("ring", tokens) if not cross and tokens not in (None, self.max_context) else ()
        key = ("append", token, which) + (("cross", self.source_len) if cross else ()) + ring + (self.ns,)
        if key not in self._programs:
            proto = self._proto_kv(cross, tokens)
            prog = append_program(self.compiled, proto, token, parts=which)
            writes = self._count_by_channel(prog, "WR")
            nbytes = writes * self.hw.dram.organization.access_bytes
            self._programs[key] = Stream(key, prog.cmd, prog.node, prog.row, prog.column, nbytes,
                                         np.zeros_like(nbytes))
        return self._programs[key]

    def embedding(self, tensor: str, entry: int) -> Stream:
        """Reading table row `entry`. Entries one round of slots apart (slots per wave x pack) sit in the
        same banks at the same columns, `segments` DRAM rows further down: entry e's commands are those of
        entry e mod that round with every row shifted, so one program serves them all (built once) and
        its stream names the round's first entry in ``commands_key``; its own ``key`` stays the entry's."""
        t = self.tables[tensor]
        if not 0 <= entry < t.rows_out:
            raise PimsimError(f"{tensor}: entry {entry} is outside its {t.rows_out} rows")
        # (the row_partition layout's rounds; another layout's tables build a program per entry)
        rounds, first = divmod(entry, t.slots_per_wave * t.pack) if type(t) is GemvPlacement else (0, entry)
        proto_key = ("embedding", t.rows_out, t.cols_in, first, self.ns)
        if proto_key not in self._programs:
            proto = replace(t, first_row=0)
            prog = read_row_program(self.compiled, proto, first)
            nbytes = self._count_by_channel(prog, "RD") * self.hw.dram.organization.access_bytes
            self._programs[proto_key] = Stream(proto_key, prog.cmd, prog.node, prog.row, prog.column,
                                               np.zeros_like(nbytes), nbytes)
        proto = self._programs[proto_key]
        if rounds == 0:
            return self._shifted(proto, t.first_row)
        key = ("embedding", t.rows_out, t.cols_in, entry, self.ns)
        row_offset = t.first_row + rounds * t.segments
        return self._memo_shifted((key, row_offset), lambda: replace(proto, key=key, row_offset=row_offset,
                                                                      commands_key=proto_key, _rows=None))

    def _proto_kv(self, cross: bool = False, tokens: int | None = None) -> KVLayout:
        """The KV layout of a layer placed at row 0 (every layer's programs are this one's, shifted);
        with `cross`, the cross-attention K/V layout; `tokens`: a windowed layer's ring length."""
        tokens = self.max_context if tokens is None or cross else tokens
        key = "cross_kv" if cross else ("kv" if tokens == self.max_context else ("kv", tokens))
        if key not in self._programs:
            meta = self.graph.meta
            heads, tokens = (meta.cross_kv_heads, self.source_len) if cross else (meta.kv_heads, tokens)
            self._programs[key] = kv_layout(self.kv_geometry, heads, meta.head_dim, tokens)
        return self._programs[key]

    def _count_by_channel(self, prog, name: str) -> np.ndarray:
        c = self.compiled
        mask = prog.cmd == c.command_names.index(name)
        channels = np.asarray(c.channel_of(prog.node[mask]), np.int64)
        return np.bincount(channels, minlength=self.geometry.channels).astype(np.int64)


def _concatenated(key: tuple, streams: list[Stream]) -> Stream:
    """One stream running `streams` one after another (their commands, bytes and sums added)."""
    if len(streams) == 1:
        return replace(streams[0], key=key)
    arrays = [np.concatenate([getattr(s, name) for s in streams]) for name in ("cmd", "node", "row", "column")]
    return Stream(key, *arrays, sum(s.to_pim_bytes for s in streams), sum(s.from_pim_bytes for s in streams),
                  sum(s.asic_adds for s in streams), sum(s.outputs for s in streams), fmt=streams[0].fmt,
                  extra_vector_macs=sum(s.extra_vector_macs for s in streams))


def _move_channels(compiled: Compiled, node: np.ndarray, offset: int) -> np.ndarray:
    """Node ids of a program built for channels 0.. moved `offset` channels up (channel, rank and bank
    nodes are numbered channel by channel)."""
    if offset == 0:
        return node
    org = compiled.hw.dram.organization
    per_channel = {Level.CHANNEL: 1, Level.RANK: org.ranks,
                   Level.BANK: org.ranks * org.bankgroups * org.banks_per_group}
    level = np.asarray(compiled.node_level(node))
    shift = np.zeros(len(node), np.int64)
    for lvl, count in per_channel.items():
        shift[level == lvl] = offset * count
    if not np.isin(level, list(per_channel)).all():
        raise RuntimeError("pimsim bug: a GEMV program addresses a node that is not a channel, rank or bank")
    return node + shift
