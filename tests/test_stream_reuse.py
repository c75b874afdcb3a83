"""Fast fidelity's shortcuts in building and timing streams hold to the plain way of building them:
an embedding entry's stream reused from the entry a round of slots before it, the vectorised KV-append
and row-read builders, and the faster GEMV builder, each against a reference built command by command."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.engine.dram_timing import FastTiming
from pimsim.mapper.attention import read_row_program
from pimsim.mapper.model import ModelMap
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

WTE = "transformer.wte.weight"


@lru_cache(maxsize=None)
def _map(hw_name: str, card: str = "gpt2", context: int = 64, weight_format: str | None = None) -> ModelMap:
    hw = load_hardware(hw_name)
    if weight_format:
        hw = hw.with_weight_format(weight_format)
    return ModelMap(hw, compile_standard(hw), traced_graph(load_card(card)), context)


@pytest.mark.parametrize("hw_name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
def test_an_embedding_entry_issues_exactly_the_commands_of_its_own_row(hw_name):
    m = _map(hw_name)
    for tensor in ("transformer.wte.weight", "transformer.wpe.weight"):
        t = m.tables[tensor]
        period = t.slots_per_wave * t.pack if hasattr(t, "slots_per_wave") else 1
        for entry in sorted({0, 1, period - 1, period, period + 3, 3 * period + 5, t.rows_out - 1}):
            if not 0 <= entry < t.rows_out:
                continue
            got = m.embedding(tensor, entry)
            want = read_row_program(m.compiled, replace(t, first_row=0), entry)
            rows = np.where(want.row >= 0, want.row + t.first_row, want.row)
            assert np.array_equal(got.cmd, want.cmd) and np.array_equal(got.node, want.node)
            assert np.array_equal(got.column, want.column) and np.array_equal(got.rows(), rows)
            assert got.key == ("embedding", t.rows_out, t.cols_in, entry, m.ns)


def test_fast_timing_of_a_reused_embedding_stream_is_that_of_its_own_commands():
    """The reused stream is timed as its first entry's; simulating the entry's own rows gives the same."""
    m = _map("gddr6-aim.yaml")
    t = m.tables[WTE]
    period = t.slots_per_wave * t.pack
    entry = 2 * period + 7
    got = m.embedding(WTE, entry)
    assert got.commands_key is not None and got.commands_key != got.key
    fast = FastTiming(m.compiled)
    own = replace(got, row=np.where(got.row >= 0, got.row + 2 * t.segments, got.row), commands_key=None)
    a, b = fast.known(got), fast._simulate(own)
    assert (a.cycles, a.last_issue, a.channel_cycles, a.cost) == (b.cycles, b.last_issue, b.channel_cycles, b.cost)
    assert np.array_equal(a.commands, b.commands) and np.array_equal(a.rows, b.rows)
    assert np.array_equal(a.extra, b.extra)
    # one simulation for the round: the next round's entry is known without simulating again
    before = len(fast._by_commands)
    fast.known(m.embedding(WTE, entry + period))
    assert len(fast._by_commands) == before and len(fast._known) == 2


# ---- the KV append and row read, against the command-by-command builder they replaced ----------------
def _reference_append(compiled, layout, token, k_token=None, values=None, parts="kv"):
    g = layout.k.geometry
    e = g.elems_per_access
    jobs = []
    functional = k_token is not None and values is not None
    if "k" in parts:
        k_row = np.zeros(layout.k.cols_padded, np.float32)
        if functional:
            k_row.reshape(layout.heads, layout.head_dim_padded)[:, :layout.head_dim] = k_token
        cols = np.arange(0, layout.k.cols_padded, e)
        for key, sel in _reference_by_row(*layout.k.where(np.full(len(cols), token), cols)):
            jobs.append((*key, layout.k.where(token, cols[sel])[3] // e, [k_row[c:c + e] for c in cols[sel]]))
    if "v" in parts:
        zero = np.zeros(e, np.float32)
        d = np.repeat(np.arange(layout.head_dim), layout.heads)
        h = np.tile(np.arange(layout.heads), layout.head_dim)
        channel, bank, dram_row, elem = layout.v.where(d, h * layout.context_padded + token)
        first = (token // e) * e
        for key in sorted(set(zip(channel.tolist(), bank.tolist(), dram_row.tolist()))):
            sel = (channel == key[0]) & (bank == key[1]) & (dram_row == key[2])
            chunks = [zero] * int(sel.sum())
            if functional:
                chunks = []
                for dd, hh in zip(d[sel], h[sel]):
                    chunk = np.zeros(e, np.float32)
                    known = values[first:min(first + e, len(values)), hh, dd]
                    chunk[:len(known)] = known
                    chunks.append(chunk)
            jobs.append((*key, elem[sel] // e, chunks))
    return _reference_write_jobs(compiled, jobs, g)


def _reference_read_row(compiled, placement, entry):
    g = placement.geometry
    e = g.elems_per_access
    cols = np.arange(0, placement.cols_padded, e)
    elem = placement.where(entry, cols)[3]
    jobs = [(*key, elem[sel] // e, [None] * int(sel.sum()))
            for key, sel in _reference_by_row(*placement.where(np.full(len(cols), entry), cols))]
    return _reference_write_jobs(compiled, jobs, g, access="RD")


def _reference_by_row(channel, bank, dram_row, elem=None):
    keys = np.stack([channel, bank, dram_row], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for k in np.argsort(first, kind="stable"):
        yield tuple(int(v) for v in keys[first[k]]), inverse == k


def _reference_write_jobs(compiled, jobs, g, access="WR"):
    org = compiled.hw.dram.organization
    ids = {n: i for i, n in enumerate(compiled.command_names)}
    out = {name: [] for name in ("cmd", "node", "row", "column", "payload")}
    payloads = []

    def emit(name, n, r, k=-1, p=-1):
        for field, value in zip(out, (ids[name], n, r, k, p)):
            out[field].append(value)

    pending = {}
    for job in jobs:
        pending.setdefault(job[0], []).append(job)
    for ch in sorted(pending):
        queue = pending[ch]
        while queue:
            this_round, rest, used = [], [], set()
            for job in queue:
                (rest if job[1] in used else this_round).append(job)
                used.add(job[1])
            queue = rest
            nodes = [int(compiled.bank_node(ch, 0, b // org.banks_per_group, b % org.banks_per_group))
                     for _, b, _, _, _ in this_round]
            for n, (_, _, r, _, _) in zip(nodes, this_round):
                emit("ACT", n, r)
            for n, (_, _, r, accesses, chunks) in zip(nodes, this_round):
                for k, chunk in zip(accesses, chunks):
                    if access == "WR":
                        emit("WR", n, r, int(k) * g.burst_length, len(payloads))
                        payloads.append(chunk)
                    else:
                        emit(access, n, r, int(k) * g.burst_length)
            for n in nodes:
                emit("PRE", n, -1)
    return {**{k: np.asarray(v, np.int64) for k, v in out.items()},
            "payloads": np.asarray(payloads, np.float32).reshape(-1, g.elems_per_access)}


def _same_program(got, want: dict) -> None:
    for name in ("cmd", "node", "row", "column", "payload", "payloads"):
        value = getattr(got, name)
        assert value.dtype == want[name].dtype and value.shape == want[name].shape, name
        assert np.array_equal(value, want[name]), name


LAYOUTS = [  # (hardware, weight format, heads, head_dim, max_context)
    ("gddr6-aim.yaml", None, 25, 64, 1024),  # gpt2-xl: V^T split over channel groups
    ("gddr6-aim.yaml", None, 12, 64, 100),  # a short cache: K split too
    ("hbm-pim.yaml", None, 4, 80, 300),  # head_dim not a whole number of accesses
    ("gddr6-aim.yaml", "int8", 3, 40, 70),
    ("hbm-pim.yaml", None, 2, 16, 2000),  # K rows of one access; several waves of V columns
]


@pytest.mark.parametrize("hw_name,fmt,heads,head_dim,context", LAYOUTS)
def test_kv_append_equals_the_command_by_command_builder(hw_name, fmt, heads, head_dim, context):
    from pimsim.mapper.attention import append_program, kv_layout
    from pimsim.mapper.placement import Geometry

    hw = load_hardware(hw_name)
    if fmt:
        hw = hw.with_weight_format(fmt)
    c = compile_standard(hw)
    layout = kv_layout(Geometry.of(hw, kv=True), heads, head_dim, context)
    rng = np.random.default_rng(heads * context)
    tokens = sorted({0, 1, context // 3, context // 2 + 1, context - 1})
    values = rng.standard_normal((context, heads, head_dim)).astype(np.float32)
    for token in tokens:
        k_token = rng.standard_normal((heads, head_dim)).astype(np.float32)
        for parts in ("kv", "k", "v"):
            _same_program(append_program(c, layout, token, parts=parts), _reference_append(c, layout, token,
                                                                                          parts=parts))
            _same_program(append_program(c, layout, token, k_token, values[:token + 1], parts),
                          _reference_append(c, layout, token, k_token, values[:token + 1], parts))


@pytest.mark.parametrize("hw_name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
def test_table_row_read_equals_the_command_by_command_builder(hw_name):
    m = _map(hw_name)
    for tensor in (WTE, "transformer.wpe.weight"):
        t = replace(m.tables[tensor], first_row=0)
        for entry in (0, 5, 131, 700, t.rows_out - 1):
            _same_program(read_row_program(m.compiled, t, entry), _reference_read_row(m.compiled, t, entry))


# ---- the run-based GEMV builder, against the command-by-command one it replaced --------------------------
GEMV_CASES = [  # (hardware, overrides, weight format, rows, cols)
    ("gddr6-aim.yaml", (), None, 1600, 1600),
    ("gddr6-aim.yaml", (), None, 300, 2500),  # a partial wave, a short last segment
    ("gddr6-aim.yaml", (), "ternary", 1600, 6400),  # packed rows
    ("gddr6-aim.yaml", (), "int4-g128", 700, 1000),  # group scales
    ("gddr6-aim.yaml", (), "int8", 40, 3000),  # split over channel groups
    ("hbm-pim.yaml", ("mapping.gemv=row_partition",), None, 1000, 2000),  # blocks smaller than a DRAM row
    ("hbm-pim.yaml", ("mapping.gemv=wave_major",), None, 1000, 2000),
    ("hbm-pim.yaml", ("mapping.gemv=wave_major",), "fp8-e4m3", 96, 700),
    ("hbm-pim.yaml", ("mapping.gemv=row_partition", "pim.vectors_per_mac=2", "pim.buffer_vectors=4",
                      "energy.dram.mac_vector_pJ=1"), None,
     500, 900),
]


def _same_gemv(got, want) -> None:
    for name in ("cmd", "node", "row", "column", "select", "payload", "reads"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    for name in ("outputs", "n_groups", "partial_sums", "extra_vector_macs"):
        assert getattr(got, name) == getattr(want, name), name


@pytest.mark.parametrize("hw_name,overrides,fmt,rows,cols", GEMV_CASES)
def test_gemv_programs_equal_the_command_by_command_builder(hw_name, overrides, fmt, rows, cols):
    import reference_gemv

    from pimsim.mapper.gemv import gemv_program, gemv_program_wave_major
    from pimsim.mapper.placement import Geometry, auto_pack, place_gemv

    hw = load_hardware(hw_name, list(overrides))
    if fmt:
        hw = hw.with_weight_format(fmt)
    c = compile_standard(hw)
    g = Geometry.of(hw)
    p = place_gemv(g, rows, cols, pack=auto_pack(g, rows, cols, 1) if rows > g.slots else 1)
    lanes = g.lanes_out
    accesses = p.cols_padded // g.elems_per_access
    groups = [(0, accesses // 3), (accesses // 2, accesses - accesses // 2)]  # a gap between two groups
    wave_major = hw.mapping.gemv == "wave_major"
    for kwargs in ({}, {"groups": groups}, {"rows_active": rows // 3 + 1}, {"groups": groups[1:], "rows_active": 17}):
        if wave_major:
            _same_gemv(gemv_program_wave_major(c, p, lanes, **kwargs),
                       reference_gemv.gemv_program_wave_major(c, p, lanes, **kwargs))
        else:
            _same_gemv(gemv_program(c, p, lanes, **kwargs), reference_gemv.gemv_program(c, p, lanes, **kwargs))
    if not wave_major:
        for vectors, buffer_vectors in ((3, 1), (3, 4), (5, 2)):
            per_mac = hw.pim.vectors_per_mac
            _same_gemv(gemv_program(c, p, lanes, None, None, vectors, buffer_vectors, per_mac),
                       reference_gemv.gemv_program(c, p, lanes, None, None, vectors, buffer_vectors, per_mac))


# ---- the serial plan at fast fidelity, against running the steps one by one -----------------------------
@pytest.mark.parametrize("hw_name,card,prompt", [("gddr6-aim.yaml", "gpt2", 10), ("hbm-pim.yaml", "gpt2-ternary", 0),
                                                 ("gddr6-aim.yaml", "smollm2-135m", 60)])
def test_the_serial_plan_gives_the_figures_of_the_steps_one_by_one(hw_name, card, prompt):
    from pimsim.engine.decode import DecodeSimulation
    from pimsim.engine.serial_plan import run_plan
    from pimsim.runs import hardware_for
    from pimsim.workloads.opgraph import PARTS

    model = load_card(card)
    hw = hardware_for(load_hardware(hw_name), model, None)
    graph = traced_graph(model)
    tokens = 40  # across several 16-token classes of attention streams
    planned, stepped = (DecodeSimulation(hw, graph, prompt, tokens) for _ in range(2))
    out = []
    for sim, by_plan in ((planned, True), (stepped, False)):
        t, breakdown, ends = 0, dict.fromkeys(PARTS, 0), []
        for position in range(prompt, prompt + tokens):
            if by_plan:
                t = run_plan(sim._token_plan(position), t, sim.timing, breakdown, sim.work)
            else:
                shared: dict = {}
                for index in sim._work_ops:
                    steps = sim._op_steps(index, graph.ops[index], position, position + 1, shared)
                    t = sim.advance(steps, t, breakdown)
            ends.append(t)
        out.append((ends, breakdown, sim.work, sim.timing.counts(), list(sim.timing.busy_ps)))
    assert out[0] == out[1]
    assert len(planned._plans) < len(planned._work_ops)  # one plan per distinct op, not per op


@pytest.mark.parametrize("hw_name,fmt,heads,head_dim,context", LAYOUTS)
def test_scores_programs_built_from_remembered_channels_equal_programs_built_afresh(hw_name, fmt, heads, head_dim,
                                                                                      context):
    """Attention's scores as the context grows: each program reuses the channels of the ones before."""
    from pimsim.mapper.attention import kv_layout
    from pimsim.mapper.gemv import gemv_program
    from pimsim.mapper.placement import Geometry

    hw = load_hardware(hw_name, ["mapping.gemv=row_partition"])
    if fmt:
        hw = hw.with_weight_format(fmt)
    c = compile_standard(hw)
    g = Geometry.of(hw, kv=True)
    layout = kv_layout(g, heads, head_dim, context)
    pieces: dict = {}
    for rows in sorted({1, 2, g.units, g.units + 1, 3 * g.units, context // 2, context - 1, context}):
        _same_gemv(gemv_program(c, layout.k, g.lanes_out, layout.k_groups(), rows, pieces=pieces),
                   gemv_program(c, layout.k, g.lanes_out, layout.k_groups(), rows))
    assert pieces


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_the_memo_of_shifted_streams_is_bounded_and_changes_no_result(fidelity, monkeypatch):
    """The mapper keeps the SHIFTED_KEPT most recently used shifted streams: kept for good, a KV append per
    position and layer (each holding its rows at cycle fidelity) grew a 1024-token gpt2-xl run to 3.2 GB.
    A stream made again is the same stream, so a tiny memo gives the same run."""
    import json

    import pimsim.mapper.model as model
    from pimsim.runs import run_model

    def run():
        return json.dumps(run_model("gddr6-aim.yaml", "gpt2", prompt_len=3, gen_tokens=3, fidelity=fidelity),
                          sort_keys=True, default=str)

    unbounded = run()
    sizes, made = [], []
    memo = model.ModelMap._memo_shifted
    monkeypatch.setattr(model, "SHIFTED_KEPT", 8)
    monkeypatch.setattr(model.ModelMap, "_memo_shifted", lambda self, key, make: (
        memo(self, key, lambda: made.append(key) or make()), sizes.append(len(self._shifts)))[0])
    assert run() == unbounded
    assert max(sizes) == 8 and len(made) > 8  # streams were dropped (and some made again)
