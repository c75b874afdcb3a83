"""Speculative decoding on the PIM system (issue 8): a draft model proposes tokens, the target verifies
them in one pass over k + 1 positions, and the accepted prefix plus the target's own next token is kept.

Each model is a :class:`DecodeSimulation`; a verify step is :meth:`DecodeSimulation.verify_steps`, in
which every GEMV multiplies all k + 1 input vectors at once (``mapping.verify``) and attention, KV writes
and ASIC work run per token over its own (causal) context. Rejected tokens' cache entries are
overwritten later. Placements of the draft:

- ``same``: its weights after the target's on the same channels (one DRAM state: they take turns);
- ``group``: its own ``draft_channels`` channels, the target on the others (two DRAM states);
- ``asic``: the ASIC computes it, reading its weights and KV cache over the pins at the memory's peak
  external bandwidth (a roofline: max of bytes over bandwidth and multiply-adds over the ASIC's lanes).

Policies:

- ``vanilla``: draft k tokens, then verify them; the next round starts from the last kept token;
- ``pearl`` (Liu et al. 2024, PEARL), on a channel group: in a *draft phase* the drafter makes k tokens
  while the target already verifies the first one (pre-verify: a rejection ends the phase early, one
  token kept); in a *verify phase* the target verifies the pending drafts while the drafter makes the
  next k (post-verify: if all are accepted, the target's own next token is checked against the first
  new draft and, if they agree, the other new drafts are the next verify phase's; otherwise they are
  dropped, the drafter stops once the rejection is known, and a draft phase follows). A phase ends when
  both models are done; how many drafts a target pass checks varies with the phases (k is the drafter's
  step count per phase, not a fixed verify width).

Both models are processes on the system engine (:mod:`pimsim.engine.system`): each runs its steps in
order on its own channel group's links and PIM channels and on the one ASIC they share, so under PEARL
a model's ASIC step waits while the other's holds the ASIC (contention modelled). A step that runs with
nothing beside it (vanilla's, or PEARL's once the other model is done) is timed in one piece.
"""

from __future__ import annotations

import math

from pimsim.config.models import HardwareConfig
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.energy import energy_of
from pimsim.engine.lowering import NO_WORK, Step
from pimsim.engine.system import System
from pimsim.errors import PimsimError
from pimsim.pim.formats import OPERAND_BITS
from pimsim.resources import find_smollm2
from pimsim.workloads.acceptance import RateAcceptance, TraceAcceptance, expected_tokens_per_step, measure_acceptance
from pimsim.workloads.cards import ModelCard, hardware_for, load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.specdec import SpecDec
from pimsim.workloads.tracer import traced_graph

LAYER_KEYS = ("num_hidden_layers", "n_layer", "decoder_layers")


def layer_skipped(card: ModelCard, layers: int) -> ModelCard:
    """The card's model with only its first `layers` layers (a self-speculative draft)."""
    config = dict(card.hf.config)
    key = next((k for k in LAYER_KEYS if k in config), "num_hidden_layers")
    if key in config and not 1 <= layers < config[key]:
        raise PimsimError(f"a layer-skipped draft of {card.name} keeps 1 .. {config[key] - 1} of its {config[key]} "
                          f"layers, not {layers}")
    config[key] = layers
    return card.model_copy(update={"name": f"{card.name}-first{layers}", "description": f"{card.name}, first {layers} "
                                   "layers", "hf": card.hf.model_copy(update={"config": config})})


def split_channels(hw: HardwareConfig, draft_channels: int) -> tuple[HardwareConfig, HardwareConfig]:
    """The target's and the draft's share of the memory: the last `draft_channels` channels for the draft."""
    org = hw.dram.organization
    if not 1 <= draft_channels < org.channels:
        raise PimsimError(f"the draft's channel group must leave the target at least one of the {org.channels} "
                          f"channels, got draft_channels={draft_channels}")

    def part(channels: int, role: str) -> HardwareConfig:
        dram = hw.dram.model_copy(update={"organization": org.model_copy(update={"channels": channels})})
        return hw.model_copy(update={"dram": dram, "name": f"{hw.name}[{role}: {channels} ch]"})

    return part(org.channels - draft_channels, "target"), part(draft_channels, "draft")


class SpecDecRun:
    def __init__(self, hw: HardwareConfig, spec: SpecDec, prompt_len: int | None, gen_tokens: int | None,
                 fidelity: str = "fast", weight_format: str | None = None, use_cache: bool = True):
        """``use_cache`` False: both models traced afresh, the traced-graph cache left alone."""
        self.spec, self.fidelity = spec, fidelity
        self.target_card = load_card(spec.target)
        # the target's weight format (the flag, else its card's): the hardware both models see
        self.hw = hw = hardware_for(hw, self.target_card, weight_format)
        self.prompt_len = self.target_card.defaults.prompt_len if prompt_len is None else prompt_len
        self.gen_tokens = self.target_card.defaults.gen_tokens if gen_tokens is None else gen_tokens
        if self.target_card.defaults.source_len is not None:
            raise PimsimError(f"{spec.target}: speculative decoding covers decoder-only targets so far")
        self.measured = None
        if spec.acceptance.measure is not None:
            self.draft_card = layer_skipped(self.target_card, spec.acceptance.measure.draft_layers)
        else:
            self.draft_card = load_card(spec.draft)
        draft_q = self.draft_card.quantization
        if draft_q is not None and hw.pim is not None and draft_q.weight_format != hw.pim.weight_format:
            raise PimsimError(f"the draft {self.draft_card.name} is {draft_q.weight_format} but the target runs in "
                              f"{hw.pim.weight_format}; both models' block weights take the run's weight format")
        self.acceptance = self._acceptance()
        k, reserve = spec.k, self.gen_tokens + spec.k  # a verify step writes up to k tokens past the end
        target_graph, draft_graph = traced_graph(self.target_card, use_cache), traced_graph(self.draft_card, use_cache)
        for card, graph in ((self.target_card, target_graph), (self.draft_card, draft_graph)):
            if self.prompt_len + reserve > graph.meta.context:
                raise PimsimError(f"{card.name}: a prompt of {self.prompt_len}, {self.gen_tokens} tokens and {k} "
                                  f"drafts beyond them need {self.prompt_len + reserve} positions, more than its "
                                  f"context of {graph.meta.context}")
        if target_graph.meta.vocab != draft_graph.meta.vocab:
            self.notes = [f"the draft's vocabulary ({draft_graph.meta.vocab}) differs from the target's "
                          f"({target_graph.meta.vocab}); timing is simulated as given"]
        else:
            self.notes = []
        hw_target = hw_draft = hw
        if spec.placement == "group":
            hw_target, hw_draft = split_channels(hw, spec.draft_channels)
        self.target = DecodeSimulation(hw_target, target_graph, self.prompt_len, reserve, "serial", fidelity)
        share = self.target if spec.placement in ("same", "asic") else None
        # an ASIC-computed draft still keeps its weights and KV cache in the memory: placed (fit checked)
        # after the target's, though its steps are a roofline
        draft_sim = DecodeSimulation(hw_draft, draft_graph, self.prompt_len, reserve, "serial", fidelity, share=share)
        self.draft = draft_sim if spec.placement != "asic" else None
        # the system engine: one shared ASIC; a channel group per DRAM state (one for placement same)
        self.system = System()
        self.groups = {"target": self.system.group(self.target.timing), "draft": self.system.group(draft_sim.timing)}
        self.draft_graph = draft_graph
        self.breakdown = {"target": dict.fromkeys(PARTS, 0), "draft": dict.fromkeys(PARTS, 0)}
        self.asic_draft = {"ps": 0, "reads": 0, "macs": 0}

    def _acceptance(self):
        a, k = self.spec.acceptance, self.spec.k
        if a.alpha is not None:
            return RateAcceptance(a.alpha, a.seed)
        if a.trace is not None:
            trace = TraceAcceptance.from_file(a.trace)
            trace.check(k)
            return trace
        weights = a.measure.weights or find_smollm2()
        self.measured = measure_acceptance(weights, k, a.measure.draft_layers, a.measure.tokens, a.measure.prompt,
                                           target=self.target_card)
        return TraceAcceptance(self.measured["accepted"], f"measured ({self.measured['weights']})")

    # ---- one model's steps, as processes on the system engine ----------------------------------
    def _draft_process(self, position: int):
        """One draft step (a decode step of the draft at `position`): its steps on the draft's channel
        group and the shared ASIC; an ASIC-computed draft holds the ASIC for its roofline time."""
        if self.draft is not None:
            return (yield from self.system.submit(self.groups["draft"], self.draft.verify_steps(position, 1),
                                                  self.breakdown["draft"], self.draft.work))
        ps, reads, macs = self._asic_step(position + 1)
        self.asic_draft["ps"] += ps
        self.asic_draft["reads"] += reads
        self.asic_draft["macs"] += macs
        return (yield from self.system.submit(self.groups["target"], [Step("asic", "asic", ps, None, NO_WORK)],
                                              self.breakdown["draft"], self.target.work))

    def _drafter(self, first_position: int, k: int, stop):
        """Up to k draft steps from `first_position`, one after another; before each, the drafter stops
        if `stop()` says its drafts are no longer wanted (a rejection it knows of). Returns how many it
        made and when its last one ended. It looks after the events already due at this time, so a
        verify pass ending exactly now is known, as it was in the sequential model before."""
        env = self.system.env
        made = 0
        for i in range(k):
            yield env.timeout(0)
            if stop():
                break
            yield from self._draft_process(first_position + i)
            made += 1
        return made, env.now

    def _verify_process(self, position: int, tokens: int):
        return (yield from self.system.submit(self.groups["target"], self.target.verify_steps(position, tokens),
                                              self.breakdown["target"], self.target.work))

    def _draft_step(self, position: int, t: int) -> int:
        """A draft step alone (nothing else running), from `t` (the system's present time)."""
        assert t == self.system.env.now, "pimsim bug: a step submitted in the system's past"
        return self.system.run(self.system.start(self._draft_process(position)))

    def _verify(self, position: int, tokens: int, t: int) -> int:
        """A verify pass alone (nothing else running), from `t` (the system's present time)."""
        assert t == self.system.env.now, "pimsim bug: a step submitted in the system's past"
        return self.system.run(self.system.start(self._verify_process(position, tokens)))

    def _asic_step(self, context: int) -> tuple[int, int, int]:
        """The draft's decode step on the ASIC: its weights and KV cache read over the pins (in the KV
        format) at the memory's peak bandwidth, or its multiply-adds on the ASIC's lanes, whichever is
        longer (a roofline, not a command-level simulation: the draft's vector ops, KV writes and buffer
        traffic are left out, and the memory counts as precharged standby meanwhile)."""
        g, hw = self.draft_graph, self.hw
        elements = g.gemv_elements() + g.kv_elements(context)
        nbytes = elements * OPERAND_BITS[hw.pim.cache_format] // 8
        memory_s = nbytes / hw.dram.peak_bandwidth_Bps
        compute_s = elements / (hw.asic.lanes * hw.asic.freq_MHz * 1e6)
        reads = -(-nbytes // hw.dram.organization.access_bytes)
        return round(max(memory_s, compute_s) * 1e12), reads, elements

    # ---- policies -----------------------------------------------------------------------------
    def run(self, autoregressive: dict) -> dict:
        """The run's record; `autoregressive` is the record of the target decoding the same tokens on its
        own (``pimsim.runs.run_specdec`` makes it), which the speed-up and energy ratio are over."""
        steps = self._vanilla() if self.spec.policy == "vanilla" else self._pearl()
        return self._result(steps, autoregressive)

    def _vanilla(self) -> list[dict]:
        """Draft k, verify k + 1 positions, keep the accepted prefix and the target's token. After a
        round that accepted every draft, the drafter first takes in its own last draft (a step at the
        position before the target's token), which it has not processed yet."""
        p, made, t, rounds = self.prompt_len, 0, 0, []
        behind = False
        while made < self.gen_tokens:
            k = min(self.spec.k, self.gen_tokens - made - 1)  # no drafts past the last token wanted
            start = t
            if behind and k:
                t = self._draft_step(p - 1, t)
            for i in range(k):
                t = self._draft_step(p + i, t)
            drafted = t
            t = self._verify(p, k + 1, t)
            accepted = self.acceptance.accepted(k)
            behind = k > 0 and accepted == k
            kept = min(accepted + 1, self.gen_tokens - made)
            rounds.append({"drafts": k, "accepted": accepted, "kept": kept, "start_ps": start, "target_passes": 1,
                           "draft_ps": drafted - start, "verify_ps": t - drafted})
            p, made = p + kept, made + kept
        self.total_ps = t
        return rounds

    def _pearl(self) -> list[dict]:
        """Draft and verify phases on two channel groups at once (see the module docstring)."""
        k = self.spec.k
        if k < 1:
            raise PimsimError("pearl needs k >= 1")
        p, made, t, rounds = self.prompt_len, 0, 0, []
        pending = 0  # drafts made during the last verify phase, all still valid
        while made < self.gen_tokens:
            start = t
            if pending == 0:  # draft phase: k drafts, the first pre-verified by one target step
                verify = self.system.start(self._verify_process(p, 1))
                first_ok = self.acceptance.accepted(1) == 1
                # a rejection known: the drafter starts again from the target's token
                drafter = self.system.start(self._drafter(p, k, lambda: not first_ok and verify.triggered))
                t = self.system.run(verify, drafter)
                verify_end, (drafts, d) = verify.value, drafter.value
                if not first_ok:
                    kept, pending = 1, 0
                else:
                    kept, pending = 1, drafts - 1  # the first draft is kept; the rest wait for a verify phase
                rounds.append({"phase": "draft", "drafts": drafts, "accepted": int(first_ok), "kept": kept,
                               "start_ps": start, "target_passes": 1, "draft_ps": d - start,
                               "verify_ps": verify_end - start})
            else:  # verify phase: the target checks the pending drafts while the drafter makes k more
                n = min(pending, self.gen_tokens - made)
                verify = self.system.start(self._verify_process(p, n + 1))
                accepted = self.acceptance.accepted(n)
                if accepted == n:
                    # the target's own next token (its n + 1-th output) is checked against the drafter's
                    # first new draft: kept either way; if they agree, the other new drafts stand
                    agrees = self.acceptance.accepted(1) == 1
                    kept, pending = n + 1, (k - 1 if agrees else 0)
                else:
                    kept, pending = accepted + 1, 0
                # a rejection known: the drafter's further drafts are wasted, it stops
                drafter = self.system.start(self._drafter(p + n, k, lambda: pending == 0 and verify.triggered))
                t = self.system.run(verify, drafter)
                verify_end, (_, d) = verify.value, drafter.value
                rounds.append({"phase": "verify", "drafts": n, "accepted": accepted, "kept": kept, "start_ps": start,
                               "target_passes": 1, "draft_ps": d - start, "verify_ps": verify_end - start})
            kept = min(kept, self.gen_tokens - made)
            rounds[-1]["kept"] = kept
            p, made = p + kept, made + kept
        self.total_ps = t
        return rounds

    # ---- the result ---------------------------------------------------------------------------
    def _result(self, rounds: list[dict], baseline: dict) -> dict:
        spec, tokens = self.spec, self.gen_tokens
        total_s = self.total_ps * 1e-12
        passes = sum(r["target_passes"] for r in rounds)  # every target pass, PEARL's pre-verify steps included
        from pimsim import __version__
        from pimsim.engine.decode import config_hash

        trace_text = ""
        if spec.acceptance.trace is not None:
            from pathlib import Path

            trace_text = Path(spec.acceptance.trace).read_text()
        out = {
            "spec_dec": spec.model_dump(mode="json"),
            "weight_format": self.hw.pim.weight_format if self.hw.pim else None,
            "model_cards": {"target": self.target_card.model_dump(mode="json"),
                            "draft": self.draft_card.model_dump(mode="json")},
            "config_hash": config_hash(self.hw.model_dump(mode="json"), spec.model_dump(mode="json"),
                                       self.target.graph.identity_json(), self.draft_graph.identity_json(), trace_text,
                                       self.measured, self.prompt_len, tokens, self.fidelity, __version__),
            "target": self.target_card.name, "draft": self.draft_card.name, "hw": self.hw.name,
            "prompt_len": self.prompt_len, "tokens": tokens, "fidelity": self.fidelity,
            "rounds": len(rounds), "target_passes": passes,
            "drafts": [r["drafts"] for r in rounds], "accepted": [r["accepted"] for r in rounds],
            "kept": [r["kept"] for r in rounds],
            "tokens_per_verify_step": tokens / passes,
            "latency_per_token_s": total_s / tokens, "tokens_per_s": tokens / total_s, "total_time_s": total_s,
            "time_s": {"draft": sum(self.breakdown["draft"].values()) * 1e-12,
                       "verify": sum(self.breakdown["target"].values()) * 1e-12},
            "autoregressive": {"latency_per_token_s": baseline["latency_per_token_s"],
                               "energy_per_token_J": baseline.get("energy_per_token_J"),
                               "config_hash": baseline["config_hash"]},
            "speedup_over_autoregressive": baseline["latency_per_token_s"] / (total_s / tokens),
            "acceptance": self.acceptance.describe(),
            "notes": self.notes + [
                "a verify step multiplies the k + 1 tokens' vectors in each GEMV at once (mapping.verify: "
                f"{self.hw.mapping.verify}, pim.buffer_vectors = {self.hw.pim.buffer_vectors}); attention, KV "
                "writes and ASIC work run per token", "the serial schedule within each model"],
        }
        if spec.acceptance.alpha is not None and spec.policy == "vanilla":
            out["expected_tokens_per_verify_step"] = expected_tokens_per_step(spec.acceptance.alpha, spec.k)
        if self.measured is not None:
            out["measured_acceptance"] = self.measured
        if spec.placement == "asic":
            out["asic_draft"] = {**self.asic_draft, "method": "roofline: the draft's weights and KV cache over the "
                                 "pins at peak bandwidth, or its multiply-adds on the ASIC lanes"}
        if self.hw.energy is not None:
            out.update(self._energy(total_s, tokens, baseline))
        return out

    def _energy(self, total_s: float, tokens: int, baseline: dict) -> dict:
        def of(sim: DecodeSimulation, work, leakage: bool = True) -> dict:
            e = energy_of(sim, sim.timing.counts(), total_s, sim.timing.busy_ps, work)
            if not leakage:  # one ASIC serves both models: its static power once
                e["total_J"] -= e["breakdown_J"]["asic_leakage"]
                e["breakdown_J"]["asic_leakage"] = 0.0
            return e

        if self.spec.placement == "same":  # one DRAM state holds both models' counts; add the draft's work
            both = self.target.work.plus(self.draft.work)
            parts = {"target and draft (one memory)": of(self.target, both)}
        elif self.spec.placement == "group":
            parts = {"target": of(self.target, self.target.work), "draft": of(self.draft, self.draft.work, False)}
        else:
            parts = {"target": of(self.target, self.target.work), "draft": self._asic_draft_energy()}
        total = sum(p["total_J"] for p in parts.values())
        out = {"energy_per_token_J": total / tokens, "energy_total_J": total,
               "energy_by_model_J": {k: v["total_J"] for k, v in parts.items()}}
        if baseline.get("energy_per_token_J"):
            out["energy_ratio_over_autoregressive"] = (total / tokens) / baseline["energy_per_token_J"]
        return out

    def _asic_draft_energy(self) -> dict:
        """The ASIC draft's reads (RD commands, streaming whole rows) and multiply-adds, at the config's costs."""
        from pimsim.energy.model import Actions, energy_J

        org = self.hw.dram.organization
        reads = self.asic_draft["reads"]
        rows = math.ceil(reads / org.accesses_per_row)
        commands = {"RD": reads, "ACT": rows, "PRE": rows}
        actions = Actions(commands=commands, total_s=0.0, busy_s=[0.0] * org.channels,
                          pin_bytes=reads * org.access_bytes, link_bytes=reads * org.access_bytes,
                          lane_ops=self.asic_draft["macs"], sram_bytes=0)
        return energy_J(self.target.compiled, actions)  # the ASIC placement's target has the whole memory
