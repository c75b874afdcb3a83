"""Reading and writing trace files.

Two kinds of CSV trace, told apart by their header:

- a *command trace*: ``channel,command,bankgroup,bank,row,column``, optionally with a leading ``cycle``
  column giving each command's earliest issue cycle. Fields a command does not use may be left empty
  (``PREA`` needs no bank or row; ``RD`` needs no row, but if a row is given it must be the open one).
- a *request trace*: ``cycle,op,addr``; op is ``R`` or ``W``, addr decimal or ``0x`` hex.

Lines starting with ``#`` and blank lines are ignored. Every malformed line is reported, by number.

The same columns in a Parquet file (told apart by its magic bytes) suit very large traces. Request traces of
other simulators are read unchanged with ``fmt``: ``dramsim3`` (``<hex address> <op> <cycle>`` per line) and
``ramulator2`` (Ramulator 2's LoadStoreTrace: ``LD|ST <address>`` per line).

Reading is two-pass: a well-formed file is read by a fast pass (command CSV: the compiled scanner in
:mod:`pimsim.trace.scan`; request CSV, other simulators' traces and Parquet: pyarrow, block by block, in
:mod:`pimsim.trace.columnar`); a CSV file the fast pass cannot read exactly (a bad line, a hex cycle) is
re-read line by line here, which names every problem by line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level
from pimsim.errors import TraceError

COMMAND_HEADER = ["channel", "command", "bankgroup", "bank", "row", "column"]
REQUEST_HEADER = ["cycle", "op", "addr"]
MAX_LISTED = 20
TRACE_FORMATS = ("pimsim", "ramulator2", "dramsim3")
# DRAMsim3 reads `<hex address> <op> <decimal cycle>` (src/common.cc, operator>> of a Transaction: the address
# through std::hex, so a 0x prefix is optional) and takes these ops for writes; it takes any other op for a
# read, pimsim only these reads (anything else is reported):
DRAMSIM3_WRITES = ("WRITE", "write", "P_MEM_WR", "BOFF")
DRAMSIM3_READS = ("READ", "read", "P_MEM_RD")
# Ramulator 2's LoadStoreTrace frontend (src/frontend/impl/memory_trace/loadstore_trace.cpp) reads
# `LD <address>` or `ST <address>`, the address hex with a 0x or 0X prefix, else decimal; it has no timing
RAMULATOR2_OPS = {"LD": False, "ST": True}
_HEX = re.compile(r"(0[xX])?[0-9a-fA-F]+")
_HEX_OR_DECIMAL = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_DECIMAL = re.compile(r"[0-9]+")


@dataclass
class CommandTrace:
    line: np.ndarray  # file line number of each command (or position, for generated traces)
    cycle: np.ndarray  # earliest issue cycle (0 if the trace has no cycle column)
    has_cycles: bool
    cmd: np.ndarray
    node: np.ndarray  # scope node of each command in the compiled hierarchy
    row: np.ndarray  # -1 where not given
    column: np.ndarray  # -1 where not given
    source: str = "<generated>"  # file it was read from, for messages

    def __len__(self) -> int:
        return len(self.cmd)


@dataclass
class RequestTrace:
    line: np.ndarray
    cycle: np.ndarray
    is_write: np.ndarray
    addr: np.ndarray

    def __len__(self) -> int:
        return len(self.cycle)


@dataclass(frozen=True)
class Head:
    """Where a CSV trace's header is."""

    line: int  # its line number (1-based)
    fields: list[str]  # stripped
    offset: int  # byte offset of the line after it


def read_head(path: Path) -> Head | None:
    """The header line, found as the line reader finds it (blank and ``#`` lines skipped), reading only up to
    it; None where that reader must say what is wrong (no header, a quote, not UTF-8)."""
    try:
        handle = path.open("rb")
    except OSError:
        return None
    with handle:
        line = 0
        while True:
            raw = handle.readline()
            if not raw:
                return None
            line += 1
            if b'"' in raw or b"\x00" in raw or b"\r" in raw.rstrip(b"\r\n"):
                return None
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                return None
            fields = [f.strip() for f in text.split(",")]
            if not "".join(fields) or fields[0].startswith("#"):
                continue
            return Head(line, fields, handle.tell())


def is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _read_text(path: Path) -> str:
    """The whole file as text; one message naming the line of the first byte that is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TraceError(f"{path}: line {line}: not UTF-8 text ({exc.reason})") from None


def _rows(path: Path):
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for fields in reader:
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            yield reader.line_num, [f.strip() for f in fields]
    except csv.Error as exc:
        raise TraceError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None


def trace_kind(path: Path, fmt: str = "pimsim") -> str:
    """"commands" or "requests"; raises TraceError for a file that is neither."""
    if fmt != "pimsim":
        return "requests"  # the other simulators' traces are memory requests
    if is_parquet(path):
        from pimsim.trace.columnar import parquet_kind

        return parquet_kind(path)
    head = read_head(path)
    for _, fields in ([(head.line, head.fields)] if head is not None else _rows(path)):
        header = [f.lower() for f in fields]
        if header == REQUEST_HEADER:
            return "requests"
        if header in (COMMAND_HEADER, ["cycle"] + COMMAND_HEADER):
            return "commands"
        raise TraceError(
            f"{path}: unrecognised header {','.join(fields)!r}; expected "
            f"{','.join(COMMAND_HEADER)!r} (optionally with a leading 'cycle') or {','.join(REQUEST_HEADER)!r}")
    raise TraceError(f"{path}: empty trace (no header)")


def _int(text: str, what: str, problems: list, lineno: int, lo: int, hi: int | None) -> int:
    try:
        value = int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        problems.append(f"line {lineno}: {what} {text!r} is not an integer")
        return -1
    if value < lo or (hi is not None and value >= hi):
        rng = f"{lo}..{hi - 1}" if hi is not None else f">= {lo}"
        problems.append(f"line {lineno}: {what} {value} is out of range ({rng})")
        return -1
    return value


def _raise(path: Path, problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise TraceError(f"{path}: {len(problems)} problem(s)\n  " + "\n  ".join(shown) + more)


def read_command_trace(path: str | Path, compiled: Compiled) -> CommandTrace:
    """A command trace (CSV or Parquet). The CSV's line numbers go with the commands, for messages."""
    path = Path(path)
    if is_parquet(path):
        from pimsim.trace.columnar import read_command_parquet

        return read_command_parquet(path, compiled)
    head = read_head(path)
    header = [f.lower() for f in head.fields] if head is not None else []
    has_cycles = header[:1] == ["cycle"]
    if header[has_cycles:] == COMMAND_HEADER:
        from pimsim.trace.scan import scan_command_csv

        arrays = scan_command_csv(path, compiled, head.line, head.offset, has_cycles)
        if arrays is not None:
            line, cycle, cmd, node, row, column = arrays
            return CommandTrace(line=line, cycle=cycle, has_cycles=has_cycles, cmd=cmd, node=node, row=row,
                                column=column, source=str(path))
    return read_command_trace_by_line(path, compiled)


def read_request_trace(path: str | Path, capacity_bytes: int, fmt: str = "pimsim") -> RequestTrace:
    """A request trace: pimsim's CSV or Parquet, or a DRAMsim3 or Ramulator 2 trace (`fmt`)."""
    path = Path(path)
    if fmt not in TRACE_FORMATS:
        raise TraceError(f"unknown trace format {fmt!r} (known: {', '.join(TRACE_FORMATS)})")
    from pimsim.trace import columnar

    if fmt != "pimsim":
        try:
            return columnar.read_foreign_requests(path, fmt, capacity_bytes)
        except columnar.NotFast:
            return read_foreign_trace_by_line(path, fmt, capacity_bytes)
    if is_parquet(path):
        return columnar.read_request_parquet(path, capacity_bytes)
    head = read_head(path)
    if head is not None:
        try:
            return columnar.read_request_csv(path, capacity_bytes, head)
        except columnar.NotFast:
            pass
    return read_request_trace_by_line(path, capacity_bytes)


def read_command_trace_by_line(path: str | Path, compiled: Compiled) -> CommandTrace:
    """The line-by-line reader: every problem of every line, by line number (slow: Python per field)."""
    path = Path(path)
    org = compiled.hw.dram.organization
    names = {n.upper(): i for i, n in enumerate(compiled.command_names)}
    std = compiled.standard
    rows_iter = _rows(path)
    header_line = next(rows_iter, None)
    if header_line is None:
        raise TraceError(f"{path}: empty trace (no header)")
    header = [f.lower() for f in header_line[1]]
    has_cycles = header[0] == "cycle"
    if header[has_cycles:] != COMMAND_HEADER:
        raise TraceError(f"{path}: line {header_line[0]}: expected header "
                         f"{'cycle,' if has_cycles else ''}{','.join(COMMAND_HEADER)}")
    width = len(header)
    problems: list[str] = []
    out = {k: [] for k in ("line", "cycle", "cmd", "node", "row", "column")}
    for lineno, fields in rows_iter:
        if len(fields) != width:
            problems.append(f"line {lineno}: expected {width} fields, got {len(fields)}")
            continue
        cycle = _int(fields[0], "cycle", problems, lineno, 0, 1 << 60) if has_cycles else 0
        f = fields[has_cycles:]
        name = f[1].upper()
        if name not in names:
            problems.append(f"line {lineno}: unknown command {f[1]!r} for {std.name} "
                            f"(known: {', '.join(std.command_names)})")
            continue
        command = std.command(std.command_names[names[name]])
        channel = _int(f[0], "channel", problems, lineno, 0, org.channels)

        def opt(text, what, hi, required):
            if not text:
                if required:
                    problems.append(f"line {lineno}: {command.name} needs a {what}")
                return -1
            return _int(text, what, problems, lineno, 0, hi)

        at_bank = command.scope == Level.BANK
        bg = opt(f[2], "bankgroup", org.bankgroups, at_bank)
        bank = opt(f[3], "bank", org.banks_per_group, at_bank)
        row = opt(f[4], "row", org.rows, command.effect == Effect.OPEN)
        column = opt(f[5], "column", org.columns, False)
        if channel < 0 or (at_bank and (bg < 0 or bank < 0)):
            continue
        if command.scope == Level.BANK:
            node = compiled.bank_node(channel, 0, bg, bank)
        elif command.scope == Level.RANK:
            node = compiled.rank_node(channel)
        else:
            node = compiled.channel_node(channel)
        for key, value in (("line", lineno), ("cycle", cycle), ("cmd", names[name]), ("node", node),
                           ("row", row), ("column", column)):
            out[key].append(value)
    _raise(path, problems)
    if not out["cmd"]:
        raise TraceError(f"{path}: no commands after the header")
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
    return CommandTrace(has_cycles=has_cycles, source=str(path), **arr)


def read_request_trace_by_line(path: str | Path, capacity_bytes: int) -> RequestTrace:
    """The line-by-line reader of a request trace (see :func:`read_command_trace_by_line`)."""
    path = Path(path)
    rows_iter = _rows(path)
    header_line = next(rows_iter, None)
    if header_line is None or [f.lower() for f in header_line[1]] != REQUEST_HEADER:
        raise TraceError(f"{path}: expected header {','.join(REQUEST_HEADER)}")
    problems: list[str] = []
    requests = _RequestLines(problems)
    for lineno, fields in rows_iter:
        if len(fields) != 3:
            problems.append(f"line {lineno}: expected 3 fields (cycle,op,addr), got {len(fields)}")
            continue
        cycle = _int(fields[0], "cycle", problems, lineno, 0, 1 << 60)
        op = fields[1].upper()
        if op not in ("R", "W"):
            problems.append(f"line {lineno}: op {fields[1]!r} is neither R nor W")
        addr = _int(fields[2], "address", problems, lineno, 0, capacity_bytes)
        requests.add(lineno, cycle, op == "W", addr)
    return requests.trace(path, "no requests after the header")


class _RequestLines:
    """Requests as a line reader collects them: each checked against the one before (cycles never go
    back), then the arrays of a RequestTrace, or every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        self.cycles: list[int] = []
        self.writes: list[bool] = []
        self.addrs: list[int] = []
        self.lines: list[int] = []

    def __len__(self) -> int:
        return len(self.cycles)

    def add(self, lineno: int, cycle: int, is_write: bool, addr: int) -> None:
        if self.cycles and cycle >= 0 and cycle < self.cycles[-1]:
            self.problems.append(f"line {lineno}: cycle {cycle} is earlier than the line before ({self.cycles[-1]})")
        self.cycles.append(cycle)
        self.writes.append(is_write)
        self.addrs.append(addr)
        self.lines.append(lineno)

    def trace(self, path: Path, empty: str) -> RequestTrace:
        _raise(path, self.problems)
        if not self.cycles:
            raise TraceError(f"{path}: {empty}")
        return RequestTrace(line=np.asarray(self.lines, np.int64), cycle=np.asarray(self.cycles, np.int64),
                            is_write=np.asarray(self.writes, np.bool_), addr=np.asarray(self.addrs, np.int64))


def _text_lines(path: Path):
    text = _read_text(path)
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if tokens and not tokens[0].startswith("#"):
            yield lineno, tokens


def read_foreign_trace_by_line(path: str | Path, fmt: str, capacity_bytes: int) -> RequestTrace:
    """A DRAMsim3 or Ramulator 2 request trace, line by line (fields split by any white space)."""
    path = Path(path)
    problems: list[str] = []
    requests = _RequestLines(problems)
    if fmt == "dramsim3":
        layout = "address op cycle"
        ops = {**dict.fromkeys(DRAMSIM3_WRITES, True), **dict.fromkeys(DRAMSIM3_READS, False)}
    else:
        layout, ops = "op address", RAMULATOR2_OPS
    width = len(layout.split())
    for lineno, tokens in _text_lines(path):
        if len(tokens) != width:
            problems.append(f"line {lineno}: expected {width} fields ({layout}), got {len(tokens)}")
            continue
        if fmt == "dramsim3":
            addr_text, op, cycle_text = tokens
            if not _HEX.fullmatch(addr_text):
                problems.append(f"line {lineno}: address {addr_text!r} is not a hex number")
                addr = -1
            else:
                addr = int(addr_text, 16)
            if not _DECIMAL.fullmatch(cycle_text):
                problems.append(f"line {lineno}: cycle {cycle_text!r} is not a decimal integer")
                cycle = -1
            else:
                cycle = int(cycle_text)
        else:
            op, addr_text = tokens
            cycle = len(requests)  # no timing in the file: one request offered per cycle, as the frontend does
            if not _HEX_OR_DECIMAL.fullmatch(addr_text):
                problems.append(f"line {lineno}: address {addr_text!r} is neither 0x-prefixed hex nor decimal")
                addr = -1
            else:
                addr = int(addr_text, 0) if addr_text[:2].lower() == "0x" else int(addr_text)
        if op not in ops:
            problems.append(f"line {lineno}: op {op!r} is not one of {', '.join(ops)}")
        if addr >= capacity_bytes:
            problems.append(f"line {lineno}: address {addr} is out of range (0..{capacity_bytes - 1})")
        if cycle >= 1 << 60:
            problems.append(f"line {lineno}: cycle {cycle} is out of range (0..{(1 << 60) - 1})")
        requests.add(lineno, cycle, ops.get(op, False), addr)
    return requests.trace(path, f"no requests in the {fmt} trace")


def write_command_trace(path: str | Path, compiled: Compiled, rec: np.ndarray, with_cycles: bool = True) -> None:
    """Write issued commands (the kernel's record) as a command trace with a cycle column: CSV, or Parquet
    for a path ending in ``.parquet``."""
    rec = np.asarray(rec, np.int64).reshape(-1, 6)
    if str(path).lower().endswith(".parquet"):
        from pimsim.trace import columnar

        columnar.write_table_parquet(path, columnar.issued_table(compiled, rec, with_cycles))
        return
    from pimsim.trace.scan import write_command_csv

    org = compiled.hw.dram.organization
    node = rec[:, 2]
    at_bank = compiled.node_level(node) == Level.BANK
    idx = node - compiled.level_base[Level.BANK]
    columns = {"cycle": rec[:, 0], "cmd": rec[:, 1], "row": rec[:, 3], "column": rec[:, 4],
               "channel": compiled.channel_of(node) - compiled.level_base[Level.CHANNEL],
               "bank": np.where(at_bank, idx % org.banks_per_group, -1),
               "bankgroup": np.where(at_bank, (idx // org.banks_per_group) % org.bankgroups, -1)}
    write_command_csv(path, compiled, columns, with_cycles)


def write_commands(path: str | Path, compiled: Compiled, trace: CommandTrace) -> None:
    """Write a command trace (with a cycle column only if the trace has one)."""
    rec = np.stack([trace.cycle, trace.cmd, trace.node, trace.row, trace.column,
                    np.arange(len(trace))], axis=1)
    write_command_trace(path, compiled, rec, with_cycles=trace.has_cycles)


def write_requests(path: str | Path, trace: RequestTrace) -> None:
    with Path(path).open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(REQUEST_HEADER)
        for cycle, is_write, addr in zip(trace.cycle.tolist(), trace.is_write.tolist(), trace.addr.tolist()):
            w.writerow([cycle, "W" if is_write else "R", hex(addr)])
