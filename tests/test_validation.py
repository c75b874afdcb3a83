"""analysis/validation.py: pimsim's GDDR6-AiM against the closed form of SK hynix's AiM simulator's rules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


@pytest.fixture(scope="module")
def validation():
    spec = importlib.util.spec_from_file_location("validation", ANALYSIS / "validation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["validation"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_aim_closed_form_by_hand(validation):
    t = compile_standard(load_hardware("gddr6-aim.yaml")).timing
    # TMOD at 0, WRGB at 32 and 34; TMOD at 35, ACT16 at 67, MAC16 at 123 and 125; TMOD at 127 (nCCDL),
    # RDMAC16 at 159, its data back at 161
    assert validation.aim_vendor_cycles(t, ["WRGB", "WRGB", "ACTAB", "MACAB", "MACAB", "RDMAC"]) == 161
    # a second row: the host waits for the result (162), TMOD, PREA at 194, ACT16 at 226, MACs at 282
    # and 284, TMOD at 286, RDMAC at 318, data at 320
    assert validation.aim_vendor_cycles(t, ["WRGB", "WRGB", "ACTAB", "MACAB", "MACAB", "RDMAC",
                                            "ACTAB", "MACAB", "MACAB", "RDMAC"]) == 320
    # a buffer reload after a result read: RDMAC at 155, the WRGB 5 cycles later (AiM's read-to-write
    # turnaround, longer than the host wait), its data in the buffer nCWLGB + nBL after that
    assert validation.aim_vendor_cycles(t, ["WRGB", "ACTAB", "MACAB", "RDMAC", "WRGB"]) == 155 + 5 + 3
    with pytest.raises(ValueError, match="no rule for RD"):
        validation.aim_vendor_cycles(t, ["RD"])


def test_mac_micro_benchmark_agrees_but_for_the_named_ends(validation):
    row = validation.aim_micro_benchmark()
    # 1023 rows of 226 cycles, then the last row's nRCDRDMAC + 63 nCCDL and the last MAC's one cycle
    assert row.peer_cycles == 1023 * 226 + 56 + 63 * 2 + 1 == 231_381
    assert row.difference == 32 + (12 + 32 - 1)


def test_gemvs_of_every_shape_agree_with_the_aim_simulator_to_the_cycle_but_for_the_named_ends(validation):
    rows = validation.aim_gemv_rows()
    off = [r for r in rows if r.refresh == "off"]
    assert len(off) == len(validation.GEMV_SHAPES)
    assert all(r.difference == 33 - 32 for r in off), [(r.benchmark, r.difference) for r in off]
    peers = {r.benchmark: r.peer_cycles for r in off}
    assert peers["GEMV square, 1024 x 1024"] == 2390  # 407 + 7 x 283: 8 rows per bank of 64 MACs
    on = {r.benchmark: r for r in rows if r.refresh == "on"}
    for r in off:  # AiM's simulator issues no refresh: with refresh on only pimsim's cycles grow
        assert on[r.benchmark].peer_cycles == r.peer_cycles and on[r.benchmark].pimsim_cycles >= r.pimsim_cycles
    assert on["GEMV LM head, 50257 x 1024"].pimsim_cycles > 1.05 * peers["GEMV LM head, 50257 x 1024"]


def test_render_takes_rows_of_another_section_and_refuses_incomplete_ones(validation):
    row = dict(device="X", benchmark="b", refresh="off", pimsim_cycles=10, peer_cycles=9, difference=1,
               cause="c", source="s")
    text = validation.render([("X", lambda: [row])])
    assert "| X | b | off | 10 | 9 | 1 | c | s |" in text
    with pytest.raises(ValueError, match="lacks"):
        validation.render([("X", lambda: [{"device": "X"}])])


def test_both_devices_have_a_section(validation):
    assert [t for t, _ in validation.SECTIONS] == ["GDDR6-AiM (SK hynix AiM simulator)",
                                                   "HBM-PIM (Samsung PIMSimulator)"]


@pytest.mark.slow
def test_the_hbm_pim_section_renders_samsungs_bench_and_the_closed_form(validation):
    rows = validation.hbm_pim_rows()
    cells = [validation._cells(r) for r in rows]  # every row has every column
    assert all(len(c) == len(validation.COLUMNS) for c in cells)
    bench = {r.benchmark: r for r in rows if isinstance(r, validation.Row) and "4096x4096" in r.benchmark}
    pim = bench["4096x4096 GEMV, PIM"]
    assert pim.peer_cycles == 13_166 and pim.difference == pim.pimsim_cycles - 13_166
    mine = [r for r in rows if isinstance(r, validation.Row) and "hbm-pim.yaml" in r.benchmark]
    closed = [r for r in mine if "vendor's rules" not in r.benchmark]
    assert closed and all(r.difference == 0 for r in closed if r.refresh == "off")
    assert all(r.difference >= 0 for r in closed if r.refresh == "on")
    derived = [r for r in mine if "vendor's rules" in r.benchmark]
    assert len(derived) == len(closed) and {r.refresh for r in derived} == {"off", "on"}
    for r in derived:  # every difference is named: the terms of the cause add up to it
        terms = [int(part.split()[0].replace(",", "")) for part in r.cause.split("; ")]
        assert sum(terms) == r.difference and "derived, not measured" in r.source, r
