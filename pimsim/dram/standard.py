"""DRAM standards described as data.

A standard is a vocabulary of commands and a table of timing constraints over a hierarchy of four
tiers (the kernel's :class:`Level`: channel > rank > bankgroup > bank). Each standard names its own
levels on those tiers (HBM's independent unit is a pseudo-channel, its rank a stack ID), declares how
it refreshes (:class:`RefreshPolicy`: all-bank, per-bank, staggered across ranks) and, for every
command, its PIM role (:class:`PimRole`) and its energy class (:class:`EnergyClass`); a command that
leaves either undeclared is refused when the standard is built. Nothing in here knows about any
particular device: the definitions in :mod:`pimsim.dram.standards` are plain instances.

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
# The organization field of a hardware config that counts each tier's nodes under one parent
LEVEL_COUNT_FIELDS = {Level.CHANNEL: "channels", Level.RANK: "ranks", Level.BANKGROUP: "bankgroups",
                      Level.BANK: "banks_per_group"}


@dataclass(frozen=True)
class LevelName:
    """What a standard calls the nodes of one tier, and how many of them it allows per parent.

    ``fixed``: the count the standard itself fixes (HBM3 has one stack ID per pseudo-channel at 4-high),
    checked against the config; None where the config chooses."""

    tier: Level
    name: str
    fixed: int | None = None


class EnergyClass(enum.Enum):
    """The energy component a command's energy counts to (the keys of pimsim.energy.model.COMPONENTS)."""

    ACTIVATION = "activations"  # opening and closing rows
    MAC = "mac"  # PIM MACs in the banks
    ARRAY = "array_rw"  # column reads and writes of the array
    REGISTER = "global_buffer"  # PIM registers and buffers, mode and program writes
    REFRESH = "refresh"


class PimRole(enum.Enum):
    """What a command does for the PIM units; mappers, kernels and the energy model find commands by role."""

    NONE = "none"  # a plain DRAM command
    ACTIVATE_ALL = "activate-all"  # open the same row in every bank of the scope
    MAC_ALL = "mac-all"  # every unit multiplies one column of its open row with its input buffer
    MAC_ONE = "mac-one"  # the same in one bank's unit
    INPUT_WRITE = "input-write"  # host writes operands into the units' input buffer (global buffer, GRF_A)
    RESULT_READ = "result-read"  # host reads the units' accumulators
    RESULT_WRITEBACK = "result-writeback"  # units store their accumulators into the array
    PROGRAM = "program"  # host writes the units' instruction memory
    MODE = "mode"  # enter or leave a PIM mode


# roles at most one command of a standard may hold (a mapper asks for "the" command of that role)
UNIQUE_ROLES = (PimRole.ACTIVATE_ALL, PimRole.MAC_ALL, PimRole.MAC_ONE, PimRole.INPUT_WRITE, PimRole.RESULT_READ,
                PimRole.RESULT_WRITEBACK)


@dataclass(frozen=True)
class RefreshPolicy:
    """How the memory controller refreshes, as data the kernel runs.

    ``command`` is issued every ``interval`` (a timing expression) per rank; before it, ``close`` closes
    what the refresh needs closed. ``per_bank``: each refresh covers one bank, the banks of a rank in turn
    (bank index = refreshes issued so far modulo banks per rank), so the other banks keep working;
    otherwise it covers the whole rank. ``staggered``: the ranks of a channel fall due ``interval /
    ranks`` apart instead of together, so they never all refresh at once."""

    name: str
    command: str
    close: str
    interval: str
    per_bank: bool = False
    staggered: bool = False
    description: str = ""


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
    # Required (None is refused by Standard): the energy component the command counts to and what it
    # does for the PIM units (PimRole.NONE for a plain DRAM command).
    energy: EnergyClass | None = None
    pim_role: PimRole | None = None


def current_formula(c: Command) -> str | None:
    """Which datasheet-current formula gives the energy of a command of this kind (pimsim.energy.model):
    ``activate`` (IDD0, per activate-precharge pair), ``activate-all`` (that, per bank), ``precharge`` (0:
    charged on the activate), ``read``/``write`` (IDD4R/IDD4W over a burst), ``refresh`` (IDD5B over nRFC),
    ``refresh-bank`` (a per-bank refresh: that, divided by the banks it takes to cover the rank); None
    for a command the currents say nothing about (PIM work, given in pJ)."""
    if c.energy == EnergyClass.ACTIVATION and c.pim_role in (PimRole.NONE, PimRole.ACTIVATE_ALL):
        if c.effect == Effect.OPEN:
            return "activate-all" if c.pim_role == PimRole.ACTIVATE_ALL else "activate"
        if c.effect == Effect.CLOSE:
            return "precharge"
    if c.energy == EnergyClass.ARRAY and c.pim_role == PimRole.NONE:
        return {Transfer.READ: "read", Transfer.WRITE: "write"}.get(c.transfer)
    if c.energy == EnergyClass.REFRESH and c.effect == Effect.REFRESH:
        return "refresh-bank" if c.scope == Level.BANK else "refresh"
    return None


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
    # What each tier is called in this standard (channel, rank, bankgroup, bank order); messages and
    # the docs use these names.
    levels: tuple[LevelName, ...] = (LevelName(Level.CHANNEL, "channel"), LevelName(Level.RANK, "rank"),
                                     LevelName(Level.BANKGROUP, "bankgroup"), LevelName(Level.BANK, "bank"))
    # How refresh works; the first is used unless the config names another (dram.refresh.policy).
    refresh_policies: tuple[RefreshPolicy, ...] = (
        RefreshPolicy("all-bank", "REF", "PREA", "nREFI", description="every bank of a rank at once, every nREFI"),)
    # Command used to close all banks (the refresh policy names its own), and to reopen rows after a refresh.
    precharge_all: str = "PREA"
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
        self._check_declarations(names)
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
        for special in (self.precharge_all, self.activate, self.activate_all):
            if special is not None and special not in names:
                raise ValueError(f"{self.name}: special command {special!r} is not defined")

    def _check_declarations(self, names: list[str]) -> None:
        """Levels, refresh policies, PIM roles and energy classes: every problem in one message."""
        problems = []
        if tuple(lv.tier for lv in self.levels) != tuple(Level):
            problems.append("levels must name the four tiers in order (channel, rank, bankgroup, bank)")
        for c in self.commands:
            if not isinstance(c.energy, EnergyClass):
                problems.append(f"command {c.name} declares no energy class (Command(energy=EnergyClass....))")
            if not isinstance(c.pim_role, PimRole):
                problems.append(f"command {c.name} declares no PIM role (Command(pim_role=PimRole.NONE) for a plain "
                                "DRAM command)")
        for role in UNIQUE_ROLES:
            holders = [c.name for c in self.commands if c.pim_role == role]
            if len(holders) > 1:
                problems.append(f"PIM role {role.value} is held by {', '.join(holders)}; at most one command may "
                                "hold it")
        if not self.refresh_policies:
            problems.append("no refresh policy")
        if len({p.name for p in self.refresh_policies}) != len(self.refresh_policies):
            problems.append("duplicate refresh policy names")
        params = {p.name for p in self.timing_params + self.derived_params}
        for p in self.refresh_policies:
            for what, cmd, effect in (("command", p.command, Effect.REFRESH), ("close", p.close, Effect.CLOSE)):
                if cmd not in names:
                    problems.append(f"refresh policy {p.name}: {what} {cmd!r} is not a command")
                elif self.command(cmd).effect != effect:
                    problems.append(f"refresh policy {p.name}: {what} {cmd!r} must have effect {effect.name}")
            unknown = names_in(p.interval) - params
            if unknown:
                problems.append(f"refresh policy {p.name}: interval {p.interval!r} uses {sorted(unknown)}")
            scope = Level.BANK if p.per_bank else Level.RANK
            for cmd in (p.command, p.close):
                if cmd in names and self.command(cmd).scope != scope:
                    problems.append(f"refresh policy {p.name}: {cmd} must be scoped at the {LEVEL_NAMES[scope]} "
                                    f"level ({'per-bank' if p.per_bank else 'rank-wide'} refresh)")
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))

    @property
    def command_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.commands)

    @property
    def refresh(self) -> str:
        """The refresh command of the default policy."""
        return self.refresh_policies[0].command

    def refresh_policy(self, name: str | None) -> RefreshPolicy:
        """The named policy (None: the default, the first); KeyError for a name the standard lacks."""
        if name is None:
            return self.refresh_policies[0]
        for p in self.refresh_policies:
            if p.name == name:
                return p
        raise KeyError(name)

    def level_name(self, tier: Level) -> str:
        return self.levels[int(tier)].name

    def role(self, role: PimRole) -> str | None:
        """The command holding a unique PIM role, None where the standard has none."""
        for c in self.commands:
            if c.pim_role == role:
                return c.name
        return None

    def commands_with_role(self, *roles: PimRole) -> tuple[str, ...]:
        return tuple(c.name for c in self.commands if c.pim_role in roles)

    def energy_class(self, name: str) -> EnergyClass:
        return self.command(name).energy

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
