"""The serial schedule at fast fidelity, with the Python per step taken out: a token's steps folded into
one list of PIM streams, each with the fixed (ASIC and link) time that follows it.

Under the serial schedule a fixed step only adds its integer picoseconds to the clock and to its part
of the breakdown, so any run of them between two streams can be added up beforehand: a :class:`Plan`
keeps, for a sequence of steps, the fixed time before its first stream, every stream with its part and
the fixed time after it, and the fixed time and work by part, summed. Running a plan is then the timer's
``run_streams`` (one ``run`` per stream) and an integer addition; the streams are timed in the same order and from the
same start times as step by step, so every figure is the same (a test holds the two together).

At fast fidelity every layer of a model's decode step shares one op's steps at a position (ops of one
shape, see :meth:`pimsim.engine.decode.DecodeSimulation._op_steps`; a GEMV's are its tensor's, whose
stream has the same key in every layer), so a token is a few blocks of ops (the embeddings, a layer
repeated for every layer alike, the head), and its plan is built from one plan per distinct op and one
join per block rather than from every op of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.engine.lowering import NO_WORK, Step


@dataclass(frozen=True)
class Plan:
    """A sequence of steps run one after another: ``lead`` ps of fixed steps, then each stream of
    ``pims`` (stream, part, fixed ps after it); ``fixed`` the fixed steps' ps by part, ``work`` the
    steps' Work summed (link bytes, ASIC lane ops, ASIC buffer bytes, extra vector MACs)."""

    lead: int
    pims: tuple
    fixed: tuple  # (part, ps) pairs
    work: tuple[int, int, int, int]

    @staticmethod
    def of(steps: list[Step]) -> Plan:
        lead, pims, fixed = 0, [], {}
        link = lanes = sram = macs = 0
        for _, part, ps, stream, work in steps:
            if stream is not None:
                pims.append([stream, part, 0])
            else:
                fixed[part] = fixed.get(part, 0) + ps
                if pims:
                    pims[-1][2] += ps
                else:
                    lead += ps
            if work is not NO_WORK:
                link += work.link_bytes
                lanes += work.asic_lane_ops
                sram += work.asic_sram_bytes
                macs += work.extra_vector_macs
        return Plan(lead, tuple(tuple(p) for p in pims), tuple(fixed.items()), (link, lanes, sram, macs))

    def signature(self) -> tuple:
        """What fast timing sees of the plan: two plans with the same signature take the same time from
        the same start (FastTiming times a stream by its key, and tallies its MACs by key and format)."""
        return (self.lead, tuple((s.key, s.fmt, part, after) for s, part, after in self.pims), self.fixed, self.work)

    def then(self, other: Plan) -> Plan:
        """This plan followed by `other`."""
        if other is EMPTY:
            return self
        if self is EMPTY:
            return other
        fixed = dict(self.fixed)
        for part, ps in other.fixed:
            fixed[part] = fixed.get(part, 0) + ps
        (a, b, c, d), (e, f, g, h) = self.work, other.work
        work = (a + e, b + f, c + g, d + h)
        if not self.pims:
            return Plan(self.lead + other.lead, other.pims, tuple(fixed.items()), work)
        stream, part, after = self.pims[-1]
        pims = self.pims[:-1] + ((stream, part, after + other.lead),) + other.pims
        return Plan(self.lead, pims, tuple(fixed.items()), work)

    def times(self, count: int) -> Plan:
        """This plan `count` (>= 1) times in a row."""
        fixed = tuple((part, ps * count) for part, ps in self.fixed)
        work = tuple(w * count for w in self.work)
        if not self.pims:
            return Plan(self.lead * count, (), fixed, work)
        stream, part, after = self.pims[-1]
        joined = self.pims[:-1] + ((stream, part, after + self.lead),)  # the next time's lead follows it
        return Plan(self.lead, joined * (count - 1) + self.pims, fixed, work)


EMPTY = Plan(0, (), (), (0, 0, 0, 0))


def run_plan(plan: Plan, start_ps: int, timing, breakdown: dict, tally) -> int:
    """Run the plan's steps from `start_ps` (the serial schedule); returns the end time, adds each step's
    time to `breakdown` and its work to `tally` (a WorkTally)."""
    t = timing.run_streams(plan.pims, start_ps + plan.lead, breakdown)
    for part, ps in plan.fixed:
        breakdown[part] += ps
    link, lanes, sram, macs = plan.work
    tally.link_bytes += link
    tally.asic_lane_ops += lanes
    tally.asic_sram_bytes += sram
    tally.extra_vector_macs += macs
    return t


def layer_groups(keys: list, layers: list) -> list[tuple]:
    """The op keys of a token cut into groups of consecutive ops of one layer."""
    groups: list[list] = []
    last = object()
    for key, layer in zip(keys, layers):
        if layer != last or not groups:
            groups.append([])
            last = layer
        groups[-1].append(key)
    return [tuple(g) for g in groups]


def joined(groups: list[tuple], plans: dict, signatures: dict) -> Plan:
    """The token's plan: each group's ops' plans in order. Consecutive groups whose plans have the same
    signatures (:meth:`Plan.signature`: fast timing times them alike) are the first of them repeated,
    so a model's layers are joined once per token, not once per layer."""
    plan, body, last, count = EMPTY, EMPTY, None, 0
    signature_of = signatures.__getitem__
    for group in groups:
        signature = tuple(map(signature_of, group))
        if signature == last:
            count += 1
            continue
        if count:
            plan = plan.then(body.times(count))
        body = EMPTY
        for key in group:
            body = body.then(plans[key])
        last, count = signature, 1
    return plan.then(body.times(count)) if count else plan
