"""Frozen dataclasses written as JSON records and read back, key for key.

A record class lists its fields with :func:`jfield` (the JSON key, whether the key is left out when the
value is None, whether a nested record's keys sit at this level) and its key order in ``JSON_ORDER``:
:func:`to_json` writes the keys in that order, :func:`from_json` reads them back (a missing key or one no
field names is a :class:`~pimsim.errors.PimsimError`), so ``from_json(cls, to_json(x)) == x`` and a
record read from a file is typed again. Values are kept as they came (no int/float coercion), so the
JSON written again is the same text.

This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pimsim.errors import PimsimError

_KEY, _OPTIONAL, _FLAT = "json_key", "json_optional", "json_flat"


def jfield(key: str | None = None, *, optional: bool = False, flat: bool = False, **kwargs) -> Any:
    """A record field: `key` is its JSON key (default: the field's name); `optional` leaves the key out
    when the value is None (default None); `flat` puts a nested record's keys at this level."""
    if optional:
        kwargs.setdefault("default", None)
    return dataclasses.field(metadata={_KEY: key, _OPTIONAL: optional, _FLAT: flat}, **kwargs)


def frozen_map(values: Mapping | None) -> Mapping:
    """A read-only copy of `values` (for a frozen record's mapping fields)."""
    return MappingProxyType(dict(values or {}))


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get(_KEY) or f.name


def _flat_keys(cls) -> set[str]:
    """Every JSON key a record writes at its own level (its flat sub-records' keys included)."""
    out = set()
    for f in dataclasses.fields(cls):
        out |= _flat_keys(_record_type(_hints(cls)[f.name])) if f.metadata.get(_FLAT) else {_key(f)}
    return out


def _encode(value):
    if hasattr(value, "to_json_dict"):  # a record with its own JSON form
        return value.to_json_dict()
    if dataclasses.is_dataclass(value):
        return to_json(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _items(record) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.metadata.get(_FLAT):
            if value is not None:
                out.update(_items(value))
        elif not (value is None and f.metadata.get(_OPTIONAL)):
            out[_key(f)] = _encode(value)
    return out


def to_json(record) -> dict:
    """The record as a JSON-ready dict, keys in ``JSON_ORDER`` (a key missing there is a pimsim bug)."""
    items = _items(record)
    order = record.json_order() if hasattr(record, "json_order") else type(record).JSON_ORDER
    left = set(items) - set(order)
    assert not left, f"pimsim bug: {type(record).__name__} writes keys its JSON_ORDER lacks: {sorted(left)}"
    return {k: items[k] for k in order if k in items}


def _record_type(hint):
    """The record class in `hint` (``X`` or ``X | None``)."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    raise TypeError(f"pimsim bug: no record type in {hint!r}")


def _decode(hint, value, where: str):
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise PimsimError(f"{where}: a JSON object expected, not {type(value).__name__}")
        if hasattr(hint, "from_json_dict"):
            return hint.from_json_dict(value, where)
        return from_json(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise PimsimError(f"{where}: a JSON list expected, not {type(value).__name__}")
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise PimsimError(f"{where}: a JSON object expected, not {type(value).__name__}")
        inner = args[1] if len(args) == 2 else Any
        return MappingProxyType({k: _decode(inner, v, f"{where}.{k}") for k, v in value.items()})
    return _scalar(hint, value, where)


# what a JSON value of a scalar field may be (a float field takes a whole number: JSON writes 2.0 as 2.0,
# but a figure computed as an int stays one)
_SCALARS = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}


def _scalar(hint, value, where: str):
    allowed = _SCALARS.get(hint)
    if allowed is not None and (not isinstance(value, allowed) or isinstance(value, bool) and hint is not bool):
        raise PimsimError(f"{where}: {hint.__name__} expected, not {value!r}")
    return value


def _fields_from(cls, data: Mapping, where: str) -> tuple[dict, set]:
    """The constructor arguments of `cls` from `data` and the keys they used."""
    kwargs, used = {}, set()
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get(_FLAT):
            sub = _record_type(hints[f.name])
            if f.default is None and not _flat_keys(sub) & set(data):  # an optional group, absent
                kwargs[f.name] = None
                continue
            sub_kwargs, sub_used = _fields_from(sub, data, where)
            kwargs[f.name] = sub(**sub_kwargs)
            used |= sub_used
            continue
        key = _key(f)
        if key in data:
            kwargs[f.name] = _decode(hints[f.name], data[key], f"{where}.{key}" if where else key)
            used.add(key)
        elif not f.metadata.get(_OPTIONAL):
            raise PimsimError(f"{where or 'record'}: no {key!r}")
    return kwargs, used


def from_json(cls, data: Mapping, where: str = ""):
    """A `cls` record from its JSON; a key no field names is refused (another schema, or not a record)."""
    kwargs, used = _fields_from(cls, data, where)
    unknown = sorted(set(data) - used)
    if unknown:
        raise PimsimError(f"{where or cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}")
    return cls(**kwargs)
