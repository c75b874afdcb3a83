"""The mapper: placement invariants, closed-form GEMV timing, functional GEMVs against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compiled, no_refresh
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.dram.address import channel_interleaved, decode
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.errors import PimsimError
from pimsim.kernels import gemv
from pimsim.mapper.gemv import gemv_program
from pimsim.mapper.placement import Geometry, RowAllocator, auto_split, place_gemv
from pimsim.pim.formats import to_operands

PIM = ("gddr6-aim.yaml", "hbm-pim.yaml")


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(PIM), m=st.integers(1, 700), n=st.integers(1, 3000))
def test_every_element_is_placed_exactly_once(name, m, n):
    g = Geometry.of(compiled(name).hw)
    alloc = RowAllocator(g)
    before = alloc.allocate("earlier", 3)
    p = place_gemv(g, m, n, alloc)
    mm, nn = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    ch, bank, row, elem = p.where(mm.ravel(), nn.ravel())
    assert (ch < g.channels).all() and (bank < g.units * g.banks_per_unit).all() and (elem < g.row_elems).all()
    # no two elements share a cell, and the matrix stays inside its own rows
    cells = ((ch * 64 + bank) * g.rows + row) * g.row_elems + elem
    assert len(np.unique(cells)) == m * n
    assert row.min() >= before + 3 and row.max() < p.first_row + p.dram_rows
    assert 0 < p.utilization <= 1


def test_a_matrix_that_does_not_fit_names_what_it_needs():
    g = Geometry.of(compiled("gddr6-aim.yaml").hw)
    with pytest.raises(PimsimError, match=r"needs 16,385 rows per bank .* the memory has 16,384"):
        place_gemv(g, g.slots * 16385, 16)


def test_aligned_gemv_on_gddr6_aim_matches_the_closed_form():
    c = no_refresh("gddr6-aim.yaml")
    t = c.timing
    g = Geometry.of(c.hw)
    rows_per_channel = 4
    p = place_gemv(g, g.slots * rows_per_channel, g.row_elems)
    prog = gemv_program(c, p)
    _, at, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                   np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []
    # per channel, AiM's way (REFERENCE.md section 2): 64 WRGB back to back in register mode; a mode
    # change (nMODCH) on the next cycle; ACTAB; 64 MACAB; a mode change once the MACs settle (nCCDL);
    # RDMAC; then per further row: the host waits for the result (nCLREG + nBL + 1), a mode change,
    # the lazy precharge of the previous row (PREA), ACTAB, MACs, mode change, RDMAC; the stream ends
    # with the last row's precharge after the host wait
    host_wait = t["nCLREG"] + t["nBL"] + 1
    macs = t["nRCDRDMAC"] + 63 * t["nCCDL"] + t["nCCDL"] + t["nMODCH"]  # ACTAB to RDMAC
    first_rdmac = 63 * t["nBL"] + 1 + t["nMODCH"] + macs
    period = host_wait + t["nMODCH"] + t["nRP"] + macs
    assert (first_rdmac, period) == (375, 283)  # pimsim before AiM's modes: 226 cycles a row
    last_prea = first_rdmac + (rows_per_channel - 1) * period + host_wait
    assert int(rec[:, 0].max()) == last_prea
    s = gemv(c.hw, g.slots * rows_per_channel, g.row_elems).stats
    assert s["cycles"] == last_prea + t["nRP"] == 1259
    assert s["commands"]["MODCH"] == 8 * rows_per_channel * 2
    assert s["commands"]["MACAB"] == 8 * rows_per_channel * 64 and s["asic"]["adds"] == 0


@pytest.mark.parametrize("name", PIM)
def test_every_gemv_stream_is_protocol_clean(name):
    c = compiled(name)
    p = place_gemv(Geometry.of(c.hw), 300, 1500)
    prog = gemv_program(c, p)
    _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                  np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []


def test_single_segment_gemv_on_aim_equals_numpy_to_the_last_bit():
    """One DRAM row per output and a whole-row global buffer: no partial sums, so the result is the
    MAC units' own: an adder tree per column, FP32 accumulation across the 64 columns."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((500, 1024)).astype(np.float32)
    x = rng.standard_normal(1024).astype(np.float32)
    y = gemv(compiled("gddr6-aim.yaml").hw, W=W, x=x).y
    wq, xq = to_operands(W, "bf16").astype(np.float64), to_operands(x, "bf16").astype(np.float64)
    expect = np.zeros(500)
    for k in range(64):
        p = wq[:, 16 * k:16 * k + 16] * xq[16 * k:16 * k + 16]
        while p.shape[1] > 1:  # adder tree, each sum rounded to FP32
            p = (p[:, 0::2] + p[:, 1::2]).astype(np.float32).astype(np.float64)
        expect = (expect + p[:, 0]).astype(np.float32).astype(np.float64)
    assert np.array_equal(y.astype(np.float64), expect)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(PIM), m=st.integers(1, 300), n=st.integers(1, 2500), seed=st.integers(0, 999))
def test_any_gemv_is_within_accumulation_error_of_numpy(name, m, n, seed):
    result = gemv(compiled(name).hw, m, n, functional=True, seed=seed)
    f = result.stats["functional"]
    # FP32 accumulation errs by a few units of 2**-24 per addition; FP16 by 2**-11
    eps = 2.0**-24 if name == "gddr6-aim.yaml" else 2.0**-11
    bound = eps * (n / 16 + 64)
    assert f["max_error_relative_to_sum_of_magnitudes"] <= bound, (f, bound)
    assert result.y.shape == (m,)


def test_no_pim_baseline_streams_every_weight_through_all_channels():
    hw = load_hardware("gddr6-aim.yaml")
    addrs = channel_interleaved(hw, 64)
    f = decode(hw, addrs)
    assert list(f["channel"][:8]) == list(range(8)) and len(np.unique(addrs)) == 64
    r = gemv(hw, 1024, 1024, no_pim=True)
    b = r.baseline_stats
    assert b["bytes"] == 1024 * 1024 * 2
    assert b["bandwidth_GBps"] <= hw.dram.peak_bandwidth_Bps / 1e9
    assert r.stats["speedup_over_no_pim"] == b["cycles"] / r.stats["cycles"] > 1


def test_a_negative_seed_is_refused(capsys):
    with pytest.raises(PimsimError, match="seed"):
        gemv(compiled("gddr6-aim.yaml").hw, 8, 8, functional=True, seed=-1)
    with pytest.raises(SystemExit):
        main(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "8", "--cols", "8", "--seed", "-1"])


def test_kernel_gemv_cli(capsys):
    assert main(["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "256", "--cols", "512", "--functional",
                 "--no-pim", "--json", "-"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["shape"] == {"rows": 256, "cols": 512} and out["functional"]["max_abs_error"] < 1e-3
    assert out["no_pim"]["cycles"] > out["cycles"] and 0 < out["utilization"] < 1
    assert main(["kernel", "gemv", "--hw", "ddr4-2400.yaml", "--rows", "4", "--cols", "4"]) == 2
    assert "no pim section" in capsys.readouterr().err


def test_int8_gemv_with_int32_accumulators_is_exact():
    hw = load_hardware("gddr6-aim.yaml").with_weight_format("int8")  # 32 lanes, int8 inputs, int32 sums
    assert (hw.pim.lanes_per_unit, hw.pim.input_format, hw.pim.accumulator_format) == (32, "int8", "int32")
    rng = np.random.default_rng(2)
    W = rng.integers(-128, 128, (200, 700)).astype(np.float32)
    x = rng.integers(-128, 128, 700).astype(np.float32)
    y = gemv(hw, W=W, x=x).y
    assert np.array_equal(y.astype(np.int64), W.astype(np.int64) @ x.astype(np.int64))
    # sums far beyond 2**24, where FP32 partial sums would round: still exact
    W = np.full((4, 16384), 127, np.float32)
    x = np.full(16384, 127, np.float32)
    assert list(gemv(hw, W=W, x=x).y) == [16384 * 127 * 127] * 4
    # random int8 data for --functional, and unquantized data refused with a clear error
    assert gemv(hw, 64, 64, functional=True).stats["functional"]["max_abs_error"] == 0
    with pytest.raises(PimsimError, match="int8 operands"):
        gemv(hw, W=np.full((2, 16), 0.5, np.float32), x=np.ones(16, np.float32))


def test_wave_major_equals_row_partition_where_a_segment_fits_the_global_buffer():
    from pimsim.mapper.gemv import gemv_program_wave_major

    c = compiled("gddr6-aim.yaml")
    p = place_gemv(Geometry.of(c.hw), 700, 3000)
    a, b = gemv_program(c, p), gemv_program_wave_major(c, p)
    for name in ("cmd", "node", "row", "column", "select", "payload", "reads"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("shape", [(300, 1500), (1024, 4096), (7, 33)])
def test_wave_major_on_hbm_pim_trades_buffer_writes_for_activations_and_partial_sums(shape):
    base = compiled("hbm-pim.yaml", "mapping.gemv=row_partition").hw
    wave = load_hardware("hbm-pim.yaml", ["mapping.gemv=wave_major"])
    a, b = gemv(base, *shape, functional=True), gemv(wave, *shape, functional=True)
    ca, cb = a.stats["commands"], b.stats["commands"]
    assert cb["MACAB"] == ca["MACAB"]  # the same multiply-accumulates
    assert cb["ACTAB"] <= ca["ACTAB"] and cb["RDMAC"] <= ca["RDMAC"] and cb["WRGB"] >= ca["WRGB"]
    assert b.stats["asic"]["adds"] <= a.stats["asic"]["adds"]
    eps = 2.0**-11
    assert b.stats["functional"]["max_error_relative_to_sum_of_magnitudes"] <= eps * (shape[1] / 16 + 64)
    c = compiled("hbm-pim.yaml", "mapping.gemv=wave_major")
    from pimsim.mapper.gemv import gemv_program_wave_major

    prog = gemv_program_wave_major(c, place_gemv(Geometry.of(c.hw), *shape), 16)
    _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                  np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []


def test_attention_runs_with_either_strategy():
    wave = load_hardware("hbm-pim.yaml", ["mapping.gemv=wave_major"])
    from pimsim.kernels import attention

    s = attention(wave, 3, 40, 20, 48, functional=True)
    assert s["functional"]["scores_max_abs_error"] < 0.05 and s["functional"]["context_max_abs_error"] < 0.05


def _emulate_row_partition(hw, W, x):
    """numpy emulation of the whole row_partition pipeline, written from the README's description:
    x cut into one part per channel group (one part unless the matrix has few rows), each part into
    DRAM-row segments; products exact; per RDMAC the unit's sum over one global-buffer block (adder tree or lanes, each
    addition rounded to the accumulator); the ASIC adds an output's partial sums in FP32, in order
    (segment by segment, block by block, lane by lane)."""
    g = Geometry.of(hw)
    fmt, acc = hw.pim.weight_format, hw.pim.accumulator_format
    rnd = (lambda v: np.float64(np.float32(v))) if acc == "fp32" else (lambda v: np.float64(np.float16(v)))
    e = g.elems_per_access
    n_pad = -(-W.shape[1] // e) * e
    wq = np.zeros((W.shape[0], n_pad))
    wq[:, :W.shape[1]] = to_operands(W, fmt)
    xq = np.zeros(n_pad)
    xq[:W.shape[1]] = to_operands(x, fmt)
    per_row = g.row_elems // e
    part = place_gemv(g, W.shape[0], W.shape[1]).part_accesses  # a channel group's share of x
    segments = [(s, min(p + part, n_pad // e, s + per_row)) for p in range(0, n_pad // e, part)
                for s in range(p, min(p + part, n_pad // e), per_row)]
    y = np.zeros(W.shape[0], np.float32)
    for m in range(W.shape[0]):
        for seg_start, seg_end in segments:
            for b0 in range(seg_start, seg_end, g.gb_chunks):
                lanes = np.zeros(e if hw.pim.accumulate == "lanes" else 1)
                for k in range(b0, min(seg_end, b0 + g.gb_chunks)):
                    p = wq[m, k * e:(k + 1) * e] * xq[k * e:(k + 1) * e]
                    if hw.pim.accumulate == "lanes":
                        lanes = np.array([rnd(a + b) for a, b in zip(lanes, p)])
                    else:
                        vals = list(p)
                        while len(vals) > 1:
                            vals = [rnd(vals[2 * i] + vals[2 * i + 1]) for i in range(len(vals) // 2)]
                        lanes[0] = rnd(lanes[0] + vals[0])
                for part in lanes:
                    y[m] = np.float32(y[m] + np.float32(part))
    return y


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(PIM), m=st.integers(1, 40), n=st.integers(1, 1300), seed=st.integers(0, 999))
def test_any_gemv_equals_the_pipeline_emulation_bit_for_bit(name, m, n, seed):
    hw = compiled(name, "mapping.gemv=row_partition").hw  # the emulation is row_partition's
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    assert np.array_equal(gemv(hw, W=W, x=x).y, _emulate_row_partition(hw, W, x))


def test_matrices_with_few_rows_are_split_over_channel_groups():
    g = Geometry.of(compiled("gddr6-aim.yaml").hw)  # 8 channels x 16 banks = 128 slots
    assert [auto_split(g, rows, 4096) for rows in (1, 16, 32, 33, 64, 65, 128, 4096)] == [8, 8, 4, 2, 2, 1, 1, 1]
    assert auto_split(g, 1, 16) == 1  # one column access cannot be cut
    p = place_gemv(g, 64, 25 * 1024)  # the V^T cache of 25 heads of 64 with 1024 tokens
    assert (p.split, p.part_cols, p.segments, p.dram_rows) == (2, 12800, 13, 13)
    channel, bank, row, elem = p.where(np.array([0, 63, 5]), np.array([0, 12800, 12800 + 1030]))
    assert channel.tolist() == [0, 7, 4] and bank.tolist() == [0, 15, 5]
    assert row.tolist() == [0, 0, 1] and elem.tolist() == [0, 0, 6]
    assert list(p.column_tiles())[12:14] == [(12288, 512), (12800, 1024)]
    never = Geometry.of(compiled("gddr6-aim.yaml", "mapping.channel_split=never").hw)
    assert place_gemv(never, 64, 25 * 1024).dram_rows == 25


def test_split_gemv_uses_every_channel_and_is_faster():
    hw = compiled("gddr6-aim.yaml").hw
    split = gemv(hw, 64, 8192)
    whole = gemv(compiled("gddr6-aim.yaml", "mapping.channel_split=never").hw, 64, 8192)
    assert split.stats["placement"]["channel_groups"] == 2
    assert split.stats["cycles"] < 0.6 * whole.stats["cycles"]
    assert split.stats["commands"]["MACAB"] == whole.stats["commands"]["MACAB"]  # same work, twice the channels
