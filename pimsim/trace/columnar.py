"""Vectorised trace reading with pyarrow: request traces (pimsim's CSV, DRAMsim3, Ramulator 2), Parquet traces,
and writing command traces as Parquet. pyarrow parses a block of text (or a batch of a Parquet file) at a time, numpy
checks and converts whole columns, and a name is looked up once per distinct name, not once per line.

A CSV file is read here only if it reads exactly as the line-by-line readers in :mod:`pimsim.trace.files`
read it: every line one row (no comment or blank line, no quoted line break), every number plain, every value
in range. Anything else makes the fast pass give up (:class:`NotFast`) and the caller re-reads the file line
by line, which names every problem by line; so the two readers never disagree on what a file means. Parquet
has no line reader: its problems are named here, by row.

Memory: one block of text (``BLOCK_BYTES``) at a time plus the decoded columns (8 bytes per field per command),
never the whole file's text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level
from pimsim.trace.files import (
    COMMAND_HEADER,
    DRAMSIM3_READS,
    DRAMSIM3_WRITES,
    RAMULATOR2_OPS,
    REQUEST_HEADER,
    CommandTrace,
    Head,
    RequestTrace,
)

BLOCK_BYTES = 1 << 24  # text parsed per block
PARQUET_BATCH_ROWS = 1 << 20
MAX_LISTED = 20
CYCLE_LIMIT = 1 << 60


class NotFast(Exception):
    """The file needs the line-by-line reader (it may still be a valid trace)."""


def _csv_blocks(path: Path, offset: int, columns: dict[str, pa.DataType], delimiter: str = ","):
    """Record batches of the text after `offset`; every line must be one row."""
    read = pacsv.ReadOptions(column_names=list(columns), block_size=BLOCK_BYTES, use_threads=True)
    parse = pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types=columns, null_values=[""], strings_can_be_null=False,
                                   quoted_strings_can_be_null=False, check_utf8=True)
    with path.open("rb") as handle:
        handle.seek(offset)
        try:
            for batch in pacsv.open_csv(handle, read_options=read, parse_options=parse, convert_options=convert):
                yield batch
        except (pa.ArrowException, UnicodeDecodeError, ValueError):
            raise NotFast from None


# ---- checks shared by the CSV and the Parquet reader -----------------------------------------------------

class _Problems:
    """Where a check fails. For CSV the first failure ends the fast pass (the line reader names them all);
    for Parquet, which has no line reader, each failing row is named (row = 1-based position)."""

    def __init__(self, collect: bool):
        self.collect = collect
        self.found: list[tuple[int, str]] = []
        self.total = 0

    def check(self, bad: np.ndarray, first_row: int, message) -> None:
        if not bad.any():
            return
        if not self.collect:
            raise NotFast
        where = np.flatnonzero(bad)
        self.total += len(where)
        for i in where[:MAX_LISTED]:
            self.found.append((first_row + int(i), message(int(i))))

    def raise_if_any(self, path: Path) -> None:
        if self.total:
            from pimsim.errors import TraceError

            shown = [f"row {row}: {text}" for row, text in sorted(self.found)[:MAX_LISTED]]
            more = f"\n  ... and {self.total - len(shown)} more" if self.total > len(shown) else ""
            raise TraceError(f"{path}: {self.total} problem(s)\n  " + "\n  ".join(shown) + more)


def _ints(column: pa.Array, what: str, problems: _Problems, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Values (-1 where empty) and which are given, of an integer column."""
    if not pa.types.is_integer(column.type):
        if pa.types.is_null(column.type):
            column = pa.nulls(len(column), pa.int64())
        else:
            try:
                column = column.cast(pa.int64())
            except (pa.ArrowException, ValueError):
                problems.check(np.ones(len(column), bool), first_row, lambda i: f"{what} is not an integer column")
                return np.full(len(column), -1, np.int64), np.zeros(len(column), bool)
    given = ~column.is_null().to_numpy(zero_copy_only=False)
    values = pc.fill_null(column.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
    return values, given


def _in_range(values, given, what, lo, hi, problems: _Problems, first_row: int) -> None:
    rng = f"{lo}..{hi - 1}" if hi is not None else f">= {lo}"
    bad = given & ((values < lo) | (values >= hi))
    problems.check(bad, first_row, lambda i: f"{what} {values[i]} is out of range ({rng})")


def _lookup(column: pa.Array, table: dict[str, int]) -> tuple[np.ndarray, list, np.ndarray]:
    """Each row's entry in `table` (-1 if absent), looking each distinct text up once (stripped, upper case);
    also the distinct texts and each row's index into them, for messages."""
    if not (pa.types.is_dictionary(column.type) and column.null_count == 0):
        column = pc.dictionary_encode(pc.fill_null(column.cast(pa.string()), ""))
    distinct = column.dictionary.to_pylist()
    lut = np.array([table.get(str(text).strip().upper(), -1) for text in distinct] or [-1], np.int64)
    codes = column.indices.to_numpy(zero_copy_only=False)
    return lut[codes], distinct, codes


class _CommandChecker:
    def __init__(self, compiled: Compiled, has_cycles: bool, problems: _Problems):
        self.c = compiled
        self.org = compiled.hw.dram.organization
        self.std = compiled.standard
        self.has_cycles = has_cycles
        self.problems = problems
        self.ids = {n.upper(): i for i, n in enumerate(compiled.command_names)}
        commands = [self.std.command(n) for n in compiled.command_names]
        self.scope = np.array([int(c.scope) for c in commands], np.int64)
        self.opens = np.array([c.effect == Effect.OPEN for c in commands], bool)

    def batch(self, cols: dict[str, pa.Array], first_row: int) -> dict[str, np.ndarray]:
        org, p = self.org, self.problems
        n = len(cols["command"])
        cmd, names, codes = _lookup(cols["command"], self.ids)
        known = cmd >= 0
        p.check(~known, first_row, lambda i: f"unknown command {names[codes[i]]!r} for {self.std.name} "
                                             f"(known: {', '.join(self.std.command_names)})")
        safe = np.where(known, cmd, 0)
        at_bank = known & (self.scope[safe] == Level.BANK)
        if self.has_cycles:
            cycle, given = _ints(cols["cycle"], "cycle", p, first_row)
            p.check(~given, first_row, lambda i: "cycle is empty")
            _in_range(cycle, given, "cycle", 0, CYCLE_LIMIT, p, first_row)
        else:
            cycle = np.zeros(n, np.int64)
        channel, ch_given = _ints(cols["channel"], "channel", p, first_row)
        p.check(known & ~ch_given, first_row, lambda i: "channel is empty")
        _in_range(channel, ch_given & known, "channel", 0, org.channels, p, first_row)
        fields = {}
        for what, hi, required in (("bankgroup", org.bankgroups, at_bank), ("bank", org.banks_per_group, at_bank),
                                   ("row", org.rows, known & self.opens[safe]), ("column", org.columns, None)):
            values, given = _ints(cols[what], what, p, first_row)
            if required is not None:
                p.check(required & ~given, first_row,
                        lambda i: f"{self.c.command_names[cmd[i]]} needs a {what}")
            _in_range(values, given & known, what, 0, hi, p, first_row)
            fields[what] = values
        scope = self.scope[safe]
        bank_node = self.c.bank_node(channel, 0, fields["bankgroup"], fields["bank"])
        node = np.where(scope == Level.BANK, bank_node,
                        np.where(scope == Level.RANK, self.c.rank_node(channel), self.c.channel_node(channel)))
        return {"cycle": cycle, "cmd": cmd, "node": node.astype(np.int64), "row": fields["row"],
                "column": fields["column"]}


def _joined(parts: list[dict[str, np.ndarray]], keys) -> dict[str, np.ndarray]:
    return {k: (np.concatenate([part[k] for part in parts]) if parts else np.zeros(0, np.int64)) for k in keys}


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    from pimsim.errors import TraceError

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise TraceError(f"{path}: not a readable Parquet file ({exc})") from None
    names = [n.lower() for n in handle.schema_arrow.names]
    return handle, names


def parquet_kind(path: Path) -> str:
    from pimsim.errors import TraceError

    _, names = _open_parquet(path)
    if names == REQUEST_HEADER:
        return "requests"
    if names in (COMMAND_HEADER, ["cycle"] + COMMAND_HEADER):
        return "commands"
    raise TraceError(f"{path}: unrecognised Parquet columns {','.join(names)!r}; expected "
                     f"{','.join(COMMAND_HEADER)!r} (optionally with a leading 'cycle') or "
                     f"{','.join(REQUEST_HEADER)!r}")


def read_command_parquet(path: Path, compiled: Compiled) -> CommandTrace:
    from pimsim.errors import TraceError

    handle, names = _open_parquet(path)
    has_cycles = bool(names) and names[0] == "cycle"
    if names[has_cycles:] != COMMAND_HEADER:
        raise TraceError(f"{path}: expected Parquet columns {'cycle,' if has_cycles else ''}{','.join(COMMAND_HEADER)}")
    problems = _Problems(collect=True)
    checker = _CommandChecker(compiled, has_cycles, problems)
    parts, rows = [], 0
    for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        cols = {name.lower(): batch.column(i) for i, name in enumerate(batch.schema.names)}
        parts.append(checker.batch(cols, rows + 1))
        rows += batch.num_rows
    problems.raise_if_any(path)
    if rows == 0:
        raise TraceError(f"{path}: no commands in the Parquet file")
    out = _joined(parts, ("cycle", "cmd", "node", "row", "column"))
    return CommandTrace(line=np.arange(1, rows + 1, dtype=np.int64), has_cycles=has_cycles, source=str(path), **out)


# ---- request traces ---------------------------------------------------------------------------------------

_DIGIT = np.full(256, 255, np.uint8)
_DIGIT[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_DIGIT[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_DIGIT[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def parse_addresses(column: pa.Array, always_hex: bool = False) -> np.ndarray:
    """Integers from text: hex with a 0x/0X prefix, else decimal (or hex without a prefix, `always_hex`).
    Raises NotFast on anything else (signs, spaces, too many digits): the line reader says what is wrong."""
    column = column.cast(pa.large_string()) if not pa.types.is_large_string(column.type) else column
    if column.null_count:
        raise NotFast
    n = len(column)
    if n == 0:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset:column.offset + n + 1]
    data = np.frombuffer(column.buffers()[2], np.uint8) if column.buffers()[2] is not None else np.zeros(1, np.uint8)
    start, length = offsets[:-1].copy(), np.diff(offsets)
    if (length == 0).any():
        raise NotFast
    second = data[np.minimum(start + 1, len(data) - 1)]
    prefixed = (length > 2) & (data[start] == ord("0")) & ((second == ord("x")) | (second == ord("X")))
    start += 2 * prefixed
    length -= 2 * prefixed
    hexadecimal = prefixed | always_hex
    if (length > np.where(hexadecimal, 15, 18)).any():  # stays inside int64; longer ones go to the line reader
        raise NotFast
    width = int(length.max())
    pos = np.arange(width)
    inside = pos[None, :] < length[:, None]
    digits = _DIGIT[data[np.minimum(start[:, None] + pos[None, :], len(data) - 1)]]
    base = np.where(hexadecimal, 16, 10).astype(np.int64)
    if (inside & (digits >= base[:, None])).any():
        raise NotFast
    value = np.zeros(n, np.int64)
    for k in range(width):
        value = np.where(inside[:, k], value * base + digits[:, k], value)
    return value


def _check_requests(cycle, is_write, addr, capacity_bytes: int, previous_cycle: int) -> None:
    if ((cycle < 0) | (cycle >= CYCLE_LIMIT)).any() or ((addr < 0) | (addr >= capacity_bytes)).any():
        raise NotFast
    if len(cycle) and (cycle[0] < previous_cycle or (np.diff(cycle) < 0).any()):
        raise NotFast


def _ops(column: pa.Array, table: dict[str, bool], strip_upper: bool) -> np.ndarray:
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    distinct = column.dictionary.to_pylist()
    keys = [(t.strip().upper() if strip_upper else t) for t in distinct]
    if any(k not in table for k in keys):
        raise NotFast
    lut = np.array([table[k] for k in keys], bool)
    return lut[column.indices.to_numpy(zero_copy_only=False)]


def read_request_csv(path: Path, capacity_bytes: int, head: Head) -> RequestTrace:
    if [f.lower() for f in head.fields] != REQUEST_HEADER:
        raise NotFast
    columns = {"cycle": pa.int64(), "op": pa.dictionary(pa.int32(), pa.string()), "addr": pa.string()}
    blocks = _RequestBlocks(capacity_bytes)
    for batch in _csv_blocks(path, head.offset, columns):
        if batch.column("cycle").null_count:
            raise NotFast
        cycle = batch.column("cycle").to_numpy(zero_copy_only=False)
        is_write = _ops(batch.column("op"), {"R": False, "W": True}, strip_upper=True)
        blocks.add(cycle, is_write, parse_addresses(batch.column("addr")))
    return blocks.trace(first_line=head.line + 1)


class _RequestBlocks:
    """Blocks of requests as a fast reader decodes them: each checked (ranges, cycles never going back,
    across blocks too; anything else is left to the line reader), then one RequestTrace."""

    def __init__(self, capacity_bytes: int):
        self.capacity_bytes = capacity_bytes
        self.parts: list[dict] = []
        self.rows = 0
        self.last_cycle = 0

    def add(self, cycle, is_write, addr) -> None:
        _check_requests(cycle, is_write, addr, self.capacity_bytes, self.last_cycle)
        if len(cycle):
            self.last_cycle = int(cycle[-1])
        self.parts.append({"cycle": cycle, "is_write": is_write, "addr": addr})
        self.rows += len(cycle)

    def trace(self, first_line: int) -> RequestTrace:
        if self.rows == 0:
            raise NotFast
        return _request_trace(self.parts, np.arange(first_line, first_line + self.rows, dtype=np.int64))


def _request_trace(parts, line) -> RequestTrace:
    return RequestTrace(line=line, cycle=np.concatenate([p["cycle"] for p in parts]).astype(np.int64),
                        is_write=np.concatenate([p["is_write"] for p in parts]).astype(np.bool_),
                        addr=np.concatenate([p["addr"] for p in parts]).astype(np.int64))


def read_foreign_requests(path: Path, fmt: str, capacity_bytes: int) -> RequestTrace:
    """The fast pass over a DRAMsim3 or Ramulator 2 trace: one request per line, fields split by one space."""
    if fmt == "dramsim3":
        columns = {"addr": pa.string(), "op": pa.dictionary(pa.int32(), pa.string()), "cycle": pa.int64()}
        ops = {**{o: True for o in DRAMSIM3_WRITES}, **{o: False for o in DRAMSIM3_READS}}
    else:
        columns = {"op": pa.dictionary(pa.int32(), pa.string()), "addr": pa.string()}
        ops = RAMULATOR2_OPS
    blocks = _RequestBlocks(capacity_bytes)
    for batch in _csv_blocks(path, 0, columns, delimiter=" "):
        is_write = _ops(batch.column("op"), ops, strip_upper=False)
        addr = parse_addresses(batch.column("addr"), always_hex=fmt == "dramsim3")
        if fmt == "dramsim3":
            if batch.column("cycle").null_count:
                raise NotFast
            cycle = batch.column("cycle").to_numpy(zero_copy_only=False)
        else:  # no timing in the file: one request offered per cycle, as the frontend offers one per tick
            cycle = np.arange(blocks.rows, blocks.rows + batch.num_rows, dtype=np.int64)
        blocks.add(cycle, is_write, addr)
    return blocks.trace(first_line=1)


def read_request_parquet(path: Path, capacity_bytes: int) -> RequestTrace:
    from pimsim.errors import TraceError

    handle, names = _open_parquet(path)
    if names != REQUEST_HEADER:
        raise TraceError(f"{path}: expected Parquet columns {','.join(REQUEST_HEADER)}")
    problems = _Problems(collect=True)
    parts, rows, last = [], 0, 0
    for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        cols = {name.lower(): batch.column(i) for i, name in enumerate(batch.schema.names)}
        first = rows + 1
        cycle, given = _ints(cols["cycle"], "cycle", problems, first)
        problems.check(~given, first, lambda i: "cycle is empty")
        _in_range(cycle, given, "cycle", 0, CYCLE_LIMIT, problems, first)
        earlier = np.concatenate([[cycle[0] < last] if len(cycle) else [], np.diff(cycle) < 0]).astype(bool)
        problems.check(earlier, first, lambda i: f"cycle {cycle[i]} is earlier than the row before")
        op_col = cols["op"]
        if pa.types.is_boolean(op_col.type) or pa.types.is_integer(op_col.type):
            problems.check(np.ones(len(cycle), bool), first, lambda i: "op must be text, R or W")
            is_write = np.zeros(len(cycle), bool)
        else:
            code, _, _ = _lookup(op_col, {"R": 0, "W": 1})
            problems.check(code < 0, first, lambda i: "op is neither R nor W")
            is_write = code == 1
        addr, given = _ints(cols["addr"], "address", problems, first)
        problems.check(~given, first, lambda i: "address is empty")
        _in_range(addr, given, "address", 0, capacity_bytes, problems, first)
        last = int(cycle[-1]) if len(cycle) else last
        parts.append({"cycle": cycle, "is_write": is_write, "addr": addr})
        rows += batch.num_rows
    problems.raise_if_any(path)
    if rows == 0:
        raise TraceError(f"{path}: no requests in the Parquet file")
    return _request_trace(parts, np.arange(1, rows + 1, dtype=np.int64))


# ---- writing ----------------------------------------------------------------------------------------------

def issued_table(compiled: Compiled, rec: np.ndarray, with_cycles: bool) -> pa.Table:
    """The kernel's record (cycle, cmd, node, row, column, source) as the columns of a command trace."""
    org = compiled.hw.dram.organization
    node = rec[:, 2]
    channel = compiled.channel_of(node) - compiled.level_base[Level.CHANNEL]
    at_bank = compiled.node_level(node) == Level.BANK
    idx = node - compiled.level_base[Level.BANK]
    bank = idx % org.banks_per_group
    bankgroup = (idx // org.banks_per_group) % org.bankgroups
    names = pa.array(compiled.command_names, pa.string())
    command = pa.DictionaryArray.from_arrays(pa.array(rec[:, 1].astype(np.int32)), names)

    def maybe(values, present):
        return pa.array(values.astype(np.int64), mask=~present)

    cols = {"channel": pa.array(channel.astype(np.int64)), "command": command.cast(pa.string()),
            "bankgroup": maybe(bankgroup, at_bank), "bank": maybe(bank, at_bank),
            "row": maybe(rec[:, 3], rec[:, 3] >= 0), "column": maybe(rec[:, 4], rec[:, 4] >= 0)}
    if with_cycles:
        cols = {"cycle": pa.array(rec[:, 0].astype(np.int64)), **cols}
    return pa.table(cols)


def write_table_parquet(path: str | Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    if "command" in table.column_names:
        i = table.column_names.index("command")
        table = table.set_column(i, "command", pc.dictionary_encode(table.column("command")))
    pq.write_table(table, str(path), compression="zstd")
