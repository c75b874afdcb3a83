"""A Perfetto / Chrome trace (JSON "trace events") of a run: one track per unit, one slice per instruction."""

from __future__ import annotations

import json
from pathlib import Path

TRACKS = {"asic": (1, "ASIC"), "link": (2, "links (all channels)"), "pim": (3, "PIM channels")}


def write_timeline(path: str | Path, events: list[tuple], title: str) -> int:
    """Write the events (unit, name, part, layer, start ps, end ps); returns how many were written."""
    trace = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": title}}]
    for unit, (tid, name) in TRACKS.items():
        trace.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
    for unit, name, part, layer, start, end in events:
        trace.append({"ph": "X", "pid": 1, "tid": TRACKS[unit][0], "name": name, "cat": part,
                      "ts": start / 1e6, "dur": (end - start) / 1e6, "args": {"part": part, "layer": layer}})
    Path(path).write_text(json.dumps({"traceEvents": trace, "displayTimeUnit": "ns"}))
    return len(events)
