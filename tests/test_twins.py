"""Twin channels (pimsim.dram.twins): a channel that starts a stream equivalent to another issuing the same
commands is copied from it instead of issued. Held to issuing every channel command by command: the whole
final State byte for byte, on every bundled standard, from histories that make channels alike and not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BUNDLED, S, compiled, stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.dram.kernel import issue_twins, repeat_runs, run_commands, split_by_channel
from pimsim.dram.periods import latency_from, period_groups
from pimsim.dram.timing_state import B_LAST, C_CONFLICTS, C_HITS, C_PREV, N_ANC, N_HI, N_LO, new_state
from pimsim.dram.twins import U_CLOSES, U_FIRST_OPEN, U_OPENS, bank_uses, representatives
from pimsim.trace.generate import pim_row_sweep

CONFIGS = [(name,) for name in BUNDLED] + [("hbm3-pim.yaml", "dram.refresh.policy=per-bank")]
# kinds of history a channel has before the common stream (see _history)
HISTORIES = ("same", "none", "shorter", "other-rows", "first-row", "late")


def _common(c, channels: int, rows: int, first: int):
    """What every channel issues alike: a GEMV's all-bank row sweep where the standard computes in its banks,
    else a row sweep over four banks (ACT, RD, PRE per bank and row); channels one after another."""
    org = c.hw.dram.organization
    if "MACAB" in c.command_names:
        tr = pim_row_sweep(c, rows=rows, macs_per_row=min(8, org.accesses_per_row), channels=channels, with_io=True)
        return tr.cmd, tr.node, np.where(tr.row >= 0, first + tr.row, tr.row), tr.column
    steps = []
    for ch in range(channels):
        for r in range(rows):
            steps += [S("ACT", channel=ch, bg=b, row=first + r) for b in range(2)]
            steps += [S("RD", channel=ch, bg=b, row=first + r, col=8) for b in range(2)]
            steps += [S("PRE", channel=ch, bg=b) for b in range(2)]
    return stream(c, steps)[:4]


def _history(c, kind: str, ch: int, tmin: int, common_first_row: int):
    """Steps a channel issues before the common stream, by kind: the same as channel 0 ("same"), nothing,
    a shorter one (it idles through a refresh the others issue while busy), other rows, the row the common
    stream opens first (so its first activate is a miss where the others' is a conflict), or channel 0's
    and then a precharge just before the common stream starts (its cycle still binds the activate after it,
    while the channel's floor does not)."""
    if kind == "none":
        return []
    rows = {"shorter": 1}.get(kind, 6)
    row = {"other-rows": 40, "first-row": common_first_row - rows + 1}.get(kind, 30)
    steps = []
    for r in range(rows):
        for b in range(4):
            steps += [S("ACT", channel=ch, bg=b % 2, bank=b // 2, row=row + r),
                      S("WR", channel=ch, bg=b % 2, bank=b // 2, row=row + r, col=0),
                      S("PRE", channel=ch, bg=b % 2, bank=b // 2)]
    if kind == "late":
        steps.append(S("PRE", channel=ch, at=max(tmin - 3, 0)))
    return steps


def _state(c, histories, tmin: int, first_row: int):
    st = new_state(c.spec)
    for ch, kind in enumerate(histories):
        steps = _history(c, kind, ch, tmin, first_row)
        if steps:
            _, _, _, err = run_commands(c.spec, *stream(c, steps), state=st, issue_cycles=False)
            assert err[0] == 0, err
    return st


def _both(c, histories, tmin: int, rows: int = 12, first_row: int = 8):
    """The common stream from tmin after the histories: issued channel by channel and command by command,
    and through issue_twins. Returns both States, the twins' copy count and the stream's uses per span."""
    cmd, node, row, col = _common(c, len(histories), rows, first_row)
    reference = _state(c, histories, tmin, first_row)
    _, _, _, err = run_commands(c.spec, cmd, node, row, col, np.array([tmin]), record=True, state=reference)
    assert err[0] == 0, err
    channel = c.spec.node[node, N_ANC]
    split = split_by_channel(channel)
    rep = representatives(c.spec.node, cmd, node, row, col, split.bounds)
    span_channel = channel[split.bounds[:-1]]
    bounds = split.bounds.tolist()
    uses = np.stack([bank_uses(c.spec.node, c.spec.cmds, cmd, node, lo, hi, int(ch))
                     for lo, hi, ch in zip(bounds, bounds[1:], span_channel)])
    twins = _state(c, histories, tmin, first_row)
    err, copied = issue_twins(c.spec, twins, cmd, node, row, col, tmin, split.bounds, span_channel, rep, uses,
                              latency_from(c.spec.rules, c.spec.cmds.shape[0]), repeat_runs(cmd, node, row),
                              period_groups(c.spec, cmd, node, row))
    assert err[0] == 0, err
    return reference, twins, copied, uses


def _same_state(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda x: "-".join(x))
def test_channels_alike_are_copied_and_leave_the_same_state(config):
    c = compiled(*config)
    channels = min(4, c.hw.dram.organization.channels)
    if channels < 2:
        pytest.skip("one channel")
    tmin = 3 * c.refresh_interval + 17
    reference, twins, copied, _ = _both(c, ["same"] * channels, tmin)
    assert copied == channels - 1
    assert _same_state(reference, twins)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda x: "-".join(x))
def test_a_channel_whose_past_still_binds_is_issued_itself(config):
    c = compiled(*config)
    if c.hw.dram.organization.channels < 3:
        pytest.skip("fewer than three channels")
    tmin = int(2.5 * c.refresh_interval)
    before = _state(c, ["same", "late", "same"], tmin, 8)
    if before.chan[1, C_PREV] != tmin - 3:  # its floor is to bind nothing: the precharge's cycle is to decide
        assert c.hw.dram.refresh.policy == "per-bank"  # (a refresh every 317 cycles delayed the precharge)
        pytest.skip("a per-bank refresh delays the precharge")
    reference, twins, copied, _ = _both(c, ["same", "late", "same"], tmin)
    assert copied == 1  # channel 2 is channel 0's twin; channel 1 closed a bank just before the stream
    assert _same_state(reference, twins)


def test_a_channel_that_idled_through_a_refresh_is_caught_up_and_then_alike():
    """Channel 0 is busy when a refresh falls due and issues it late; channel 1 finished before and still owes
    it when the stream starts. The kernel would refresh channel 1 first thing; caught up first, both are alike
    (the refresh cycles differ but bind nothing any more)."""
    c = compiled("gddr6-aim.yaml")
    nrefi = c.refresh_interval
    ch0 = []
    for r in range(40):  # busy past the first refresh (due at nrefi)
        ch0 += [S("ACT", channel=0, row=r), S("WR", channel=0, row=r, col=0), S("PRE", channel=0)]
    ch1 = [S("ACT", channel=1, row=0), S("WR", channel=1, row=0, col=0), S("PRE", channel=1)]
    cmd, node, row, col = _common(c, 2, 6, 3)
    states = []
    for twin in (False, True):
        st_ = new_state(c.spec)
        for steps in (ch0, ch1):
            run_commands(c.spec, *stream(c, steps), state=st_, issue_cycles=False)
        # the stream starts once channel 0's last commands bind nothing any more, before its next refresh
        tmin = int(st_.chan[0, C_PREV]) + int(latency_from(c.spec.rules, c.spec.cmds.shape[0]).max()) + 100
        assert nrefi < st_.chan[0, C_PREV] and tmin < 2 * nrefi
        if twin:
            assert st_.ref_due.tolist()[:2] == [2 * nrefi, nrefi]  # channel 1 owes the refresh
            split = split_by_channel(c.spec.node[node, N_ANC])
            rep = representatives(c.spec.node, cmd, node, row, col, split.bounds)
            uses = np.stack([bank_uses(c.spec.node, c.spec.cmds, cmd, node, lo, hi, ch) for lo, hi, ch in
                             ((split.bounds[0], split.bounds[1], 0), (split.bounds[1], split.bounds[2], 1))])
            err, copied = issue_twins(c.spec, st_, cmd, node, row, col, tmin, split.bounds, np.array([0, 1]), rep,
                                      uses, latency_from(c.spec.rules, c.spec.cmds.shape[0]))
            assert err[0] == 0 and copied == 1
        else:
            run_commands(c.spec, cmd, node, row, col, np.array([tmin]), record=True, state=st_)
        states.append(st_)
    assert _same_state(*states)


@pytest.mark.parametrize("config", [("gddr6-aim.yaml",), ("hbm-pim.yaml",)], ids=lambda x: x[0])
def test_last_rows_differing_count_the_same_only_where_the_first_activate_sees_it_alike(config):
    """Banks last opened at other rows: a twin where the stream's first activate is a conflict on both; issued
    itself where it is a miss on one (the row it opens was the one last open there), and then the row
    outcome counts differ by channel as command by command."""
    c = compiled(*config)
    tmin = 3 * c.refresh_interval + 17
    reference, twins, copied, _ = _both(c, ["same", "other-rows"], tmin)
    assert copied == 1 and _same_state(reference, twins)
    assert (reference.bank[:, B_LAST] >= 0).any()
    reference, twins, copied, _ = _both(c, ["same", "first-row"], tmin)
    assert copied == 0 and _same_state(reference, twins)
    assert reference.chan[0, C_HITS:C_CONFLICTS + 1].tolist() != reference.chan[1, C_HITS:C_CONFLICTS + 1].tolist()


def test_bank_uses_name_the_first_activate_before_a_close_and_what_the_stream_does():
    c = compiled("ddr4-2400.yaml")
    steps = [S("PRE", bg=1), S("ACT", bg=1, row=4), S("ACT", bg=0, row=9), S("RD", bg=0, row=9, col=0),
             S("PRE", bg=0), S("ACT", bg=0, row=2)]
    cmd, node, _, _ = stream(c, steps)[:4]
    uses = bank_uses(c.spec.node, c.spec.cmds, cmd, node, 0, len(cmd), 0)
    bank = lambda bg: int(c.bank_node(0, 0, bg, 0) - c.spec.node[0, N_LO + 3])  # noqa: E731
    assert uses[bank(0)].tolist() == [2, 1, 1]  # first activate at position 2, opened, closed
    assert uses[bank(1)].tolist() == [-1, 1, 1]  # closed first: its last row is written before it is read
    untouched = [b for b in range(c.spec.node[0, N_HI + 3] - c.spec.node[0, N_LO + 3]) if b not in (bank(0), bank(1))]
    assert (uses[untouched][:, [U_FIRST_OPEN, U_OPENS, U_CLOSES]] == [-1, 0, 0]).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(CONFIGS), histories=st.lists(st.sampled_from(HISTORIES), min_size=2, max_size=4),
       start=st.floats(0.2, 3.0), rows=st.integers(2, 30))
def test_any_histories_leave_the_state_issuing_every_channel_leaves(config, histories, start, rows):
    c = compiled(*config)
    histories = histories[:c.hw.dram.organization.channels]
    if len(histories) < 2:
        return
    tmin = int(start * c.refresh_interval)
    reference, twins, copied, _ = _both(c, histories, tmin, rows=rows)
    assert _same_state(reference, twins)


# every bundled PIM system, and HBM3-PIM's per-bank refresh
RUN_CONFIGS = [("gddr6-aim.yaml",), ("hbm-pim.yaml",), ("hbm3-pim.yaml",),
               ("hbm3-pim.yaml", "dram.refresh.policy=per-bank"), ("lpddr5-pim.yaml",), ("aimx.yaml",), ("cent.yaml",),
               ("pim-gpt.yaml",)]


@pytest.mark.parametrize("config", RUN_CONFIGS, ids=lambda x: "-".join(x))
def test_cycle_fidelity_run_is_the_same_without_twins(config, monkeypatch):
    """End to end: a model run at cycle fidelity with channels copied and with every channel issued."""
    import pimsim.engine.dram_timing as dram_timing
    from pimsim.runs import run_model

    timings, results = [], []
    real = dram_timing.CycleTiming.__init__

    def init(self, *args, **kw):
        real(self, *args, **kw)
        timings.append(self)

    monkeypatch.setattr(dram_timing.CycleTiming, "__init__", init)
    copied = []
    for twins in (True, False):
        monkeypatch.setattr(dram_timing, "TWIN_CHANNELS", twins)
        timings.clear()
        results.append(json.dumps(run_model(config[0], "gpt2", prompt_len=3, gen_tokens=2, fidelity="cycle",
                                            overrides=list(config[1:])), sort_keys=True, default=str))
        copied.append(sum(t.twin_channels for t in timings))
    assert results[0] == results[1]
    assert copied[0] > 20 and copied[1] == 0  # channels were copied, and then none
