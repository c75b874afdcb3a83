"""The event-driven core: programs of instructions on three units (ASIC, links, PIM channels), a heap
of events.

Each unit takes its instructions in program order; an instruction starts once its unit is free and
every instruction it depends on has finished. Events are ``(time, priority, seq)``: equal times go by
unit priority, then by the order they were made, so a run is deterministic.

The ``serial`` schedule makes every instruction depend on the one before it (the PIM-GPT paper's
simulator fetches an instruction only when ASIC and PIM are both idle); ``overlap`` keeps only data
dependencies, so the ASIC works while the banks compute whatever does not need its result.

This core times one program with every unit to itself: the system engine (:mod:`pimsim.engine.system`)
uses it for a process that runs alone, and goes through SimPy resources instruction by instruction,
with the same rules, where several processes share the units.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from pimsim.engine.lowering import NO_WORK, Step, Work, WorkTally
from pimsim.mapper.model import Stream

UNITS = ("pim", "link", "asic")  # also the tie-break priority of events at the same time


@dataclass(slots=True, eq=False)
class Instr:
    """One instruction placed in a program. ``deps`` are the instructions it waits for (by reference);
    its duration is ``ps`` (ASIC and link work) or what the stream timer says ``stream`` takes; ``work``
    is what the energy model charges for it beyond the DRAM commands (counted by whoever runs it)."""

    unit: str
    part: str
    name: str
    layer: int | None
    deps: tuple[Instr, ...] = ()
    ps: int = 0  # duration, for ASIC and link work
    stream: Stream | None = None  # command streams, for PIM work
    work: Work = NO_WORK
    start: int = 0
    end: int = 0
    channel_ends: dict | None = None  # PIM work: when each channel finished (recorded for timelines)
    index: int = -1  # its place in its program (set by Program.append)


@dataclass
class Program:
    """Instructions in program order; each one's dependencies are earlier instructions of the program."""

    instrs: list[Instr] = field(default_factory=list)

    def append(self, ins: Instr) -> Instr:
        ins.index = len(self.instrs)
        self.instrs.append(ins)
        return ins

    def add_steps(self, steps, name: str, layer: int | None, deps: tuple[Instr, ...]) -> Instr | None:
        """An op's steps (:class:`pimsim.engine.lowering.Step`) one after another, the first waiting for
        `deps`; returns the last (what the op's consumers wait for)."""
        last = None
        for step in steps:
            last = self.append(Instr(step.unit, step.part, name, layer, (last,) if last is not None else deps,
                                     step.ps, step.stream, step.work))
        return last

    def __iter__(self):
        return iter(self.instrs)

    def __len__(self) -> int:
        return len(self.instrs)

    def __getitem__(self, i):
        return self.instrs[i]


def run_program(program: Program | list[Instr], t0: int, timing, serial: bool, use_heap: bool = False) -> int:
    """Time a program starting at t0 (picoseconds) with a stream timer (``timing.run(stream, start)``);
    fills each instruction's start and end, returns the time the last one ends."""
    instrs = program.instrs if isinstance(program, Program) else program
    if serial and not use_heap:
        return _run_serial(instrs, t0, timing)
    n = len(instrs)
    for i, ins in enumerate(instrs):
        if ins.index != i:
            if ins.index != -1:
                raise RuntimeError("pimsim bug: an instruction placed in another program")
            ins.index = i
    waiting = [0] * n
    ready_at = [t0] * n
    dependents: list[list[int]] = [[] for _ in range(n)]
    for i, ins in enumerate(instrs):
        deps = (i - 1,) if serial and i else tuple(d.index for d in ins.deps)
        if any(not 0 <= d < i for d in deps):
            raise RuntimeError(f"pimsim bug: instruction {i} depends on one that is not before it in its program")
        waiting[i] = len(deps)
        for d in deps:
            dependents[d].append(i)
    queues = {u: deque() for u in UNITS}
    for i, ins in enumerate(instrs):
        queues[ins.unit].append(i)
    busy = dict.fromkeys(UNITS, False)
    heap: list[tuple[int, int, int, int]] = []
    seq = 0
    end = t0

    def try_start(unit: str, now: int) -> None:
        nonlocal seq
        q = queues[unit]
        if busy[unit] or not q or waiting[q[0]]:
            return
        i = q.popleft()
        ins = instrs[i]
        ins.start = max(now, ready_at[i])
        ins.end = timing.run(ins.stream, ins.start) if ins.stream is not None else ins.start + ins.ps
        if ins.stream is not None and timing.track_channels:
            ins.channel_ends = timing.channel_ends
        busy[unit] = True
        heapq.heappush(heap, (ins.end, UNITS.index(unit), seq, i))
        seq += 1

    for u in UNITS:
        try_start(u, t0)
    while heap:
        now, _, _, i = heapq.heappop(heap)
        end = max(end, now)
        busy[instrs[i].unit] = False
        for j in dependents[i]:
            waiting[j] -= 1
            if now > ready_at[j]:
                ready_at[j] = now
        for u in UNITS:
            try_start(u, now)
    if any(queues.values()):
        raise RuntimeError("pimsim bug: instructions left waiting on a dependency that never finished")
    return end


def _run_serial(instrs: list[Instr], t0: int, timing) -> int:
    """The serial schedule without the heap: with every instruction waiting for the one before it, the
    event loop above reduces to this (a test holds the two together)."""
    now = t0
    track = timing.track_channels
    for ins in instrs:
        ins.start = now
        if ins.stream is None:
            now = ins.end = now + ins.ps
        else:
            now = ins.end = timing.run(ins.stream, now)
            if track:
                ins.channel_ends = timing.channel_ends
    return now


def run_steps(steps: list[Step], start_ps: int, timing, breakdown: dict, tally: WorkTally) -> int:
    """Steps one after another from `start_ps` (the serial schedule without instruction objects: what
    :func:`run_program` does with ``serial`` for the program of these steps); returns the end time, adds
    each step's time to `breakdown` and its work to `tally`."""
    t = start_ps
    for _, part, ps, stream, work in steps:
        end = timing.run(stream, t) if stream is not None else t + ps
        breakdown[part] += end - t
        t = end
        if work is not NO_WORK:  # WorkTally.add, inline: this loop runs for every step of every token
            tally.link_bytes += work.link_bytes
            tally.asic_lane_ops += work.asic_lane_ops
            tally.asic_sram_bytes += work.asic_sram_bytes
            tally.extra_vector_macs += work.extra_vector_macs
    return t
