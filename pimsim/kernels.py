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
from typing import TYPE_CHECKING

import numpy as np

from pimsim.config.models import HardwareConfig
from pimsim.dram.compile import compile_standard
from pimsim.dram.simulate import run_command_trace
from pimsim.dram.standard import PimRole
from pimsim.dram.timing_state import K_REPEAT
from pimsim.errors import PimsimError
from pimsim.mapper import hbm_pim_gemv
from pimsim.mapper.gemv import RD_FIRST_ROW, RD_GROUP, RD_POS, STRATEGIES
from pimsim.mapper.placement import Geometry, auto_pack, auto_split, place_gemv
from pimsim.trace.files import CommandTrace, RequestTrace

if TYPE_CHECKING:
    from pimsim.pim.banks import BankModel

# The functional path (the bank model, number formats, partial sums), the attention kernel and the
# no-PIM baseline (the request controller) import what they need when called: a timing-only
# `pimsim kernel gemv` (and every `pimsim run`, which imports this module) starts without them.

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
    if hw.mapping.gemv == hbm_pim_gemv.STRATEGY:  # the vendor's own tiling
        placement = hbm_pim_gemv.place(hw, geometry, rows, cols)
    else:
        split = auto_split(geometry, rows, cols)
        placement = place_gemv(geometry, rows, cols, split=split, pack=auto_pack(geometry, rows, cols, split))
    program = STRATEGIES[hw.mapping.gemv](compiled, placement, geometry.lanes_out)
    stats = _stats(compiled, geometry, placement, program, _time_program(compiled, program, "gemv program"))
    result = GemvResult(stats=stats)
    if functional:
        rng = _rng(seed)
        fmt, x_fmt = hw.pim.weight_format, hw.pim.input_format
        W = _random(rng, (rows, cols), fmt) if W is None else W
        x = _random(rng, (cols,), x_fmt) if x is None else np.asarray(x, np.float32).ravel()
        if x.shape != (cols,):
            raise PimsimError(f"x must have {cols} elements to match W, got {x.shape[0]}")
        wq, xq = _operands(W, fmt), _operands(x, x_fmt)  # refuses unquantized integer data up front
        result.y = _run_functional(compiled, hw, placement, program, wq, xq)
        wq, xq = wq.astype(np.float64), xq.astype(np.float64)
        exact, scale = wq @ xq, np.abs(wq) @ np.abs(xq)
        err = np.abs(result.y - exact)
        stats["functional"] = {
            "max_abs_error": float(err.max()),
            "max_error_relative_to_sum_of_magnitudes": float((err / np.maximum(scale, 1e-30)).max()),
            "reference": f"float64 product of the {fmt} weights and {x_fmt} inputs",
            "seed": seed,
        }
    if hw.energy is not None:
        stats["energy"] = _kernel_energy(compiled, stats, program.asic_adds, program.outputs)
    if no_pim:
        result.baseline_stats = _no_pim_baseline(compiled, geometry, rows, cols)
        stats["speedup_over_no_pim"] = result.baseline_stats["cycles"] / stats["cycles"]
    return result


def _kernel_energy(compiled, stats: dict, asic_adds: int, outputs: int) -> dict:
    """Energy of one kernel run: its commands, every channel counted busy for the whole run, and the
    ASIC's partial-sum additions."""
    from pimsim.asic.costs import reduce_sram_bytes
    from pimsim.energy.model import Actions, energy_J, pin_bytes

    org = compiled.hw.dram.organization
    actions = Actions(commands=stats["commands"], total_s=stats["time_s"],
                      busy_s=[stats["time_s"]] * org.channels, pin_bytes=pin_bytes(compiled, stats["commands"]),
                      lane_ops=asic_adds, sram_bytes=reduce_sram_bytes(asic_adds, outputs))
    return energy_J(compiled, actions)


def _time_program(compiled, program, name: str) -> dict:
    """Issue a program's command streams through the timing kernel; its run summary."""
    n = len(program)
    trace = CommandTrace(line=np.arange(n) + 1, cycle=np.zeros(n, np.int64), has_cycles=False, cmd=program.cmd,
                         node=program.node, row=program.row, column=program.column, source=f"<{name}>")
    return run_command_trace(compiled, trace).summary()


def _rng(seed: int) -> np.random.Generator:
    if not isinstance(seed, int) or seed < 0:
        raise PimsimError(f"the random seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


def _random(rng: np.random.Generator, shape, fmt: str) -> np.ndarray:
    """Random operands: standard normal for float formats, uniform integers for int8, uniform trits
    or signs for ternary and binary."""
    if fmt == "int8":
        return rng.integers(-128, 128, shape).astype(np.float32)
    if fmt in ("ternary", "ternary-b3"):
        return rng.integers(-1, 2, shape).astype(np.float32)
    if fmt == "binary":
        return (2 * rng.integers(0, 2, shape) - 1).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _operands(values, fmt: str) -> np.ndarray:
    from pimsim.pim.formats import to_operands

    try:
        return to_operands(values, fmt)
    except ValueError as exc:
        raise PimsimError(str(exc)) from None


def peak_internal_Bps(compiled) -> float:
    """Every PIM unit reads one column access per MACAB, MACABs back to back on every channel."""
    hw = compiled.hw
    org = hw.dram.organization
    mac_all = compiled.standard.role(PimRole.MAC_ALL)
    mac_gap = int(compiled.spec.cmds[compiled.command_names.index(mac_all), K_REPEAT])
    return org.channels * Geometry.of(hw).units * org.access_bytes / (mac_gap * hw.dram.tCK_s)


def _stats(compiled, geometry, placement, program, summary) -> dict:
    hw = compiled.hw
    org = hw.dram.organization
    macs = summary["commands"].get(compiled.standard.role(PimRole.MAC_ALL), 0)
    in_banks = macs * geometry.units * org.access_bytes
    peak_internal = peak_internal_Bps(compiled)
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
                      "channel_groups": placement.split, "rows_per_dram_row": placement.pack,
                      "padded_cols": placement.cols_padded, "area_utilization": placement.utilization},
        "asic": {"partial_sums": program.partial_sums, "adds": program.asic_adds},
        "refresh": summary["refresh"],
    }


def _store_matrix(model: BankModel, placement, matrix: np.ndarray, rows: int | None = None) -> None:
    """Put the first `rows` rows of a matrix (already padded to placement.cols_padded) into the banks."""
    rows = matrix.shape[0] if rows is None else rows
    if rows == 0:
        return
    m = np.arange(rows)
    for lo, width in placement.column_tiles():
        channel, bank, dram_row, elem = placement.where(m, np.full(rows, lo))
        for offset in np.unique(elem):  # packed output rows start at different places of a DRAM row
            sel = elem == offset
            model.store_rows(channel[sel], bank[sel], dram_row[sel], matrix[:rows][sel, lo:lo + width], int(offset))


def _collect(program, results, geometry) -> np.ndarray:
    """Output values [active rows, column groups] from the RDMAC results of a program: the ASIC adds
    each output's partial sums in FP32, one after another, in the order they were read (assumed)."""
    g = geometry
    n_groups = program.n_groups
    rows = program.outputs // n_groups
    by_pos = {r.index: r.values for r in results}
    reads = program.reads[np.argsort(program.reads[:, RD_POS], kind="stable")]
    values = np.stack([by_pos[int(p)] for p in reads[:, RD_POS]])  # [reads, units, lanes]
    base = reads[:, RD_FIRST_ROW]
    output = (base[:, None] + np.arange(g.units)[None, :]) * n_groups + reads[:, RD_GROUP][:, None]
    real = (base[:, None] + np.arange(g.units)[None, :]) < rows
    lanes = values.shape[2]
    out_id = np.repeat(output[real], lanes)  # one entry per partial sum: reads in order, then lanes
    partial = values[real].reshape(-1)
    order = np.argsort(out_id, kind="stable")  # per output, its partials in reading order
    from pimsim.pim.reduce import sum_partials

    return sum_partials(out_id[order], partial[order], rows * n_groups, g.integer).reshape(rows, n_groups)


def _run_functional(compiled, hw, placement, program, W, x) -> np.ndarray:
    from pimsim.pim.banks import BankModel
    from pimsim.pim.formats import pad_value

    g = placement.geometry
    model = BankModel(hw)
    padded = np.full((W.shape[0], placement.cols_padded), pad_value(g.fmt), np.float32)
    padded[:, :W.shape[1]] = W
    _store_matrix(model, placement, padded)
    xp = np.zeros(placement.cols_padded, np.float32)
    xp[:W.shape[1]] = x
    results = model.run(compiled, program.cmd, program.node, program.row, program.column,
                        payload_index=program.payload,
                        payloads=xp.reshape(-1, g.elems_per_access // g.writes_per_mac),
                        select=program.select, register=getattr(program, "register", None))
    return _collect(program, results, g)[:, 0]


def _no_pim_baseline(compiled, geometry, rows, cols) -> dict:
    """The same GEMV on the same memory without PIM: W streamed out with ordinary reads."""
    from pimsim.dram.address import channel_interleaved
    from pimsim.dram.simulate import run_request_trace

    hw = compiled.hw
    org = hw.dram.organization
    requests = -(-int(rows * cols * geometry.operand_bytes) // org.access_bytes)
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


def attention(hw: HardwareConfig, heads: int, head_dim: int, context: int, max_context: int | None = None,
              functional: bool = False, seed: int = 0) -> dict:
    """One decode step of attention over a KV cache holding `context` - 1 tokens: append the new
    token's K and V, scores = q.K^T per head, then p.V per head (p given: softmax is the ASIC's).

    Returns stats per phase (append, scores, context) and, with `functional`, the maximum error of
    scores and outputs through the bank model against numpy."""
    from pimsim.mapper.attention import append_program, kv_layout
    from pimsim.pim.banks import BankModel
    from pimsim.pim.formats import to_operands

    max_context = context if max_context is None else max_context
    if not 1 <= context <= max_context:
        raise PimsimError(f"context {context} must be between 1 and the reserved {max_context}")
    if heads * head_dim * max_context > MAX_ELEMENTS:
        raise PimsimError("the KV cache is beyond what pimsim simulates")
    if hw.pim is not None and hw.pim.cache_format != hw.pim.weight_format:
        hw = hw.with_weight_format(hw.pim.cache_format)  # attention runs on the KV cache's datapath
    compiled = compile_standard(hw)
    geometry = Geometry.of(hw)
    layout = kv_layout(geometry, heads, head_dim, max_context)
    lanes_out = geometry.lanes_out
    t = context - 1  # the new token
    K = V = q = p = None
    if functional:
        rng = _rng(seed)
        fmt = hw.pim.weight_format
        K, V, q = (_random(rng, shape, fmt) for shape in ((context, heads, head_dim),) * 2 + ((heads, head_dim),))
        p = rng.random((heads, context)).astype(np.float32) if fmt != "int8" else _random(rng, (heads, context), fmt)
    append = append_program(compiled, layout, t, None if K is None else K[t], V)
    program_for = STRATEGIES[hw.mapping.gemv]
    scores = program_for(compiled, layout.k, lanes_out, layout.k_groups(), rows_active=context)
    ctx = program_for(compiled, layout.v, lanes_out, layout.v_groups(context), rows_active=head_dim)
    phases = {}
    for name, prog in (("append", append), ("scores", scores), ("context", ctx)):
        s = _time_program(compiled, prog, name)
        in_banks = s["commands"].get("MACAB", 0) * geometry.units * hw.dram.organization.access_bytes
        phases[name] = {"cycles": s["cycles"], "time_s": s["time_s"], "commands": s["commands"],
                        "row_hit_rate": s["row_hit_rate"], "bytes_over_pins": s["bytes"],
                        "bytes_in_banks": in_banks,
                        "utilization": in_banks / s["time_s"] / peak_internal_Bps(compiled) if s["time_s"] else 0.0}
    stats = {
        "kernel": "attention", "hardware": hw.name, "heads": heads, "head_dim": head_dim, "context": context,
        "max_context": max_context, "phases": phases,
        "cycles": sum(ph["cycles"] for ph in phases.values()),
        "time_s": sum(ph["time_s"] for ph in phases.values()),
        "schedule": "serial: append, then scores, then context",
        "kv_rows_per_bank": layout.k.dram_rows + layout.v.dram_rows,
        "asic": {"score_adds": scores.asic_adds, "context_adds": ctx.asic_adds},
    }
    if hw.energy is not None:
        commands: dict[str, int] = {}
        for ph in phases.values():
            for k, v in ph["commands"].items():
                commands[k] = commands.get(k, 0) + v
        stats["energy"] = _kernel_energy(compiled, {"commands": commands, "time_s": stats["time_s"]},
                                         scores.asic_adds + ctx.asic_adds, scores.outputs + ctx.outputs)
    if functional:
        model = BankModel(hw)
        e = geometry.elems_per_access
        # the cache as it was before this step (tokens before t), then the append program runs
        k_mat = np.zeros((t, layout.k.cols_padded), np.float32)
        k_mat.reshape(t, heads, layout.head_dim_padded)[:, :, :head_dim] = K[:t]
        vt_mat = np.zeros((layout.head_dim_padded, layout.v.cols_padded), np.float32)
        vt_mat.reshape(layout.head_dim_padded, heads, layout.context_padded)[:head_dim, :, :t] = \
            V[:t].transpose(2, 1, 0)
        _store_matrix(model, layout.k, k_mat)
        _store_matrix(model, layout.v, vt_mat)
        model.run(compiled, append.cmd, append.node, append.row, append.column, payload_index=append.payload,
                  payloads=append.payloads)
        qp = np.zeros(layout.k.cols_padded, np.float32)
        qp.reshape(heads, layout.head_dim_padded)[:, :head_dim] = q
        got_scores = _collect(scores, model.run(compiled, scores.cmd, scores.node, scores.row, scores.column,
                                                payload_index=scores.payload, payloads=qp.reshape(-1, e),
                                                select=scores.select), geometry)  # [tokens, heads]
        pp = np.zeros(layout.v.cols_padded, np.float32)
        pp.reshape(heads, layout.context_padded)[:, :context] = p
        got_ctx = _collect(ctx, model.run(compiled, ctx.cmd, ctx.node, ctx.row, ctx.column,
                                          payload_index=ctx.payload, payloads=pp.reshape(-1, e),
                                          select=ctx.select), geometry)  # [dims, heads]
        Kq, Vq = to_operands(K, fmt).astype(np.float64), to_operands(V, fmt).astype(np.float64)
        want_scores = np.einsum("thd,hd->th", Kq, to_operands(q, fmt).astype(np.float64))
        want_ctx = np.einsum("th,thd->hd", to_operands(p, fmt).astype(np.float64).T, Vq)
        stats["functional"] = {
            "scores_max_abs_error": float(np.abs(got_scores[:context] - want_scores).max()),
            "context_max_abs_error": float(np.abs(got_ctx.T - want_ctx).max()),
            "reference": f"float64 products of the {fmt}-rounded operands", "seed": seed,
            "scores": got_scores[:context], "context": got_ctx.T,
            "want_scores": want_scores, "want_context": want_ctx,
        }
    return stats
