"""The requests of a serving run: when each arrives and how many prompt and output tokens it has.

Either Poisson arrivals (exponential gaps at a rate, seeded) with fixed lengths, or a CSV file with one
request per row: ``arrival_s,prompt_len,output_len``. A file's bad rows are all reported at once, each
with its line number (the header is line 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pimsim.errors import PimsimError

COLUMNS = ("arrival_s", "prompt_len", "output_len")


@dataclass(frozen=True)
class Request:
    """One request: it arrives at ``arrival_s`` with ``prompt_len`` prompt tokens and wants
    ``output_len`` generated tokens (the first of them comes out of the prefill)."""

    request_id: int
    arrival_s: float
    prompt_len: int
    output_len: int
    line: int | None = None  # in the arrivals file it came from

    @property
    def max_context(self) -> int:
        """Tokens in its KV cache at its last decode step: the prompt and every output token but the
        last (which is never fed back)."""
        return self.prompt_len + self.output_len - 1

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"request {self.request_id}"


def poisson_requests(rate_per_s: float, count: int, prompt_len: int, output_len: int, seed: int) -> list[Request]:
    """`count` requests arriving as a Poisson process of `rate_per_s` (the first after one gap), each with
    the same lengths; the same seed gives the same arrivals."""
    import numpy as np

    problems = []
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        problems.append(f"rate: a positive number of requests per second, not {rate_per_s!r}")
    for name, value in (("requests", count), ("prompt_len", prompt_len), ("output_len", output_len)):
        if not (isinstance(value, int) and value >= 1):
            problems.append(f"{name}: a whole number >= 1, not {value!r}")
    if problems:
        raise PimsimError("Poisson arrivals: " + "; ".join(problems))
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_per_s, count)
    times = np.cumsum(gaps)
    return [Request(i, float(t), prompt_len, output_len) for i, t in enumerate(times)]


def read_arrivals(path: str | Path) -> list[Request]:
    """The requests of a CSV file with columns ``arrival_s`` (seconds from the start, not decreasing),
    ``prompt_len`` and ``output_len`` (whole numbers >= 1). Every bad row is named in one error."""
    try:
        import pandas as pd
    except ImportError:
        raise PimsimError("arrivals files need pandas (a dependency of pimsim: pip install .)") from None
    p = Path(path)
    if not p.is_file():
        raise PimsimError(f"arrivals file {path}: no such file")
    try:
        # every field as text, nothing read as NaN, blank lines kept: row i is line i + 2 of the file
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PimsimError(f"arrivals file {path}: not a readable CSV file ({str(exc).strip()[:200]})") from None
    columns = [c.strip() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS]
    if missing or unknown:
        said = "; ".join(s for s in (f"missing {', '.join(missing)}" if missing else "",
                                     f"unknown {', '.join(unknown)}" if unknown else "") if s)
        raise PimsimError(f"arrivals file {path}: the header must name the columns {', '.join(COLUMNS)} ({said})")
    frame.columns = columns
    if frame.empty:
        raise PimsimError(f"arrivals file {path}: no requests")
    requests, problems = [], []
    previous = 0.0
    for index, (arrival, prompt, output) in enumerate(zip(frame["arrival_s"], frame["prompt_len"],
                                                          frame["output_len"])):
        line = index + 2
        wrong = []
        time = _number(arrival)
        if time is None or time < 0:
            wrong.append(f"arrival_s {arrival!r} is not a time >= 0 in seconds")
        elif time < previous:
            wrong.append(f"arrival_s {time:g} is earlier than the row before ({previous:g}); rows go in arrival order")
        prompt_len, output_len = _whole(prompt), _whole(output)
        if prompt_len is None:
            wrong.append(f"prompt_len {prompt!r} is not a whole number >= 1")
        if output_len is None:
            wrong.append(f"output_len {output!r} is not a whole number >= 1")
        if wrong:
            problems.append(f"line {line}: " + "; ".join(wrong))
        else:
            requests.append(Request(len(requests), time, prompt_len, output_len, line))
        if time is not None and time >= previous:
            previous = time
    if problems:
        raise PimsimError(f"arrivals file {path}: {len(problems)} bad row(s):\n  " + "\n  ".join(problems))
    return requests


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _whole(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 1 else None
