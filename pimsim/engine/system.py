"""The system engine on SimPy: every way of running a model (autoregressive decode, the encoder pass, a
prefill, vanilla and PEARL speculative decoding) is a process that submits its work to shared units.

Resources: the ASIC (one per system, shared by every model of a run), and per channel group its links
and its PIM channels (a group is the memory one model's weights live in: the whole memory, or a
speculative draft's own channels), each group timed by its own stream timer
(:mod:`pimsim.engine.dram_timing`, cycle or fast fidelity behind ``timing.run(stream, start) -> end``).
SimPy handles instructions, never DRAM commands: a PIM instruction holds its group's channels for as
long as the stream timer says its command stream takes.

A model's process (:meth:`System.start`) submits work with ``yield from system.submit(...)``: a list of
steps (the serial schedule: each starts when the one before it ended and its unit is free) or a
:class:`~pimsim.engine.events.Program` with its schedule (``overlap``: each unit takes its instructions
in program order, an instruction starts when its unit is free and the instructions it depends on are
done). Two processes on one system contend for the ASIC (and for a channel group they share): an
instruction waiting for a unit starts when the unit is released, in request order (SimPy's FIFO, events
at equal times in the order they were scheduled), so runs are deterministic. An instruction's busy
time, not its wait, counts to its part.

The system knows how many model processes it runs. While a process is the only one, nothing can make
its requests wait: every unit is free when it asks, so each instruction starts as soon as the
instruction before it on its unit and the ones it depends on are done, and the stream timer (the only
state an instruction changes) is called in the PIM unit's program order. That is exactly what the event
core of :mod:`pimsim.engine.events` computes (:func:`~pimsim.engine.events.run_program`, or
:func:`~pimsim.engine.events.run_steps` for a list of steps), so a lone process's submission is timed
there in one piece and costs one SimPy timeout (SimPy per instruction costs about 17 us, several times
the whole direct loop on long runs; a test holds the two together on both schedules). A model may not
start while a submission timed in one piece is still running (it could not be interleaved with it).
"""

from __future__ import annotations

import simpy

from pimsim.engine.dram_timing import StreamTimer
from pimsim.engine.events import UNITS, Instr, Program, run_program, run_steps
from pimsim.engine.lowering import NO_WORK, Step, WorkTally
from pimsim.engine.serial_plan import Plan, run_plan


class ChannelGroup:
    """One model's memory: its links and PIM channels (each a unit taking one instruction at a time) and
    the stream timer of its DRAM state."""

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
        self._models = 0  # model processes started and not yet finished
        self._alone_until = 0  # when the last submission timed in one piece ends

    def group(self, timing: StreamTimer) -> ChannelGroup:
        """The channel group timed by `timing` (models sharing a DRAM state share its group)."""
        got = self._groups.get(id(timing))
        if got is None:
            got = self._groups[id(timing)] = ChannelGroup(self.env, timing)
        return got

    @property
    def alone(self) -> bool:
        """Whether one model process runs on the system (its submissions are timed in one piece)."""
        return self._models == 1

    def start(self, body) -> simpy.Process:
        """Start a model's process: `body` is a generator that submits its work with
        ``yield from system.submit(...)``; the process's value is what `body` returns."""
        if self.env.now < self._alone_until:
            raise RuntimeError("pimsim bug: a model started while another's submission, timed alone in one piece, "
                               "was still running")
        self._models += 1
        return self.env.process(self._model(body))

    def _model(self, body):
        try:
            return (yield from body)
        finally:
            self._models -= 1

    def run(self, *processes) -> int:
        """Run until every given process has finished; returns the time then."""
        self.env.run(until=self.env.all_of(processes))
        return self.env.now

    def submit(self, group: ChannelGroup, work: list[Step] | Program | Plan, breakdown: dict, tally: WorkTally,
               serial: bool = True):
        """A process step: run `work` from now on the ASIC and `group`'s units, a list of steps one after
        another or a program on its schedule (`serial`: each instruction waits for the one before it; else only for
        its dependencies), or, for a process alone on the system, a serial :class:`~pimsim.engine.serial_plan.Plan`
        (steps folded between their streams: it cannot be interleaved with another process's work). Adds each
        instruction's busy time to `breakdown` and its work to `tally`; fills a program's instructions' start
        and end. Returns the time the last one ends."""
        if self._models < 1:
            raise RuntimeError("pimsim bug: work submitted by a process not started with System.start")
        if isinstance(work, Plan) and (self._models != 1 or not serial):
            raise RuntimeError("pimsim bug: a plan is timed alone and serially; with other processes submit its steps")
        if not serial and not isinstance(work, Program):
            raise RuntimeError("pimsim bug: a list of steps has no dependencies to overlap; submit a Program")
        if self._models == 1:  # alone: every request would be granted at once (see the module docstring)
            end = self._alone(group, work, breakdown, tally, serial)
            self._alone_until = end
            yield self.env.timeout(end - self.env.now)
            return end
        if not isinstance(work, Program):
            return (yield from self._in_order(group, work, breakdown, tally, False))
        if serial:
            return (yield from self._in_order(group, work.instrs, breakdown, tally, True))
        return (yield from self._overlap(group, work, breakdown, tally))

    def _alone(self, group: ChannelGroup, work, breakdown: dict, tally: WorkTally, serial: bool) -> int:
        """`work` timed in one piece by the event core, from now (nothing else runs meanwhile)."""
        if isinstance(work, Plan):
            return run_plan(work, self.env.now, group.timing, breakdown, tally)
        if not isinstance(work, Program):
            return run_steps(work, self.env.now, group.timing, breakdown, tally)
        end = run_program(work, self.env.now, group.timing, serial)
        _count(work.instrs, breakdown, tally)
        return end

    def _units(self, group: ChannelGroup) -> dict[str, simpy.Resource]:
        return {"asic": self.asic, "link": group.link, "pim": group.pim}

    def _in_order(self, group: ChannelGroup, work: list, breakdown: dict, tally: WorkTally, instrs: bool):
        """Steps (or a program's instructions, `instrs`) one after another, each on its unit once the unit
        is free."""
        env, timing = self.env, group.timing
        units = self._units(group)
        track = instrs and timing.track_channels
        for item in work:
            with units[item.unit].request() as request:
                yield request
                start = env.now
                end = timing.run(item.stream, start) if item.stream is not None else start + item.ps
                if instrs:
                    item.start, item.end = start, end
                    if track and item.stream is not None:
                        item.channel_ends = timing.channel_ends
                if end > start:
                    yield env.timeout(end - start)
            breakdown[item.part] += end - start
            if item.work is not NO_WORK:
                tally.add(item.work)
        return env.now

    def _overlap(self, group: ChannelGroup, program: Program, breakdown: dict, tally: WorkTally):
        """A program on the overlap schedule: one process per unit takes that unit's instructions in program
        order, each once the instructions it depends on are done and the unit is free."""
        env, instrs = self.env, program.instrs
        for i, ins in enumerate(instrs):
            if ins.index != i or any(not (0 <= d.index < i and instrs[d.index] is d) for d in ins.deps):
                raise RuntimeError(f"pimsim bug: instruction {i} is out of its program or depends on one that is "
                                   "not before it in its program")
        done = [env.event() for _ in instrs]
        units = self._units(group)
        queues: dict[str, list[Instr]] = {u: [] for u in UNITS}
        for ins in instrs:
            queues[ins.unit].append(ins)
        runners = [env.process(self._unit_runner(units[u], group.timing, queues[u], done)) for u in UNITS if queues[u]]
        if runners:
            yield env.all_of(runners)
        _count(instrs, breakdown, tally)
        return env.now

    def _unit_runner(self, unit: simpy.Resource, timing: StreamTimer, queue: list[Instr], done: list[simpy.Event]):
        env = self.env
        for ins in queue:
            waits = [done[d.index] for d in ins.deps if not done[d.index].triggered]
            if waits:
                yield env.all_of(waits)
            with unit.request() as request:
                yield request
                start = env.now
                end = timing.run(ins.stream, start) if ins.stream is not None else start + ins.ps
                ins.start, ins.end = start, end
                if ins.stream is not None and timing.track_channels:
                    ins.channel_ends = timing.channel_ends
                if end > start:
                    yield env.timeout(end - start)
            done[ins.index].succeed()


def _count(instrs: list[Instr], breakdown: dict, tally: WorkTally) -> None:
    """Timed instructions' busy time to their parts of `breakdown`, their work to `tally`."""
    for ins in instrs:
        breakdown[ins.part] += ins.end - ins.start
        if ins.work is not NO_WORK:
            tally.add(ins.work)
