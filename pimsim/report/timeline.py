"""A Perfetto / Chrome trace (JSON "trace events") of a run: one track per unit, one slice per
instruction, one track per PIM channel showing how long each channel worked on each stream, and a
track of tokens (one slice per generated token: where each token starts and ends).

A long run makes a large trace (gpt2-xl on gddr6-aim: about 4,200 slices, 0.65 MB, per token), so
``max_tokens`` keeps the first N tokens only (the trace's title says how many were left out), and a path
ending in ``.gz`` is written gzip-compressed (Perfetto opens it as it is).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

TRACKS = {"asic": (1, "ASIC"), "link": (2, "links (all channels)"), "pim": (3, "PIM channels")}
TOKEN_TID = 0  # the tokens track, above the units
CHANNEL_TID = 100  # channel c is track CHANNEL_TID + c


def token_bounds_ps(per_token_ps: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each token, in ps from the start of the run: tokens follow one another."""
    bounds, t = [], 0
    for ps in per_token_ps:
        bounds.append((t, t + ps))
        t += ps
    return bounds


def write_timeline(path: str | Path, events: list[tuple], title: str, per_token_ps: list[int] | None = None,
                   max_tokens: int | None = None) -> int:
    """Write the events (unit, name, part, layer, start ps, end ps, channel ends) and, given the
    per-token times, a slice per token; with ``max_tokens``, only the events of the first that many
    tokens. Returns how many events were written."""
    trace = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": title}}]
    for unit, (tid, name) in TRACKS.items():
        trace.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
    bounds = token_bounds_ps(per_token_ps or [])
    end_ps = None
    if max_tokens is not None and bounds and max_tokens < len(bounds):
        end_ps = bounds[max_tokens - 1][1]
    if bounds:
        trace.append({"ph": "M", "pid": 1, "tid": TOKEN_TID, "name": "thread_name", "args": {"name": "tokens"}})
        shown = bounds if end_ps is None else bounds[:max_tokens]
        for i, (start, end) in enumerate(shown):
            trace.append({"ph": "X", "pid": 1, "tid": TOKEN_TID, "name": f"token {i}", "cat": "token",
                          "ts": start / 1e6, "dur": (end - start) / 1e6, "args": {"token": i}})
        if end_ps is not None:
            trace[0]["args"]["name"] += f" (first {max_tokens} of {len(bounds)} tokens)"
    channels = set()
    written = 0
    for unit, name, part, layer, start, end, channel_ends in events:
        if end_ps is not None and start >= end_ps:
            continue
        written += 1
        trace.append({"ph": "X", "pid": 1, "tid": TRACKS[unit][0], "name": name, "cat": part,
                      "ts": start / 1e6, "dur": (end - start) / 1e6, "args": {"part": part, "layer": layer}})
        for ch, ch_end in (channel_ends or {}).items():
            channels.add(ch)
            trace.append({"ph": "X", "pid": 1, "tid": CHANNEL_TID + ch, "name": name, "cat": part,
                          "ts": start / 1e6, "dur": max(ch_end - start, 0) / 1e6, "args": {"layer": layer}})
    for ch in sorted(channels):
        trace.append({"ph": "M", "pid": 1, "tid": CHANNEL_TID + ch, "name": "thread_name",
                      "args": {"name": f"channel {ch}"}})
    text = json.dumps({"traceEvents": trace, "displayTimeUnit": "ns"})
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        Path(path).write_text(text)
    return written


def read_timeline(path: str | Path) -> dict:
    """A trace written by :func:`write_timeline` (gzip-compressed or not)."""
    path = Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.loads(f.read())
    return json.loads(path.read_text())
