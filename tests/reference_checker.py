"""The protocol checker's ``check`` as it was before it listed each command's constraints once and looked its
nodes' histories up once per kind of command and address (pimsim.dram.checker, 2026-12-04): a scan of the
whole constraint table and a dictionary look-up per node for every command. Kept only to hold the faster
code to it: tests/test_checker_reference.py checks the same traces, clean and corrupted, with both."""

from __future__ import annotations

from collections import defaultdict, deque

from pimsim.dram.checker import MAX_REFRESH_INTERVALS, Issued, Violation, _touched
from pimsim.dram.compile import Compiled
from pimsim.dram.standard import Effect, Level


def check(compiled: Compiled, trace: list[Issued], check_refresh: bool | None = None) -> list[Violation]:
    """All protocol violations in a timed trace (an empty list means it is clean)."""
    std = compiled.standard
    org = compiled.hw.dram.organization
    if check_refresh is None:
        check_refresh = compiled.hw.dram.refresh.enabled
    constraints = [(c, lat) for c, lat in compiled.constraints]
    history: dict[tuple[int, tuple], deque] = {}
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
        touched = _touched(command.scope, x, org.bankgroups, org.banks_per_group)
        for idx, (c, lat) in enumerate(constraints):
            if x.command not in c.following:
                continue
            for node in touched[c.level]:
                past = history.get((idx, node))
                if past is not None and len(past) >= c.window:
                    earlier = past[-c.window]
                    if x.cycle - earlier.cycle < lat:
                        name = f"{'/'.join(c.preceding)} -> {'/'.join(c.following)} at {c.level.name.lower()} " \
                               f"level ({c.latency}{f', window {c.window}' if c.window > 1 else ''})"
                        violations.append(Violation(name, x, earlier, lat, x.cycle - earlier.cycle))
                        break
        for idx, (c, _lat) in enumerate(constraints):
            if x.command in c.preceding:
                for node in touched[c.level]:
                    history.setdefault((idx, node), deque(maxlen=c.window)).append(x)
        violations += _check_state(command, x, touched[Level.BANK], open_rows)
        if command.effect == Effect.REFRESH:
            for b in touched[Level.BANK]:
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
    for b in banks:
        current = open_rows.get(b, -1)
        if command.effect == Effect.OPEN:
            if current >= 0:
                out.append(Violation(f"activates bank {b[2]}.{b[3]}, which has row {current} open",
                                     x, None, None, None))
                break
        elif command.effect == Effect.ACCESS:
            if current < 0:
                out.append(Violation(f"accesses bank {b[2]}.{b[3]}, which has no open row", x, None, None, None))
                break
            if x.row >= 0 and x.row != current:
                out.append(Violation(f"accesses row {x.row} of bank {b[2]}.{b[3]}, but row {current} is open",
                                     x, None, None, None))
                break
        elif command.effect == Effect.REFRESH and current >= 0:
            out.append(Violation(f"refreshes while bank {b[2]}.{b[3]} has row {current} open", x, None, None, None))
            break
    for b in banks:
        if command.effect == Effect.OPEN:
            open_rows[b] = x.row
        elif command.effect == Effect.CLOSE:
            open_rows[b] = -1
    return out
