"""Weight formats in the PIM: config validation, geometry, packing, MAC timing, and bit-exact integer GEMVs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from conftest import no_refresh
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsim.config import load_hardware
from pimsim.config.loader import validate as validate_hardware
from pimsim.dram.compile import compile_standard, derived_timing
from pimsim.dram.kernel import run_commands
from pimsim.errors import ConfigError, PimsimError
from pimsim.kernels import gemv
from pimsim.mapper.gemv import gemv_program
from pimsim.mapper.placement import Geometry, RowAllocator, auto_pack, auto_split, place_gemv
from pimsim.pim.formats import to_operands
from pimsim.resources import resolve
from pimsim.runs import run_model

PIM = ("gddr6-aim.yaml", "hbm-pim.yaml")
LOW_BIT = ("int8", "ternary", "ternary-b3", "binary")


def _raw(name: str) -> dict:
    return yaml.safe_load(resolve(name, "hwconfigs").read_text())


def _problems(raw: dict) -> list:
    with pytest.raises(ConfigError) as info:
        validate_hardware(raw, "test.yaml")
    return [(p.path, p.message) for p in info.value.problems]


# ---- config -------------------------------------------------------------------------------------

def test_switching_format_swaps_the_datapath_and_its_mac_energy():
    hw = load_hardware("gddr6-aim.yaml", [])
    t = hw.with_weight_format("ternary")
    assert (t.pim.weight_format, t.pim.lanes_per_unit, t.pim.input_format, t.pim.accumulator_format) == \
        ("ternary", 128, "int8", "int32")
    assert t.pim.cache_format == "bf16"  # the KV cache keeps the native format
    assert t.energy.dram.per_command_pJ["MACAB"] == 1032 and t.energy.dram.per_command_pJ["ACTAB"] == 47200
    # and back: the native datapath was kept in the table
    back = t.with_weight_format("bf16")
    assert (back.pim.lanes_per_unit, back.pim.accumulator_format, back.energy.dram.per_command_pJ["MACAB"]) == \
        (16, "fp32", 1314.6)
    assert hw.with_weight_format("bf16") is hw


def test_an_unsupported_format_names_the_supported_ones():
    with pytest.raises(ValueError, match=r"do not support fp16 weights \(supported: bf16, binary, fp8-e4m3, int4-g128, "
                                         r"int8, ternary, "
                                         r"ternary-b3; add pim.formats.fp16"):
        load_hardware("gddr6-aim.yaml", []).with_weight_format("fp16")


def test_bad_format_tables_are_all_reported():
    raw = _raw("gddr6-aim.yaml")
    f = raw["pim"]["formats"]
    f["binary"]["lanes"] = 512  # more lanes than a 32 B access has binary weights
    f["ternary"]["lanes"] = 64  # two passes but no time for them
    del f["int8"]["activation_format"]
    del raw["energy"]["dram"]["mac_pJ_by_format"]["ternary-b3"]
    problems = _problems(raw)
    assert ("pim.formats.binary.lanes", "512 lanes, but one column access holds only 256 binary weights") in problems
    assert any(p == "pim.formats.ternary.mac_cycles" and "64 lanes take 2 passes" in m for p, m in problems)
    assert any(p == "pim.formats.int8.activation_format" for p, _ in problems)
    assert any(p == "energy.dram.mac_pJ_by_format.ternary-b3" and "missing" in m for p, m in problems)
    assert len(problems) == 4, problems


def test_low_bit_native_weights_need_activations_a_kv_format_and_room_in_the_buffer():
    raw = _raw("gddr6-aim.yaml")
    raw["pim"].update(weight_format="ternary", lanes_per_unit=128, accumulator_format="int32",
                      global_buffer_bytes=64)
    raw["pim"]["formats"] = {}
    raw["energy"]["dram"]["mac_pJ_by_format"] = {}
    problems = _problems(raw)
    assert any(p == "pim.activation_format" for p, _ in problems)
    assert any(p == "pim.kv_format" for p, _ in problems)
    raw["pim"]["activation_format"] = "int8"
    problems = _problems(raw)
    assert ("pim.global_buffer_bytes", "64 B cannot hold one MAC's 128 int8 activations (128 B) for ternary "
                                       "weights") in problems
    assert any(p == "pim.kv_format" and "needs MAC units for int8 values" in m for p, m in problems)


def test_a_kv_format_the_units_cannot_compute_is_rejected():
    raw = _raw("gddr6-aim.yaml")
    raw["pim"]["kv_format"] = "fp16"
    assert [p for p, _ in _problems(raw)] == ["pim.kv_format"]


def test_operands_outside_the_format_are_refused():
    assert list(to_operands([-1, 0, 1], "ternary")) == [-1, 0, 1]
    for fmt, bad in (("ternary", [2]), ("ternary-b3", [0.5]), ("binary", [0])):
        with pytest.raises(ValueError, match="quantize them first"):
            to_operands(bad, fmt)


# ---- geometry and placement -------------------------------------------------------------------

@pytest.mark.parametrize("fmt, elems, row_elems, writes, chunks, nbytes", [
    ("bf16", 16, 1024, 1, 64, 2.0),
    ("int8", 32, 2048, 1, 64, 1.0),
    ("ternary", 128, 8192, 4, 16, 0.25),
    ("ternary-b3", 160, 10240, 5, 12, 0.2),
    ("binary", 256, 16384, 8, 8, 0.125),
])
def test_geometry_of_each_format_on_aim(fmt, elems, row_elems, writes, chunks, nbytes):
    g = Geometry.of(load_hardware("gddr6-aim.yaml", []).with_weight_format(fmt))
    assert (g.elems_per_access, g.row_elems, g.writes_per_mac, g.gb_chunks, g.operand_bytes) == \
        (elems, row_elems, writes, chunks, nbytes)


def test_narrow_rows_are_packed_on_global_buffer_boundaries():
    g = Geometry.of(load_hardware("gddr6-aim.yaml", []).with_weight_format("ternary"))
    # GPT-2 XL: 1600 ternary weights are 13 accesses -> a place of 16 (one buffer load), 4 to a DRAM row
    assert auto_pack(g, 6400, 1600, 1) == 4
    assert auto_pack(g, 1600, 6400, 1) == 1  # 50 accesses need the whole row
    assert auto_pack(g, 100, 1600, auto_split(g, 100, 1600)) == 1  # fewer rows than slots: nothing to pack
    bf16 = Geometry.of(load_hardware("gddr6-aim.yaml", []))
    assert auto_pack(bf16, 6400, 1600, 1) == 1  # the buffer holds a whole row: never packed
    never = Geometry.of(load_hardware("gddr6-aim.yaml", ["mapping.row_packing=never"]).with_weight_format("ternary"))
    assert auto_pack(never, 6400, 1600, 1) == 1


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(PIM), fmt=st.sampled_from(LOW_BIT), m=st.integers(1, 1500), n=st.integers(1, 3000))
def test_every_element_of_a_packed_matrix_has_its_own_cell(name, fmt, m, n):
    g = Geometry.of(load_hardware(name, []).with_weight_format(fmt))
    split = auto_split(g, m, n)
    p = place_gemv(g, m, n, RowAllocator(g), split=split, pack=auto_pack(g, m, n, split))
    mm, nn = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    ch, bank, row, elem = p.where(mm.ravel(), nn.ravel())
    assert (elem < g.row_elems).all() and row.max() < p.first_row + p.dram_rows
    cells = ((ch * 64 + bank) * g.rows + row) * g.row_elems + elem
    assert len(np.unique(cells)) == m * n


def test_packing_cuts_the_row_activations_by_the_pack():
    hw = load_hardware("gddr6-aim.yaml", ["dram.refresh.enabled=false"]).with_weight_format("ternary")
    packed = gemv(hw, 6400, 1600).stats
    hw_never = load_hardware("gddr6-aim.yaml", ["dram.refresh.enabled=false", "mapping.row_packing=never"]
                             ).with_weight_format("ternary")
    plain = gemv(hw_never, 6400, 1600).stats
    # 6400 rows over 128 slots: 50 waves, 13 DRAM rows of 4 packed waves per channel (8 channels)
    assert packed["placement"]["rows_per_dram_row"] == 4
    assert packed["commands"]["ACTAB"] == 8 * 13 and plain["commands"]["ACTAB"] == 8 * 50
    assert packed["commands"]["MACAB"] == plain["commands"]["MACAB"] == 8 * 50 * 13
    # each of the 50 - 13 waves that shares a DRAM row with the one before skips AiM's lazy precharge
    # and the activate (nRP + nRCDRDMAC); the mode changes and result reads of every wave remain
    t = compile_standard(hw).timing
    assert plain["cycles"] - packed["cycles"] == (50 - 13) * (t["nRP"] + t["nRCDRDMAC"])
    assert packed["cycles"] < 0.7 * plain["cycles"]


# ---- MAC timing -------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, cycles, gap", [(128, 0, 2), (128, 5, 5), (64, 3, 6), (32, 1, 4)])
def test_mac_spacing_is_passes_times_cycles_or_the_column_pace(lanes, cycles, gap):
    """Ternary on AiM: 128 weights per access; `lanes` lanes take 128/lanes passes of `cycles` each,
    and back-to-back MACs are spaced by that or by nCCDL (2), whichever is longer."""
    hw = load_hardware("gddr6-aim.yaml", ["dram.refresh.enabled=false", f"pim.formats.ternary.lanes={lanes}",
                                          f"pim.formats.ternary.mac_cycles={cycles}"]).with_weight_format("ternary")
    assert derived_timing(hw) == {"nMAC": -(-128 // lanes) * cycles}
    c = compile_standard(hw)
    ids = {n: i for i, n in enumerate(c.command_names)}
    rank = int(c.rank_node(0))
    cmd = [ids["ACTAB"]] + [ids["MACAB"]] * 5 + [ids["RDMAC"]]
    n = len(cmd)
    _, _, rec, err = run_commands(c.spec, np.array(cmd, np.int64), np.full(n, rank, np.int64),
                                  np.zeros(n, np.int64), np.array([-1] + [16 * k for k in range(5)] + [-1], np.int64),
                                  np.zeros(n, np.int64), record=True)
    assert err[0] == 0
    at = rec[:, 0]
    assert list(np.diff(at[1:6])) == [gap] * 4
    assert at[6] - at[5] == max(gap, c.timing["nCCDL"])  # the last MAC's passes end before RDMAC


def test_native_formats_add_no_mac_rule():
    for name in PIM:
        assert derived_timing(no_refresh(name).hw) == {"nMAC": 0}


# ---- functional: integer GEMVs bit for bit -----------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(PIM), fmt=st.sampled_from(LOW_BIT), strategy=st.sampled_from(["row_partition",
                                                                                          "wave_major"]),
       m=st.integers(1, 400), n=st.integers(1, 1500), seed=st.integers(0, 2**16))
def test_integer_gemv_through_the_bank_model_equals_torch_int64(name, fmt, strategy, m, n, seed):
    torch = pytest.importorskip("torch")
    hw = load_hardware(name, [f"mapping.gemv={strategy}"]).with_weight_format(fmt)
    rng = np.random.default_rng(seed)
    levels = {"int8": np.arange(-128, 128), "binary": np.array([-1, 1])}.get(fmt, np.array([-1, 0, 1]))
    W = rng.choice(levels, (m, n)).astype(np.float32)
    x = rng.integers(-128, 128, n).astype(np.float32)
    got = gemv(hw, W=W, x=x).y
    want = (torch.from_numpy(W.astype(np.int64)) @ torch.from_numpy(x.astype(np.int64))).numpy()
    assert np.array_equal(got, want)


def test_packed_gemv_streams_are_protocol_clean():
    from pimsim.dram.checker import check, issued_from_record

    for name in PIM:
        c = compile_standard(load_hardware(name, []).with_weight_format("ternary"))
        g = Geometry.of(c.hw)
        p = place_gemv(g, 700, 1600, pack=auto_pack(g, 700, 1600, 1))
        assert p.pack > 1
        prog = gemv_program(c, p, g.lanes_out)
        _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                      np.zeros(len(prog), np.int64), record=True)
        assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []


# ---- whole runs -------------------------------------------------------------------------------

def test_bitnet_3b_fits_gddr6_aim_only_in_a_narrow_format():
    out = run_model("gddr6-aim.yaml", "bitnet-b1.58-3b", gen_tokens=1)
    assert out["weight_format"] == "ternary" and out["kv_format"] == "bf16"
    assert out["breakdown_s"]["quantize"] > 0
    with pytest.raises(PimsimError, match="bitnet-b1.58-3b does not fit in gddr6-aim: its bf16 weights"):
        run_model("gddr6-aim.yaml", "bitnet-b1.58-3b", gen_tokens=1, weight_format="bf16")


def test_narrower_formats_are_faster_and_cheaper_and_bf16_is_unchanged():
    base = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2)
    same = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2, weight_format="bf16")
    assert same["latency_per_token_s"] == base["latency_per_token_s"] and "quantize" not in base["breakdown_s"]
    runs = {f: run_model("gddr6-aim.yaml", "gpt2", gen_tokens=2, weight_format=f) for f in ("int8", "ternary")}
    assert base["latency_per_token_s"] > runs["int8"]["latency_per_token_s"] > runs["ternary"]["latency_per_token_s"]
    assert base["energy_per_token_J"] > runs["int8"]["energy_per_token_J"] > runs["ternary"]["energy_per_token_J"]
    assert len({r["config_hash"] for r in (base, *runs.values())}) == 3
    # the same model card in ternary, by the card or by the flag, is the same run
    card = run_model("gddr6-aim.yaml", "gpt2-ternary", gen_tokens=2)
    assert card["latency_per_token_s"] == runs["ternary"]["latency_per_token_s"]


def test_a_ternary_run_is_protocol_clean_at_cycle_fidelity():
    out = run_model("gddr6-aim.yaml", "gpt2-ternary", prompt_len=4, gen_tokens=1, fidelity="cycle",
                    overrides=["dram.timing.nREFI=700"], check_protocol=True)
    assert out["protocol_check"]["violations"] == 0 and out["protocol_check"]["commands_checked"] > 10_000


def test_card_quantizer_must_make_the_cards_format(tmp_path):
    from pimsim.workloads.cards import load_card

    text = resolve("gpt2-ternary", "workloads").read_text().replace("quantizer: bitnet", "quantizer: liu-binary")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="liu-binary makes binary weights, not ternary"):
        load_card(path)


def test_raw_configs_are_not_mutated():
    raw = _raw("gddr6-aim.yaml")
    before = copy.deepcopy(raw)
    validate_hardware(raw, "x.yaml")
    assert raw == before


# ---- review findings: each would have been a silent wrong number or a crash ---------------------

def test_fewer_integer_lanes_than_weights_accumulate_lane_by_lane_exactly():
    """HBM-PIM's per-lane accumulators with 16 lanes for 32 int8 weights a column: two passes, lane e % 16."""
    hw = load_hardware("hbm-pim.yaml", ["pim.formats.int8.lanes=16", "pim.formats.int8.mac_cycles=1"]
                       ).with_weight_format("int8")
    rng = np.random.default_rng(3)
    W = rng.integers(-128, 128, (40, 300)).astype(np.float32)
    x = rng.integers(-128, 128, 300).astype(np.float32)
    assert np.array_equal(gemv(hw, W=W, x=x).y, W.astype(np.int64) @ x.astype(np.int64))


def test_kv_and_lm_head_macs_are_charged_at_their_own_datapaths_energy():
    out = run_model("gddr6-aim.yaml", "gpt2-ternary", prompt_len=8, gen_tokens=1)
    macs = out["energy"]["actions"]["commands"]["MACAB"]
    by_format = run_model("gddr6-aim.yaml", "gpt2-ternary", prompt_len=8, gen_tokens=1,
                          fidelity="cycle")["energy"]["actions"]["commands"]["MACAB"]
    assert macs == by_format  # the two fidelities count the same MACs
    # every MAC is either a ternary block-weight MAC (1032 pJ) or a bf16 KV/LM-head MAC (1314.6 pJ)
    counts = _mac_counts("gddr6-aim.yaml", "gpt2-ternary")
    assert sum(counts.values()) == macs and set(counts) == {"ternary", "bf16"}
    want = (counts["ternary"] * 1032 + counts["bf16"] * 1314.6) * 1e-12
    assert out["energy_breakdown_J"]["mac"] == pytest.approx(want, rel=1e-12)


def _mac_counts(hw_name: str, model: str) -> dict:
    from pimsim.engine.decode import DecodeSimulation
    from pimsim.runs import hardware_for
    from pimsim.workloads.cards import load_card
    from pimsim.workloads.tracer import traced_graph

    card = load_card(model)
    sim = DecodeSimulation(hardware_for(load_hardware(hw_name, []), card), traced_graph(card), 8, 1)
    return sim.run().counts["macs_by_format"]


def test_a_kv_datapath_with_another_mac_spacing_is_refused():
    hw = load_hardware("gddr6-aim.yaml", ["pim.formats.ternary.lanes=64", "pim.formats.ternary.mac_cycles=2"])
    with pytest.raises(PimsimError, match="one spacing"):
        run_model(hw, "gpt2", gen_tokens=1, weight_format="ternary")


def test_narrow_weights_take_several_buffer_writes_per_mac_and_the_links_carry_them():
    hw = load_hardware("gddr6-aim.yaml", ["dram.refresh.enabled=false"])
    for fmt, per_mac in (("int8", 1), ("ternary", 4), ("binary", 8)):
        s = gemv(hw.with_weight_format(fmt), 6400, 1600).stats
        accesses = -(-1600 // Geometry.of(hw.with_weight_format(fmt)).elems_per_access)
        assert s["commands"]["WRGB"] == 8 * accesses * per_mac  # x once per channel, int8 (1600 B + padding)


def test_more_impossible_datapaths_are_refused():
    raw = _raw("gddr6-aim.yaml")
    raw["pim"]["formats"]["ternary"]["activation_format"] = "bf16"  # float products into int32 accumulators
    raw["pim"]["formats"]["bf16"] = {"lanes": 16, "activation_format": "bf16", "accumulator_format": "fp32"}
    del raw["energy"]["dram"]["mac_pJ_by_format"]["binary"]["MACSB"]
    problems = _problems(raw)
    assert any(p == "pim.formats.ternary.accumulator_format" for p, _ in problems)
    assert any(p == "pim.formats.bf16" and "native weight format" in m for p, m in problems)
    assert any(p == "energy.dram.mac_pJ_by_format.binary" and "MACSB" in m for p, m in problems)
