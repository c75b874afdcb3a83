"""Every constraint of every bundled standard: the following command is illegal at t-1, legal at t.

For each rule (level L, preceding p, following n) a scenario issues p late (so nothing before it can
bind), then n on a node that shares exactly the level-L node with p (the same bank for bank rules, a
sibling bank for bank-group rules, another bank group for rank rules). The kernel picks n's cycle t;
the independent checker must accept the stream as issued, reject it with n moved to t-1, and, where
this rule is the one that binds, name it.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import BUNDLED, no_refresh, stream

from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.dram.standard import Effect, Level
from pimsim.dram.timing_state import P_GAP

LATE = 1000  # p is issued at or after this cycle, long after any setup command


def _target(level: Level, role: str):
    """(bg, bank) for the preceding ('p') and following ('n') bank-scoped command of a rule at level."""
    if role == "p" or level == Level.BANK:
        return 0, 0
    if level == Level.BANKGROUP:
        return 0, 1
    if level == Level.RANK:
        return 1, 0
    return 1, 1


def _banks(c, name, bg, bank):
    if c.standard.command(name).scope == Level.BANK:
        return [(bg, bank)]
    org = c.hw.dram.organization
    return [(g, b) for g in range(org.bankgroups) for b in range(org.banks_per_group)]


def _setup(c, state: dict, name: str, bg: int, bank: int, steps: list, at: int = 0):
    """Append commands that make `name` legal given the open rows and the mode in `state` (updated)."""
    cmd = c.standard.command(name)
    std = c.standard
    if cmd.mode and cmd.mode != state.get("mode", std.initial_mode):  # AiM: a mode change first
        steps.append((std.mode_change, dict(at=at)))
        state["mode"] = cmd.mode
    banks = _banks(c, name, bg, bank)
    if cmd.effect == Effect.ACCESS:
        closed = [b for b in banks if state.get(b, -1) < 0]
        if closed and len(closed) == len(banks) and len(banks) > 1 and c.standard.activate_all:
            steps.append((c.standard.activate_all, dict(row=5, at=at)))
            for b in closed:
                state[b] = 5
        for g, b in closed:
            if state.get((g, b), -1) < 0:
                steps.append(("ACT", dict(bg=g, bank=b, row=5, at=at)))
                state[(g, b)] = 5
    elif cmd.effect in (Effect.OPEN, Effect.REFRESH):
        opened = [b for b in banks if state.get(b, -1) >= 0]
        if len(opened) > 1 or (opened and len(banks) > 1):
            steps.append(("PREA", dict(at=at)))
            for b in [k for k in state if k != "mode"]:
                state[b] = -1
        elif opened:
            g, b = opened[0]
            steps.append(("PRE", dict(bg=g, bank=b, at=at)))
            state[(g, b)] = -1


def _issue(c, state: dict, name: str, bg: int, bank: int, steps: list, at: int = 0):
    cmd = c.standard.command(name)
    row = 5 if cmd.effect in (Effect.OPEN, Effect.ACCESS) else -1
    steps.append((name, dict(bg=bg, bank=bank, row=row, at=at)))
    if name == c.standard.mode_change:
        state["mode"] = c.standard.other_mode(state.get("mode", c.standard.initial_mode))
    for b in _banks(c, name, bg, bank):
        if cmd.effect == Effect.OPEN:
            state[b] = row
        elif cmd.effect == Effect.CLOSE:
            state[b] = -1


def _legal(c, state: dict, name: str, bg: int, bank: int) -> bool:
    trial: list = []
    _setup(c, dict(state), name, bg, bank, trial)
    return not trial


def _prepare(c, state: dict, name: str, bg: int, bank: int, steps: list, at: int = 0):
    _setup(c, state, name, bg, bank, steps, at=0)
    _issue(c, state, name, bg, bank, steps, at=at)


def build(c, rule, p: str, n: str):
    """Steps for one scenario and the index of the preceding command that the rule counts from."""
    state: dict = {}
    steps: list = []
    if rule.window > 1:  # w preceding commands on distinct banks, then the following one
        spots = [(g, b) for b in range(4) for g in range(4)][: rule.window + 1]
        for g, b in spots[: rule.window]:
            _prepare(c, state, p, g, b, steps, at=LATE)
        ref = len(steps) - 1
        while steps[ref][0] != p:
            ref -= 1
        nbg, nbank = spots[rule.window]
        _prepare(c, state, n, nbg, nbank, steps)
        return steps, None
    pbg, pbank = _target(rule.level, "p")
    nbg, nbank = _target(rule.level, "n")
    # Prefer setting n up before p, so nothing but p stands between them; fall back to after p.
    trial_state, trial = {}, []
    _setup(c, trial_state, n, nbg, nbank, trial)
    _setup(c, trial_state, p, pbg, pbank, trial)
    if _legal(c, trial_state, p, pbg, pbank):
        after_p = dict(trial_state)
        _issue(c, after_p, p, pbg, pbank, [])
        if _legal(c, after_p, n, nbg, nbank):
            _issue(c, trial_state, p, pbg, pbank, trial, at=LATE)
            trial.append((n, dict(bg=nbg, bank=nbank,
                                  row=5 if c.standard.command(n).effect in (Effect.OPEN, Effect.ACCESS) else -1)))
            return trial, len(trial) - 2
    _prepare(c, state, p, pbg, pbank, steps, at=LATE)
    p_index = len(steps) - 1
    _prepare(c, state, n, nbg, nbank, steps)
    return steps, p_index


def _scenarios():
    for hw in BUNDLED:
        c = no_refresh(hw)
        for idx, (rule, lat) in enumerate(c.constraints):
            for p in rule.preceding:
                for n in rule.following:
                    yield pytest.param(hw, idx, p, n, id=f"{c.standard.name}-{idx}-{p}-{n}-{rule.level.name}")


def _issued(c, rec):
    return issued_from_record(c, rec)


@pytest.mark.parametrize("hw,idx,p,n", list(_scenarios()))
def test_constraint_is_exact(hw, idx, p, n):
    c = no_refresh(hw)
    rule, lat = c.constraints[idx]
    steps, p_index = build(c, rule, p, n)
    st, at, rec, err = run_commands(c.spec, *stream(c, steps), record=True)
    assert err[0] == 0
    issued = _issued(c, rec)
    assert check(c, issued) == [], "the kernel's own stream must be protocol-clean"

    t_n = int(at[-1])
    if rule.window > 1:
        p_times = [int(at[k]) for k, (name, _) in enumerate(steps[:-1]) if name == p]
        ref = p_times[-rule.window]
    else:
        ref = int(at[p_index])
    if lat > 0:
        assert t_n >= ref + lat, f"{rule} not respected"
    # one cycle earlier must break some rule, unless n sat at the in-order floor of the stream
    if t_n - 1 >= int(at[-2]) + c.spec.params[P_GAP] and t_n > 0:
        moved = issued[:-1] + [dataclasses.replace(issued[-1], cycle=t_n - 1)]
        violations = check(c, moved)
        assert violations, f"{n} at {t_n - 1} should violate a rule"
        if lat > 0 and t_n == ref + lat and rule.window == 1:
            want = f"{rule.level.name.lower()} level ({rule.latency})"
            assert any(want in v.rule and p in v.rule.split(" -> ")[0].split("/") for v in violations), \
                [str(v) for v in violations]


def test_every_rule_binds_somewhere():
    """Guards the scenario builder: most rules must be the binding one in their own scenario."""
    binding = total = 0
    for param in _scenarios():
        hw, idx, p, n = param.values
        c = no_refresh(hw)
        rule, lat = c.constraints[idx]
        if rule.window > 1 or lat <= 1:
            continue
        steps, p_index = build(c, rule, p, n)
        _, at, _, err = run_commands(c.spec, *stream(c, steps))
        assert err[0] == 0
        total += 1
        binding += int(at[-1] == at[p_index] + lat)
    assert total > 100
    assert binding / total > 0.5, (binding, total)
