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
    from pimsim.kernels import attention, gemv

    aim = load_hardware("gddr6-aim.yaml")
    compiled = compile_standard(aim)
    for record in (False, True):
        run_command_trace(compiled, pim_row_sweep(compiled, rows=2, macs_per_row=4, channels=1), record=record)
        run_request_trace(compiled, streaming_reads(8), record=record)
    gemv(aim, 16, 16, functional=True)  # the bank model
    attention(aim, 1, 16, 2, functional=True)
    return time.perf_counter() - start
