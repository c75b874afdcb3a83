"""DRAM standards described as data.

A standard is a vocabulary of commands and a table of timing constraints over a fixed hierarchy of
levels (channel > rank > bankgroup > bank). Nothing in here knows about any particular device: the
DDR4, GDDR6-AiM and HBM2-PIM definitions in :mod:`pimsim.dram.standards` are plain instances.

Semantics shared by the kernel and the protocol checker
--------------------------------------------------------
Every command addresses one node of the hierarchy, its *scope node*: a bank for ``ACT``/``RD``, the
rank for ``PREA``/``REF``/``ACTAB``/``MACAB``, the channel for global-buffer writes. A command
*touches* its scope node, every ancestor of it and every descendant of it: ``PREA`` touches every
bank of its rank, an ``RD`` touches its bank, bank group, rank and channel.

A constraint ``(level L, preceding P, following F, latency, window w)`` says: for every node X at
level L, a command in F that touches X may not issue before ``t + latency``, where t is the issue
cycle of the w-th most recent command in P that touched X (w = 1: the most recent one). ``nFAW`` is
the classic window constraint (w = 4).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pimsim.dram.expr import names_in


class Level(enum.IntEnum):
    CHANNEL = 0
    RANK = 1
    BANKGROUP = 2
    BANK = 3


LEVEL_NAMES = {Level.CHANNEL: "channel", Level.RANK: "rank", Level.BANKGROUP: "bankgroup", Level.BANK: "bank"}


class Effect(enum.IntEnum):
    """What a command does to bank state; the kernel and the checker both enforce these rules."""

    NONE = 0  # no bank-state effect or requirement (global-buffer write, MAC-result read)
    OPEN = 1  # open `row` in every bank the command touches; they must all be closed
    CLOSE = 2  # close every bank the command touches (closing a closed bank is legal)
    ACCESS = 3  # column access to the open row of every bank the command touches; all must be open
    REFRESH = 4  # refresh every bank the command touches; they must all be closed


class Transfer(enum.IntEnum):
    """Data moved over the channel's external interface by one command (one access of the channel)."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Command:
    name: str
    scope: Level
    effect: Effect
    transfer: Transfer = Transfer.NONE
    # Cycles from issue until the command's work is done (data returned, row open, ...); a latency
    # expression over the timing parameters. Used for the end of a run, not for scheduling.
    done: str = "1"
    description: str = ""
    # The device mode the command needs (one of Standard.modes; "" = legal in any mode). GDDR6-AiM
    # accepts global-buffer writes and MAC-result reads only in its register-access mode, MACs only in
    # its MAC mode; the protocol checker enforces it.
    mode: str = ""


@dataclass(frozen=True)
class Constraint:
    level: Level
    preceding: tuple[str, ...]
    following: tuple[str, ...]
    latency: str
    window: int = 1
    note: str = ""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"constraint window must be >= 1, got {self.window}")


@dataclass(frozen=True)
class TimingParam:
    name: str
    description: str


@dataclass(frozen=True)
class Standard:
    """A DRAM standard: its timing parameters, commands and constraints.

    ``sanity`` holds relations between timing parameters that any real device satisfies, as
    ``(left expression, operator, right expression, why)``; violating one is a config error.
    """

    name: str
    description: str
    timing_params: tuple[TimingParam, ...]
    commands: tuple[Command, ...]
    constraints: tuple[Constraint, ...]
    sanity: tuple[tuple[str, str, str, str], ...] = field(default=())
    # parameters a rule may use that another section of the config sets (not dram.timing): see
    # pimsim.dram.compile.derived_timing
    derived_params: tuple[TimingParam, ...] = field(default=())
    # Command used to close all banks before a refresh, to refresh, and to reopen rows afterwards.
    precharge_all: str = "PREA"
    refresh: str = "REF"
    activate: str = "ACT"
    activate_all: str | None = None
    # Devices with modes: the command that toggles between the two ``modes`` (it takes no arguments),
    # and the mode every command stream starts and ends in.
    modes: tuple[str, ...] = ()
    mode_change: str | None = None
    initial_mode: str = ""
    # The vendor's controller closes a row only when a command needs another one (AiM: the precharge is
    # a prerequisite of the next MAC instruction), so streams precharge just before the next activate.
    lazy_precharge: bool = False
    # Data-bus cycles of a command that carries more than one burst, as a timing parameter (HBM-PIM's
    # RDMAC reads one register of every PIM unit: nBLRES); every other transfer is one burst, nBL.
    burst_params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.commands]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate command names")
        params = {p.name for p in self.timing_params + self.derived_params}
        for c in self.constraints:
            for cmd in (*c.preceding, *c.following):
                if cmd not in names:
                    raise ValueError(f"{self.name}: constraint names unknown command {cmd!r}")
        for c in self.constraints:
            unknown = names_in(c.latency) - params
            if unknown:
                raise ValueError(f"{self.name}: constraint latency {c.latency!r} uses {sorted(unknown)}")
        if self.modes and (len(self.modes) != 2 or self.mode_change not in names
                           or self.initial_mode not in self.modes):
            raise ValueError(f"{self.name}: two modes, a mode-change command and an initial mode go together")
        for c in self.commands:
            if c.mode and c.mode not in self.modes:
                raise ValueError(f"{self.name}: command {c.name} needs unknown mode {c.mode!r}")
        for special in (self.precharge_all, self.refresh, self.activate, self.activate_all):
            if special is not None and special not in names:
                raise ValueError(f"{self.name}: special command {special!r} is not defined")

    @property
    def command_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.commands)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.timing_params)

    def command(self, name: str) -> Command:
        for c in self.commands:
            if c.name == name:
                return c
        raise KeyError(name)

    def other_mode(self, mode: str) -> str:
        """The mode a mode change leads to from ``mode``."""
        return self.modes[1 - self.modes.index(mode)]

    def command_id(self, name: str) -> int:
        return self.command_names.index(name)
