"""Encoder-decoder models (BART): the decode step's cross-attention over the source, the cross K/V
region in the PIM, and the encoder pass reported apart from the per-token latency."""

from __future__ import annotations

import collections
import json

import pytest

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.decode import DecodeSimulation
from pimsim.errors import PimsimError
from pimsim.mapper.model import ModelMap
from pimsim.runs import run_model
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_encoder, traced_graph

# BART-base's GEMV weights and tables (no biases or norms): the shared token table, the encoder's and
# the decoder's positions, 6 encoder layers (q, k, v, o, fc1, fc2), 6 decoder layers (self and cross
# q, k, v, o, fc1, fc2)
D, FF = 768, 3072
BART_WEIGHTS = 50265 * D + 2 * 1026 * D + 6 * (4 * D * D + 2 * D * FF) + 6 * (8 * D * D + 2 * D * FF)


@pytest.fixture(scope="module")
def bart():
    return traced_graph(load_card("bart-base"))


@pytest.fixture(scope="module")
def runs():
    """run_model results by (card, source length), 2 tokens each, computed once."""
    cache = {}

    def get(model: str, source: int, **kw) -> dict:
        key = (model, source, repr(sorted(kw.items())))
        if key not in cache:
            cache[key] = run_model("gddr6-aim.yaml", model, gen_tokens=2, source_len=source, **kw)
        return cache[key]

    return get


def test_bart_decode_step_reads_cross_attention_over_the_source(bart):
    kinds = collections.Counter((op.kind, op.part, op.cross) for op in bart.ops)
    assert kinds[("scores", "cross_scores", True)] == 6 and kinds[("context", "cross_context", True)] == 6
    assert kinds[("scores", "attn_scores", False)] == 6 and kinds[("context", "attn_context", False)] == 6
    # cross K/V are only read: every append is a self-attention one, K and V per layer
    assert sorted((op.layer, op.which, op.cross) for op in bart.ops if op.kind == "kv_append") == \
        [(layer, w, False) for layer in range(6) for w in "kv"]
    m = bart.meta
    assert (m.layers, m.cross_layers, m.heads, m.kv_heads, m.cross_kv_heads, m.head_dim) == \
        (6, 6, 12, 12, 12, 64)
    assert m.encoder_decoder and m.source_len == 128  # the card's
    # the cross softmax grows with the source, the self one with the context
    softmax = [op for op in bart.ops if op.asic_kind == "softmax"]
    per = sorted((op.elements, op.elements_per_token, op.elements_per_source) for op in softmax)
    assert per == [(0, 0, 12)] * 6 + [(0, 12, 0)] * 6


def test_bart_decoder_parts(bart):
    parts = {op.name.split(":")[0].removeprefix("model.decoder.layers.0."): op.part
             for op in bart.ops if op.kind == "gemv" and op.layer == 0}
    assert parts == {"self_attn.q_proj": "qkv", "self_attn.k_proj": "qkv", "self_attn.v_proj": "qkv",
                     "self_attn.out_proj": "out_proj", "encoder_attn.q_proj": "qkv",
                     "encoder_attn.out_proj": "out_proj", "fc1": "ffn", "fc2": "ffn"}
    # cross K/V projections run in the encoder pass, never in a decode step
    assert not any("encoder_attn.k_proj" in op.name or "encoder_attn.v_proj" in op.name for op in bart.ops)
    assert [op.part for op in bart.ops if op.kind == "gemv" and op.layer is None] == ["lm_head"]


def test_cross_ops_run_over_the_source_length(bart):
    hw = load_hardware("gddr6-aim.yaml")
    enc = traced_encoder(load_card("bart-base"), 40)
    sim = DecodeSimulation(hw, bart, 3, 2, encoder=enc, source_len=40)
    for op in bart.ops:
        if op.kind in ("scores", "context"):
            stream = next(s[3] for s in sim.steps(op, 3, 4) if s[3] is not None)
            length = 40 if op.cross else 4
            assert stream.outputs == (op.heads * length if op.kind == "scores" else op.heads * op.head_dim)


def test_encoder_pass_graph():
    enc = traced_encoder(load_card("bart-base"), 32)
    assert enc.meta.phase == "encoder" and enc.meta.source_len == 32 and enc.meta.layers == 6
    gemv = [op for op in enc.ops if op.kind == "gemv"]
    assert len(gemv) == 36 + 12 and all(op.count == 32 for op in gemv)
    cross = [op for op in gemv if op.part == "cross_kv"]
    assert sorted(op.name.split(".")[-1].split(":")[0] for op in cross) == ["k_proj"] * 6 + ["v_proj"] * 6
    assert {op.layer for op in cross} == set(range(6))
    writes = [op for op in enc.ops if op.kind == "kv_append"]
    assert len(writes) == 12 and all(op.cross and op.count == 32 and op.kv_heads == 12 for op in writes)
    matmul = [op for op in enc.ops if op.kind == "matmul"]
    assert len(matmul) == 12 and all(op.elements == 12 * 32 * 32 * 64 for op in matmul)
    assert collections.Counter(op.part for op in matmul) == {"attn_scores": 6, "attn_context": 6}
    softmax = [op for op in enc.ops if op.asic_kind == "softmax"]
    assert [(op.elements, op.rows) for op in softmax] == [(12 * 32 * 32, 12 * 32)] * 6
    assert {op.part for op in gemv if op.part != "cross_kv"} == {"qkv", "out_proj", "ffn"}
    # with the decode step's tensors: every BART-base weight once (the shared table too)
    m = ModelMap(load_hardware("gddr6-aim.yaml"), compile_standard(load_hardware("gddr6-aim.yaml")),
                 traced_graph(load_card("bart-base")), 16, enc, 32)
    assert m.weight_elements() == BART_WEIGHTS


def test_cross_kv_region_is_sized_for_the_source_and_counted(bart):
    hw = load_hardware("gddr6-aim.yaml")
    c = compile_standard(hw)
    card = load_card("bart-base")
    maps = {s: ModelMap(hw, c, bart, 16, traced_encoder(card, s), s) for s in (16, 512)}
    for s, m in maps.items():
        assert sorted(m.cross_kv) == list(range(6))
        for layout in m.cross_kv.values():
            assert (layout.max_context, layout.heads, layout.head_dim) == (s, 12, 64)
            assert layout.k.rows_out == s and layout.v.cols_in == 12 * s  # K row-major, V transposed
        per_layer = m.cross_kv[0].k.dram_rows + m.cross_kv[0].v.dram_rows
        assert m.cross_kv_rows() == 6 * per_layer
        assert m.cross_kv[5].v.first_row + m.cross_kv[5].v.dram_rows == m.rows_used  # placed last
    grown = maps[512].cross_kv_rows() - maps[16].cross_kv_rows()
    assert grown > 0 and maps[512].rows_used - maps[16].rows_used == grown
    # the fit check counts the encoder's weights and the cross K/V
    small = load_hardware("gddr6-aim.yaml", ["dram.organization.rows=1024"])
    with pytest.raises(PimsimError, match=r"encoder's included.*cross-attention K/V for 128 source tokens"):
        ModelMap(small, compile_standard(small), bart, 16, traced_encoder(card, 128), 128)


def test_block_weight_rule_covers_the_encoder(bart):
    hw = load_hardware("gddr6-aim.yaml").with_weight_format("ternary")
    m = ModelMap(hw, compile_standard(hw), bart, 16, traced_encoder(load_card("bart-base"), 16), 16)
    assert {"model.encoder.layers.0.fc1.weight", "model.encoder.layers.5.self_attn.q_proj.weight",
            "model.decoder.layers.0.encoder_attn.k_proj.weight", "model.decoder.layers.3.fc2.weight"} <= m.low_bit
    tables = {"model.shared.weight", "model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"}
    assert not tables & m.low_bit and tables <= set(m.tables)
    assert m.tables["model.encoder.layers.0.fc1.weight"].geometry.fmt == "ternary"


def test_source_length_scales_cross_attention_and_the_encoder(runs):
    short, long = runs("bart-base", 64), runs("bart-base", 512)
    a, b = short["breakdown_s"], long["breakdown_s"]
    cross = [(r["cross_scores"] + r["cross_context"]) for r in (a, b)]
    assert 3 < cross[1] / cross[0] < 8.5  # 8x the source: linear, plus a fixed cost per op
    # self-attention does not depend on the source: the same streams, timed alike where refreshes do not
    # land differently (they follow the refresh clock, and the cross-attention before them moves it)
    for part in ("attn_scores", "attn_context"):
        assert a[part] == pytest.approx(b[part], rel=0.1)
    off = [runs("bart-base", s, overrides=["dram.refresh.enabled=false"])["breakdown_s"] for s in (64, 512)]
    assert off[0]["attn_scores"] == off[1]["attn_scores"] and off[0]["attn_context"] == off[1]["attn_context"]
    assert long["latency_per_token_s"] > short["latency_per_token_s"]
    assert long["bound_time_s"] > short["bound_time_s"]  # the cross K/V bytes are in the bound
    # the encoder: S passes per weight and S x S attention, so more than linear in S
    assert long["encoder"]["time_s"] > 8 * short["encoder"]["time_s"]
    assert long["encoder"]["breakdown_s"]["attn_scores"] > 40 * short["encoder"]["breakdown_s"]["attn_scores"]


def test_encoder_is_reported_apart_from_the_tokens(runs):
    r = runs("bart-base", 32)
    enc = r["encoder"]
    assert r["source_len"] == 32 and enc["source_len"] == 32
    assert enc["time_s"] > 10 * r["latency_per_token_s"]
    assert r["total_time_s"] == pytest.approx(sum(r["per_token_s"]))
    assert enc["time_to_first_token_s"] == pytest.approx(enc["time_s"] + r["latency_first_token_s"])
    counted = enc["counted"]
    assert counted["gemv_passes"] == (36 + 12) * 32 and counted["cross_kv_token_writes"] == 12 * 32
    assert counted["table_rows_read"] == 2 * 32 and counted["asic_matmul_macs"] == 12 * 12 * 32 * 32 * 64
    assert set(enc["breakdown_s"]) >= {"qkv", "ffn", "attn_scores", "softmax", "cross_kv", "kv_write", "transfers"}
    assert enc["energy_J"] > 0 and enc["commands"]["MACAB"] > 0 and enc["commands"]["WR"] > 0
    assert enc["weights"] == 6 * (4 * D * D + 2 * D * FF) + 12 * D * D + 1026 * D
    assert r["graph"]["weights"] == BART_WEIGHTS
    assert r["memory"]["cross_kv_tokens_reserved"] == 32
    assert any("encoder pass" in n for n in r["notes"])


def test_ternary_and_binary_bart_are_faster_on_aim(runs):
    bf16, ternary, binary = (runs(m, 64) for m in ("bart-base", "bart-base-ternary", "bart-base-binary"))
    assert (ternary["weight_format"], binary["weight_format"]) == ("ternary", "binary")
    assert binary["latency_per_token_s"] <= ternary["latency_per_token_s"] < 0.8 * bf16["latency_per_token_s"]
    assert ternary["energy_per_token_J"] < bf16["energy_per_token_J"]
    assert ternary["encoder"]["time_s"] < 0.6 * bf16["encoder"]["time_s"]  # its weights are ternary too
    assert ternary["encoder"]["energy_J"] < bf16["encoder"]["energy_J"]


def test_encoder_overlap_and_cycle_fidelity(runs):
    serial = runs("bart-base", 16)
    overlap = runs("bart-base", 16, schedule="overlap")
    assert overlap["encoder"]["time_s"] <= serial["encoder"]["time_s"]
    cycle = runs("bart-base", 16, fidelity="cycle")
    assert cycle["encoder"]["time_s"] == pytest.approx(serial["encoder"]["time_s"], rel=0.015)
    assert cycle["latency_per_token_s"] == pytest.approx(serial["latency_per_token_s"], rel=0.015)


def test_source_length_is_checked(tmp_path):
    with pytest.raises(PimsimError, match="decoder-only"):
        run_model("gddr6-aim.yaml", "gpt2", gen_tokens=1, source_len=8)
    with pytest.raises(PimsimError, match="1024 positions"):
        run_model("gddr6-aim.yaml", "bart-base", gen_tokens=1, source_len=1025)
    text = (load_card("bart-base").model_dump_json())
    card = json.loads(text)
    card["defaults"].pop("source_len")
    path = tmp_path / "no-source.yaml"
    path.write_text(json.dumps(card))
    with pytest.raises(PimsimError, match="needs defaults.source_len"):
        traced_graph(load_card(path))
    gpt2 = json.loads(load_card("gpt2").model_dump_json())
    gpt2["defaults"]["source_len"] = 8
    path = tmp_path / "gpt2-source.yaml"
    path.write_text(json.dumps(gpt2))
    with pytest.raises(PimsimError, match="for encoder-decoder models"):
        traced_graph(load_card(path))


def test_run_cli_source_len(capsys):
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "bart-base", "--source-len", "16", "--gen-tokens", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "6 encoder + 6 decoder layers" in out and "source 16 tokens" in out
    assert "encoder " in out and "once over 16 source tokens" in out and "cross-attention scores" in out
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--source-len", "16", "--quiet"]) == 2
    assert "decoder-only" in capsys.readouterr().err


def test_decoder_only_graphs_are_unchanged():
    g = traced_graph(load_card("gpt2"))
    assert len(g.ops) == 185
    assert collections.Counter(op.kind for op in g.ops) == {"asic": 86, "gemv": 49, "kv_append": 24, "scores": 12,
                                                            "context": 12, "embedding": 2}
    assert not any(op.cross or op.elements_per_source or op.rows_per_source for op in g.ops)
    assert not g.meta.encoder_decoder and g.meta.cross_layers is None and g.meta.source_len is None
    assert not {"encoder_decoder", "cross_layers", "source_len"} & set(g.meta.to_dict())
    # the JSON of a decoder-only graph carries none of the encoder-decoder fields
    text = g.to_json()
    assert "cross" not in text and "per_source" not in text
    r = run_model("gddr6-aim.yaml", "gpt2", gen_tokens=1)
    assert "encoder" not in r and "source_len" not in r and "cross_kv_tokens_reserved" not in r["memory"]
