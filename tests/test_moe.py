"""Mixture of experts: the tracer finds the router and the expert GEMVs by structure, a run reads only the
experts its routing picks (checked in counted commands), seeded routing is deterministic, a routing trace
is checked line by line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_card

from pimsim.config import load_hardware
from pimsim.engine.decode import DecodeSimulation
from pimsim.errors import ConfigError, PimsimError
from pimsim.runs import run_model
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import expert_tensor
from pimsim.workloads.routing import MoeShape, Router, RoutingSpec
from pimsim.workloads.tracer import traced_graph

TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, vocab_size=300, max_position_embeddings=256)
MOE = {"mixtral": dict(num_local_experts=8),
       "qwen2_moe": dict(num_experts=8, moe_intermediate_size=32, shared_expert_intermediate_size=48),
       "olmoe": dict(num_experts=8)}
PROMPT, TOKENS = 8, 4


def _card(tmp_path, model_type="mixtral", top_k=2, extra=""):
    config = {**TINY, **MOE[model_type], "num_experts_per_tok": top_k}
    return load_card(write_card(tmp_path, f"{model_type}-k{top_k}", model_type, config, context=128, extra=extra))


@pytest.fixture(scope="module")
def top2(tmp_path_factory):
    return _card(tmp_path_factory.mktemp("k2"), top_k=2)


@pytest.fixture(scope="module")
def top4(tmp_path_factory):
    return _card(tmp_path_factory.mktemp("k4"), top_k=4)


@pytest.mark.parametrize("model_type", sorted(MOE))
def test_router_and_expert_gemvs_are_found_without_family_code(tmp_path, model_type):
    graph = traced_graph(_card(tmp_path, model_type), use_cache=False)
    assert graph.meta.moe == MoeShape((0, 1), 8, 2)
    for layer in (0, 1):
        routers = [op for op in graph.ops if op.kind == "router" and op.layer == layer]
        experts = [op for op in graph.ops if op.kind == "expert_gemv" and op.layer == layer]
        assert len(routers) == 1 and routers[0].experts == 8 and routers[0].top_k == 2
        assert len(experts) == 2  # the gate/up projection and the down projection
        up, down = experts
        assert up.cols == down.rows == 64 and up.rows == 2 * down.cols  # gate and up stacked
        gate = [op for op in graph.ops if op.part == "router" and op.kind == "gemv" and op.layer == layer]
        assert len(gate) == 1 and gate[0].rows == 8 and gate[0].cols == 64
        # the experts wait for the router's choice
        assert routers[0].output in up.inputs
        for op in experts:
            assert all(graph.tensors[expert_tensor(op.tensor, e)] == {"rows": op.rows, "cols": op.cols}
                       for e in range(8))


def _macs(result: dict) -> int:
    return result["commands"].get("MACAB", 0) + result["commands"].get("MACSB", 0)


def test_only_the_active_experts_weights_are_read(top2, top4):
    """Going from top-2 to top-4 of 8 adds exactly two more experts' MAC commands per MoE op per token,
    and the bytes the bound counts for the experts are exactly top_k / 8 of all the experts' bytes."""
    hw = load_hardware("hbm-pim.yaml")
    runs = {k: run_model(hw, card, prompt_len=PROMPT, gen_tokens=TOKENS) for k, card in ((2, top2), (4, top4))}
    sim = DecodeSimulation(hw, traced_graph(top2), PROMPT, TOKENS)
    ops = [op for op in sim.graph.ops if op.kind == "expert_gemv"]
    per_expert = {op.tensor: int((sim.map.gemv(expert_tensor(op.tensor, 0)).cmd
                                  == sim.compiled.command_names.index("MACAB")).sum()) for op in ops}
    assert all(v > 0 for v in per_expert.values())
    assert _macs(runs[4]) - _macs(runs[2]) == TOKENS * 2 * sum(per_expert.values())
    access = hw.dram.organization.access_bytes * sim.map.geometry.units
    assert runs[4]["bytes_internal"] - runs[2]["bytes_internal"] == TOKENS * 2 * sum(per_expert.values()) * access
    g = sim.map.geometry
    stored = sum(op.experts * op.rows * op.cols for op in ops) * g.operand_bytes
    dense = sum(op.rows * op.cols * sim.map.tensor_geometry(op.tensor).operand_bytes
                for op in sim.graph.ops if op.kind == "gemv")
    assert sim.map.gemv_bytes() - dense == stored * 2 / 8
    # twice the experts, twice their time, where refreshes do not land differently (fast fidelity follows
    # the refresh clock, which the longer expert ops move)
    quiet = load_hardware("hbm-pim.yaml", ["dram.refresh.enabled=false"])
    off = {k: run_model(quiet, card, prompt_len=PROMPT, gen_tokens=TOKENS) for k, card in ((2, top2), (4, top4))}
    assert off[4]["breakdown_s"]["experts"] == pytest.approx(2 * off[2]["breakdown_s"]["experts"], rel=1e-3)
    assert runs[4]["breakdown_s"]["experts"] == pytest.approx(2 * runs[2]["breakdown_s"]["experts"], rel=0.01)
    assert runs[4]["latency_per_token_s"] > runs[2]["latency_per_token_s"]


def test_each_layer_reads_the_experts_its_router_picked(top2):
    """Fast fidelity must not share one layer's expert steps with another's: each stream sits at the
    rows of an expert that layer's routing chose for that token."""
    sim = DecodeSimulation(load_hardware("hbm-pim.yaml"), traced_graph(top2), PROMPT, TOKENS)
    for position in range(PROMPT, PROMPT + TOKENS):
        for op in (op for op in sim.graph.ops if op.kind == "expert_gemv"):
            chosen = sim.router.experts(op.layer, position)
            rows = [s.stream.row_offset for s in sim.steps(op, position, position + 1) if s.stream is not None]
            assert rows == [sim.map.tables[expert_tensor(op.tensor, e)].first_row for e in chosen]
    a = run_model("hbm-pim.yaml", top2, prompt_len=PROMPT, gen_tokens=TOKENS)
    assert a["experts"]["tokens"] == TOKENS and a["experts"]["routing"] == "uniform (seed 0)"
    assert all(sum(v) == TOKENS * 2 for v in a["experts"]["tokens_per_expert"].values())


SHAPE = MoeShape((0, 1, 2), 16, 4)


@pytest.mark.parametrize("spec", [RoutingSpec("uniform", 3), RoutingSpec("zipf", 3, 1.5)])
def test_seeded_routing_is_deterministic_and_order_free(spec):
    a, b = Router(spec, SHAPE, 100), Router(spec, SHAPE, 100)
    forward = [a.experts(layer, p) for layer in SHAPE.layers for p in range(100, 140)]
    backward = [b.experts(layer, p) for layer in reversed(SHAPE.layers) for p in reversed(range(100, 140))]
    assert forward == list(reversed(backward))
    assert all(len(set(c)) == 4 and all(0 <= e < 16 for e in c) for c in forward)
    other = Router(RoutingSpec(spec.model, 4, spec.skew), SHAPE, 100)
    assert forward != [other.experts(layer, p) for layer in SHAPE.layers for p in range(100, 140)]


def test_zipf_skew_concentrates_tokens_on_few_experts():
    uniform = Router(RoutingSpec("uniform", 1), SHAPE, 0).report(range(2000))
    zipf = Router(RoutingSpec("zipf", 1, 2.0), SHAPE, 0)
    skewed = zipf.report(range(2000))
    flat = Router(RoutingSpec("zipf", 1, 0.0), SHAPE, 0).report(range(2000))
    assert uniform["imbalance_max"] < 1.2 and flat["imbalance_max"] < 1.2
    assert skewed["imbalance_max"] > 2.0
    counts = np.array(skewed["tokens_per_expert"]["0"])
    assert counts.sum() == 2000 * 4 and counts.max() > 3 * 2000 * 4 / 16  # over 3x an even share
    assert counts.argmax() == zipf._ranking(0)[0]  # the layer's first-ranked expert is its hottest


def _trace(tmp_path, rows, header="token,layer,experts"):
    path = tmp_path / "routing.csv"
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def test_a_routing_trace_decides_the_experts(tmp_path, top2):
    rows = [f"{t},{layer},{(t + layer) % 8} {(t + layer + 3) % 8}" for t in range(TOKENS) for layer in (0, 1)]
    path = _trace(tmp_path, rows)
    card = _card(tmp_path, extra=f"experts: {{routing: trace, trace: {path}}}\n")
    r = run_model("hbm-pim.yaml", card, prompt_len=PROMPT, gen_tokens=TOKENS)
    want = np.zeros(8, int)
    for t in range(TOKENS):
        want[[t % 8, (t + 3) % 8]] += 1
    assert r["experts"]["tokens_per_expert"]["0"] == want.tolist()
    assert len(r["experts"]["trace_sha256"]) == 64
    seeded = run_model("hbm-pim.yaml", top2, prompt_len=PROMPT, gen_tokens=TOKENS)
    assert r["config_hash"] != seeded["config_hash"]


@pytest.mark.parametrize("rows, header, message", [
    (["0,0,1 2"], "tok,layer,experts", "expected the header 'token,layer,experts'"),
    (["0,0,1"], None, "1 experts [1]; each token picks 2 distinct experts"),
    (["0,0,1 1"], None, "each token picks 2 distinct experts"),
    (["0,0,1 9"], None, "experts [1, 9] outside 0..7"),
    (["0,5,1 2"], None, "layer 5 is not an MoE layer"),
    (["0,0,1 2", "0,0,3 4"], None, "a second row for token 0, layer 0"),
    (["x,0,1 2"], None, "must be integers"),
    (["0,0,1 2", "0,1,1 2"], None, "no row for generated token 1, layer 0"),
])
def test_a_bad_routing_trace_is_a_clear_error(tmp_path, rows, header, message):
    path = _trace(tmp_path, rows, header or "token,layer,experts")
    card = _card(tmp_path, extra=f"experts: {{routing: trace, trace: {path}}}\n")
    with pytest.raises(PimsimError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_model("hbm-pim.yaml", card, prompt_len=PROMPT, gen_tokens=TOKENS)


def test_a_trace_file_goes_with_trace_routing(tmp_path):
    with pytest.raises(ConfigError, match="experts.trace"):
        _card(tmp_path, extra="experts: {routing: trace}\n")
    with pytest.raises(ConfigError, match="experts.trace"):
        _card(tmp_path, extra="experts: {routing: uniform, trace: r.csv}\n")
    with pytest.raises(PimsimError, match="no such file"):
        run_model("hbm-pim.yaml", _card(tmp_path, extra="experts: {routing: trace, trace: /nonexistent.csv}\n"),
                  prompt_len=PROMPT, gen_tokens=TOKENS)


@pytest.mark.parametrize("name, experts, top_k, stored, active", [
    ("mixtral-8x7b", 8, 2, 46.70, 12.75), ("qwen1.5-moe-a2.7b", 60, 4, 14.32, 2.38),
    ("olmoe-1b-7b", 64, 8, 6.92, 1.18)])
def test_bundled_moe_cards(name, experts, top_k, stored, active):
    """Published sizes: Mixtral 46.7 B weights, Qwen1.5-MoE 14.3 B, OLMoE 6.9 B; the active figures leave
    out the embedding table (read a row at a time)."""
    graph = traced_graph(load_card(name))
    assert graph.meta.moe.experts == experts and graph.meta.moe.top_k == top_k
    assert round(graph.weight_elements() / 1e9, 2) == stored
    assert round(graph.gemv_elements() / 1e9, 2) == active


def _grouped(tmp_path, placement):
    return _card(tmp_path, extra=f"experts: {placement}\n")


def test_experts_on_channel_groups_read_the_same_weights_on_their_own_channels(tmp_path, top2):
    hw = load_hardware("gddr6-aim.yaml")
    spread = run_model(hw, top2, prompt_len=PROMPT, gen_tokens=TOKENS)
    card = _grouped(tmp_path, "{placement: channel_groups, channel_groups: 4}")
    grouped = run_model(hw, card, prompt_len=PROMPT, gen_tokens=TOKENS)
    assert _macs(grouped) == _macs(spread)  # the same experts' weights, placed elsewhere
    sim = DecodeSimulation(hw, traced_graph(card), PROMPT, TOKENS, routing=card.routing())
    assert sim.map.expert_groups == 4
    c = sim.compiled
    op = next(op for op in sim.graph.ops if op.kind == "expert_gemv")
    for expert in range(8):
        stream = sim.map.experts_stream(op.tensor, (expert,))
        channels = set(np.asarray(c.channel_of(stream.node)).tolist())
        assert channels == {2 * (expert % 4), 2 * (expert % 4) + 1}  # group e mod 4: two of the 8 channels
        assert stream.to_pim_bytes.sum() == stream.to_pim_bytes[sorted(channels)].sum()
    # experts 0 and 4 share group 0's rows (one block), each in its own channels
    a, b = (sim.map.tables[expert_tensor(op.tensor, e)] for e in (0, 4))
    assert a.first_row != b.first_row
    assert sim.map.tables[expert_tensor(op.tensor, 1)].first_row == a.first_row


def test_experts_of_one_group_take_turns_and_of_different_groups_run_together(tmp_path):
    """A routing trace sends every token to experts 0 and 1 (groups 0 and 1) or 0 and 4 (both group 0)."""
    hw = load_hardware("gddr6-aim.yaml")
    times = {}
    for pair in ((0, 1), (0, 4)):
        path = tmp_path / f"r{pair[1]}.csv"
        path.write_text("token,layer,experts\n" + "".join(f"{t},{layer},{pair[0]} {pair[1]}\n"
                                                           for t in range(TOKENS) for layer in (0, 1)))
        card = _grouped(tmp_path, f"{{placement: channel_groups, channel_groups: 4, routing: trace, trace: {path}}}")
        r = run_model(hw, card, prompt_len=PROMPT, gen_tokens=TOKENS)
        times[pair] = r["breakdown_s"]["experts"]
        assert r["experts"]["imbalance_max"] == 4.0  # 2 of 8 experts take every token: 4x the mean
    assert times[(0, 4)] > 1.5 * times[(0, 1)]


@pytest.mark.parametrize("hw, placement, message", [
    ("gddr6-aim.yaml", "{placement: channel_groups, channel_groups: 3}", "must divide the 8 channels"),
    ("hbm-pim.yaml", "{placement: channel_groups}", "hbm-pim uses mapping.gemv hbm_pim_gemv"),
])
def test_bad_expert_placements_are_clear_errors(tmp_path, hw, placement, message):
    with pytest.raises(PimsimError, match=message):
        run_model(hw, _grouped(tmp_path, placement), prompt_len=PROMPT, gen_tokens=TOKENS)
    with pytest.raises(ConfigError, match="experts.channel_groups"):
        _grouped(tmp_path, "{channel_groups: 2}")


def test_grouped_experts_pass_the_protocol_checker(tmp_path):
    card = _grouped(tmp_path, "{placement: channel_groups, channel_groups: 4}")
    r = run_model("gddr6-aim.yaml", card, prompt_len=PROMPT, gen_tokens=3, fidelity="cycle", check_protocol=True)
    assert r["protocol_check"]["violations"] == 0 and r["protocol_check"]["commands_checked"] > 0


def test_moe_models_in_batches_with_a_prefill_or_on_several_devices_are_refused_by_name(top2):
    """Each sequence (and each prompt token) would route its own experts, and several devices would need
    expert parallelism: none is simulated yet, so each is refused rather than timed as something else."""
    from pimsim.system.shard import tensor_shard

    hw = load_hardware("gddr6-aim.yaml")
    with pytest.raises(PimsimError, match="batches of a mixture-of-experts model are not simulated yet"):
        run_model(hw, top2, PROMPT, TOKENS, batch=2)
    with pytest.raises(PimsimError, match="prefill of a mixture-of-experts model is not simulated yet"):
        run_model(hw, top2, PROMPT, TOKENS, prefill="pim")
    for tp in (1, 2):
        with pytest.raises(PimsimError, match="several devices do not run mixture-of-experts models yet"):
            tensor_shard(traced_graph(top2), tp)
