"""Sliding-window attention: a windowed layer's q.K^T, p.V and softmax cover min(context, window) tokens,
its KV cache is a ring of that many tokens, and full-attention layers beside it are untouched."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_card

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.decode import DecodeSimulation
from pimsim.errors import PimsimError
from pimsim.mapper.model import ModelMap
from pimsim.runs import run_model
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, vocab_size=300, max_position_embeddings=4096)
PROMPT, WINDOW = 2048, 128


def _graph(tmp_path, model_type, **extra):
    card = load_card(write_card(tmp_path, f"{model_type}-w", model_type, {**TINY, **extra}, context=4096))
    return card, traced_graph(card, use_cache=False)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    return _graph(tmp_path_factory.mktemp("w"), "mistral", sliding_window=WINDOW)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return _graph(tmp_path_factory.mktemp("f"), "mistral", sliding_window="null")


def test_every_mistral_layer_is_windowed_and_its_attention_ops_carry_the_window(windowed):
    _, g = windowed
    assert g.meta.windowed_layers == (0, 1) and g.layer_windows() == {0: WINDOW, 1: WINDOW}
    attention = [op for op in g.ops if op.kind in ("scores", "context", "kv_append")]
    assert attention and all(op.window == WINDOW for op in attention)
    growing = [op for op in g.ops if op.kind == "asic" and op.elements_per_token]
    assert growing and all(op.window == WINDOW for op in growing)  # the softmax and the score scaling
    assert all(op.window == 0 for op in g.ops if op.kind == "gemv")


def test_gemma2_alternates_windowed_and_full_layers(tmp_path):
    _, g = _graph(tmp_path, "gemma2", sliding_window=WINDOW, head_dim=16, num_hidden_layers=4)
    assert g.layer_windows() == {0: WINDOW, 2: WINDOW}
    assert {op.layer for op in g.ops if op.kind == "scores" and not op.window} == {1, 3}


def test_window_and_no_window_differ_at_a_long_prompt(windowed, full):
    w = run_model("hbm-pim.yaml", windowed[0], prompt_len=PROMPT, gen_tokens=2)
    f = run_model("hbm-pim.yaml", full[0], prompt_len=PROMPT, gen_tokens=2)
    attention = ("attn_scores", "attn_context", "softmax")
    assert sum(w["breakdown_s"][p] for p in attention) < sum(f["breakdown_s"][p] for p in attention) / 4
    # the weights are the same: so is their time, to the picosecond without refresh (with it, fast fidelity
    # follows the refresh clock, and the shorter attention puts refreshes elsewhere)
    quiet = ["dram.refresh.enabled=false"]
    w, f = (run_model("hbm-pim.yaml", m[0], prompt_len=PROMPT, gen_tokens=2, overrides=quiet) for m in (windowed, full))
    for part in ("qkv", "ffn", "lm_head"):
        assert w["breakdown_s"][part] == f["breakdown_s"][part]


def test_windowed_streams_cover_exactly_the_window(windowed, full):
    """At position 2048 a windowed layer's steps are the same as at a context of 128 (its full ring); the
    full-attention model's cover all 2049 tokens."""
    hw = load_hardware("hbm-pim.yaml")
    sim = DecodeSimulation(hw, windowed[1], PROMPT, 2, fidelity="cycle")
    heads = windowed[1].meta.heads
    assert all(sim.map.kv[layer].max_context == WINDOW for layer in (0, 1))
    for op in windowed[1].ops:
        if op.kind not in ("scores", "context", "asic") or (op.kind == "asic" and not op.elements_per_token):
            continue
        long = sim.steps(op, PROMPT, PROMPT + 1)
        at_window = sim.steps(op, WINDOW - 1, WINDOW)
        assert [s.ps for s in long] == [s.ps for s in at_window]
        for a, b in zip(long, at_window):
            assert (a.stream is None) == (b.stream is None)
            if a.stream is not None:
                assert np.array_equal(a.stream.cmd, b.stream.cmd) and a.stream.outputs == b.stream.outputs
        if op.kind == "scores":
            assert long[1].stream.outputs == heads * WINDOW
    dense = DecodeSimulation(hw, full[1], PROMPT, 2, fidelity="cycle")
    op = next(op for op in full[1].ops if op.kind == "scores")
    assert dense.steps(op, PROMPT, PROMPT + 1)[1].stream.outputs == heads * (PROMPT + 1)


def test_the_ring_reuses_its_slots_and_the_kv_cache_stops_growing(windowed, full):
    hw = load_hardware("hbm-pim.yaml")
    c = compile_standard(hw)
    ring = ModelMap(hw, c, windowed[1], PROMPT + 2)
    for token in (PROMPT, PROMPT + 1, 5 * WINDOW + 3):
        for which in "kv":
            a, b = ring.append(1, token, which), ring.append(1, token % WINDOW, which)
            assert np.array_equal(a.rows(), b.rows()) and np.array_equal(a.cmd, b.cmd)
    dense = ModelMap(hw, c, full[1], PROMPT + 2)
    assert ring.rows_used < dense.rows_used
    m = windowed[1].meta
    assert windowed[1].kv_elements(PROMPT + 1) == 2 * 2 * m.kv_heads * m.head_dim * WINDOW
    assert full[1].kv_elements(PROMPT + 1) == 2 * 2 * m.kv_heads * m.head_dim * (PROMPT + 1)


def test_within_the_window_windowed_and_full_attention_time_the_same(windowed, full):
    """Up to the window every token is attended either way: the same per-token times."""
    w = run_model("hbm-pim.yaml", windowed[0], prompt_len=16, gen_tokens=2)
    f = run_model("hbm-pim.yaml", full[0], prompt_len=16, gen_tokens=2)
    assert w["latency_per_token_s"] == f["latency_per_token_s"]


def test_a_window_shorter_than_the_traced_cache_is_refused(tmp_path):
    card = load_card(write_card(tmp_path, "w4", "mistral", {**TINY, "sliding_window": 4}, context=64))
    with pytest.raises(PimsimError, match="sliding window of 4 tokens is shorter than the 8 cached tokens"):
        traced_graph(card, use_cache=False)


@pytest.mark.parametrize("name, windows", [("gemma-2-2b", {layer: 4096 for layer in range(0, 26, 2)}),
                                           ("mistral-7b-v0.1", {layer: 4096 for layer in range(32)}),
                                           ("mistral-7b", {})])
def test_bundled_cards_have_their_real_windows(name, windows):
    card = load_card(name)
    graph = traced_graph(card)
    assert graph.layer_windows() == windows
    assert card.context == graph.meta.max_positions  # no longer capped at the window


def test_a_wrapped_ring_passes_the_protocol_checker(tmp_path):
    """Past the window the appends overwrite ring slots; the commands still obey the protocol."""
    card = load_card(write_card(tmp_path, "w16", "mistral", {**TINY, "sliding_window": 16}, context=256))
    r = run_model("gddr6-aim.yaml", card, prompt_len=40, gen_tokens=3, fidelity="cycle", check_protocol=True)
    assert r["protocol_check"]["violations"] == 0 and r["protocol_check"]["commands_checked"] > 0


def test_a_cached_graph_without_its_windows_is_traced_again(tmp_path, monkeypatch):
    """A windowed model's graph cached before the tracer recorded windows would time full attention."""
    import hashlib
    import json

    from pimsim.workloads import tracer

    monkeypatch.setattr(tracer, "cache_dir", lambda: tmp_path / "cache")
    card = load_card(write_card(tmp_path, "w", "mistral", {**TINY, "sliding_window": WINDOW}, context=4096))
    graph = traced_graph(card)
    (path,) = (tmp_path / "cache").glob("*.json")
    old = json.loads(graph.to_json())
    del old["meta"]["windowed_layers"]
    for op in old["ops"]:
        op.pop("window", None)
    text = json.dumps(old)
    path.write_text(json.dumps({"format": tracer.CACHE_FORMAT, "key": path.stem,
                                "sha256": hashlib.sha256(text.encode()).hexdigest(), "graph": text}))
    again = traced_graph(card)
    assert again.layer_windows() == {0: WINDOW, 1: WINDOW}


def test_a_window_as_long_as_the_context_is_left_out(tmp_path):
    """No run of such a card is longer than its window: its graph (and config hash) are full attention's,
    as phi-3-mini's were before windows were modelled."""
    card = load_card(write_card(tmp_path, "w128", "mistral", {**TINY, "sliding_window": WINDOW}, context=WINDOW))
    graph = traced_graph(card, use_cache=False)
    assert graph.layer_windows() == {} and graph.meta.windowed_layers is None
    assert "windowed_layers" not in graph.meta.to_dict()
    assert all(op.window == 0 for op in graph.ops) and graph.meta.sliding_window == WINDOW


def test_qwen2_windows_only_its_upper_layers(tmp_path):
    """Qwen 2 with use_sliding_window: layers from max_window_layers up attend over the window."""
    _, g = _graph(tmp_path, "qwen2", sliding_window=WINDOW, use_sliding_window="true", max_window_layers=2,
                  num_hidden_layers=4)
    assert g.layer_windows() == {2: WINDOW, 3: WINDOW}
