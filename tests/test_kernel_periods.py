"""Periodic row groups issued at once (pimsim.dram.periods) against the kernel command by command: issue
cycles, command counts, row hits/misses/conflicts and the whole final State, on every bundled standard."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
from conftest import BUNDLED, S, compiled, stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.dram.kernel import (
    E_GROUPS_SKIPPED,
    E_GROUPS_SKIPPED_AFTER_INSERT,
    issue_into,
    repeat_runs,
    run_commands,
    run_commands_parallel,
    split_by_channel,
)
from pimsim.dram.periods import G_DROW, G_LEN, G_MORE, G_POS, NO_GROUPS, period_groups
from pimsim.dram.timing_state import C_INSERTED, new_state
from pimsim.trace.generate import pim_row_sweep

# every standard's first bundled config, and HBM3-PIM's per-bank refresh (refresh bank by bank)
CONFIGS = [(name,) for name in BUNDLED] + [("hbm3-pim.yaml", "dram.refresh.policy=per-bank")]
PIM_CONFIGS = [config for config in CONFIGS if "MACAB" in compiled(*config).command_names]


def _pim_sweep(c, rows: int, macs: int, step: int, first: int, with_io: bool, channels: int):
    """An all-bank MAC sweep (a GEMV with ``with_io``), rows first, first + step, ..."""
    tr = pim_row_sweep(c, rows=rows, macs_per_row=macs, channels=channels, with_io=with_io)
    row = np.where(tr.row >= 0, first + step * tr.row, tr.row)
    return tr.cmd, tr.node, row, tr.column


def _bank_sweep(c, rows: int, banks: int, accesses: int, step: int, first: int, write: bool, channel: int = 0):
    """Rows swept over several banks at once: per row an ACT to each bank (a four-activate window where
    the standard has one), column accesses to each, a PRE to each."""
    org = c.hw.dram.organization
    places = [(bg, b) for b in range(org.banks_per_group) for bg in range(org.bankgroups)][:banks]
    steps = []
    for r in range(rows):
        row = first + step * r
        steps += [S("ACT", channel=channel, bg=bg, bank=b, row=row) for bg, b in places]
        steps += [S("WR" if write else "RD", channel=channel, bg=bg, bank=b, row=row, col=8 * k)
                  for k in range(accesses) for bg, b in places]
        steps += [S("PRE", channel=channel, bg=bg, bank=b) for bg, b in places]
    return stream(c, steps)[:4]


def _same_state(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _check(c, cmd, node, row, col, start: int, before=None):
    """The periodic path (runs and groups given) gives what issuing every command one at a time does;
    returns the groups, the reference record and the periodic run's error row (its skip counters)."""
    def state():
        st = new_state(c.spec)
        if before is not None:  # a stream issued before this one, into the same state
            run_commands(c.spec, *before, np.zeros(1, np.int64), state=st)
        return st

    tmin = np.array([start])
    # recording every command issues them one by one (no closed-form runs, no period skipping)
    ref_state, ref_at, rec, err = run_commands(c.spec, cmd, node, row, col, tmin, record=True, state=state())
    assert err[0] == 0
    runs, groups = repeat_runs(cmd, node, row), period_groups(c.spec, cmd, node, row)
    got_state, got_at, _, err = run_commands(c.spec, cmd, node, row, col, tmin, state=state(), runs=runs,
                                             periods=groups)
    assert err[0] == 0
    assert np.array_equal(got_at, ref_at), f"first differing command {np.flatnonzero(got_at != ref_at)[:1]}"
    assert _same_state(got_state, ref_state)
    engine = state()  # the engine's entry: one start cycle, the state only
    engine_err = issue_into(c.spec, engine, cmd, node, row, col, start, runs, groups)
    assert engine_err[0] == 0 and list(engine_err[E_GROUPS_SKIPPED:]) == list(err[E_GROUPS_SKIPPED:])
    assert _same_state(engine, ref_state)
    return groups, rec, err


@pytest.mark.parametrize("config", CONFIGS, ids=lambda x: "-".join(x))
def test_row_sweeps_with_refreshes_inside_groups_equal_the_command_by_command_kernel(config):
    c = compiled(*config)
    nrefi = c.refresh_interval
    org = c.hw.dram.organization
    pim = "MACAB" in c.command_names
    pim_skips, bank_skips = [], []
    per_bank = c.hw.dram.refresh.policy == "per-bank"
    for start in (0, nrefi // 3, 2 * nrefi - 5):
        if pim:
            sweep = _pim_sweep(c, rows=90, macs=org.accesses_per_row, step=2, first=7, with_io=True,
                               channels=min(2, org.channels))
            groups, rec, err = _check(c, *sweep, start)
            assert len(groups) and groups[:, G_MORE].max() >= 40 and set(groups[:, G_DROW]) == {2}
            assert (rec[:, 5] < 0).sum() >= 6, "refreshes fell inside the sweep"
            # the skip was taken, after a refresh too (not only equal because it never fired); per-bank
            # refresh (HBM3-PIM: one every 317 cycles) leaves no room for a proved pair and a skip
            if not per_bank:
                assert err[E_GROUPS_SKIPPED_AFTER_INSERT] > 0, list(err)
            pim_skips.append(int(err[E_GROUPS_SKIPPED]))
        sweep = _bank_sweep(c, rows=70, banks=min(8, org.bankgroups * org.banks_per_group), accesses=3, step=1,
                            first=3, write=False)
        groups, rec, err = _check(c, *sweep, start)
        assert len(groups) and (rec[:, 5] < 0).sum() >= 2
        bank_skips.append(int(err[E_GROUPS_SKIPPED]))
    assert not pim or per_bank or min(pim_skips) >= 20, pim_skips
    assert per_bank or max(bank_skips) > 0, f"no bank sweep skipped a group on {config}"
    assert not per_bank or max(pim_skips + bank_skips) == 0  # (so only equality is tested there)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(PIM_CONFIGS), rows=st.integers(4, 45), macs=st.integers(1, 40),
       step=st.sampled_from([0, 1, 2, 7, -1, -3]), start_frac=st.floats(0, 3), with_io=st.booleans(),
       channels=st.integers(1, 2), previous=st.booleans())
def test_any_pim_sweep_equals_the_command_by_command_kernel(config, rows, macs, step, start_frac, with_io, channels,
                                                           previous):
    c = compiled(*config)
    sweep = _pim_sweep(c, rows, macs, step, first=200, with_io=with_io, channels=channels)
    # a different sweep issued before (the engine's streams follow one another), or an idle memory
    before = _pim_sweep(c, 5, 3, 1, first=900, with_io=True, channels=channels) if previous else None
    _check(c, *sweep, int(start_frac * c.refresh_interval), before)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(CONFIGS), rows=st.integers(4, 30), banks=st.integers(1, 8), accesses=st.integers(1, 6),
       step=st.sampled_from([0, 1, 3, -2]), start_frac=st.floats(0, 3), write=st.booleans())
def test_any_bank_sweep_equals_the_command_by_command_kernel(config, rows, banks, accesses, step, start_frac, write):
    c = compiled(*config)
    org = c.hw.dram.organization
    sweep = _bank_sweep(c, rows, min(banks, org.bankgroups * org.banks_per_group), accesses, step, 100, write)
    _check(c, *sweep, int(start_frac * c.refresh_interval))


@pytest.mark.parametrize("name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
def test_parallel_channels_with_periods_equal_the_serial_kernel(name):
    """Channels interleaved in the stream, split over numba's threads with the groups in the split's order."""
    c = compiled(name)
    cmd, node, row, col = _pim_sweep(c, rows=60, macs=24, step=1, first=0, with_io=True, channels=None)
    ch = c.channel_of(node)
    rank = np.zeros(len(ch), np.int64)
    for k in np.unique(ch):
        rank[ch == k] = np.arange((ch == k).sum())
    order = np.lexsort((ch, rank))  # round robin over the channels, each channel's order kept
    cmd, node, row, col = cmd[order], node[order], row[order], col[order]
    start = np.array([c.refresh_interval + 11])
    ref_state, ref_at = run_commands(c.spec, cmd, node, row, col, start, record=True)[:2]
    split = split_by_channel(c.channel_of(node))
    ordered = [x[split.order] for x in (cmd, node, row)]
    runs, groups = repeat_runs(*ordered), period_groups(c.spec, *ordered)
    assert groups[:, G_MORE].max() >= 30
    assert not len(period_groups(c.spec, cmd, node, row))  # interleaved, no group lies on one channel
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            state = new_state(c.spec)
            _, at, err = run_commands_parallel(c.spec, split, cmd, node, row, col, start, state, runs=runs,
                                               periods=groups)
            assert err[0] == 0 and np.array_equal(at, ref_at)
            assert _same_state(state, ref_state), f"state differs on {threads} thread(s)"
            assert err[E_GROUPS_SKIPPED_AFTER_INSERT] > 0, "the channels skipped groups, after a refresh too"
    finally:
        numba.set_num_threads(before)


def test_the_kernel_skips_groups_it_is_given():
    """Groups are taken on trust, as runs are: groups of a sweep given with a stream whose later rows
    differ change the result, so the kernel did skip (and a stream's own groups give the exact one)."""
    c = compiled("gddr6-aim.yaml", "dram.refresh.enabled=false")
    cmd, node, row, col = _pim_sweep(c, rows=40, macs=8, step=1, first=0, with_io=True, channels=1)
    groups = period_groups(c.spec, cmd, node, row)
    other = row.copy()
    other[len(row) // 2:] = np.where(row[len(row) // 2:] >= 0, 0, -1)  # the second half sweeps row 0 only
    exact = run_commands(c.spec, cmd, node, other, col, np.zeros(1, np.int64))[0]
    trusted = run_commands(c.spec, cmd, node, other, col, np.zeros(1, np.int64), periods=groups)[0]
    assert not _same_state(exact, trusted)
    own = run_commands(c.spec, cmd, node, other, col, np.zeros(1, np.int64),
                       periods=period_groups(c.spec, cmd, node, other))[0]
    assert _same_state(exact, own)
    # a kernel-added command (refresh) ends a skip: none was added here
    assert exact.chan[0, C_INSERTED] == 0


def test_period_groups_of_a_small_stream():
    c = compiled("gddr6-aim.yaml")
    ids = {n: i for i, n in enumerate(c.command_names)}
    rk = int(c.rank_node(0))
    cmd, node, row = [], [], []
    for r in range(6):  # ACTAB, 3 MACAB, PREA on rows 10, 13, ..., 25
        for name, rr in (("ACTAB", 10 + 3 * r), ("MACAB", 10 + 3 * r), ("MACAB", 10 + 3 * r),
                         ("MACAB", 10 + 3 * r), ("PREA", -1)):
            cmd.append(ids[name]), node.append(rk), row.append(rr)
    groups = period_groups(c.spec, np.array(cmd), np.array(node), np.array(row))
    # each run start opens a group of 5 commands (the next run start of its command is 5 on); the one at
    # the first ACTAB is followed by 5 translates (rows 3 on), the first MACAB's by 4 (a sixth would
    # run past the stream)
    starts = {int(p): (int(n), int(m), int(d)) for p, n, m, d in groups[:, [G_POS, G_LEN, G_MORE, G_DROW]]}
    assert starts[0] == (5, 5, 3) and starts[1] == (5, 4, 3) and starts[4] == (5, 4, 3) and starts[5] == (5, 4, 3)
    assert starts[10] == (5, 3, 3) and 15 not in starts  # two translates left: fewer than worth it
    assert len(period_groups(c.spec, *(np.zeros(0, np.int64),) * 3)) == 0


def test_groups_of_another_stream_are_refused():
    c = compiled("gddr6-aim.yaml")
    cmd, node, row, col = _pim_sweep(c, rows=20, macs=8, step=1, first=0, with_io=True, channels=1)
    groups = period_groups(c.spec, cmd, node, row)
    with pytest.raises(ValueError, match="periods do not fit a stream of 100 commands"):
        run_commands(c.spec, cmd[:100], node[:100], row[:100], col[:100], np.zeros(1, np.int64), periods=groups)
    assert len(NO_GROUPS) == 0


def test_cycle_fidelity_run_is_the_same_without_period_groups(monkeypatch):
    """End to end: a model run at cycle fidelity with the engine's groups and with none."""
    import pimsim.engine.dram_timing as dram_timing
    from pimsim.runs import run_model

    out, found = [], []
    real = dram_timing.period_groups
    for use in (True, False):
        monkeypatch.setattr(dram_timing, "period_groups",
                            lambda *a: found.append(len(real(*a))) or real(*a) if use else NO_GROUPS)
        out.append(json.dumps(run_model("gddr6-aim.yaml", "gpt2", prompt_len=3, gen_tokens=2, fidelity="cycle"),
                              sort_keys=True, default=str))
    assert out[0] == out[1]
    assert max(found) > 100  # the weight GEMVs' row sweeps were found periodic
