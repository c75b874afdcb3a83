"""Reading and writing trace files.

Two kinds of CSV trace, told apart by their header:

- a *command trace*: ``channel,command,bankgroup,bank,row,column``, optionally with a leading ``cycle``
  column giving each command's earliest issue cycle. Fields a command does not use may be left empty
  (``PREA`` needs no bank or row; ``RD`` needs no row, but if a row is given it must be the open one).
- a *request trace*: ``cycle,op,addr``; op is ``R`` or ``W``, addr decimal or ``0x`` hex.

Lines starting with ``#`` and blank lines are ignored. Every malformed line is reported, by number.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level
from pimsim.errors import TraceError

COMMAND_HEADER = ["channel", "command", "bankgroup", "bank", "row", "column"]
REQUEST_HEADER = ["cycle", "op", "addr"]
MAX_LISTED = 20


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


def _rows(path: Path):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TraceError(f"{path}: line {line}: not UTF-8 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for fields in reader:
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            yield reader.line_num, [f.strip() for f in fields]
    except csv.Error as exc:
        raise TraceError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None


def trace_kind(path: Path) -> str:
    for _, fields in _rows(path):
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


def read_request_trace(path: str | Path, capacity_bytes: int) -> RequestTrace:
    path = Path(path)
    rows_iter = _rows(path)
    header_line = next(rows_iter, None)
    if header_line is None or [f.lower() for f in header_line[1]] != REQUEST_HEADER:
        raise TraceError(f"{path}: expected header {','.join(REQUEST_HEADER)}")
    problems: list[str] = []
    cycles, writes, addrs, lines = [], [], [], []
    for lineno, fields in rows_iter:
        if len(fields) != 3:
            problems.append(f"line {lineno}: expected 3 fields (cycle,op,addr), got {len(fields)}")
            continue
        cycle = _int(fields[0], "cycle", problems, lineno, 0, 1 << 60)
        op = fields[1].upper()
        if op not in ("R", "W"):
            problems.append(f"line {lineno}: op {fields[1]!r} is neither R nor W")
        addr = _int(fields[2], "address", problems, lineno, 0, capacity_bytes)
        if cycles and cycle >= 0 and cycle < cycles[-1]:
            problems.append(f"line {lineno}: cycle {cycle} is earlier than the line before ({cycles[-1]})")
        cycles.append(cycle)
        writes.append(op == "W")
        addrs.append(addr)
        lines.append(lineno)
    _raise(path, problems)
    if not cycles:
        raise TraceError(f"{path}: no requests after the header")
    return RequestTrace(line=np.asarray(lines, np.int64), cycle=np.asarray(cycles, np.int64),
                        is_write=np.asarray(writes, np.bool_), addr=np.asarray(addrs, np.int64))


def write_command_trace(path: str | Path, compiled: Compiled, rec: np.ndarray, with_cycles: bool = True) -> None:
    """Write issued commands (the kernel's record) as a command trace with a cycle column."""
    names = compiled.command_names
    with Path(path).open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow((["cycle"] if with_cycles else []) + COMMAND_HEADER)
        for cycle, cmd, node, row, col, _src in rec.tolist():
            ch = int(compiled.channel_of(node) - compiled.level_base[Level.CHANNEL])
            bg = bank = ""
            if compiled.node_level(node) == Level.BANK:
                _, _, bg, bank = compiled.bank_address(node)
            fields = [ch, names[cmd], bg, bank, "" if row < 0 else row, "" if col < 0 else col]
            w.writerow(([cycle] if with_cycles else []) + fields)


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
