"""Loading a hardware description: YAML (safe), ``extends`` presets, ``--set`` overrides, validation.

Every problem in a file is collected and raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pimsim.config import checks
from pimsim.config.files import (  # noqa: F401 (read_yaml, parse_yaml and friends are imported from here too)
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    parse_yaml,
    problems_from_validation,
    read_yaml,
    size_problem,
)
from pimsim.config.models import HardwareConfig
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve

MAX_EXTENDS_DEPTH = 8
def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def chain_files(name_or_path: str | Path) -> list[Path]:
    """Every file a hardware description is made of: the file itself and each file its ``extends:``
    chain reads, in order (what a result depends on, for sweep resumption)."""
    files: list[Path] = []
    _, raw = load_raw(name_or_path, _seen=files)
    preset = _preset_path(raw)
    if preset is not None and preset.is_file():  # the interconnect preset it names decides results too
        files.append(preset)
    return files


def load_raw(name_or_path: str | Path, _chain: tuple[Path, ...] = (),
             _seen: list[Path] | None = None) -> tuple[Path, dict]:
    """The file's mapping with its ``extends:`` chain merged in (the file's own keys win)."""
    path = resolve(name_or_path, "hwconfigs")
    if _seen is not None:
        _seen.append(path)
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
        _, base = load_raw(base_ref, _chain, _seen)
        raw = deep_merge(base, raw)
    return path, raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``dram.timing.nRCD=20`` -> (["dram", "timing", "nRCD"], 20); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise PimsimError(f"--set {text!r}: expected KEY=VALUE, e.g. --set dram.timing.nRC=100")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise PimsimError(f"--set {text!r}: empty part in the dotted key")
    try:
        parsed = parse_yaml(value) if value.strip() else ""
    except (yaml.YAMLError, RecursionError):
        parsed = value
    problem = size_problem(parsed)
    if problem:
        raise PimsimError(f"--set {key.strip()}: the value is {problem}")
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


def resolved_config(hw: HardwareConfig) -> dict:
    """The fully resolved hardware description with its derived sizes (``derived``), as ``pimsim config
    show`` prints it and every JSON result carries it."""
    data = hw.model_dump(mode="json")
    data["derived"] = derived_values(hw)
    return data


def derived_values(hw: HardwareConfig) -> dict:
    """What a description implies (``pimsim config show`` prints it under ``derived``)."""
    org = hw.dram.organization
    return {
        "banks_per_channel": org.banks * org.ranks,
        "access_bytes": org.access_bytes,
        "row_bytes": org.row_bytes,
        "accesses_per_row": org.accesses_per_row,
        "capacity_bytes": org.capacity_bytes,
        "peak_bandwidth_GBps": hw.dram.peak_bandwidth_Bps / 1e9,
        "address_bits": hw.dram.field_bits(),
    }


def _preset_path(raw: Any) -> Path | None:
    """The bundled file ``system.interconnect.preset`` names (None where it names none)."""
    system = raw.get("system") if isinstance(raw, dict) else None
    link = system.get("interconnect") if isinstance(system, dict) else None
    if not isinstance(link, dict) or link.get("preset") is None:
        return None
    from pimsim.resources import bundled_dir

    return bundled_dir("hwconfigs") / "interconnects" / f"{link['preset']}.yaml"


def with_interconnect_preset(raw: Any) -> tuple[Any, list[Problem]]:
    """``system.interconnect.preset: NAME``: the bundled hwconfigs/interconnects/NAME.yaml under the values
    given beside it (those win); an unknown name is a problem listing the bundled ones."""
    path = _preset_path(raw)
    if path is None:
        return raw, []
    folder = path.parent
    link = raw["system"]["interconnect"]
    name = link["preset"]
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    if not isinstance(name, str) or name not in known:
        return raw, [Problem("system.interconnect.preset", f"{name!r} is not a bundled interconnect (bundled: "
                                                           f"{', '.join(known)})")]
    preset = read_yaml(folder / f"{name}.yaml")
    merged = copy.deepcopy(raw)
    merged["system"]["interconnect"] = deep_merge(preset, link)
    return merged, []


def validate(raw: Any, source: str) -> HardwareConfig:
    raw, problems = with_interconnect_preset(raw)
    config = None
    derived = None
    if isinstance(raw, dict) and "derived" in raw:  # `config show` output read back: computed, not input
        raw = dict(raw)
        derived = raw.pop("derived")
    try:
        config = HardwareConfig.model_validate(raw)
    except ValidationError as exc:
        problems += problems_from_validation(exc, HardwareConfig)
    problems += checks.check(raw)
    if config is not None and derived is not None and not problems:
        expected = derived_values(config)
        if not isinstance(derived, dict):
            problems.append(Problem("derived", "computed values (as `pimsim config show` prints them), "
                                               "or leave it out"))
        else:
            for key, value in derived.items():
                if key not in expected:
                    problems.append(Problem(f"derived.{key}", "not a derived value (derived values are computed "
                                                               "from the rest; delete the section to change them)"))
                elif _differs(value, expected[key]):
                    problems.append(Problem(f"derived.{key}", f"{value!r}, but the description gives "
                                                               f"{expected[key]!r}: derived values are computed, "
                                                               f"change the inputs (or delete the section)"))
    if problems:
        seen, unique = set(), []
        for p in problems:
            if (p.path, p.message) not in seen:
                seen.add((p.path, p.message))
                unique.append(p)
        raise ConfigError(source, unique)
    assert config is not None
    return config


def _differs(given: Any, computed: Any) -> bool:
    if isinstance(computed, float) and isinstance(given, (int, float)) and not isinstance(given, bool):
        return abs(given - computed) > 1e-9 * max(1.0, abs(computed))
    if isinstance(computed, dict) and isinstance(given, dict):
        return set(given) != set(computed) or any(_differs(given[k], computed[k]) for k in computed)
    return given != computed


def load_hardware(name_or_path: str | Path, overrides: list[str] | None = None) -> HardwareConfig:
    path, raw = load_raw(name_or_path)
    overrides = list(overrides or [])
    for text in overrides:  # `--set nRCD=20`: a key that only exists deeper down
        parts, _ = parse_override(text)
        if len(parts) == 1 and parts[0] not in raw:
            found = _paths_ending(raw, parts[0])
            if not found:
                import difflib

                leaves = {p.rsplit(".", 1)[-1]: p for p in _leaf_paths(raw)}
                found = [leaves[k] for k in difflib.get_close_matches(parts[0], list(leaves), n=3)]
            if found:
                raise PimsimError(f"--set {text}: no top-level key {parts[0]!r}; did you mean "
                                  f"{' or '.join(repr(f) for f in found[:3])}?")
    raw = apply_overrides(raw, overrides)
    # a problem a --set caused is not the file's: say so in the source line
    source = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return validate(raw, source)


def _leaf_paths(raw: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in raw.items() if isinstance(raw, dict) else ():
        out += _leaf_paths(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def _paths_ending(raw: Any, key: str, prefix: str = "") -> list[str]:
    found = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            dotted = f"{prefix}{k}"
            if k == key:
                found.append(dotted)
            found += _paths_ending(v, key, dotted + ".")
    return found
