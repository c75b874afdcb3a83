"""The system engine on SimPy: models being decoded are processes that submit their steps to shared units.

Resources: the ASIC (one per system, shared by every model of a run), and per channel group its links
and its PIM channels (a group is the memory one model's weights live in: the whole memory, or a
speculative draft's own channels), each group timed by its own stream timer
(:mod:`pimsim.engine.dram_timing`, cycle or fast fidelity behind ``timing.run(stream, start) -> end``).
SimPy handles instructions, never DRAM commands: a PIM step holds its group's channels for as long as
the stream timer says its command stream takes.

A process runs its model's steps in order (the serial schedule within each model: each step starts
when the one before it ended and its unit is free). Two processes on one system contend for the ASIC
(and for a channel group they share): a step waiting for a unit starts when the unit is released, in
request order (SimPy's FIFO, events at equal times in the order they were scheduled), so runs are
deterministic. A step's busy time, not its wait, counts to its part.

Where this engine runs: speculative decoding (vanilla and PEARL, :mod:`pimsim.engine.specdec`), the one
place two models run at once. A lone model's decode steps and the encoder pass go through the event
core of :mod:`pimsim.engine.events` instead: with a single process every request is granted at once,
so SimPy would give the same times (a test holds the two together) at about 17 us per instruction,
several times the cost of the whole direct loop on long runs.
"""

from __future__ import annotations

import simpy

from pimsim.engine.dram_timing import StreamTimer
from pimsim.engine.lowering import NO_WORK, Step


class ChannelGroup:
    """One model's memory: its links and PIM channels (each a unit taking one step at a time) and the
    stream timer of its DRAM state."""

    def __init__(self, env: simpy.Environment, timing: StreamTimer):
        self.timing = timing
        self.link = simpy.Resource(env, capacity=1)
        self.pim = simpy.Resource(env, capacity=1)


class System:
    """A SimPy environment (picoseconds) with the shared ASIC and the channel groups of a run."""

    def __init__(self):
        self.env = simpy.Environment()
        self.asic = simpy.Resource(self.env, capacity=1)
        self._groups: dict[int, ChannelGroup] = {}

    def group(self, timing: StreamTimer) -> ChannelGroup:
        """The channel group timed by `timing` (models sharing a DRAM state share its group)."""
        got = self._groups.get(id(timing))
        if got is None:
            got = self._groups[id(timing)] = ChannelGroup(self.env, timing)
        return got

    def steps(self, group: ChannelGroup, steps: list[Step], breakdown: dict, work):
        """A process body: run `steps` in order on the ASIC and `group`'s units; adds each step's busy
        time to `breakdown` and its work to `work` (a WorkTally). Returns the end time."""
        env, timing = self.env, group.timing
        units = {"asic": self.asic, "link": group.link, "pim": group.pim}
        for step in steps:
            with units[step.unit].request() as request:
                yield request
                start = env.now
                end = timing.run(step.stream, start) if step.stream is not None else start + step.ps
                if end > start:
                    yield env.timeout(end - start)
            breakdown[step.part] += end - start
            if step.work is not NO_WORK:
                work.add(step.work)
        return env.now

    def run(self, *processes) -> int:
        """Run until every given process has finished; returns the time then."""
        self.env.run(until=self.env.all_of(processes))
        return self.env.now
