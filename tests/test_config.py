"""Hardware-config validation: bundled files, ``--set`` overrides, every-problem-at-once errors,
``extends`` presets and malformed YAML."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.config import apply_overrides, load_hardware, load_raw, validate
from pimsim.errors import ConfigError, PimsimError, Problem

GiB = 2**30
HWCONFIGS = Path(__file__).resolve().parents[1] / "hwconfigs"


def _raw(name: str) -> dict:
    return load_raw(name)[1]


def _matching(problems: list[Problem], path: str, fragment: str) -> list[Problem]:
    return [p for p in problems if p.path == path and fragment in p.message]


def _config_error(raw, source="test") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(raw, source)
    return info.value


# --------------------------------------------------------------------------------------------
# the bundled configs


@pytest.mark.parametrize(
    "name, standard, channels, access, row, capacity, peak_Bps",
    [
        ("ddr4-2400.yaml", "DDR4", 1, 64, 8192, 8 * GiB, 19.2e9),
        # 8 channels x 16 bit x 16 Gb/s/pin / 8 = 256 GB/s
        ("gddr6-aim.yaml", "GDDR6-AiM", 8, 32, 2048, 4 * GiB, 256e9),
        # 16 pseudo-channels x 64 bit x 2 Gb/s/pin / 8 = 256 GB/s
        ("hbm-pim.yaml", "HBM2-PIM", 16, 32, 1024, 8 * GiB, 256e9),
    ],
)
def test_bundled_config_loads_by_bare_name_from_any_directory(
        tmp_path, monkeypatch, name, standard, channels, access, row, capacity, peak_Bps):
    monkeypatch.chdir(tmp_path)  # nothing named like a config here: the bundled copy must be found
    hw = load_hardware(name)
    org = hw.dram.organization
    assert hw.dram.standard == standard
    assert hw.name == name.removesuffix(".yaml")
    assert org.channels == channels
    assert org.access_bytes == access
    assert org.row_bytes == row
    assert org.capacity_bytes == capacity
    assert hw.dram.peak_bandwidth_Bps == pytest.approx(peak_Bps)
    # the address fields cover the whole capacity, bit for bit
    assert sum(hw.dram.field_bits().values()) == int(math.log2(capacity))
    # also without the .yaml suffix
    assert load_hardware(name.removesuffix(".yaml")) == hw


def test_ddr4_2400_exact_figures():
    hw = load_hardware("ddr4-2400.yaml")
    org = hw.dram.organization
    assert org.capacity_bytes == 8 * GiB
    assert org.access_bytes == 64
    assert org.row_bytes == 8192
    assert org.accesses_per_row == 128
    assert hw.dram.peak_bandwidth_Bps / 1e9 == pytest.approx(19.2)
    assert hw.dram.timing["nRCD"] == 16 and hw.dram.timing["nCL"] == 16 and hw.dram.timing["nBL"] == 4
    assert hw.pim is None


def test_pim_sections_of_bundled_pim_configs():
    aim = load_hardware("gddr6-aim.yaml")
    hbm = load_hardware("hbm-pim.yaml")
    assert aim.pim is not None and aim.pim.global_buffer_bytes == 2048 and aim.pim.banks_per_unit == 1
    assert hbm.pim is not None and hbm.pim.banks_per_unit == 2 and hbm.pim.weight_format == "fp16"


def test_file_in_the_current_directory_wins_over_the_bundled_one(tmp_path, monkeypatch):
    raw = _raw("ddr4-2400.yaml")
    raw["name"] = "local-ddr4"
    (tmp_path / "ddr4-2400.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert load_hardware("ddr4-2400.yaml").name == "local-ddr4"


def test_unknown_config_name_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PimsimError, match="no such file") as info:
        load_hardware("gddr7-nonexistent.yaml")
    assert "gddr6-aim.yaml" in str(info.value)  # lists what is bundled


# --------------------------------------------------------------------------------------------
# --set overrides


def test_override_changes_the_value_and_only_that_value():
    base = load_hardware("ddr4-2400.yaml")
    hw = load_hardware("ddr4-2400.yaml", ["dram.timing.nRCD=20"])
    assert hw.dram.timing["nRCD"] == 20
    assert base.dram.timing["nRCD"] == 16
    assert {k: v for k, v in hw.dram.timing.items() if k != "nRCD"} == \
           {k: v for k, v in base.dram.timing.items() if k != "nRCD"}
    # the bundled file is not changed by an override
    assert load_hardware("ddr4-2400.yaml").dram.timing["nRCD"] == 16


def test_overrides_apply_in_order_and_values_are_read_as_yaml():
    hw = load_hardware("ddr4-2400.yaml", ["dram.timing.nRCD=20", "dram.timing.nRCD=18",
                                          "dram.refresh.enabled=false", "dram.controller.scheduler=fcfs"])
    assert hw.dram.timing["nRCD"] == 18
    assert hw.dram.refresh.enabled is False
    assert hw.dram.controller.scheduler == "fcfs"


def test_apply_overrides_does_not_mutate_its_input():
    raw = _raw("gddr6-aim.yaml")
    before = copy.deepcopy(raw)
    out = apply_overrides(raw, ["dram.organization.channels=16", "pim.global_buffer_bytes=4096"])
    assert raw == before
    assert out["dram"]["organization"]["channels"] == 16 and out["pim"]["global_buffer_bytes"] == 4096


@pytest.mark.parametrize("override, path, fragment", [
    ("dram.organization.chanels=4", "dram.organization.chanels", "did you mean 'channels'"),
    ("dram.tCK_ns=0.833", "dram.tCK_ns", "did you mean 'tCK_ps'"),
    ("dram.frequency=1200", "dram.frequency", "unknown key"),
    ("foo.bar=1", "foo", "unknown key"),
    ("dram.timing.nFOO=3", "dram.timing.nFOO", "not a timing parameter of DDR4"),
])
def test_override_of_a_nonexistent_key_is_reported_as_unknown(override, path, fragment):
    with pytest.raises(ConfigError) as info:
        load_hardware("ddr4-2400.yaml", [override])
    err = info.value
    assert err.problems == _matching(err.problems, path, fragment), err.problems
    assert len(err.problems) == 1
    assert "unknown key" in err.problems[0].message or "not a timing parameter" in err.problems[0].message


def test_override_through_a_value_is_a_clear_error():
    with pytest.raises(PimsimError, match="dram.timing.nRCD is a value, not a section"):
        load_hardware("ddr4-2400.yaml", ["dram.timing.nRCD.x=1"])


@pytest.mark.parametrize("override", ["dram.timing.nRCD", "=5", "dram..nRCD=5", ""])
def test_malformed_override_is_a_pimsim_error(override):
    with pytest.raises(PimsimError, match="--set"):
        load_hardware("ddr4-2400.yaml", [override])


def test_override_of_a_timing_parameter_the_standard_lacks():
    # GDDR6-AiM splits nRCD into nRCDRD/nRCDWR: nRCD is not one of its parameters
    with pytest.raises(ConfigError) as info:
        load_hardware("gddr6-aim.yaml", ["dram.timing.nRCD=20"])
    assert [p.path for p in info.value.problems] == ["dram.timing.nRCD"]
    assert "not a timing parameter of GDDR6-AiM" in info.value.problems[0].message


# --------------------------------------------------------------------------------------------
# every problem at once


def _everything_wrong() -> dict:
    raw = _raw("ddr4-2400.yaml")
    dram, org, timing = raw["dram"], raw["dram"]["organization"], raw["dram"]["timing"]
    dram["tCK_ns"] = 0.833                 # unknown key (typo of tCK_ps)
    org["rows"] = "lots"                   # wrong type
    del org["columns"]                     # missing field
    timing["nRAS"] = 60                    # > nRC (55); nRAS + nRP > nRC as well
    org["banks_per_group"] = 3             # not a power of two
    timing["nRCDRDMAC"] = 20               # a GDDR6-AiM parameter, not DDR4
    del timing["nWR"]                      # missing timing parameter
    raw["pim"] = {"banks_per_unit": 1, "lanes_per_unit": 16, "global_buffer_bytes": 32,
                  "weight_format": "bf16", "accumulator_format": "fp32",
                  "accumulate": "tree"}  # DDR4 has no PIM; 32 B < 64 B access
    org["ranks"] = 2                       # multi-rank not modelled (and the mapping has no rank field)
    timing["nBL"] = 8                      # BL8 at 2.4 Gb/s with tCK 833 ps is 4 cycles
    return raw


EXPECTED_PROBLEMS = [
    ("dram.tCK_ns", "unknown key; did you mean 'tCK_ps'?"),
    ("dram.organization.rows", "valid integer"),
    ("dram.organization.columns", "missing"),
    ("dram.timing.nRAS", "nRAS = 60 but must be <= nRC = 55"),
    ("dram.timing.nRAS", "nRAS + nRP = 76 but must be <= nRC = 55"),
    ("dram.organization.banks_per_group", "not a power of two"),
    ("dram.timing.nRCDRDMAC", "not a timing parameter of DDR4"),
    ("dram.timing.nWR", "missing"),
    ("pim", "no PIM commands"),
    ("pim.global_buffer_bytes", "smaller than one column access (64 B)"),
    ("pim.mac_cycles", "16 lanes take 2 passes over the 32 bf16 weights"),
    ("dram.organization.ranks", "multi-rank"),
    ("dram.address_mapping", "2 ranks need a 'rank' field"),
    ("dram.timing.nBL", "8 cycles, but a burst of 8 beats"),
]


def test_config_error_lists_every_problem_with_its_path():
    err = _config_error(_everything_wrong(), "bad.yaml")
    for path, fragment in EXPECTED_PROBLEMS:
        assert len(_matching(err.problems, path, fragment)) == 1, (path, fragment, err.problems)
    # nothing else, and no duplicates
    assert len(err.problems) == len(EXPECTED_PROBLEMS), err.problems
    assert len(set(err.problems)) == len(err.problems)
    text = str(err)
    assert text.startswith(f"bad.yaml: {len(EXPECTED_PROBLEMS)} problems")
    for path, _ in EXPECTED_PROBLEMS:
        assert f"  - {path}: " in text
    assert err.source == "bad.yaml"


def test_each_problem_alone_is_reported_alone():
    """Removing all but one fault leaves exactly that fault's problems (no cross-talk)."""
    faults = {
        "typo": (lambda r: r["dram"].__setitem__("tCK_ns", 1), {"dram.tCK_ns"}),
        "type": (lambda r: r["dram"]["organization"].__setitem__("rows", "lots"), {"dram.organization.rows"}),
        "missing": (lambda r: r["dram"]["organization"].pop("columns"), {"dram.organization.columns"}),
        "nRAS": (lambda r: r["dram"]["timing"].__setitem__("nRAS", 60), {"dram.timing.nRAS"}),
        "pow2": (lambda r: r["dram"]["organization"].__setitem__("banks_per_group", 3),
                 {"dram.organization.banks_per_group"}),
        "nWR": (lambda r: r["dram"]["timing"].pop("nWR"), {"dram.timing.nWR"}),
        "nBL": (lambda r: r["dram"]["timing"].__setitem__("nBL", 8), {"dram.timing.nBL"}),
    }
    for name, (apply, paths) in faults.items():
        raw = _raw("ddr4-2400.yaml")
        apply(raw)
        err = _config_error(raw)
        assert {p.path for p in err.problems} == paths, (name, err.problems)


@pytest.mark.parametrize("gb, fragment", [
    (16, "16 B is smaller than one column access (32 B)"),
    (48, "48 B is not a whole number of 32 B column accesses"),
])
def test_global_buffer_must_hold_whole_column_accesses(gb, fragment):
    raw = _raw("gddr6-aim.yaml")
    raw["pim"]["global_buffer_bytes"] = gb
    del raw["pim"]["formats"], raw["energy"]["dram"]["mac_pJ_by_format"]  # (they would add their own problems)
    err = _config_error(raw)
    assert err.problems == [Problem("pim.global_buffer_bytes", fragment)]


def test_pim_section_on_ddr4_is_rejected():
    raw = _raw("ddr4-2400.yaml")
    raw["pim"] = copy.deepcopy(_raw("gddr6-aim.yaml")["pim"])
    raw["pim"]["global_buffer_bytes"] = 64  # a whole number of DDR4's 64 B accesses: only the PIM problem
    raw["pim"]["lanes_per_unit"] = 32  # one lane per bf16 value of a 64 B access
    del raw["pim"]["formats"]  # AiM's extra datapaths are sized for 32 B accesses
    err = _config_error(raw)
    assert err.problems == [Problem("pim", "standard DDR4 has no PIM commands; remove the pim section")]


def test_ranks_2_is_rejected_even_with_a_rank_field():
    raw = _raw("ddr4-2400.yaml")
    raw["dram"]["organization"]["ranks"] = 2
    raw["dram"]["address_mapping"] = ["rank", "row", "bank", "bankgroup", "column", "offset"]
    err = _config_error(raw)
    assert [p.path for p in err.problems] == ["dram.organization.ranks"]


def test_nbl_consistent_with_units_passes_and_wrong_units_fail():
    # tCK in ns instead of ps: nBL 4 no longer matches 8 beats at 2.4 Gb/s
    with pytest.raises(ConfigError) as info:
        load_hardware("ddr4-2400.yaml", ["dram.tCK_ps=0.833"])
    assert [p.path for p in info.value.problems] == ["dram.timing.nBL"]
    assert "check tCK_ps and data_rate_Gbps_per_pin units" in info.value.problems[0].message
    # changing both clock and nBL consistently is fine: 8 beats at 2.4 Gb/s, tCK 1666 ps -> 2 cycles
    hw = load_hardware("ddr4-2400.yaml", ["dram.tCK_ps=1666", "dram.timing.nBL=2"])
    assert hw.dram.timing["nBL"] == 2


# --------------------------------------------------------------------------------------------
# extends


def test_extends_a_bundled_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aim16.yaml").write_text(
        "extends: gddr6-aim.yaml\n"
        "name: aim16\n"
        "dram: {organization: {channels: 16}}\n")
    hw = load_hardware("aim16.yaml")
    base = load_hardware("gddr6-aim.yaml")
    assert hw.dram.organization.channels == 16
    assert hw.name == "aim16"
    assert hw.dram.organization.capacity_bytes == 2 * base.dram.organization.capacity_bytes
    # everything else comes from gddr6-aim, including nested sections the child only partly sets
    got, want = hw.model_dump(), base.model_dump()
    got["dram"]["organization"].pop("channels"), want["dram"]["organization"].pop("channels")
    got.pop("name"), want.pop("name")
    assert got == want


def test_extends_a_sibling_file_from_another_directory(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "base.yaml").write_text(yaml.safe_dump(_raw("hbm-pim.yaml")))
    (presets / "slow.yaml").write_text("extends: base.yaml\ndram: {timing: {nCL: 24}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hw = load_hardware(presets / "slow.yaml")
    assert hw.dram.timing["nCL"] == 24
    assert hw.dram.timing["nRCDRD"] == 14  # from base
    assert hw.dram.organization.channels == 16


def test_override_applies_after_extends(tmp_path):
    (tmp_path / "c.yaml").write_text("extends: gddr6-aim.yaml\ndram: {organization: {channels: 16}}\n")
    hw = load_hardware(tmp_path / "c.yaml", ["dram.organization.channels=4"])
    assert hw.dram.organization.channels == 4


def test_problems_in_the_merged_result_are_reported(tmp_path):
    (tmp_path / "c.yaml").write_text("extends: gddr6-aim.yaml\ndram: {organization: {channels: 12}}\n")
    with pytest.raises(ConfigError) as info:
        load_hardware(tmp_path / "c.yaml")
    assert [p.path for p in info.value.problems] == ["dram.organization.channels"]
    assert "power of two" in info.value.problems[0].message


def _chain(directory: Path, links: int) -> Path:
    """c0 extends c1 extends ... extends gddr6-aim.yaml: ``links`` extends in all."""
    directory.mkdir()
    for i in range(links):
        parent = f"c{i + 1}.yaml" if i < links - 1 else "gddr6-aim.yaml"
        (directory / f"c{i}.yaml").write_text(f"extends: {parent}\n")
    return directory / "c0.yaml"


def test_extends_chain_of_eight_is_allowed_deeper_is_a_config_error(tmp_path):
    assert load_hardware(_chain(tmp_path / "eight", 8)).dram.organization.channels == 8
    with pytest.raises(ConfigError) as info:
        load_hardware(_chain(tmp_path / "nine", 9))
    assert [p.path for p in info.value.problems] == ["extends"]
    assert "deeper than 8" in info.value.problems[0].message


@pytest.mark.parametrize("files", [
    {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"},
    {"a.yaml": "extends: a.yaml\n"},
])
def test_extends_cycle_is_a_config_error_not_recursion(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_hardware(tmp_path / "a.yaml")
    assert [p.path for p in info.value.problems] == ["extends"]


def test_extends_must_be_a_name(tmp_path):
    (tmp_path / "c.yaml").write_text("extends: [gddr6-aim.yaml]\n")
    with pytest.raises(ConfigError) as info:
        load_hardware(tmp_path / "c.yaml")
    assert [p.path for p in info.value.problems] == ["extends"]


def test_extends_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("extends: no-such-base.yaml\n")
    with pytest.raises(PimsimError, match="no-such-base.yaml: no such file"):
        load_hardware("c.yaml")


# --------------------------------------------------------------------------------------------
# malformed YAML


@pytest.mark.parametrize("text, line", [
    ("version: 1\nname: x\n  bad: indent\n", 3),
    ("version: 1\nname: x\ndram:\n\tstandard: DDR4\n", 4),
    ("version: 1\nname: [x\nfoo: 1\n", 3),
])
def test_invalid_yaml_is_a_config_error_naming_the_line(tmp_path, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_hardware(path)
    assert len(info.value.problems) == 1
    assert f"not valid YAML at line {line}," in info.value.problems[0].message
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("", "NoneType"), ("just words\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_hardware(path)
    assert info.value.problems == [Problem("", f"expected a mapping at the top level, got {kind}")]


def test_file_that_is_not_utf8_is_a_pimsim_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nname: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(PimsimError):
        load_hardware(path)


# --------------------------------------------------------------------------------------------
# wrong types never escape as anything but a ConfigError


@pytest.mark.parametrize("name, override, path", [
    ("ddr4-2400.yaml", "dram.organization.channels=1.5", "dram.organization.channels"),
    ("ddr4-2400.yaml", "dram.organization.rows=[1, 2]", "dram.organization.rows"),
    ("ddr4-2400.yaml", "dram.refresh.enabled=1", "dram.refresh.enabled"),
    ("ddr4-2400.yaml", "dram.timing.nRCD=true", "dram.timing.nRCD"),
    ("ddr4-2400.yaml", "dram.timing.nRCD={a: 1}", "dram.timing.nRCD"),
    ("ddr4-2400.yaml", "dram.address_mapping=[row, {a: 1}]", "dram.address_mapping.1"),
    ("ddr4-2400.yaml", "dram.controller.scheduler=[fcfs]", "dram.controller.scheduler"),
    ("ddr4-2400.yaml", "dram.tCK_ps=.nan", "dram.tCK_ps"),
    ("gddr6-aim.yaml", "pim.accumulator_format=[fp32]", "pim.accumulator_format"),
    ("gddr6-aim.yaml", "pim.lanes_per_unit=sixteen", "pim.lanes_per_unit"),
    ("ddr4-2400.yaml", "dram.standard=[DDR4]", "dram.standard"),
    ("gddr6-aim.yaml", "pim.weight_format=[bf16]", "pim.weight_format"),
    ("ddr4-2400.yaml", "dram.timing={1: 16}", "dram.timing.1"),
    ("ddr4-2400.yaml", "dram.tCK_ps=true", "dram.tCK_ps"),
    ("ddr4-2400.yaml", "dram.data_rate_Gbps_per_pin=true", "dram.data_rate_Gbps_per_pin"),
])
def test_wrong_type_is_reported_at_its_path(name, override, path):
    try:
        load_hardware(name, [override])
    except ConfigError as err:
        assert any(p.path == path or p.path.startswith(path + ".") for p in err.problems), err.problems
    else:
        pytest.fail(f"{override} was accepted")


def _leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        yield prefix  # a section may be replaced as a whole
        for key, value in node.items():
            yield from _leaf_paths(value, prefix + (key,))
    else:
        yield prefix


_RAW = {name: _raw(name) for name in ("ddr4-2400.yaml", "gddr6-aim.yaml", "hbm-pim.yaml")}
_PATHS = sorted({(name, p) for name, raw in _RAW.items() for p in _leaf_paths(raw) if p}
                | {(name, p) for name in _RAW for p in (("dram", "timing", "nXYZ"), ("pim", "extra"),
                                                        ("dram", "organization", "ranks"))})

_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(_PATHS), value=_yaml_values)
def test_any_value_anywhere_gives_a_config_error_or_a_config(target, value):
    name, path = target
    raw = copy.deepcopy(_RAW[name])
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    try:
        hw = validate(raw, name)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, Problem) and isinstance(p.message, str) for p in err.problems)
        assert str(err).startswith(f"{name}: {len(err.problems)} problem")
    else:
        # accepted: the value must be one the model really holds
        assert hw.dram.organization.capacity_bytes > 0
