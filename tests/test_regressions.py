"""Regression tests for bugs found in review; each would have failed before its fix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import S, compiled, issue, no_refresh, stream

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.dram.simulate import run_command_trace, run_request_trace
from pimsim.dram.timing_state import ERR_ROW, ERR_STUCK, P_NREFI
from pimsim.errors import ConfigError, TraceError
from pimsim.trace.files import CommandTrace, RequestTrace


def test_fast_path_checks_the_row_when_channels_interleave():
    # the previous *stream* command is on another channel with another row: the fast path must not
    # take this MACAB to row 5 as a repeat of channel 0's MACAB to row 0
    c = no_refresh("gddr6-aim.yaml")
    steps = [S("ACTAB", channel=0, row=0), S("ACTAB", channel=1, row=5), S("MACAB", channel=0, row=0),
             S("MACAB", channel=1, row=5), S("MACAB", channel=0, row=5)]
    _, _, _, err = run_commands(c.spec, *stream(c, steps))
    assert err[0] == ERR_ROW and err[1] == 4


def test_no_row_is_reopened_only_to_be_closed_by_the_next_refresh():
    c = compiled("gddr6-aim.yaml", "dram.organization.channels=1")
    refi = c.timing["nREFI"]
    # AiM's mode changes (MODCH) around the buffer writes; the second one's nMODCH (32) and the cycle
    # before it stand where the WRGB's command-bus cycle stood before the device had modes
    steps = [S("MODCH"), S("ACTAB", row=0), S("MACAB", row=0), S("MODCH"), S("WRGB", at=refi + 67),
             S("WRGB", at=2 * refi - 6 - 1 - c.timing["nMODCH"]), S("MODCH"), S("MACAB", row=0)]
    at, _, rec = issue(c, steps, record=True)
    names = [c.command_names[k] for k in rec[:, 1]]
    # after the mode change the MACAB cannot make it before the refresh due at 2 x nREFI: refresh at
    # once, then reopen; never ACTAB, PREA, REF in a row
    assert names[-4:] == ["MODCH", "REF", "ACTAB", "MACAB"]
    assert rec[-3, 0] == 2 * refi
    assert check(c, issued_from_record(c, rec)) == []


def test_refresh_interval_too_short_for_a_row_cycle_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        load_hardware("ddr4-2400.yaml", ["dram.timing.nREFI=440"])
    assert any(p.path == "dram.timing.nRC" and "nREFI" in p.message for p in info.value.problems)


def _with_refresh_interval(c, n_refi):
    """The compiled config with nREFI forced below what validation allows (to test the guards)."""
    params = c.spec.params.copy()
    params[P_NREFI] = n_refi
    return dataclasses.replace(c, spec=c.spec._replace(params=params), timing={**c.timing, "nREFI": n_refi})


def test_a_command_that_never_fits_between_refreshes_is_an_error_not_a_hang():
    # nRFC (433) longer than the interval: nothing can ever issue between two refreshes
    c = _with_refresh_interval(compiled("ddr4-2400.yaml"), 300)
    _, _, _, err = run_commands(c.spec, *stream(c, [S("ACT", row=0), S("RD", row=0, at=1000)]))
    assert err[0] == ERR_STUCK
    with pytest.raises(TraceError, match="never fits between two refreshes"):
        run_request_trace(c, RequestTrace(line=np.array([2, 3]), cycle=np.array([0, 1000]),
                                          is_write=np.zeros(2, bool), addr=np.array([0, 1 << 17])))


def test_far_future_commands_do_not_walk_every_refresh():
    c = compiled("ddr4-2400.yaml")
    refi = c.timing["nREFI"]
    far = 10**15
    at, st, _ = issue(c, [S("ACT", row=0), S("RD", row=0, at=far)])
    assert at[1] == far
    assert st.counts[0, c.command_names.index("REF")] == far // refi
    cmd, node, row, col, tmin = stream(c, [S("ACT", row=0), S("RD", row=0, at=far)])
    trace = CommandTrace(line=np.array([2, 3]), cycle=tmin, has_cycles=True, cmd=cmd, node=node, row=row, column=col)
    with pytest.raises(TraceError, match="--emit-commands"):
        run_command_trace(c, trace, record=True)


def test_controller_far_future_request_does_not_walk_every_refresh():
    c = compiled("ddr4-2400.yaml")
    far = 10**14
    trace = RequestTrace(line=np.array([2, 3]), cycle=np.array([0, far]), is_write=np.zeros(2, bool),
                         addr=np.array([0, 64]))
    r = run_request_trace(c, trace)
    assert r.issue_at[1] >= far
    assert r.summary()["commands"]["REF"] == pytest.approx(r.cycles // c.timing["nREFI"], abs=1)


def test_skipped_idle_refreshes_match_issuing_them_one_by_one():
    c = compiled("gddr6-aim.yaml", "dram.organization.channels=1")
    refi = c.timing["nREFI"]
    steps = [S("ACTAB", row=1), S("MACAB", row=1), S("PREA"), S("ACTAB", row=2, at=50 * refi + 7),
             S("MACAB", row=2), S("MACAB", row=2)]
    fast_at, fast, _ = issue(c, steps)  # not recording: the idle stretch is skipped arithmetically
    slow_at, slow, rec = issue(c, steps, record=True)  # recording: every refresh issued
    assert list(fast_at) == list(slow_at)
    assert (fast.counts == slow.counts).all() and (fast.chan == slow.chan).all()
    assert (fast.T == slow.T).all() and (fast.Tsub == slow.Tsub).all()


def test_register_reads_and_global_buffer_writes_turn_the_bus_round_by_their_own_latencies():
    c = no_refresh("gddr6-aim.yaml")
    tm = c.timing
    at, _, _ = issue(c, [S("RDMAC"), S("WRGB")])
    # AiM's turnaround (GDDR6.cpp): nCL + nBL + 3 - nCWL + nWPRE, with the register and buffer latencies
    assert at[1] - at[0] == tm["nCLREG"] + tm["nBL"] + 3 - tm["nCWLGB"] + tm["nWPRE"] == 5
    at, _, _ = issue(c, [S("ACT", row=0), S("RD", row=0), S("WRGB")])
    # the WRGB burst may start only after the read burst has left the bus, plus the turnaround
    assert at[2] + tm["nCWLGB"] >= at[1] + tm["nCL"] + tm["nBL"] + 2


def test_refresh_blocks_every_command_for_nrfc():
    c = compiled("ddr4-2400.yaml")
    at, _, _ = issue(c, [S("REF"), S("PRE")])
    assert at[1] - at[0] == c.timing["nRFC"]


def test_non_power_of_two_channel_width_and_huge_systems_are_config_errors():
    with pytest.raises(ConfigError, match="channel_width_bits"):
        load_hardware("ddr4-2400.yaml", ["dram.organization.channel_width_bits=24"])
    with pytest.raises(ConfigError, match="banks in all"):
        load_hardware("ddr4-2400.yaml", ["dram.organization.channels=4096", "dram.organization.bankgroups=64",
                                         "dram.address_mapping=[channel, row, bank, bankgroup, column, offset]"])


def test_unwritable_outputs_fail_before_simulating(tmp_path, capsys):
    rc = main(["trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml", "--json", str(tmp_path / "no" / "x.json")])
    assert rc == 2 and "no such directory" in capsys.readouterr().err
    rc = main(["trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml", "--emit-commands", str(tmp_path)])
    assert rc == 2 and "is a directory" in capsys.readouterr().err
