"""Lowering: each op of a traced graph turned into the steps that run it on the ASIC, the links and the
PIM channels.

One registry maps an op kind to the function that lowers it (:func:`lowers`); a new op kind is one
function here, nothing else. A :class:`Step` is one instruction before it is placed in a program: its
unit, the part of the step it counts to, where its duration comes from (a fixed ``ps`` for ASIC and link
work, or a command ``stream`` that the stream timer times), and the :class:`Work` the energy model
charges for it beyond the DRAM commands. :mod:`pimsim.engine.events` places steps into programs with
their dependencies.

Per op kind:
- GEMV, attention scores and context: the input vector over the links to every busy channel, the
  channels' command streams (global-buffer writes, all-bank MACs, accumulator reads), the partial
  sums back over the links, and the ASIC adding them up (plus the bias); a GEMV with integer
  activations of a float input is quantized on the ASIC first;
- KV append: the new keys or values over the links, then the channels' write streams;
- embedding: the table row read out of its bank, then over the link;
- expert GEMV (mixture of experts): the GEMV steps of each expert the run's router picked for the token
  in that layer, one expert after another (only their weights are read);
- router: the ASIC picking the top-k of the router's scores;
- matmul (an encoder's self-attention): ASIC multiply-adds;
- asic: vector work, sized by the context where it grows with it (softmax).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from typing import Callable, NamedTuple

from pimsim.asic.costs import cycles_to_ps, link_ps, reduce_cycles, reduce_sram_bytes, vector_cycles
from pimsim.mapper.model import Stream
from pimsim.workloads.opgraph import Op, expert_tensor

# Bytes per value the ASIC moves through its buffer, by what the value is (all FP32 on the ASIC, 4 B):
FP32_BYTES = 4  # one activation value in the ASIC's buffer (FP32); pimsim's ASIC model, README "The ASIC"
# vector work: each element read once and written once (2 x FP32)
VECTOR_BUFFER_BYTES_PER_ELEMENT = 2 * FP32_BYTES
# quantizing an input to int8: the FP32 value read (4 B) and its int8 code written (1 B) (README "Weight
# formats": absmax scale and round on the ASIC)
QUANTIZE_BUFFER_BYTES_PER_ELEMENT = FP32_BYTES + 1


@dataclass(frozen=True, slots=True)
class Work:
    """What the energy model charges for an instruction that the DRAM command counts do not."""

    link_bytes: int = 0  # over the ASIC<->controller links
    asic_lane_ops: int = 0  # ASIC lane steps (each lane of each arithmetic pass)
    asic_sram_bytes: int = 0  # ASIC buffer reads and writes
    extra_vector_macs: int = 0  # MAC commands x vectors each multiplied beyond its first (pim.vectors_per_mac)


NO_WORK = Work()


@dataclass(slots=True)
class WorkTally:
    """A run's :class:`Work`, summed as the engine goes."""

    link_bytes: int = 0
    asic_lane_ops: int = 0
    asic_sram_bytes: int = 0
    extra_vector_macs: int = 0

    def add(self, w: Work) -> None:
        self.link_bytes += w.link_bytes
        self.asic_lane_ops += w.asic_lane_ops
        self.asic_sram_bytes += w.asic_sram_bytes
        self.extra_vector_macs += w.extra_vector_macs

    def plus(self, other: WorkTally) -> WorkTally:
        return WorkTally(self.link_bytes + other.link_bytes, self.asic_lane_ops + other.asic_lane_ops,
                         self.asic_sram_bytes + other.asic_sram_bytes,
                         self.extra_vector_macs + other.extra_vector_macs)

    def minus(self, other: WorkTally) -> WorkTally:
        """What was added since `other` (a copy taken earlier)."""
        return WorkTally(self.link_bytes - other.link_bytes, self.asic_lane_ops - other.asic_lane_ops,
                         self.asic_sram_bytes - other.asic_sram_bytes,
                         self.extra_vector_macs - other.extra_vector_macs)


class Step(NamedTuple):
    """One instruction of an op, in the op's order: on `unit`, counted to `part`; it lasts `ps` (ASIC and
    link work) or as long as the stream timer says `stream` takes (PIM work)."""

    unit: str  # "asic", "link" or "pim"
    part: str
    ps: int
    stream: Stream | None
    work: Work

    @property
    def duration_source(self) -> str:
        return "stream" if self.stream is not None else "fixed"


# Fields of an op that say where it sits (its name, layer and values), not what its streams compute:
# steps at fast fidelity are shared between ops that differ only in these (one layer's steps serve all).
PLACE_FIELDS = ("name", "layer", "inputs", "output")
OpShape = make_dataclass("OpShape", [(f.name, object) for f in fields(Op) if f.name not in PLACE_FIELDS],
                         frozen=True, slots=True)
OpShape.__doc__ = "An op without where it sits: the key under which fast fidelity shares its steps."


_SHAPE_FIELDS = tuple(OpShape.__dataclass_fields__)


def shape_key(op: Op):
    """The fast-fidelity sharing key of `op`: every field except its place; a GEMV's weight tensor is
    part of what it computes (its stream), other ops' tensor names only say where their rows are."""
    return OpShape(**{f: getattr(op, f) if f != "tensor" or op.kind == "gemv" else None for f in _SHAPE_FIELDS})


LOWERINGS: dict[str, Callable] = {}
# Op kinds whose steps depend on where they sit (an embedding's row, the experts a layer's router picked
# for the token): fast fidelity does not share their steps between ops of one shape.
PLACED_KINDS = frozenset({"embedding", "expert_gemv"})


def lowers(*kinds: str):
    """Register the function that lowers ops of these kinds: f(lowerer, op, position, context, vectors)."""
    def register(fn):
        for kind in kinds:
            if kind in LOWERINGS:
                raise RuntimeError(f"pimsim bug: two lowerings for op kind {kind!r}")
            LOWERINGS[kind] = fn
        return fn
    return register


@dataclass(frozen=True, slots=True)
class _Links:
    """A stream's link times (ps, the busiest channel's bytes) and bytes in all, each way."""

    to_pim_ps: int
    from_pim_ps: int
    to_pim_bytes: int
    from_pim_bytes: int


class Lowerer:
    """Lowers ops onto one model's placement (`model_map`) and ASIC; memoises link times per stream."""

    def __init__(self, model_map, asic, source_len: int, router=None):
        self.map, self.asic, self.source_len = model_map, asic, source_len
        self.router = router  # pimsim.workloads.routing.Router of an MoE model's run
        self._links: dict = {}

    def steps(self, op: Op, position: int, context: int, vectors: int = 1) -> list[Step]:
        """The steps of `op` at `position` (cache of `context` tokens after it), in order. A GEMV may take
        `vectors` input vectors at once (a verify step); other ops take one."""
        fn = LOWERINGS.get(op.kind)
        if fn is None:
            raise RuntimeError(f"pimsim bug: no lowering for op kind {op.kind!r}")
        if vectors > 1 and op.kind != "gemv":
            raise RuntimeError(f"pimsim bug: only GEMVs take several input vectors, not {op.kind}")
        return fn(self, op, position, context, vectors)

    def link(self, per_channel) -> int:
        """The links run side by side: the channel with the most bytes sets the time."""
        return link_ps(self.asic, int(per_channel.max())) if len(per_channel) else 0

    def stream_links(self, stream: Stream) -> _Links:
        """Link times to and from the channels of a stream, and the bytes each way (memoised by the stream's
        contents: a model's GEMV streams come back every token)."""
        key = (stream.key, id(stream.to_pim_bytes), id(stream.from_pim_bytes))
        got = self._links.get(key)
        if got is None:
            got = self._links[key] = _Links(self.link(stream.to_pim_bytes), self.link(stream.from_pim_bytes),
                                            int(stream.to_pim_bytes.sum()), int(stream.from_pim_bytes.sum()))
        return got

    def quantized(self, op: Op) -> bool:
        """A GEMV whose float input the ASIC quantizes to integers first (int8 activations of ternary or
        binary weights): integer activations, weights in the low-bit set."""
        g = self.map.geometry
        return op.tensor in self.map.low_bit and g.integer and self.map.kv_geometry.fmt != g.fmt

    def vector_work(self, cycles: int, buffer_bytes: int) -> Work:
        """Every lane of every pass (the fill cycles do no arithmetic), and the buffer traffic."""
        asic = self.asic
        return Work(0, max(cycles - asic.pipeline_cycles, 0) * asic.lanes, buffer_bytes)


@lowers("gemv", "scores", "context")
def _lower_products(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    m = lw.map
    length = lw.source_len if op.cross else op.attended(context)  # a windowed layer reads its window only
    if op.kind == "gemv":
        stream = m.gemv(op.tensor, vectors)
    elif op.kind == "scores":
        stream = m.scores(op.layer, length, op.heads, op.cross)
    else:
        stream = m.context(op.layer, length, op.heads, op.cross)
    return _product_steps(lw, op, stream, vectors)


@lowers("expert_gemv")
def _lower_experts(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    """The chosen experts' GEMVs in turn: each reads its own matrix (placed like any weight) and returns
    its own partial sums; the other experts' weights are not touched."""
    if lw.router is None:
        raise RuntimeError("pimsim bug: an MoE graph lowered without a router")
    chosen = lw.router.experts(op.layer, position)
    if lw.map.expert_groups > 1:  # experts on channel groups: one stream, groups side by side
        return _product_steps(lw, op, lw.map.experts_stream(op.tensor, chosen), 1)
    steps: list[Step] = []
    for expert in chosen:
        steps += _product_steps(lw, op, lw.map.gemv(expert_tensor(op.tensor, expert)), 1)
    return steps


@lowers("router")
def _lower_router(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    """Top-k of the router's scores on the ASIC: k passes of a max over the experts' scores (``elements``
    = experts x k values in k rows), like any reduction."""
    asic = lw.asic
    cycles = vector_cycles(asic, "reduce", op.elements, op.rows)
    return [Step("asic", op.part, cycles_to_ps(asic, cycles), None,
                 lw.vector_work(cycles, VECTOR_BUFFER_BYTES_PER_ELEMENT * op.elements))]


def _product_steps(lw: Lowerer, op: Op, stream: Stream, vectors: int) -> list[Step]:
    """A PIM product's steps: its input over the links, the stream, the partial sums back, their sum."""
    asic = lw.asic
    links = lw.stream_links(stream)
    quantized = op.kind == "gemv" and lw.quantized(op)
    # integer outputs of quantized activations are scaled back: one multiply each
    adds = stream.asic_adds + (op.rows * vectors if op.bias else 0) + (op.rows * vectors if quantized else 0)
    first = []
    if quantized:  # each vector quantized with its own scale (a row of the quantize op)
        cycles = vector_cycles(asic, "quantize", op.cols * vectors, vectors)
        first = [Step("asic", "quantize", cycles_to_ps(asic, cycles), None,
                      lw.vector_work(cycles, QUANTIZE_BUFFER_BYTES_PER_ELEMENT * op.cols * vectors))]
    return first + [Step("link", "transfers", links.to_pim_ps, None, Work(links.to_pim_bytes)),
                    Step("pim", op.part, 0, stream,
                         Work(extra_vector_macs=stream.extra_vector_macs) if stream.extra_vector_macs else NO_WORK),
                    Step("link", "transfers", links.from_pim_ps, None, Work(links.from_pim_bytes)),
                    Step("asic", op.part, cycles_to_ps(asic, reduce_cycles(asic, adds)), None,
                         Work(0, adds, reduce_sram_bytes(adds, stream.outputs)))]


@lowers("kv_append")
def _lower_kv_append(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    stream = lw.map.append(op.layer, position, op.which, op.cross)
    links = lw.stream_links(stream)
    return [Step("link", "transfers", links.to_pim_ps, None, Work(links.to_pim_bytes)),
            Step("pim", op.part, 0, stream, NO_WORK)]


@lowers("embedding")
def _lower_embedding(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    stream = lw.map.embedding(op.tensor, position % op.rows)
    links = lw.stream_links(stream)
    return [Step("pim", op.part, 0, stream, NO_WORK),
            Step("link", "transfers", links.from_pim_ps, None, Work(links.from_pim_bytes))]


@lowers("matmul")
def _lower_matmul(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    """A product of two activations (an encoder's self-attention) on the ASIC: one multiply-add per lane
    per cycle, like a "mul" pass; each operand and result value through the buffer once."""
    asic = lw.asic
    cycles = vector_cycles(asic, "mul", op.elements)
    values = op.heads * (op.rows * op.head_dim + op.head_dim * op.cols + op.rows * op.cols)
    return [Step("asic", op.part, cycles_to_ps(asic, cycles), None, lw.vector_work(cycles, FP32_BYTES * values))]


@lowers("asic")
def _lower_vector(lw: Lowerer, op: Op, position: int, context: int, vectors: int) -> list[Step]:
    asic = lw.asic
    context = op.attended(context)  # a windowed layer's softmax covers its window only
    elements = op.elements_at(context, lw.source_len)
    cycles = vector_cycles(asic, op.asic_kind, elements, op.rows_at(context, lw.source_len))
    return [Step("asic", op.part, cycles_to_ps(asic, cycles), None,
                 lw.vector_work(cycles, VECTOR_BUFFER_BYTES_PER_ELEMENT * elements))]
