"""The command line, called in-process through ``pimsim.cli.main(argv)``."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import yaml

from pimsim.cli import main
from pimsim.config import load_raw

DDR4_HEADER = "cycle,channel,command,bankgroup,bank,row,column"


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """Run every command from an empty directory: bundled configs and traces must still be found."""
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv: str) -> dict:
    rc, out, err = run(capsys, *argv, "--json", "-")
    assert rc == 0, err
    return json.loads(out)


def write(path, *lines: str):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --------------------------------------------------------------------------------------------
# validate, config show, config list


def test_validate_bundled_config(capsys):
    rc, out, err = run(capsys, "validate", "gddr6-aim.yaml")
    assert rc == 0, err
    assert out == "gddr6-aim.yaml: ok (gddr6-aim: GDDR6-AiM, 8 channel(s), 4 GiB)\n"
    assert err == ""


def test_validate_bad_file_lists_every_problem(tmp_path, capsys):
    raw = load_raw("ddr4-2400.yaml")[1]
    raw["dram"]["tCK_ns"] = 0.833
    raw["dram"]["organization"]["banks_per_group"] = 3
    raw["dram"]["timing"]["nRAS"] = 56  # > nRC 55 (nRAS + nRP > nRC too)
    del raw["dram"]["timing"]["nWR"]
    raw["dram"]["timing"]["nRCD"] = "sixteen"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    rc, out, err = run(capsys, "validate", str(path))
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(f"pimsim: error: {path}: 6 problems\n")
    for fragment in ("dram.tCK_ns: unknown key; did you mean 'tCK_ps'?",
                     "dram.organization.banks_per_group: 3 is not a power of two",
                     "dram.timing.nRAS: nRAS = 56 but must be <= nRC = 55",
                     "dram.timing.nRAS: nRAS + nRP = 72 but must be <= nRC = 55",
                     "dram.timing.nWR: missing (DDR4 needs it)",
                     "dram.timing.nRCD: Input should be a valid integer"):
        assert f"  - {fragment}" in err, err
    assert err.count("\n  - ") == 6


def test_validate_with_set_and_missing_file(capsys):
    rc, out, err = run(capsys, "validate", "ddr4-2400.yaml", "--set", "dram.timing.nRAS=60")
    assert rc == 2 and "dram.timing.nRAS" in err and "Traceback" not in err
    rc, out, err = run(capsys, "validate", "no-such-config.yaml")
    assert rc == 2 and "no-such-config.yaml: no such file" in err and "ddr4-2400.yaml" in err


def test_config_show_yaml_with_override(capsys):
    rc, out, err = run(capsys, "config", "show", "hbm-pim.yaml", "--set", "dram.timing.nCL=22")
    assert rc == 0, err
    data = yaml.safe_load(out)
    assert data["dram"]["timing"]["nCL"] == 22
    assert data["dram"]["timing"]["nRCDRD"] == 14  # the rest untouched
    assert data["name"] == "hbm-pim"
    assert data["derived"]["row_bytes"] == 1024


def test_config_show_json_has_derived_figures(capsys):
    rc, out, err = run(capsys, "config", "show", "hbm-pim.yaml", "--format", "json")
    assert rc == 0, err
    data = json.loads(out)
    derived = data["derived"]
    assert derived["access_bytes"] == 32
    assert derived["row_bytes"] == 1024
    assert derived["accesses_per_row"] == 32
    assert derived["banks_per_channel"] == 16
    assert derived["capacity_bytes"] == 8 * 2**30
    assert derived["peak_bandwidth_GBps"] == pytest.approx(256.0)
    assert sum(derived["address_bits"].values()) == int(math.log2(derived["capacity_bytes"]))
    assert data["dram"]["organization"]["channels"] == 16
    assert data["pim"]["banks_per_unit"] == 2


def test_config_show_yaml_and_json_agree(capsys):
    _, y, _ = run(capsys, "config", "show", "gddr6-aim.yaml")
    _, j, _ = run(capsys, "config", "show", "gddr6-aim.yaml", "--format", "json")
    assert yaml.safe_load(y) == json.loads(j)


def test_config_list(capsys):
    rc, out, _ = run(capsys, "config", "list")
    assert rc == 0
    assert {"ddr4-2400.yaml", "gddr6-aim.yaml", "hbm-pim.yaml"} <= set(out.split())


def test_set_without_equals_is_a_clear_error(capsys):
    rc, out, err = run(capsys, "config", "show", "ddr4-2400.yaml", "--set", "dram.timing.nRCD")
    assert rc == 2
    assert out == ""
    assert err == ("pimsim: error: --set 'dram.timing.nRCD': expected KEY=VALUE, "
                   "e.g. --set dram.timing.nRC=100\n")


def test_set_through_a_value_is_a_clear_error(capsys):
    rc, _, err = run(capsys, "validate", "ddr4-2400.yaml", "--set", "dram.timing.nRCD.low=3")
    assert rc == 2 and "is a value, not a section" in err and "Traceback" not in err


def test_unhashable_standard_is_an_input_error(capsys):
    rc, _, err = run(capsys, "validate", "ddr4-2400.yaml", "--set", "dram.standard=[DDR4]")
    assert rc == 2 and "dram.standard" in err


# --------------------------------------------------------------------------------------------
# trace run: the bundled GEMV command trace


GEMV = ("trace", "run", "gemv-2048x1024-aim.csv", "--hw", "gddr6-aim.yaml")


def test_trace_run_gemv_json(capsys):
    d = run_json(capsys, *GEMV)
    for key in ("cycles", "time_s", "commands", "row_hits", "row_misses", "row_conflicts", "bytes",
                "bandwidth_GBps", "channels", "config", "input", "host"):
        assert key in d, key
    cmds = d["commands"]
    assert cmds["MACAB"] == 8192  # 8 channels x 16 rows x 64 columns
    assert cmds["WRGB"] == 512  # 8 channels x 64 x 32 B = the 2 KB input vector per channel
    assert cmds["RDMAC"] == 128  # 8 channels x 16 rows
    assert len(d["channels"]) == 8
    assert [c["channel"] for c in d["channels"]] == list(range(8))
    # per-channel figures add up to the totals
    for name, total in cmds.items():
        assert sum(c["commands"].get(name, 0) for c in d["channels"]) == total
    assert d["cycles"] == max(c["cycles"] for c in d["channels"])
    # every MAC is one access: hit, miss or conflict
    assert d["row_hits"] + d["row_misses"] + d["row_conflicts"] == 8192
    # data over the channel interface: WRGB writes, RDMAC reads, 32 B each
    assert d["bytes_written"] == 512 * 32 and d["bytes_read"] == 128 * 32
    assert d["bytes"] == d["bytes_read"] + d["bytes_written"]
    assert d["time_s"] == pytest.approx(d["cycles"] * 500e-12)
    assert d["bandwidth_GBps"] == pytest.approx(d["bytes"] / d["time_s"] / 1e9)
    assert d["peak_bandwidth_GBps"] == pytest.approx(256.0)
    assert d["config"]["name"] == "gddr6-aim" and "derived" in d["config"]
    # + AiM's mode changes: 2 per row
    assert d["input"]["kind"] == "command trace" and d["input"]["entries"] == 9088 + 8 * 16 * 2
    assert d["input"]["path"].endswith("gemv-2048x1024-aim.csv")
    # a lower bound nobody can beat: each channel issues 64 WRGB + 1024 MACAB (+ 16 RDMAC) on one
    # command bus, and MACs follow one another at nCCDL = 2 cycles at best
    assert d["cycles"] >= 64 + 1024 * 2


def test_trace_run_is_deterministic(capsys):
    first = run_json(capsys, *GEMV)
    second = run_json(capsys, *GEMV)
    assert first.pop("host") != {} and second.pop("host") != {}
    assert first == second


def test_trace_run_text_summary_and_json_file(tmp_path, capsys):
    rc, out, err = run(capsys, *GEMV, "--json", str(tmp_path / "r.json"))
    assert rc == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert out.startswith("trace      ")
    assert "MACAB 8,192" in out and f"cycles     {data['cycles']:,}" in out


def test_emitted_commands_pass_the_checker(tmp_path, capsys):
    emitted = tmp_path / "out.csv"
    d = run_json(capsys, *GEMV, "--emit-commands", str(emitted))
    with emitted.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == DDR4_HEADER.split(",")
    # every issued command, kernel-added refresh steps included
    assert len(rows) - 1 == sum(d["commands"].values())
    assert len(rows) - 1 == d["input"]["entries"] + d["kernel_inserted_commands"]
    cycles = [int(r[0]) for r in rows[1:]]
    assert max(cycles) < d["cycles"]
    rc, out, err = run(capsys, "trace", "check", str(emitted), "--hw", "gddr6-aim.yaml")
    assert rc == 0, out + err
    assert f"{len(rows) - 1:,} commands, no protocol violations (gddr6-aim)" in out


def test_trace_run_counts_refreshes_in_the_trace(tmp_path, capsys):
    # DDR4: first refresh due at nREFI = 9364; the trace refreshes at 9000, so none is due before 18364
    trace = write(tmp_path / "ref.csv", DDR4_HEADER, "9000,0,REF,,,,", "10000,0,ACT,0,0,1,", "10016,0,RD,0,0,1,0")
    d = run_json(capsys, "trace", "run", trace, "--hw", "ddr4-2400.yaml")
    assert d["commands"] == {"ACT": 1, "RD": 1, "REF": 1}
    assert d["kernel_inserted_commands"] == 0
    assert d["refresh"] == "trace"


# --------------------------------------------------------------------------------------------
# trace check


def test_trace_check_finds_a_planted_nrcd_violation(tmp_path, capsys):
    bad = write(tmp_path / "bad.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "5,0,RD,0,0,5,0")
    rc, out, err = run(capsys, "trace", "check", bad, "--hw", "ddr4-2400.yaml")
    assert rc == 1
    assert "line 3: RD at cycle 5" in out
    assert "(nRCD): needs 16 cycles after ACT (line 2, cycle 0), got 5" in out
    assert "1 protocol violation(s)" in err
    # one cycle short still fails; exactly nRCD passes
    short = write(tmp_path / "short.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "15,0,RD,0,0,5,0")
    assert run(capsys, "trace", "check", short, "--hw", "ddr4-2400.yaml")[0] == 1
    good = write(tmp_path / "good.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "16,0,RD,0,0,5,0")
    rc, out, err = run(capsys, "trace", "check", good, "--hw", "ddr4-2400.yaml")
    assert rc == 0, out + err
    assert "2 commands, no protocol violations (ddr4-2400)" in out


def test_trace_check_honours_set(tmp_path, capsys):
    trace = write(tmp_path / "t.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "16,0,RD,0,0,5,0")
    rc, out, _ = run(capsys, "trace", "check", trace, "--hw", "ddr4-2400.yaml", "--set", "dram.timing.nRCD=17")
    assert rc == 1 and "needs 17 cycles" in out


def test_trace_check_needs_a_timed_command_trace(tmp_path, capsys):
    untimed = write(tmp_path / "u.csv", "channel,command,bankgroup,bank,row,column", "0,ACT,0,0,5,")
    rc, _, err = run(capsys, "trace", "check", untimed, "--hw", "ddr4-2400.yaml")
    assert rc == 2 and "leading 'cycle' column" in err
    rc, _, err = run(capsys, "trace", "check", "stream-read.csv", "--hw", "ddr4-2400.yaml")
    assert rc == 2 and "not a request trace" in err


# --------------------------------------------------------------------------------------------
# bad trace files: exit 2, one clear message naming the line


@pytest.mark.parametrize("lines, message", [
    ([DDR4_HEADER, "0,0,ACT,0,0,5,", "20,0,FOO,0,0,5,0"],
     "line 3: unknown command 'FOO' for DDR4"),
    ([DDR4_HEADER, "0,0,ACT,0,4,5,"], "line 2: bank 4 is out of range (0..3)"),
    ([DDR4_HEADER, "0,0,ACT,0,0,5,", "16,0,RD,0,0,5"], "line 3: expected 7 fields, got 6"),
    ([DDR4_HEADER, "# a comment", "", "0,0,ACT,0,0,99999999,"], "line 4: row 99999999 is out of range"),
    ([DDR4_HEADER, "0,1,ACT,0,0,5,"], "line 2: channel 1 is out of range (0..0)"),
    ([DDR4_HEADER, "0,0,ACT,0,0,,"], "line 2: ACT needs a row"),
    ([DDR4_HEADER, "x,0,ACT,0,0,5,"], "line 2: cycle 'x' is not an integer"),
    ([DDR4_HEADER, "0,0,ACT,0,0,5,", "40,0,PRE,0,0,,", "60,0,RD,0,0,,0"],
     "line 4: RD to channel 0 rank 0 bankgroup 0 bank 0, which has no open row"),
    ([DDR4_HEADER, "0,0,ACT,0,0,5,", "16,0,RD,0,0,6,0"], "line 3: RD to row 6 of"),
    (["cycle,op,addr", "0,R,0x0", "1,X,0x40"], "line 3: op 'X' is neither R nor W"),
    (["cycle,op,addr", "0,R,0x0", "1,R"], "line 3: expected 3 fields (cycle,op,addr), got 2"),
    (["cycle,op,addr", "5,R,0x0", "1,R,0x40"], "line 3: cycle 1 is earlier than the line before (5)"),
    (["cycle,op,addr", "0,R,0x200000000"], "line 2: address 8589934592 is out of range"),
    (["cycle,op,address", "0,R,0"], "unrecognised header"),
    (["# only a comment"], "empty trace (no header)"),
    ([DDR4_HEADER], "no commands after the header"),
])
def test_bad_trace_file_is_one_clear_error(tmp_path, capsys, lines, message):
    trace = write(tmp_path / "bad.csv", *lines)
    rc, out, err = run(capsys, "trace", "run", trace, "--hw", "ddr4-2400.yaml")
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("pimsim: error: ")
    assert message in err, err
    assert len(re.findall(r"\bline \d+", err)) <= 1  # one problem, one line named


def test_every_malformed_line_is_reported(tmp_path, capsys):
    trace = write(tmp_path / "bad.csv", DDR4_HEADER, "0,0,FOO,0,0,5,", "1,0,ACT,0,9,5,", "2,0,ACT")
    rc, _, err = run(capsys, "trace", "run", trace, "--hw", "ddr4-2400.yaml")
    assert rc == 2
    assert "3 problem(s)" in err
    for fragment in ("line 2: unknown command 'FOO'", "line 3: bank 9 is out of range", "line 4: expected 7 fields"):
        assert fragment in err


def test_trace_that_is_not_utf8_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"cycle,op,addr\n0,R,0x0\n1,R,\xe9\n")
    rc, _, err = run(capsys, "trace", "run", str(path), "--hw", "ddr4-2400.yaml")
    assert rc == 2 and "line 3" in err


# --------------------------------------------------------------------------------------------
# request traces and --max-outstanding


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_outstanding_must_be_a_positive_integer(capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml", "--max-outstanding", value])
    assert info.value.code == 2
    assert "--max-outstanding" in capsys.readouterr().err


def test_max_outstanding_is_for_request_traces_only(capsys):
    rc, _, err = run(capsys, *GEMV, "--max-outstanding", "2")
    assert rc == 2 and "--max-outstanding applies to request traces" in err


def test_single_read_latency_is_nrcd_ncl_nbl(tmp_path, capsys):
    # DDR4-2400: ACT at 0, RD at nRCD = 16, data done nCL + nBL = 20 later
    trace = write(tmp_path / "one.csv", "cycle,op,addr", "0,R,0x0")
    d = run_json(capsys, "trace", "run", trace, "--hw", "ddr4-2400.yaml", "--max-outstanding", "1")
    assert d["requests"]["latency_cycles"]["max"] == 16 + 16 + 4 == 36
    assert d["cycles"] == 36
    assert d["commands"] == {"ACT": 1, "RD": 1}
    assert (d["row_hits"], d["row_misses"], d["row_conflicts"]) == (0, 1, 0)


def test_latency_is_counted_from_each_request_s_own_cycle(tmp_path, capsys):
    # second read arrives at 1000 to the open row: a hit, nCL + nBL = 20 cycles
    trace = write(tmp_path / "two.csv", "cycle,op,addr", "0,R,0x0", "1000,R,0x40")
    d = run_json(capsys, "trace", "run", trace, "--hw", "ddr4-2400.yaml")
    lat = d["requests"]["latency_cycles"]
    assert (lat["max"], lat["mean"]) == (36, 28.0)
    assert d["cycles"] == 1020
    assert (d["row_hits"], d["row_misses"], d["row_conflicts"]) == (1, 1, 0)


def test_stream_read_one_outstanding_matches_closed_form(capsys):
    """16384 reads of consecutive 64 B lines, one in flight at a time, refresh off.

    Mapping row|bank|bankgroup|column|offset: 128 lines per row, 16 banks per row stripe, 8 stripes.
    Stripe 0 opens each bank (16 misses), stripes 1-7 switch rows (112 conflicts), the rest hit.
    Each request waits for the previous one's data: hit nCL+nBL = 20, miss nRCD+20 = 36,
    conflict nRP+nRCD+20 = 52 (nRAS, nRTP and nRC are long satisfied).
    """
    d = run_json(capsys, "trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml",
                 "--max-outstanding", "1", "--set", "dram.refresh.enabled=false")
    hits, misses, conflicts = 16384 - 16 - 112, 16, 112
    assert (d["row_hits"], d["row_misses"], d["row_conflicts"]) == (hits, misses, conflicts)
    assert d["commands"] == {"ACT": 128, "PRE": 112, "RD": 16384}
    assert d["cycles"] == hits * 20 + misses * 36 + conflicts * 52 == 331520
    req = d["requests"]
    assert req["count"] == req["reads"] == 16384 and req["writes"] == 0 and req["max_outstanding"] == 1
    # every request arrives at cycle 0, so the last one's latency is the whole run
    assert req["latency_cycles"]["max"] == d["cycles"]
    assert d["bytes_read"] == 16384 * 64


def test_stream_read_one_outstanding_with_refresh(capsys):
    d = run_json(capsys, "trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml", "--max-outstanding", "1")
    req = d["requests"]
    assert req["count"] == 16384 and req["max_outstanding"] == 1
    assert req["latency_cycles"]["max"] == d["cycles"]  # all arrive at cycle 0
    assert d["cycles"] > 331520  # refresh costs time
    assert d["commands"]["RD"] == 16384
    # one all-bank refresh per nREFI of simulated time
    assert d["commands"]["REF"] == d["cycles"] // 9364
    assert d["row_hits"] + d["row_misses"] + d["row_conflicts"] == 16384


def test_stream_read_unlimited_outstanding_is_faster(capsys):
    one = run_json(capsys, "trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml", "--max-outstanding", "1")
    many = run_json(capsys, "trace", "run", "stream-read.csv", "--hw", "ddr4-2400.yaml")
    assert many["requests"]["max_outstanding"] is None
    assert many["cycles"] < one["cycles"]
    # the data bus bounds it: 16384 bursts of nBL = 4 cycles
    assert many["cycles"] >= 16384 * 4
    assert many["bandwidth_GBps"] <= many["peak_bandwidth_GBps"] * (1 + 1e-9)
