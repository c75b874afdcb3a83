"""Fast fidelity against cycle fidelity: the refresh clock fast follows, and the 1% agreement on the
bundled cards (narrow formats included) on both bundled PIM configs."""

from __future__ import annotations

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.dram_timing import CycleTiming, FastTiming
from pimsim.errors import PimsimError
from pimsim.mapper.model import ModelMap
from pimsim.run_types import RunSpec
from pimsim.runs import simulate
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

PIM_CONFIGS = ("gddr6-aim", "hbm-pim")


@pytest.fixture(scope="module")
def tiny_stream(tmp_path_factory):
    """A short stream (a tiny GPT-2's first matrix) and the compiled memory it runs on."""
    graph = traced_graph(load_card(write_card(tmp_path_factory.mktemp("cards"), "tiny-gpt2", "gpt2", TINY_GPT2)))
    hw = load_hardware("gddr6-aim.yaml")
    compiled = compile_standard(hw)
    m = ModelMap(hw, compiled, graph, 16)
    return compiled, m.gemv(next(iter(m.tables)))


def _twice(timer, stream, second_start_cycle: int) -> int:
    """Run the stream at 0 and again at the given cycle; the second one's end, in cycles."""
    tck = timer.compiled.hw.dram.tCK_ps
    timer.run(stream, 0)
    return timer.run(stream, second_start_cycle * tck) // tck


def test_a_refresh_due_while_the_memory_idles_delays_the_next_stream_by_what_is_left_of_it(tiny_stream):
    compiled, stream = tiny_stream
    fast = FastTiming(compiled)
    k = fast.known(stream)
    nrefi, nrfc = compiled.refresh_interval, compiled.hw.dram.timing["nRFC"]
    assert k.landed and not k.leaves_open and k.cycles < nrefi
    start = nrefi + 10  # the first refresh fell due 10 cycles before: the stream waits nRFC - 10
    assert _twice(fast, stream, start) == nrefi + nrfc + k.cycles
    assert _twice(CycleTiming(compiled), stream, start) == nrefi + nrfc + k.cycles
    # once it ran out during the idle time, nothing is left to wait for
    assert _twice(FastTiming(compiled), stream, nrefi + nrfc + 5) == nrefi + nrfc + 5 + k.cycles


def test_a_refresh_landing_in_a_short_stream_costs_what_it_costs_there(tiny_stream):
    compiled, stream = tiny_stream
    k = FastTiming(compiled).known(stream)
    assert k.landed
    nrefi = compiled.refresh_interval
    costs = set()
    for lead in range(1, k.last_issue + 1, 3):  # where rows are closed, open, closing
        fast = _twice(FastTiming(compiled), stream, nrefi - lead)
        cycle = _twice(CycleTiming(compiled), stream, nrefi - lead)
        assert fast == cycle > nrefi - lead + k.cycles
        costs.add(fast - (nrefi - lead) - k.cycles)
    assert len(costs) > 2  # what a refresh costs depends on where it lands


def _gap(model: str, hw: str, prompt_len: int, gen_tokens: int, weight_format: str | None = None,
         overrides: dict | None = None) -> float:
    spec = dict(model=model, hw=hw, prompt_len=prompt_len, gen_tokens=gen_tokens, weight_format=weight_format,
                overrides=overrides or {})
    fast = simulate(RunSpec(**spec, fidelity="fast"))
    cycle = simulate(RunSpec(**spec, fidelity="cycle"))
    return fast.total_time_s / cycle.total_time_s - 1


@pytest.mark.parametrize("model, hw, weight_format", [
    ("gpt2-medium", "gddr6-aim", "fp8-e4m3"),  # +1.04% before fast followed the refresh clock
    ("gpt2-ternary", "hbm-pim", None),
])
def test_fast_and_cycle_agree_within_one_percent_on_narrow_formats(model, hw, weight_format):
    assert abs(_gap(model, hw, 64, 8, weight_format)) < 0.01


def _bundled_models() -> list[str]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    from fidelity_agreement import bundled_models

    return bundled_models()


@pytest.mark.slow
@pytest.mark.parametrize("hw", PIM_CONFIGS)
@pytest.mark.parametrize("model", _bundled_models())
def test_fast_and_cycle_agree_within_one_percent_on_every_bundled_card(model, hw):
    try:
        gap = _gap(model, hw, 64, 8)
    except PimsimError as exc:  # too large for this memory or its ASIC buffer: nothing to compare
        pytest.skip(str(exc).splitlines()[0][:200])
    assert abs(gap) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("hw", PIM_CONFIGS)
@pytest.mark.parametrize("model", ["gpt2", "gpt2-medium", "smollm2-135m"])
@pytest.mark.parametrize("weight_format, overrides", [
    ("int4-g128", {}), ("fp8-e4m3", {}), ("int8", {}), ("binary", {}), (None, {"pim.kv_format": "fp8-e4m3"})])
def test_fast_and_cycle_agree_within_one_percent_on_narrow_weight_and_kv_formats(model, hw, weight_format,
                                                                                  overrides):
    if weight_format == "int4-g128" and hw == "hbm-pim":  # the vendor's GEMV layout reads no group scales
        overrides = {"mapping.gemv": "row_partition"}
    assert abs(_gap(model, hw, 64, 8, weight_format, overrides)) < 0.01
