"""What the benchmarks print about the machine they ran on (figures from a shared machine are noisy)."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"host: {platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
            f"load average {load} (1, 5, 15 min; above the core count the machine is shared and wall times "
            f"stretch), python {platform.python_version()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
