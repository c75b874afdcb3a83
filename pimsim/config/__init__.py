"""Hardware configuration: pydantic models, YAML loading, presets and ``--set`` overrides.

The names below are loaded on first use (PEP 562), so that importing a submodule that needs neither the
hardware models nor the DRAM standards (:mod:`pimsim.config.files`: reading YAML, reporting validation
errors) does not build them: ``pimsim model list`` reads model cards only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads each on first use
    from pimsim.config.loader import apply_overrides, load_hardware, load_raw, validate
    from pimsim.config.models import HardwareConfig

__all__ = ["HardwareConfig", "load_hardware", "load_raw", "apply_overrides", "validate"]
_LAZY_NAMES = {"HardwareConfig": "pimsim.config.models", "load_hardware": "pimsim.config.loader",
          "load_raw": "pimsim.config.loader", "apply_overrides": "pimsim.config.loader",
          "validate": "pimsim.config.loader"}


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})
