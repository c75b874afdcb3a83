"""analysis/pimsimulator_rules.py: Samsung PIMSimulator's GEMV kernel and controller rules, re-stated."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pimsim.config.loader import load_hardware

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
import pimsimulator_rules as rules  # noqa: E402
import validation_hbm_pim  # noqa: E402

OFF = rules.Rules(refresh=False)


@pytest.fixture(scope="module")
def timing():
    return dict(load_hardware("hbm-pim.yaml").dram.timing)


def test_a_register_write_then_two_macs_by_hand(timing):
    # cycle 2: ACT odd bank (row 0x3fff); cycle 8: ACT even bank (tRRD_L after it: the MAC group is in reach
    # while the write, a barrier, waits at the queue's head); cycle 12: the write (tRCDWR); the MACs wait
    # WL + BL/2 + tWTR_L = 19 after it: 31 and 35 (tCCD_L); the last MAC's data is back RL + BL/2 later
    seq = [rules.Txn(True, 1, rules.REGISTER_ROW, barrier=True), rules.Txn(False, 0, 0),
           rules.Txn(False, 0, 0, barrier=True)]
    assert rules.run(seq, timing, OFF).cycles == 35 + 20 + 2


def test_a_row_change_waits_for_the_barrier_and_tras(timing):
    # ACT at 2, read at 16 (tRCDRD); the precharge waits for nRAS (35), the next ACT nRP (49), its read 63
    seq = [rules.Txn(False, 0, 0, barrier=True), rules.Txn(False, 0, 1, barrier=True)]
    assert rules.run(seq, timing, OFF).cycles == 2 + 33 + 14 + 14 + 20 + 2


def test_a_rowless_register_write_needs_no_activate(timing):
    seq = [rules.Txn(True, 1, rules.REGISTER_ROW, barrier=True)]
    assert rules.run(seq, timing, replace(OFF, register_row=False)).cycles == 2
    assert rules.run(seq, timing, OFF).cycles == 2 + 10


def test_the_kernels_transactions_for_samsungs_bench():
    seq = rules.gemv_transactions(4096, 4096, 64)
    writes = sum(t.write for t in seq)
    # park-in 16, SB->AB 4, CRF 1, PIMON 1, 32 input tiles x 8 GRF_A, 8 write-backs, PIMOFF 1, AB->SB 2, park-out 2
    assert writes == 16 + 4 + 1 + 1 + 32 * 8 + 8 + 1 + 2 + 2
    assert len(seq) - writes == 32 * 64  # MACs
    macs = [t for t in seq if not t.write]
    assert {t.bank for t in macs} == {0, 1} and max(t.row for t in macs) == 31  # 16 tiles x 2 rows per bank
    assert sum(t.barrier for t in seq) == 1 + 1 + 1 + 1 + 32 * (1 + 8) + 1 + 1 + 1 + 1


def test_samsungs_bench_derived_within_one_percent_and_decomposed(timing):
    d = validation_hbm_pim.vendor_decomposition(4096, 4096, 64, timing, refresh=True)
    assert d["derived"] == 13_081 and abs(d["derived"] - 13_166) / 13_166 < 0.01
    # the vendor's rules pimsim does not follow, each one's share (switched off one after another)
    assert [(name, share) for name, share, _ in d["shares"]] == [
        ("ranks", 1), ("park", 121), ("register_row", 727), ("trtrs", -31)]
    assert d["without_rules"] == d["derived"] - sum(s for _, s, _ in d["shares"]) == 12_263
    text = validation_hbm_pim.describe_gap(12_455, d, 61)
    terms = [int(part.split()[0].replace(",", "")) for part in text.split("; ")]
    assert terms[-2:] == [61, 12_455 - 12_263 - 61]  # the stream's remainder, refresh's
    assert sum(terms) == 12_455 - 13_081  # the terms add up to the difference


@pytest.mark.slow
def test_samsungs_bench_in_pimsim_is_the_derived_figure_less_the_named_terms():
    row = validation_hbm_pim.rows(functional=False)[0]
    assert row["pimsim"] == 12_455 and row["vendor"] == 13_166
    assert "+61 remainder as with refresh off" in row["differs"] and "+131 refresh" in row["differs"]


def test_pimsim_follows_the_vendors_turnarounds_and_register_spacing(timing):
    """pimsim's own rules (hbm2_pim.py) for what the vendor's controller does: a MAC is a RD to the bus
    turnarounds, register writes are tCCD_L apart: switching those off in the re-statement costs cycles
    that pimsim also pays."""
    follows = replace(OFF, ranks=1, park=False, register_row=False)
    base = rules.gemv_cycles(4096, 4096, 64, timing, follows).cycles
    assert rules.gemv_cycles(4096, 4096, 64, timing, replace(follows, bus_turnaround=False)).cycles < base
    assert rules.gemv_cycles(4096, 4096, 64, timing, replace(follows, register_write_ccd=False)).cycles < base


def test_refresh_adds_the_staggered_refreshes(timing):
    on = rules.gemv_cycles(4096, 4096, 64, timing)
    off = rules.gemv_cycles(4096, 4096, 64, timing, OFF)
    assert on.commands["REF"] == 6  # rank 0 at 1950, 5850, 9750; rank 1 at 3900, 7800, 11700
    # each of rank 0's refreshes blocks it nRFC, less the precharge and activate of a row change it falls on
    # (which would have been paid anyway), plus at most a closed and reopened row
    low, high = timing["nRFC"] - timing["nRP"] - timing["nRCDRD"], timing["nRFC"] + 2 * timing["nRC"]
    assert 3 * low <= on.cycles - off.cycles <= 3 * high
