"""Typed runs: what to simulate (:class:`RunSpec`) and what came out (:class:`RunResult`).

A ``RunSpec`` is frozen and checked when made: a wrong type or value anywhere is one
:class:`~pimsim.errors.ConfigError` listing every problem. Sweep points are patches of a base spec
(:meth:`RunSpec.patch`). ``pimsim.runs.simulate(spec)`` runs one and returns a ``RunResult``: the
headline figures as typed fields (units in their names), the full record (every count, the resolved
config, the model card) for JSON, ``to_row()`` for sweep tables.

This module imports nothing heavy (no numpy, torch or pandas at import time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping

from pimsim.errors import ConfigError, Problem

SCHEMA_VERSION = 1  # of RunResult.to_json(); raised when a key changes meaning or goes away
MODES = ("decode", "spec_dec")
SCHEDULES = ("serial", "overlap")
FIDELITIES = ("cycle", "fast")

# sweep-row columns of each part's time and energy, summed over the run's tokens
TIME_PART_PREFIX, ENERGY_PART_PREFIX = "time_total_s:", "energy_total_J:"
# the figures a sweep row keeps of a run, by its kind
DECODE_ROW_METRICS = ("weight_format", "latency_per_token_s", "latency_first_token_s", "latency_last_token_s",
                      "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "tokens_per_s", "total_time_s", "row_hit_rate",
                      "bytes_internal", "bytes_external",
                      "bound_efficiency", "energy_per_token_J", "energy_per_token_per_param_J", "average_power_W",
                      "config_hash")
SPEC_DEC_ROW_METRICS = ("latency_per_token_s", "tokens_per_s", "total_time_s", "tokens_per_verify_step",
                        "expected_tokens_per_verify_step", "speedup_over_autoregressive", "energy_per_token_J",
                        "energy_ratio_over_autoregressive", "weight_format", "config_hash")


def patched_spec_dec(text: str | None, model: str, axes: Mapping[str, Any]) -> str:
    """A ``key=value,...`` spec-dec text with `axes` (sweep axes ``spec_dec.KEY``) set on top and the
    target defaulting to `model`. A spec-dec card's name is kept as it is (it names its own target)."""
    text = text or ""
    if text and "=" not in text:
        if axes:
            raise ConfigError("spec_dec", [Problem(f"spec_dec.{k}", f"cannot vary the card {text}; give its "
                                                   "settings as key=value instead") for k in axes])
        return text
    settings = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
    settings.update({k: str(v) for k, v in axes.items()})
    settings.setdefault("target", model)
    return ",".join(f"{k}={v}" for k, v in settings.items())


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunSpec:
    """One run: a model on a hardware description, how and how long.

    ``mode`` is ``decode`` (token generation) or ``spec_dec`` (speculative decoding, ``spec_dec`` says
    how: ``draft=gpt2,k=4,alpha=0.8`` or a spec-dec card; its target is ``model`` unless it names one).
    Lengths left at None take the model card's defaults. ``overrides`` are hardware config keys and
    values (what ``--set KEY=VALUE`` gives)."""

    model: str | None
    hw: str
    mode: str | None = None  # None: spec_dec if a spec_dec text is given, else decode
    prompt_len: int | None = None
    gen_tokens: int | None = None
    source_len: int | None = None
    schedule: str = "serial"
    fidelity: str = "fast"
    weight_format: str | None = None
    spec_dec: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    check_protocol: bool = False
    batch: int = 1  # sequences decoded in lock step, each with its own KV cache
    prefill: str | None = None  # where the prompt runs: pim, asic or a host device spec (None: assumed in the cache)
    devices: int | None = None  # several devices (pimsim.system): None takes the hardware file's system.devices
    parallel: str | None = None  # tp, pp or tp=T,pp=P; None takes the hardware file's system.parallel
    decode_fc_on: str | None = None  # a host device spec running the FC GEMMs, attention in PIM (pimsim.hetero)
    link: str | None = None  # the interconnect preset between that host and the PIM (default pcie5-x16)
    decode_fc_schedule: str | None = None  # auto (default), serial or overlap (pimsim.hetero)

    def __post_init__(self):
        problems = []
        if self.model is not None and not (isinstance(self.model, str) and self.model):
            problems.append(Problem("model", f"a model card name or path, not {self.model!r}"))
        if not (isinstance(self.hw, str) and self.hw):
            problems.append(Problem("hw", f"a hardware description name or path, not {self.hw!r}"))
        mode = self.mode if self.mode is not None else ("spec_dec" if self.spec_dec is not None else "decode")
        if mode not in MODES:
            problems.append(Problem("mode", f"one of {', '.join(MODES)}, not {mode!r}"))
        if not (_int(self.batch) and self.batch >= 1):
            problems.append(Problem("batch", f"a whole number of sequences >= 1, not {self.batch!r}"))
        elif self.batch > 1 and mode == "spec_dec":
            problems.append(Problem("batch", "speculative decoding runs one sequence (batch 1)"))
        if self.prefill is not None and not (isinstance(self.prefill, str) and self.prefill):
            problems.append(Problem("prefill", f"pim, asic or a device spec (h100, ...), not {self.prefill!r}"))
        elif self.prefill and mode == "spec_dec":
            problems.append(Problem("prefill", "speculative-decoding runs start from a filled KV cache"))
        elif self.prefill and self.prompt_len == 0:
            problems.append(Problem("prefill", "a prefill needs a prompt of at least one token (prompt_len >= 1)"))
        for name, least in (("prompt_len", 0), ("gen_tokens", 1), ("source_len", 1)):
            value = getattr(self, name)
            if value is not None and not (_int(value) and value >= least):
                problems.append(Problem(name, f"a whole number >= {least}, not {value!r}"))
        if self.schedule not in SCHEDULES:
            problems.append(Problem("schedule", f"one of {', '.join(SCHEDULES)}, not {self.schedule!r}"))
        if self.fidelity not in FIDELITIES:
            problems.append(Problem("fidelity", f"one of {', '.join(FIDELITIES)}, not {self.fidelity!r}"))
        # which formats exist and which the hardware's PIM units take is checked against the hardware
        if self.weight_format is not None and not (isinstance(self.weight_format, str) and self.weight_format):
            problems.append(Problem("weight_format", f"a format name (bf16, ternary, ...), not {self.weight_format!r}"))
        if self.spec_dec is not None and not (isinstance(self.spec_dec, str) and self.spec_dec):
            problems.append(Problem("spec_dec", "text like 'draft=gpt2,k=4,alpha=0.8' or a spec-dec card, not "
                                                f"{self.spec_dec!r}"))
        if mode == "spec_dec" and self.spec_dec is None:
            problems.append(Problem("spec_dec", "a spec_dec run needs its settings (draft=...,k=...,alpha=...)"))
        if mode == "decode" and self.spec_dec is not None and self.mode is not None:
            problems.append(Problem("spec_dec", "given with mode decode"))
        if mode == "decode" and self.model is None:
            problems.append(Problem("model", "missing"))
        if not isinstance(self.check_protocol, bool):
            problems.append(Problem("check_protocol", f"true or false, not {self.check_protocol!r}"))
        if self.devices is not None and not (_int(self.devices) and self.devices >= 1):
            problems.append(Problem("devices", f"a whole number >= 1, not {self.devices!r}"))
        if self.parallel is not None and not (isinstance(self.parallel, str) and self.parallel):
            problems.append(Problem("parallel", f"tp, pp or tp=T,pp=P, not {self.parallel!r}"))
        if self.decode_fc_on is not None and not (isinstance(self.decode_fc_on, str) and self.decode_fc_on):
            problems.append(Problem("decode_fc_on", f"a host device spec (a100, h100, ...), not {self.decode_fc_on!r}"))
        elif self.decode_fc_on is not None and mode == "spec_dec":
            problems.append(Problem("decode_fc_on", "speculative decoding runs all on the PIM system"))
        for name in ("link", "decode_fc_schedule"):
            value = getattr(self, name)
            if value is not None and self.decode_fc_on is None:
                problems.append(Problem(name, "given without decode_fc_on (the host device running the FC layers)"))
            elif value is not None and not (isinstance(value, str) and value):
                problems.append(Problem(name, f"a name, not {value!r}"))
        if self.decode_fc_schedule not in (None, "auto", "serial", "overlap"):
            problems.append(Problem("decode_fc_schedule", f"auto, serial or overlap, not {self.decode_fc_schedule!r}"))
        if not (isinstance(self.overrides, Mapping) and all(isinstance(k, str) and k for k in self.overrides)):
            problems.append(Problem("overrides", "a mapping of config keys (text) to values"))
        if problems:
            raise ConfigError("run", problems)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    def patch(self, **changes) -> RunSpec:
        """This spec with `changes`; ``overrides`` given here are added to (and win over) the spec's."""
        if "overrides" in changes:
            changes["overrides"] = {**self.overrides, **changes["overrides"]}
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError("run", [Problem(k, "unknown run setting") for k in unknown])
        return replace(self, **changes)

    def override_texts(self) -> list[str]:
        """The overrides as ``--set`` texts (values as JSON, which the config loader reads as YAML)."""
        return [f"{k}={json.dumps(v)}" for k, v in self.overrides.items()]

    def to_dict(self) -> dict:
        return {f.name: dict(self.overrides) if f.name == "overrides" else getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RunResult:
    """What one run gave. Headline figures are fields; ``record`` is the whole JSON-ready result (every
    count, the resolved ``config``, the model card(s), ``config_hash``), as ``pimsim run --json`` writes it."""

    kind: str  # "decode" or "spec_dec"
    spec: RunSpec
    model: str  # the target, for speculative decoding
    hw: str
    weight_format: str | None
    prompt_len: int
    tokens: int
    latency_per_token_s: float
    tokens_per_s: float
    total_time_s: float
    energy_per_token_J: float | None
    breakdown_s: Mapping[str, float]  # decode: busy time per part; spec_dec: draft and verify
    energy_breakdown_J: Mapping[str, float]
    config_hash: str
    record: Mapping[str, Any] = field(repr=False)
    timeline: tuple = field(default=(), repr=False)  # (unit, name, part, layer, start ps, end ps, channel ends)
    hardware: Any = field(default=None, repr=False, compare=False)  # the run's HardwareConfig

    @classmethod
    def from_record(cls, spec: RunSpec, kind: str, record: dict, timeline=(), hardware=None) -> RunResult:
        if kind == "spec_dec":
            breakdown = record["time_s"]
            model = record["target"]
        else:
            breakdown = record["breakdown_s"]
            model = record["model"]
        return cls(kind, spec, model, record["hw"], record.get("weight_format"), record["prompt_len"],
                   record["tokens"], record["latency_per_token_s"], record["tokens_per_s"], record["total_time_s"],
                   record.get("energy_per_token_J"), MappingProxyType(dict(breakdown)),
                   MappingProxyType(dict(record.get("energy_breakdown_J", {}))), record["config_hash"], record,
                   tuple(timeline), hardware)

    def to_json(self) -> dict:
        """The JSON record: ``schema_version`` and ``kind`` first, then every figure and the resolved
        hardware ``config``."""
        out = {"schema_version": SCHEMA_VERSION, "kind": self.kind, **self.record}
        if self.hardware is not None:
            from pimsim.config.loader import resolved_config

            out["config"] = resolved_config(self.hardware)
        return out

    def to_dict(self) -> dict:
        return self.to_json()

    def to_row(self) -> dict:
        """One flat sweep row: where it ran, the headline figures, then ``time_total_s:PART`` and
        ``energy_total_J:COMPONENT`` (each over the whole run)."""
        r = self.record
        where = {"hw": self.hw, "prompt_len": r.get("prompt_len"), "gen_tokens": r.get("tokens")}
        if self.kind == "spec_dec":
            return {**where, **{k: r.get(k) for k in SPEC_DEC_ROW_METRICS}}
        row = {**where, **{k: r.get(k) for k in DECODE_ROW_METRICS}}
        # each part's time and energy over the whole run (not per token: the scope is in the name)
        row.update({f"{TIME_PART_PREFIX}{k}": v for k, v in r["breakdown_s"].items()})
        row.update({f"{ENERGY_PART_PREFIX}{k}": v for k, v in r.get("energy_breakdown_J", {}).items()})
        return row

    def to_frame(self):
        """The row as a one-line pandas DataFrame (pandas imported here, not with pimsim)."""
        import pandas as pd

        return pd.DataFrame([{"model": self.model, "hw": self.hw, "kind": self.kind, **self.to_row()}])
