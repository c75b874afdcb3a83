"""Trace files: the fast readers agree with the line-by-line readers field for field (line numbers included),
a file the fast pass cannot read goes to the line reader, Parquet round trips, DRAMsim3 and Ramulator 2
traces are read as those simulators read them, and the writer's bytes are csv.writer's."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.dram.simulate import run_command_trace, run_request_trace
from pimsim.errors import TraceError
from pimsim.trace import files
from pimsim.trace.generate import pim_row_sweep

DDR4_HEADER = "cycle,channel,command,bankgroup,bank,row,column"
COMMAND_FIELDS = ("line", "cycle", "cmd", "node", "row", "column")


@pytest.fixture(scope="module")
def ddr4():
    return compile_standard(load_hardware("ddr4-2400.yaml"))


@pytest.fixture(scope="module")
def aim():
    return compile_standard(load_hardware("gddr6-aim.yaml"))


def _write(path, *lines, newline="\n"):
    path.write_text(newline.join(lines) + newline)
    return path


def _same_commands(a, b):
    assert a.has_cycles == b.has_cycles and a.source == b.source
    for key in COMMAND_FIELDS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype == np.int64, key
        assert np.array_equal(x, y), key


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_the_fast_command_reader_matches_the_line_reader(tmp_path, ddr4, newline):
    # lower-case names, empty fields, a comment and blank lines before the header, a trailing comma-only line
    path = _write(tmp_path / "t.csv", "# made by hand", "", DDR4_HEADER, "0,0,act,0,1,5,", "16,0,RD,0,1,,0",
                  "40,0,RD,0,1,5,8", "60,0,PRE,0,1,,", "200,0,REF,,,,", ",,,,,,", newline=newline)
    fast = files.read_command_trace(path, ddr4)
    _same_commands(fast, files.read_command_trace_by_line(path, ddr4))
    assert fast.line.tolist() == [4, 5, 6, 7, 8]  # the line numbers the kernel's messages name


def test_comments_inside_the_data_keep_line_numbers(tmp_path, ddr4):
    path = _write(tmp_path / "t.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "# a note", "", "16,0,RD,0,0,5,0")
    fast = files.read_command_trace(path, ddr4)
    assert fast.line.tolist() == [2, 5]
    _same_commands(fast, files.read_command_trace_by_line(path, ddr4))


@pytest.mark.parametrize("row", ["0x10,0,ACT,0,0,5,", " 16,0,ACT,0,0,5,", "16,0,ACT,0,0,+5,", '16,0,"ACT",0,0,5,'])
def test_what_the_scanner_does_not_read_the_line_reader_does(tmp_path, ddr4, row):
    """Hex numbers, spaces, signs and quotes are legal for Python's int() and csv: the scanner hands over."""
    path = _write(tmp_path / "t.csv", DDR4_HEADER, row)
    trace = files.read_command_trace(path, ddr4)
    _same_commands(trace, files.read_command_trace_by_line(path, ddr4))


def test_the_bundled_and_a_generated_trace_read_the_same_both_ways(tmp_path, aim):
    path = files.Path(files.__file__).parents[2] / "workloads" / "gemv-2048x1024-aim.csv"
    _same_commands(files.read_command_trace(path, aim), files.read_command_trace_by_line(path, aim))
    sweep = pim_row_sweep(aim, rows=3, macs_per_row=5, with_io=True)
    files.write_commands(tmp_path / "g.csv", aim, sweep)
    back = files.read_command_trace(tmp_path / "g.csv", aim)
    for key in ("cmd", "node", "row", "column"):
        assert np.array_equal(getattr(back, key), getattr(sweep, key))


def test_the_writer_writes_what_csv_writer_wrote(tmp_path, aim):
    sweep = pim_row_sweep(aim, rows=2, macs_per_row=3, with_io=True)
    result = run_command_trace(aim, sweep, record=True)
    files.write_command_trace(tmp_path / "out.csv", aim, result.record)
    expected = io.StringIO(newline="")
    w = csv.writer(expected)
    w.writerow(["cycle"] + files.COMMAND_HEADER)
    for cycle, cmd, node, row, col, _ in result.record.tolist():
        ch = int(aim.channel_of(node) - aim.level_base[0])
        bg = bank = ""
        if aim.node_level(node) == 3:
            _, _, bg, bank = aim.bank_address(node)
        w.writerow([cycle, ch, aim.command_names[cmd], bg, bank, "" if row < 0 else row, "" if col < 0 else col])
    assert (tmp_path / "out.csv").read_bytes() == expected.getvalue().encode()


def test_parquet_round_trip_gives_the_same_commands_and_result(tmp_path, aim):
    sweep = pim_row_sweep(aim, rows=4, macs_per_row=8)
    result = run_command_trace(aim, sweep, record=True)
    files.write_command_trace(tmp_path / "out.parquet", aim, result.record)
    files.write_command_trace(tmp_path / "out.csv", aim, result.record)
    assert files.trace_kind(tmp_path / "out.parquet") == "commands"
    from_parquet = files.read_command_trace(tmp_path / "out.parquet", aim)
    from_csv = files.read_command_trace(tmp_path / "out.csv", aim)
    for key in ("cycle", "cmd", "node", "row", "column"):
        assert np.array_equal(getattr(from_parquet, key), getattr(from_csv, key)), key
    again = run_command_trace(aim, from_parquet)
    assert again.summary()["cycles"] == result.summary()["cycles"]


def test_a_bad_parquet_trace_names_each_bad_row(tmp_path, ddr4):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"cycle": [0, 16, 20], "channel": [0, 3, 0], "command": ["ACT", "RD", "FOO"],
                      "bankgroup": [0, 0, 0], "bank": [0, 0, 0], "row": [5, None, None], "column": [None, 0, 0]})
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(TraceError) as info:
        files.read_command_trace(tmp_path / "bad.parquet", ddr4)
    text = str(info.value)
    assert "2 problem(s)" in text
    assert "row 2: channel 3 is out of range (0..0)" in text and "row 3: unknown command 'FOO'" in text


def test_request_traces_read_the_same_both_ways(tmp_path, ddr4):
    cap = ddr4.hw.dram.organization.capacity_bytes
    path = _write(tmp_path / "r.csv", "cycle,op,addr", "0,R,0x40", "3,w,128", "3,R,0X1f00", "9,W,007")
    fast = files.read_request_trace(path, cap)
    slow = files.read_request_trace_by_line(path, cap)
    for key in ("line", "cycle", "is_write", "addr"):
        assert np.array_equal(getattr(fast, key), getattr(slow, key)), key
    assert fast.addr.tolist() == [0x40, 128, 0x1F00, 7] and fast.is_write.tolist() == [False, True, False, True]


DRAMSIM3 = ["0x40 READ 0", "80 WRITE 4", "0x1000 P_MEM_WR 4", "0x2000 read 100"]
RAMULATOR2 = ["LD 0x40", "ST 128", "LD 0X1000"]


@pytest.mark.parametrize("fmt, lines, addr, writes, cycles", [
    ("dramsim3", DRAMSIM3, [0x40, 0x80, 0x1000, 0x2000], [False, True, True, False], [0, 4, 4, 100]),
    ("ramulator2", RAMULATOR2, [0x40, 128, 0x1000], [False, True, False], [0, 1, 2]),
])
def test_other_simulators_traces(tmp_path, ddr4, fmt, lines, addr, writes, cycles):
    """DRAMsim3: hex address (0x optional), op, decimal cycle; Ramulator 2 LoadStoreTrace: LD/ST, 0x-hex or
    decimal address, one request offered per cycle. The fast pass and the line reader agree."""
    cap = ddr4.hw.dram.organization.capacity_bytes
    path = _write(tmp_path / "t.trace", *lines)
    for trace in (files.read_request_trace(path, cap, fmt), files.read_foreign_trace_by_line(path, fmt, cap)):
        assert trace.addr.tolist() == addr and trace.is_write.tolist() == writes and trace.cycle.tolist() == cycles
        assert trace.line.tolist() == list(range(1, len(lines) + 1))
    assert run_request_trace(ddr4, files.read_request_trace(path, cap, fmt)).requests["count"] == len(lines)


@pytest.mark.parametrize("fmt, lines, message", [
    ("dramsim3", ["0x40 READ 0", "0x80 FETCH 1"], "line 2: op 'FETCH' is not one of"),
    ("dramsim3", ["0x40 READ 5", "0x80 READ 1"], "line 2: cycle 1 is earlier than the line before (5)"),
    ("dramsim3", ["0xZZ READ 0"], "line 1: address '0xZZ' is not a hex number"),
    ("dramsim3", ["0x40 READ"], "line 1: expected 3 fields (address op cycle), got 2"),
    ("ramulator2", ["LD 0x40", "XX 0x80"], "line 2: op 'XX' is not one of LD, ST"),
    ("ramulator2", ["LD 12ab"], "line 1: address '12ab' is neither 0x-prefixed hex nor decimal"),
    ("ramulator2", ["LD 0x40", "", "ST 0x1000000000000"], "line 3: address 281474976710656 is out of range"),
])
def test_bad_lines_of_other_simulators_traces_are_named(tmp_path, ddr4, fmt, lines, message):
    path = _write(tmp_path / "bad.trace", *lines)
    with pytest.raises(TraceError) as info:
        files.read_request_trace(path, ddr4.hw.dram.organization.capacity_bytes, fmt)
    assert message in str(info.value)


def test_the_cli_reads_a_dramsim3_trace_and_emits_parquet(tmp_path, capsys):
    import json

    from pimsim.cli import main

    path = _write(tmp_path / "t.trace", *DRAMSIM3)
    assert main(["trace", "run", str(path), "--hw", "ddr4-2400.yaml", "--format", "dramsim3", "--json", "-",
                 "--emit-commands", str(tmp_path / "out.parquet")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input"]["format"] == "dramsim3" and out["input"]["entries"] == 4
    assert out["commands"]["RD"] == 2 and out["commands"]["WR"] == 2
    assert main(["trace", "check", str(tmp_path / "out.parquet"), "--hw", "ddr4-2400.yaml"]) == 0
    assert "no protocol violations" in capsys.readouterr().out


@pytest.mark.parametrize("comment", [b'# he said "hi', b"# caf\xe9", b"# a\x00b", b"# a\rb"])
def test_a_comment_the_csv_module_reads_otherwise_goes_to_the_line_reader(tmp_path, ddr4, comment):
    """A quote, a byte that is not UTF-8, a NUL or a lone CR in a comment: the scanner does not skip it
    on its own, so the file means (or fails with) exactly what the line reader says."""
    path = tmp_path / "t.csv"
    path.write_bytes(DDR4_HEADER.encode() + b"\n0,0,ACT,0,0,5,\n" + comment + b"\n16,0,RD,0,0,5,0\n")
    try:
        expected = files.read_command_trace_by_line(path, ddr4)
    except TraceError as exc:
        with pytest.raises(TraceError) as info:
            files.read_command_trace(path, ddr4)
        assert str(info.value) == str(exc)
    else:
        _same_commands(files.read_command_trace(path, ddr4), expected)


def test_when_memory_is_refused_the_scanner_counts_lines_or_says_the_trace_is_too_large(tmp_path, ddr4, monkeypatch):
    from pimsim.trace import scan

    path = _write(tmp_path / "t.csv", DDR4_HEADER, "0,0,ACT,0,0,5,", "16,0,RD,0,0,5,0")
    real, calls = np.empty, []

    def first_refused(n, dtype):
        calls.append(n)
        if len(calls) == 1:
            raise MemoryError
        return real(n, dtype)

    monkeypatch.setattr(scan.np, "empty", first_refused)
    _same_commands(files.read_command_trace(path, ddr4), files.read_command_trace_by_line(path, ddr4))
    assert calls[1] == 3  # the exact count: two lines after the header, plus one

    def always_refused(n, dtype):
        raise MemoryError

    monkeypatch.setattr(scan.np, "empty", always_refused)
    with pytest.raises(TraceError, match="GiB of memory once decoded"):
        files.read_command_trace(path, ddr4)
