"""Unit factors by name, so a conversion says what it converts (issue 16 item 5).

Each is a definition, not a measurement: the source is the standard that defines the unit.
"""

from __future__ import annotations

BITS_PER_BYTE = 8  # an octet (IEC 80000-13:2008, item 13-9.c; every DRAM standard's byte)
BYTES_PER_MIB = 2**20  # mebibyte (IEC 80000-13:2008, binary prefix mebi = 2^20)
BYTES_PER_GIB = 2**30  # gibibyte (IEC 80000-13:2008, binary prefix gibi = 2^30)
S_PER_PS = 1e-12  # seconds per picosecond (SI prefix pico = 10^-12); the engine's clock counts picoseconds
