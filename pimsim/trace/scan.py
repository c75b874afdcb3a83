"""Command-trace CSV at compiled speed: a scanner that reads it and a formatter that writes it.

The scanner makes one pass over the bytes: the command name matched against the standard's names in place,
every field checked, the scope node computed, no Python object per line.

It accepts only what it can read exactly as the line-by-line reader (:mod:`pimsim.trace.files`) reads it:
plain decimal numbers, known command names (any case), values in range, the right number of fields; blank
and ``#`` lines are skipped as that reader skips them, so line numbers agree. Anything else (a quote, a
space inside a field, a hex number, a bad value, a byte outside ASCII) stops the scan and the caller
re-reads the file line by line, which says what is wrong, by line. The file is memory-mapped, so its text
is paged in and out by the OS rather than held.

The formatter writes the bytes Python's csv.writer wrote (so emitted traces stay byte-identical), a block
of rows at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pimsim._numba_cache import njit
from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level

OK, NEEDS_LINE_READER = 0, 1
_MAX_DIGITS = 18  # stays inside int64; longer numbers go to the line reader


@njit(cache=True)
def _count_lines(buf, start):
    n = 0
    for i in range(start, len(buf)):
        if buf[i] == 10:
            n += 1
    return n


# how a field ended
COMMA, END_OF_LINE, BAD = 0, 1, 2


@njit(cache=True)
def _int_field(buf, i, n):
    """The decimal field at buf[i]: (value, digits, how it ended, index after its delimiter)."""
    v = 0
    k = i
    while k < n:
        c = buf[k]
        if c == 44:
            return v, k - i, COMMA, k + 1
        if c == 10:
            return v, k - i, END_OF_LINE, k + 1
        if c == 13:
            if k + 1 < n and buf[k + 1] == 10:
                return v, k - i, END_OF_LINE, k + 2
            return v, 0, BAD, k
        d = c - 48
        if d > 9 or c < 48 or k - i >= _MAX_DIGITS:
            return v, 0, BAD, k
        v = v * 10 + d
        k += 1
    return v, k - i, END_OF_LINE, n


@njit(cache=True)
def _name_field(buf, i, n, names, name_len):
    """The command named at buf[i] (ASCII, any case) and the index after its comma; -1 if unknown."""
    k = i
    while k < n and buf[k] != 44 and buf[k] != 10:
        k += 1
    if k >= n or buf[k] != 44:
        return -1, k
    width = k - i
    for j in range(names.shape[0]):
        if name_len[j] != width:
            continue
        same = True
        for m in range(width):
            c = buf[i + m]
            if 97 <= c <= 122:
                c -= 32
            if c != names[j, m]:
                same = False
                break
        if same:
            return j, k + 1
    return -1, k


@njit(cache=True)
def _skippable(buf, i, n):
    """(whether the line at buf[i] is blank, commas and spaces only, or a # comment; index of the next line).
    A line with a quote, a control character or a byte outside ASCII is not: the csv module might read it
    otherwise (a quote spans lines, a NUL is an error, a lone CR ends a line), so the line reader decides."""
    k = i
    while k < n and (buf[k] == 32 or buf[k] == 9):
        k += 1
    comment = k < n and buf[k] == 35
    blank = True
    k = i
    while k < n and buf[k] != 10:
        c = buf[k]
        crlf = c == 13 and k + 1 < n and buf[k + 1] == 10
        if c == 34 or c >= 127 or (c < 32 and c != 9 and not crlf):
            return False, k
        if c != 44 and c != 32 and c != 9 and not crlf:
            blank = False
        k += 1
    return comment or blank, k + 1


@njit(cache=True)
def _scan(buf, start, first_line, has_cycles, names, name_len, scope, opens, limits, bases, ranks,
          out_line, out_cycle, out_cmd, out_node, out_row, out_col):
    """Returns (commands, status). limits: channels, bankgroups, banks per group, rows, columns, cycle limit.
    bases: first node of the channel, rank and bank levels."""
    n = len(buf)
    i = start
    line = first_line
    count = 0
    while i < n:
        line += 1
        c = buf[i]
        if c < 48 or c > 57:  # a data line starts with a digit; anything else may be a blank or comment line
            skip, nxt = _skippable(buf, i, n)
            if not skip:
                return count, NEEDS_LINE_READER
            i = nxt
            continue
        cycle = 0
        if has_cycles:
            cycle, digits, how, i = _int_field(buf, i, n)
            if how != COMMA or digits == 0 or cycle >= limits[5]:
                return count, NEEDS_LINE_READER
        ch, digits, how, i = _int_field(buf, i, n)
        if how != COMMA or digits == 0 or ch >= limits[0]:
            return count, NEEDS_LINE_READER
        cmd, i = _name_field(buf, i, n, names, name_len)
        if cmd < 0:
            return count, NEEDS_LINE_READER
        bg, bg_digits, how, i = _int_field(buf, i, n)
        if how != COMMA or (bg_digits and bg >= limits[1]):
            return count, NEEDS_LINE_READER
        bk, bk_digits, how, i = _int_field(buf, i, n)
        if how != COMMA or (bk_digits and bk >= limits[2]):
            return count, NEEDS_LINE_READER
        row, row_digits, how, i = _int_field(buf, i, n)
        if how != COMMA or (row_digits and row >= limits[3]) or (opens[cmd] and not row_digits):
            return count, NEEDS_LINE_READER
        col, col_digits, how, i = _int_field(buf, i, n)
        if how != END_OF_LINE or (col_digits and col >= limits[4]):
            return count, NEEDS_LINE_READER
        level = scope[cmd]
        if level == 3:
            if not (bg_digits and bk_digits):
                return count, NEEDS_LINE_READER
            node = bases[2] + (ch * ranks * limits[1] + bg) * limits[2] + bk
        elif level == 1:
            node = bases[1] + ch * ranks
        else:
            node = bases[0] + ch
        out_line[count] = line
        out_cycle[count] = cycle
        out_cmd[count] = cmd
        out_node[count] = node
        out_row[count] = row if row_digits else -1
        out_col[count] = col if col_digits else -1
        count += 1
    return count, OK


def scan_command_csv(path: Path, compiled: Compiled, header_line: int, offset: int, has_cycles: bool):
    """The commands after the header (line `header_line`, ending at byte `offset`), as the arrays of a
    CommandTrace (line, cycle, cmd, node, row, column); None where the line reader must read the file."""
    size = path.stat().st_size
    if offset >= size:
        return None
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    org = compiled.hw.dram.organization
    std = compiled.standard
    command_names = compiled.command_names
    if any(not name.isascii() for name in command_names):
        return None
    width = max(len(name) for name in command_names)
    names = np.zeros((len(command_names), width), np.uint8)
    for i, name in enumerate(command_names):
        names[i, :len(name)] = np.frombuffer(name.upper().encode(), np.uint8)
    name_len = np.array([len(name) for name in command_names], np.int64)
    commands = [std.command(name) for name in command_names]
    scope = np.array([int(c.scope) for c in commands], np.int64)
    opens = np.array([c.effect == Effect.OPEN for c in commands], np.bool_)
    limits = np.array([org.channels, org.bankgroups, org.banks_per_group, org.rows, org.columns, 1 << 60], np.int64)
    bases = np.array([compiled.level_base[Level.CHANNEL], compiled.level_base[Level.RANK],
                      compiled.level_base[Level.BANK]], np.int64)
    # room for as many commands as the shortest possible lines would make: pages never written are never
    # touched, so this costs address space, not memory, and saves a counting pass over the text
    shortest = (2 if has_cycles else 0) + 2 + int(name_len.min()) + 5
    try:
        out = [np.empty((size - offset) // shortest + 1, np.int64) for _ in range(6)]
    except MemoryError:  # the system refuses that much address space: count the lines, then ask for that
        out = None
    if out is None:
        lines = _count_lines(buf, offset) + 1
        try:
            out = [np.empty(lines, np.int64) for _ in range(6)]
        except MemoryError:
            from pimsim.errors import TraceError

            raise TraceError(f"{path}: up to {lines:,} commands would need {lines * 48 / 2**30:.1f} GiB of memory "
                             f"once decoded (the kernel runs a whole trace at once); split the trace") from None
    count, status = _scan(buf, offset, header_line, has_cycles, names, name_len, scope, opens, limits, bases,
                          org.ranks, *out)
    del buf
    if status != OK or count == 0:
        return None
    return [a[:count] for a in out]


# ---- writing ------------------------------------------------------------------------------------------------

@njit(cache=True)
def _put_int(out, k, v):
    """Decimal digits of v >= 0 at out[k:]; returns the index after them."""
    if v == 0:
        out[k] = 48
        return k + 1
    digits = 0
    x = v
    while x > 0:
        x //= 10
        digits += 1
    for d in range(digits - 1, -1, -1):
        out[k + d] = 48 + v % 10
        v //= 10
    return k + digits


@njit(cache=True)
def _format_rows(cycle, channel, cmd, bankgroup, bank, row, column, with_cycles, names, name_len, out):
    """CSV lines (CRLF, empty where a value is negative) into `out`; returns the bytes written."""
    k = 0
    for i in range(len(cmd)):
        if with_cycles:
            k = _put_int(out, k, cycle[i])
            out[k] = 44
            k += 1
        k = _put_int(out, k, channel[i])
        out[k] = 44
        k += 1
        c = cmd[i]
        for m in range(name_len[c]):
            out[k + m] = names[c, m]
        k += name_len[c]
        for v in (bankgroup[i], bank[i], row[i], column[i]):
            out[k] = 44
            k += 1
            if v >= 0:
                k = _put_int(out, k, v)
        out[k] = 13
        out[k + 1] = 10
        k += 2
    return k


def write_command_csv(path, compiled: Compiled, columns: dict[str, np.ndarray], with_cycles: bool,
                      rows_per_block: int = 1 << 20) -> None:
    """A command trace as CSV, the bytes Python's csv.writer writes (CRLF, no quotes, empty fields for
    values not given, i.e. negative in `columns`), a block of rows at a time."""
    names_list = compiled.command_names
    width = max(len(n) for n in names_list)
    names = np.zeros((len(names_list), width), np.uint8)
    for i, name in enumerate(names_list):
        names[i, :len(name)] = np.frombuffer(name.encode(), np.uint8)
    name_len = np.array([len(n) for n in names_list], np.int64)
    header = (["cycle"] if with_cycles else []) + ["channel", "command", "bankgroup", "bank", "row", "column"]
    per_row = 6 * 20 + width + 8  # 19 digits at most per int64 field, commas, CRLF
    n = len(columns["cmd"])
    with open(path, "wb") as handle:
        handle.write(",".join(header).encode() + b"\r\n")
        out = np.empty(min(n, rows_per_block) * per_row + 1, np.uint8)
        for start in range(0, n, rows_per_block):
            part = {k: np.ascontiguousarray(v[start:start + rows_per_block], np.int64) for k, v in columns.items()}
            used = _format_rows(part["cycle"], part["channel"], part["cmd"], part["bankgroup"], part["bank"],
                                part["row"], part["column"], with_cycles, names, name_len, out)
            handle.write(out[:used].tobytes())
