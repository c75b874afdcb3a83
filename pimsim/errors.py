"""Errors a user can cause. The CLI prints them as one clear message and exits non-zero."""

from __future__ import annotations

from dataclasses import dataclass


class PimsimError(Exception):
    """Base for every error caused by input (configs, traces, flags), never by a bug in pimsim."""


@dataclass(frozen=True)
class Problem:
    path: str  # dotted path in the input ("dram.timing.nRAS"), or "line 12" for traces
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(PimsimError):
    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class TraceError(PimsimError):
    pass
