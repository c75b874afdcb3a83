"""The kernel against timing worked out by hand from the datasheet rules (refresh off unless tested)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLED, S, compiled, issue, no_refresh, stream, without_fast_path

from pimsim.dram.kernel import REC_SRC, issue_into, repeat_runs, run_commands
from pimsim.dram.simulate import run_command_trace
from pimsim.dram.timing_state import C_CONFLICTS, C_END, C_HITS, C_MISSES, new_state
from pimsim.trace.generate import pim_row_sweep

DDR4 = "ddr4-2400.yaml"


def ddr4():
    return no_refresh(DDR4)


def t(name):
    return ddr4().timing[name]


def end(st):
    return int(st.chan[:, C_END].max())


def test_one_read_to_a_closed_bank():
    at, st, _ = issue(ddr4(), [S("ACT", row=7), S("RD", row=7, col=0)])
    assert list(at) == [0, t("nRCD")]
    assert end(st) == t("nRCD") + t("nCL") + t("nBL") == 36


def test_two_reads_to_one_row_are_spaced_by_long_ccd():
    at, st, _ = issue(ddr4(), [S("ACT", row=1), S("RD", col=0), S("RD", col=8)])
    assert list(at) == [0, 16, 16 + t("nCCDL")]
    assert end(st) == 22 + t("nCL") + t("nBL")
    assert st.chan[0, C_HITS] == 1 and st.chan[0, C_MISSES] == 1


def test_reads_to_two_bank_groups_are_spaced_by_short_ccd():
    at, _, _ = issue(ddr4(), [S("ACT", bg=0, row=1), S("ACT", bg=1, row=1), S("RD", bg=0), S("RD", bg=1)])
    # second ACT after nRRD_S; second RD after max(its ACT + nRCD, first RD + nCCD_S)
    assert list(at) == [0, t("nRRDS"), 16, max(t("nRRDS") + t("nRCD"), 16 + t("nCCDS"))]


def test_two_rows_of_one_bank_follow_the_row_cycle():
    at, st, _ = issue(ddr4(), [S("ACT", row=0), S("RD"), S("PRE"), S("ACT", row=1), S("RD")])
    pre = max(t("nRAS"), t("nRCD") + t("nRTP"))
    act2 = max(pre + t("nRP"), t("nRC"))
    assert list(at) == [0, 16, pre, act2, act2 + t("nRCD")]
    assert (pre, act2) == (39, 55)
    assert end(st) == act2 + t("nRCD") + t("nCL") + t("nBL") == 91
    assert st.chan[0, C_CONFLICTS] == 1  # row 1 replaced row 0


def test_write_then_read_waits_for_write_to_read_turnaround():
    same = issue(ddr4(), [S("ACT", row=0), S("WR"), S("RD")])[0]
    assert same[2] == same[1] + t("nCWL") + t("nBL") + t("nWTRL") == 41
    other = issue(ddr4(), [S("ACT", bg=0, row=0), S("ACT", bg=1, row=0), S("WR", bg=0), S("RD", bg=1)])[0]
    assert other[3] == max(other[1] + t("nRCD"), other[2] + t("nCWL") + t("nBL") + t("nWTRS")) == 35


def test_read_then_write_waits_for_bus_turnaround():
    at = issue(ddr4(), [S("ACT", row=0), S("RD"), S("WR")])[0]
    assert at[2] == at[1] + t("nCL") + t("nBL") + 2 - t("nCWL")


def test_fifth_activate_waits_for_the_four_activate_window():
    banks = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)]
    at = issue(ddr4(), [S("ACT", bg=g, bank=b, row=0) for g, b in banks])[0]
    rrd = t("nRRDS")
    assert list(at[:4]) == [0, rrd, 2 * rrd, 3 * rrd]
    assert at[4] == max(4 * rrd, t("nFAW"), at[0] + t("nRRDL")) == 26


def test_command_bus_allows_one_command_per_cycle():
    at = issue(ddr4(), [S("ACT", bg=0, row=0), S("PRE", bg=2), S("PRE", bg=3)])[0]
    assert list(at) == [0, 1, 2]


def test_earliest_cycle_column_delays_a_command():
    at = issue(ddr4(), [S("ACT", row=0), S("RD", at=500), S("RD")])[0]
    assert list(at) == [0, 500, 500 + t("nCCDL")]


def test_refresh_closes_the_rank_and_reopens_the_row():
    c = compiled(DDR4)
    refi, rfc, rp = c.timing["nREFI"], c.timing["nRFC"], c.timing["nRP"]
    late = 5 * refi + 100
    at, st, rec = issue(c, [S("ACT", row=3), S("RD", row=3), S("RD", row=3, at=late)], record=True)
    names = [c.command_names[k] for k in rec[:, 1]]
    assert names == ["ACT", "RD", "PREA", "REF", "REF", "REF", "REF", "REF", "ACT", "RD"]
    cycles = rec[:, 0].tolist()
    # the first refresh must first close the open row; later ones find the rank closed
    assert cycles[2] == refi and cycles[3] == refi + rp
    assert cycles[4:8] == [2 * refi, 3 * refi, 4 * refi, 5 * refi]
    # the kernel reopens row 3 after the last refresh, then the read goes
    assert cycles[8] == 5 * refi + rfc and rec[8, 3] == 3
    assert at[2] == cycles[8] + c.timing["nRCD"]
    assert st.chan[0, 2] == 7  # kernel-added: PREA, 5 REF, ACT


def test_refresh_every_nrefi_costs_nrfc_on_an_idle_closed_rank():
    c = compiled(DDR4)
    refi, rfc = c.timing["nREFI"], c.timing["nRFC"]
    # a lone ACT just after a refresh falls due waits for the refresh to finish
    at, _, rec = issue(c, [S("ACT", row=0, at=refi)], record=True)
    assert [c.command_names[k] for k in rec[:, 1]] == ["REF", "ACT"]
    assert at[0] == refi + rfc


def aim_row_sweep_cycles(timing, rows, macs, mac_gap):
    """Closed form of ACTAB, `macs` MACABs, PREA per row, rows back to back, refresh off."""
    last_mac = timing["nRCDRDMAC"] + (macs - 1) * mac_gap
    prea = max(timing["nRAS"], last_mac + timing["nRTP"])
    period = max(prea + timing["nRP"], timing["nRC"])
    return (rows - 1) * period + prea + timing["nRP"], period


def test_all_bank_mac_row_sweep_on_gddr6_aim_matches_closed_form():
    c = no_refresh("gddr6-aim.yaml")
    trace = pim_row_sweep(c, rows=64, macs_per_row=64)
    result = run_command_trace(c, trace)
    expect, period = aim_row_sweep_cycles(c.timing, 64, 64, c.timing["nCCDL"])
    assert period == 226
    # a trace starts in register mode (where a GEMV leaves the channel): one mode change into MAC mode
    # first, which blocks the channel for nMODCH
    assert result.cycles == c.timing["nMODCH"] + expect
    # 63 of every 64 MACs find their row open: the PIM-GPT paper's ~98% row-hit rate
    s = result.summary()
    assert s["row_hits"] == 8 * 64 * 63 and s["row_misses"] + s["row_conflicts"] == 8 * 64
    assert s["commands"] == {"ACTAB": 8 * 64, "MACAB": 8 * 64 * 64, "PREA": 8 * 64, "MODCH": 8}


def test_all_bank_mac_row_sweep_on_hbm_pim_matches_closed_form():
    c = no_refresh("hbm-pim.yaml")
    macs = c.hw.dram.organization.accesses_per_row
    trace = pim_row_sweep(c, rows=16, macs_per_row=macs, channels=2)
    gap = max(c.timing["nCCDL"], c.timing["nBL"])
    expect, _ = aim_row_sweep_cycles(c.timing, 16, macs, gap)
    assert run_command_trace(c, trace).cycles == expect


def test_channels_are_independent():
    c = no_refresh("gddr6-aim.yaml")
    one = run_command_trace(c, pim_row_sweep(c, rows=8, macs_per_row=64, channels=1))
    eight = run_command_trace(c, pim_row_sweep(c, rows=8, macs_per_row=64))
    assert eight.cycles == one.cycles
    assert np.all(eight.state.chan[:, C_END] == one.cycles)


def test_gemv_with_global_buffer_io_matches_closed_form():
    """AiM's register modes (REFERENCE.md section 2): WRGBs in register mode, a mode change (nMODCH)
    before the row's activate, MACs, a mode change when the RDMAC could issue (a MAC's nCCDL), RDMAC,
    then the host waits for its data (nCLREG + nBL + 1) before the next mode change."""
    c = no_refresh("gddr6-aim.yaml")
    tm = c.timing
    trace = pim_row_sweep(c, rows=4, macs_per_row=64, channels=1, with_io=True)
    result = run_command_trace(c, trace)
    at = result.issue_at
    # 64 global-buffer writes back to back (data bus: nBL apart), then a mode change on the next cycle
    assert list(at[:64]) == [k * tm["nBL"] for k in range(64)]
    mode = at[63] + 1
    per_row = 1 + 1 + 64 + 1 + 1 + 1  # MODCH, ACTAB, 64 MACAB, MODCH, RDMAC, PREA
    host_wait = tm["nCLREG"] + tm["nBL"] + 1
    for r in range(4):
        row = at[64 + r * per_row: 64 + (r + 1) * per_row]
        assert row[0] == mode
        act = mode + tm["nMODCH"]
        assert row[1] == act
        assert list(row[2:66]) == [act + tm["nRCDRDMAC"] + tm["nCCDL"] * k for k in range(64)]
        assert row[66] == row[65] + tm["nCCDL"]  # into register mode once the accumulators settle
        assert row[67] == row[66] + tm["nMODCH"]  # RDMAC
        assert row[68] == row[67] + host_wait  # PREA (this trace closes each row at once)
        mode = row[68] + 1
    # the RDMAC left the channel in register mode, where the trace started: no mode change at the end
    assert len(at) == 64 + 4 * per_row
    assert result.cycles == at[-1] + tm["nRP"]
    # the per-row period: nMODCH + nRCDRDMAC + 63 nCCDL + nCCDL + nMODCH + host wait + 1 = 252
    assert at[64 + per_row] - at[64] == 32 + 56 + 126 + 2 + 32 + 3 + 1 == 252


def test_replaying_an_emitted_trace_reproduces_every_cycle():
    """The emitted trace (refreshes included) replays cycle for cycle: the kernel leaves refresh to a
    trace that refreshes itself, and every recorded cycle is already the earliest legal one."""
    from pimsim.trace.files import CommandTrace

    c = compiled("gddr6-aim.yaml")
    first = run_command_trace(c, pim_row_sweep(c, rows=40, macs_per_row=64, channels=2, with_io=True), record=True)
    rec = first.record
    assert "REF" in first.summary()["commands"]
    replay_trace = CommandTrace(line=np.arange(len(rec)) + 2, cycle=rec[:, 0].copy(), has_cycles=True,
                                cmd=rec[:, 1].copy(), node=rec[:, 2].copy(), row=rec[:, 3].copy(),
                                column=rec[:, 4].copy())
    replay = run_command_trace(c, replay_trace)
    assert list(replay.issue_at) == list(rec[:, 0])
    assert replay.cycles == first.cycles
    assert replay.summary()["kernel_inserted_commands"] == 0 and replay.refresh == "trace"


def test_repeated_command_fast_path_gives_the_slow_path_cycles():
    for name in ("gddr6-aim.yaml", "hbm-pim.yaml"):
        c = compiled(name)
        trace = pim_row_sweep(c, rows=80, macs_per_row=c.hw.dram.organization.accesses_per_row, channels=2,
                              with_io=True)
        fast = run_command_trace(c, trace, record=True)
        slow = run_command_trace(without_fast_path(c), trace, record=True)
        assert (fast.record == slow.record).all()
        assert fast.summary() == slow.summary()


def test_controller_fast_path_gives_the_slow_path_cycles():
    from pimsim.dram.simulate import run_request_trace
    from pimsim.trace.generate import streaming_reads

    c = compiled(DDR4)
    trace = streaming_reads(30_000)
    fast = run_request_trace(c, trace, record=True)
    slow = run_request_trace(without_fast_path(c), trace, record=True)
    assert (fast.record == slow.record).all()
    assert fast.cycles == slow.cycles


def _runs_of_repeats(c):
    """Rows swept with long runs of one repeated command, on up to two channels, over several refresh
    intervals: a GEMV (global-buffer writes, all-bank MACs) on a PIM standard, a read per column on DDR4."""
    org = c.hw.dram.organization
    if "MACAB" in c.command_names:
        tr = pim_row_sweep(c, rows=60, macs_per_row=org.accesses_per_row, channels=min(2, org.channels),
                           with_io=True)
        return tr.cmd, tr.node, tr.row, tr.column
    steps = []
    for r in range(60):
        steps += [S("ACT", row=r)] + [S("RD", row=r, col=k * 8) for k in range(org.accesses_per_row)] + [S("PRE")]
    return stream(c, steps)[:4]


@pytest.mark.parametrize("name", BUNDLED)
def test_closed_form_runs_issue_every_command_where_the_per_command_path_does(name):
    """A run of repeats issued at once (start + k * gap, split where a refresh falls due inside it) gives
    the cycles, counts and state of issuing it command by command, and of the full check on every command."""
    c = compiled(name)
    cmd, node, row, col = _runs_of_repeats(c)
    start = np.array([c.refresh_interval // 3])  # one start cycle for every command, as the engine's streams
    runs = repeat_runs(cmd, node, row)
    assert (runs >= np.arange(len(cmd))).all() and len(np.unique(runs)) < len(cmd) // 8  # long runs
    # command by command: recording every command takes one command per step of the fast path
    ref_state, ref_at, rec, err = run_commands(c.spec, cmd, node, row, col, start, record=True)
    assert err[0] == 0
    slow_at = run_commands(without_fast_path(c).spec, cmd, node, row, col, start, record=True)[1]
    assert np.array_equal(slow_at, ref_at)
    state, at, _, err = run_commands(c.spec, cmd, node, row, col, start, runs=runs)
    assert err[0] == 0 and np.array_equal(at, ref_at)
    assert all(np.array_equal(a, b) for a, b in zip(state, ref_state))
    engine_state = new_state(c.spec)  # the engine's entry: the state only
    assert issue_into(c.spec, engine_state, cmd, node, row, col, int(start[0]), runs)[0] == 0
    assert all(np.array_equal(a, b) for a, b in zip(engine_state, ref_state))
    # refreshes fell inside runs: a command the kernel added (src -1) just before a command that is not
    # the first of its run
    src = rec[:, REC_SRC]
    inside = [src[j + 1] for j in range(len(src) - 1) if src[j] < 0 <= src[j + 1]
              and src[j + 1] > 0 and runs[src[j + 1] - 1] == runs[src[j + 1]]]
    assert inside, "no refresh fell inside a run of repeats"


def test_repeat_runs_marks_the_last_command_of_each_run():
    cmd = np.array([7, 7, 7, 6, 7, 7, 9])
    node = np.array([8, 8, 8, 8, 8, 9, 9])
    row = np.array([1, 1, 1, 2, 2, 2, 2])
    runs = repeat_runs(cmd, node, row)
    assert list(runs) == [2, 2, 2, 3, 4, 5, 6]
    assert list(repeat_runs(*(np.zeros(0, np.int64),) * 3)) == []
    with pytest.raises(ValueError, match="3 run ends for 7 commands"):
        run_commands(compiled("gddr6-aim.yaml").spec, cmd, node, row, row, np.zeros(1, np.int64), runs=runs[:3])
