"""Speculative decoding on PIM: k = 0 is plain decoding, accepted counts follow the acceptance model,
verify steps batch their GEMVs, the policies and placements behave, and bad specs are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_GPT2, write_card

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.specdec import SpecDecRun, layer_skipped, split_channels
from pimsim.errors import ConfigError, PimsimError
from pimsim.runs import run_model, run_specdec
from pimsim.workloads.acceptance import RateAcceptance, expected_tokens_per_step
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.specdec import load_spec, parse_spec
from pimsim.workloads.tracer import traced_graph

AIM = "gddr6-aim.yaml"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny target (2 layers) and draft (1 layer) with a long context, as card paths."""
    folder = tmp_path_factory.mktemp("cards")
    big = dict(TINY_GPT2, n_positions=1024)
    target = write_card(folder, "tiny-target", "gpt2", big, context=1024)
    draft = write_card(folder, "tiny-draft", "gpt2", dict(big, n_layer=1), context=1024)
    return str(target), str(draft)


def spec(pair, **extra) -> str:
    target, draft = pair
    return ",".join([f"target={target}", f"draft={draft}", *(f"{k}={v}" for k, v in extra.items())])


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_k_zero_is_plain_decoding_to_the_picosecond(pair, fidelity):
    r = run_specdec(load_hardware(AIM), parse_spec(spec(pair, k=0, alpha=0.5)), 8, 6, fidelity)
    plain = run_model(AIM, pair[0], 8, 6, fidelity=fidelity)
    assert r["total_time_s"] == plain["total_time_s"] and r["speedup_over_autoregressive"] == 1.0
    assert r["kept"] == [1] * 6 and r["time_s"]["draft"] == 0


def test_accepted_counts_follow_the_seeded_acceptance_model_exactly(pair):
    r = run_specdec(load_hardware(AIM), parse_spec(spec(pair, k=3, alpha=0.7, seed=11)), 8, 40)
    model = RateAcceptance(0.7, 11)
    rounds = SpecDecRun(load_hardware(AIM), parse_spec(spec(pair, k=3, alpha=0.7, seed=11)), 8, 40)
    drafts = [r2["drafts"] for r2 in rounds._vanilla()]
    assert r["accepted"] == [model.accepted(k) for k in drafts]
    assert sum(r["kept"]) == 40 and all(k == a + 1 for k, a in zip(r["kept"][:-1], r["accepted"][:-1]))


def test_mean_tokens_per_verify_step_approaches_the_closed_form(pair):
    alpha, k = 0.75, 3
    r = run_specdec(load_hardware(AIM), parse_spec(spec(pair, k=k, alpha=alpha, seed=2)), 0, 900)
    full = [kept for kept, drafts in zip(r["kept"], r["drafts"]) if drafts == k]  # not the capped last rounds
    want = expected_tokens_per_step(alpha, k)
    # ~300 verify steps, each with a standard deviation under 1.2 tokens: within 3 sigma of the mean
    assert np.mean(full) == pytest.approx(want, abs=3 * 1.2 / np.sqrt(len(full)))
    assert r["expected_tokens_per_verify_step"] == pytest.approx(want)


def test_a_verify_step_batches_its_gemvs_and_a_wider_buffer_makes_it_cheaper():
    graph = traced_graph(load_card("gpt2"))
    cost = {}
    for vectors in (1, 8):
        sim = DecodeSimulation(load_hardware(AIM, [f"pim.buffer_vectors={vectors}"]), graph, 16, 8)
        one = sim.advance(sim.verify_steps(16, 1), 0, dict.fromkeys(PARTS, 0))
        five = sim.advance(sim.verify_steps(16, 5), 0, dict.fromkeys(PARTS, 0))
        cost[vectors] = five / one
    # a one-vector buffer: the whole GEMV again per token (vector-major), about 5x; eight vectors held at
    # once: each row opened once for all five, clearly less
    assert 4.8 < cost[1] < 5.1 and cost[8] < 0.8 * cost[1]


def test_same_placement_shares_the_memory_and_places_the_draft_after_the_target():
    graph = traced_graph(load_card("gpt2"))
    hw = load_hardware(AIM)
    target = DecodeSimulation(hw, graph, 8, 4)
    draft = DecodeSimulation(hw, traced_graph(load_card("gpt2")), 8, 4, share=target)
    assert draft.timing is target.timing and draft.map.base_row == target.map.rows_used
    assert min(t.first_row for t in draft.map.tables.values()) >= target.map.rows_used


def test_group_placement_splits_the_channels():
    t, d = split_channels(load_hardware(AIM), 2)
    assert (t.dram.organization.channels, d.dram.organization.channels) == (6, 2)
    with pytest.raises(PimsimError, match="leave the target at least one"):
        split_channels(load_hardware(AIM), 8)


def test_pearl_overlaps_drafting_and_verifying(pair):
    hw = load_hardware(AIM)
    vanilla = run_specdec(hw, parse_spec(spec(pair, k=4, alpha=0.9, placement="group", draft_channels=2)), 8, 30)
    pearl = run_specdec(hw, parse_spec(spec(pair, k=4, alpha=0.9, placement="group", draft_channels=2,
                                            policy="pearl")), 8, 30)
    assert sum(pearl["kept"]) == 30 and pearl["total_time_s"] < vanilla["total_time_s"]
    # busy time of the two models together exceeds the wall time only when they overlap
    assert pearl["time_s"]["draft"] + pearl["time_s"]["verify"] > pearl["total_time_s"]
    assert vanilla["time_s"]["draft"] + vanilla["time_s"]["verify"] == pytest.approx(vanilla["total_time_s"])


def test_asic_placement_is_a_labelled_roofline(pair):
    r = run_specdec(load_hardware(AIM), parse_spec(spec(pair, k=2, alpha=0.8, placement="asic")), 8, 6)
    assert r["asic_draft"]["reads"] > 0 and "roofline" in r["asic_draft"]["method"]
    assert r["energy_by_model_J"]["draft"] > 0


def test_spec_dec_energy_counts_both_models(pair):
    hw = load_hardware(AIM)
    r = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8)), 8, 12)
    assert r["energy_per_token_J"] > 0 and r["energy_ratio_over_autoregressive"] > 0
    g = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8, placement="group", draft_channels=4)), 8, 12)
    assert set(g["energy_by_model_J"]) == {"target", "draft"}


def test_bad_specs_list_their_problems(pair):
    with pytest.raises(ConfigError) as err:
        parse_spec("target=gpt2,k=4,policy=pearl,alfa=1")
    assert "alfa: unknown" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_spec("target=gpt2,k=4,policy=pearl")
    text = str(err.value)
    for bit in ("exactly one of alpha", "draft", "needs placement group", "needs alpha"):
        assert bit in text
    with pytest.raises(ConfigError, match="acceptance.alpha"):
        parse_spec(spec(pair, alpha=1.5))
    with pytest.raises(PimsimError, match="more than its context"):
        run_specdec(load_hardware(AIM), parse_spec("target=gpt2,draft=gpt2,k=8,alpha=0.5"), 1010, 10)


def test_bundled_spec_dec_cards_load():
    assert load_spec("gpt2-xl-spec-gpt2").draft == "gpt2"
    pearl = load_spec("gpt2-large-pearl-gpt2")
    assert (pearl.policy, pearl.placement, pearl.draft_channels) == ("pearl", "group", 2)
    assert load_spec("smollm2-self-spec").acceptance.measure.draft_layers == 20


def test_layer_skipped_draft_keeps_the_first_layers():
    card = layer_skipped(load_card("smollm2-135m"), 20)
    assert card.hf.config["num_hidden_layers"] == 20 and card.name == "smollm2-135m-first20"
    assert layer_skipped(load_card("gpt2"), 3).hf.config["n_layer"] == 3


def test_trace_acceptance_replays_recorded_counts(pair, tmp_path):
    path = tmp_path / "acc.txt"
    path.write_text("2\n0\n1\n")
    r = run_specdec(load_hardware(AIM), parse_spec(spec(pair, k=2, trace=str(path))), 8, 8)
    assert r["accepted"][:3] == [2, 0, 1] and r["acceptance"]["kind"] == "trace"


def test_spec_dec_through_the_cli(pair, capsys):
    rc = main(["run", "--hw", AIM, "--spec-dec", spec(pair, k=2, alpha=0.8), "--gen-tokens", "6", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["tokens"] == 6 and "config" in out and "speedup_over_autoregressive" in out
    rc = main(["run", "--hw", AIM, "--spec-dec", spec(pair, k=2, alpha=0.8), "--gen-tokens", "6"])
    assert rc == 0 and "speed-up" in capsys.readouterr().out
    rc = main(["run", "--hw", AIM, "--spec-dec", spec(pair, k=2, alpha=0.8), "--functional"])
    assert rc == 2 and "do not take --functional" in capsys.readouterr().err
    rc = main(["run", "--hw", AIM])
    assert rc == 2 and "needs --model" in capsys.readouterr().err


# ---- review findings --------------------------------------------------------------------------

def test_models_sharing_a_memory_do_not_share_stream_timings():
    """A draft's KV writes (another KV shape) are timed as its own, whoever ran first."""
    hw = load_hardware(AIM)

    def draft_append_ps(after_target: bool) -> int:
        target = DecodeSimulation(hw, traced_graph(load_card("gpt2-medium")), 8, 4)
        draft = DecodeSimulation(hw, traced_graph(load_card("gpt2")), 8, 4, share=target)
        if after_target:
            target.timing.run(target.map.append(0, 8, "v"), 0)
        stream = draft.map.append(0, 8, "v")
        start = 10**9
        return draft.timing.run(stream, start) - start

    assert draft_append_ps(True) == draft_append_ps(False)


def test_k_zero_with_a_quantized_card_is_that_cards_plain_run():
    r = run_specdec(load_hardware(AIM), parse_spec("target=gpt2-ternary,draft=gpt2,k=0,alpha=0.5"), 8, 3)
    plain = run_model(AIM, "gpt2-ternary", 8, 3)
    assert r["weight_format"] == "ternary" and r["total_time_s"] == plain["total_time_s"]
    with pytest.raises(PimsimError, match="draft gpt2-ternary is ternary but the target runs in bf16"):
        run_specdec(load_hardware(AIM), parse_spec("target=gpt2,draft=gpt2-ternary,k=2,alpha=0.5"), 8, 3)


def test_pearl_keeps_the_targets_own_token_after_a_fully_accepted_phase(pair):
    hw = load_hardware(AIM)
    text = dict(k=4, placement="group", draft_channels=2, policy="pearl")
    sure = run_specdec(hw, parse_spec(spec(pair, alpha=1.0, **text)), 8, 40)
    half = run_specdec(hw, parse_spec(spec(pair, alpha=0.5, **text)), 8, 40)
    # alpha 1: after the first draft phase every verify phase keeps its k - 1 pending drafts plus the
    # target's token: k tokens per target pass
    assert sure["kept"][1:-1] == [4] * (len(sure["kept"]) - 2)
    assert sure["total_time_s"] < half["total_time_s"]
    assert "expected_tokens_per_verify_step" not in sure  # the vanilla formula does not describe PEARL


def test_vanilla_lets_the_drafter_catch_up_after_an_all_accepted_round(pair):
    hw = load_hardware(AIM, ["dram.refresh.enabled=false"])  # draft steps alike, wherever refreshes land
    sure = SpecDecRun(hw, parse_spec(spec(pair, k=3, alpha=1.0)), 8, 12)
    rounds = sure._vanilla()
    # rounds after the first start with the drafter's extra step: 4 draft steps of the same length
    first, second = rounds[0]["draft_ps"], rounds[1]["draft_ps"]
    assert second > first and second == pytest.approx(first * 4 / 3, rel=0.02)


def test_spec_dec_results_are_traceable_and_energy_is_split_by_model(pair):
    hw = load_hardware(AIM)
    same = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8)), 8, 12)
    again = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8)), 8, 12)
    other = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8, seed=1)), 8, 12)
    assert same["config_hash"] == again["config_hash"] != other["config_hash"]
    assert list(same["energy_by_model_J"]) == ["target and draft (one memory)"]
    assert same["energy_total_J"] == pytest.approx(sum(same["energy_by_model_J"].values()))
    group = run_specdec(hw, parse_spec(spec(pair, k=3, alpha=0.8, placement="group", draft_channels=4)), 8, 12)
    assert group["energy_total_J"] == pytest.approx(sum(group["energy_by_model_J"].values()))


def test_an_asic_draft_must_still_fit_the_memory():
    with pytest.raises(PimsimError, match="does not fit"):
        run_specdec(load_hardware(AIM), parse_spec("target=gpt2-xl,draft=gpt2-xl,k=2,alpha=0.5,placement=asic"), 8, 2)


def test_repeated_keys_and_impossible_layer_skips_are_refused():
    with pytest.raises(ConfigError, match="k: given twice"):
        parse_spec("target=gpt2,draft=gpt2,k=2,k=3,alpha=0.5")
    with pytest.raises(PimsimError, match="keeps 1 .. 11 of its 12 layers, not 12"):
        layer_skipped(load_card("gpt2"), 12)


@pytest.mark.parametrize("name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
def test_a_multi_vector_gemv_opens_each_row_once_and_is_protocol_clean(name):
    from pimsim.dram.checker import check, issued_from_record
    from pimsim.dram.compile import compile_standard
    from pimsim.dram.kernel import run_commands
    from pimsim.mapper.gemv import gemv_program
    from pimsim.mapper.placement import Geometry, place_gemv

    c = compile_standard(load_hardware(name))
    g = Geometry.of(c.hw)
    p = place_gemv(g, 700, 1500)
    one = gemv_program(c, p, g.lanes_out)
    count = lambda prog, n: int((prog.cmd == c.command_names.index(n)).sum())  # noqa: E731
    for vectors, buffers in ((3, 1), (3, 4)):
        prog = gemv_program(c, p, g.lanes_out, vectors=vectors, buffer_vectors=buffers)
        assert count(prog, "ACTAB") == count(one, "ACTAB")
        assert count(prog, "MACAB") == vectors * count(one, "MACAB")
        assert count(prog, "RDMAC") == vectors * count(one, "RDMAC") and prog.outputs == vectors * one.outputs
        if buffers >= vectors:  # every vector's block written once per block, not per row
            assert count(prog, "WRGB") == vectors * count(one, "WRGB")
        _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                      np.zeros(len(prog), np.int64), record=True)
        assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []
