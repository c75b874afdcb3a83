"""Samsung HBM-PIM's programming model and GEMV kernel (mapping.gemv = hbm_pim_gemv, hbm-pim's default)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compiled

from pimsim.cosim.numerics import PimGemv
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.dram.standards.hbm2_pim import MODE_SEQUENCES
from pimsim.errors import PimsimError
from pimsim.kernels import gemv
from pimsim.mapper import hbm_pim_gemv
from pimsim.mapper.placement import Geometry
from pimsim.pim.hbm_pim import check_modes, crf_writes, gemv_crf_program, run_crf

SHAPES = [(1, 1), (7, 33), (300, 200), (1030, 300), (64, 1600)]


def _program(c, rows, cols, **kw):
    g = Geometry.of(c.hw)
    return hbm_pim_gemv.hbm_pim_gemv_program(c, hbm_pim_gemv.place(c.hw, g, rows, cols), g.lanes_out, **kw)


def test_hbm_pim_default_is_the_vendor_kernel():
    assert compiled("hbm-pim.yaml").hw.mapping.gemv == "hbm_pim_gemv"
    assert compiled("hbm-pim.yaml").hw.pim.accumulator_registers == 8


@pytest.mark.parametrize("shape", SHAPES)
def test_vendor_gemv_is_correct_and_bit_for_bit_the_numerics(shape):
    c = compiled("hbm-pim.yaml")
    rng = np.random.default_rng(sum(shape))
    W = rng.standard_normal(shape).astype(np.float32)
    x = rng.standard_normal(shape[1]).astype(np.float32)
    got = gemv(c.hw, W=W, x=x)
    assert np.array_equal(PimGemv(c.hw, W)(x), got.y)  # bank model == closed-form numerics
    wq, xq = W.astype(np.float16).astype(np.float64), x.astype(np.float16).astype(np.float64)
    # FP16 GRF_B accumulation: each of n/16 additions per lane rounds by at most 2^-11 of the running sum
    bound = 2.0**-11 * (shape[1] / 16 + 2) * (np.abs(wq) @ np.abs(xq)) + 1e-6
    assert np.all(np.abs(got.y - wq @ xq) <= bound)


@pytest.mark.parametrize("shape", [(300, 200), (1030, 300)])
def test_counts_follow_the_tiling(shape):
    c = compiled("hbm-pim.yaml")
    g = Geometry.of(c.hw)
    p = hbm_pim_gemv.place(c.hw, g, *shape)
    prog = _program(c, *shape)
    names = np.asarray(c.command_names)[prog.cmd]
    ch = g.channels
    tiles_out, tiles_in = -(-shape[0] // (8 * 8 * ch)), -(-shape[1] // 128)
    assert (p.output_tiles, p.input_tiles) == (tiles_out, tiles_in)
    assert (names == "MACAB").sum() == ch * tiles_out * tiles_in * 64  # padded to whole tiles
    assert (names == "WRGB").sum() == ch * tiles_out * tiles_in * 8
    assert (names == "ACTAB").sum() == ch * tiles_out * tiles_in * 2  # each row serves 32 MACs
    assert (names == "RDMAC").sum() == ch * tiles_out * 8  # GRF_B read once per output tile
    assert (names == "PIMON").sum() == (names == "PIMOFF").sum() == ch * tiles_out
    assert (names == "WRCRF").sum() == ch * crf_writes(prog.crf)
    assert prog.partial_sums == shape[0] * 16 and prog.asic_adds == shape[0] * 15


@pytest.mark.parametrize("results", ["read", "write_back"])
def test_streams_obey_the_protocol_and_the_modes(results):
    c = compiled("hbm-pim.yaml", "dram.refresh.enabled=false")
    prog = _program(c, 1030, 300, results=results)
    _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                  np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []
    chan = np.asarray(c.channel_of(prog.node)) == c.level_base[0]
    assert check_modes(c.command_names, (prog.cmd[chan], prog.row[chan]), c.hw.dram.organization.rows) == []


def test_mode_check_catches_a_mac_outside_pim_mode():
    c = compiled("hbm-pim.yaml")
    prog = _program(c, 64, 128)
    chan = np.asarray(c.channel_of(prog.node)) == c.level_base[0]
    cmd, row = prog.cmd[chan], prog.row[chan]
    pimon = c.command_names.index("PIMON")
    keep = cmd != pimon  # drop the switch into AB-PIM mode
    problems = check_modes(c.command_names, (cmd[keep], row[keep]), c.hw.dram.organization.rows)
    assert any("MACAB" in p and "AB mode" in p for p in problems)


def test_mode_sequences_name_the_vendor_rows():
    assert [(s.command, s.bankgroup, s.bank, s.row) for s in MODE_SEQUENCES[("SB", "AB")][:2]] == [
        ("ACT", 0, 0, 0x17FF), ("PRE", 0, 0, None)]
    assert len(MODE_SEQUENCES[("SB", "AB")]) == 8 and len(MODE_SEQUENCES[("AB", "SB")]) == 4


@pytest.mark.parametrize("tiles", [1, 2, 5, 32])
def test_the_crf_program_runs_the_macs_the_mapper_issues(tiles):
    """Every MAC of an output tile runs the CRF's MAC for the bank the mapper addressed, and the
    write-backs run the NOPs: the command stream is the program a device would execute."""
    c = compiled("hbm-pim.yaml")
    prog = _program(c, 8, tiles * 128, results="write_back")
    names = np.asarray(c.command_names)[prog.cmd]
    first = np.asarray(c.channel_of(prog.node)) == c.level_base[0]
    column = np.isin(names, ("MACAB", "WRAB")) & first
    ran = run_crf(prog.crf, int(column.sum()))
    banks = prog.select[column]
    for ins, name, bank in zip(ran, names[column], banks):
        if name == "MACAB":
            assert ins.op == "MAC" and ins.bank == ("EVEN_BANK", "ODD_BANK")[bank]
        else:
            assert ins.op == "NOP"
    assert len(gemv_crf_program(tiles)) <= 32


def test_other_devices_are_refused_clearly():
    c = compiled("gddr6-aim.yaml")
    with pytest.raises(PimsimError, match="HBM2-PIM"):
        hbm_pim_gemv.place(c.hw, Geometry.of(c.hw), 10, 10)


@pytest.mark.slow
def test_validation_against_samsungs_bench_holds_within_its_tolerance():
    """PIMSimulator's 4096 x 4096 bench on 64 channels (refresh on): pimsim within 6% of the PIM cycles
    (pimsim is faster: the differences named in the table, measured by analysis/pimsimulator_rules.py),
    2% of the no-PIM cycles, 7% of the speed-up."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    from validation_hbm_pim import rows

    table = {r["figure"].split(",")[1].strip(): r for r in rows(functional=False)}
    assert abs(table["PIM (cycles)"]["ratio"] - 1) <= 0.06
    assert abs(table["no PIM (cycles)"]["ratio"] - 1) <= 0.02
    assert abs(table["speed-up"]["ratio"] - 1) <= 0.07


def _validation():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    import validation_hbm_pim

    return validation_hbm_pim


@pytest.mark.parametrize("shape", [(7, 33), (8, 256), (64, 384), (130, 1000), (1030, 300), (512, 2048), (2048, 512)])
@pytest.mark.parametrize("channels", [1, 16])
def test_closed_form_cycles_are_exact_with_refresh_off(shape, channels):
    v = _validation()
    from pimsim.config.loader import load_hardware

    hw = load_hardware("hbm-pim.yaml", [f"dram.organization.channels={channels}", "dram.refresh.enabled=false"])
    assert v.vendor_kernel_cycles(hw, *shape, results="read")["cycles"] == v.closed_form_cycles(hw, *shape)


@pytest.mark.slow
def test_closed_form_on_the_named_shapes_and_refresh_costs_at_most_its_stalls():
    """Exact with refresh off on small, square, tall, wide and LM-head shapes; with refresh on, every
    refresh adds at least nothing and at most its nRFC plus a closed and reopened row (2 nRC)."""
    v = _validation()
    t = load_hbm().dram.timing
    for r in v.closed_form_rows():
        assert r["simulated_refresh_off"] == r["closed_form"], r
        extra = r["simulated_refresh_on"] - r["closed_form"]
        assert 0 <= extra <= r["refreshes"] * (t["nRFC"] + 2 * t["nRC"]), r


def load_hbm():
    from pimsim.config.loader import load_hardware

    return load_hardware("hbm-pim.yaml")


def test_work_is_padded_to_whole_output_tiles():
    """Samsung's kernel pads to 8 x 8 x channels output rows: at 64 channels 2048 rows cost what 4096 cost."""
    v = _validation()
    from pimsim.config.loader import load_hardware

    hw = load_hardware("hbm-pim.yaml", ["dram.organization.channels=64", "dram.organization.rows=16384",
                                        "dram.refresh.enabled=false"])
    assert v.closed_form_cycles(hw, 2048, 1024) == v.closed_form_cycles(hw, 4096, 1024)
    assert v.closed_form_cycles(hw, 4097, 1024) > v.closed_form_cycles(hw, 4096, 1024)
    assert v.closed_form_cycles(hw, 4096, 1000) == v.closed_form_cycles(hw, 4096, 1024)  # 128-input tiles


def test_write_back_stores_every_units_accumulators_in_its_odd_bank():
    """The vendor's result path: GRF_B written back (WRAB) into the odd banks; summing each stored
    register's 16 lanes in FP32 gives the read path's (and the numerics') result bit for bit."""
    from pimsim.kernels import _store_matrix
    from pimsim.pim.banks import BankModel

    c = compiled("hbm-pim.yaml")
    g = Geometry.of(c.hw)
    rng = np.random.default_rng(5)
    m, n = 1500, 300
    W = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    p = hbm_pim_gemv.place(c.hw, g, m, n)
    prog = hbm_pim_gemv.hbm_pim_gemv_program(c, p, g.lanes_out, results="write_back")
    model = BankModel(c.hw)
    padded = np.zeros((m, p.cols_padded), np.float32)
    padded[:, :n] = W
    _store_matrix(model, p, padded)
    xp = np.zeros(p.cols_padded, np.float32)
    xp[:n] = x
    assert model.run(c, prog.cmd, prog.node, prog.row, prog.column, payload_index=prog.payload,
                     payloads=xp.reshape(-1, 16), select=prog.select, register=prog.register) == []
    y = np.zeros(m, np.float32)
    for row in range(m):
        j, rest = divmod(row, p.out_tile_rows)
        k, rest = divmod(rest, g.units * g.channels)
        ch, u = divmod(rest, g.units)
        idx = j * 8 + k
        slot = model.slot[ch, u * 2 + 1, p.first_row + p.dram_rows + idx // 32]
        for lane in model.data[slot, idx % 32 * 16:idx % 32 * 16 + 16]:
            y[row] = np.float32(y[row] + lane)
    assert np.array_equal(y, PimGemv(c.hw, W)(x))


def test_the_strategy_on_another_device_is_one_clear_error(capsys):
    from pimsim.cli import main

    rc = main(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "64", "--cols", "64",
               "--set", "mapping.gemv=hbm_pim_gemv"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "dram.standard is GDDR6-AiM" in err and "banks_per_unit is 1" in err and "accumulator_registers" in err
