"""GDDR6-AiM as its vendor models it: register modes in the streams, a missing mode change caught by the
checker, and one definition of a MAC-result read's bytes for timing, pins and the ASIC link."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import S, issue, no_refresh

from pimsim.config import load_hardware
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.compile import compile_standard
from pimsim.dram.kernel import run_commands
from pimsim.dram.timing_state import K_TRANSFER
from pimsim.mapper.gemv import gemv_program
from pimsim.mapper.model import ModelMap
from pimsim.mapper.placement import Geometry, place_gemv
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph


def _record(c, prog):
    _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                  np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0
    return rec


def test_gemv_stream_switches_modes_where_aim_does_and_a_missing_switch_is_caught():
    c = no_refresh("gddr6-aim.yaml")
    p = place_gemv(Geometry.of(c.hw), 300, 1500)
    prog = gemv_program(c, p)
    names = [c.command_names[k] for k in prog.cmd]
    assert check(c, issued_from_record(c, _record(c, prog))) == []
    # every RDMAC and WRGB run is preceded, through any number of its own kind, by register mode, and
    # the precharge of a row comes after the switch back to MAC mode (AiM's controller: lazily)
    first_prea = names.index("PREA")
    assert names[first_prea - 1] == "MODCH" and names[first_prea + 1] == "ACTAB"
    drop = names.index("MODCH", names.index("MACAB"))  # the switch before the first result read
    keep = np.ones(len(prog), bool)
    keep[drop] = False
    rec = _record(c, type(prog)(prog.placement, *(a[keep] for a in (prog.cmd, prog.node, prog.row, prog.column,
                                                                       prog.select, prog.payload)),
                                prog.reads, prog.outputs, prog.n_groups, prog.partial_sums))
    violations = check(c, issued_from_record(c, rec))
    assert violations and "missing MODCH" in violations[0].rule and violations[0].later.command == "RDMAC"


@pytest.mark.parametrize("name", ["gddr6-aim.yaml", "pim-gpt.yaml", "hbm-pim.yaml"])
def test_result_read_bytes_are_one_definition_for_timing_pins_and_link(name):
    hw = load_hardware(name)
    c = compile_standard(hw)
    rdmac = c.command_names.index("RDMAC")
    # timing and pins: the RDMAC command moves one access of the channel per burst of its data transfer
    # (AiM: one burst; HBM-PIM: one register of each of the 8 PIM units, a burst each)
    bursts = {"gddr6-aim.yaml": 1, "pim-gpt.yaml": 1, "hbm-pim.yaml": 8}[name]
    assert c.spec.cmds[rdmac, K_TRANSFER] != 0
    assert c.result_read_bytes == bursts * hw.dram.organization.access_bytes
    # the ASIC link: a GEMV stream sends back exactly that per RDMAC
    m = ModelMap(hw, c, traced_graph(load_card("gpt2")), 64)
    s = m.gemv(next(iter(m.tables)))
    reads = int(np.isin(s.cmd, [rdmac]).sum())
    assert int(s.from_pim_bytes.sum()) == reads * c.result_read_bytes


# AiM's own rows, each at t (legal, as the kernel issues it) and t - 1 (the checker names the rule)
MODE_RULES = [
    # (stream, the gap from the second-to-last to the last command, the rule's latency as written)
    ([S("MODCH"), S("ACTAB", row=1), S("MACAB", row=1), S("MODCH")], 2, "nCCDL"),
    ([S("MODCH"), S("ACTAB", row=1), S("MACAB", row=1), S("MODCH"), S("RDMAC")], 32, "nMODCH"),
    ([S("MODCH"), S("ACTAB", row=1), S("MACAB", row=1), S("MODCH"), S("RDMAC"), S("MODCH")], 3,
     "nCLREG + nBL + 1"),
    ([S("MODCH"), S("ACTAB", row=1), S("MACAB", row=1), S("MODCH"), S("RDMAC"), S("WRGB")], 5,
     "nCLREG + nBL + 3 + nWPRE - (nCWLGB)"),
    ([S("WRGB"), S("MODCH")], 1, "1"),
    ([S("WRGB"), S("MODCH"), S("ACTAB", row=1)], 32, "nMODCH"),
]


@pytest.mark.parametrize("steps,gap,latency", MODE_RULES, ids=[f"{s[-2][0]}-{s[-1][0]}" for s, _, _ in MODE_RULES])
def test_aim_mode_rules_are_tight(steps, gap, latency):
    c = no_refresh("gddr6-aim.yaml")
    _, _, rec = issue(c, steps, record=True)
    issued = issued_from_record(c, rec)
    assert issued[-1].cycle - issued[-2].cycle == gap
    assert check(c, issued) == []
    early = issued[:-1] + [dataclasses.replace(issued[-1], cycle=issued[-1].cycle - 1)]
    violations = check(c, early)
    assert any(f"({latency})" in v.rule for v in violations), [str(v) for v in violations]


def test_pin_bytes_count_every_burst_of_a_multi_burst_result_read():
    """HBM-PIM's RDMAC reads one register of each of the 8 units (8 bursts): the pins, the timing summary
    and pin energy count 256 B for it, as the link does (before, pins counted one 32 B burst)."""
    from pimsim.energy.model import pin_bytes

    hw = load_hardware("hbm-pim.yaml")
    c = compile_standard(hw)
    assert pin_bytes(c, {"RDMAC": 3, "WRGB": 2, "MACAB": 5}) == 3 * 256 + 2 * 32
    assert c.transfer_bytes("MACAB") == 0 and c.transfer_bytes("RD") == 32
