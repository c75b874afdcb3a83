"""The SimPy system engine: processes submitting work to a shared ASIC and per-group links and channels."""

from dataclasses import dataclass

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.config import load_hardware
from pimsim.engine.decode import DecodeSimulation
from pimsim.engine.events import Instr, Program
from pimsim.engine.lowering import NO_WORK, Step, Work, WorkTally
from pimsim.engine.system import System
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.tracer import traced_graph


@dataclass
class FakeStream:
    ps: int


class FakeTimer:
    """A stream timer whose streams take a fixed time."""

    track_channels = False

    def run(self, stream, start):
        return start + stream.ps


def _run(system, group, work, breakdown, tally, serial=True):
    return system.start(system.submit(group, work, breakdown, tally, serial))


def _companion(system):
    """A model that holds no unit but is there: the system is no longer run by one process alone, so
    every instruction goes through the SimPy resources one by one."""
    return system.start(iter([system.env.timeout(10**18)]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return traced_graph(load_card(write_card(tmp_path_factory.mktemp("cards"), "tiny-gpt2", "gpt2", TINY_GPT2)))


def test_the_shared_asic_is_contended_and_channel_groups_run_side_by_side():
    system = System()
    a, b = system.group(FakeTimer()), system.group(FakeTimer())
    assert a is not b
    parts = {"draft": dict.fromkeys(PARTS, 0), "target": dict.fromkeys(PARTS, 0)}
    work = WorkTally()
    # both start on their own channels (side by side), then both need the ASIC: the later one waits
    first = _run(system, a, [Step("pim", "ffn", 0, FakeStream(300), NO_WORK),
                             Step("asic", "asic", 100, None, Work(0, 7, 8))], parts["target"], work)
    second = _run(system, b, [Step("pim", "ffn", 0, FakeStream(320), NO_WORK),
                              Step("asic", "asic", 50, None, NO_WORK)], parts["draft"], work)
    assert system.run(first, second) == 450
    assert (first.value, second.value) == (400, 450)  # 320 + a wait of 80 for the ASIC + 50
    assert parts["target"]["ffn"] == 300 and parts["draft"]["asic"] == 50  # busy time, not the wait
    assert (work.asic_lane_ops, work.asic_sram_bytes) == (7, 8)


def test_one_channel_group_takes_one_stream_at_a_time():
    system = System()
    timer = FakeTimer()
    g = system.group(timer)
    assert system.group(timer) is g  # models on one DRAM state share its channels
    parts = dict.fromkeys(PARTS, 0)
    x = _run(system, g, [Step("pim", "ffn", 0, FakeStream(100), NO_WORK)], parts, WorkTally())
    y = _run(system, g, [Step("pim", "ffn", 0, FakeStream(100), NO_WORK)], parts, WorkTally())
    assert system.run(x, y) == 200 and (x.value, y.value) == (100, 200)


def _two_unit_program() -> Program:
    """ASIC 100 then ASIC 50 after it; a link transfer of 30 with no dependency; a link transfer of 10
    after both the first link transfer and the second ASIC op."""
    prog = Program()
    a = prog.append(Instr("asic", "asic", "a", None, (), 100, work=Work(1, 2, 3, 0)))
    b = prog.append(Instr("link", "transfers", "b", None, (), 30))
    c = prog.append(Instr("asic", "asic", "c", None, (a,), 50))
    prog.append(Instr("link", "transfers", "d", None, (b, c), 10))
    return prog


def test_overlapping_programs_of_two_models_contend_in_request_order():
    system = System()
    g = system.group(FakeTimer())
    first, second = _two_unit_program(), _two_unit_program()
    parts, work = dict.fromkeys(PARTS, 0), WorkTally()
    x = _run(system, g, first, parts, work, serial=False)
    y = _run(system, g, second, parts, work, serial=False)
    assert system.run(x, y) == 310
    # the ASIC goes in request order: the second model's a asked at 0, so it runs 100-200, before the
    # first model's c (asked at 100, when its a ended); the second's link transfer b waits behind the first's
    assert [(i.start, i.end) for i in first] == [(0, 100), (0, 30), (200, 250), (250, 260)]
    assert [(i.start, i.end) for i in second] == [(100, 200), (30, 60), (250, 300), (300, 310)]
    assert (x.value, y.value) == (260, 310)
    assert parts["asic"] == 2 * 150 and parts["transfers"] == 2 * 40  # busy time, not waits
    assert work == WorkTally(2, 4, 6, 0)


@pytest.mark.parametrize("serial", [True, False], ids=["serial", "overlap"])
def test_a_lone_program_timed_in_one_piece_is_what_simpy_gives_instruction_by_instruction(serial):
    ends = []
    for alone in (True, False):
        system = System()
        prog, parts, work = _two_unit_program(), dict.fromkeys(PARTS, 0), WorkTally()
        if not alone:
            _companion(system)
        process = _run(system, system.group(FakeTimer()), prog, parts, work, serial)
        system.run(process)
        ends.append((process.value, [(i.start, i.end) for i in prog], parts, work))
    assert ends[0] == ends[1]
    assert ends[0][0] == (190 if serial else 160)


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
@pytest.mark.parametrize("schedule", ["serial", "overlap"])
def test_a_lone_decode_run_is_what_per_instruction_simpy_gives(tiny, fidelity, schedule):
    """Why a lone model's tokens are timed in one piece: with one process every request is granted at
    once, so SimPy instruction by instruction gives the same times on both schedules."""
    hw = load_hardware("gddr6-aim.yaml")
    direct = DecodeSimulation(hw, tiny, 8, 3, schedule, fidelity).run(timeline=True)
    via = DecodeSimulation(hw, tiny, 8, 3, schedule, fidelity)
    system = System()
    _companion(system)
    process = system.start(via.tokens(system, timeline=True))
    system.run(process)
    shared = process.value
    assert shared.per_token_ps == direct.per_token_ps and shared.breakdown_ps == direct.breakdown_ps
    assert shared.timeline == direct.timeline and shared.counts == direct.counts
    assert shared.work == direct.work and shared.channel_busy_ps == direct.channel_busy_ps


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_a_lone_decode_step_list_is_what_per_instruction_simpy_gives(tiny, fidelity):
    hw = load_hardware("gddr6-aim.yaml")
    direct = DecodeSimulation(hw, tiny, 8, 3, "serial", fidelity).run()
    via = DecodeSimulation(hw, tiny, 8, 3, "serial", fidelity)
    system = System()
    _companion(system)
    process = system.start(via.tokens(system))
    system.run(process)
    assert process.value.per_token_ps == direct.per_token_ps and process.value.breakdown_ps == direct.breakdown_ps
    assert process.value.work == direct.work and process.value.counts == direct.counts


def test_a_tokens_steps_are_its_programs_instructions_in_order(tiny):
    sim = DecodeSimulation(load_hardware("gddr6-aim.yaml"), tiny, 8, 3, "serial", "fast")
    steps, program = sim.token_steps(9), sim.token_program(9)
    assert [(s.unit, s.part, s.ps, s.stream, s.work) for s in steps] == \
        [(i.unit, i.part, i.ps, i.stream, i.work) for i in program]


def test_decode_on_a_shared_system_waits_for_the_asic_another_model_holds(tiny):
    hw = load_hardware("gddr6-aim.yaml")
    alone = DecodeSimulation(hw, tiny, 8, 1, "serial", "fast").run(timeline=True).timeline
    sim = DecodeSimulation(hw, tiny, 8, 1, "serial", "fast")
    system = System()
    # another model takes the ASIC at time 0 for 10 us, longer than the decode's whole token alone
    hold_ps = 10**7
    assert alone[-1][5] < hold_ps
    hog = _run(system, system.group(FakeTimer()), [Step("asic", "asic", hold_ps, None, NO_WORK)],
               dict.fromkeys(PARTS, 0), WorkTally())
    decode = system.start(sim.tokens(system, timeline=True))
    system.run(hog, decode)
    shared = decode.value.timeline
    first_asic = next(i for i, event in enumerate(alone) if event[0] == "asic")
    assert first_asic > 0  # the decode starts on the links and channels, side by side with the hog
    assert shared[:first_asic] == alone[:first_asic]
    assert shared[first_asic][4] == hold_ps  # its first ASIC instruction waited for the hog's release
    assert decode.value.per_token_ps[0] > hold_ps


def test_submissions_need_a_started_model_and_no_model_starts_inside_a_lone_one():
    system = System()
    g = system.group(FakeTimer())
    stray = system.env.process(system.submit(g, [Step("asic", "asic", 5, None, NO_WORK)], dict.fromkeys(PARTS, 0),
                                             WorkTally()))
    with pytest.raises(RuntimeError, match="not started with System.start"):
        system.run(stray)

    system = System()
    g = system.group(FakeTimer())
    lone = _run(system, g, [Step("asic", "asic", 100, None, NO_WORK)], dict.fromkeys(PARTS, 0), WorkTally())

    def late():
        yield system.env.timeout(50)
        system.start(iter(()))

    system.env.process(late())
    with pytest.raises(RuntimeError, match="timed alone in one piece"):
        system.run(lone)

    system = System()
    steps = _run(system, system.group(FakeTimer()), [Step("asic", "asic", 5, None, NO_WORK)], dict.fromkeys(PARTS, 0),
                 WorkTally(), serial=False)
    with pytest.raises(RuntimeError, match="submit a Program"):  # steps carry no dependencies to overlap
        system.run(steps)
