"""Token generation on the PIM system: every op of the traced decode step turned into instructions
for the ASIC, the links and the PIM channels, timed token after token.

Per op:
- GEMV, attention scores and context: the input vector over the links to every busy channel, the
  channels' command streams (global-buffer writes, all-bank MACs, accumulator reads), the partial
  sums back over the links, and the ASIC adding them up (plus the bias);
- KV append: the new keys or values over the links, then the channels' write streams;
- embedding: the table row read out of its bank, then over the link;
- everything else: ASIC vector work, sized by the context where it grows with it (softmax).

Token i (0-based) of a run with prompt length P sits at position P + i: the cache holds P + i tokens
before its step and P + i + 1 after. Tokens follow one another (each needs the previous one's output).

An encoder-decoder model's decode step also reads each layer's cross-attention K/V: scores and context
over the source's S tokens, in their own region. Its encoder pass, which runs once before the first
token, is :mod:`pimsim.engine.encoder`; it reuses :meth:`DecodeSimulation.steps` for its ops.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pimsim.asic.costs import cycles_to_ps, link_ps, reduce_cycles, reduce_sram_bytes, vector_cycles
from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import compile_standard
from pimsim.engine.dram_timing import timing_for
from pimsim.engine.events import Instr, run_program
from pimsim.errors import PimsimError
from pimsim.kernels import peak_internal_Bps
from pimsim.mapper.model import ModelMap
from pimsim.workloads.opgraph import PARTS, OpGraph
from pimsim.workloads.tracer import check_source_len

SCHEDULES = ("serial", "overlap")
NO_WORK = (0, 0, 0)
FIDELITIES = ("cycle", "fast")


@dataclass
class DecodeResult:
    per_token_ps: list[int]
    breakdown_ps: dict[str, int]
    counts: dict
    # (unit, name, part, layer, start ps, end ps, {channel: end ps} for PIM work)
    timeline: list[tuple] = field(default_factory=list)
    ideal_ps: float = 0.0  # the internal-bandwidth bound of the same work
    work: tuple = (0, 0, 0)  # link bytes, ASIC lane steps, ASIC buffer bytes
    channel_busy_ps: tuple = ()  # per channel: time running command streams


class DecodeSimulation:
    def __init__(self, hw: HardwareConfig, graph: OpGraph, prompt_len: int, gen_tokens: int,
                 schedule: str = "serial", fidelity: str = "fast", check_protocol: bool = False,
                 encoder: OpGraph | None = None, source_len: int | None = None,
                 share: DecodeSimulation | None = None):
        """``share``: another simulation on the same hardware whose memory this model shares (a
        speculative draft beside its target): the same DRAM timing state, and rows after that model's."""
        if hw.pim is None or hw.asic is None:
            missing = " and ".join(s for s, v in (("pim", hw.pim), ("asic", hw.asic)) if v is None)
            raise PimsimError(f"{hw.name}: has no {missing} section; token generation needs PIM memory and an ASIC")
        if schedule not in SCHEDULES:
            raise PimsimError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        if fidelity not in FIDELITIES:
            raise PimsimError(f"fidelity must be one of {', '.join(FIDELITIES)}, not {fidelity!r}")
        context = graph.meta["context"]
        if prompt_len < 0 or gen_tokens < 1:
            raise PimsimError(f"need a prompt length of at least 0 and at least one token to generate, got "
                              f"{prompt_len} and {gen_tokens}")
        if prompt_len + gen_tokens > context:
            raise PimsimError(f"{graph.model}: a prompt of {prompt_len} plus {gen_tokens} generated tokens is "
                              f"{prompt_len + gen_tokens} tokens, longer than its context of {context}")
        check_source_len(graph, source_len)
        if graph.meta.get("encoder_decoder") and (encoder is None or encoder.meta.get("source_len") != source_len):
            raise PimsimError(f"{graph.model}: an encoder-decoder run needs its encoder pass traced at the source "
                              f"length {source_len}")
        self.hw, self.graph, self.encoder = hw, graph, encoder
        self.prompt_len, self.gen_tokens = prompt_len, gen_tokens
        self.source_len = source_len or 0
        self.schedule, self.fidelity = schedule, fidelity
        _check_one_mac_spacing(hw)
        if share is not None and share.hw != hw:
            raise PimsimError("models sharing a memory need the same hardware description")
        self.compiled = compile_standard(hw) if share is None else share.compiled
        self.map = ModelMap(hw, self.compiled, graph, prompt_len + gen_tokens, encoder, self.source_len,
                            base_row=share.map.rows_used if share is not None else 0)
        self.asic = hw.asic
        self._check_asic_buffer(prompt_len + gen_tokens)
        if check_protocol and fidelity != "cycle":
            raise PimsimError("checking the protocol needs --fidelity cycle (fast fidelity issues no commands)")
        self.check_protocol = check_protocol
        self.timing = timing_for(self.compiled, fidelity, record=check_protocol) if share is None else share.timing
        self._static: dict = {}
        self._links: dict = {}
        self._plan: list | None = None
        self._ran = False
        self._weights_ideal: float | None = None
        self.work = [0, 0, 0]  # link bytes, ASIC lane steps, ASIC buffer bytes (for the energy model)

    def _check_asic_buffer(self, context: int) -> None:
        """The largest vector the ASIC holds (FP32) must fit its buffer: logits, scores, activations."""
        need, what = 0, ""
        source = self.source_len
        for op in self.graph.ops:
            if op.kind == "asic":
                elements = op.elements_at(context, source)
                size, name = 4 * elements, f"{op.asic_kind} over {elements:,} values"
            elif op.kind in ("gemv", "scores", "context"):
                length = source if op.cross else context
                rows = op.rows if op.kind == "gemv" else op.heads * (length if op.kind == "scores" else op.head_dim)
                size, name = 4 * rows, f"the {rows:,} outputs of {op.name.split(':')[0] or op.kind}"
            else:
                continue
            if size > need:
                need, what = size, name
        if need > self.asic.sram_bytes:
            raise PimsimError(f"{self.graph.model} on {self.hw.name}: the ASIC's {self.asic.sram_bytes:,} B buffer "
                              f"cannot hold {what} ({need:,} B in FP32); raise asic.sram_bytes")

    # ---- one token -----------------------------------------------------------------------------
    def _link(self, per_channel) -> int:
        """The links run side by side: the channel with the most bytes sets the time."""
        return link_ps(self.asic, int(per_channel.max())) if len(per_channel) else 0

    def _stream_links(self, stream) -> tuple[int, int]:
        """Link times to and from the channels of a stream (memoised by the stream's contents)."""
        key = (stream.key, id(stream.to_pim_bytes), id(stream.from_pim_bytes))
        got = self._links.get(key)
        if got is None:
            got = self._links[key] = (self._link(stream.to_pim_bytes), self._link(stream.from_pim_bytes))
        return got

    def _template(self) -> list[tuple]:
        """Per op with instructions: (op index, first instruction, dependencies of the first). Every op
        has a fixed number of instructions, so the dependencies are the same at every position."""
        if self._plan is None:
            plan, done_by, count = [], {}, 0
            sizes = {"gemv": 4, "scores": 4, "context": 4, "kv_append": 2, "embedding": 2, "asic": 1}
            for index, op in enumerate(self.graph.ops):
                extra = 1 if op.kind == "gemv" and self._quantized(op) else 0
                deps = tuple(sorted({i for v in op.inputs for i in done_by.get(v, ())}))
                if op.kind == "join":
                    done_by[op.output] = deps
                    continue
                if op.kind not in sizes:
                    raise RuntimeError(f"pimsim bug: no instructions for op kind {op.kind!r}")
                plan.append((index, count, deps))
                count += sizes[op.kind] + extra
                done_by[op.output] = (count - 1,)
            self._plan = plan
        return self._plan

    def _op_steps(self, index: int, op, position: int, context: int, shared: dict) -> list[tuple]:
        steps = self._static.get(index)
        if steps is not None:
            return steps
        if self.fidelity == "fast" and op.kind != "embedding":
            # what fast timing needs of a stream is its key, the same for every layer: one layer's
            # steps serve all of them at this position
            key = (op.kind, op.which, op.heads, op.tensor if op.kind == "gemv" else None, op.asic_kind, op.elements,
                   op.elements_per_token, op.rows, op.rows_per_token, op.bias, op.cross, op.elements_per_source,
                   op.rows_per_source)
            steps = shared.get(key)
            if steps is None:
                steps = shared[key] = self.steps(op, position, context)
        else:
            steps = self.steps(op, position, context)
        if op.kind == "gemv" or (op.kind == "asic" and not (op.elements_per_token or op.rows_per_token)):
            self._static[index] = steps  # the same at every position
        return steps

    def token_program(self, position: int) -> list[Instr]:
        """The instructions of the decode step at `position` (tokens in the cache before it)."""
        context = position + 1
        instrs: list[Instr] = []
        ops = self.graph.ops
        shared: dict = {}
        for index, first, deps in self._template():
            op = ops[index]
            name, layer = op.name, op.layer
            for k, (unit, part, ps, stream, work) in enumerate(self._op_steps(index, op, position, context, shared)):
                instrs.append(Instr(unit, part, name, layer, (first + k - 1,) if k else deps, ps, stream))
                self._add_work(work)
        return instrs

    def _add_work(self, work) -> None:
        w = self.work
        w[0] += work[0]
        w[1] += work[1]
        w[2] += work[2]

    def _serial_token(self, position: int, t: int, breakdown: dict) -> int:
        """The serial schedule without instruction objects: each step starts when the one before ends
        (what :func:`run_program` does with ``serial``; a test holds the two together)."""
        context = position + 1
        ops = self.graph.ops
        shared: dict = {}
        for index, _, _ in self._template():
            t = self.advance(self._op_steps(index, ops[index], position, context, shared), t, breakdown)
        return t

    def verify_steps(self, position: int, tokens: int) -> list[tuple]:
        """The steps of one pass over `tokens` new tokens at positions position, position + 1, ... (a
        speculative verify step; tokens = 1 is an ordinary decode step): every GEMV multiplies all the
        tokens' vectors at once (``mapping.verify``); attention, KV appends, embeddings and ASIC work
        run token by token, each over its own context (causal: token j sees position + j + 1 tokens).
        Rejected tokens' cache entries are simply overwritten by later steps."""
        out: list[tuple] = []
        shared: list[dict] = [{} for _ in range(tokens)]
        for index, _, _ in self._template():
            op = self.graph.ops[index]
            if op.kind == "gemv" and tokens > 1:
                out += self.steps(op, position, position + 1, vectors=tokens)
                continue
            for j in range(tokens):
                out += self._op_steps(index, op, position + j, position + j + 1, shared[j])
        return out

    def advance(self, steps: list[tuple], start_ps: int, breakdown: dict) -> int:
        """Run steps one after another from `start_ps` (the serial schedule); returns the end time and
        adds each step's time to `breakdown` and its work to the energy counters."""
        t, timing = start_ps, self.timing
        for _, part, ps, stream, work in steps:
            end = timing.run(stream, t) if stream is not None else t + ps
            breakdown[part] += end - t
            t = end
            if work is not NO_WORK:
                self._add_work(work)
        return t

    def steps(self, op, position: int, context: int, vectors: int = 1) -> list[tuple]:
        """(unit, part, duration ps, stream, work) of each instruction of one op, in order; work is what
        the energy model charges that the DRAM command counts do not: (link bytes, ASIC lane steps,
        ASIC buffer bytes). Cross-attention ops run over the source length instead of the context.
        A GEMV may take `vectors` input vectors at once (a verify step); other ops take one."""
        m, asic = self.map, self.asic
        if vectors > 1 and op.kind != "gemv":
            raise RuntimeError(f"pimsim bug: only GEMVs take several input vectors, not {op.kind}")
        if op.kind in ("gemv", "scores", "context"):
            length = self.source_len if op.cross else context
            if op.kind == "gemv":
                stream = m.gemv(op.tensor, vectors)
            elif op.kind == "scores":
                stream = m.scores(op.layer, length, op.heads, op.cross)
            else:
                stream = m.context(op.layer, length, op.heads, op.cross)
            to_pim, from_pim = self._stream_links(stream)
            quantized = op.kind == "gemv" and self._quantized(op)
            # integer outputs of quantized activations are scaled back: one multiply each
            adds = stream.asic_adds + (op.rows * vectors if op.bias else 0) + (op.rows * vectors if quantized else 0)
            reduce_work = (0, adds, reduce_sram_bytes(adds, stream.outputs))
            first = []
            if quantized:  # each vector quantized with its own scale (a row of the quantize op)
                cycles = vector_cycles(asic, "quantize", op.cols * vectors, vectors)
                first = [("asic", "quantize", cycles_to_ps(asic, cycles), None,
                          (0, max(cycles - asic.pipeline_cycles, 0) * asic.lanes, 5 * op.cols * vectors))]
            return first + [("link", "transfers", to_pim, None, (int(stream.to_pim_bytes.sum()), 0, 0)),
                    ("pim", op.part, 0, stream, NO_WORK),
                    ("link", "transfers", from_pim, None, (int(stream.from_pim_bytes.sum()), 0, 0)),
                    ("asic", op.part, cycles_to_ps(asic, reduce_cycles(asic, adds)), None, reduce_work)]
        if op.kind == "kv_append":
            stream = m.append(op.layer, position, op.which, op.cross)
            return [("link", "transfers", self._stream_links(stream)[0], None, (int(stream.to_pim_bytes.sum()), 0, 0)),
                    ("pim", op.part, 0, stream, NO_WORK)]
        if op.kind == "embedding":
            stream = m.embedding(op.tensor, position % op.rows)
            return [("pim", op.part, 0, stream, NO_WORK),
                    ("link", "transfers", self._stream_links(stream)[1], None,
                     (int(stream.from_pim_bytes.sum()), 0, 0))]
        if op.kind == "matmul":
            # a product of two activations (an encoder's self-attention) on the ASIC: one multiply-add per
            # lane per cycle, like a "mul" pass; each operand and result value through the buffer once
            cycles = vector_cycles(asic, "mul", op.elements)
            values = op.heads * (op.rows * op.head_dim + op.head_dim * op.cols + op.rows * op.cols)
            work = (0, max(cycles - asic.pipeline_cycles, 0) * asic.lanes, 4 * values)
            return [("asic", op.part, cycles_to_ps(asic, cycles), None, work)]
        elements = op.elements_at(context, self.source_len)
        cycles = vector_cycles(asic, op.asic_kind, elements, op.rows_at(context, self.source_len))
        # every lane of every pass (the fill cycles do no arithmetic); each element read and written once
        work = (0, max(cycles - asic.pipeline_cycles, 0) * asic.lanes, 8 * elements)
        return [("asic", op.part, cycles_to_ps(asic, cycles), None, work)]

    def _quantized(self, op) -> bool:
        """A GEMV whose float input the ASIC quantizes to integers first (int8 activations of ternary or
        binary weights): integer activations, weights in the low-bit set."""
        g = self.map.geometry
        return op.tensor in self.map.low_bit and g.integer and self.map.kv_geometry.fmt != g.fmt

    def _ideal_ps(self, context: int) -> float:
        """The token's weight and KV bytes at the device's peak internal bandwidth."""
        if self._weights_ideal is None:
            ps_per_byte = 1e12 / peak_internal_Bps(self.compiled)
            self._ps_per_kv = self.map.kv_geometry.operand_bytes * ps_per_byte
            self._weights_ideal = self.map.gemv_bytes() * ps_per_byte
        return self._weights_ideal + self.graph.kv_elements(context, self.source_len) * self._ps_per_kv

    # ---- the run -------------------------------------------------------------------------------
    def run(self, timeline: bool = False, progress=None) -> DecodeResult:
        if self._ran:  # the DRAM state, refresh clock and energy counts would carry over into a second run
            raise RuntimeError("a DecodeSimulation runs once; make a new one for another run")
        self._ran = True
        serial = self.schedule == "serial"
        self.timing.track_channels = timeline
        per_token, breakdown = [], dict.fromkeys(PARTS, 0)
        events = []
        t = 0
        ideal = 0.0
        for i in range(self.gen_tokens):
            position = self.prompt_len + i
            if serial and not timeline:
                end = self._serial_token(position, t, breakdown)
                per_token.append(end - t)
                ideal += self._ideal_ps(position + 1)
                t = end
                if progress is not None:
                    progress(1)
                continue
            program = self.token_program(position)
            end = run_program(program, t, self.timing, serial)
            per_token.append(end - t)
            for ins in program:
                breakdown[ins.part] += ins.end - ins.start
            if timeline:
                events.extend((ins.unit, ins.name, ins.part, ins.layer, ins.start, ins.end, ins.channel_ends)
                              for ins in program if ins.end > ins.start)
            ideal += self._ideal_ps(position + 1)
            t = end
            if progress is not None:
                progress(1)
        counts = self.timing.counts()
        if self.check_protocol:
            checked, violations = self.timing.protocol_violations()
            if violations:
                shown = "\n  ".join(str(v) for v in violations[:5])
                raise RuntimeError(f"pimsim bug: the run issued {len(violations)} command(s) that break the "
                                   f"{self.hw.dram.standard} protocol, for example:\n  {shown}")
            counts["protocol_check"] = {"commands_checked": checked, "violations": 0}
        return DecodeResult(per_token, breakdown, counts, events, ideal, tuple(self.work),
                            tuple(float(b) for b in self.timing.busy_ps))

    def describe(self) -> dict:
        g = self.map.geometry
        out = {"rows_per_bank_used": self.map.rows_used, "rows_per_bank": g.rows,
               "memory_used_fraction": self.map.rows_used / g.rows,
               "kv_cache_tokens_reserved": self.map.max_context}
        if self.map.cross_kv:
            out.update({"cross_kv_tokens_reserved": self.source_len,
                        "cross_kv_rows_per_bank": self.map.cross_kv_rows()})
        return out


def _check_one_mac_spacing(hw: HardwareConfig) -> None:
    """The MAC commands of a run share one spacing rule (nMAC, the block weights' datapath), so the KV
    cache's datapath must not need a different one: refused rather than timed with the wrong one."""
    from pimsim.dram.compile import derived_timing

    if hw.pim is None or hw.pim.cache_format == hw.pim.weight_format:
        return
    weights, kv = derived_timing(hw)["nMAC"], derived_timing(hw.with_weight_format(hw.pim.cache_format))["nMAC"]
    if weights != kv:
        raise PimsimError(f"{hw.name}: MACs on {hw.pim.weight_format} weights take {weights} cycles (nMAC) and on the "
                          f"{hw.pim.cache_format} KV cache {kv}; pimsim times every MAC of a run with one spacing, so "
                          "give both datapaths the same passes x mac_cycles")


def config_hash(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
