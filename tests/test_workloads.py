"""Model cards and the tracer: graphs from real transformers models, nothing written per family."""

from __future__ import annotations

import collections
import json

import pytest
from conftest import TINY_GPT2, TINY_LLAMA, write_card

from pimsim.errors import ConfigError, PimsimError
from pimsim.resources import bundled_names
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import GraphMeta, OpGraph
from pimsim.workloads.tracer import TRACER_VERSION, trace_card, traced_graph

SPEC_DEC = {"gpt2-xl-spec-gpt2", "gpt2-large-pearl-gpt2", "smollm2-self-spec"}  # workloads, not model cards
CARDS = [n[:-5] for n in bundled_names("workloads") if n[:-5] not in SPEC_DEC]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return trace_card(load_card(write_card(tmp_path_factory.mktemp("c"), "tiny-gpt2", "gpt2", TINY_GPT2)))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return trace_card(load_card(write_card(tmp_path_factory.mktemp("c"), "tiny-llama", "llama", TINY_LLAMA)))


def test_every_bundled_card_loads():
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl",
            "opt-1.3b", "smollm2-135m", "tinyllama-1.1b"} <= set(CARDS)
    for name in CARDS:
        card = load_card(name)
        assert card.name == name
        assert card.defaults.prompt_len + card.defaults.gen_tokens <= card.context


def test_bad_card_lists_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: bad\nhf: {model_type: gpt2, confg: {}}\ncontext: 16\n"
                    "defaults: {prompt_len: 10, gen_tokens: 10}\ncolour: red\n")
    with pytest.raises(ConfigError) as err:
        load_card(path)
    text = str(err.value)
    assert "hf.confg" in text and "colour" in text


def test_card_longer_run_than_context_is_an_error(tmp_path):
    path = write_card(tmp_path, "long", "gpt2", TINY_GPT2, context=10)
    with pytest.raises(ConfigError, match="exceeds the context of 10"):
        load_card(path)


def test_unknown_model_name_is_an_error():
    with pytest.raises(PimsimError, match="no bundled workloads file"):
        load_card("gpt7-huge")


def test_gpt2_block_graph(tiny_gpt2):
    g = tiny_gpt2
    kinds = collections.Counter((op.kind, op.part) for op in g.ops)
    assert kinds[("gemv", "qkv")] == 2 and kinds[("gemv", "out_proj")] == 2 and kinds[("gemv", "ffn")] == 4
    assert kinds[("gemv", "lm_head")] == 1
    assert kinds[("scores", "attn_scores")] == 2 and kinds[("context", "attn_context")] == 2
    assert kinds[("kv_append", "kv_write")] == 4 and kinds[("asic", "softmax")] == 2
    asic = collections.Counter(op.asic_kind for op in g.ops if op.kind == "asic")
    assert asic["layernorm"] == 5 and asic["gelu"] == 2  # ln_1, ln_2 per layer and ln_f
    # the LM head is tied to the token embedding: one tensor, used by both
    lm = next(op for op in g.ops if op.part == "lm_head")
    emb = [op for op in g.ops if op.kind == "embedding"]
    assert lm.tensor in {op.tensor for op in emb}
    assert (lm.rows, lm.cols) == (500, 64)
    assert (g.meta.layers, g.meta.heads, g.meta.kv_heads, g.meta.head_dim, g.meta.d_model, g.meta.vocab) == \
        (2, 4, 4, 16, 64, 500)
    # softmax grows with the context: 4 heads, one row each
    sm = next(op for op in g.ops if op.asic_kind == "softmax")
    assert (sm.elements, sm.elements_per_token, sm.rows, sm.rows_per_token) == (0, 4, 4, 0)
    assert sm.elements_at(100) == 400
    # weights: wte + wpe + per layer c_attn, c_proj, c_fc, mlp c_proj
    assert g.weight_elements() == 500 * 64 + 64 * 64 + 2 * (64 * 192 + 64 * 64 + 2 * 64 * 256)


def test_gemv_data_dependencies_follow_the_model(tiny_gpt2):
    g = tiny_gpt2
    produced = {op.output: op for op in g.ops}
    qkv = next(op for op in g.ops if op.part == "qkv")
    ln = produced[qkv.inputs[0]]
    assert ln.asic_kind == "layernorm"
    scores = next(op for op in g.ops if op.kind == "scores")
    assert produced[scores.inputs[0]] is qkv  # q comes straight from the fused projection


def test_llama_block_with_grouped_kv_heads(tiny_llama):
    g = tiny_llama
    assert (g.meta.heads, g.meta.kv_heads, g.meta.head_dim) == (4, 2, 16)
    kinds = collections.Counter((op.kind, op.part) for op in g.ops)
    assert kinds[("gemv", "qkv")] == 6 and kinds[("gemv", "ffn")] == 6 and kinds[("gemv", "lm_head")] == 1
    assert not any(op.bias for op in g.ops if op.kind == "gemv")
    appends = [op for op in g.ops if op.kind == "kv_append"]
    assert {op.kv_heads for op in appends} == {2}
    asic = collections.Counter(op.asic_kind for op in g.ops if op.kind == "asic")
    assert asic["rsqrt"] == 5 and asic["silu"] == 2  # RMSNorm as its aten ops; SwiGLU's SiLU
    # an untied LM head is its own tensor
    assert next(op for op in g.ops if op.part == "lm_head").tensor not in {
        op.tensor for op in g.ops if op.kind == "embedding"}


def test_graph_json_round_trip(tiny_llama):
    again = OpGraph.from_json(tiny_llama.to_json())
    assert again.ops == tiny_llama.ops and again.tensors == tiny_llama.tensors and again.meta == tiny_llama.meta
    assert again.to_json() == tiny_llama.to_json()  # byte for byte: graph identities (and hashes) ride on it


def test_graph_meta_is_typed_and_keeps_the_tracers_json(tiny_llama):
    meta = tiny_llama.meta
    assert isinstance(meta, GraphMeta) and meta.phase == "decode" and meta.traced_with.tracer == TRACER_VERSION
    d = json.loads(tiny_llama.to_json())["meta"]
    # the order the tracer wrote before the meta was typed; an unset field is left out, the position
    # limit and window are always written (None where the config names none)
    assert list(d) == ["layers", "heads", "kv_heads", "head_dim", "d_model", "vocab", "context", "model_type",
                       "traced_with", "max_positions", "sliding_window"]
    assert list(d["traced_with"]) == ["torch", "transformers", "tracer", "cache_lengths"]
    identity = json.loads(tiny_llama.identity_json())["meta"]["traced_with"]
    assert list(identity) == ["tracer", "cache_lengths"]  # the libraries' versions are not what the graph is
    with pytest.raises(ValueError, match="unknown graph meta key.*bogus"):
        GraphMeta.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="graph phase"):
        GraphMeta(phase="prefill")


def test_traced_graph_is_cached_by_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    card = load_card(write_card(tmp_path, "tiny", "gpt2", TINY_GPT2))
    first = traced_graph(card)
    files = list((tmp_path / "cache" / "pimsim" / "graphs").glob("gpt2-*.json"))
    assert len(files) == 1
    renamed = load_card(write_card(tmp_path, "other-name", "gpt2", TINY_GPT2))
    second = traced_graph(renamed)  # same shapes: from the cache, under its own name
    assert second.model == "other-name" and second.ops == first.ops
    files[0].write_text("{not json")  # a damaged cache entry is traced again
    assert traced_graph(card).ops == first.ops


def test_bundled_gpt2_parameter_count():
    g = traced_graph(load_card("gpt2"))
    # 124 M: wte 50257 x 768, wpe 1024 x 768, and 12 blocks of c_attn, c_proj, c_fc, c_proj
    assert g.weight_elements() == 50257 * 768 + 1024 * 768 + 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072)


def test_unknown_model_type_is_a_clear_error(tmp_path):
    card = load_card(write_card(tmp_path, "x", "not-a-model", {"n_layer": 2}))
    with pytest.raises(PimsimError, match="not-a-model"):
        trace_card(card)


def test_cached_graph_takes_the_cards_own_context(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    long = load_card(write_card(tmp_path, "long", "gpt2", TINY_GPT2, context=64))
    assert traced_graph(long).meta.context == 64
    short = load_card(write_card(tmp_path, "short", "gpt2", TINY_GPT2, context=20))
    assert traced_graph(short).meta.context == 20  # same shapes, from the cache, its own context


def test_context_beyond_the_models_positions_is_refused(tmp_path):
    card = load_card(write_card(tmp_path, "wide", "gpt2", {**TINY_GPT2, "n_positions": 32}, context=64))
    with pytest.raises(PimsimError, match="longer than the model's 32 positions"):
        traced_graph(card, use_cache=False)


@pytest.mark.parametrize("bad, message", [({"activation_function": "foo"}, "cannot build"),
                                          ({"n_head": 0}, "cannot build|failed")])
def test_cards_transformers_rejects_are_clear_errors(tmp_path, bad, message):
    card = load_card(write_card(tmp_path, "bad", "gpt2", {**TINY_GPT2, **bad}))
    with pytest.raises(PimsimError, match=message):
        trace_card(card)


TINY_MISTRAL = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=96, vocab_size=300, max_position_embeddings=256)


@pytest.mark.parametrize("config, window", [({"sliding_window": 128}, 128),  # the window covers the context
                                            ({"sliding_window": "null"}, None)])
def test_a_window_that_covers_the_context_is_exact(tmp_path, config, window):
    card = load_card(write_card(tmp_path, "win", "mistral", {**TINY_MISTRAL, **config}, context=128))
    assert traced_graph(card, use_cache=False).meta.sliding_window == window


def test_qwen2_window_switched_off_is_full_attention(tmp_path):
    cfg = {**TINY_MISTRAL, "sliding_window": 16, "use_sliding_window": "false"}
    card = load_card(write_card(tmp_path, "q", "qwen2", cfg, context=128))
    assert traced_graph(card, use_cache=False).meta.sliding_window is None


def test_unmapped_op_names_the_op_and_the_layer(tmp_path):
    """Before, only the aten names ('pow, stack' for GPT-J), with no hint of where."""
    card = load_card(write_card(tmp_path, "m", "gpt2", {**TINY_GPT2, "activation_function": "mish"}))
    with pytest.raises(PimsimError, match=r"mish \(first in transformer\.h\.0\.mlp\.act\)"):
        trace_card(card)


def test_integer_powers_and_stacks_of_activations_are_asic_work(tmp_path):
    """GPT-J: its GELU cubes (x ** 3 as two multiplies) and its rotary embedding stacks halves."""
    card = load_card(write_card(tmp_path, "j", "gptj", {"n_layer": 2, "n_embd": 64, "n_head": 4, "rotary_dim": 8,
                                                        "vocab_size": 300, "n_positions": 256,
                                                        "bos_token_id": 0, "eos_token_id": 0}, context=128))
    graph = trace_card(card)
    cube = [op for op in graph.ops if op.layer == 0 and op.name.endswith("mlp.act:pow")]
    assert len(cube) == 2 and all(op.asic_kind == "mul" and op.elements == 256 for op in cube)
    assert cube[1].inputs == [cube[0].output]  # x*x, then (x*x)*x
    assert any(op.kind == "join" and op.name.endswith(":stack") for op in graph.ops)
