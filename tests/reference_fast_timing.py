"""FastTiming's per-use path as it was before it kept one record per stream key (pimsim.engine.dram_timing:
a dictionary per tally, a look-up of the key for each) and before its refresh runs (landings, and the
sampled refresh costs of long streams) issued one channel of each kind (the whole stream, every channel),
kept only to hold the faster code to it: tests/test_landing_runs.py runs the same streams through both.
Only what this class defines (``run``, ``counts``, ``busy_ps``, ``_simulate``, ``_landing``) is the old code;
anything else it inherits from FastTiming (``run_streams``, ``_land``, ``_kinds_of``) is the new code, so
a test of the old way calls only those."""

from __future__ import annotations

import numpy as np

from pimsim.dram.kernel import run_commands
from pimsim.dram.timing_state import B_OPEN, C_CONFLICTS, C_END, C_HITS, new_state
from pimsim.engine.dram_timing import (
    EXACT_LANDINGS,
    EXPECTED_SAMPLES,
    GOLDEN,
    LANDED_INTERVALS,
    LONG_BIN_CYCLES,
    SAMPLES,
    SHORT_BINS,
    FastTiming,
    _channels,
    _check,
    _Counts,
    _Known,
)
from pimsim.errors import PimsimError
from pimsim.mapper.model import Stream


class ReferenceFastTiming(FastTiming):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._uses: dict[tuple, int] = {}
        self._busy_refreshes: dict[tuple, float] = {}
        self._landings: dict[tuple, list] = {}
        self._exact_landings: dict[tuple, int] = {}
        self._busy = [0.0] * self.compiled.hw.dram.organization.channels

    @property
    def busy_ps(self) -> np.ndarray:
        return np.array(self._busy, np.float64)

    def _simulate(self, stream: Stream) -> _Known:
        ncmd = len(self.compiled.command_names)
        if len(stream) == 0:
            return _Known(0, 0, {}, 0.0, np.zeros(ncmd, np.int64), np.zeros(3, np.int64), np.zeros(ncmd))
        chans = _channels(self.compiled, stream)
        zero = np.zeros(1, np.int64)
        st, issue_at, _, err = run_commands(self.spec_off, stream.cmd, stream.node, stream.row, stream.column, zero)
        _check(self.compiled, stream, err)
        d0 = int(st.chan[chans, C_END].max())
        last_issue = int(issue_at.max())
        counts = st.counts.sum(axis=0)
        cost, extra = 0.0, np.zeros(ncmd)
        landed = self.follow_clock and last_issue < LANDED_INTERVALS * self.nrefi
        if self.refresh and not landed:
            n = self.nrefi
            span = min(last_issue, n)
            if self.follow_clock:
                points = sorted({max(int((k + 0.5) * GOLDEN % 1 * span), 1) for k in range(SAMPLES)})
            else:
                points = sorted({max((2 * k + 1) * span // (2 * EXPECTED_SAMPLES), 1) for k in range(EXPECTED_SAMPLES)})
            costs, added = [], np.zeros(ncmd)
            for due in points:
                st1 = new_state(self.spec)
                st1.ref_due[:] = due
                err = run_commands(self.spec, stream.cmd, stream.node, stream.row, stream.column, zero, state=st1,
                                   issue_cycles=False)[3]
                _check(self.compiled, stream, err)
                refreshes = max(int(st1.counts[chans, self.ref_id].max()), 1)
                costs.append(max(int(st1.chan[chans, C_END].max()) - d0, 0) / refreshes)
                added += (st1.counts.sum(axis=0) - counts) / refreshes
            cost = sum(costs) / len(costs)
            if cost >= n:
                raise PimsimError(self.compiled.stuck_message(f"a command of {stream.key[0]}"))
            extra = added / len(points)
            extra[self.ref_id] = 0
        per_channel = {int(c): int(st.chan[c, C_END]) for c in chans}
        return _Known(d0, last_issue, per_channel, cost, counts, st.chan[:, C_HITS:C_CONFLICTS + 1].sum(axis=0), extra,
                      landed, bool((st.bank[:, B_OPEN] >= 0).any()))

    def _landing(self, stream: Stream, k, lead: float) -> list:
        key, due = stream.key, int(lead)
        got = self._landings.get((key, "at", due))
        if got is not None:
            return got
        exact = self._exact_landings.get(key, 0)
        if exact < EXACT_LANDINGS:
            self._exact_landings[key] = exact + 1
            at = (key, "at", due)
        else:
            width = max(k.last_issue // SHORT_BINS, 1) if 2 * k.last_issue < self.nrefi else LONG_BIN_CYCLES
            at = (key, "bin", due // width)
            got = self._landings.get(at)
            if got is not None:
                return got
            due = due // width * width + width // 2
        chans = np.fromiter(k.channel_cycles, np.int64)
        st1 = new_state(self.spec)
        st1.ref_due[:] = max(min(due, k.last_issue), 1)
        err = run_commands(self.spec, stream.cmd, stream.node, stream.row, stream.column, np.zeros(1, np.int64),
                           state=st1, issue_cycles=False)[3]
        _check(self.compiled, stream, err)
        added = (st1.counts.sum(axis=0) - k.commands).astype(np.float64)
        added[self.ref_id] = 0
        refreshes = max(int(st1.counts[chans, self.ref_id].max()), 1)
        got = self._landings[at] = [max(int(st1.chan[chans, C_END].max()) - k.cycles, 0), added, 0, refreshes]
        return got

    def run(self, stream: Stream, start_ps: int) -> int:
        key = stream.key
        k = self._known.get(key)
        if k is None:
            k = self.known(stream)
        self.macs.add(stream)
        uses = self._uses
        uses[key] = uses.get(key, 0) + 1
        start = first = start_ps / self.tck_ps
        end = start + k.cycles
        if self.refresh and k.cycles and not self.follow_clock:
            n, rfc = self.nrefi, self.nrfc
            m = min(max(start - self.free, 0.0), rfc)
            wait = (rfc * m - m * m / 2) / n
            hits = k.last_issue / (n - k.cost)
            self._busy_refreshes[key] = self._busy_refreshes.get(key, 0.0) + hits
            end += wait + hits * k.cost
        elif self.refresh and k.cycles:
            n, due = self.nrefi, self.due
            if due <= start:
                latest = due + ((start - due) // n) * n
                free = max(self._channel_free[c] for c, _ in k.channel_list)
                ready = max(latest, free) + self.nrfc + (self.close_cycles if self.open_after else 0)
                if ready > first:
                    first = ready
                    end = ready + k.cycles
                due = latest + n
            lead = due - first
            if lead <= k.last_issue:
                if k.landed:
                    landing = self._landing(stream, k, lead)
                    landing[2] += 1
                    end += landing[0]
                    due += n * landing[3]
                else:
                    hits = (k.last_issue - lead) // (n - k.cost) + 1
                    self._busy_refreshes[key] = self._busy_refreshes.get(key, 0.0) + hits
                    end += hits * k.cost
                    due += hits * n
            self.due = due
            self.open_after = k.leaves_open
        if end > self.free:
            self.free = end
        scale = (end - start) / k.cycles if k.cycles else 0.0
        busy, tck, channel_free = self._busy, self.tck_ps, self._channel_free
        for c, cyc in k.channel_list:
            busy[c] += cyc * scale * tck
            channel_free[c] = start + cyc * scale
        if self.track_channels:
            self.channel_ends = {c: round((start + cyc * scale) * self.tck_ps) for c, cyc in k.channel_cycles.items()}
        return round(end * self.tck_ps)

    def counts(self) -> dict:
        c = _Counts(self.compiled)
        extra = np.zeros(len(self.compiled.command_names))
        for key, uses in self._uses.items():
            k = self._known[key]
            c.commands += k.commands * uses
            c.rows += k.rows * uses
            extra += k.extra * self._busy_refreshes.get(key, 0)
        for _, added, times, _ in self._landings.values():
            extra += added * times
        c.commands += np.round(extra).astype(np.int64)
        if self.refresh:
            org = self.compiled.hw.dram.organization
            c.commands[self.ref_id] += int(self.free // self.nrefi) * org.channels * org.ranks
        out = c.summary()
        out["distinct_streams"] = len(self._known)
        out["macs_by_format"] = dict(self.macs.by_format)
        return out
