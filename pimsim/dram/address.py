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


def encode(hw: HardwareConfig, fields: dict[str, np.ndarray]) -> np.ndarray:
    """Byte addresses of the given fields (the inverse of `decode`; ``column`` in device columns,
    a missing field is 0)."""
    bits = hw.dram.field_bits()
    addr = np.zeros_like(np.asarray(next(iter(fields.values()))), dtype=np.int64)
    shift = 0
    for name in reversed(hw.dram.address_mapping):
        value = np.asarray(fields.get(name, 0), np.int64)
        if name == "column":
            value = value // hw.dram.organization.burst_length
        addr |= value << shift
        shift += bits[name]
    return addr


def channel_interleaved(hw: HardwareConfig, count: int) -> np.ndarray:
    """Addresses of `count` accesses that stream through every channel at once: access k goes to
    channel k mod C, and each channel reads its own part front to back (column, then bank group,
    bank, row), as a processor streaming a large array through all channels would."""
    org = hw.dram.organization
    k = np.arange(count, dtype=np.int64)
    channel, local = k % org.channels, k // org.channels
    column, local = local % org.accesses_per_row, local // org.accesses_per_row
    bankgroup, local = local % org.bankgroups, local // org.bankgroups
    bank, row = local % org.banks_per_group, local // org.banks_per_group
    return encode(hw, {"channel": channel, "bankgroup": bankgroup, "bank": bank, "row": row,
                       "column": column * org.burst_length})
