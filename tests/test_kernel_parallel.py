"""Channels issued on several threads give exactly what the serial kernel gives, for any thread count."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
from conftest import S, compiled, stream

from pimsim.dram.kernel import repeat_runs, run_commands, run_commands_parallel, split_by_channel
from pimsim.dram.timing_state import ERR_CLOSED, new_state
from pimsim.trace.generate import pim_row_sweep

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield THREADS
    numba.set_num_threads(before)


def _gemv(name: str, interleave: bool):
    """A multi-channel GEMV sweep long enough to cross refreshes, optionally with the channels'
    commands interleaved (each channel's own order kept)."""
    c = compiled(name)
    tr = pim_row_sweep(c, rows=40, macs_per_row=24, with_io=True)
    cmd, node, row, col = (np.asarray(x, np.int64) for x in (tr.cmd, tr.node, tr.row, tr.column))
    if interleave:
        ch = c.channel_of(node)
        rank_in_channel = np.zeros(len(ch), np.int64)
        for k in np.unique(ch):
            rank_in_channel[ch == k] = np.arange((ch == k).sum())
        order = np.lexsort((ch, rank_in_channel))  # round robin over channels
        cmd, node, row, col = cmd[order], node[order], row[order], col[order]
    return c, cmd, node, row, col


def _state_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["gddr6-aim.yaml", "hbm-pim.yaml"])
@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_kernel_equals_serial_across_refreshes_and_runs(name, interleave, threads):
    c, cmd, node, row, col = _gemv(name, interleave)
    assert len(np.unique(c.channel_of(node))) > 1
    split = split_by_channel(c.channel_of(node))
    assert (split.order is None) == (not interleave)
    # two streams into one state, the second starting mid-refresh-interval: state carries over
    tmin2 = np.full(len(cmd), c.timing["nREFI"] * 3 + 17, np.int64)
    serial = new_state(c.spec)
    at1, _ = run_commands(c.spec, cmd, node, row, col, np.zeros(len(cmd), np.int64), state=serial)[1:3]
    at2 = run_commands(c.spec, cmd, node, row, col, tmin2, state=serial)[1]
    assert serial.counts[:, c.command_names.index(c.standard.refresh)].min() > 0  # refresh took part
    for n in threads:
        numba.set_num_threads(n)
        par = new_state(c.spec)
        _, p1, e1 = run_commands_parallel(c.spec, split, cmd, node, row, col, np.zeros(len(cmd), np.int64), par)
        _, p2, e2 = run_commands_parallel(c.spec, split, cmd, node, row, col, tmin2, par)
        assert e1[0] == e2[0] == 0
        assert np.array_equal(p1, at1) and np.array_equal(p2, at2)
        assert _state_equal(par, serial), f"state differs on {n} thread(s)"


@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_kernel_with_closed_form_runs_equals_the_serial_kernel(interleave, threads):
    """One start cycle for all and the runs of repeats given (in the split's order, as CycleTiming keeps
    them): each span issues its runs in closed form, with the serial kernel's state."""
    c, cmd, node, row, col = _gemv("gddr6-aim.yaml", interleave)
    split = split_by_channel(c.channel_of(node))
    ordered = [x if split.order is None else x[split.order] for x in (cmd, node, row)]
    start = np.array([c.timing["nREFI"] + 11])
    serial, serial_at = run_commands(c.spec, cmd, node, row, col, start, record=True)[:2]  # command by command
    for n in threads:
        numba.set_num_threads(n)
        par = new_state(c.spec)
        _, at, err = run_commands_parallel(c.spec, split, cmd, node, row, col, start, par, runs=repeat_runs(*ordered))
        assert err[0] == 0 and np.array_equal(at, serial_at)
        assert _state_equal(par, serial), f"state differs on {n} thread(s)"


def test_parallel_kernel_reports_the_serial_kernels_error(threads):
    """Column accesses to closed banks on channels 1 and 0: the error is the one earliest in the stream."""
    c = compiled("gddr6-aim.yaml")
    steps = [S("ACTAB", channel=0, row=3), S("MACAB", channel=0, row=3, col=0),
             S("ACTAB", channel=2, row=1), S("MACAB", channel=1, row=5, col=0),
             S("MACAB", channel=0, row=3, col=8), S("PREA", channel=0), S("MACAB", channel=0, row=3, col=8)]
    cmd, node, row, col, tmin = stream(c, steps)
    serial_err = run_commands(c.spec, cmd, node, row, col, tmin)[3]
    assert serial_err[0] == ERR_CLOSED and serial_err[1] == 3
    split = split_by_channel(c.channel_of(node))
    assert split.order is not None
    for n in threads:
        numba.set_num_threads(n)
        err = run_commands_parallel(c.spec, split, cmd, node, row, col, tmin, new_state(c.spec))[2]
        assert list(err) == list(serial_err)


def test_split_by_channel_keeps_each_channels_order():
    channel = np.array([2, 0, 2, 1, 0, 2])
    split = split_by_channel(channel)
    assert list(split.order) == [1, 4, 3, 0, 2, 5] and list(split.bounds) == [0, 2, 3, 6]
    grouped = split_by_channel(np.array([1, 1, 0, 0, 0, 3]))
    assert grouped.order is None and list(grouped.bounds) == [0, 2, 5, 6]


def test_cycle_run_is_identical_on_one_and_two_threads(threads, monkeypatch):
    import pimsim.engine.dram_timing as dram_timing
    from pimsim.runs import run_model

    monkeypatch.setattr(dram_timing, "SPLIT_MIN_SECONDS", 0.0)  # every long stream after its first run
    # channels of a kind issue once where twins are on (tests/test_twins.py): every channel here, as the split has it
    monkeypatch.setattr(dram_timing, "TWIN_CHANNELS", False)
    calls = []
    real = dram_timing.run_commands_parallel
    monkeypatch.setattr(dram_timing, "run_commands_parallel", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = []
    for n in (1, 2):
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        out.append(json.dumps(run_model("hbm-pim.yaml", "gpt2", prompt_len=3, gen_tokens=2, fidelity="cycle"),
                              sort_keys=True, default=str))
    assert out[0] == out[1]
    assert calls if max(THREADS) > 1 else not calls  # the parallel path ran where there are threads


def test_one_start_cycle_for_all_and_no_issue_cycles_give_the_same_state():
    c, cmd, node, row, col = _gemv("gddr6-aim.yaml", interleave=True)
    start = c.timing["nREFI"] * 2 + 5
    full, at, _, _ = run_commands(c.spec, cmd, node, row, col, np.full(len(cmd), start, np.int64))
    one, none, _, _ = run_commands(c.spec, cmd, node, row, col, np.array([start]), issue_cycles=False)
    assert none is None and _state_equal(full, one)
    assert at.min() >= start
    with pytest.raises(ValueError, match="one per command, or one for all"):
        run_commands(c.spec, cmd, node, row, col, np.zeros(2, np.int64))


def test_one_stream_into_several_states_equals_separate_runs(threads):
    """FastTiming's refresh samples: the same stream with refresh due at different points, side by side."""
    from pimsim.dram.kernel import run_commands_into

    c, cmd, node, row, col = _gemv("hbm-pim.yaml", interleave=False)
    dues = [1, 500, 2000, c.timing["nREFI"] - 1]
    expected = []
    for due in dues:
        st = new_state(c.spec)
        st.ref_due[:] = due
        expected.append(run_commands(c.spec, cmd, node, row, col, np.zeros(1, np.int64), state=st)[0])
    for n in threads:
        numba.set_num_threads(n)
        states = []
        for due in dues:
            st = new_state(c.spec)
            st.ref_due[:] = due
            states.append(st)
        got = run_commands_into(c.spec, states, cmd, node, row, col, np.zeros(1, np.int64))
        assert all(err[0] == 0 for _, err in got)
        assert all(_state_equal(st, want) for (st, _), want in zip(got, expected))
    assert not _state_equal(expected[0], expected[1])  # the refresh points matter


def _fast_gpt2(_=None) -> float:
    from pimsim.runs import run_model

    return run_model("gddr6-aim.yaml", "gpt2", prompt_len=4, gen_tokens=1)["total_time_s"]


def test_a_process_forked_after_parallel_runs_uses_the_serial_kernel(threads):
    """GNU OpenMP cannot start threads in a forked child of a process that used it (numba would stop the
    child): a sweep's process pool forked after a run must still simulate, with the same result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    numba.set_num_threads(max(THREADS))
    parent = _fast_gpt2()  # gpt2's GEMV streams are long enough for the parallel refresh samples
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert list(pool.map(_fast_gpt2, [0])) == [parent]


def test_a_stream_goes_to_the_threads_only_where_its_first_run_took_long_enough(threads, monkeypatch):
    """CycleTiming runs a long stream on one thread until decided, timed, and splits its channels over the
    threads from then on only if two runs took SPLIT_MIN_SECONDS or more (the first may include loading the
    kernel): never with a limit no run reaches, every use after the second with none; the figures the same
    either way."""
    import pimsim.engine.dram_timing as dram_timing
    from pimsim.runs import run_model

    if max(THREADS) < 2:
        pytest.skip("numba has one thread here")
    numba.set_num_threads(2)
    monkeypatch.setattr(dram_timing, "TWIN_CHANNELS", False)  # (with twins on, a kind's channels issue once)
    splits, firsts = [], []
    parallel, serial = dram_timing.run_commands_parallel, dram_timing.issue_into
    monkeypatch.setattr(dram_timing, "run_commands_parallel", lambda *a, **k: splits.append(1) or parallel(*a, **k))
    monkeypatch.setattr(dram_timing, "issue_into", lambda *a, **k: firsts.append(len(a[2])) or serial(*a, **k))
    out = {}
    for limit in (1e9, 0.0):
        monkeypatch.setattr(dram_timing, "SPLIT_MIN_SECONDS", limit)
        splits.clear()
        firsts.clear()
        out[limit] = json.dumps(run_model("hbm-pim.yaml", "gpt2", prompt_len=3, gen_tokens=3, fidelity="cycle"),
                                sort_keys=True, default=str)
        long_serial = sum(n >= dram_timing.PARALLEL_MIN_COMMANDS for n in firsts)
        if limit:
            assert not splits and long_serial
        else:  # each long stream key twice on one thread (the weight GEMVs repeat over layers and tokens)
            assert splits and long_serial < len(splits)
    assert out[0.0] == out[1e9]
