"""Synthetic traces: streaming reads and PIM row sweeps. Used by the benchmarks, the tests and to
produce the traces bundled in ``workloads/``."""

from __future__ import annotations

import numpy as np

from pimsim.dram.compile import Compiled
from pimsim.dram.modes import ModeTracker
from pimsim.trace.files import CommandTrace, RequestTrace


def streaming_reads(count: int, stride_bytes: int = 64, start: int = 0, gap_cycles: int = 0) -> RequestTrace:
    """``count`` reads to consecutive ``stride_bytes``-spaced addresses, one every ``gap_cycles``."""
    idx = np.arange(count, dtype=np.int64)
    return RequestTrace(line=idx + 2, cycle=idx * gap_cycles, is_write=np.zeros(count, np.bool_),
                        addr=start + idx * stride_bytes)


def pim_row_sweep(compiled: Compiled, rows: int, macs_per_row: int, channels: int | None = None,
                  with_io: bool = False) -> CommandTrace:
    """All-bank MAC sweep: per channel and row, ACTAB, ``macs_per_row`` MACABs over consecutive
    columns, PREA. With ``with_io`` it is a GEMV: each channel first writes the input vector into
    its global buffer (one WRGB per MAC column) and reads the accumulators (RDMAC) after every row.
    Channels are listed one after another."""
    org = compiled.hw.dram.organization
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    bl = org.burst_length
    channels = org.channels if channels is None else channels
    cmd, node, row, col = [], [], [], []
    std = compiled.standard
    for ch in range(channels):
        rk, cn = int(compiled.rank_node(ch)), int(compiled.channel_node(ch))
        modes = ModeTracker(std)  # a device with modes (AiM) switches where its controller does

        def switch(count):
            for _ in range(count):
                cmd.append(ids[std.mode_change]), node.append(cn), row.append(-1), col.append(-1)

        if with_io:
            for k in range(macs_per_row):
                cmd.append(ids["WRGB"]), node.append(cn), row.append(-1), col.append(k * bl)
        for r in range(rows):
            switch(modes.enter(std.command("MACAB").mode))
            cmd.append(ids["ACTAB"]), node.append(rk), row.append(r), col.append(-1)
            for k in range(macs_per_row):
                cmd.append(ids["MACAB"]), node.append(rk), row.append(r), col.append(k * bl)
            if with_io:
                switch(modes.changes_before("RDMAC"))
                cmd.append(ids["RDMAC"]), node.append(rk), row.append(-1), col.append(-1)
            cmd.append(ids["PREA"]), node.append(rk), row.append(-1), col.append(-1)
        if with_io:
            switch(modes.leave())
    n = len(cmd)
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    return CommandTrace(line=np.arange(n, dtype=np.int64) + 2, cycle=np.zeros(n, np.int64), has_cycles=False,
                        cmd=a(cmd), node=a(node), row=a(row), column=a(col))
