"""What the scheduler needs to know of the device: the cost of a step, and the KV memory.

:class:`StepCosts` is the protocol: the scheduler asks it what one decode step over a batch of
sequences (each with its context length) and one prefill of a prompt cost, and how much KV memory a
sequence takes, and never how those are worked out. :class:`ClosedFormCosts` answers with straight
lines (used by the tests, where every expected number can be written down);
:mod:`pimsim.serving.engine` answers with pimsim's simulation of the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from pimsim.errors import PimsimError
from pimsim.step_costs import StepCost  # time_s, energy_J (None: no energy section)


class StepCosts(Protocol):
    """The device as the scheduler sees it.

    ``kv_capacity`` and ``kv_need(tokens)`` share one unit of the implementation's choosing (tokens,
    DRAM rows per bank, ...): a sequence whose cache grows to `tokens` tokens reserves ``kv_need(tokens)``
    of the ``kv_capacity`` for its whole life."""

    max_batch: int  # the most sequences one decode step takes
    max_context: int  # the longest request taken: prompt + output - 1 tokens
    kv_capacity: int
    kv_unit: str  # what kv_capacity counts, for messages

    def kv_need(self, tokens: int) -> int: ...

    def decode_step(self, contexts: Sequence[int]) -> StepCost:
        """One decode step: one new token for each sequence; ``contexts[i]`` is sequence i's prompt length
        plus the tokens it has generated so far (how an implementation counts its cache from that is its
        own: pimsim's engine writes the step's token at that position)."""
        ...

    def prefill(self, prompt_len: int) -> StepCost:
        """From a prompt of `prompt_len` tokens to its first output token (its KV written)."""
        ...


@dataclass(frozen=True)
class ClosedFormCosts:
    """Costs as straight lines, in seconds and joules:

    decode step = step_s + per_sequence_s x batch + per_context_token_s x (sum of contexts);
    prefill = prefill_s + per_prompt_token_s x prompt_len; energy likewise with the *_J coefficients.
    KV memory is counted in tokens: a sequence needs as many as its cache grows to."""

    step_s: float
    per_sequence_s: float = 0.0
    per_context_token_s: float = 0.0
    prefill_s: float = 0.0
    per_prompt_token_s: float = 0.0
    step_J: float = 0.0
    per_sequence_J: float = 0.0
    per_context_token_J: float = 0.0
    prefill_J: float = 0.0
    per_prompt_token_J: float = 0.0
    kv_capacity: int = 1 << 62
    max_batch: int = 1 << 30
    max_context: int = 1 << 30
    kv_unit: str = "tokens"

    def __post_init__(self):
        bad = [name for name, value in vars(self).items() if name != "kv_unit" and not value >= 0]
        if self.step_s <= 0 and self.per_sequence_s <= 0:
            bad.append("step_s or per_sequence_s (a decode step must take time)")
        if bad:
            raise PimsimError(f"closed-form costs: {', '.join(bad)} must be >= 0")

    def kv_need(self, tokens: int) -> int:
        return tokens

    def decode_step(self, contexts: Sequence[int]) -> StepCost:
        n, total = len(contexts), sum(contexts)
        return StepCost(self.step_s + self.per_sequence_s * n + self.per_context_token_s * total,
                        self.step_J + self.per_sequence_J * n + self.per_context_token_J * total)

    def prefill(self, prompt_len: int) -> StepCost:
        return StepCost(self.prefill_s + self.per_prompt_token_s * prompt_len,
                        self.prefill_J + self.per_prompt_token_J * prompt_len)
