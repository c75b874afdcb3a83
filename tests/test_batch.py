"""Batched decode and the multi-vector PIM datapath: batch 1 is today's decode exactly, a batch's GEMVs
multiply every sequence's vector (B MAC passes on a one-vector datapath, fewer on a wider one),
attention runs per sequence over its own cache, a batch that does not fit names how many do, and the
step-cost API composes steps as the engine runs them."""

from __future__ import annotations

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.engine import decode, prefill
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.dram_timing import FastTiming
from pimsim.errors import ConfigError, PimsimError
from pimsim.run_types import RunSpec
from pimsim.runs import run_model
from pimsim.step_costs import StepCosts
from pimsim.sweep.points import point_spec
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.tracer import traced_graph

AIM = "gddr6-aim.yaml"
WIDE = ["pim.buffer_vectors=4", "pim.vectors_per_mac=4", "energy.dram.mac_vector_pJ=1.5"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_card(tmp_path_factory.mktemp("cards"), "tiny", "gpt2", TINY_GPT2))


def _time(sim, positions) -> int:
    return sim.advance(sim.batch_steps(positions), 0, dict.fromkeys(PARTS, 0))


def _macs(sim, steps, gemv: bool) -> int:
    """MAC commands of the weight GEMVs (`gemv`) or of everything else in `steps`."""
    mac = sim.compiled.command_names.index("MACAB")
    return sum(int((s.stream.cmd == mac).sum()) for s in steps
               if s.stream is not None and (s.stream.key[0] == "gemv") == gemv)


def test_batch_one_is_todays_decode_exactly(tiny):
    plain = run_model(AIM, tiny, 8, 3)
    assert run_model(AIM, tiny, 8, 3, batch=1) == plain
    assert "batch" not in plain and "sequences" not in plain["memory"]
    graph = traced_graph(load_card(tiny))
    fresh = lambda: DecodeSimulation(load_hardware(AIM), graph, 8, 3)  # noqa: E731 (timing state from idle)
    lone = fresh()
    assert _time(fresh(), [8]) == lone.advance(lone.token_steps(8), 0, dict.fromkeys(PARTS, 0))


@pytest.mark.parametrize("sets", [[], ["pim.buffer_vectors=4"]], ids=["vector_major", "row_reuse"])
def test_a_batch_on_a_one_vector_datapath_costs_up_to_b_steps(tiny, sets):
    graph = traced_graph(load_card(tiny))
    sim = DecodeSimulation(load_hardware(AIM, sets), graph, 8, 4, batch=4)
    one, four = _time(sim, [8]), _time(sim, [8] * 4)
    steps_one, steps_four = sim.batch_steps([8]), sim.batch_steps([8] * 4)
    gemv_one = sum(sim.advance([s], 0, dict.fromkeys(PARTS, 0)) for s in steps_one
                   if s.stream is not None and s.stream.key[0] == "gemv")
    # never more than four single steps; never less than every sequence's own work plus one pass over
    # the weights' PIM streams
    assert 4 * (one - gemv_one) + gemv_one < four <= 4 * one
    # every vector gets its own MAC pass over every weight row; attention's MACs are per sequence
    assert _macs(sim, steps_four, True) == 4 * _macs(sim, steps_one, True)
    assert _macs(sim, steps_four, False) == 4 * _macs(sim, steps_one, False)


def test_a_wider_datapath_multiplies_the_batch_in_one_pass_and_costs_less(tiny):
    graph = traced_graph(load_card(tiny))
    narrow = DecodeSimulation(load_hardware(AIM, WIDE[:1]), graph, 8, 4, batch=4)
    wide = DecodeSimulation(load_hardware(AIM, WIDE), graph, 8, 4, batch=4)
    assert _time(wide, [8]) == _time(narrow, [8])  # one vector: the same commands
    assert _time(wide, [8] * 4) < _time(narrow, [8] * 4)
    one, four = wide.batch_steps([8]), wide.batch_steps([8] * 4)
    assert _macs(wide, four, True) == _macs(wide, one, True)  # one pass of four vectors
    rdmac = wide.compiled.command_names.index("RDMAC")
    reads = lambda steps: sum(int((s.stream.cmd == rdmac).sum()) for s in steps  # noqa: E731
                              if s.stream is not None and s.stream.key[0] == "gemv")
    assert reads(four) == 4 * reads(one)  # each vector's accumulator read out
    # five vectors: two passes (four, then one)
    five = DecodeSimulation(load_hardware(AIM, ["pim.buffer_vectors=5", *WIDE[1:]]), graph, 8, 4, batch=5)
    assert _macs(five, five.batch_steps([8] * 5), True) == 2 * _macs(wide, one, True)


def test_the_extra_vectors_macs_are_charged_at_mac_vector_pj(tiny):
    runs = [run_model(load_hardware(AIM, [*WIDE[:2], f"energy.dram.mac_vector_pJ={pj}"]), tiny, 8, 2, batch=4)
            for pj in (1.0, 3.0)]
    wide = DecodeSimulation(load_hardware(AIM, WIDE), traced_graph(load_card(tiny)), 8, 2, batch=4)
    extra = sum(s.work.extra_vector_macs for s in wide.batch_steps([8] * 4)) * 2  # two steps
    assert extra > 0
    diff = runs[1]["energy_breakdown_J"]["mac"] - runs[0]["energy_breakdown_J"]["mac"]
    assert diff == pytest.approx(extra * 2.0e-12, rel=1e-9)


def test_batch_results_count_every_sequence(tiny):
    one, four = run_model(AIM, tiny, 8, 2), run_model(AIM, tiny, 8, 2, batch=4)
    assert four["batch"] == 4 and four["tokens_generated"] == 8
    assert four["tokens_per_s"] == pytest.approx(8 / four["total_time_s"])
    assert four["latency_per_token_s"] == pytest.approx(four["total_time_s"] / 2)
    assert four["energy_per_token_J"] == pytest.approx(four["energy_total_J"] / 8)
    assert four["energy_per_step_J"] == pytest.approx(four["energy_total_J"] / 2)
    mem = four["memory"]
    assert mem["rows_per_bank_used"] - one["memory"]["rows_per_bank_used"] == 3 * mem["kv_rows_per_bank_per_sequence"]
    assert four["config_hash"] != one["config_hash"]


def test_a_batch_that_does_not_fit_names_how_many_do(tiny):
    graph = traced_graph(load_card(tiny))
    hw = load_hardware(AIM, ["dram.organization.rows=128"])
    fit = DecodeSimulation(hw, graph, 8, 4).map.sequences_that_fit()
    assert fit >= 2
    DecodeSimulation(hw, graph, 8, 4, batch=fit)
    with pytest.raises(PimsimError, match=f"so {fit} sequences fit"):
        DecodeSimulation(hw, graph, 8, 4, batch=fit + 1)


def test_bad_batches_are_refused(tiny, capsys):
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--hw", AIM, "--model", tiny, "--batch", bad])
        assert exc.value.code == 2
        assert "--batch" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="batch"):
        RunSpec(model=tiny, hw=AIM, batch=0)
    with pytest.raises(ConfigError, match="speculative decoding runs one sequence"):
        RunSpec(model=tiny, hw=AIM, batch=2, spec_dec="draft=gpt2,k=2,alpha=0.5")


def test_the_multi_vector_datapath_is_validated():
    with pytest.raises(ConfigError) as exc:
        load_hardware(AIM, ["pim.vectors_per_mac=4"])
    text = str(exc.value)
    assert "pim.buffer_vectors" in text and "energy.dram.mac_vector_pJ" in text
    with pytest.raises(ConfigError, match="vectors_per_mac"):
        load_hardware(AIM, ["pim.vectors_per_mac=0"])
    from pimsim.config.loader import resolved_config

    assert "vectors_per_mac" not in resolved_config(load_hardware(AIM))["pim"]  # today's descriptions unchanged
    assert resolved_config(load_hardware(AIM, WIDE))["pim"]["vectors_per_mac"] == 4


def test_step_costs_compose_as_the_engine_runs(tiny, monkeypatch):
    costs = StepCosts(AIM, tiny, max_batch=4, max_context=40)
    for batch in (1, 4):
        composed = [costs.decode_step([8 + i] * batch) for i in range(32)]
        clock = run_model(AIM, tiny, 8, 32, batch=batch)  # the same 40-token caches, refreshes where they land
        with monkeypatch.context() as m:  # the engine with the pieces' refresh bookkeeping: expected costs
            m.setattr(decode, "timing_for", lambda compiled, fidelity, record=False: FastTiming(compiled, False))
            r = run_model(AIM, tiny, 8, 32, batch=batch)
        assert sum(c.time_s for c in composed) == pytest.approx(r["total_time_s"], rel=2e-3)
        assert sum(c.energy_J for c in composed) == pytest.approx(r["energy_total_J"], rel=2e-3)
        assert sum(c.time_s for c in composed) == pytest.approx(clock["total_time_s"], rel=0.03)
    mixed = costs.decode_step([3, 20, 39])
    assert mixed.time_s == pytest.approx(costs.gemvs(3).time_s + sum(costs.per_sequence(c).time_s
                                                                      for c in (3, 20, 39)))
    with pytest.raises(PimsimError, match="1 to 4"):
        costs.decode_step([1] * 5)
    with pytest.raises(PimsimError, match="context lengths"):
        costs.decode_step([40])
    with pytest.raises(PimsimError, match="sequences fit"):
        StepCosts(load_hardware(AIM, ["dram.organization.rows=128"]), tiny, max_batch=500, max_context=40)


def test_batch_is_a_sweep_axis(tiny):
    spec = point_spec(AIM, {"model": tiny, "overrides": {"batch": 4, "pim.vectors_per_mac": 4}}, {"gen_tokens": 2})
    assert spec.batch == 4 and dict(spec.overrides) == {"pim.vectors_per_mac": 4}


def _weight_macs(sim, steps) -> int:
    """MAC commands of the weight GEMVs other than the LM head (which a prefill skips)."""
    mac = sim.compiled.command_names.index("MACAB")
    head = {sim.map.tables[op.tensor].first_row for op in sim.graph.ops if op.part == "lm_head"}
    return sum(int((s.stream.cmd == mac).sum()) for s in steps
               if s.stream is not None and s.stream.key[0] == "gemv" and s.stream.row_offset not in head)


def test_a_prefill_on_a_one_vector_datapath_reads_the_weights_as_p_decode_steps(tiny):
    graph = traced_graph(load_card(tiny))
    sim = DecodeSimulation(load_hardware(AIM), graph, 8, 4)
    pre, step = sim.prefill_steps(8), sim.batch_steps([0])
    assert _weight_macs(sim, pre) == 8 * _weight_macs(sim, step) > 0
    kv = lambda steps: sum(1 for s in steps if s.part == "kv_write" and s.stream is not None)  # noqa: E731
    assert kv(pre) == 8 * kv(step)  # every prompt token's keys and values written
    assert not any(s.part == "lm_head" for s in pre)
    # a four-vector datapath: two chunks of four tokens, one MAC pass each
    wide = DecodeSimulation(load_hardware(AIM, WIDE), graph, 8, 4)
    assert _weight_macs(wide, wide.prefill_steps(8)) == 2 * _weight_macs(wide, wide.batch_steps([0]))


def test_prefill_results(tiny, monkeypatch):
    r = run_model(AIM, tiny, 8, 2, prefill="pim")
    plain = run_model(AIM, tiny, 8, 2)
    assert r["per_token_s"] == plain["per_token_s"]  # the decode steps are those of a run without it
    assert r["ttft_s"] == pytest.approx(r["prefill_s"] + r["latency_first_token_s"])
    assert r["prefill"]["energy_J"] > 0 and r["prefill"]["gemv_chunks"] == 8
    wide = run_model(load_hardware(AIM, WIDE), tiny, 8, 2, prefill="pim")
    assert wide["prefill_s"] < r["prefill_s"] and wide["prefill"]["gemv_chunks"] == 2
    costs = StepCosts(AIM, tiny, max_batch=1, max_context=10)
    assert costs.prefill(8).time_s == pytest.approx(r["prefill_s"], rel=0.01)  # refreshes where they land
    with monkeypatch.context() as m:  # the engine with the pieces' refresh bookkeeping: expected costs
        m.setattr(prefill, "timing_for", lambda compiled, fidelity, record=False: FastTiming(compiled, False))
        expected = run_model(AIM, tiny, 8, 2, prefill="pim")
    assert costs.prefill(8).time_s == pytest.approx(expected["prefill_s"], rel=2e-3)
    with pytest.raises(ConfigError, match="prompt of at least one token"):
        RunSpec(model=tiny, hw=AIM, prompt_len=0, prefill="pim")


@pytest.mark.parametrize("on", ["asic", "h100"])
def test_a_prefill_elsewhere_is_its_roofline_then_the_kv_writes(tiny, on, monkeypatch):
    from pimsim.baseline.devices import load_device

    r = run_model(AIM, tiny, 8, 2, prefill=on)
    pre = r["prefill"]
    assert pre["on"] == on and pre["time_s"] == pytest.approx(pre["roofline"]["time_s"] + pre["kv_write_s"])
    graph = traced_graph(load_card(tiny))
    weights = sum(op.rows * op.cols for op in graph.ops if op.kind == "gemv" and op.part != "lm_head")
    m = graph.meta
    attention = 2 * m.layers * m.heads * m.head_dim * 8 * 9 // 2  # causal: 1 + 2 + ... + 8 keys
    if on == "asic":
        hw = load_hardware(AIM)
        assert pre["roofline"]["asic_macs"] == 8 * weights + attention
        assert pre["roofline"]["compute_s"] == pytest.approx((8 * weights + attention)
                                                             / (hw.asic.lanes * hw.asic.freq_MHz * 1e6))
    else:
        assert pre["roofline"]["flops"] == 2 * (8 * weights + attention)
        assert pre["energy_breakdown_J"]["host_device"] == pytest.approx(load_device(on).power_W
                                                                         * pre["roofline"]["time_s"])
    # the KV writes are the PIM prefill's own KV-append streams: every prompt token's keys and values
    on_pim = run_model(AIM, tiny, 8, 2, prefill="pim")["prefill"]
    assert pre["commands"]["WR"] == on_pim["commands"]["WR"] > 0
    costs = StepCosts(AIM, tiny, max_batch=1, max_context=10)
    with monkeypatch.context() as m:  # the engine with the pieces' refresh bookkeeping: expected costs
        m.setattr(prefill, "timing_for", lambda compiled, fidelity, record=False: FastTiming(compiled, False))
        expected = run_model(AIM, tiny, 8, 2, prefill=on)["prefill"]
    assert costs.prefill(8, on=on).time_s == pytest.approx(expected["time_s"], rel=2e-3)
    assert costs.prefill(8, on=on).time_s == pytest.approx(pre["time_s"], rel=0.01)  # refreshes where they land
    # StepCosts charges refresh at its average rate, the run whole REFs as they fall due: a short run differs
    assert costs.prefill(8, on=on).energy_J == pytest.approx(pre["energy_J"], rel=1e-2)


def test_bad_prefills_are_refused(tiny, capsys):
    assert main(["run", "--hw", AIM, "--model", tiny, "--prefill-on", "no-such-device", "--quiet"]) == 2
    assert "no-such-device" in capsys.readouterr().err
    assert main(["run", "--hw", AIM, "--model", tiny, "--prefill", "--prompt-len", "0", "--quiet"]) == 2
    assert "at least one token" in capsys.readouterr().err
    assert main(["run", "--hw", AIM, "--spec-dec", f"target={tiny},draft={tiny},k=2,alpha=0.5", "--prefill"]) == 2
    assert "--prefill" in capsys.readouterr().err


def test_a_batch_runs_on_either_schedule_and_with_a_timeline(tiny):
    from pimsim.runs import simulate

    spec = RunSpec(model=tiny, hw=AIM, prompt_len=8, gen_tokens=2, batch=3)
    serial = simulate(spec)
    timed = simulate(spec, timeline=True)  # through the instruction programs instead of the direct loop
    assert timed.details.per_token_s == serial.details.per_token_s
    assert {e[1] for e in timed.timeline} >= {op.name for op in traced_graph(load_card(tiny)).ops
                                             if op.kind == "scores"}
    overlap = simulate(spec.patch(schedule="overlap"))
    assert overlap.total_time_s < serial.total_time_s


def test_a_batch_at_cycle_fidelity_is_protocol_clean_and_near_fast(tiny):
    cycle = run_model(AIM, tiny, 8, 2, fidelity="cycle", batch=3, check_protocol=True)
    fast = run_model(AIM, tiny, 8, 2, batch=3)
    assert cycle["protocol_check"]["violations"] == 0 and cycle["protocol_check"]["commands_checked"] > 0
    assert cycle["latency_per_token_s"] == pytest.approx(fast["latency_per_token_s"], rel=0.02)
