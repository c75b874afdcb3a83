"""A Perfetto / Chrome trace (JSON "trace events") of a run: one track per unit, one slice per
instruction, and one track per PIM channel showing how long each channel worked on each stream."""

from __future__ import annotations

import json
from pathlib import Path

TRACKS = {"asic": (1, "ASIC"), "link": (2, "links (all channels)"), "pim": (3, "PIM channels")}


CHANNEL_TID = 100  # channel c is track CHANNEL_TID + c


def write_timeline(path: str | Path, events: list[tuple], title: str) -> int:
    """Write the events (unit, name, part, layer, start ps, end ps, channel ends); returns how many."""
    trace = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": title}}]
    for unit, (tid, name) in TRACKS.items():
        trace.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
    channels = set()
    for unit, name, part, layer, start, end, channel_ends in events:
        trace.append({"ph": "X", "pid": 1, "tid": TRACKS[unit][0], "name": name, "cat": part,
                      "ts": start / 1e6, "dur": (end - start) / 1e6, "args": {"part": part, "layer": layer}})
        for ch, ch_end in (channel_ends or {}).items():
            channels.add(ch)
            trace.append({"ph": "X", "pid": 1, "tid": CHANNEL_TID + ch, "name": name, "cat": part,
                          "ts": start / 1e6, "dur": max(ch_end - start, 0) / 1e6, "args": {"layer": layer}})
    for ch in sorted(channels):
        trace.append({"ph": "M", "pid": 1, "tid": CHANNEL_TID + ch, "name": "thread_name",
                      "args": {"name": f"channel {ch}"}})
    Path(path).write_text(json.dumps({"traceEvents": trace, "displayTimeUnit": "ns"}))
    return len(events)
