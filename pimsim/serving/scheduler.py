"""Continuous batching under a KV-memory limit, as a SimPy simulation of requests.

One process brings the requests in at their arrival times; another is the device, which loops over
iterations:

1. **admit** waiting requests in arrival order while the batch has room (``max_batch`` sequences) and
   the KV memory has room for the request's whole cache (``kv_need`` of its prompt + output - 1 tokens,
   reserved at admission, so a running sequence never runs out of memory and nothing is ever evicted). The first
   waiting request that does not fit stops admission (first come, first served: no request overtakes
   another);
2. **prefill** each newly admitted request, one after another: its KV is written and its first output
   token comes out at the end of its prefill (its time to first token);
3. **decode** one step over every running sequence: one token each; a sequence that has all its
   output tokens leaves and frees its KV memory at the end of the step.

With nothing to run the device waits for the next arrival. Steps cost what the
:class:`~pimsim.serving.costs.StepCosts` says; a decode step's energy is shared equally by its sequences.
Everything is deterministic: SimPy orders events of one time by when they were scheduled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from pimsim.errors import PimsimError
from pimsim.serving.arrivals import Request
from pimsim.serving.costs import StepCosts


@dataclass
class RequestRecord:
    """What happened to one request (times in seconds from the start of the run)."""

    request: Request
    admitted_s: float = float("nan")
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    energy_J: float | None = 0.0
    generated: int = 0

    @property
    def queue_s(self) -> float:
        return self.admitted_s - self.request.arrival_s

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.request.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.request.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (None for a one-token request)."""
        out = self.request.output_len
        return (self.finish_s - self.first_token_s) / (out - 1) if out > 1 else None

    def to_row(self) -> dict:
        r = self.request
        return {"request_id": r.request_id, "arrival_s": r.arrival_s, "prompt_len": r.prompt_len,
                "output_len": r.output_len, "admitted_s": self.admitted_s, "first_token_s": self.first_token_s,
                "finish_s": self.finish_s, "queue_s": self.queue_s, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "e2e_s": self.e2e_s, "energy_J": self.energy_J}


@dataclass(frozen=True)
class ServeRun:
    """The scheduler's account of a run."""

    records: tuple[RequestRecord, ...]
    end_s: float  # when the last request finished
    busy_s: float  # time the device spent in steps
    prefills: int
    decode_steps: int
    decode_sequences: int  # summed over decode steps (mean batch = this / decode_steps)
    energy_J: float | None
    in_system_s: float  # integral over time of the number of requests arrived and not finished
    kv_capacity: int
    kv_peak: int  # the most KV memory reserved at once
    kv_unit: str
    max_batch: int


def check_requests(requests: Sequence[Request], costs: StepCosts) -> None:
    """Every request must fit the model's context and, alone, the KV memory: one error naming each that does not."""
    problems = []
    for r in requests:
        if r.max_context > costs.max_context:
            problems.append(f"{r.where()}: {r.prompt_len} prompt + {r.output_len} output tokens need a cache of "
                            f"{r.max_context} tokens, more than the model's context of {costs.max_context}")
        elif costs.kv_need(r.max_context) > costs.kv_capacity:
            problems.append(f"{r.where()}: its KV cache of {r.max_context} tokens needs "
                            f"{costs.kv_need(r.max_context):,} {costs.kv_unit}, more than the "
                            f"{costs.kv_capacity:,} {costs.kv_unit} the memory has for KV")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise PimsimError(f"{len(problems)} request(s) can never be served:\n  " + "\n  ".join(shown))


def serve(requests: Sequence[Request], costs: StepCosts, max_batch: int,
          progress: Callable[[int], None] | None = None) -> ServeRun:
    """Run `requests` (in arrival order) through the continuous-batching scheduler."""
    import simpy

    if not (isinstance(max_batch, int) and max_batch >= 1):
        raise PimsimError(f"max_batch must be a whole number >= 1, not {max_batch!r}")
    if max_batch > costs.max_batch:
        raise PimsimError(f"max_batch {max_batch}: the device's step costs take at most {costs.max_batch} "
                          f"sequence(s) per decode step")
    if not requests:
        raise PimsimError("no requests to serve")
    if any(b.arrival_s < a.arrival_s for a, b in zip(requests, requests[1:])):
        raise PimsimError("requests must come in arrival order")
    check_requests(requests, costs)
    return _Run(requests, costs, max_batch, progress, simpy.Environment()).result()


class _Run:
    def __init__(self, requests, costs: StepCosts, max_batch: int, progress, env):
        self.env, self.costs, self.max_batch, self.progress = env, costs, max_batch, progress
        self.requests = requests
        self.records = [RequestRecord(r) for r in requests]
        self.waiting: deque[RequestRecord] = deque()
        self.running: list[RequestRecord] = []
        self.wake = env.event()  # fires when a request arrives at an idle device
        self.arrived = self.done = 0
        self.kv_used = self.kv_peak = 0
        self.busy_s = 0.0
        self.prefills = self.decode_steps = self.decode_sequences = 0
        self.energy_J: float | None = 0.0
        self.in_system_s, self._since = 0.0, 0.0  # the integral of arrived - done over time, and its last update
        env.process(self._arrivals())
        env.process(self._device())
        env.run()

    def _count(self, change: int) -> None:
        now = self.env.now
        self.in_system_s += (self.arrived - self.done) * (now - self._since)
        self._since = now
        if change > 0:
            self.arrived += 1
        else:
            self.done += 1

    def _arrivals(self):
        for record in self.records:
            wait = record.request.arrival_s - self.env.now
            if wait > 0:
                yield self.env.timeout(wait)
            self._count(+1)
            self.waiting.append(record)
            if not self.wake.triggered:
                self.wake.succeed()

    def _spend(self, cost, records: list[RequestRecord]):
        """Charge a step's energy equally to `records` and the run."""
        if cost.energy_J is None:
            self.energy_J = None
        if self.energy_J is not None:
            self.energy_J += cost.energy_J
            share = cost.energy_J / len(records)
            for r in records:
                r.energy_J += share
        else:
            for r in records:
                r.energy_J = None
        self.busy_s += cost.time_s
        return self.env.timeout(cost.time_s)

    def _finish(self, record: RequestRecord) -> None:
        record.finish_s = self.env.now
        self.kv_used -= self.costs.kv_need(record.request.max_context)
        self._count(-1)
        if self.progress is not None:
            self.progress(1)

    def _admit(self) -> list[RequestRecord]:
        admitted = []
        while self.waiting and len(self.running) + len(admitted) < self.max_batch:
            need = self.costs.kv_need(self.waiting[0].request.max_context)
            if self.kv_used + need > self.costs.kv_capacity:
                break
            record = self.waiting.popleft()
            record.admitted_s = self.env.now
            self.kv_used += need
            admitted.append(record)
        self.kv_peak = max(self.kv_peak, self.kv_used)
        return admitted

    def _device(self):
        total = len(self.records)
        while self.done < total:
            admitted = self._admit()
            if not admitted and not self.running:
                if not self.wake.triggered:
                    yield self.wake
                self.wake = self.env.event()
                continue
            for record in admitted:
                yield self._spend(self.costs.prefill(record.request.prompt_len), [record])
                self.prefills += 1
                record.first_token_s = self.env.now
                record.generated = 1
                if record.request.output_len == 1:
                    self._finish(record)
                else:
                    self.running.append(record)
            if not self.running:
                continue
            batch = self.running
            # the cache of a sequence with g tokens out holds its prompt and g - 1 of them; the step adds the g-th
            contexts = [r.request.prompt_len + r.generated for r in batch]
            yield self._spend(self.costs.decode_step(contexts), batch)
            self.decode_steps += 1
            self.decode_sequences += len(batch)
            still = []
            for record in batch:
                record.generated += 1
                if record.generated == record.request.output_len:
                    self._finish(record)
                else:
                    still.append(record)
            self.running = still

    def result(self) -> ServeRun:
        c = self.costs
        return ServeRun(tuple(self.records), self.env.now, self.busy_s, self.prefills, self.decode_steps,
                        self.decode_sequences, self.energy_J, self.in_system_s, c.kv_capacity, self.kv_peak,
                        c.kv_unit, self.max_batch)
