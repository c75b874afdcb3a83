"""The decode engine: schedules, fidelities and the whole-model mapper's streams."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import TINY_GPT2, TINY_LLAMA, write_card

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.dram_timing import CycleTiming, FastTiming
from pimsim.engine.events import Instr, Program, run_program
from pimsim.errors import PimsimError
from pimsim.mapper.attention import append_program, kv_layout
from pimsim.mapper.gemv import STRATEGIES
from pimsim.mapper.model import ModelMap
from pimsim.runs import run_model
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("cards")
    return {"gpt2": traced_graph(load_card(write_card(d, "tiny-gpt2", "gpt2", TINY_GPT2))),
            "llama": traced_graph(load_card(write_card(d, "tiny-llama", "llama", TINY_LLAMA)))}


class NoDram:
    track_channels = False

    def run(self, stream, start):
        raise AssertionError("no PIM work expected")


def test_serial_schedule_adds_up_durations():
    prog = Program()
    a = prog.append(Instr("asic", "asic", "a", None, (), 100))
    prog.append(Instr("link", "transfers", "b", None, (), 30))
    prog.append(Instr("asic", "asic", "c", None, (a,), 50))
    assert run_program(copy.deepcopy(prog), 1000, NoDram(), serial=True) == 1180
    assert run_program(copy.deepcopy(prog), 1000, NoDram(), serial=True, use_heap=True) == 1180


def test_overlap_schedule_runs_independent_units_side_by_side():
    prog = Program()
    a = prog.append(Instr("asic", "asic", "a", None, (), 100))
    b = prog.append(Instr("link", "transfers", "b", None, (), 30))
    c = prog.append(Instr("asic", "asic", "c", None, (a,), 50))
    prog.append(Instr("link", "transfers", "d", None, (b, c), 10))
    done = copy.deepcopy(prog)
    assert run_program(done, 0, NoDram(), serial=False) == 160
    assert [(i.start, i.end) for i in done] == [(0, 100), (0, 30), (100, 150), (150, 160)]


def test_overlap_keeps_each_unit_in_program_order():
    # the second ASIC op is ready at once but waits behind the first, which waits for the link
    prog = Program()
    x = prog.append(Instr("link", "transfers", "x", None, (), 40))
    prog.append(Instr("asic", "asic", "a", None, (x,), 10))
    prog.append(Instr("asic", "asic", "b", None, (), 10))
    done = copy.deepcopy(prog)
    assert run_program(done, 0, NoDram(), serial=False) == 60
    assert [(i.start, i.end) for i in done] == [(0, 40), (40, 50), (50, 60)]


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_serial_event_loop_and_plain_loop_agree(tiny, fidelity):
    hw = load_hardware("gddr6-aim.yaml")
    ends = []
    for use_heap in (False, True):
        sim = DecodeSimulation(hw, tiny["gpt2"], 8, 1, "serial", fidelity)
        prog = sim.token_program(8)
        ends.append((run_program(prog, 0, sim.timing, True, use_heap), [(i.start, i.end) for i in prog]))
    assert ends[0] == ends[1]


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_runs_are_deterministic_and_overlap_is_not_slower(tiny, model):
    hw = load_hardware("gddr6-aim.yaml")
    a = DecodeSimulation(hw, tiny[model], 8, 3, "serial", "cycle").run()
    b = DecodeSimulation(hw, tiny[model], 8, 3, "serial", "cycle").run()
    assert a.per_token_ps == b.per_token_ps and a.counts == b.counts
    over = DecodeSimulation(hw, tiny[model], 8, 3, "overlap", "cycle").run()
    assert sum(over.per_token_ps) <= sum(a.per_token_ps)
    pim_busy = sum(v for k, v in over.breakdown_ps.items() if k not in ("asic", "softmax", "transfers"))
    assert sum(over.per_token_ps) >= 0.5 * pim_busy  # PIM work never overlaps itself


@pytest.mark.parametrize("model", ["gpt2", "gpt2-medium"])
def test_fast_and_cycle_fidelity_agree_within_one_percent(model):
    fast = run_model("gddr6-aim.yaml", model, prompt_len=100, gen_tokens=3, fidelity="fast")
    cycle = run_model("gddr6-aim.yaml", model, prompt_len=100, gen_tokens=3, fidelity="cycle")
    assert abs(fast["total_time_s"] / cycle["total_time_s"] - 1) < 0.01
    for name in ("MACAB", "WRGB", "RDMAC", "WR", "RD"):
        assert fast["commands"][name] == cycle["commands"][name]  # the same streams, counted the same
    refs = fast["commands"]["REF"], cycle["commands"]["REF"]  # one per nREFI per channel up to the end
    assert abs(refs[0] - refs[1]) <= 0.01 * refs[1] + 8


def test_fast_fidelity_refresh_estimate_matches_cycle_on_hbm():
    fast = run_model("hbm-pim.yaml", "gpt2", prompt_len=30, gen_tokens=2, fidelity="fast")
    cycle = run_model("hbm-pim.yaml", "gpt2", prompt_len=30, gen_tokens=2, fidelity="cycle")
    assert abs(fast["total_time_s"] / cycle["total_time_s"] - 1) < 0.01
    off = run_model("hbm-pim.yaml", "gpt2", prompt_len=30, gen_tokens=2, fidelity="fast",
                    overrides=["dram.refresh.enabled=false"])
    assert off["total_time_s"] < fast["total_time_s"]  # refresh costs something, and fast counts it
    assert "REF" not in off["commands"]


def test_token_latency_grows_with_the_context(tiny):
    hw = load_hardware("gddr6-aim.yaml", ["dram.refresh.enabled=false"])  # refresh would add noise
    r = DecodeSimulation(hw, tiny["gpt2"], 0, 60, "serial", "fast").run()
    assert all(b >= a for a, b in zip(r.per_token_ps, r.per_token_ps[1:]))
    assert r.per_token_ps[-1] > r.per_token_ps[0]


def test_mapper_streams_equal_direct_builds(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    c = compile_standard(hw)
    g = tiny["gpt2"]
    m = ModelMap(hw, c, g, 300)
    layout = m.kv[1]
    for t in (0, 5, 127, 128, 200, 299):  # K rows: shifted copies of the first round of slots
        for which in "kv":
            direct = append_program(c, layout, t, parts=which)
            got = m.append(1, t, which)
            assert np.array_equal(got.rows(), direct.row) and np.array_equal(got.node, direct.node)
            assert np.array_equal(got.cmd, direct.cmd)
    lanes_out = 1
    for context in (1, 15, 16, 17, 100, 300):  # scores at the context rounded to whole units
        direct = STRATEGIES["row_partition"](c, layout.k, lanes_out, layout.k_groups(), context)
        got = m.scores(1, context, g.meta.heads)
        assert got.asic_adds == direct.asic_adds and got.outputs == direct.outputs
        assert np.array_equal(got.cmd, direct.cmd) and np.array_equal(got.rows(), direct.row)
        direct = STRATEGIES["row_partition"](c, layout.v, lanes_out, layout.v_groups(context), layout.head_dim)
        got = m.context(1, context, g.meta.heads)
        assert np.array_equal(got.cmd, direct.cmd) and np.array_equal(got.rows(), direct.row)
        assert got.asic_adds == direct.asic_adds


def test_every_tensor_gets_its_own_rows(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    m = ModelMap(hw, compile_standard(hw), tiny["llama"], 40)
    spans = sorted([(t.first_row, t.first_row + t.dram_rows) for t in m.tables.values()]
                   + [(kv.k.first_row, kv.v.first_row + kv.v.dram_rows) for kv in m.kv.values()])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == m.rows_used
    probe = kv_layout(m.geometry, 2, 16, 40)
    assert m.rows_used == sum(t.dram_rows for t in m.tables.values()) + 2 * (probe.k.dram_rows + probe.v.dram_rows)


def test_model_that_does_not_fit_is_one_clear_error(tiny):
    hw = load_hardware("gddr6-aim.yaml", ["dram.organization.rows=16"])
    with pytest.raises(PimsimError, match="does not fit in gddr6-aim.*rows per bank"):
        DecodeSimulation(hw, tiny["gpt2"], 8, 4)


def test_bad_run_parameters(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    with pytest.raises(PimsimError, match="longer than its context of 64"):
        DecodeSimulation(hw, tiny["gpt2"], 60, 10)
    with pytest.raises(PimsimError, match="schedule"):
        DecodeSimulation(hw, tiny["gpt2"], 8, 1, schedule="eager")
    with pytest.raises(PimsimError, match="no pim and asic section"):
        DecodeSimulation(load_hardware("ddr4-2400.yaml"), tiny["gpt2"], 8, 1)


def test_cycle_timing_continues_one_dram_state(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    c = compile_standard(hw)
    m = ModelMap(hw, c, tiny["gpt2"], 16)
    s = m.gemv(next(iter(m.tables)))
    cyc, fast = CycleTiming(c), FastTiming(c)
    first = cyc.run(s, 0)
    second = cyc.run(s, first)
    assert first > 0 and second > first
    assert fast.run(s, 0) > 0 and fast.counts()["commands"]["MACAB"] == cyc.counts()["commands"]["MACAB"] // 2


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_serial_runs_without_instruction_objects_time_the_same(tiny, fidelity):
    hw = load_hardware("gddr6-aim.yaml")
    plain = DecodeSimulation(hw, tiny["llama"], 5, 4, "serial", fidelity).run()
    traced = DecodeSimulation(hw, tiny["llama"], 5, 4, "serial", fidelity).run(timeline=True)
    assert plain.per_token_ps == traced.per_token_ps and plain.breakdown_ps == traced.breakdown_ps
    assert plain.counts == traced.counts
    assert traced.timeline and not plain.timeline


def test_a_simulation_runs_once(tiny):
    sim = DecodeSimulation(load_hardware("gddr6-aim.yaml"), tiny["gpt2"], 4, 1)
    sim.run()
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run()


def test_asic_buffer_must_hold_the_largest_vector(tiny):
    hw = load_hardware("gddr6-aim.yaml", ["asic.sram_bytes=1000"])  # the LM head's 500 logits take 2,000 B
    with pytest.raises(PimsimError, match="cannot hold the 500 outputs of lm_head"):
        DecodeSimulation(hw, tiny["gpt2"], 4, 1)


def test_channel_groups_must_divide_the_channels():
    from pimsim.mapper.placement import Geometry, place_gemv

    g = Geometry.of(load_hardware("gddr6-aim.yaml"))
    with pytest.raises(PimsimError, match="power of two dividing the 8 channels"):
        place_gemv(g, 10, 1024, split=3)


@pytest.mark.parametrize("hw_name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_every_command_of_a_run_is_protocol_clean(tiny, hw_name, model):
    hw = load_hardware(hw_name, ["dram.timing.nREFI=700"])  # refresh often: it lands inside every kind of stream
    sim = DecodeSimulation(hw, tiny[model], 30, 3, "serial", "cycle", check_protocol=True)
    result = sim.run()
    assert result.counts["protocol_check"]["violations"] == 0
    assert result.counts["protocol_check"]["commands_checked"] > 1000
    assert result.counts["commands"]["REF"] > 10
    plain = DecodeSimulation(hw, tiny[model], 30, 3, "serial", "cycle").run()
    assert plain.per_token_ps == result.per_token_ps  # recording changes nothing


def test_protocol_check_catches_a_broken_stream(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    sim = DecodeSimulation(hw, tiny["gpt2"], 4, 1, "serial", "cycle", check_protocol=True)
    sim.run()
    rec = sim.timing.records[3]
    rec[-1, 0] = rec[0, 0]  # move a stream's last command back to its first command's cycle
    checked, violations = sim.timing.protocol_violations()
    assert violations and checked > 0


def test_protocol_check_needs_cycle_fidelity(tiny):
    with pytest.raises(PimsimError, match="needs --fidelity cycle"):
        DecodeSimulation(load_hardware("gddr6-aim.yaml"), tiny["gpt2"], 4, 1, fidelity="fast", check_protocol=True)


@pytest.mark.slow
def test_gpt2_on_both_pim_configs_is_protocol_clean():
    for hw in ("gddr6-aim.yaml", "hbm-pim.yaml"):
        r = run_model(hw, "gpt2", prompt_len=30, gen_tokens=1, fidelity="cycle", check_protocol=True)
        assert r["protocol_check"]["violations"] == 0
