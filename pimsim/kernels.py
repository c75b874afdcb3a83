"""PIM kernels as a Python API: run a GEMV on a PIM memory, for timing and, optionally, for real.

    result = pimsim.kernels.gemv(hw, rows=4096, cols=4096)                   # timing only
    result = pimsim.kernels.gemv(hw, W=W, x=x)                               # timing and the numbers
    result.y, result.stats, result.baseline_stats

The functional path stores W in the simulated banks, writes x through the global buffer and reads the
accumulators back exactly as the command stream says; the ASIC's part (adding partial sums, in FP32,
in the order they are read: assumed) happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.address import channel_interleaved
from pimsim.dram.compile import compile_standard
from pimsim.dram.simulate import run_command_trace, run_request_trace
from pimsim.dram.timing_state import K_REPEAT
from pimsim.errors import PimsimError
from pimsim.mapper.gemv import RD_CHANNEL, RD_POS, RD_SELECT, RD_WAVE, gemv_program
from pimsim.mapper.placement import Geometry, place_gemv
from pimsim.pim.banks import BankModel
from pimsim.pim.formats import to_operands
from pimsim.trace.files import CommandTrace, RequestTrace

MAX_ELEMENTS = 1 << 31


@dataclass
class GemvResult:
    stats: dict
    y: np.ndarray | None = None
    baseline_stats: dict | None = None
    details: dict = field(default_factory=dict)


def gemv(hw: HardwareConfig, rows: int | None = None, cols: int | None = None, W=None, x=None,
         functional: bool | None = None, no_pim: bool = False, seed: int = 0) -> GemvResult:
    """Simulate y = W x on the PIM memory `hw`; W and x random (seeded) if only the shape is given."""
    if W is not None:
        W = np.asarray(W, np.float32)
        if W.ndim != 2:
            raise PimsimError(f"W must be a matrix, got shape {W.shape}")
        rows, cols = W.shape
    if rows is None or cols is None or rows < 1 or cols < 1:
        raise PimsimError("a GEMV needs a shape: --rows M --cols N (both at least 1), or a matrix")
    if rows * cols > MAX_ELEMENTS:
        raise PimsimError(f"{rows:,} x {cols:,} is beyond what pimsim simulates ({MAX_ELEMENTS:,} elements)")
    functional = (W is not None) if functional is None else functional
    compiled = compile_standard(hw)
    geometry = Geometry.of(hw)
    placement = place_gemv(geometry, rows, cols)
    lanes_out = hw.pim.lanes_per_unit if hw.pim.accumulate == "lanes" else 1
    program = gemv_program(compiled, placement, lanes_out)
    trace = CommandTrace(line=np.arange(len(program)) + 1, cycle=np.zeros(len(program), np.int64),
                         has_cycles=False, cmd=program.cmd, node=program.node, row=program.row,
                         column=program.column, source="<gemv program>")
    run = run_command_trace(compiled, trace)
    stats = _stats(compiled, geometry, placement, program, run.summary())
    result = GemvResult(stats=stats)
    if functional:
        rng = np.random.default_rng(seed)
        if W is None:
            W = rng.standard_normal((rows, cols)).astype(np.float32)
        x = rng.standard_normal(cols).astype(np.float32) if x is None else np.asarray(x, np.float32).ravel()
        if x.shape != (cols,):
            raise PimsimError(f"x must have {cols} elements to match W, got {x.shape[0]}")
        result.y = _run_functional(compiled, hw, placement, program, W, x)
        fmt = hw.pim.weight_format
        wq, xq = to_operands(W, fmt).astype(np.float64), to_operands(x, fmt).astype(np.float64)
        exact, scale = wq @ xq, np.abs(wq) @ np.abs(xq)
        err = np.abs(result.y - exact)
        stats["functional"] = {
            "max_abs_error": float(err.max()),
            "max_error_relative_to_sum_of_magnitudes": float((err / np.maximum(scale, 1e-30)).max()),
            "reference": f"float64 product of the {fmt}-rounded operands",
            "seed": seed,
        }
    if no_pim:
        result.baseline_stats = _no_pim_baseline(compiled, hw, rows, cols)
        stats["speedup_over_no_pim"] = result.baseline_stats["cycles"] / stats["cycles"]
    return result


def _stats(compiled, geometry, placement, program, summary) -> dict:
    hw = compiled.hw
    org = hw.dram.organization
    macs = summary["commands"].get("MACAB", 0)
    in_banks = macs * geometry.units * org.access_bytes
    # peak: every unit reads one column access per MACAB, MACABs back to back
    mac_gap = int(compiled.spec.cmds[compiled.command_names.index("MACAB"), K_REPEAT])
    peak_internal = org.channels * geometry.units * org.access_bytes / (mac_gap * hw.dram.tCK_s)
    time_s = summary["time_s"]
    return {
        "kernel": "gemv",
        "strategy": hw.mapping.gemv,
        "shape": {"rows": placement.rows_out, "cols": placement.cols_in},
        "hardware": hw.name,
        "cycles": summary["cycles"],
        "time_s": time_s,
        "commands": summary["commands"],
        "row_hit_rate": summary["row_hit_rate"],
        "bytes_in_banks": in_banks,
        "bytes_over_pins": summary["bytes"],
        "internal_bandwidth_GBps": in_banks / time_s / 1e9 if time_s else 0.0,
        "peak_internal_bandwidth_GBps": peak_internal / 1e9,
        "utilization": in_banks / time_s / peak_internal if time_s else 0.0,
        "placement": {"segments": placement.segments, "waves": placement.waves, "dram_rows": placement.dram_rows,
                      "padded_cols": placement.cols_padded, "area_utilization": placement.utilization},
        "asic": {"partial_sums": program.partial_sums, "adds": program.asic_adds},
        "refresh": summary["refresh"],
    }


def _run_functional(compiled, hw, placement, program, W, x) -> np.ndarray:
    g = placement.geometry
    model = BankModel(hw)
    rows, cols = W.shape
    padded = np.zeros((rows, placement.cols_padded), np.float32)
    padded[:, :cols] = W
    m = np.arange(rows)
    for seg in range(placement.segments):
        lo = seg * g.row_elems
        width = min(g.row_elems, placement.cols_padded - lo)
        channel, bank, dram_row, _ = placement.where(m, np.full(rows, lo))
        model.store_rows(channel, bank, dram_row, padded[:, lo:lo + width])
    xp = np.zeros(placement.cols_padded, np.float32)
    xp[:cols] = x
    results = model.run(compiled, program.cmd, program.node, program.row, program.column,
                        payload_index=program.payload, payloads=xp.reshape(-1, g.elems_per_access),
                        select=program.select)
    by_pos = {r.index: r.values for r in results}
    reads = program.reads[np.argsort(program.reads[:, RD_POS], kind="stable")]
    values = np.stack([by_pos[int(p)] for p in reads[:, RD_POS]])  # [reads, units, lanes]
    base = reads[:, RD_WAVE] * g.slots + reads[:, RD_CHANNEL] * g.units * g.banks_per_unit \
        + reads[:, RD_SELECT] * g.units
    output = base[:, None] + np.arange(g.units)[None, :]  # [reads, units]
    real = output < rows
    order = np.argsort(output[real], kind="stable")  # per output row, its partials in reading order
    partials = values[real][order].reshape(rows, -1)  # every row gets the same number of partials
    # the ASIC adds the partial sums in FP32, one after another, in the order they were read
    y = np.zeros(rows, np.float32)
    for j in range(partials.shape[1]):
        y = (y + partials[:, j].astype(np.float32)).astype(np.float32)
    return y


def _no_pim_baseline(compiled, hw, rows, cols) -> dict:
    """The same GEMV on the same memory without PIM: W streamed out with ordinary reads."""
    org = hw.dram.organization
    operand_bytes = {"bf16": 2, "fp16": 2, "int8": 1}[hw.pim.weight_format]
    requests = -(-rows * cols * operand_bytes // org.access_bytes)
    if requests * org.access_bytes > org.capacity_bytes:
        raise PimsimError("the matrix does not fit the memory for the no-PIM baseline")
    addresses = channel_interleaved(hw, requests)
    trace = RequestTrace(line=np.arange(requests) + 1, cycle=np.zeros(requests, np.int64),
                         is_write=np.zeros(requests, np.bool_), addr=addresses)
    run = run_request_trace(compiled, trace)
    s = run.summary()
    return {"cycles": s["cycles"], "time_s": s["time_s"], "commands": s["commands"], "bytes": s["bytes"],
            "bandwidth_GBps": s["bandwidth_GBps"], "row_hit_rate": s["row_hit_rate"],
            "method": "weights read over all channels at once by the FR-FCFS controller, each channel "
                      "front to back"}
