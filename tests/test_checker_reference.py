"""The protocol checker finds exactly what it found before it was made faster (tests/reference_checker.py):
the same violations, in the same order, with the same commands and gaps, on clean and corrupted traces of
every bundled standard, with and without the refresh check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference_checker
from conftest import BUNDLED, compiled, issue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checker import legal_streams

from pimsim.dram.checker import Issued, check, issued_from_record
from pimsim.dram.kernel import run_commands

# what a corruption does to one command: issue it earlier or later, drop it, or name another row
EARLIER, LATER, DROP, OTHER_ROW = range(4)


def corrupted(issued: list[Issued], edits) -> list[Issued]:
    out = list(issued)
    for at, kind, amount in edits:
        if not out:
            break
        k = at % len(out)
        x = out[k]
        if kind == EARLIER:
            out[k] = dataclasses.replace(x, cycle=max(0, x.cycle - amount))
        elif kind == LATER:
            out[k] = dataclasses.replace(x, cycle=x.cycle + amount * 97)
        elif kind == DROP:
            del out[k]
        elif x.row >= 0:
            out[k] = dataclasses.replace(x, row=x.row + 1)
    return out


def same_findings(c, trace: list[Issued]) -> int:
    for refresh in (None, False, True):
        new, old = check(c, trace, refresh), reference_checker.check(c, trace, refresh)
        assert new == old, (refresh, [str(v) for v in new[:3]], [str(v) for v in old[:3]])
    return len(old)


@pytest.mark.parametrize("name", BUNDLED)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_checker_finds_what_it_found_before(name, data):
    steps = data.draw(legal_streams(name))
    if not steps:
        return
    c = compiled(name)
    _, _, rec = issue(c, steps, record=True)
    issued = issued_from_record(c, rec)
    edits = data.draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(1, 40)),
                               max_size=8))
    same_findings(c, corrupted(issued, edits))


def test_corrupted_row_sweeps_give_the_same_violations_on_every_standard():
    """A long, dense trace per standard (the kernel's record of rows swept over 8 banks, refreshes included)
    moved about at many places: the reference and the checker agree on hundreds of violations (so the
    comparison is not vacuous)."""
    from test_kernel_periods import _bank_sweep

    found = 0
    for name in BUNDLED:
        c = compiled(name)
        cmd, node, row, col = _bank_sweep(c, rows=64, banks=8, accesses=4, step=1, first=0, write=False)
        _, _, rec, err = run_commands(c.spec, cmd, node, row, col, np.zeros(1, np.int64), record=True)
        assert err[0] == 0
        issued = issued_from_record(c, rec)
        assert same_findings(c, issued) == 0
        edits = [(7919 * k, k % 4, 1 + k % 37) for k in range(60)]
        found += same_findings(c, corrupted(issued, edits))
    assert found >= 100
