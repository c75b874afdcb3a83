"""Standards as declared data: levels, refresh policies, PIM roles and energy classes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import compiled

from pimsim.config import load_hardware
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.compile import compile_standard
from pimsim.dram.kernel import run_commands
from pimsim.dram.standard import EnergyClass, Level, PimRole, RefreshPolicy, Standard
from pimsim.dram.standards import STANDARDS
from pimsim.dram.timing_state import new_state
from pimsim.energy.model import COMPONENTS, command_energies_J
from pimsim.errors import ConfigError


def _rebuild(std: Standard, **changes) -> Standard:
    return Standard(**{f.name: getattr(std, f.name) for f in dataclasses.fields(Standard)} | changes)


def test_every_energy_class_is_an_energy_component():
    assert {e.value for e in EnergyClass} <= set(COMPONENTS)


@pytest.mark.parametrize("name", sorted(STANDARDS))
def test_every_command_declares_its_role_and_energy_class(name):
    std = STANDARDS[name]
    assert all(isinstance(c.energy, EnergyClass) and isinstance(c.pim_role, PimRole) for c in std.commands)
    # the mapper's vocabulary is found by role on every PIM standard
    if std.role(PimRole.MAC_ALL):
        assert std.role(PimRole.MAC_ALL) == "MACAB" and std.role(PimRole.ACTIVATE_ALL) == std.activate_all


def test_undeclared_role_and_class_and_a_bad_policy_are_refused_in_one_message():
    std = STANDARDS["HBM3-PIM"]
    commands = tuple(dataclasses.replace(c, pim_role=None) if c.name == "MACAB" else
                     dataclasses.replace(c, energy=None) if c.name == "RDMAC" else c for c in std.commands)
    policies = std.refresh_policies + (RefreshPolicy("odd", "REFPB", "PREA", "nREFIX", per_bank=True),)
    with pytest.raises(ValueError) as err:
        _rebuild(std, commands=commands, refresh_policies=policies)
    text = str(err.value)
    assert "command MACAB declares no PIM role" in text and "command RDMAC declares no energy class" in text
    assert "interval 'nREFIX' uses ['nREFIX']" in text and "PREA must be scoped at the bank level" in text


def test_levels_name_the_tiers_in_messages():
    c = compiled("hbm3-pim.yaml")
    node = int(c.bank_node(3, 0, 2, 1))
    assert c.describe_node(node) == "pseudo-channel 3 stack ID 0 bankgroup 2 bank 1"
    ddr4 = compiled("ddr4-2400.yaml")
    assert ddr4.describe_node(int(ddr4.bank_node(0, 0, 1, 2))) == "channel 0 rank 0 bankgroup 1 bank 2"


def _idle_then(c, t_end: int):
    """A stream of one command on pseudo-channel 0 at t_end: the kernel refreshes the idle memory up to it."""
    ids = {n: i for i, n in enumerate(c.command_names)}
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    node = int(c.rank_node(0))
    st, at, rec, err = run_commands(c.spec, a([ids["PREA"]]), a([node]), a([-1]), a([-1]), a([t_end]), record=True)
    assert err[0] == 0
    return rec


def test_per_bank_refresh_visits_every_bank_in_turn_at_its_interval():
    c = compiled("hbm3-pim.yaml", "dram.refresh.policy=per-bank")
    assert c.refresh_command == "REFPB" and c.refresh_interval == c.timing["nREFIPB"] == 317
    interval, banks = c.refresh_interval, 16
    rec = _idle_then(c, 40 * interval + 5)
    refs = rec[rec[:, 1] == c.command_names.index("REFPB")]
    assert len(refs) == 40
    # an idle, closed memory refreshes exactly when due: cycle k x interval, bank k mod 16 of pseudo-channel 0
    assert refs[:, 0].tolist() == [k * interval for k in range(1, 41)]
    first_bank = int(c.bank_node(0, 0, 0, 0))
    assert (refs[:, 2] - first_bank).tolist() == [k % banks for k in range(1, 41)]
    assert not check(c, issued_from_record(c, rec), check_refresh=True)


def test_all_bank_refresh_is_one_command_per_interval_at_the_rank():
    c = compiled("hbm3-pim.yaml")
    assert c.refresh_command == "REF" and c.refresh_interval == c.timing["nREFI"]
    rec = _idle_then(c, 3 * c.refresh_interval + 5)
    refs = rec[rec[:, 1] == c.command_names.index("REF")]
    assert refs[:, 0].tolist() == [c.refresh_interval * k for k in (1, 2, 3)]
    assert set(refs[:, 2].tolist()) == {int(c.rank_node(0))}


def test_a_per_bank_refresh_stalls_an_all_bank_mac_only_for_its_bank_cycle():
    """A MACAB due just after a per-bank refresh waits nRFCPB for the refreshed bank, then the reopening
    activate's nRCDRDMAC; a closed-form check of the policy's cost to all-bank PIM."""
    c = compiled("hbm3-pim.yaml", "dram.refresh.policy=per-bank")
    t = c.timing
    ids = {n: i for i, n in enumerate(c.command_names)}
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    rk = int(c.rank_node(0))
    interval = c.refresh_interval
    # ACTAB at 0 opens row 5 everywhere; the MACAB asks for cycle `interval`, when bank 1's refresh falls due
    st, at, rec, err = run_commands(c.spec, a([ids["ACTAB"], ids["MACAB"]]), a([rk, rk]), a([5, 5]), a([-1, 0]),
                                    a([0, interval]), record=True)
    assert err[0] == 0
    names = [c.command_names[k] for k in rec[:, 1]]
    assert names == ["ACTAB", "PRE", "REFPB", "ACT", "MACAB"]
    pre, ref, act, mac = (int(x) for x in rec[1:, 0])
    assert pre == interval and ref == pre + t["nRP"] and act == ref + t["nRFCPB"]
    assert mac == act + t["nRCDRDMAC"]


def test_staggered_refresh_spreads_the_ranks_of_a_channel(monkeypatch):
    """Ranks are not configurable yet (config check), so the policy is tried on a two-rank DDR4 built directly."""
    ddr4 = STANDARDS["DDR4"]
    staggered = _rebuild(ddr4, refresh_policies=(RefreshPolicy("staggered", "REF", "PREA", "nREFI", staggered=True),))
    monkeypatch.setitem(STANDARDS, "DDR4", staggered)
    hw = load_hardware("ddr4-2400.yaml")
    org = hw.dram.organization.model_copy(update={"ranks": 2})
    c = compile_standard(hw.model_copy(update={"dram": hw.dram.model_copy(update={"organization": org})}))
    n = c.refresh_interval
    assert new_state(c.spec).ref_due.tolist() == [n, n - n // 2]
    ids = {x: i for i, x in enumerate(c.command_names)}
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    rank1 = int(c.rank_node(0, 1))
    st, at, rec, err = run_commands(c.spec, a([ids["PREA"]]), a([rank1]), a([-1]), a([-1]), a([2 * n]), record=True)
    refs = rec[rec[:, 1] == ids["REF"]]
    assert refs[:, 0].tolist() == [n - n // 2, 2 * n - n // 2] and set(refs[:, 2].tolist()) == {rank1}


def test_a_refresh_policy_the_standard_lacks_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        load_hardware("lpddr5-pim.yaml", ["dram.refresh.policy=per-bank"])
    assert "'per-bank' is not a refresh policy of LPDDR5-PIM (all-bank)" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'per-bank'"):
        load_hardware("hbm3-pim.yaml", ["dram.refresh.policy=per-bnak"])


def test_per_bank_refresh_costs_the_rank_what_all_bank_refresh_does():
    c = compiled("hbm3-pim.yaml")
    e = command_energies_J(c)
    assert e["REFPB"] * c.hw.dram.organization.banks == pytest.approx(e["REF"])
    assert c.standard.energy_class("REFPB") == EnergyClass.REFRESH
    assert c.standard.command("REFPB").scope == Level.BANK
