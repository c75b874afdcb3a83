"""Loading a hardware description: YAML (safe), ``extends`` presets, ``--set`` overrides, validation.

Every problem in a file is collected and raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pimsim.config import checks
from pimsim.config.models import HardwareConfig
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve

MAX_EXTENDS_DEPTH = 8
# Both build plain Python values only (SafeConstructor); the C one just parses faster.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _safe_parse(text: str, loader_class) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PimsimError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not UTF-8 text (byte {exc.start}: {exc.reason})")]) from None
    try:  # libyaml's parser when built in (7x faster); on an error the pure-Python one, for its exact message
        return _safe_parse(text, _FAST_SAFE_LOADER)
    except yaml.YAMLError:
        pass
    try:
        return _safe_parse(text, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [Problem("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(name_or_path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[Path, dict]:
    """The file's mapping with its ``extends:`` chain merged in (the file's own keys win)."""
    path = resolve(name_or_path, "hwconfigs")
    if path.resolve() in _chain:
        names = " -> ".join(p.name for p in (*_chain, path.resolve()))
        raise ConfigError(str(path), [Problem("extends", f"files extend each other in a cycle: {names}")])
    _chain = (*_chain, path.resolve())
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [Problem("", f"expected a mapping at the top level, got {type(raw).__name__}")])
    parent = raw.pop("extends", None)
    if parent is not None:
        if len(_chain) > MAX_EXTENDS_DEPTH:
            raise ConfigError(str(path), [Problem("extends", f"chain of extends deeper than {MAX_EXTENDS_DEPTH}")])
        if not isinstance(parent, str):
            raise ConfigError(str(path), [Problem("extends", "must be the name or path of another hardware file")])
        base_ref = path.parent / parent if (path.parent / parent).is_file() else parent
        _, base = load_raw(base_ref, _chain)
        raw = deep_merge(base, raw)
    return path, raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``dram.timing.nRCD=20`` -> (["dram", "timing", "nRCD"], 20); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise PimsimError(f"--set {text!r}: expected KEY=VALUE, e.g. --set dram.timing.nRCD=20")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise PimsimError(f"--set {text!r}: empty part in the dotted key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise PimsimError(f"--set {text!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def validate(raw: Any, source: str) -> HardwareConfig:
    problems: list[Problem] = []
    config = None
    try:
        config = HardwareConfig.model_validate(raw)
    except ValidationError as exc:
        problems += problems_from_validation(exc, HardwareConfig)
    problems += checks.check(raw)
    if problems:
        seen, unique = set(), []
        for p in problems:
            if (p.path, p.message) not in seen:
                seen.add((p.path, p.message))
                unique.append(p)
        raise ConfigError(source, unique)
    assert config is not None
    return config


def load_hardware(name_or_path: str | Path, overrides: list[str] | None = None) -> HardwareConfig:
    path, raw = load_raw(name_or_path)
    raw = apply_overrides(raw, overrides or [])
    return validate(raw, str(path))


def problems_from_validation(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One Problem per pydantic error of `model`: dotted path, "did you mean" for unknown keys, the value."""
    return [_problem_from_pydantic(err, model) for err in exc.errors()]


def _problem_from_pydantic(err: dict, model: type[BaseModel]) -> Problem:
    loc = [str(x) for x in err["loc"]]
    path = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        return Problem(path, f"unknown key{checks.suggest(loc[-1], known)}")
    if kind == "missing":
        return Problem(path, "missing")
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    return Problem(path, f"{err['msg']}{shown}")


def _fields_at(model: type[BaseModel], loc: list[str]) -> set[str]:
    """Field names of the (sub)model found by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return set()
        current = _model_in(fields[part].annotation)
    return set(getattr(current, "model_fields", {}) or {})


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
