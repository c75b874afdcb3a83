"""How long a PIM command stream takes: the two fidelities.

``CycleTiming`` issues every command of every stream through the numba kernel, into one DRAM state
that lives for the whole run: open rows, bank timing and refresh carry from one stream to the next.

``FastTiming`` simulates each distinct stream (by its key: what it computes, not where it sits) once
from an idle memory with refresh off, and once more with a refresh falling due at its midpoint. The
difference is what one refresh costs that stream, c; refreshes come every nREFI whether the memory
is busy or not, so a stream of refresh-free length d takes d / (1 - c / nREFI) on average.
"""

from __future__ import annotations

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.kernel import run_commands
from pimsim.dram.simulate import _stuck_message
from pimsim.dram.standard import Transfer
from pimsim.dram.timing_state import (
    C_CONFLICTS,
    C_END,
    C_HITS,
    ERR_STUCK,
    K_TRANSFER,
    P_REFRESH_ON,
    Spec,
    new_state,
)
from pimsim.errors import PimsimError
from pimsim.mapper.model import Stream


class _Counts:
    """Commands by kind and row-buffer outcomes, summed over channels."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.commands = np.zeros(len(compiled.command_names), np.int64)
        self.rows = np.zeros(3, np.int64)  # hits, misses, conflicts

    def summary(self) -> dict:
        c = self.compiled
        access = c.hw.dram.organization.access_bytes
        transfer = c.spec.cmds[:, K_TRANSFER]
        moved = self.commands[(transfer == int(Transfer.READ)) | (transfer == int(Transfer.WRITE))].sum()
        hits, misses, conflicts = (int(x) for x in self.rows)
        total = hits + misses + conflicts
        return {"commands": {n: int(k) for n, k in zip(c.command_names, self.commands) if k},
                "row_hits": hits, "row_misses": misses, "row_conflicts": conflicts,
                "row_hit_rate": hits / total if total else None, "bytes_over_pins": int(moved) * access}


def _check(compiled: Compiled, stream: Stream, err) -> None:
    if err[0] == ERR_STUCK:
        raise PimsimError(_stuck_message(compiled, f"a command of {stream.key[0]}"))
    if err[0]:
        raise RuntimeError(f"pimsim bug: the mapper's stream {stream.key} broke the bank protocol "
                           f"(kernel error {int(err[0])} at command {int(err[1])})")


def _channels(compiled: Compiled, stream: Stream) -> np.ndarray:
    return np.unique(compiled.channel_of(stream.node))


class CycleTiming:
    fidelity = "cycle"

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.spec = compiled.spec
        self.state = new_state(self.spec)
        self.tck_ps = compiled.hw.dram.tCK_ps
        self._channels: dict[tuple, np.ndarray] = {}

    def run(self, stream: Stream, start_ps: int) -> int:
        """Issue the stream no earlier than start_ps; the time its last command is done."""
        if len(stream) == 0:
            return start_ps
        tmin = np.full(len(stream), -(-start_ps // self.tck_ps), np.int64)
        _, _, _, err = run_commands(self.spec, stream.cmd, stream.node, stream.rows(), stream.column, tmin,
                                    state=self.state)
        _check(self.compiled, stream, err)
        chans = self._channels.get(stream.key)
        if chans is None:
            chans = self._channels[stream.key] = _channels(self.compiled, stream)
        return int(self.state.chan[chans, C_END].max() * self.tck_ps)

    def counts(self) -> dict:
        c = _Counts(self.compiled)
        c.commands += self.state.counts.sum(axis=0)
        c.rows += self.state.chan[:, C_HITS:C_CONFLICTS + 1].sum(axis=0)
        out = c.summary()
        out["distinct_streams"] = len(self._channels)
        return out


class FastTiming:
    fidelity = "fast"

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.spec = compiled.spec
        params = compiled.spec.params.copy()
        params[P_REFRESH_ON] = 0
        self.spec_off = Spec(*compiled.spec[:-1], params)
        self.refresh = compiled.hw.dram.refresh.enabled
        self.nrefi = compiled.timing["nREFI"]
        self.tck_ps = compiled.hw.dram.tCK_ps
        self._known: dict[tuple, tuple] = {}  # key -> (cycles, commands, row outcomes)
        self._uses: dict[tuple, int] = {}
        self.end_ps = 0

    def cycles(self, stream: Stream) -> float:
        """Average cycles of the stream with refresh accounted for (simulated on first sight)."""
        known = self._known.get(stream.key)
        if known is None:
            known = self._known[stream.key] = self._simulate(stream)
        return known[0]

    def _simulate(self, stream: Stream) -> tuple:
        if len(stream) == 0:
            return 0.0, np.zeros(len(self.compiled.command_names), np.int64), np.zeros(3, np.int64)
        chans = _channels(self.compiled, stream)
        zero = np.zeros(len(stream), np.int64)
        st, _, _, err = run_commands(self.spec_off, stream.cmd, stream.node, stream.row, stream.column, zero)
        _check(self.compiled, stream, err)
        d0 = int(st.chan[chans, C_END].max())
        cycles = float(d0)
        if self.refresh:
            mid = new_state(self.spec)
            mid.ref_due[:] = max(min(d0 // 2, self.nrefi), 1)
            st1, _, _, err = run_commands(self.spec, stream.cmd, stream.node, stream.row, stream.column, zero,
                                          state=mid)
            _check(self.compiled, stream, err)
            ref = self.compiled.command_names.index(self.compiled.standard.refresh)
            refreshes = max(int(st1.counts[chans, ref].max()), 1)  # on the channel that took longest, about
            cost = max(int(st1.chan[chans, C_END].max()) - d0, 0) / refreshes
            if cost >= self.nrefi:
                raise PimsimError(_stuck_message(self.compiled, f"a command of {stream.key[0]}"))
            cycles = d0 / (1.0 - cost / self.nrefi)
        return cycles, st.counts.sum(axis=0), st.chan[:, C_HITS:C_CONFLICTS + 1].sum(axis=0)

    def run(self, stream: Stream, start_ps: int) -> int:
        cycles = self.cycles(stream)
        self._uses[stream.key] = self._uses.get(stream.key, 0) + 1
        end = start_ps + round(cycles * self.tck_ps)
        self.end_ps = max(self.end_ps, end)
        return end

    def counts(self) -> dict:
        c = _Counts(self.compiled)
        for key, uses in self._uses.items():
            _, commands, rows = self._known[key]
            c.commands += commands * uses
            c.rows += rows * uses
        if self.refresh:  # every rank refreshes every nREFI, busy or not
            org = self.compiled.hw.dram.organization
            ref = self.compiled.command_names.index(self.compiled.standard.refresh)
            c.commands[ref] += int(self.end_ps / self.tck_ps // self.nrefi) * org.channels * org.ranks
        out = c.summary()
        out["distinct_streams"] = len(self._known)
        return out


def timing_for(compiled: Compiled, fidelity: str):
    if fidelity == "cycle":
        return CycleTiming(compiled)
    if fidelity == "fast":
        return FastTiming(compiled)
    raise PimsimError(f"fidelity must be 'cycle' or 'fast', not {fidelity!r}")
