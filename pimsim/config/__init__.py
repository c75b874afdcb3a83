"""Hardware configuration: pydantic models, YAML loading, presets and ``--set`` overrides.

The names below are loaded on first use (PEP 562), so that importing a submodule that needs neither the
hardware models nor the DRAM standards (:mod:`pimsim.config.files`: reading YAML, reporting validation
errors) does not build them: ``pimsim model list`` reads model cards only.
"""

from __future__ import annotations

import importlib

__all__ = ["HardwareConfig", "load_hardware", "load_raw", "apply_overrides", "validate"]
_HOMES = {"HardwareConfig": "pimsim.config.models", "load_hardware": "pimsim.config.loader",
          "load_raw": "pimsim.config.loader", "apply_overrides": "pimsim.config.loader",
          "validate": "pimsim.config.loader"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
