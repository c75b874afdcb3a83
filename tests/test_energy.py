"""The energy model: sourced costs, closed forms, and how counts become joules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compiled

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.energy.model import COMPONENTS, Actions, background_W, command_energies_J, energy_J, pin_bytes
from pimsim.errors import ConfigError


def test_current_method_equals_the_closed_form_for_ddr4():
    c = compiled("ddr4-2400.yaml")
    tck = c.hw.dram.tCK_ps * 1e-12
    vdd, i = 1.2, {"IDD0": 0.320, "IDD2N": 0.136, "IDD3N": 0.188, "IDD4R": 0.972, "IDD4W": 0.912, "IDD5B": 1.120}
    trc, tras, tbl, trfc = 55 * tck, 39 * tck, 4 * tck, 433 * tck  # the config's nRC, nRAS, nBL, nRFC
    e = command_energies_J(c)
    assert e["ACT"] == pytest.approx(vdd * (i["IDD0"] * trc - i["IDD3N"] * tras - i["IDD2N"] * (trc - tras)))
    assert e["RD"] == pytest.approx(vdd * (i["IDD4R"] - i["IDD3N"]) * tbl)
    assert e["WR"] == pytest.approx(vdd * (i["IDD4W"] - i["IDD3N"]) * tbl)
    assert e["REF"] == pytest.approx(vdd * (i["IDD5B"] - i["IDD3N"]) * trfc)
    assert e["PRE"] == e["PREA"] == 0
    assert background_W(c.hw) == pytest.approx((vdd * i["IDD3N"], vdd * i["IDD2N"]))


def test_all_bank_activate_is_every_bank_and_pj_figures_override():
    hbm = compiled("hbm-pim.yaml")
    e = command_energies_J(hbm)
    assert e["ACTAB"] == pytest.approx(16 * e["ACT"])
    assert e["MACAB"] == pytest.approx(930e-12)  # given in pJ beside the currents
    over = compiled("hbm-pim.yaml", "energy.dram.per_command_pJ.RD=1000")
    assert command_energies_J(over)["RD"] == pytest.approx(1e-9)
    aim = command_energies_J(compiled("gddr6-aim.yaml"))
    assert aim["ACT"] == pytest.approx(66.3e-3 * 89 * 0.5e-9, rel=1e-3)  # CENT: 66.3 mW over tRC
    assert aim["MACAB"] == pytest.approx(3 * aim["RD"], rel=1e-3)  # CENT: 3 x RD power over tCCDL = one burst


def actions(c, **counts):
    channels = c.hw.dram.organization.channels
    return Actions(commands=counts, total_s=1e-6, busy_s=np.full(channels, 0.5e-6), pin_bytes=pin_bytes(c, counts))


@pytest.mark.parametrize("name", ["ddr4-2400.yaml", "gddr6-aim.yaml", "hbm-pim.yaml"])
def test_breakdown_sums_to_the_total_and_terms_scale_with_counts(name):
    c = compiled(name)
    counts = {"ACT": 10, "RD": 200, "WR": 50, "REF": 1}
    one = energy_J(c, actions(c, **counts))
    assert sum(one["breakdown_J"].values()) == pytest.approx(one["total_J"])
    two = energy_J(c, actions(c, **{k: 2 * v for k, v in counts.items()}))
    for part in ("activations", "array_rw", "refresh", "io"):
        assert two["breakdown_J"][part] == pytest.approx(2 * one["breakdown_J"][part])
    assert two["breakdown_J"]["dram_background"] == pytest.approx(one["breakdown_J"]["dram_background"])
    assert set(one["breakdown_J"]) == set(COMPONENTS)


@pytest.mark.parametrize("name", ["ddr4-2400.yaml", "gddr6-aim.yaml", "hbm-pim.yaml"])
def test_no_traffic_leaves_only_background(name):
    c = compiled(name)
    org = c.hw.dram.organization
    idle = energy_J(c, Actions(commands={}, total_s=2e-3, busy_s=np.zeros(org.channels)))
    active, precharged = background_W(c.hw)
    leak = c.hw.energy.asic.leakage_mW * 1e-3 * 2e-3 if c.hw.energy.asic else 0.0
    assert idle["total_J"] == pytest.approx(precharged * org.channels * 2e-3 + leak)
    assert {k for k, v in idle["breakdown_J"].items() if v} <= {"dram_background", "asic_leakage"}
    busy = energy_J(c, Actions(commands={}, total_s=2e-3, busy_s=np.full(org.channels, 2e-3)))
    assert busy["breakdown_J"]["dram_background"] == pytest.approx(active * org.channels * 2e-3)


def test_reading_a_bit_off_chip_costs_what_each_standard_is_known_for():
    per_bit = {}
    for name in ("hbm-pim.yaml", "gddr6-aim.yaml", "ddr4-2400.yaml"):
        c = compiled(name)
        bits = c.hw.dram.organization.access_bytes * 8
        per_bit[name] = (command_energies_J(c)["RD"] + bits * c.hw.energy.io_pJ_per_bit * 1e-12) / bits * 1e12
    # HBM2 a few pJ/bit, GDDR6 more, DDR4 more still (array, data path and I/O of one read)
    assert 2 < per_bit["hbm-pim.yaml"] < 5 < per_bit["gddr6-aim.yaml"] < 10 < per_bit["ddr4-2400.yaml"] < 25


def test_energy_config_problems_are_listed_together():
    with pytest.raises(ConfigError) as err:
        load_hardware("hbm-pim.yaml", ["energy.dram.currents_mA.IDD9=3", "energy.dram.per_command_pJ.MAC=1",
                                       "energy.dram.background_mW={active: 1, precharged: 1}"])
    text = str(err.value)
    assert "currents_mA.IDD9" in text and "per_command_pJ.MAC" in text and "not both" in text
    with pytest.raises(ConfigError, match="no energy for ACTAB, MACAB"):
        load_hardware("gddr6-aim.yaml", ["energy.dram.per_command_pJ={ACT: 1}"])


def test_run_reports_energy_with_its_actions(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = {}
    for model in ("gpt2", "gpt2-medium"):
        assert main(["run", "--hw", "gddr6-aim.yaml", "--model", model, "--gen-tokens", "2", "--json", "-"]) == 0
        out[model] = json.loads(capsys.readouterr().out)
    r = out["gpt2"]
    assert sum(r["energy_breakdown_J"].values()) == pytest.approx(r["energy_total_J"])
    assert r["energy_per_token_J"] == pytest.approx(r["energy_total_J"] / 2)
    assert r["energy"]["actions"]["commands"]["MACAB"] == r["commands"]["MACAB"]
    assert r["energy"]["actions"]["link_bytes"] > 0 and r["energy"]["actions"]["asic_lane_ops"] > 0
    assert r["energy_breakdown_J"]["mac"] == pytest.approx(r["commands"]["MACAB"] * 1314.6e-12)
    assert out["gpt2-medium"]["energy_per_token_J"] > r["energy_per_token_J"]
    assert 1e-12 < r["energy_per_token_per_param_J"] < 1e-10


def test_kernels_report_energy():
    from pimsim.kernels import attention, gemv

    hw = compiled("gddr6-aim.yaml").hw
    g = gemv(hw, 512, 1024).stats
    assert g["energy"]["breakdown_J"]["mac"] == pytest.approx(g["commands"]["MACAB"] * 1314.6e-12)
    assert sum(g["energy"]["breakdown_J"].values()) == pytest.approx(g["energy"]["total_J"])
    a = attention(hw, 4, 64, 100)
    writes = a["phases"]["append"]["commands"]["WR"]
    assert a["energy"]["breakdown_J"]["array_rw"] == pytest.approx(writes * 553.2e-12)


def test_negative_costs_and_inverted_currents_are_refused():
    with pytest.raises(ConfigError) as err:
        load_hardware("hbm-pim.yaml", ["energy.dram.currents_mA.IDD4R=1", "energy.dram.per_command_pJ.MACAB=-5",
                                       "energy.dram.currents_mA.IDD0=-1"])
    text = str(err.value)
    assert "IDD4R: 1 mA is below IDD3N" in text and "per_command_pJ.MACAB" in text and "currents_mA.IDD0" in text


def test_a_command_without_an_energy_class_is_refused():
    """A standard's command with no declared energy class used to be billed as global-buffer energy; now the
    standard cannot be built, and a count of a command the standard lacks is refused."""
    import dataclasses

    from pimsim.dram.standard import Standard
    from pimsim.errors import PimsimError

    c = compiled("gddr6-aim.yaml")
    counts = {"ACT": 1, "WRGB": 2}
    ok = energy_J(c, actions(c, **counts))
    assert ok["breakdown_J"]["global_buffer"] > 0
    std = c.standard
    undeclared = tuple(dataclasses.replace(x, energy=None) if x.name == "WRGB" else x for x in std.commands)
    with pytest.raises(ValueError, match="command WRGB declares no energy class"):
        Standard(**{f.name: getattr(std, f.name) for f in dataclasses.fields(Standard)} | {"commands": undeclared})
    with pytest.raises(PimsimError, match="WRAB is not in the standard"):
        energy_J(c, Actions(commands={"ACT": 1, "WRAB": 1}, total_s=1e-6, busy_s=np.full(8, 0.5e-6)))
