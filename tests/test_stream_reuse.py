"""Fast fidelity's shortcuts in building and timing streams hold to the plain way of building them:
an embedding entry's stream reused from the entry a round of slots before it, the vectorised KV-append
and row-read builders, and the faster GEMV builder, each against a reference built command by command."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.dram_timing import FastTiming
from pimsim.mapper.attention import read_row_program
from pimsim.mapper.model import ModelMap
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

WTE = "transformer.wte.weight"


@lru_cache(maxsize=None)
def _map(hw_name: str, card: str = "gpt2", context: int = 64, weight_format: str | None = None) -> ModelMap:
    hw = load_hardware(hw_name)
    if weight_format:
        hw = hw.with_weight_format(weight_format)
    return ModelMap(hw, compile_standard(hw), traced_graph(load_card(card)), context)


@pytest.mark.parametrize("hw_name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
def test_an_embedding_entry_issues_exactly_the_commands_of_its_own_row(hw_name):
    m = _map(hw_name)
    for tensor in ("transformer.wte.weight", "transformer.wpe.weight"):
        t = m.tables[tensor]
        period = t.slots_per_wave * t.pack if hasattr(t, "slots_per_wave") else 1
        for entry in sorted({0, 1, period - 1, period, period + 3, 3 * period + 5, t.rows_out - 1}):
            if not 0 <= entry < t.rows_out:
                continue
            got = m.embedding(tensor, entry)
            want = read_row_program(m.compiled, replace(t, first_row=0), entry)
            rows = np.where(want.row >= 0, want.row + t.first_row, want.row)
            assert np.array_equal(got.cmd, want.cmd) and np.array_equal(got.node, want.node)
            assert np.array_equal(got.column, want.column) and np.array_equal(got.rows(), rows)
            assert got.key == ("embedding", t.rows_out, t.cols_in, entry, m.ns)


def test_fast_timing_of_a_reused_embedding_stream_is_that_of_its_own_commands():
    """The reused stream is timed as its first entry's; simulating the entry's own rows gives the same."""
    m = _map("gddr6-aim.yaml")
    t = m.tables[WTE]
    period = t.slots_per_wave * t.pack
    entry = 2 * period + 7
    got = m.embedding(WTE, entry)
    assert got.commands_key is not None and got.commands_key != got.key
    fast = FastTiming(m.compiled)
    own = replace(got, row=np.where(got.row >= 0, got.row + 2 * t.segments, got.row), commands_key=None)
    a, b = fast.known(got), fast._simulate(own)
    assert (a.cycles, a.last_issue, a.channel_cycles, a.cost) == (b.cycles, b.last_issue, b.channel_cycles, b.cost)
    assert np.array_equal(a.commands, b.commands) and np.array_equal(a.rows, b.rows)
    assert np.array_equal(a.extra, b.extra)
    # one simulation for the round: the next round's entry is known without simulating again
    before = len(fast._by_commands)
    fast.known(m.embedding(WTE, entry + period))
    assert len(fast._by_commands) == before and len(fast._known) == 2
