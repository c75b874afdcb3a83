"""Reading YAML files (safe, bounded) and reporting pydantic's validation errors as Problems.

Everything that reads a hardware description, a model card, a device spec or a sweep file uses these;
they import neither the hardware config models nor the DRAM standards, so commands that read only
cards (``pimsim model list``) do not build the hardware models.
"""

from __future__ import annotations

import difflib
import re as _re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pimsim.errors import ConfigError, PimsimError, Problem

# Bounds checked before any work: a config or card is a few KB, nested a few levels. Aliases are counted
# as often as they are used, since hashing or merging a value expands them (a "billion laughs" file).
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading, except that numbers written with an exponent are numbers (``400e0``,
    ``1e-300``, ``2e1``), as in YAML 1.2 and JSON, not text that skips every numeric check; an exponent
    form without a fraction whose value is whole (``2e1``) is the integer, as ``20`` would be."""


# The same loader on libyaml's parser where PyYAML was built with it (about 7x faster to parse; the
# resolver and the safe constructor are the Python ones above, so the values are the same).
_FastLoader = type("_FastLoader", (yaml.CSafeLoader,), {}) if hasattr(yaml, "CSafeLoader") else _Loader


_EXPONENT = r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+"


def _construct_exponent(loader: yaml.SafeLoader, node: yaml.ScalarNode):
    text = loader.construct_scalar(node).replace("_", "")
    value = float(text)
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa and int(exponent) >= 0 and value.is_integer() and abs(value) < 2 ** 63:
        return int(mantissa) * 10 ** int(exponent)
    return value


for _cls in {_Loader, _FastLoader}:
    _cls.add_implicit_resolver("tag:pimsim:exponent", _re.compile(f"^{_EXPONENT}$"), list("-+0123456789."))
    _cls.add_constructor("tag:pimsim:exponent", _construct_exponent)


def parse_yaml(text: str, loader_class=_Loader) -> Any:
    """One YAML document (safe), numbers with exponents read as numbers."""
    loader = loader_class(text)  # what yaml.safe_load does, with the SafeLoader subclass above
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    from pimsim.resources import check_regular_file

    check_regular_file(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(str(path), [Problem("", f"{size:,} bytes: larger than any config or card "
                                                      f"({MAX_FILE_BYTES:,} at most)")])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PimsimError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not UTF-8 text (byte {exc.start}: {exc.reason})")]) from None
    try:  # libyaml's parser when built in (7x faster); on an error the pure-Python one, for its exact message
        data = parse_yaml(text, _FastLoader)
    except (yaml.YAMLError, RecursionError):
        data = None
    try:
        if data is None:
            data = parse_yaml(text)
    except RecursionError:
        raise ConfigError(str(path), [Problem("", f"nested more than {MAX_DEPTH} levels deep")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [Problem("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    problem = size_problem(data)
    if problem:
        raise ConfigError(str(path), [Problem("", problem)])
    return data


def size_problem(data: Any) -> str | None:
    """Why `data` is too deep or too large once aliases are expanded, or None. Iterative, and it stops at
    the bound, so a bomb costs no more than MAX_VALUES steps."""
    stack, seen = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values once its aliases are expanded (a YAML alias bomb?)"
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, (tuple, list, dict)))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
    return None


def suggest(key: str, known) -> str:
    """A "; did you mean ...?" hint for a misspelt key, or an empty string."""
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def problems_from_validation(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One Problem per pydantic error of `model`: dotted path, "did you mean" for unknown keys, the value."""
    return [_problem_from_pydantic(err, model) for err in exc.errors()]


def _problem_from_pydantic(err: dict, model: type[BaseModel]) -> Problem:
    loc = [str(x) for x in err["loc"]]
    path = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        return Problem(path, f"unknown key{suggest(loc[-1], known)}")
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
