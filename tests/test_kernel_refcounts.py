"""The cycle kernel's helpers run without numba's reference counting (``pimsim._numba_cache.njit(allocates=False)``).

Counting references (an atomic add per array argument per call) took 71% of the time in compiled code when
gpt2-xl's weight GEMVs were replayed; the helpers only read and write the arrays they are given, so they are
compiled without numba's runtime.
These tests hold the helpers to that, and check the guard it rests on: numba refuses to compile an allocation
there, so a helper cannot silently start to allocate (and leak) without it.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import NumbaError

from pimsim._numba_cache import njit
from pimsim.dram import periods, timing_state, twins

# every helper the kernel calls per command, per group start or per channel that takes arrays and makes none
HELPERS = [
    timing_state.channel_floor, timing_state.earliest, timing_state.commit, timing_state.commit_repeat,
    timing_state.bank_range, timing_state.check_state, timing_state.apply_effect, timing_state.reopen_step,
    timing_state.refresh_step, timing_state.rule_latency, timing_state.skip_idle_refreshes,
    periods._select, periods._store, periods.take_snapshot, periods.skip_periods,
    twins.horizon, twins.equivalent, twins.catch_up, twins.copy_run,
]


@pytest.mark.parametrize("helper", HELPERS, ids=lambda f: f.py_func.__name__)
def test_the_kernel_helpers_are_compiled_without_reference_counting(helper):
    assert helper.targetoptions.get("_nrt") is False
    assert helper.targetoptions.get("inline", "never") == "never"  # inlined by numba, it would count again


def _temporary(values):
    scratch = np.empty(3, np.int64)
    scratch[0] = values[0]
    return scratch[0]


def _copy(values):
    return values.copy()[0]


def _new_array(values):
    return values * 2


@pytest.mark.parametrize("body", [_temporary, _copy, _new_array], ids=lambda f: f.__name__)
def test_a_helper_that_allocates_is_refused_at_compile_time(body):
    helper = njit(allocates=False)(body)
    with pytest.raises(NumbaError):  # (a typing or a lowering error: where numba notices)
        helper(np.arange(4, dtype=np.int64))


def test_a_helper_without_reference_counting_reads_and_writes_its_arrays():
    @njit(allocates=False)
    def bump(values, at, by):
        values[at] += by
        return values.sum()

    values = np.arange(5, dtype=np.int64)
    assert bump(values, 2, 10) == 20
    assert values.tolist() == [0, 1, 12, 3, 4]
