"""Typed runs: what to simulate (:class:`RunSpec`) and what came out (:class:`RunResult`).

A ``RunSpec`` is frozen and checked when made: a wrong type or value anywhere is one
:class:`~pimsim.errors.ConfigError` listing every problem. Sweep points are patches of a base spec
(:meth:`RunSpec.patch`). ``pimsim.runs.simulate(spec)`` runs one and returns a ``RunResult``: the
headline figures (units in their names), every figure typed in ``details`` (:mod:`pimsim.run_details`),
``to_json()`` for the JSON record (with the resolved config), :meth:`RunResult.from_json` to read one
back, ``to_row()`` for sweep tables.

This module imports nothing heavy (no numpy, torch or pandas at import time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from pimsim.errors import ConfigError, PimsimError, Problem

if TYPE_CHECKING:
    from pimsim.run_details import DecodeRun, SpecDecRun

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
    no_cache: bool = False  # trace the model afresh and leave the traced-graph cache alone (results the same)

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
        for name in ("check_protocol", "no_cache"):
            if not isinstance(getattr(self, name), bool):
                problems.append(Problem(name, f"true or false, not {getattr(self, name)!r}"))
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


# keys `pimsim run` adds to a result's JSON after the run (the co-simulation's comparison; wall-clock times)
CLI_KEYS = ("functional", "host")


@dataclass(frozen=True)
class RunResult:
    """What one run gave: its spec, the typed figures (``details``: a
    :class:`~pimsim.run_details.DecodeRun` or :class:`~pimsim.run_details.SpecDecRun`) and the headline
    figures as fields. ``to_json()`` is the ``pimsim run --json`` record; :meth:`from_json` reads one back."""

    kind: str  # "decode" or "spec_dec"
    spec: RunSpec
    details: DecodeRun | SpecDecRun = field(repr=False)
    timeline: tuple = field(default=(), repr=False)  # (unit, name, part, layer, start ps, end ps, channel ends)
    hardware: Any = field(default=None, repr=False, compare=False)  # the run's HardwareConfig
    # the resolved hardware config's JSON, for a result read back from a file (``hardware`` is None then)
    config: Mapping[str, Any] | None = field(default=None, repr=False)
    # what `pimsim run` added to a file read back (CLI_KEYS)
    cli_extras: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, spec: RunSpec, details: DecodeRun | SpecDecRun, timeline=(), hardware=None) -> RunResult:
        from pimsim.run_details import SpecDecRun

        return cls("spec_dec" if isinstance(details, SpecDecRun) else "decode", spec, details, tuple(timeline),
                   hardware)

    # the headline figures, the same for every kind of run
    @property
    def model(self) -> str:
        """The model (the target, for speculative decoding)."""
        return self.details.target if self.kind == "spec_dec" else self.details.model

    @property
    def hw(self) -> str:
        return self.details.hw

    @property
    def weight_format(self) -> str | None:
        return self.details.weight_format

    @property
    def prompt_len(self) -> int:
        return self.details.prompt_len

    @property
    def tokens(self) -> int:
        return self.details.gen_tokens

    @property
    def latency_per_token_s(self) -> float:
        return self.details.latency_per_token_s if self.kind == "spec_dec" else self.details.latency.latency_per_token_s

    @property
    def tokens_per_s(self) -> float:
        return self.details.tokens_per_s if self.kind == "spec_dec" else self.details.latency.tokens_per_s

    @property
    def total_time_s(self) -> float:
        return self.details.total_time_s if self.kind == "spec_dec" else self.details.latency.total_time_s

    @property
    def energy_per_token_J(self) -> float | None:
        return self.details.energy_per_token_J

    @property
    def breakdown_s(self) -> Mapping[str, float]:
        """Decode: busy time per part; spec_dec: ``draft`` and ``verify``."""
        d = self.details
        if self.kind == "spec_dec":
            return MappingProxyType({"draft": d.time_s.draft_s, "verify": d.time_s.verify_s})
        return d.time.busy_s

    @property
    def energy_breakdown_J(self) -> Mapping[str, float]:
        """Energy per component over the run (decode runs with an energy section; empty otherwise)."""
        energy = self.details.energy if self.kind == "decode" else None
        return energy.energy_breakdown_J if energy is not None else MappingProxyType({})

    @property
    def config_hash(self) -> str:
        return self.details.config_hash

    def to_json(self) -> dict:
        """The JSON record: ``schema_version`` and ``kind`` first, then every figure and the resolved
        hardware ``config``."""
        from pimsim.json_fields import to_json

        out = {"schema_version": SCHEMA_VERSION, "kind": self.kind, **to_json(self.details)}
        if self.hardware is not None:
            from pimsim.config.loader import resolved_config

            out["config"] = resolved_config(self.hardware)
        elif self.config is not None:
            out["config"] = dict(self.config)
        out.update(self.cli_extras)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> RunResult:
        """A result from its JSON record (a ``pimsim run --json`` file): the figures typed again, the spec
        as the record says it ran (hardware by name, its overrides folded into ``config``). A record of
        another schema version, or not a run record, is refused with what it is."""
        from pimsim.json_fields import from_json
        from pimsim.run_details import DecodeRun, SpecDecRun

        if not isinstance(data, Mapping):
            raise PimsimError(f"{where}: not a `pimsim run --json` record (a JSON object is expected)")
        version, kind = data.get("schema_version"), data.get("kind")
        if version != SCHEMA_VERSION:
            raise PimsimError(f"{where}: schema_version {version!r}; this pimsim reads records of schema version "
                              f"{SCHEMA_VERSION} (`pimsim run --json` of the same version; run it again to convert)"
                              if version is not None else
                              f"{where}: no schema_version: not a `pimsim run --json` record of this pimsim")
        if kind not in MODES:
            raise PimsimError(f"{where}: kind {kind!r}, not a run record ({' or '.join(MODES)})")
        body = {k: v for k, v in data.items() if k not in ("schema_version", "kind", "config", *CLI_KEYS)}
        details = from_json(SpecDecRun if kind == "spec_dec" else DecodeRun, body, where)
        config = data.get("config")
        return cls(kind, _spec_of(details), details, (), None,
                   MappingProxyType(dict(config)) if config is not None else None,
                   MappingProxyType({k: data[k] for k in CLI_KEYS if k in data}))

    def to_dict(self) -> dict:
        return self.to_json()

    def to_row(self) -> dict:
        """One flat sweep row: where it ran, the headline figures, then ``time_total_s:PART`` and
        ``energy_total_J:COMPONENT`` (each over the whole run)."""
        d = self.details
        where = {"hw": self.hw, "prompt_len": d.prompt_len, "gen_tokens": d.gen_tokens}
        if self.kind == "spec_dec":
            energy = d.energy
            return {**where, "latency_per_token_s": d.latency_per_token_s, "tokens_per_s": d.tokens_per_s,
                    "total_time_s": d.total_time_s, "tokens_per_verify_step": d.tokens_per_verify_step,
                    "expected_tokens_per_verify_step": d.expected_tokens_per_verify_step,
                    "speedup_over_autoregressive": d.speedup_over_autoregressive,
                    "energy_per_token_J": energy.energy_per_token_J if energy else None,
                    "energy_ratio_over_autoregressive": energy.energy_ratio_over_autoregressive if energy else None,
                    "weight_format": d.weight_format, "config_hash": d.config_hash}
        lat, energy = d.latency, d.energy
        row = {**where, "weight_format": d.weight_format, "latency_per_token_s": lat.latency_per_token_s,
               "latency_first_token_s": lat.latency_first_token_s, "latency_last_token_s": lat.latency_last_token_s,
               "tpot_p50_s": lat.tpot_p50_s, "tpot_p90_s": lat.tpot_p90_s, "tpot_p99_s": lat.tpot_p99_s,
               "tokens_per_s": lat.tokens_per_s, "total_time_s": lat.total_time_s, "row_hit_rate": d.dram.row_hit_rate,
               "bytes_internal": d.data.internal_bytes, "bytes_external": d.data.external_bytes,
               "bound_efficiency": d.bound.bound_efficiency,
               "energy_per_token_J": energy.energy_per_token_J if energy else None,
               "energy_per_token_per_param_J": energy.energy_per_token_per_param_J if energy else None,
               "average_power_W": energy.average_power_W if energy else None, "config_hash": d.config_hash}
        # each part's time and energy over the whole run (not per token: the scope is in the name)
        row.update({f"{TIME_PART_PREFIX}{k}": v for k, v in d.time.busy_s.items()})
        row.update({f"{ENERGY_PART_PREFIX}{k}": v for k, v in (energy.energy_breakdown_J if energy else {}).items()})
        return row

    def to_frame(self):
        """The row as a one-line pandas DataFrame (pandas imported here, not with pimsim)."""
        import pandas as pd

        return pd.DataFrame([{"model": self.model, "hw": self.hw, "kind": self.kind, **self.to_row()}])


def _spec_of(details) -> RunSpec:
    """The spec a record says it ran (for a result read back from a file; overrides are in its config)."""
    from pimsim.run_details import SpecDecRun

    if isinstance(details, SpecDecRun):
        s = details.spec_dec
        a = s.acceptance
        text = ",".join(f"{k}={v}" for k, v in (("draft", s.draft), ("target", s.target), ("k", s.k),
                                                  ("alpha", a.alpha), ("seed", a.seed), ("policy", s.policy),
                                                  ("placement", s.placement), ("draft_channels", s.draft_channels))
                        if v is not None)
        return RunSpec(model=details.target, hw=details.hw, prompt_len=details.prompt_len,
                       gen_tokens=details.gen_tokens, fidelity=details.fidelity, spec_dec=text)
    placement = details.decode_placement
    return RunSpec(model=details.model, hw=details.hw, prompt_len=details.prompt_len, gen_tokens=details.gen_tokens,
                   source_len=details.source_len, schedule=details.schedule, fidelity=details.fidelity,
                   weight_format=details.weight_format, batch=details.sequences,
                   prefill=details.prefill.on if details.prefill else None,
                   devices=details.system.devices if details.system else None,
                   decode_fc_on=placement.placement.fc if placement else None,
                   link=placement.placement.link if placement else None,
                   decode_fc_schedule=placement.schedule if placement else None,
                   check_protocol=details.protocol_check is not None)
