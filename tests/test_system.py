"""The SimPy system engine: processes submitting steps to a shared ASIC and per-group links and channels."""

from dataclasses import dataclass

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.config import load_hardware
from pimsim.engine.decode import DecodeSimulation
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

    def run(self, stream, start):
        return start + stream.ps


def _run(system, group, steps, breakdown, work):
    return system.env.process(system.steps(group, steps, breakdown, work))


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


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_a_lone_model_on_the_system_takes_what_the_direct_loop_takes(tmp_path, fidelity):
    """Why a lone decode does not need SimPy: with one process every request is granted at once."""
    graph = traced_graph(load_card(write_card(tmp_path, "tiny-gpt2", "gpt2", TINY_GPT2)))
    hw = load_hardware("gddr6-aim.yaml")
    direct = DecodeSimulation(hw, graph, 8, 3, "serial", fidelity)
    via = DecodeSimulation(hw, graph, 8, 3, "serial", fidelity)
    system = System()
    group = system.group(via.timing)
    t, parts_direct, parts_via = 0, dict.fromkeys(PARTS, 0), dict.fromkeys(PARTS, 0)
    for position in (8, 9, 10):
        t = direct.advance(direct.verify_steps(position, 1), t, parts_direct)
        system.run(system.env.process(system.steps(group, via.verify_steps(position, 1), parts_via, via.work)))
    assert system.env.now == t and parts_via == parts_direct and via.work == direct.work
    assert via.timing.counts() == direct.timing.counts()
