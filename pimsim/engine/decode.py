"""Token generation on the PIM system: every op of the traced decode step turned into instructions
for the ASIC, the links and the PIM channels, timed token after token.

Each op is lowered into steps by :mod:`pimsim.engine.lowering` (one function per op kind); here they
are placed into programs (:class:`pimsim.engine.events.Program`). The run is a process on the system
engine (:mod:`pimsim.engine.system`; :meth:`DecodeSimulation.tokens` is its body) that submits each
token's steps, or its program where the schedule is overlap or a timeline is wanted.

Token i (0-based) of a run with prompt length P sits at position P + i: the cache holds P + i tokens
before its step and P + i + 1 after. Tokens follow one another (each needs the previous one's output).

A batch of B sequences (``batch``) decodes in lock step: one step carries every sequence's token, each
GEMV multiplies the B vectors at once (:meth:`ModelMap.gemv` with ``vectors``: rows reused as
``mapping.verify`` says, ceil(B / pim.vectors_per_mac) MAC passes over each row), and each sequence's
attention and KV append run over its own cache (:meth:`DecodeSimulation.batch_steps`).

An encoder-decoder model's decode step also reads each layer's cross-attention K/V: scores and context
over the source's S tokens, in their own region. Its encoder pass, which runs once before the first
token, is :mod:`pimsim.engine.encoder`; it reuses :meth:`DecodeSimulation.steps` for its ops.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import compile_standard
from pimsim.engine import serial_plan
from pimsim.engine.dram_timing import timing_for
from pimsim.engine.events import Program, run_steps
from pimsim.engine.lowering import FP32_BYTES, PLACED_KINDS, Lowerer, Step, WorkTally, shape_key
from pimsim.engine.system import System
from pimsim.errors import PimsimError
from pimsim.kernels import peak_internal_Bps
from pimsim.mapper import hbm_pim_gemv
from pimsim.mapper.model import ModelMap
from pimsim.workloads.opgraph import PARTS, OpGraph
from pimsim.workloads.routing import Router, RoutingSpec
from pimsim.workloads.tracer import check_source_len

SCHEDULES = ("serial", "overlap")
FIDELITIES = ("cycle", "fast")


@dataclass
class DecodeResult:
    per_token_ps: list[int]
    breakdown_ps: dict[str, int]
    counts: dict
    # (unit, name, part, layer, start ps, end ps, {channel: end ps} for PIM work)
    timeline: list[tuple] = field(default_factory=list)
    ideal_ps: float = 0.0  # the internal-bandwidth bound of the same work
    work: WorkTally = field(default_factory=WorkTally)  # what the energy model charges beyond commands
    channel_busy_ps: tuple = ()  # per channel: time running command streams


class DecodeSimulation:
    def __init__(self, hw: HardwareConfig, graph: OpGraph, prompt_len: int, gen_tokens: int,
                 schedule: str = "serial", fidelity: str = "fast", check_protocol: bool = False,
                 encoder: OpGraph | None = None, source_len: int | None = None,
                 share: DecodeSimulation | None = None, batch: int = 1, routing: RoutingSpec | None = None):
        """``share``: another simulation on the same hardware whose memory this model shares (a
        speculative draft beside its target): the same DRAM timing state, and rows after that model's.
        ``batch``: sequences decoded in lock step, each with its own KV cache. ``routing``: how an MoE
        model's tokens pick experts (the model card's; uniform, seed 0 if None)."""
        if hw.pim is None or hw.asic is None:
            missing = " and ".join(s for s, v in (("pim", hw.pim), ("asic", hw.asic)) if v is None)
            raise PimsimError(f"{hw.name}: has no {missing} section; token generation needs PIM memory and an ASIC")
        if schedule not in SCHEDULES:
            raise PimsimError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        if fidelity not in FIDELITIES:
            raise PimsimError(f"fidelity must be one of {', '.join(FIDELITIES)}, not {fidelity!r}")
        context = graph.meta.context
        if prompt_len < 0 or gen_tokens < 1:
            raise PimsimError(f"need a prompt length of at least 0 and at least one token to generate, got "
                              f"{prompt_len} and {gen_tokens}")
        if prompt_len + gen_tokens > context:
            raise PimsimError(f"{graph.model}: a prompt of {prompt_len} plus {gen_tokens} generated tokens is "
                              f"{prompt_len + gen_tokens} tokens, longer than its context of {context}")
        check_source_len(graph, source_len)
        _check_batch(hw, graph, batch)
        if graph.meta.encoder_decoder and (encoder is None or encoder.meta.source_len != source_len):
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
        self.batch = batch
        moe = graph.meta.moe
        if moe is not None and batch > 1:
            raise PimsimError(f"{graph.model}: batches of a mixture-of-experts model are not simulated yet (each "
                              "sequence would route its own experts); run it with --batch 1")
        routing = routing or RoutingSpec()
        groups = routing.expert_groups(hw.dram.organization.channels, moe.experts) if moe is not None else 1
        self.map = ModelMap(hw, self.compiled, graph, prompt_len + gen_tokens, encoder, self.source_len,
                            base_row=share.map.rows_used if share is not None else 0, batch=batch,
                            expert_groups=groups)
        self.asic = hw.asic
        self._check_asic_buffer(prompt_len + gen_tokens)
        if check_protocol and fidelity != "cycle":
            raise PimsimError("checking the protocol needs --fidelity cycle (fast fidelity issues no commands)")
        self.check_protocol = check_protocol
        self.timing = timing_for(self.compiled, fidelity, record=check_protocol) if share is None else share.timing
        self.router = Router(routing, moe, prompt_len) if moe is not None else None
        self.lowerer = Lowerer(self.map, self.asic, self.source_len, self.router)
        # each sequence of a batch lowers its attention onto its own KV cache
        self.lowerers = [self.lowerer] + [Lowerer(self.map.sequence(s), self.asic, self.source_len, self.router)
                                          for s in range(1, batch)]
        self._batched_gemvs: dict = {}
        self._static: dict = {}
        self._groups = None  # fast fidelity's serial plan: the token's ops by layer (see _token_plan)
        self._first_of: dict = {}  # op key -> the first op with it
        self._varying: list = []  # op keys whose steps may still change with the position
        self._plans: dict = {}  # op key -> (its last step list, that list's plan, the plan's signature number)
        self._signatures: dict = {}  # plan signature -> a number
        self._fixed_plans: dict = {}  # op key -> plan, for ops whose steps are the same at every position
        self._fixed_signatures: dict = {}
        self._ran = False
        self._weights_ideal: float | None = None
        self.work = WorkTally()  # what the energy model charges beyond the DRAM commands
        # the ops that have steps (joins only pass values on), each with the ops whose results it waits for
        self._work_ops, self._op_deps = _op_order(graph)
        # fast fidelity shares steps between ops of one shape (OpShape, a frozen dataclass); each distinct
        # shape gets a small number once here, so the per-token lookups hash an int
        shapes: dict = {}
        self._shape_ids = {i: shapes.setdefault(shape_key(graph.ops[i]), len(shapes)) for i in self._work_ops}

    def _check_asic_buffer(self, context: int) -> None:
        """The largest vector the ASIC holds (FP32) must fit its buffer: logits, scores, activations."""
        need, what = 0, ""
        source = self.source_len
        for op in self.graph.ops:
            if op.kind == "asic":
                elements = op.elements_at(op.attended(context), source)
                size, name = FP32_BYTES * elements, f"{op.asic_kind} over {elements:,} values"
            elif op.kind in ("gemv", "scores", "context", "expert_gemv"):
                length = source if op.cross else op.attended(context)
                rows = op.rows if op.kind == "gemv" else op.heads * (length if op.kind == "scores" else op.head_dim)
                size, name = FP32_BYTES * rows, f"the {rows:,} outputs of {op.name.split(':')[0] or op.kind}"
            else:
                continue
            if size > need:
                need, what = size, name
        if need > self.asic.sram_bytes:
            raise PimsimError(f"{self.graph.model} on {self.hw.name}: the ASIC's {self.asic.sram_bytes:,} B buffer "
                              f"cannot hold {what} ({need:,} B in FP32); raise asic.sram_bytes")

    # ---- one token -----------------------------------------------------------------------------
    def _op_steps(self, index: int, op, position: int, context: int, shared: dict) -> list[Step]:
        steps = self._static.get(index)
        if steps is not None:
            return steps
        if self.fidelity == "fast" and op.kind not in PLACED_KINDS:
            # what fast timing needs of a stream is its key, the same for every layer: one layer's
            # steps serve all of them at this position
            key = self._shape_ids[index]
            steps = shared.get(key)
            if steps is None:
                steps = shared[key] = self.steps(op, position, context)
        else:
            steps = self.steps(op, position, context)
        if op.kind == "gemv" or (op.kind == "asic" and not (op.elements_per_token or op.rows_per_token)):
            self._static[index] = steps  # the same at every position
        return steps

    def token_program(self, position: int) -> Program:
        """The instructions of the token at `position` (every sequence's, for a batch): each op's steps
        in a chain, the first waiting for the last instruction of every op whose result it reads."""
        context = position + 1
        program = Program()
        ops = self.graph.ops
        shared: dict = {}
        last = {}
        positions = [position] * self.batch
        batch_shared: dict[int, dict] = {}
        for index in self._work_ops:
            op = ops[index]
            if self.batch == 1:
                steps = self._op_steps(index, op, position, context, shared)
            else:
                steps = self._op_batch_steps(index, op, positions, batch_shared)
            deps = tuple(last[d] for d in self._op_deps[index])
            last[index] = program.add_steps(steps, op.name, op.layer, deps)
        return program

    def token_steps(self, position: int) -> list[Step]:
        """The steps of the token at `position` one after another (a lone sequence's token on the serial
        schedule, without instruction objects: the program of :meth:`token_program` in order)."""
        context = position + 1
        ops = self.graph.ops
        shared: dict = {}
        out: list[Step] = []
        for index in self._work_ops:
            out += self._op_steps(index, ops[index], position, context, shared)
        return out

    def _token_plan(self, position: int) -> serial_plan.Plan:
        """The token's steps at fast fidelity as one plan, built from one plan per distinct op: ops of one
        shape share their steps (:meth:`_op_steps`), placed ops (embeddings) have their own."""
        ops = self.graph.ops
        if self._groups is None:
            keys = [("placed", i) if ops[i].kind in PLACED_KINDS else self._shape_ids[i] for i in self._work_ops]
            for key, index in zip(keys, self._work_ops):
                self._first_of.setdefault(key, index)
            self._groups = serial_plan.layer_groups(keys, [ops[i].layer for i in self._work_ops])
            self._varying = list(self._first_of)
        shared: dict = {}
        plans, signatures = dict(self._fixed_plans), dict(self._fixed_signatures)
        for key in self._varying:
            index = self._first_of[key]
            steps = self._op_steps(index, ops[index], position, position + 1, shared)
            known = self._plans.get(key)
            if known is None or known[0] is not steps:  # a step list seen before keeps its plan
                plan = serial_plan.Plan.of(steps)
                known = self._plans[key] = (steps, plan, self._signatures.setdefault(plan.signature(),
                                                                                     len(self._signatures)))
            plans[key], signatures[key] = known[1], known[2]
            if self._static.get(index) is steps:  # the same at every position from now on
                self._fixed_plans[key], self._fixed_signatures[key] = known[1], known[2]
        self._varying = [key for key in self._varying if key not in self._fixed_plans]
        return serial_plan.joined(self._groups, plans, signatures)

    def verify_steps(self, position: int, tokens: int) -> list[Step]:
        """The steps of one pass over `tokens` new tokens at positions position, position + 1, ... (a
        speculative verify step; tokens = 1 is an ordinary decode step): every GEMV multiplies all the
        tokens' vectors at once (``mapping.verify``); attention, KV appends, embeddings and ASIC work
        run token by token, each over its own context (causal: token j sees position + j + 1 tokens).
        Rejected tokens' cache entries are simply overwritten by later steps."""
        out: list[Step] = []
        shared: list[dict] = [{} for _ in range(tokens)]
        for index in self._work_ops:
            op = self.graph.ops[index]
            if op.kind == "gemv" and tokens > 1:
                out += self.steps(op, position, position + 1, vectors=tokens)
                continue
            for j in range(tokens):
                out += self._op_steps(index, op, position + j, position + j + 1, shared[j])
        return out

    def batch_steps(self, positions) -> list[Step]:
        """The steps of one decode step of ``len(positions)`` sequences in lock step (at most the batch
        the memory was laid out for), sequence s's new token at ``positions[s]`` (its cache holds that
        many tokens before the step): every GEMV multiplies all the sequences' vectors at once (see
        :meth:`ModelMap.gemv`), each sequence's embedding, KV appends, attention and ASIC work run over
        its own cache and context, sequence after sequence within each op. One sequence: exactly the
        steps of an ordinary decode step."""
        if not 1 <= len(positions) <= self.batch:
            raise PimsimError(f"a step of {len(positions)} sequences on a memory laid out for {self.batch}")
        out: list[Step] = []
        shared: dict[int, dict] = {}
        ops = self.graph.ops
        for index in self._work_ops:
            out += self._op_batch_steps(index, ops[index], positions, shared)
        return out

    def _op_batch_steps(self, index: int, op, positions, shared: dict[int, dict]) -> list[Step]:
        """One op's steps in a step of ``len(positions)`` sequences (see :meth:`batch_steps`); `shared`
        holds fast fidelity's per-position step sharing across the ops of the step."""
        if op.kind == "gemv" and len(positions) > 1:
            return self._batched_gemv(index, op, len(positions))
        out: list[Step] = []
        for seq, position in enumerate(positions):
            out += self._sequence_op_steps(index, op, seq, position, shared)
        return out

    def _sequence_op_steps(self, index: int, op, seq: int, position: int, shared: dict[int, dict]) -> list[Step]:
        """One op's steps for sequence `seq` of a batch at `position` (its own KV cache)."""
        if seq == 0 or self.fidelity == "fast":
            # fast timing goes by what a stream computes, not where it sits: sequence 0's steps at this
            # position time every sequence's
            return self._op_steps(index, op, position, position + 1, shared.setdefault(position, {}))
        return self.lowerers[seq].steps(op, position, position + 1)

    def prefill_steps(self, prompt_len: int, sequences: int = 1) -> list[Step]:
        """The steps of a prefill: `sequences` prompts of `prompt_len` tokens each through every layer,
        writing their keys and values at positions 0 .. prompt_len - 1 of each sequence's cache. Each
        weight GEMV multiplies all the prompt tokens' vectors, ``pim.buffer_vectors`` at a time (each
        chunk one multi-vector GEMV: rows reused, ceil(chunk / pim.vectors_per_mac) MAC passes per row;
        a one-vector buffer: one GEMV per token, the weights read as a decode step reads them).
        Attention is causal and token by token (token j's query over the j + 1 keys before and at it),
        as are embeddings, KV appends and ASIC work. The LM head is left out: prompt tokens need no
        logits (the first decode step after the prefill makes the first token's)."""
        if not 1 <= sequences <= self.batch:
            raise PimsimError(f"a prefill of {sequences} sequences on a memory laid out for {self.batch}")
        if not 1 <= prompt_len <= self.map.max_context:
            raise PimsimError(f"a prefill of {prompt_len} tokens; the caches hold 1 to {self.map.max_context}")
        chunk = self.hw.pim.buffer_vectors
        full, rest = divmod(prompt_len * sequences, chunk)
        chunks = [chunk] * full + ([rest] if rest else [])
        out: list[Step] = []
        shared: dict[int, dict] = {}
        ops = self.graph.ops
        for index in self._work_ops:
            op = ops[index]
            if op.part == "lm_head":
                continue
            if op.kind == "gemv":
                for n in chunks:
                    out += self._batched_gemv(index, op, n) if n > 1 else self._op_steps(index, op, 0, 1, {})
                continue
            for seq in range(sequences):
                for position in range(prompt_len):
                    out += self._sequence_op_steps(index, op, seq, position, shared)
        return out

    def _batched_gemv(self, index: int, op, vectors: int) -> list[Step]:
        """A GEMV's steps for `vectors` input vectors (the same at every position; at fast fidelity one
        layer's serve every layer of that shape)."""
        key = (self._shape_ids[index] if self.fidelity == "fast" else index, vectors)
        steps = self._batched_gemvs.get(key)
        if steps is None:
            steps = self._batched_gemvs[key] = self.steps(op, 0, 1, vectors=vectors)
        return steps

    def advance(self, steps: list[Step], start_ps: int, breakdown: dict) -> int:
        """Run steps one after another from `start_ps` on this model's DRAM timing, nothing else running
        (:func:`pimsim.engine.events.run_steps`); returns the end time and adds each step's time to
        `breakdown` and its work to the energy counters."""
        return run_steps(steps, start_ps, self.timing, breakdown, self.work)

    def steps(self, op, position: int, context: int, vectors: int = 1) -> list[Step]:
        """The steps of one op (see :mod:`pimsim.engine.lowering`). Cross-attention ops run over the
        source length instead of the context. A GEMV may take `vectors` input vectors at once (a verify
        step); other ops take one."""
        return self.lowerer.steps(op, position, context, vectors)

    def _ideal_ps(self, context: int, sequences: int = 1) -> float:
        """The step's weight bytes (once, however many sequences share them) and every sequence's KV
        bytes at the device's peak internal bandwidth."""
        if self._weights_ideal is None:
            ps_per_byte = 1e12 / peak_internal_Bps(self.compiled)
            self._ps_per_kv = self.map.kv_geometry.operand_bytes * ps_per_byte
            self._weights_ideal = self.map.gemv_bytes() * ps_per_byte
        return self._weights_ideal + sequences * (self.graph.kv_elements(context, self.source_len) * self._ps_per_kv)

    # ---- the run -------------------------------------------------------------------------------
    def run(self, timeline: bool = False, progress=None) -> DecodeResult:
        """The run: the token loop as a process on a system engine of its own (the ASIC, the links and the
        PIM channels of this model's memory)."""
        system = System()
        process = system.start(self.tokens(system, timeline, progress))
        system.run(process)
        return process.value

    def tokens(self, system: System, timeline: bool = False, progress=None):
        """A process body (``system.start(sim.tokens(system))``): the run's tokens one after another, each
        submitted to `system` on the channel group of this model's DRAM timing, from the system's present
        time (other models may share the system: their instructions and these contend). Returns the
        :class:`DecodeResult`. Serial without a timeline, a token is a list of steps (no instruction
        objects); else a :class:`Program` on the run's schedule."""
        if self._ran:  # the DRAM state, refresh clock and energy counts would carry over into a second run
            raise RuntimeError("a DecodeSimulation runs once; make a new one for another run")
        self._ran = True
        return self._token_loop(system, timeline, progress)

    def _token_loop(self, system: System, timeline: bool, progress):
        group = system.group(self.timing)
        serial = self.schedule == "serial"
        self.timing.track_channels = timeline
        per_token, breakdown = [], dict.fromkeys(PARTS, 0)
        events = []
        t = system.env.now
        ideal = 0.0
        for i in range(self.gen_tokens):
            position = self.prompt_len + i
            if serial and not timeline and self.batch == 1 and self.fidelity == "fast" and self.router is None \
                    and system.alone:
                # alone at fast fidelity, a token is one plan (the same figures as its steps, less Python)
                end = yield from system.submit(group, self._token_plan(position), breakdown, self.work)
            elif serial and not timeline:
                steps = self.token_steps(position) if self.batch == 1 else self.batch_steps([position] * self.batch)
                end = yield from system.submit(group, steps, breakdown, self.work)
            else:
                program = self.token_program(position)
                end = yield from system.submit(group, program, breakdown, self.work, serial)
                if timeline:
                    events.extend((ins.unit, ins.name, ins.part, ins.layer, ins.start, ins.end, ins.channel_ends)
                                  for ins in program if ins.end > ins.start)
            per_token.append(end - t)
            ideal += self._ideal_ps(position + 1, self.batch)
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
        if self.router is not None:
            counts["experts"] = self.router.report(range(self.prompt_len, self.prompt_len + self.gen_tokens))
        return DecodeResult(per_token, breakdown, counts, events, ideal, self.work,
                            tuple(float(b) for b in self.timing.busy_ps))

    def describe(self) -> dict:
        g = self.map.geometry
        out = {"rows_per_bank_used": self.map.rows_used, "rows_per_bank": g.rows,
               "memory_used_fraction": self.map.rows_used / g.rows,
               "kv_cache_tokens_reserved": self.map.max_context}
        if self.batch > 1:
            out.update({"sequences": self.batch, "kv_rows_per_bank_per_sequence": self.map.kv_rows_per_sequence(),
                        "sequences_that_fit": self.map.sequences_that_fit(), "fits": True})
        windows = self.graph.layer_windows()
        if windows:  # sliding-window layers keep a ring of min(window, context) tokens
            out.update({"kv_window_layers": len(windows),
                        "kv_window_tokens": max(self.map.ring_tokens(layer) for layer in windows)})
        if self.map.cross_kv:
            out.update({"cross_kv_tokens_reserved": self.source_len,
                        "cross_kv_rows_per_bank": self.map.cross_kv_rows()})
        return out


def _op_order(graph: OpGraph) -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """The ops with steps, in graph order, and for each the ops (with steps) whose results it reads; a
    join passes on the producers of its inputs."""
    work_ops, deps, made_by = [], {}, {}
    for index, op in enumerate(graph.ops):
        producers = tuple(sorted({i for v in op.inputs for i in made_by.get(v, ())}))
        if op.kind == "join":
            made_by[op.output] = producers
            continue
        work_ops.append(index)
        deps[index] = producers
        made_by[op.output] = (index,)
    return work_ops, deps


def _check_batch(hw: HardwareConfig, graph: OpGraph, batch: int) -> None:
    """What a batch of several sequences needs (everything a lone sequence does is unchanged)."""
    if not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        raise PimsimError(f"a batch is a whole number of sequences >= 1, not {batch!r}")
    problems = []
    if hw.pim.vectors_per_mac > 1 and hw.mapping.gemv == hbm_pim_gemv.STRATEGY:
        problems.append("the hbm_pim_gemv kernel has no multi-vector MAC (pim.vectors_per_mac > 1); use "
                        "mapping.gemv row_partition")
    if batch > 1:
        if graph.meta.encoder_decoder:
            problems.append(f"{graph.model}: batches of encoder-decoder models are not modelled (one source each)")
    if problems:
        raise PimsimError("; ".join(problems))


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
