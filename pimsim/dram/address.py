"""Physical address -> (channel, rank, bank group, bank, row, column) by the config's bit-field order."""

from __future__ import annotations

import numpy as np

from pimsim.config.models import HardwareConfig


def decode(hw: HardwareConfig, addr: np.ndarray) -> dict[str, np.ndarray]:
    """Split byte addresses into fields; ``column`` is returned in device columns (burst index x BL)."""
    bits = hw.dram.field_bits()
    fields = {}
    shift = 0
    for name in reversed(hw.dram.address_mapping):  # least significant field first
        width = bits[name]
        fields[name] = (addr >> shift) & ((1 << width) - 1)
        shift += width
    zeros = np.zeros_like(addr)
    out = {name: fields.get(name, zeros) for name in ("channel", "rank", "bankgroup", "bank", "row")}
    out["column"] = fields.get("column", zeros) * hw.dram.organization.burst_length
    return out
