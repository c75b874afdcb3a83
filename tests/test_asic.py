"""ASIC latency: closed forms from lanes, clock, the algorithms' step counts and the op's size."""

from __future__ import annotations

import pytest

from pimsim.asic.costs import KINDS, cycles_to_ps, link_ps, reduce_cycles, vector_cycles
from pimsim.config import load_hardware
from pimsim.errors import ConfigError


def asic(*overrides):
    return load_hardware("gddr6-aim.yaml", list(overrides)).asic


def test_elementwise_is_one_pass_per_lane_batch():
    a = asic("asic.lanes=64", "asic.pipeline_cycles=4")
    assert vector_cycles(a, "add", 640) == 10 + 4
    assert vector_cycles(a, "add", 641) == 11 + 4
    assert vector_cycles(a, "mul", 1) == 1 + 4
    assert vector_cycles(a, "add", 0) == 0


def test_special_functions_follow_their_iteration_counts():
    a = asic("asic.lanes=16", "asic.pipeline_cycles=0", "asic.exp_taylor_terms=6", "asic.gelu_taylor_terms=9",
             "asic.reciprocal_newton_iterations=3", "asic.rsqrt_newton_iterations=2")
    n = 160  # 10 lane batches
    assert vector_cycles(a, "exp", n) == (1 + 6) * 10
    assert vector_cycles(a, "gelu", n) == (9 + 2) * 10
    assert vector_cycles(a, "reciprocal", n) == (1 + 2 * 3) * 10
    assert vector_cycles(a, "rsqrt", n) == (1 + 4 * 2) * 10
    assert vector_cycles(a, "silu", n) == ((1 + 6) + (1 + 6) + 2) * 10
    more = asic("asic.lanes=16", "asic.pipeline_cycles=0", "asic.exp_taylor_terms=7")
    assert vector_cycles(more, "exp", n) - vector_cycles(a, "exp", n) == 10  # one more term, one more pass


def test_rowwise_operations():
    a = asic("asic.lanes=64", "asic.pipeline_cycles=0", "asic.exp_taylor_terms=8",
             "asic.reciprocal_newton_iterations=3", "asic.rsqrt_newton_iterations=2")
    # softmax of 25 heads x 1024 scores: two reductions (max, sum), subtract, exp, multiply, one 1/x per row
    sweep, rows, tree = 25 * 1024 // 64, 25, 6
    reduction = sweep + tree * 1
    assert vector_cycles(a, "softmax", 25 * 1024, rows) == 2 * reduction + (1 + 9 + 1) * sweep + 7 * 1
    # layernorm of one 1600-vector
    sweep = 25
    assert vector_cycles(a, "layernorm", 1600, 1) == 2 * (sweep + tree) + 4 * sweep + 9
    # 130 rows do not fit the lanes at once: the per-row steps take three rounds
    assert vector_cycles(a, "reduce", 130 * 4, 130) == 9 + tree * 3 + 3


def test_partial_sum_reduction_and_link():
    a = asic("asic.lanes=64", "asic.pipeline_cycles=4", "asic.link.width_bits=256", "asic.link.freq_MHz=1000",
             "asic.link.latency_ns=10")
    assert reduce_cycles(a, 128, bias=64) == 3 + 4
    assert reduce_cycles(a, 0) == 0
    assert link_ps(a, 3200) == 100 * 1000 + 10_000  # 3200 B = 100 beats of 32 B at 1 ns, plus 10 ns
    assert link_ps(a, 0) == 0
    assert cycles_to_ps(asic("asic.freq_MHz=100"), 7) == 70_000


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="no ASIC cost"):
        vector_cycles(asic(), "fft", 10)
    assert "softmax" in KINDS


def test_asic_section_is_validated():
    with pytest.raises(ConfigError) as err:
        load_hardware("gddr6-aim.yaml", ["asic.lanes=0", "asic.freq_MHz=-1", "asic.link.colour=1"])
    text = str(err.value)
    assert "asic.lanes" in text and "asic.freq_MHz" in text and "asic.link.colour" in text
    with pytest.raises(ConfigError, match="needs a pim section"):
        load_hardware("ddr4-2400.yaml", ["asic={freq_MHz: 1000}"])
