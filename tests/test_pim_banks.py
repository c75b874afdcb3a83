"""The functional bank model against numpy: number formats, and GEMVs run as real command streams."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compiled
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.dram.modes import ModeTracker
from pimsim.errors import PimsimError
from pimsim.pim.banks import BankModel
from pimsim.pim.formats import round_acc, round_fp16, to_bf16, to_operands

# --- formats ---------------------------------------------------------------------------------------


def _bf16_reference(x: np.ndarray) -> np.ndarray:
    """Round to 8 significant bits, ties to even, in float64 arithmetic (normal numbers)."""
    m, e = np.frexp(x.astype(np.float64))
    return np.ldexp(np.rint(m * 256.0) / 256.0, e).astype(np.float32)


def test_bf16_rounds_to_nearest_even():
    one = np.float32(1.0)
    ulp = 2.0**-7  # bf16 spacing just above 1
    assert to_bf16(np.array([one + ulp / 2], np.float32))[0] == 1.0  # tie -> even (1.0)
    assert to_bf16(np.array([one + 3 * ulp / 2], np.float32))[0] == one + 2 * ulp  # tie -> even (1 + 2ulp)
    assert to_bf16(np.array([one + ulp / 2 + 2.0**-20], np.float32))[0] == one + ulp  # above the tie
    assert np.isnan(to_bf16(np.array([np.nan], np.float32))[0])
    assert to_bf16(np.array([np.inf], np.float32))[0] == np.inf
    x = np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * 1e3
    assert np.array_equal(to_bf16(x), _bf16_reference(x))


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64))
@np.errstate(over="ignore")
def test_fp16_accumulator_rounding_matches_numpy(x):
    assert round_fp16(x) == np.float64(np.float16(x)) or (np.isinf(round_fp16(x)) and np.isinf(np.float16(x)))


@np.errstate(over="ignore")
def test_fp16_rounding_edges():
    for x in (65504.0, 65519.0, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 1 + 2.0**-11, -0.0):
        assert round_fp16(x) == np.float64(np.float16(x)) or np.isinf(np.float16(x)) and np.isinf(round_fp16(x))
    assert round_acc(2.0**31, 2) == -(2.0**31)  # int32 accumulators wrap


def test_int8_operands_must_be_quantized_already():
    assert list(to_operands([1, -128, 127], "int8")) == [1, -128, 127]
    for bad in ([0.5], [128], [np.nan]):
        with pytest.raises(ValueError, match="int8"):
            to_operands(bad, "int8")


# --- GEMV through the banks ---------------------------------------------------------------------------


def gemv_program(c, model: BankModel, W: np.ndarray, x: np.ndarray):
    """A straightforward GEMV mapping, for testing the bank model: output row m of W goes to DRAM row
    m // (channels x units x select) of bank group slot ...; returns the stream, the payloads, and
    how to read y back from the RDMAC results. N must fit one DRAM row and the global buffer holds
    `gb_chunks` column accesses, so x is (re)written in blocks of that many chunks."""
    org = c.hw.dram.organization
    ids = {n: i for i, n in enumerate(c.command_names)}
    E, units, per_unit = model.elems_per_access, model.units, model.banks_per_unit
    M, N = W.shape
    assert N % E == 0 and N <= model.row_elems
    chunks = N // E
    block = model.gb_chunks
    lanes = model.acc_width
    # output row m -> (channel, dram row, select, unit)
    slots = org.channels * units * per_unit
    rows_needed = -(-M // slots)
    placement = {}
    for m in range(M):
        r, rest = divmod(m, slots)
        ch, rest = divmod(rest, units * per_unit)
        sel, u = divmod(rest, units)
        placement[m] = (ch, r, sel, u)
        model.store(ch, u * per_unit + sel, r, W[m])
    cmd, node, row, col, pay, sel_arr = [], [], [], [], [], []
    payloads = []

    def emit(name, n, r=-1, k=-1, p=-1, s=0):
        for _ in range(modes.changes_before(name)):  # a device with modes (AiM) switches first
            cmd.append(ids[c.standard.mode_change]), node.append(cn), row.append(-1), col.append(-1)
            pay.append(-1), sel_arr.append(0)
        cmd.append(ids[name]), node.append(n), row.append(r), col.append(k), pay.append(p), sel_arr.append(s)

    reads = []  # (stream position of RDMAC, channel, dram row, select)
    for ch in range(org.channels):
        rk, cn = int(c.rank_node(ch)), int(c.channel_node(ch))
        modes = ModeTracker(c.standard)
        for r in range(rows_needed):
            emit("ACTAB", rk, r=r)
            for s in range(per_unit):
                for b0 in range(0, chunks, block):
                    for k in range(b0, min(chunks, b0 + block)):
                        payloads.append(x[k * E:(k + 1) * E])
                        emit("WRGB", cn, k=k * org.burst_length, p=len(payloads) - 1)
                    for k in range(b0, min(chunks, b0 + block)):
                        emit("MACAB", rk, r=r, k=k * org.burst_length, s=s)
                emit("RDMAC", rk)
                reads.append((len(cmd) - 1, ch, r, s))
            emit("PREA", rk)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    stream = (a(cmd), a(node), a(row), a(col))
    return stream, a(pay), np.asarray(payloads, np.float32), a(sel_arr), reads, placement, lanes


def run_gemv(name, W, x):
    c = compiled(name)
    model = BankModel(c.hw)
    stream, pay, payloads, select, reads, placement, lanes = gemv_program(c, model, W, x)
    results = model.run(c, *stream, payload_index=pay, payloads=payloads, select=select)
    by_pos = {res.index: res for res in results}
    y = np.empty((W.shape[0], lanes))
    for m, (ch, r, sel, u) in placement.items():
        pos = next(p for p, rch, rr, rs in reads if (rch, rr, rs) == (ch, r, sel))
        y[m] = by_pos[pos].values[u]
    return y, c, stream


def reference(W, x, fmt, acc, tree, lanes, gb_chunks):
    """numpy emulation of the MAC units: exact products, each addition rounded to the accumulator."""
    rnd = {"fp32": lambda v: np.float64(np.float32(v)), "fp16": lambda v: np.float64(np.float16(v))}[acc]
    Wq, xq = to_operands(W, fmt).astype(np.float64), to_operands(x, fmt).astype(np.float64)
    M, N = W.shape
    E = lanes
    out = np.zeros((M, E if not tree else 1))
    for m in range(M):
        a = np.zeros(E if not tree else 1)
        for k in range(N // E):
            p = Wq[m, k * E:(k + 1) * E] * xq[k * E:(k + 1) * E]
            if tree:
                vals = list(p)
                while len(vals) > 1:
                    nxt = [rnd(vals[2 * i] + vals[2 * i + 1]) for i in range(len(vals) // 2)]
                    if len(vals) % 2:
                        nxt.append(vals[-1])
                    vals = nxt
                a[0] = rnd(a[0] + vals[0])
            else:
                for e in range(E):
                    a[e] = rnd(a[e] + p[e])
        out[m] = a
    return out


def test_gemv_on_gddr6_aim_equals_numpy_bit_for_bit():
    rng = np.random.default_rng(7)
    M, N = 300, 1024  # a full 2 KB row per output; 300 rows leave part of the banks unused
    W = rng.standard_normal((M, N)).astype(np.float32)
    x = rng.standard_normal(N).astype(np.float32)
    y, c, stream = run_gemv("gddr6-aim.yaml", W, x)
    assert np.array_equal(y, reference(W, x, "bf16", "fp32", True, 16, 64))
    # and close to the exact product of the rounded operands
    exact = to_operands(W, "bf16").astype(np.float64) @ to_operands(x, "bf16").astype(np.float64)
    assert np.allclose(y[:, 0], exact, rtol=1e-5, atol=1e-4)


def test_gemv_on_hbm_pim_uses_both_banks_of_each_unit_and_lane_accumulators():
    rng = np.random.default_rng(3)
    M, N = 2 * 16 * 8 + 5, 256  # more outputs than units: both banks of each pair hold rows
    W = rng.standard_normal((M, N)).astype(np.float32) / 4
    x = rng.standard_normal(N).astype(np.float32) / 4
    y, c, stream = run_gemv("hbm-pim.yaml", W, x)
    ref = reference(W, x, "fp16", "fp16", False, 16, 8)
    assert np.array_equal(y, ref)
    exact = to_operands(W, "fp16").astype(np.float64) @ to_operands(x, "fp16").astype(np.float64)
    assert np.allclose(y.sum(axis=1), exact, rtol=1e-2, atol=2e-2)  # fp16 accumulation


def test_the_gemv_stream_is_also_a_legal_timed_stream():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((64, 512)).astype(np.float32)
    x = rng.standard_normal(512).astype(np.float32)
    _, c, stream = run_gemv("gddr6-aim.yaml", W, x)
    _, at, rec, err = run_commands(c.spec, *stream, np.zeros(len(stream[0]), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_random_small_gemvs_match_the_emulation(m, k, seed):
    rng = np.random.default_rng(seed)
    for name, fmt, acc, tree, block in (("gddr6-aim.yaml", "bf16", "fp32", True, 64),
                                        ("hbm-pim.yaml", "fp16", "fp16", False, 8)):
        N = 16 * k
        W = rng.standard_normal((m, N)).astype(np.float32)
        x = rng.standard_normal(N).astype(np.float32)
        y, _, _ = run_gemv(name, W, x)
        assert np.array_equal(y, reference(W, x, fmt, acc, tree, 16, block))


def test_rdmac_clears_the_accumulators_and_unwritten_rows_read_as_zero():
    c = compiled("gddr6-aim.yaml")
    model = BankModel(c.hw)
    ids = {n: i for i, n in enumerate(c.command_names)}
    rk, cn = int(c.rank_node(0)), int(c.channel_node(0))
    model.store(0, 3, 9, np.arange(16))
    cmd = [ids["WRGB"], ids["ACTAB"], ids["MACAB"], ids["RDMAC"], ids["RDMAC"]]
    node = [cn, rk, rk, rk, rk]
    out = model.run(c, np.array(cmd), np.array(node), np.array([-1, 9, 9, -1, -1]), np.array([0, -1, 0, -1, -1]),
                    payload_index=np.array([0, -1, -1, -1, -1]), payloads=np.ones((1, 16)))
    assert out[0].values[3, 0] == sum(range(16)) and out[0].values[0, 0] == 0.0
    assert not out[1].values.any()


def test_bad_functional_inputs_are_clear_errors():
    c = compiled("gddr6-aim.yaml")
    model = BankModel(c.hw)
    ids = {n: i for i, n in enumerate(c.command_names)}
    with pytest.raises(PimsimError, match="payload"):
        model.run(c, np.array([ids["WRGB"]]), np.array([int(c.channel_node(0))]), np.array([-1]), np.array([0]))
    with pytest.raises(PimsimError, match="do not fit"):
        model.store(0, 0, 0, np.zeros(2000))
    with pytest.raises(PimsimError, match="no pim section"):
        BankModel(compiled("ddr4-2400.yaml").hw)


def test_the_bank_model_refuses_streams_that_compute_on_closed_rows_or_outside_a_row():
    c = compiled("gddr6-aim.yaml")
    model = BankModel(c.hw)
    ids = {n: i for i, n in enumerate(c.command_names)}
    rk = int(c.rank_node(0))
    bank = int(c.bank_node(0, 0, 1, 2))
    with pytest.raises(PimsimError, match="has no row open"):
        model.run(c, np.array([ids["MACAB"]]), np.array([rk]), np.array([-1]), np.array([0]))
    with pytest.raises(PimsimError, match="has no row 7"):
        model.run(c, np.array([ids["WR"]]), np.array([bank]), np.array([7]), np.array([0]),
                  payload_index=np.array([0]), payloads=np.zeros((1, 16)))
    with pytest.raises(PimsimError, match="outside the row"):
        model.run(c, np.array([ids["ACT"], ids["WR"]]), np.array([bank, bank]), np.array([5, 5]),
                  np.array([-1, 1024]), payload_index=np.array([-1, 0]), payloads=np.zeros((1, 16)))
