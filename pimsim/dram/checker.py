"""An independent protocol checker: re-verify any timed command trace against the constraint table.

It shares the standard's constraint table (and the latencies evaluated from the config) with the
kernel, but none of the kernel's code or data structures: touched nodes are enumerated explicitly,
histories are plain deques, everything is straightforward Python. Slow (about 100,000 commands a second),
and meant to be obviously right, so that it can judge the fast kernel; the one thing it does for speed is
to list the constraints and histories a kind of command at an address meets once, not per command
(``tests/test_checker_reference.py`` holds it to the scan of the whole table it replaced).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level

# JEDEC DDR4 lets a controller postpone up to 8 refreshes; more than 9 intervals without one is a bug.
MAX_REFRESH_INTERVALS = 9


@dataclass(frozen=True)
class Issued:
    """One issued command, in checker terms."""

    cycle: int
    channel: int
    command: str
    bankgroup: int  # -1 where the command is not addressed to a bank
    bank: int
    row: int  # -1 where not given
    line: int  # where it came from (file line or position), for messages


@dataclass(frozen=True)
class Violation:
    rule: str
    later: Issued
    earlier: Issued | None
    required: int | None
    actual: int | None

    def __str__(self) -> str:
        where = f"{_where(self.later)}: {self.later.command} at cycle {self.later.cycle}"
        if self.earlier is None:
            return f"{where}: {self.rule}"
        return (f"{where}: {self.rule}: needs {self.required} cycles after {self.earlier.command} "
                f"({_where(self.earlier)}, cycle {self.earlier.cycle}), got {self.actual}")


def _where(x: Issued) -> str:
    return f"line {x.line}" if x.line > 0 else f"kernel-added command #{-x.line}"


def _touched(cmd_scope: Level, x: Issued, bankgroups: int, banks: int) -> dict[Level, list[tuple]]:
    """Every node, per level, that a command touches: its scope node, its ancestors, its descendants."""
    ch = (x.channel,)
    rank = (x.channel, 0)
    if cmd_scope == Level.BANK:
        bgs = [(x.channel, 0, x.bankgroup)]
        bks = [(x.channel, 0, x.bankgroup, x.bank)]
    else:  # rank or channel scope: every bank group and bank below (one rank per channel)
        bgs = [(x.channel, 0, g) for g in range(bankgroups)]
        bks = [(x.channel, 0, g, b) for g in range(bankgroups) for b in range(banks)]
    return {Level.CHANNEL: [ch], Level.RANK: [rank], Level.BANKGROUP: bgs, Level.BANK: bks}


def check(compiled: Compiled, trace: list[Issued], check_refresh: bool | None = None) -> list[Violation]:
    """All protocol violations in a timed trace (an empty list means it is clean)."""
    std = compiled.standard
    org = compiled.hw.dram.organization
    if check_refresh is None:
        check_refresh = compiled.hw.dram.refresh.enabled
    constraints = list(enumerate(compiled.constraints))
    # the history of each constraint at each node: the last `window` commands of its earlier kind there
    history: dict[tuple[int, tuple], deque] = {}

    def queues(idx: int, c, nodes: list[tuple]) -> list[deque]:
        return [history.setdefault((idx, node), deque(maxlen=c.window)) for node in nodes]

    # per command and the nodes it touches: the histories of the constraints it is the later command of
    # (in table order, with their latency) and of those it is an earlier command of; what scanning the
    # whole table and looking up each node's history finds, listed once per kind of command and address
    plans: dict[tuple, tuple[list, list, list[tuple]]] = {}
    open_rows: dict[tuple, int] = {}
    # per bank, the cycle it was last refreshed (an all-bank refresh covers every bank of the rank, a
    # per-bank one its bank); per channel, the oldest of those
    last_refresh: dict[tuple, int] = defaultdict(int)
    oldest_refresh: dict[int, int] = defaultdict(int)
    channel_banks = [(0, g, b) for g in range(org.bankgroups) for b in range(org.banks_per_group)]
    violations: list[Violation] = []
    n_refi = compiled.timing.get("nREFI")
    modes: dict[int, str] = defaultdict(lambda: std.initial_mode)  # per channel, on devices with modes
    for x in sorted(trace, key=lambda i: i.cycle):  # stable: equal cycles keep trace order
        command = std.command(x.command)
        if x.command == std.mode_change:
            modes[x.channel] = std.other_mode(modes[x.channel])
        elif command.mode and command.mode != modes[x.channel]:
            violations.append(Violation(f"needs {command.mode} mode, but the channel is in {modes[x.channel]} "
                                        f"mode (a missing {std.mode_change})", x, None, None, None))
        key = (x.command, command.scope, x.channel, x.bankgroup, x.bank)
        plan = plans.get(key)
        if plan is None:
            touched = _touched(command.scope, x, org.bankgroups, org.banks_per_group)
            plan = plans[key] = (
                [(c, lat, queues(idx, c, touched[c.level])) for idx, (c, lat) in constraints
                 if x.command in c.following],
                [queues(idx, c, touched[c.level]) for idx, (c, _lat) in constraints if x.command in c.preceding],
                touched[Level.BANK])
        follows, precedes, banks = plan
        for c, lat, pasts in follows:
            for past in pasts:
                if len(past) >= c.window:
                    earlier = past[-c.window]
                    if x.cycle - earlier.cycle < lat:
                        name = f"{'/'.join(c.preceding)} -> {'/'.join(c.following)} at {c.level.name.lower()} " \
                               f"level ({c.latency}{f', window {c.window}' if c.window > 1 else ''})"
                        violations.append(Violation(name, x, earlier, lat, x.cycle - earlier.cycle))
                        break
        for pasts in precedes:
            for past in pasts:
                past.append(x)
        if command.effect != Effect.NONE:
            violations += _check_state(command, x, banks, open_rows)
        if command.effect == Effect.REFRESH:
            for b in banks:
                last_refresh[b] = x.cycle
            oldest_refresh[x.channel] = min(last_refresh[(x.channel, *b)] for b in channel_banks)
        if check_refresh and n_refi:
            since = x.cycle - oldest_refresh[x.channel]
            if since > MAX_REFRESH_INTERVALS * n_refi:
                violations.append(Violation(
                    f"no refresh for {since} cycles (more than {MAX_REFRESH_INTERVALS} x nREFI = "
                    f"{MAX_REFRESH_INTERVALS * n_refi})", x, None, None, None))
                for b in channel_banks:  # report each starved stretch once
                    last_refresh[(x.channel, *b)] = x.cycle
                oldest_refresh[x.channel] = x.cycle
    return violations


def _check_state(command, x: Issued, banks: list[tuple], open_rows: dict) -> list[Violation]:
    out = []
    effect = command.effect
    if effect in (Effect.OPEN, Effect.ACCESS, Effect.REFRESH):
        for b in banks:
            current = open_rows.get(b, -1)
            if effect == Effect.OPEN:
                if current >= 0:
                    out.append(Violation(f"activates bank {b[2]}.{b[3]}, which has row {current} open",
                                         x, None, None, None))
                    break
            elif effect == Effect.ACCESS:
                if current < 0:
                    out.append(Violation(f"accesses bank {b[2]}.{b[3]}, which has no open row", x, None, None,
                                         None))
                    break
                if x.row >= 0 and x.row != current:
                    out.append(Violation(f"accesses row {x.row} of bank {b[2]}.{b[3]}, but row {current} is open",
                                         x, None, None, None))
                    break
            elif current >= 0:  # a refresh
                out.append(Violation(f"refreshes while bank {b[2]}.{b[3]} has row {current} open", x, None, None,
                                     None))
                break
    if effect == Effect.OPEN:
        for b in banks:
            open_rows[b] = x.row
    elif effect == Effect.CLOSE:
        for b in banks:
            open_rows[b] = -1
    return out


def _addresses(compiled: Compiled):
    """Per node, (channel, bank group, bank) as the checker names them (bank group and bank -1 above a bank)."""
    known: dict[int, tuple[int, int, int]] = {}

    def address(node: int) -> tuple[int, int, int]:
        got = known.get(node)
        if got is None:
            ch = int(compiled.channel_of(node) - compiled.level_base[Level.CHANNEL])
            bg = bank = -1
            if compiled.node_level(node) == Level.BANK:
                _, _, bg, bank = compiled.bank_address(node)
            got = known[node] = (ch, bg, bank)
        return got

    return address


def issued_from_record(compiled: Compiled, rec) -> list[Issued]:
    """The kernel's record of issued commands as checker input."""
    names = compiled.command_names
    address = _addresses(compiled)
    out = []
    for pos, (cycle, cmd, node, row, _col, src) in enumerate(rec.tolist()):
        # stream commands are named by their 1-based position in the stream, kernel-added ones by
        # their negated position in the record
        ch, bg, bank = address(node)
        out.append(Issued(cycle, ch, names[cmd], bg, bank, row, src + 1 if src >= 0 else -(pos + 1)))
    return out


def issued_from_trace(compiled: Compiled, trace) -> list[Issued]:
    """A timed command trace (read by :func:`pimsim.trace.files.read_command_trace`) as checker input."""
    names = compiled.command_names
    address = _addresses(compiled)
    out = []
    for line, cycle, cmd, node, row in zip(trace.line.tolist(), trace.cycle.tolist(), trace.cmd.tolist(),
                                           trace.node.tolist(), trace.row.tolist()):
        ch, bg, bank = address(node)
        out.append(Issued(cycle, ch, names[cmd], bg, bank, row, line))
    return out
