"""int4 with group-wise scales (int4-g128) and FP8 E4M3 (fp8-e4m3): encodings, bytes, the scale reads of
the GEMV program, functional results against numpy / PyTorch, errors on bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import TINY_GPT2, write_card

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.cosim.numerics import GroupQuantGemv, PimGemv
from pimsim.cosim.run import cosimulate
from pimsim.dram.compile import compile_standard
from pimsim.errors import PimsimError
from pimsim.kernels import gemv
from pimsim.mapper.model import ModelMap
from pimsim.mapper.placement import Geometry
from pimsim.pim.formats import (
    WEIGHT_BITS,
    fp8_e4m3_bits,
    fp8_e4m3_values,
    row_elements,
    stored_bytes,
    to_fp8_e4m3,
    to_operands,
)
from pimsim.workloads.cards import load_card
from pimsim.workloads.quantize import GroupQuantizedWeight, quantize_int4_groupwise
from pimsim.workloads.tracer import traced_graph

U32 = 2.0 ** -24  # unit roundoff of FP32


def _aim(*sets):
    return load_hardware("gddr6-aim.yaml", list(sets))


def _hbm(*sets):
    return load_hardware("hbm-pim.yaml", ["mapping.gemv=row_partition", *sets])


# ---- FP8 E4M3 -----------------------------------------------------------------------------------

def test_fp8_rounding_equals_torchs_float8_e4m3fn_cast():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-5, 4, 100_000)).astype(np.float32)
    special = np.array([448, 464, 465, 500, -1e6, np.inf, -np.inf, np.nan, 0.0, -0.0, 2 ** -10, 2 ** -9,
                        1.5 * 2 ** -9, 2.5 * 2 ** -9, 2 ** -6, 17.0, 18.0, 19.0], np.float32)
    x = np.concatenate([x, special])
    want = torch.from_numpy(x).to(torch.float8_e4m3fn).float().numpy()
    assert np.array_equal(to_fp8_e4m3(x), want, equal_nan=True)
    assert to_fp8_e4m3([500.0])[0] == 448.0 and to_fp8_e4m3([17.0])[0] == 16.0  # saturates; ties to even


def test_fp8_encodings_round_trip_all_256_codes_as_torch_reads_them():
    codes = np.arange(256, dtype=np.uint8)
    values = fp8_e4m3_values(codes)
    assert np.array_equal(values, torch.from_numpy(codes).view(torch.float8_e4m3fn).float().numpy(), equal_nan=True)
    finite = ~np.isnan(values)
    assert np.isnan(values[[0x7F, 0xFF]]).all() and finite.sum() == 254
    assert np.array_equal(fp8_e4m3_bits(values[finite]), codes[finite])
    with pytest.raises(ValueError, match="representable in E4M3"):
        fp8_e4m3_bits([0.3])


def test_fp8_weights_through_the_bank_model_equal_the_whole_matrix_numerics_and_numpy():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((150, 900)).astype(np.float32)
    x = rng.standard_normal(900).astype(np.float32)
    for hw in (_aim().with_weight_format("fp8-e4m3"), load_hardware("hbm-pim.yaml").with_weight_format("fp8-e4m3")):
        got = gemv(hw, W=W, x=x).y
        assert np.array_equal(np.asarray(got, np.float32), PimGemv(hw, W)(x))  # bit for bit
        w8 = to_fp8_e4m3(W).astype(np.float64)
        xq = to_operands(x, hw.pim.input_format).astype(np.float64)
        err = np.abs(got - w8 @ xq) / (np.abs(w8) @ np.abs(xq))
        # FP32 tree + accumulators (AiM): a few roundings per term; FP16 lanes (HBM-PIM): FP16's 2^-11 per add
        bound = 64 * U32 if hw.pim.accumulator_format == "fp32" else (900 // 32 + 2) * 2.0 ** -11
        assert err.max() < bound


# ---- int4-g128: bytes and layout ----------------------------------------------------------------

def test_int4_g128_bytes_per_weight_are_half_a_byte_plus_a_scale_per_128():
    assert WEIGHT_BITS["int4-g128"] / 8 == Fraction(1, 2) + Fraction(2, 128)
    assert stored_bytes("int4-g128", 1, 128) == 66
    assert stored_bytes("int4-g128", 3, 300) == 3 * (150 + 3 * 2)  # a last, partial group has its scale too
    assert stored_bytes("fp8-e4m3", 7, 9) == 63
    q = quantize_int4_groupwise(np.random.default_rng(1).standard_normal((3, 301)))
    assert q.nbytes() == stored_bytes("int4-g128", 3, 301) == 3 * (151 + 3 * 2)
    assert np.array_equal(GroupQuantizedWeight.unpack(q.packed(), 301), q.codes)
    # row-tail scales: 31 groups (62 code + 2 scale accesses) in a 2 KB row, 15 (30 + 1, one spare) in 1 KB
    assert row_elements(2048, 32, "int4-g128") == 31 * 128 and row_elements(1024, 32, "int4-g128") == 15 * 128
    g = Geometry.of(_aim().with_weight_format("int4-g128"))
    assert (g.elems_per_access, g.row_elems, g.writes_per_mac, g.gb_chunks, g.operand_bytes, g.group_accesses) == \
        (64, 3968, 4, 16, 0.515625, 2)
    assert Geometry.of(_hbm().with_weight_format("int4-g128")).row_elems == 1920
    assert Geometry.of(_aim().with_weight_format("fp8-e4m3")).operand_bytes == 1.0


def test_int4_gemv_program_reads_every_code_access_and_its_groups_scales():
    """1024 x 4096 on AiM: 8 waves of 128 rows; segment 0 holds 62 code accesses (4 buffer blocks of
    16, 16, 16, 14, each reading one scale access), segment 1 the last 2 (one group, one scale access)."""
    hw = _aim("dram.refresh.enabled=false").with_weight_format("int4-g128")
    s = gemv(hw, 1024, 4096).stats
    assert s["commands"]["MACAB"] == 8 * 8 * ((62 + 4) + (2 + 1))
    assert s["commands"]["WRGB"] == 8 * 4096 * 2 // 32  # every BF16 activation written once per channel
    assert s["placement"]["segments"] == 2


def test_a_models_counted_weight_bytes_are_exact_in_int4_g128():
    hw = _aim().with_weight_format("int4-g128")
    graph = traced_graph(load_card("gpt2"))
    m = ModelMap(hw, compile_standard(hw), graph, 16)
    blocks = [op for op in graph.ops if op.kind == "gemv" and m.tensor_geometry(op.tensor).fmt == "int4-g128"]
    dense = [op for op in graph.ops if op.kind == "gemv" and op not in blocks]
    assert len(blocks) == 12 * 4 and dense  # q/k/v (fused), out, fc, proj per layer; the LM head stays bf16
    want = sum(op.rows * (op.cols // 2 + -(-op.cols // 128) * 2) for op in blocks) + \
        sum(op.rows * op.cols * 2 for op in dense)
    assert m.gemv_bytes() == want


# ---- int4-g128: functional ----------------------------------------------------------------------

@pytest.mark.parametrize("make", [_aim, _hbm])
@pytest.mark.parametrize("m, n", [(70, 1000), (300, 4096), (5, 100)])
def test_int4_gemv_is_within_its_rounding_bound_of_numpy_on_the_dequantized_weights(make, m, n):
    hw = make().with_weight_format("int4-g128")
    rng = np.random.default_rng(m + n)
    W, x = rng.standard_normal((m, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    pim = GroupQuantGemv(hw, W)
    w = pim.weight.dequantize().astype(np.float64)
    xq = to_operands(x, hw.pim.input_format).astype(np.float64)
    err = np.abs(pim(x) - w @ xq)
    # each term passes at most 6 tree levels, its group's adds, one scaling and its block's and the ASIC's
    # sequential adds: fewer FP32 roundings than accesses + 16
    depth = n // 64 + 16
    assert (err <= depth * U32 * (np.abs(w) @ np.abs(xq))).all()
    # round to nearest on the grid: half a step, plus 7.5 x the FP16 rounding of the step (2^-11) at the clip
    assert (np.abs(w - W) <= pim.weight.scale_per_weight() * (0.5 + 8 * 2.0 ** -11)).all()


@pytest.mark.parametrize("make", [_aim, _hbm])
def test_int4_gemv_is_exact_where_every_sum_is_an_integer_below_2_to_24(make):
    """Power-of-two scales (weights that are codes times 2^k) and integer activations: every product,
    sum and scaling is exact in FP32, so the device equals numpy bit for bit."""
    hw = make().with_weight_format("int4-g128")
    rng = np.random.default_rng(2)
    codes = rng.integers(-8, 8, (200, 1500))
    codes[:, ::128] = -8  # each group's extreme sets its scale to 2 max|w| / 15 ...
    W = (codes * (15 / 16)).astype(np.float32)  # ... = 1 with |w| <= 7.5 (codes times 15/16 round back)
    x = rng.integers(-20, 21, 1500).astype(np.float32)
    pim = GroupQuantGemv(hw, W)
    assert (pim.weight.scale == 1).all() and np.array_equal(pim.weight.codes, np.clip(np.rint(W), -8, 7))
    want = pim.weight.codes.astype(np.int64) @ x.astype(np.int64)
    assert np.array_equal(pim(x), want.astype(np.float32))


def test_cosimulation_of_a_tiny_gpt2_in_int4_and_fp8(tmp_path):
    card = load_card(write_card(tmp_path, "tiny-gpt2", "gpt2", TINY_GPT2))
    for hw, name in ((_aim().with_weight_format("int4-g128"), "gptq-rtn-sym-g128"),
                     (_hbm().with_weight_format("int4-g128"), "gptq-rtn-sym-g128"),
                     (_aim().with_weight_format("fp8-e4m3"), "fp8-e4m3-round")):
        r = cosimulate(hw, card, gen_tokens=3, prompt_len=4)
        assert r["quantizer"] == name and "8 block weight matrices as" in r["reference"]
        assert r["top1_agreement"] == 1.0 and 0 < r["max_abs_logit_error_relative"] < 0.01
    kv = cosimulate(_aim("pim.kv_format=fp8-e4m3"), card, gen_tokens=3, prompt_len=4)
    plain = cosimulate(_aim(), card, gen_tokens=3, prompt_len=4)
    assert kv["max_abs_logit_error"] > plain["max_abs_logit_error"]  # the cache (and LM head) rounded to E4M3
    assert kv["reference_tokens"] == plain["reference_tokens"]


# ---- runs and errors ----------------------------------------------------------------------------

def test_runs_in_the_new_formats_on_both_pim_configs(capsys):
    from pimsim.runs import run_model

    base = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2)
    fp8 = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2, weight_format="fp8-e4m3")
    int4 = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2, weight_format="int4-g128")
    assert base["latency_per_token_s"] > fp8["latency_per_token_s"] > int4["latency_per_token_s"]
    assert fp8["kv_format"] == int4["kv_format"] == "bf16"
    kv8 = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2, overrides=["pim.kv_format=fp8-e4m3"])
    assert kv8["kv_format"] == "fp8-e4m3" and kv8["latency_per_token_s"] < base["latency_per_token_s"]
    hbm = run_model("hbm-pim.yaml", "gpt2", gen_tokens=2, weight_format="int4-g128",
                    overrides=["mapping.gemv=row_partition"])
    assert hbm["weight_format"] == "int4-g128"
    with pytest.raises(PimsimError, match="has no step that loads int4-g128's group scales"):
        run_model("hbm-pim.yaml", "gpt2", gen_tokens=2, weight_format="int4-g128")


def test_bad_format_names_are_one_clear_error(capsys):
    rc = main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--weight-format", "int4", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "do not support int4 weights (supported: bf16, binary, fp8-e4m3, int4-g128," in err
    rc = main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--set", "pim.kv_format=fp8", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "1 problem" in err and "'fp8-e4m3'" in err and "Traceback" not in err
    with pytest.raises(PimsimError, match="bank model does not execute int4-g128"):
        gemv(_aim().with_weight_format("int4-g128"), W=np.ones((4, 256), np.float32))


def test_datapath_checks_refuse_int4_with_integer_activations_or_accumulators():
    import yaml

    from pimsim.config.loader import validate as validate_hardware
    from pimsim.errors import ConfigError
    from pimsim.resources import resolve

    raw = yaml.safe_load(resolve("gddr6-aim.yaml", "hwconfigs").read_text())
    raw["pim"]["formats"]["int4-g128"] = {"lanes": 64, "activation_format": "int8", "accumulator_format": "int32"}
    raw["pim"]["formats"]["fp8-e4m3"]["accumulator_format"] = "int32"
    with pytest.raises(ConfigError) as info:
        validate_hardware(raw, "test.yaml")
    problems = [(p.path, p.message) for p in info.value.problems]
    assert any(w == "pim.formats.int4-g128.activation_format" and "bf16 or fp16" in m for w, m in problems)
    assert any(w == "pim.formats.int4-g128.accumulator_format" for w, _ in problems)
    assert any(w == "pim.formats.fp8-e4m3.accumulator_format" for w, _ in problems)



@pytest.mark.parametrize("make, strategy", [(_aim, "row_partition"), (_aim, "wave_major"),
                                            (_hbm, "row_partition"), (_hbm, "wave_major")])
def test_int4_programs_with_their_scale_reads_are_protocol_clean(make, strategy):
    """Packed (768-wide rows: 12 code accesses, three to an AiM row) and unpacked (a 1000-wide input: a
    partial last group) GEMVs: every scale read lands in the row's tail and the checker finds nothing."""
    from pimsim.dram.checker import check, issued_from_record
    from pimsim.dram.kernel import run_commands
    from pimsim.mapper.gemv import STRATEGIES
    from pimsim.mapper.placement import auto_pack, auto_split, place_gemv

    c = compile_standard(make(f"mapping.gemv={strategy}").with_weight_format("int4-g128"))
    g = Geometry.of(c.hw)
    apr = c.hw.dram.organization.accesses_per_row
    for rows, cols in ((700, 768), (300, 1000)):
        split = auto_split(g, rows, cols)
        p = place_gemv(g, rows, cols, split=split, pack=auto_pack(g, rows, cols, split))
        prog = STRATEGIES[strategy](c, p, g.lanes_out)
        macs = prog.column[prog.cmd == c.command_names.index("MACAB")] // g.burst_length
        assert macs.max() < apr and (macs >= g.row_elems // g.elems_per_access).any()  # scale reads in the tail
        _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                      np.zeros(len(prog), np.int64), record=True)
        assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []
