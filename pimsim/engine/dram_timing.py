"""How long a PIM command stream takes: the two fidelities.

``CycleTiming`` issues every command of every stream through the numba kernel, into one DRAM state
that lives for the whole run: open rows, bank timing and refresh carry from one stream to the next. A
channel that starts a stream in a state equivalent to another's that issues the same commands is given
what issuing them leaves instead (:mod:`pimsim.dram.twins`: the same State, byte for byte).

``FastTiming`` simulates each distinct stream (by its key: what it computes, not where it sits) once
from an idle memory with refresh off, and follows the refresh clock: refreshes fall due every nREFI
from nREFI on, whatever the memory does, as at cycle fidelity. At each use it finds the refreshes due
before the stream's last command issues, and the one that fell due while the memory idled before it
(the stream waits for what is left of its nRFC). Where in a stream a refresh lands decides what it
costs (rows open or closed, the row sweep's phase), so:

- a stream whose last command issues within 2 nREFI (one or two refreshes land in it) is simulated
  again with the first refresh due where it lands (the rest every nREFI after) and pays exactly that:
  at that very cycle for its first 64 distinct landings (cached; a locked phase brings the same few
  back), then per bin of its length;
- a longer one pays, per refresh, the average over runs with the first refresh due at SAMPLES
  points of its first nREFI (a golden-ratio sequence: evenly spaced points can fall on one phase of
  the row sweep every time), the rest every nREFI after; each refresh pushes the rest of the stream
  later, so the count is solved for with that cost.

Every run from an idle memory (refresh-free, the sampled ones, the landing ones) issues one channel of
each kind and counts it for all the channels of that kind: channels that issue the same commands run
alike (see :class:`_ChannelKinds`).

Following the clock rather than charging each use an expected cost matters because the phase locks:
a refresh that delays a stream's start puts everything after it a fixed distance behind that refresh,
so layers that take nearly a whole number of nREFI see refreshes land on the same ops again and
again, at both fidelities. What fast leaves out: the bank state a stream inherits (each is timed from
idle), and the exact cost of each refresh in a stream longer than 2 nREFI.
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.kernel import (
    ChannelSplit,
    issue_into,
    issue_twins,
    repeat_runs,
    run_commands,
    run_commands_into,
    run_commands_parallel,
    split_by_channel,
    threads,
)
from pimsim.dram.periods import latency_from, period_groups
from pimsim.dram.standard import PimRole
from pimsim.dram.timing_state import (
    B_OPEN,
    C_CONFLICTS,
    C_END,
    C_HITS,
    ERR_STUCK,
    K_DONE,
    N_ANC,
    N_HI,
    N_LO,
    P_PREA,
    P_REFRESH_ON,
    Spec,
    State,
    first_refresh_due,
    new_state,
    rule_latency,
)
from pimsim.dram.twins import bank_uses, representatives
from pimsim.errors import PimsimError
from pimsim.mapper.model import Stream

# Fast fidelity's refresh costs (see the module docstring). Assumed, not measured: chosen so that every
# bundled card runs within 1% of cycle fidelity on both bundled PIM configs at a few ms per landing.
LANDED_INTERVALS = 2  # a stream whose last command issues within this many nREFI is simulated where refreshes land
EXACT_LANDINGS = 64  # per stream, landings simulated at their very cycle before falling back to bins
SHORT_BINS = 32  # then: a stream under nREFI / 2 long in bins of 1/SHORT_BINS of it,
LONG_BIN_CYCLES = 8  # a longer one in bins of this many cycles (a fraction of a row sweep)
SAMPLES = 16  # refresh positions sampled per distinct long stream for its average refresh cost
GOLDEN = (5 ** 0.5 - 1) / 2  # the sample points are k + 1/2 times this, modulo 1, of the first nREFI
EXPECTED_SAMPLES = 8  # evenly spaced, where each use is charged the expected cost (follow_clock=False)
# Streams shorter than this are issued command by command, with no runs, period groups or twin channels
# derived (those cost a few hundred microseconds once per stream key). Measured with benchmarks/cycle_parallel.py
# --by-kind (gpt2-xl on gddr6-aim, position 1, twins on): 21.4 ms per token from 4096 commands, 19.3 from
# 1024, 18.4 from 256 (the K/V appends, scores and context streams of a short context then issue one channel
# of each kind)
INPUTS_MIN_COMMANDS = 256
# Streams shorter than this are issued on one thread (assumed, not measured: waking numba's threads takes tens
# of microseconds, about what the kernel needed for a few thousand commands before runs and period groups
# made long streams cheaper)
PARALLEL_MIN_COMMANDS = 4096
# Of the longer ones, a stream goes to numba's threads (where there are several) only if two runs on one
# thread took at least this long (a process's first kernel call includes loading the kernel). Starting the
# threads of a parallel region costs about 0.1 ms on a 2-core machine (OpenMP, passive wait), while runs of
# repeats and period groups made a gddr6-aim weight GEMV take 0.1-0.4 ms. Measured there with
# benchmarks/cycle_parallel.py (gpt2-xl, 2 threads against 1): split by length alone (from 4096 commands),
# 0.68x on gddr6-aim and 1.10x on hbm-pim; only the 346,420-command LM head split, 1.04x and 0.99x. The
# figure itself is assumed between those; --split-min-ms sets it.
SPLIT_MIN_SECONDS = 1e-3
# Channels that start a stream alike and issue alike are issued once, the others given the same State
# (pimsim.dram.twins; the result is the same either way): benchmarks/cycle_parallel.py --twins off turns it off
TWIN_CHANNELS = True
BUSY_BLOCK = 1 << 16  # runs whose busy time FastTiming adds up at once (it logs at most about this many)
# Streams whose kernel inputs (channel split, runs of repeats, period groups, whether the split pays)
# CycleTiming keeps, the most recently used:
# a token issues about a dozen distinct streams (the weight GEMVs every token, attention's for some tokens)
KEPT_STREAMS = 64


class _Counts:
    """Commands by kind and row-buffer outcomes, summed over channels."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.commands = np.zeros(len(compiled.command_names), np.int64)
        self.rows = np.zeros(3, np.int64)  # hits, misses, conflicts

    def summary(self) -> dict:
        c = self.compiled
        moved = int((self.commands * c.transfer_bytes_by_command()).sum())
        hits, misses, conflicts = (int(x) for x in self.rows)
        total = hits + misses + conflicts
        return {"commands": {n: int(k) for n, k in zip(c.command_names, self.commands) if k},
                "row_hits": hits, "row_misses": misses, "row_conflicts": conflicts,
                "row_hit_rate": hits / total if total else None, "bytes_over_pins": moved}


class _MacTally:
    """MAC commands by the operand format their stream computes in: a run with narrow block weights
    multiplies its KV cache, embeddings and LM head on another datapath, at another energy."""

    def __init__(self, compiled: Compiled):
        names = compiled.command_names
        macs = compiled.standard.commands_with_role(PimRole.MAC_ALL, PimRole.MAC_ONE)
        self._ids = [names.index(n) for n in macs]
        self._per_stream: dict[tuple, int] = {}
        self.by_format: dict[str, int] = {}

    def add(self, stream: Stream) -> None:
        if not stream.fmt or not self._ids:
            return
        self.by_format[stream.fmt] = self.by_format.get(stream.fmt, 0) + self.per_run(stream)

    def per_run(self, stream: Stream) -> int:
        """MAC commands in one run of the stream (counted once per stream key)."""
        n = self._per_stream.get(stream.key)
        if n is None:
            n = self._per_stream[stream.key] = int(np.isin(stream.cmd, self._ids).sum())
        return n

    @property
    def counted(self) -> bool:
        """Whether the standard has MAC commands to count."""
        return bool(self._ids)


def _check(compiled: Compiled, stream: Stream, err) -> None:
    if err[0] == ERR_STUCK:
        raise PimsimError(compiled.stuck_message(f"a command of {stream.key[0]}"))
    if err[0]:
        raise RuntimeError(f"pimsim bug: the mapper's stream {stream.key} broke the bank protocol "
                           f"(kernel error {int(err[0])} at command {int(err[1])})")


def _channels(compiled: Compiled, stream: Stream) -> np.ndarray:
    return np.unique(compiled.channel_of(stream.node))


@dataclass(frozen=True)
class _ChannelList:
    """A stream's channels, and how to pick them out of the State's channel rows: a slice where they are
    consecutive (numpy takes a slice in a fraction of the time of a list of indices: run() does it for
    every stream of every token)."""

    channels: list[int]
    index: slice | np.ndarray

    @staticmethod
    def of(channels: np.ndarray) -> _ChannelList:
        listed = channels.tolist()
        consecutive = listed == list(range(listed[0], listed[-1] + 1))
        return _ChannelList(listed, slice(listed[0], listed[-1] + 1) if consecutive else channels)


@dataclass(eq=False)
class _KernelInputs:
    """What CycleTiming derives from a stream for the kernel, kept per stream key: layers and tokens issue
    the same streams again and again."""

    cmd: np.ndarray  # the arrays it was derived from (a stream made afresh may place its commands anew)
    node: np.ndarray
    row: np.ndarray
    split: ChannelSplit | None  # its channel spans for the threads; None where it runs on one
    runs: np.ndarray  # repeat_runs of the stream grouped by channel (a ChannelSplit's order applied)
    periods: np.ndarray  # period_groups of the stream in that order
    in_stream_order: bool  # that order is the stream's own (its channels already lie together)
    # whether its channels go to numba's threads: decided by how long its first runs took on one (None: not
    # yet). Where a stream runs changes no result (the kernels agree for any thread count), only speed.
    split_pays: bool | None = None
    timed_once: bool = False  # one run took SPLIT_MIN_SECONDS or more (the first may include loading the kernel)
    # channels that issue alike (pimsim.dram.twins): per span of the split, its channel and the span issuing
    # what it issues (its kind's first); None where every channel issues something of its own
    twins: _Twins | None = None

    def of(self, stream: Stream) -> bool:
        return self.cmd is stream.cmd and self.node is stream.node and self.row is stream.row


@dataclass(frozen=True)
class _Twins:
    """A stream grouped by channel in which some channels issue the same commands (:mod:`pimsim.dram.twins`):
    the grouped arrays, and per channel span its channel and the first span issuing what it issues."""

    order: np.ndarray | None  # the split's order (None: the stream already lies grouped)
    cmd: np.ndarray
    node: np.ndarray
    column: np.ndarray
    bounds: np.ndarray
    span_channel: np.ndarray
    representative: np.ndarray
    uses: np.ndarray  # per span, twins.bank_uses of its commands (filled for representatives)

    @staticmethod
    def of(spec: Spec, stream: Stream, split: ChannelSplit, cmd: np.ndarray, node: np.ndarray, row: np.ndarray
           ) -> _Twins | None:
        """``cmd``, ``node``, ``row``: the stream's, grouped by channel (split.order applied)."""
        tree, order = spec.node, split.order
        column = stream.column if order is None else stream.column[order]
        representative = representatives(tree, cmd, node, row, column, split.bounds)
        kinds = np.unique(representative).tolist()
        if len(kinds) == len(representative):
            return None
        span_channel = tree[node[split.bounds[:-1]], N_ANC]
        uses = np.zeros((len(representative), tree[0, N_HI + 3] - tree[0, N_LO + 3], 3), np.int64)
        bounds = split.bounds.tolist()
        for g in kinds:
            lo, hi = bounds[g], bounds[g + 1]
            uses[g] = bank_uses(tree, spec.cmds, cmd, node, lo, hi, int(span_channel[g]))
        return _Twins(order, cmd, node, column, split.bounds, span_channel, representative, uses)

    def rows(self, stream: Stream) -> np.ndarray:
        rows = stream.rows()
        return rows if self.order is None else rows[self.order]


@dataclass(frozen=True)
class _Known:
    cycles: int  # refresh-free length of the stream, from an idle memory
    last_issue: int  # cycle its last command issues (a refresh due later than this never delays it)
    channel_cycles: dict  # channel -> refresh-free cycles until that channel's last command is done
    cost: float  # cycles one refresh due during the stream adds to it, on average (long streams)
    commands: np.ndarray  # per command kind, refresh-free
    rows: np.ndarray  # row hits, misses, conflicts
    extra: np.ndarray  # commands one refresh during the stream adds (PREA, reopening activates)
    landed: bool = False  # refreshes landing in it are simulated where they land (not charged an average)
    leaves_open: bool = False  # a bank is still open after its last command (a refresh then closes it first)
    channel_list: tuple = ()  # channel_cycles as (channel, cycles) pairs, for the per-use loop

    def __post_init__(self):
        object.__setattr__(self, "channel_list", tuple(self.channel_cycles.items()))


@dataclass(slots=True, eq=False)
class _Use:
    """What :meth:`FastTiming.run` keeps per stream key: the figures of its :class:`_Known` it reads on
    every use (copied out: one attribute load each), its runs by operand format, the refreshes charged
    at its average cost, and its landings."""

    index: int  # in the order of first runs
    stream: Stream  # the first run's (for its MAC count)
    known: _Known
    cycles: int
    last_issue: int
    cost: float
    landed: bool
    leaves_open: bool
    channels: tuple  # the channels it issues on
    channel_list: tuple  # (channel, refresh-free cycles) pairs
    runs: dict = field(default_factory=dict)  # operand format -> runs
    busy_refreshes: float = 0  # refreshes charged at the average cost (long streams)
    at: dict = field(default_factory=dict)  # landings simulated at their very cycle: cycle -> see FastTiming._landing
    bins: dict = field(default_factory=dict)  # landings simulated per bin: bin -> the same
    exact: int = 0  # landings simulated at their very cycle

    @classmethod
    def of(cls, index: int, stream: Stream, known: _Known) -> _Use:
        return cls(index, stream, known, known.cycles, known.last_issue, known.cost, known.landed, known.leaves_open,
                   tuple(known.channel_cycles), known.channel_list)


@dataclass(frozen=True)
class _ChannelKinds:
    """A stream's channels grouped by what they issue: channels that issue the same commands on the same
    banks relative to their channel (same rows, same columns), in the same order, run alike from an
    idle memory with refresh due at the same cycle on every rank, since no timing or bank state spans
    two channels and every channel has the same organisation and rules (what lets the parallel kernel
    split a stream by channel). A landing run issues one channel of each kind and counts it for all."""

    cmd: np.ndarray  # the commands of one channel of each kind, in stream order
    node: np.ndarray
    row: np.ndarray
    column: np.ndarray
    position: np.ndarray | None  # their positions in the stream (None: the whole stream, every channel a kind)
    channels: np.ndarray  # the channel issued for each kind
    weight: np.ndarray  # how many of the stream's channels are of each kind
    kind_of: dict  # each channel of the stream -> the channel issued for its kind

    @staticmethod
    def of(tree: np.ndarray, stream: Stream) -> _ChannelKinds:
        split = split_by_channel(tree[stream.node, N_ANC])  # channels interleaved: grouped, in stream order each
        issued = (stream.cmd, stream.node, stream.row, stream.column)
        if split.order is not None:
            issued = tuple(a[split.order] for a in issued)
        # each channel's first span issuing what it issues (its commands, nodes under the channel, rows, columns)
        first = representatives(tree, *issued, split.bounds)
        span_channel = tree[issued[1][split.bounds[:-1]], N_ANC].tolist()
        weight: dict[int, int] = {}  # the kinds by their first channel, in channel order
        kind_of: dict[int, int] = {}
        for c, g in zip(span_channel, first.tolist()):
            kind = kind_of[c] = span_channel[g]
            weight[kind] = weight.get(kind, 0) + 1
        channels = np.fromiter(weight, np.int64, len(weight))
        counts = np.fromiter(weight.values(), np.int64, len(weight))
        if len(weight) == len(span_channel):
            return _ChannelKinds(stream.cmd, stream.node, stream.row, stream.column, None, channels, counts, kind_of)
        position = np.flatnonzero(np.isin(tree[stream.node, N_ANC], channels))
        return _ChannelKinds(stream.cmd[position], stream.node[position], stream.row[position],
                             stream.column[position], position, channels, counts, kind_of)

    def summed(self, per_channel: np.ndarray) -> np.ndarray:
        """Rows of a state array per channel (counts, row outcomes), summed over the stream's channels: each
        kind's row as many times as it has channels."""
        return (per_channel[self.channels] * self.weight[:, None]).sum(axis=0)

    def check(self, compiled: Compiled, stream: Stream, err) -> None:
        """:func:`_check` of a run of these commands (a failing command named by its place in the stream)."""
        if err[0]:
            if self.position is not None:
                err[1] = self.position[err[1]]
            _check(compiled, stream, err)


class StreamTimer(Protocol):
    """What the engines need of a fidelity: how long a PIM command stream takes from a start time, and
    what the run's streams did (commands, row outcomes, per-channel busy time for the energy model).
    :class:`CycleTiming` and :class:`FastTiming` are the two; the engines never look behind this (only
    ``--check-protocol`` asks a CycleTiming that recorded its commands for ``protocol_violations()``).
    ``run_streams`` is ``run`` of each stream in turn; a timer may give it its own loop (FastTiming does),
    so a wrapper that watches streams wraps both."""

    fidelity: str
    track_channels: bool  # record each channel's end of the last stream (timelines)
    channel_ends: dict[int, int]
    busy_ps: np.ndarray  # per channel: time spent running command streams

    def run(self, stream: Stream, start_ps: int) -> int:
        """The time the stream's last command is done, issued no earlier than start_ps."""

    def run_streams(self, steps, start_ps: int, breakdown: dict | None) -> int:
        """Run each (stream, part, after) of `steps` in turn, the first from start_ps, each next one `after`
        ps after the one before it ends (a serial plan's streams, :mod:`pimsim.engine.serial_plan`), adding
        each stream's time to ``breakdown[part]`` (unless breakdown is None); returns the time the last
        ends plus its `after`."""

    def counts(self) -> dict:
        """Commands by kind, row hits/misses/conflicts, bytes over the pins, MACs by format, streams."""


class CycleTiming:
    fidelity = "cycle"

    def __init__(self, compiled: Compiled, record: bool = False):
        self.compiled = compiled
        self.record = record  # keep every issued command (kernel-added ones too) for the protocol checker
        self.records: list[np.ndarray] = []
        self.spec = compiled.spec
        self.state = new_state(self.spec)
        self.tck_ps = compiled.hw.dram.tCK_ps
        self._channels: dict[tuple, _ChannelList] = {}
        self._inputs: OrderedDict[tuple, _KernelInputs] = OrderedDict()  # per stream key, the KEPT_STREAMS latest
        self.track_channels = False  # record each channel's end of the last stream (for timelines)
        self.channel_ends: dict[int, int] = {}
        self._busy = [0.0] * compiled.hw.dram.organization.channels  # per channel, ps (busy_ps)
        self.macs = _MacTally(compiled)
        self.twins = TWIN_CHANNELS
        self.twin_channels = 0  # channels copied from a twin instead of issued
        self._latency_from = latency_from(self.spec.rules, self.spec.cmds.shape[0])

    @property
    def busy_ps(self) -> np.ndarray:
        """Per channel: time spent running command streams (for the energy model)."""
        return np.array(self._busy, np.float64)

    def run(self, stream: Stream, start_ps: int) -> int:
        """Issue the stream no earlier than start_ps; the time its last command is done."""
        # called for every PIM step of every token: the bookkeeping around the kernel is plain Python on
        # a handful of channels (the same arithmetic as numpy's, without its cost per small array)
        if len(stream) == 0:
            return start_ps
        self.macs.add(stream)
        start = -(-start_ps // self.tck_ps)  # one start cycle for every command
        inputs = self._kernel_inputs(stream)
        twins = inputs.twins if self.twins and inputs is not None else None
        could_split = twins is None and inputs is not None and inputs.split is not None and threads() > 1
        if twins is not None:
            # channels that start alike issue once (pimsim.dram.twins): the same state
            err, copied = issue_twins(self.spec, self.state, twins.cmd, twins.node, twins.rows(stream), twins.column,
                                      start, twins.bounds, twins.span_channel, twins.representative, twins.uses,
                                      self._latency_from, inputs.runs, inputs.periods, checked=True)
            self.twin_channels += copied
            if err[0] and twins.order is not None:
                err[1] = twins.order[err[1]]
        elif could_split and inputs.split_pays:
            # channels on numba's threads: the same state as the serial kernel
            _, _, err = run_commands_parallel(self.spec, inputs.split, stream.cmd, stream.node, stream.rows(),
                                              stream.column, np.full(1, start, np.int64), self.state,
                                              issue_cycles=False, runs=inputs.runs, periods=inputs.periods)
        elif self.record:
            _, _, rec, err = run_commands(self.spec, stream.cmd, stream.node, stream.rows(), stream.column,
                                          np.full(1, start, np.int64), record=True, state=self.state,
                                          issue_cycles=False)
            self.records.append(rec.copy())
        else:
            in_order = inputs is not None and inputs.in_stream_order
            runs, periods = (inputs.runs, inputs.periods) if in_order else (None, None)  # (in stream order only)
            # a stream that could go to the threads runs on one until decided, timed: it splits once two runs
            # took SPLIT_MIN_SECONDS or more (a process's first kernel call also loads the kernel), else never
            timed = could_split and inputs.split_pays is None
            cpu = time.thread_time() if timed else 0.0
            err = issue_into(self.spec, self.state, stream.cmd, stream.node, stream.rows(), stream.column, start, runs,
                             periods, checked=True)
            if timed:
                if time.thread_time() - cpu < SPLIT_MIN_SECONDS:
                    inputs.split_pays = False
                elif inputs.timed_once:
                    inputs.split_pays = True
                else:
                    inputs.timed_once = True
        if err[0]:
            _check(self.compiled, stream, err)
        known = self._channels.get(stream.key)
        if known is None:
            known = self._channels[stream.key] = _ChannelList.of(_channels(self.compiled, stream))
        chans = known.channels
        ends = self.state.chan[known.index, C_END].tolist()
        busy, tck = self._busy, self.tck_ps
        for c, e in zip(chans, ends):
            if e * tck - start_ps > 0:  # what numpy's busy[chans] += max(ends * tck - start_ps, 0) adds
                busy[c] += float(e * tck - start_ps)
        if self.track_channels:
            self.channel_ends = {c: int(e * tck) for c, e in zip(chans, ends)}
        return int(max(ends) * tck)

    def run_streams(self, steps, start_ps: int, breakdown: dict | None) -> int:
        """:meth:`StreamTimer.run_streams`: :meth:`run` of each in turn."""
        t = start_ps
        for stream, part, after in steps:
            end = self.run(stream, t)
            if breakdown is not None:
                breakdown[part] += end - t
            t = end + after
        return t

    def _kernel_inputs(self, stream: Stream) -> _KernelInputs | None:
        """The stream's channel split (a long stream's), runs of repeats, periodic groups and twin channels,
        derived once per stream key; None for a short stream (its kernel run costs about what deriving them
        would) or where every issued command is recorded, in stream order, for the protocol checker (one
        thread, command by command)."""
        if self.record or len(stream) < INPUTS_MIN_COMMANDS:
            return None
        known = self._inputs.get(stream.key)
        if known is None or not known.of(stream):
            split = split_by_channel(self.compiled.channel_of(stream.node))
            # runs and periods are the same for any row_offset (it moves every non-negative row alike)
            cmd, node, row = stream.cmd, stream.node, stream.row
            if split.order is not None:
                cmd, node, row = cmd[split.order], node[split.order], row[split.order]
            known = self._inputs[stream.key] = _KernelInputs(stream.cmd, stream.node, stream.row,
                                                             split if split.spans > 1
                                                             and len(stream) >= PARALLEL_MIN_COMMANDS else None,
                                                             repeat_runs(cmd, node, row),
                                                             period_groups(self.spec, cmd, node, row),
                                                             split.order is None,
                                                             twins=_Twins.of(self.spec, stream, split, cmd, node, row)
                                                             if self.twins and split.spans > 1 else None)
            if len(self._inputs) > KEPT_STREAMS:
                self._inputs.popitem(last=False)
        else:
            self._inputs.move_to_end(stream.key)
        return known

    def protocol_violations(self) -> tuple[int, list]:
        """Re-verify every command the run issued with the independent protocol checker:
        (commands checked, violations)."""
        from pimsim.dram.checker import check, issued_from_record

        if not self.record:
            raise RuntimeError("CycleTiming(record=True) keeps the commands the checker needs")
        rec = np.concatenate(self.records) if self.records else np.zeros((0, 6), np.int64)
        issued = issued_from_record(self.compiled, rec)
        return len(issued), check(self.compiled, issued)

    def counts(self) -> dict:
        c = _Counts(self.compiled)
        c.commands += self.state.counts.sum(axis=0)
        if self.compiled.hw.dram.refresh.enabled:  # refreshes due by the end that no later command forced out
            ref = self.compiled.command_names.index(self.compiled.refresh_command)
            due = int(self.state.chan[:, C_END].max()) // self.compiled.refresh_interval
            issued = self.state.counts[:, ref]
            c.commands[ref] += int(np.maximum(due - issued, 0).sum()) * self.compiled.hw.dram.organization.ranks
        c.rows += self.state.chan[:, C_HITS:C_CONFLICTS + 1].sum(axis=0)
        out = c.summary()
        out["distinct_streams"] = len(self._channels)
        out["macs_by_format"] = dict(self.macs.by_format)
        return out


class FastTiming:
    """Fast fidelity. ``follow_clock=False`` charges each use the expected refresh cost instead (the
    refreshes expected before its last command issues at the average cost, and the expected wait for
    one that fell due while the memory idled): what a piece of work timed once and reused elsewhere
    needs (:mod:`pimsim.step_costs`), since the refresh phase it happened to be timed at says nothing
    about where it is reused."""

    fidelity = "fast"

    def __init__(self, compiled: Compiled, follow_clock: bool = True):
        self.compiled = compiled
        self.follow_clock = follow_clock
        self.spec = compiled.spec
        params = compiled.spec.params.copy()
        params[P_REFRESH_ON] = 0
        self.spec_off = Spec(*compiled.spec[:-1], params)
        self.refresh = compiled.hw.dram.refresh.enabled
        self.nrefi = compiled.refresh_interval  # between two refresh commands of a rank (per-bank: nREFIPB)
        self.ref_id = compiled.command_names.index(compiled.refresh_command)
        self.nrfc = int(compiled.spec.cmds[self.ref_id, K_DONE])  # the refresh's own cycle (nRFC, per-bank nRFCPB)
        self.tck_ps = compiled.hw.dram.tCK_ps
        self._known: dict[tuple, _Known] = {}  # by stream key (distinct streams)
        self._by_commands: dict[tuple, _Known] = {}  # by the key of the commands simulated
        self._uses: dict[tuple, _Use] = {}  # by stream key, in the order of their first runs
        self._formats: dict[str, None] = {}  # operand formats run, in the order of their first runs
        self._landings: list[list] = []  # every landing simulated (see _landing), in order
        self._kinds: dict[tuple, _ChannelKinds] = {}  # by the key of the commands simulated (every stream simulated)
        self._idle = new_state(self.spec)  # copied for each landing run
        self._busy = np.zeros(compiled.hw.dram.organization.channels)  # per channel, ps, up to the runs logged
        # each run since: its stream's _Use.index and how refresh stretched it (busy_ps adds them up)
        self._run_uses, self._run_scales = array("q"), array("d")
        self.track_channels = False
        self.channel_ends: dict[int, int] = {}
        self.free = 0.0  # cycle the memory finished its last stream
        self._channel_free = [0.0] * compiled.hw.dram.organization.channels  # cycle each channel finished its last
        self.open_after = False  # the last stream left a bank open
        self.due = float(first_refresh_due(compiled.spec.params, 1)[0])  # the next refresh not yet run
        close = int(compiled.spec.params[P_PREA])  # the command a refresh closes open banks with
        self.close_cycles = int(rule_latency(compiled.spec.rules, compiled.spec.rule_ptr, self.ref_id, close))
        self.macs = _MacTally(compiled)

    def known(self, stream: Stream) -> _Known:
        """What one run of the stream costs (simulated on first sight; a stream issuing the same commands
        as one simulated before, ``Stream.commands_key``, costs what that one did: the simulation reads
        nothing but the commands)."""
        k = self._known.get(stream.key)
        if k is None:
            same = stream.commands_key or stream.key
            k = self._by_commands.get(same)
            if k is None:
                k = self._by_commands[same] = self._simulate(stream)
            self._known[stream.key] = k
        return k

    def _simulate(self, stream: Stream) -> _Known:
        ncmd = len(self.compiled.command_names)
        if len(stream) == 0:
            return _Known(0, 0, {}, 0.0, np.zeros(ncmd, np.int64), np.zeros(3, np.int64), np.zeros(ncmd))
        chans = _channels(self.compiled, stream)
        zero = np.zeros(1, np.int64)  # every command may issue from cycle 0
        kinds = self._kinds_of(stream)  # one channel of each kind issued, counted for all
        st, issue_at, _, err = run_commands(self.spec_off, kinds.cmd, kinds.node, kinds.row, kinds.column, zero)
        kinds.check(self.compiled, stream, err)
        d0 = int(st.chan[kinds.channels, C_END].max())
        last_issue = int(issue_at.max())
        counts = kinds.summed(st.counts)
        cost, extra = 0.0, np.zeros(ncmd)
        landed = self.follow_clock and last_issue < LANDED_INTERVALS * self.nrefi
        if self.refresh and not landed:
            # again with refreshes: the first due at one of SAMPLES points spread over the first nREFI
            # (or the whole of a shorter stream), the rest every nREFI after; what a refresh costs
            # depends on where it lands (rows open or not), so cost and added commands per refresh
            # are averaged over the runs
            n = self.nrefi
            span = min(last_issue, n)
            if self.follow_clock:
                points = sorted({max(int((k + 0.5) * GOLDEN % 1 * span), 1) for k in range(SAMPLES)})
            else:  # as fast fidelity sampled before it followed the clock (step costs keep their figures)
                points = sorted({max((2 * k + 1) * span // (2 * EXPECTED_SAMPLES), 1) for k in range(EXPECTED_SAMPLES)})
            costs, added = [], np.zeros(ncmd)
            states = []
            for due in points:
                st1 = new_state(self.spec)
                st1.ref_due[:] = due
                states.append(st1)
            args = (kinds.cmd, kinds.node, kinds.row, kinds.column, zero)
            if len(kinds.cmd) >= PARALLEL_MIN_COMMANDS and threads() > 1:  # independent runs: side by side
                runs = run_commands_into(self.spec, states, *args)
            else:
                runs = [(st1, run_commands(self.spec, *args, state=st1, issue_cycles=False)[3]) for st1 in states]
            for st1, err in runs:
                kinds.check(self.compiled, stream, err)
                cycles, more, refreshes = self._refresh_effect(st1, kinds, d0, counts)
                costs.append(cycles / refreshes)
                added += more / refreshes
            cost = sum(costs) / len(costs)
            if cost >= n:
                raise PimsimError(self.compiled.stuck_message(f"a command of {stream.key[0]}"))
            extra = added / len(points)  # PREA, reopening activates (REF is counted apart)
            extra[self.ref_id] = 0
        per_channel = {int(c): int(st.chan[kinds.kind_of[int(c)], C_END]) for c in chans}
        # (a bank of a channel not issued is idle, closed, like its kind's)
        return _Known(d0, last_issue, per_channel, cost, counts, kinds.summed(st.chan[:, C_HITS:C_CONFLICTS + 1]),
                      extra, landed, bool((st.bank[:, B_OPEN] >= 0).any()))

    def _landing(self, stream: Stream, use: _Use, lead: float) -> list:
        """What refreshes falling due from `lead` cycles into the stream on (one every nREFI) cost it:
        [cycles, commands they add, times charged, refreshes]. Simulated at that very cycle for the first
        EXACT_LANDINGS distinct ones of each stream (a locked phase brings the same few back again and
        again, and the cost jumps by a third of nRFC from one cycle to the next where a row opens or
        closes), then once per bin of its length."""
        due = int(lead)
        got = use.at.get(due)
        if got is not None:
            return got
        k = use.known
        if use.exact < EXACT_LANDINGS:
            use.exact += 1
            kept, slot, at = use.at, due, due
        else:
            width = max(k.last_issue // SHORT_BINS, 1) if 2 * k.last_issue < self.nrefi else LONG_BIN_CYCLES
            kept, slot = use.bins, due // width
            got = kept.get(slot)
            if got is not None:
                return got
            at = slot * width + width // 2  # the bin's middle
        cycles, added, refreshes = self._land(stream, k, max(min(at, k.last_issue), 1))
        got = kept[slot] = [cycles, added, 0, refreshes]
        self._landings.append(got)
        return got

    def _land(self, stream: Stream, k: _Known, due: int) -> tuple[int, np.ndarray, int]:
        """The stream run from an idle memory with every rank's first refresh due at cycle `due` (the rest
        every nREFI after): the cycles the refreshes add to it, the commands they add (REF counted apart)
        and the refreshes on its busiest channel (at least 1)."""
        kinds = self._kinds_of(stream)
        cycles, added, refreshes = self._refresh_effect(self._landing_state(stream, kinds, due), kinds, k.cycles,
                                                        k.commands)
        added[self.ref_id] = 0  # REF is counted apart
        return cycles, added, refreshes

    def _refresh_effect(self, ran: State, kinds: _ChannelKinds, cycles: int, commands: np.ndarray
                        ) -> tuple[int, np.ndarray, int]:
        """What the refreshes of a run from an idle memory (`ran`: its state) added to the refresh-free run
        of `cycles` cycles and `commands` per kind: the cycles (to the channel that ends last), the commands
        per kind (REF among them) and the refreshes on its busiest channel (at least 1)."""
        refreshes = max(int(ran.counts[kinds.channels, self.ref_id].max()), 1)
        added = (kinds.summed(ran.counts) - commands).astype(np.float64)
        return max(int(ran.chan[kinds.channels, C_END].max()) - cycles, 0), added, refreshes

    def _landing_state(self, stream: Stream, kinds: _ChannelKinds, due: int) -> State:
        """The state after issuing one channel of each kind of the stream from an idle memory with refresh
        due at cycle `due` on every rank (the kinds' channels hold what the whole stream's would)."""
        st1 = State(*(a.copy() for a in self._idle))
        st1.ref_due[:] = due
        err = issue_into(self.spec, st1, kinds.cmd, kinds.node, kinds.row, kinds.column, 0)
        kinds.check(self.compiled, stream, err)
        return st1

    def _kinds_of(self, stream: Stream) -> _ChannelKinds:
        """The stream's channels by what they issue, one of each kind kept (cached per commands simulated)."""
        same = stream.commands_key or stream.key
        kinds = self._kinds.get(same)
        if kinds is None:
            kinds = self._kinds[same] = _ChannelKinds.of(self.spec.node, stream)
        return kinds

    @property
    def busy_ps(self) -> np.ndarray:
        """Per channel: time spent running command streams. Each run adds each of its channels' refresh-free
        cycles times its stretch times tCK, in the order of the runs: summed here, from the log the runs
        keep (adding 0 for a channel a stream leaves idle changes no sum), by a running sum (numpy's
        accumulate adds in order, as the loop over the runs did)."""
        self._add_busy()
        return self._busy.copy()

    def _add_busy(self) -> None:
        """Add the logged runs' busy time to each channel's and clear the log."""
        if len(self._run_uses):
            uses = list(self._uses.values())
            cycles = np.zeros((len(uses), len(self._busy)))  # per stream key, each channel's refresh-free cycles
            for use in uses:
                for c, cyc in use.channel_list:
                    cycles[use.index, c] = cyc
            which = np.frombuffer(self._run_uses, np.int64)
            scales = np.frombuffer(self._run_scales, np.float64)
            for lo in range(0, len(which), BUSY_BLOCK):  # (bounded memory)
                added = cycles[which[lo:lo + BUSY_BLOCK]] * scales[lo:lo + BUSY_BLOCK, None] * self.tck_ps
                self._busy = np.add.accumulate(np.vstack([self._busy, added]), axis=0)[-1]
            self._run_uses, self._run_scales = array("q"), array("d")

    def run(self, stream: Stream, start_ps: int) -> int:
        return self.run_streams(((stream, None, 0),), start_ps, None)

    def run_streams(self, steps, start_ps: int, breakdown: dict | None) -> int:
        """:meth:`StreamTimer.run_streams` in one loop: exactly `run` of each in turn (which is this loop over
        one stream)."""
        # every PIM step of every token comes here: plain Python floats and lists (the same IEEE
        # arithmetic as numpy's float64, in the same order, without numpy's per-scalar cost), one look-up
        # of the stream's key (hashing a key tuple costs about what the arithmetic does), and the timer's
        # state in local variables for the whole list
        uses_of, formats = self._uses, self._formats
        tck, refresh, follow_clock = self.tck_ps, self.refresh, self.follow_clock
        n, nrfc, close_cycles = self.nrefi, self.nrfc, self.close_cycles
        channel_free = self._channel_free
        log_use, log_scale = self._run_uses.append, self._run_scales.append
        free_at = channel_free.__getitem__
        due, free, open_after = self.due, self.free, self.open_after
        done_due, done_free, done_open = due, free, open_after  # as of the last step finished
        t = start_ps
        try:
            for stream, part, after in steps:
                use = uses_of.get(stream.key)
                if use is None:
                    use = uses_of[stream.key] = _Use.of(len(uses_of), stream, self.known(stream))
                runs, fmt = use.runs, stream.fmt
                count = runs.get(fmt)
                if count is None:
                    runs[fmt] = 1
                    formats.setdefault(fmt)
                else:
                    runs[fmt] = count + 1
                start = first = t / tck
                cycles = use.cycles
                end = start + cycles
                if cycles and refresh:
                    if follow_clock:
                        if due <= start:
                            # refreshes fell due while the stream's channels idled (or after their last
                            # command issued): they ran then, and the latest may still hold a rank (closing
                            # the banks the last stream left open first) when this stream comes
                            latest = due + ((start - due) // n) * n
                            ready = max(latest, max(map(free_at, use.channels))) + nrfc + \
                                (close_cycles if open_after else 0)
                            if ready > first:
                                first = ready
                                end = ready + cycles
                            due = latest + n
                        lead = due - first  # where the next refresh falls due, in the stream's refresh-free time
                        if lead <= use.last_issue:  # it lands before the last command issues
                            if use.landed:  # what the refresh due `lead` into it, and those every nREFI after, cost
                                landing = self._landing(stream, use, lead)
                                landing[2] += 1
                                end += landing[0]
                                due += n * landing[3]
                            else:
                                # each costs what one cost it on average and pushes the rest of the stream
                                # later, past more refreshes
                                hits = (use.last_issue - lead) // (n - use.cost) + 1
                                use.busy_refreshes += hits
                                end += hits * use.cost
                                due += hits * n
                        open_after = use.leaves_open
                    else:
                        # a refresh that fell due in the idle time before the stream (uniformly, once per
                        # nREFI) holds the rank for nRFC from then: the expected wait
                        m = min(max(start - free, 0.0), nrfc)
                        wait = (nrfc * m - m * m / 2) / n
                        # refreshes due before its last command issues each cost what one cost it on
                        # average; they come once per nREFI, and each pushes the rest later (a geometric series)
                        hits = use.last_issue / (n - use.cost)
                        use.busy_refreshes += hits
                        end += wait + hits * use.cost
                if end > free:
                    free = end
                scale = (end - start) / cycles if cycles else 0.0
                for c, cyc in use.channel_list:
                    channel_free[c] = start + cyc * scale
                log_use(use.index)
                log_scale(scale)
                if self.track_channels:  # each channel's share of the stream, stretched like the whole by refresh
                    self.channel_ends = {c: round((start + cyc * scale) * tck) for c, cyc in use.channel_list}
                done = round(end * tck)
                if breakdown is not None:
                    breakdown[part] += done - t
                t = done + after
                done_due, done_free, done_open = due, free, open_after
        finally:  # a step that raised (a stuck landing run) leaves the refresh clock where the last one did
            self.due, self.free, self.open_after = done_due, done_free, done_open
        if len(self._run_uses) >= BUSY_BLOCK:  # (the log stays short on a long run)
            self._add_busy()
        return t

    def counts(self) -> dict:
        c = _Counts(self.compiled)
        extra = np.zeros(len(self.compiled.command_names))
        macs = {fmt: 0 for fmt in self._formats if fmt} if self.macs.counted else None
        for use in self._uses.values():
            k = use.known
            uses = sum(use.runs.values())
            c.commands += k.commands * uses
            c.rows += k.rows * uses
            extra += k.extra * use.busy_refreshes
            if macs is not None and any(fmt for fmt in use.runs):  # a run with an operand format: it has MACs
                per_run = self.macs.per_run(use.stream)
                for fmt, runs in use.runs.items():
                    if fmt:
                        macs[fmt] += per_run * runs
        for _, added, times, _ in self._landings:
            extra += added * times
        c.commands += np.round(extra).astype(np.int64)
        if self.refresh:  # every rank refreshes every nREFI, busy or not
            org = self.compiled.hw.dram.organization
            c.commands[self.ref_id] += int(self.free // self.nrefi) * org.channels * org.ranks
        out = c.summary()
        out["distinct_streams"] = len(self._known)
        out["macs_by_format"] = macs if macs is not None else {}
        return out


def timing_for(compiled: Compiled, fidelity: str, record: bool = False) -> StreamTimer:
    if fidelity == "cycle":
        return CycleTiming(compiled, record)
    if fidelity == "fast":
        return FastTiming(compiled)
    raise PimsimError(f"fidelity must be 'cycle' or 'fast', not {fidelity!r}")
