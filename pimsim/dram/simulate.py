"""Running traces through the kernel or the controller and summarising what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pimsim.dram import address
from pimsim.dram.compile import Compiled
from pimsim.dram.kernel import run_commands
from pimsim.dram.standard import Transfer
from pimsim.dram.timing_state import (
    C_CONFLICTS,
    C_END,
    C_HITS,
    C_INSERTED,
    ERR_CLOSED,
    ERR_OPEN,
    ERR_REF_OPEN,
    ERR_ROW,
    ERR_STUCK,
    K_TRANSFER,
    State,
)
from pimsim.errors import TraceError
from pimsim.trace.files import CommandTrace, RequestTrace


@dataclass
class RunResult:
    compiled: Compiled
    state: State
    record: np.ndarray | None = None  # every issued command: cycle, cmd, node, row, column, source index
    # issue cycle of each trace command; for request traces, of each request's column command
    issue_at: np.ndarray | None = None
    requests: dict = field(default_factory=dict)  # request statistics (request traces)
    # hits, misses, conflicts per channel when classified per request rather than per command
    rowstats: np.ndarray | None = None
    # who refreshed: "kernel" (every nREFI), "trace" (the trace's own REF commands), or "off"
    refresh: str = "kernel"

    @property
    def cycles(self) -> int:
        return int(self.state.chan[:, C_END].max())

    def summary(self) -> dict:
        c = self.compiled
        hw = c.hw
        names = c.command_names
        st = self.state
        transfer = c.spec.cmds[:, K_TRANSFER]
        rd_mask = transfer == int(Transfer.READ)
        wr_mask = transfer == int(Transfer.WRITE)
        time_s = self.cycles * hw.dram.tCK_s

        moved = c.transfer_bytes_by_command()

        def stats(counts, rowstats, cycles):
            bytes_read = int((counts[rd_mask] * moved[rd_mask]).sum())
            bytes_written = int((counts[wr_mask] * moved[wr_mask]).sum())
            hits, misses, conflicts = (int(x) for x in rowstats)
            accesses = hits + misses + conflicts
            return {
                "cycles": int(cycles),
                "commands": {n: int(k) for n, k in zip(names, counts) if k},
                "row_hits": hits,
                "row_misses": misses,
                "row_conflicts": conflicts,
                "row_hit_rate": hits / accesses if accesses else None,
                "bytes_read": bytes_read,
                "bytes_written": bytes_written,
                "bytes": bytes_read + bytes_written,
            }

        rowstats = st.chan[:, C_HITS:C_CONFLICTS + 1] if self.rowstats is None else self.rowstats
        total = stats(st.counts.sum(axis=0), rowstats.sum(axis=0), self.cycles)
        out = {
            "hardware": hw.name,
            "standard": hw.dram.standard,
            "tCK_ps": hw.dram.tCK_ps,
            "cycles": total["cycles"],
            "time_s": time_s,
            **{k: v for k, v in total.items() if k != "cycles"},
            "bandwidth_GBps": total["bytes"] / time_s / 1e9 if time_s else 0.0,
            "kernel_inserted_commands": int(st.chan[:, C_INSERTED].sum()),
            "refresh": self.refresh if hw.dram.refresh.enabled else "off",
            "channels": [
                {"channel": ch, **stats(st.counts[ch], rowstats[ch], st.chan[ch, C_END]),
                 "kernel_inserted_commands": int(st.chan[ch, C_INSERTED])}
                for ch in range(hw.dram.organization.channels)
            ],
        }
        if self.requests:
            out["requests"] = self.requests
        return out


_MESSAGES = {
    ERR_CLOSED: "{cmd} to {where}, which has no open row",
    ERR_ROW: "{cmd} to row {row} of {where}, but row {open} is open there",
    ERR_OPEN: "{cmd} to {where}, which already has row {open} open (precharge it first)",
    ERR_REF_OPEN: "{cmd} while {where} has row {open} open (precharge it first)",
}


# --emit-commands keeps every refresh; past this many the record would not fit in memory
MAX_RECORDED_REFRESHES = 5_000_000


def _check_record_size(compiled: Compiled, last_cycle: int, record: bool) -> None:
    if not (record and compiled.hw.dram.refresh.enabled):
        return
    refreshes = last_cycle // compiled.refresh_interval * compiled.hw.dram.organization.channels
    if refreshes > MAX_RECORDED_REFRESHES:
        raise TraceError(f"the trace reaches cycle {last_cycle:,}: recording every command (--emit-commands) would "
                         f"write about {refreshes:,} refreshes (limit {MAX_RECORDED_REFRESHES:,}); "
                         f"run without --emit-commands, or with dram.refresh.enabled=false")


def run_command_trace(compiled: Compiled, trace: CommandTrace, record: bool = False) -> RunResult:
    """Issue a command trace. A trace that refreshes itself (has REF commands) gets no kernel refresh."""
    refresh_ids = [compiled.command_names.index(p.command) for p in compiled.standard.refresh_policies]
    self_refreshing = bool(np.isin(trace.cmd, refresh_ids).any())
    _check_record_size(compiled, int(trace.cycle.max()), record and not self_refreshing)
    st, issue_at, rec, err = run_commands(compiled.spec, trace.cmd, trace.node, trace.row, trace.column,
                                          trace.cycle, record, auto_refresh=not self_refreshing)
    if err[0] == ERR_STUCK:
        i = int(err[1])
        raise TraceError(compiled.stuck_message(f"{trace.source}: line {int(trace.line[i])}: "
                                                  f"{compiled.command_names[trace.cmd[i]]}"))
    if err[0]:
        i = int(err[1])
        msg = _MESSAGES[int(err[0])].format(
            cmd=compiled.command_names[trace.cmd[i]], where=compiled.describe_node(int(err[2])),
            row=int(trace.row[i]), open=int(err[3]))
        raise TraceError(f"{trace.source}: line {int(trace.line[i])}: {msg}")
    source = "off" if not compiled.hw.dram.refresh.enabled else ("trace" if self_refreshing else "kernel")
    return RunResult(compiled, st, record=rec if record else None, issue_at=issue_at, refresh=source)


def run_request_trace(compiled: Compiled, trace: RequestTrace, max_outstanding: int | None = None,
                      record: bool = False) -> RunResult:
    hw = compiled.hw
    ctrl = hw.dram.controller
    f = address.decode(hw, trace.addr)
    bank = compiled.bank_node(f["channel"], f["rank"], f["bankgroup"], f["bank"]).astype(np.int64)
    limit = len(trace) if max_outstanding is None else max_outstanding
    names = compiled.command_names
    ids = np.array([names.index("RD"), names.index("WR"), names.index(compiled.standard.activate),
                    names.index("PRE")], np.int64)
    _check_record_size(compiled, int(trace.cycle.max()), record)
    from pimsim.dram.controller import serve_requests  # the request controller's kernels: request traces only

    st, issued, done, cls, rec, err = serve_requests(
        compiled.spec, ids, trace.cycle, trace.is_write, bank, f["row"].astype(np.int64),
        f["column"].astype(np.int64), int(limit), ctrl.queue_depth, ctrl.scheduler == "fcfs", record)
    if err[0]:
        raise TraceError(compiled.stuck_message(f"line {int(trace.line[int(err[1])])}: this request"))
    if (done < 0).any():  # would be a controller bug, never an input problem
        raise RuntimeError("controller finished with unserved requests")
    latency = done - trace.cycle
    requests = {
        "count": len(trace),
        "reads": int((~trace.is_write).sum()),
        "writes": int(trace.is_write.sum()),
        "max_outstanding": max_outstanding,
        "queue_depth": ctrl.queue_depth,
        "scheduler": ctrl.scheduler,
        "latency_cycles": {
            "mean": float(latency.mean()),
            "p50": float(np.percentile(latency, 50)),
            "p99": float(np.percentile(latency, 99)),
            "max": int(latency.max()),
        },
    }
    channel = compiled.channel_of(bank) - compiled.level_base[0]
    channels = hw.dram.organization.channels
    rowstats = np.bincount(channel * 3 + cls, minlength=channels * 3).reshape(channels, 3).astype(np.int64)
    result = RunResult(compiled, st, requests=requests, rowstats=rowstats, record=rec if record else None)
    result.issue_at = issued
    return result
