"""GDDR6-AiM as its vendor models it: register modes in the streams, a missing mode change caught by the
checker, and one definition of a MAC-result read's bytes for timing, pins and the ASIC link."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import no_refresh

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
    # timing and pins: the RDMAC command moves one access of the channel
    assert c.spec.cmds[rdmac, K_TRANSFER] != 0 and c.result_read_bytes == hw.dram.organization.access_bytes
    # the ASIC link: a GEMV stream sends back exactly that per RDMAC
    m = ModelMap(hw, c, traced_graph(load_card("gpt2")), 64)
    s = m.gemv(next(iter(m.tables)))
    reads = int(np.isin(s.cmd, [rdmac]).sum())
    assert int(s.from_pim_bytes.sum()) == reads * c.result_read_bytes
