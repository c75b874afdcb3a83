"""The protocol checker finds planted violations and accepts everything the kernel emits."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import BUNDLED, S, compiled, issue, no_refresh, without_fast_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.dram.checker import Issued, check, issued_from_record
from pimsim.dram.standard import Effect, Level

DDR4 = "ddr4-2400.yaml"


def test_planted_nrcd_violation_is_reported_with_both_commands_and_gaps():
    c = no_refresh(DDR4)
    trace = [Issued(0, 0, "ACT", 0, 0, 3, 2), Issued(5, 0, "RD", 0, 0, 3, 3)]
    (v,) = check(c, trace)
    assert "nRCD" in v.rule and v.required == 16 and v.actual == 5
    assert v.earlier.line == 2 and v.later.line == 3
    assert "line 3" in str(v) and "line 2" in str(v)


def test_state_violations_are_reported():
    c = no_refresh(DDR4)
    assert "no open row" in check(c, [Issued(0, 0, "RD", 0, 0, -1, 1)])[0].rule
    twice = check(c, [Issued(0, 0, "ACT", 0, 0, 1, 1), Issued(100, 0, "ACT", 0, 0, 2, 2)])
    assert any("has row 1 open" in v.rule for v in twice)
    wrong = check(c, [Issued(0, 0, "ACT", 0, 0, 1, 1), Issued(100, 0, "RD", 0, 0, 2, 2)])
    assert any("accesses row 2" in v.rule for v in wrong)


def test_four_activate_window_violation_is_found():
    c = no_refresh(DDR4)
    acts = [Issued(4 * k, 0, "ACT", k % 4, k // 4, 0, k + 1) for k in range(5)]
    violations = check(c, acts)
    assert len(violations) == 1 and "window 4" in violations[0].rule and violations[0].required == 26


def test_refresh_starvation_is_found():
    c = compiled(DDR4)
    refi = c.timing["nREFI"]
    trace = [Issued(0, 0, "ACT", 0, 0, 0, 1), Issued(10 * refi, 0, "RD", 0, 0, 0, 2)]
    assert any("no refresh" in v.rule for v in check(c, trace))
    assert check(c, trace, check_refresh=False) == []


def test_moving_any_kernel_command_one_cycle_earlier_is_caught():
    c = compiled("gddr6-aim.yaml")
    # AiM's mode changes (MODCH) into MAC mode before the row's MACs and back before the result read
    steps = [S("WRGB", col=k * 16) for k in range(4)] + [S("MODCH"), S("ACTAB", row=2)]
    steps += [S("MACAB", col=k * 16) for k in range(4)] + [S("MODCH"), S("RDMAC"), S("MODCH"), S("PREA"),
                                                            S("ACTAB", row=3)]
    _, _, rec = issue(c, steps, record=True)
    issued = issued_from_record(c, rec)
    assert check(c, issued) == []
    caught = 0
    for k in range(1, len(issued)):
        if issued[k].cycle - 1 > issued[k - 1].cycle:
            moved = list(issued)
            moved[k] = dataclasses.replace(issued[k], cycle=issued[k].cycle - 1)
            assert check(c, moved), f"moving command {k} ({issued[k].command}) earlier went unnoticed"
            caught += 1
    assert caught >= 5


# --- random command streams: whatever the kernel issues, the checker accepts ---------------------

@st.composite
def legal_streams(draw, name):
    """A random stream that is legal in bank-state terms; timing is the kernel's business."""
    c = compiled(name)
    org = c.hw.dram.organization
    std = c.standard
    open_rows: dict[tuple[int, int, int], int] = {}
    modes: dict[int, str] = {}  # per channel, on a device with modes (GDDR6-AiM)
    steps = []
    for _ in range(draw(st.integers(1, 60))):
        ch = draw(st.integers(0, min(org.channels, 2) - 1))
        g = draw(st.integers(0, org.bankgroups - 1))
        b = draw(st.integers(0, org.banks_per_group - 1))
        name_ = draw(st.sampled_from(std.command_names))
        cmd = std.command(name_)
        banks = [(ch, g, b)] if cmd.scope == Level.BANK else \
            [(ch, gg, bb) for gg in range(org.bankgroups) for bb in range(org.banks_per_group)]
        rows = {open_rows.get(k, -1) for k in banks}
        row = draw(st.integers(0, 3))
        repeat = draw(st.integers(0, 3)) if cmd.effect == Effect.ACCESS else 0  # runs for the fast path
        # mostly back to back, so that rules bind; now and then a jump (refresh falls due)
        at = draw(st.integers(0, 30_000)) if draw(st.integers(0, 9)) == 0 else 0
        kw = dict(channel=ch, bg=g, bank=b, at=at)
        if cmd.effect == Effect.OPEN:
            if rows != {-1}:
                continue
            kw["row"] = row
            for k in banks:
                open_rows[k] = row
        elif cmd.effect == Effect.ACCESS:
            if -1 in rows:
                continue
            kw["row"] = rows.pop() if len(rows) == 1 else -1
        elif cmd.effect == Effect.REFRESH:
            if rows != {-1}:
                continue
        elif cmd.effect == Effect.CLOSE:
            for k in banks:
                open_rows[k] = -1
        mode = modes.get(ch, std.initial_mode)
        if name_ == std.mode_change:
            modes[ch] = std.other_mode(mode)
        elif cmd.mode and cmd.mode != mode:  # switch first, as a mapper does
            steps.append((std.mode_change, dict(channel=ch, bg=g, bank=b, at=at)))
            modes[ch] = cmd.mode
        steps.extend([(name_, kw)] * (1 + repeat))
    return steps


def _random_stream_is_clean(name, steps):
    if not steps:
        return
    c = compiled(name)
    _, _, rec = issue(c, steps, record=True)
    violations = check(c, issued_from_record(c, rec))
    assert violations == [], [str(v) for v in violations[:5]]
    # and the repeated-command fast path changed nothing
    _, _, slow = issue(without_fast_path(c), steps, record=True)
    assert (rec == slow).all()


@pytest.mark.parametrize("name", BUNDLED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_kernel_streams_are_protocol_clean(name, data):
    _random_stream_is_clean(name, data.draw(legal_streams(name)))
