"""Explicit warm-up: compile (or load from the on-disk cache) every numba kernel once.

The kernels are specialised on array types only, never on a config, so one tiny run of each entry
point prepares them for every hardware description. Call it before timing anything, and before
starting worker processes that should all find a warm cache.
"""

from __future__ import annotations

import time


def warm_up() -> float:
    """Compile or load the kernels; returns the seconds it took."""
    from pimsim.config import load_hardware
    from pimsim.dram.compile import compile_standard
    from pimsim.dram.simulate import run_command_trace, run_request_trace
    from pimsim.trace.generate import pim_row_sweep, streaming_reads

    start = time.perf_counter()
    aim = compile_standard(load_hardware("gddr6-aim.yaml"))
    for record in (False, True):
        run_command_trace(aim, pim_row_sweep(aim, rows=2, macs_per_row=4, channels=1), record=record)
        run_request_trace(aim, streaming_reads(8), record=record)
    return time.perf_counter() - start
