"""Hardware configuration: pydantic models, YAML loading, presets and ``--set`` overrides."""

from pimsim.config.loader import apply_overrides, load_hardware, load_raw, validate
from pimsim.config.models import HardwareConfig

__all__ = ["HardwareConfig", "load_hardware", "load_raw", "apply_overrides", "validate"]
