"""What one decode step (or prefill) of a batch costs, for schedulers that compose many of them.

    from pimsim.step_costs import StepCosts
    costs = StepCosts("gddr6-aim", "gpt2", max_batch=8, max_context=1024)
    costs.decode_step([17, 300, 5])      # StepCost(time_s=..., energy_J=...): three sequences, one step
    costs.prefill(128)                   # one sequence's 128-token prompt through every layer

A serving simulation runs many thousands of steps whose batches and context lengths all differ, so
a step is not simulated whole: it is composed of pieces, each simulated once (fast fidelity, serial
schedule) and cached,

    step(contexts) = GEMVs of len(contexts) vectors + sum over sequences of per_sequence(context)

where the GEMVs piece is every weight GEMV multiplying the batch's vectors at once (what the weights
cost, shared by the batch) and per_sequence(c) is one sequence's embedding, KV appends, attention over
c + 1 cached tokens and ASIC work. On the serial schedule a step's time is the sum of its steps'
times, so the composition is what :meth:`DecodeSimulation.batch_steps` gives up to the fast
fidelity's refresh bookkeeping (each piece is timed as if the memory had just finished the piece
before and pays the expected refresh cost, where a whole run follows the refresh clock; refresh
energy is charged at its average rate, one REF per rank every nREFI). A test holds
the two together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from pimsim.config.loader import load_hardware
from pimsim.config.models import HardwareConfig
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.dram_timing import FastTiming
from pimsim.engine.lowering import Step
from pimsim.engine.prefill import ON_ASIC, ON_PIM, asic_roofline, device_roofline, kv_write_steps
from pimsim.errors import PimsimError
from pimsim.workloads.cards import ModelCard, load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.tracer import traced_graph


@dataclass(frozen=True)
class StepCost:
    """Time and energy of a piece of work (None: the hardware has no energy section)."""

    time_s: float
    energy_J: float | None

    def __add__(self, other: StepCost) -> StepCost:
        energy = None if self.energy_J is None or other.energy_J is None else self.energy_J + other.energy_J
        return StepCost(self.time_s + other.time_s, energy)


class StepCosts:
    """Costs of decode steps of one model on one hardware description, for batches of up to
    `max_batch` sequences of up to `max_context` tokens each (their KV caches reserved side by side:
    a batch that does not fit the memory is refused here, naming how many sequences fit).

    `hw` and `model` are names or paths (or loaded objects); `overrides` are ``--set`` texts;
    `weight_format` as ``pimsim run --weight-format``. Fast fidelity, serial schedule."""

    def __init__(self, hw: HardwareConfig | str, model: ModelCard | str, *, max_batch: int, max_context: int,
                 weight_format: str | None = None, overrides: list[str] | None = None, use_cache: bool = True):
        from pimsim.workloads.cards import hardware_for

        hw = load_hardware(hw, overrides or []) if isinstance(hw, str) else hw
        card = load_card(model) if isinstance(model, str) else model
        self.hw = hardware_for(hw, card, weight_format)
        self.card = card
        graph = traced_graph(card, use_cache)  # use_cache False: traced afresh, the graph cache left alone
        if graph.meta.encoder_decoder:
            raise PimsimError(f"{card.name}: step costs of encoder-decoder models are not modelled")
        if not (isinstance(max_context, int) and max_context >= 1):
            raise PimsimError(f"max_context is a whole number of tokens >= 1, not {max_context!r}")
        self.max_batch, self.max_context = max_batch, max_context
        self.sim = DecodeSimulation(self.hw, graph, 0, max_context, "serial", "fast", batch=max_batch)
        # each piece is timed once and reused at other times: it pays the expected refresh cost, not
        # the refreshes that happened to land while it was timed
        self.sim.timing = FastTiming(self.sim.compiled, follow_clock=False)
        self._gemvs: dict[int, StepCost] = {}
        self._sequence: dict[int, StepCost] = {}
        self._prefills: dict[tuple[int, int], StepCost] = {}
        org = self.hw.dram.organization
        timing = self.sim.compiled.timing
        # refresh at its average rate: every rank of every channel once per nREFI
        self._refreshes_per_s = org.channels * org.ranks / (timing["nREFI"] * self.hw.dram.tCK_s)
        self._refresh = self.sim.compiled.standard.refresh

    def decode_step(self, contexts: Sequence[int]) -> StepCost:
        """One decode step of ``len(contexts)`` sequences in lock step; ``contexts[s]`` is how many
        tokens sequence s has in its KV cache before the step (its new token is written at that
        position). Time and energy of the whole step (all sequences)."""
        n = len(contexts)
        if not 1 <= n <= self.max_batch:
            raise PimsimError(f"a step of {n} sequences; these costs are for 1 to {self.max_batch}")
        bad = [c for c in contexts if not (isinstance(c, int) and 0 <= c < self.max_context)]
        if bad:
            raise PimsimError(f"context lengths must be whole numbers from 0 to {self.max_context - 1} (the last "
                              f"position reserved), not {bad[:5]}")
        total = self.gemvs(n)
        for c in contexts:
            total = total + self.per_sequence(c)
        return total

    def prefill(self, prompt_len: int, sequences: int = 1, on: str = "pim") -> StepCost:
        """The prefill of `sequences` prompts of `prompt_len` tokens each (cached per shape): every layer
        over the prompt, KV written at positions 0 .. prompt_len - 1; the first token's decode step is
        not in it. `on`: ``pim`` (:meth:`DecodeSimulation.prefill_steps`, simulated), ``asic`` or a host
        device spec (their roofline, then the KV writes simulated; see :mod:`pimsim.engine.prefill`)."""
        if not (isinstance(prompt_len, int) and 1 <= prompt_len <= self.max_context):
            raise PimsimError(f"a prefill of 1 to {self.max_context} tokens, not {prompt_len!r}")
        if not (isinstance(sequences, int) and 1 <= sequences <= self.max_batch):
            raise PimsimError(f"a prefill of 1 to {self.max_batch} sequences, not {sequences!r}")
        key = (prompt_len, sequences, on)
        got = self._prefills.get(key)
        if got is None:
            if on == ON_PIM:
                got = self._measure(self.sim.prefill_steps(prompt_len, sequences))
            else:
                got = self._measure(kv_write_steps(self.sim, prompt_len, sequences))
                got = got + self._roofline(prompt_len, sequences, on)
            self._prefills[key] = got
        return got

    def _roofline(self, prompt_len: int, sequences: int, on: str) -> StepCost:
        """An ASIC or host prefill's roofline part (time, and energy as :func:`pimsim.runs.run_model`
        charges it)."""
        from pimsim.engine.energy import asic_roofline_energy

        sim = self.sim
        r = (asic_roofline(sim, prompt_len, sequences) if on == ON_ASIC
             else device_roofline(sim, prompt_len, sequences, on))
        if self.hw.energy is None:
            return StepCost(r["time_s"], None)
        return StepCost(r["time_s"], asic_roofline_energy(sim, r)["total_J"] if on == ON_ASIC else r["energy_J"])

    def gemvs(self, vectors: int) -> StepCost:
        """Every weight GEMV of one step multiplying `vectors` input vectors (cached per count)."""
        got = self._gemvs.get(vectors)
        if got is None:
            sim = self.sim
            steps = [s for i in sim._work_ops if sim.graph.ops[i].kind == "gemv"
                     for s in (sim._batched_gemv(i, sim.graph.ops[i], vectors) if vectors > 1
                               else sim._op_steps(i, sim.graph.ops[i], 0, 1, {}))]
            got = self._gemvs[vectors] = self._measure(steps)
        return got

    def per_sequence(self, context: int) -> StepCost:
        """One sequence's share of a step that is not its weights' GEMVs: embedding, KV appends,
        attention over ``context + 1`` tokens, ASIC work (cached per context)."""
        got = self._sequence.get(context)
        if got is None:
            sim = self.sim
            shared: dict = {}
            steps = [s for i in sim._work_ops if sim.graph.ops[i].kind != "gemv"
                     for s in sim._op_steps(i, sim.graph.ops[i], context, context + 1, shared)]
            got = self._sequence[context] = self._measure(steps)
        return got

    def _measure(self, steps: list[Step]) -> StepCost:
        """Run `steps` one after another from the moment the memory went idle; their time, and their
        energy from what the timing counted meanwhile."""
        sim = self.sim
        timing = sim.timing
        before = timing.counts() if self.hw.energy is not None else None
        busy_before = timing.busy_ps.copy()
        work_before = replace(sim.work)
        start = math.ceil(timing.free * self.hw.dram.tCK_ps)
        end = sim.advance(steps, start, dict.fromkeys(PARTS, 0))
        time_s = (end - start) * 1e-12
        if before is None:
            return StepCost(time_s, None)
        from pimsim.engine.energy import energy_of

        after = timing.counts()
        commands = {k: n - before["commands"].get(k, 0) for k, n in after["commands"].items()}
        commands[self._refresh] = time_s * self._refreshes_per_s
        commands = {k: n for k, n in commands.items() if n}
        macs = {k: n - before["macs_by_format"].get(k, 0) for k, n in after["macs_by_format"].items()}
        counts = {"commands": commands, "macs_by_format": macs}
        e = energy_of(sim, counts, time_s, timing.busy_ps - busy_before, sim.work.minus(work_before))
        return StepCost(time_s, e["total_J"])
