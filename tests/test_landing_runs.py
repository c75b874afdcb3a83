"""Fast fidelity's landing runs (a refresh due inside a short stream, simulated where it lands) held to the
way they were first done: the whole stream issued from an idle memory with every rank's first refresh due
at that cycle. Same cycles, same added commands, same refresh count, and every channel's final state the
same, for landings all over real engine streams and hand-written ones on every bundled standard. And
FastTiming's per-use path and its sampled refresh costs of long streams beside the ones they replaced
(tests/reference_fast_timing.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import BUNDLED, TINY_GPT2, S, compiled, stream, write_card
from reference_fast_timing import ReferenceFastTiming

from pimsim.dram.kernel import run_commands
from pimsim.dram.timing_state import C_END, C_LAST_NODE, N_ANC, N_HI, N_LEVEL, N_LO, P_BASE, new_state
from pimsim.engine.dram_timing import FastTiming
from pimsim.mapper.model import ModelMap, Stream
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

# PIM configs (and refresh policies) the engine's streams are taken from
ENGINE_CONFIGS = [("gddr6-aim.yaml",), ("hbm-pim.yaml",), ("hbm3-pim.yaml",),
                  ("hbm3-pim.yaml", "dram.refresh.policy=per-bank"), ("lpddr5-pim.yaml",), ("pim-gpt.yaml",)]


def _reference(fast: FastTiming, s: Stream, due: int):
    """The landing run as first written: the whole stream, every channel, from an idle memory."""
    k = fast.known(s)
    st = new_state(fast.spec)
    st.ref_due[:] = due
    err = run_commands(fast.spec, s.cmd, s.node, s.row, s.column, np.zeros(1, np.int64), state=st,
                       issue_cycles=False)[3]
    assert err[0] == 0
    chans = np.fromiter(k.channel_cycles, np.int64)
    added = (st.counts.sum(axis=0) - k.commands).astype(np.float64)
    added[fast.ref_id] = 0
    refreshes = max(int(st.counts[chans, fast.ref_id].max()), 1)
    return (max(int(st.chan[chans, C_END].max()) - k.cycles, 0), added, refreshes), st


def _channel_part(fast: FastTiming, state, channel: int) -> list[np.ndarray]:
    """Everything in a state that belongs to one channel (its nodes' timing and windows, its banks, its
    counters, its ranks' refresh clocks), in the channel's own numbering."""
    tree, params = fast.spec.node, fast.spec.params
    part = []
    for level in range(4):
        lo, hi = tree[channel, N_LO + level], tree[channel, N_HI + level]
        part += [state.T[lo:hi], state.Tsub[lo:hi], state.win_hist[:, lo:hi], state.win_count[:, lo:hi]]
    banks = slice(tree[channel, N_LO + 3] - params[P_BASE + 3], tree[channel, N_HI + 3] - params[P_BASE + 3])
    ranks = slice(tree[channel, N_LO + 1] - params[P_BASE + 1], tree[channel, N_HI + 1] - params[P_BASE + 1])
    chan = state.chan[channel].copy()
    if chan[C_LAST_NODE] >= 0:  # the node issued last, numbered within the channel
        chan[C_LAST_NODE] -= tree[channel, N_LO + tree[chan[C_LAST_NODE], N_LEVEL]]
    return part + [state.bank[banks], chan, state.counts[channel], state.ref_due[ranks]]


def _dues(last_issue: int) -> list[int]:
    """Landing cycles spread over the stream, and stretches of consecutive ones (inside runs of repeats)."""
    spread = set(range(1, last_issue + 1, max(last_issue // 20, 1)))
    for at in (last_issue // 7, last_issue // 2, last_issue * 5 // 6):
        spread.update(range(max(at, 1), min(at + 12, last_issue) + 1))
    return sorted(spread | {1, last_issue})


def _assert_lands_alike(fast: FastTiming, s: Stream) -> int:
    k = fast.known(s)
    kinds = fast._kinds_of(s)
    kind_of = {}
    for c in k.channel_cycles:
        for rep in kinds.channels.tolist():
            if np.array_equal(_cmds_of(fast, s, c), _cmds_of(fast, s, rep)):
                kind_of[c] = rep
                break
    assert set(kind_of) == set(k.channel_cycles)
    for due in _dues(k.last_issue):
        (cycles, added, refreshes), whole = _reference(fast, s, due)
        got = fast._land(s, k, due)
        assert (got[0], got[2]) == (cycles, refreshes), (s.key, due)
        np.testing.assert_array_equal(got[1], added)
        ran = fast._landing_state(s, kinds, due)
        for c, rep in kind_of.items():
            for a, b in zip(_channel_part(fast, whole, c), _channel_part(fast, ran, rep)):
                np.testing.assert_array_equal(a, b, err_msg=f"{s.key} due {due} channel {c}")
    return len(kinds.channels)


def _cmds_of(fast: FastTiming, s: Stream, channel: int) -> np.ndarray:
    tree = fast.spec.node
    on = tree[s.node, N_ANC] == channel
    level = tree[s.node, N_LEVEL]
    relative = s.node[on] - tree[channel, N_LO + level[on]]
    return np.stack([s.cmd[on], relative, s.row[on], s.column[on]])


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    return traced_graph(load_card(write_card(tmp_path_factory.mktemp("cards"), "tiny-gpt2", "gpt2", TINY_GPT2)))


@pytest.mark.parametrize("config", ENGINE_CONFIGS, ids=lambda c: "+".join(c))
def test_landing_runs_of_engine_streams_match_whole_stream_runs(config, tiny_graph):
    c = compiled(*config)
    m = ModelMap(c.hw, c, tiny_graph, 64)
    streams = [m.gemv(next(iter(m.tables))), m.scores(0, 37, 4), m.context(0, 37, 4), m.append(0, 5, "k"),
               m.append(0, 21, "v"), m.embedding(next(iter(m.tables)), 3)]
    fast = FastTiming(c)
    kinds = [_assert_lands_alike(fast, s) for s in streams if fast.known(s).landed]
    assert len(kinds) >= 4
    assert any(n < len(fast.known(s).channel_cycles) for n, s in zip(kinds, streams))  # channels did run alike


def _handmade(c, channels: int, reads: int = 24) -> Stream:
    """Channels of three kinds (row sweeps of reads, of writes, and reads again on other banks), their
    commands interleaved: the landing run issues one channel of each kind, from the middle of the stream."""
    per_channel = []
    for ch in range(channels):
        kind = ch % 3
        steps = []
        for bank in range(3):
            b = bank + (4 if kind == 2 else 0)
            steps.append(S("ACT", channel=ch, bank=b % 4, bg=b // 4, row=10 + bank))
            steps += [S("WR" if kind == 1 else "RD", channel=ch, bank=b % 4, bg=b // 4, row=10 + bank, col=j)
                      for j in range(reads)]
            steps.append(S("PRE", channel=ch, bank=b % 4, bg=b // 4))
        per_channel.append(steps)
    order = [steps[i] for i in range(max(map(len, per_channel))) for steps in per_channel if i < len(steps)]
    cmd, node, row, col, _ = stream(c, order)
    return Stream(("handmade", channels, reads), cmd, node, row, col, np.zeros(channels), np.zeros(channels))


@pytest.mark.parametrize("config", [(name,) for name in BUNDLED] + [
    ("ddr4-2400.yaml", "dram.organization.channels=4",
     "dram.address_mapping=[row, bank, bankgroup, channel, column, offset]"),
], ids=lambda c: c[0] + ("+" if len(c) > 1 else ""))
def test_landing_runs_of_handmade_streams_match_whole_stream_runs(config):
    c = compiled(*config)
    channels = min(c.hw.dram.organization.channels, 5)
    s = _handmade(c, channels)
    fast = FastTiming(c)
    assert _assert_lands_alike(fast, s) == min(channels, 3)


@pytest.mark.parametrize("config", [("gddr6-aim.yaml",), ("hbm-pim.yaml",), ("lpddr5-pim.yaml",),
                                    ("hbm3-pim.yaml", "dram.refresh.policy=per-bank"),
                                    ("gddr6-aim.yaml", "dram.refresh.enabled=false")], ids=lambda c: "+".join(c))
@pytest.mark.parametrize("follow_clock", [True, False])
def test_fast_timing_per_use_path_matches_the_one_it_replaced(config, follow_clock, tiny_graph, monkeypatch):
    """Streams short and long, in two operand formats and none, empty ones among them, from start times
    that leave the memory busy, idle for part of a refresh interval or for several, one by one and as a
    serial plan's lists (run_streams): every end time, channel end, busy time and count the same. One short
    stream comes back often enough that its landings fall back to bins. Busy time is added up from short
    logs (as a long run's is). Per-bank refresh and refresh off too."""
    monkeypatch.setattr("pimsim.engine.dram_timing.BUSY_BLOCK", 37)
    c = compiled(*config)
    m = ModelMap(c.hw, c, tiny_graph, 64)
    tables = list(m.tables)
    streams = [m.gemv(t) for t in tables[:4]] + [m.embedding(tables[0], e) for e in (0, 9)]
    streams += [m.scores(0, ctx, 4) for ctx in (5, 40)] + [m.context(0, ctx, 4) for ctx in (5, 40)]
    streams += [m.append(0, tok, which) for tok in (3, 30) for which in "kv"]
    channels = min(c.hw.dram.organization.channels, 5)
    streams += [_handmade(c, channels), _handmade(c, channels, 2000)]  # the second spans several nREFI
    streams = [replace(s, fmt=fmt) for s in streams for fmt in ("", "bf16", "int8")]
    empty = streams[0]
    streams.insert(0, replace(empty, key=("empty",), cmd=empty.cmd[:0], node=empty.node[:0], row=empty.row[:0],
                              column=empty.column[:0]))
    often = streams[-4]  # short, landed
    timers = [ReferenceFastTiming(c, follow_clock), FastTiming(c, follow_clock)]
    assert timers[1].known(streams[-1]).cycles > 2 * c.refresh_interval
    for timer in timers:
        timer.track_channels = True
    rng = np.random.default_rng(7)
    tck, nrefi = c.hw.dram.tCK_ps, c.refresh_interval
    times, breakdowns = [0, 0], [{"a": 0, "b": 0}, {"a": 0, "b": 0}]
    for i in range(150):  # lists of steps as a serial plan runs them, and single streams
        steps = []
        for j in range(int(rng.integers(1, 30))):
            s = often if j % 3 == 0 else streams[rng.integers(len(streams))]
            gap = rng.choice([0, int(rng.integers(1, 50)), int(rng.integers(1, nrefi)),
                              int(rng.integers(nrefi, 4 * nrefi))])
            steps.append((s, "ab"[j % 2], int(gap) * tck))
        for s, part, after in steps:  # the reference, one stream after another
            end = timers[0].run(s, times[0])
            breakdowns[0][part] += end - times[0]
            times[0] = end + after
        if i % 4:
            times[1] = timers[1].run_streams(steps, times[1], breakdowns[1])
        else:
            for s, part, after in steps:
                end = timers[1].run(s, times[1])
                breakdowns[1][part] += end - times[1]
                times[1] = end + after
        assert times[0] == times[1] and breakdowns[0] == breakdowns[1], i
        assert timers[0].channel_ends == timers[1].channel_ends
        if i % 25 == 0:  # busy time read in the middle of a run too
            assert timers[0].busy_ps.tobytes() == timers[1].busy_ps.tobytes()
    assert timers[0].busy_ps.tobytes() == timers[1].busy_ps.tobytes()
    assert repr(timers[0].counts()) == repr(timers[1].counts())
    if follow_clock and c.hw.dram.refresh.enabled:
        assert timers[1]._uses[often.key].bins  # landings past EXACT_LANDINGS went per bin


@pytest.mark.parametrize("config", [("gddr6-aim.yaml",), ("hbm-pim.yaml",), ("hbm3-pim.yaml",),
                                    ("hbm3-pim.yaml", "dram.refresh.policy=per-bank"), ("lpddr5-pim.yaml",)],
                         ids=lambda c: "+".join(c))
def test_sampled_refresh_costs_match_whole_stream_runs(config, tiny_graph):
    """What a stream costs (refresh-free length, per channel, and the average refresh cost and added commands
    of a long one) the same as when every channel was issued in each sampled run; following the clock and
    not (every stream sampled), on streams of one kind of channel, several, and every channel its own."""
    c = compiled(*config)
    m = ModelMap(c.hw, c, tiny_graph, 64)
    channels = min(c.hw.dram.organization.channels, 5)
    streams = [m.gemv(t) for t in list(m.tables)[:3]] + [m.scores(0, 40, 4), m.context(0, 40, 4), m.append(0, 30, "v"),
                                                          _handmade(c, channels, 2000), _handmade(c, 2, 2000)]
    for follow_clock in (True, False):
        new, old = FastTiming(c, follow_clock), ReferenceFastTiming(c, follow_clock)
        sampled = 0
        for s in streams:
            a, b = new._simulate(s), old._simulate(s)
            assert (a.cycles, a.last_issue, a.channel_cycles, a.cost, a.landed, a.leaves_open) == \
                (b.cycles, b.last_issue, b.channel_cycles, b.cost, b.landed, b.leaves_open), s.key
            for x, y in ((a.commands, b.commands), (a.rows, b.rows), (a.extra, b.extra)):
                assert x.tobytes() == y.tobytes(), s.key
            sampled += not a.landed
        assert sampled >= 2
