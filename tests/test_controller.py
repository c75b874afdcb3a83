"""The request-level controller: address mapping, FR-FCFS, dependent chains, protocol-clean output."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLED, compiled, no_refresh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.config import load_hardware
from pimsim.dram.address import decode
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.simulate import run_request_trace
from pimsim.trace.files import RequestTrace
from pimsim.trace.generate import streaming_reads

DDR4 = "ddr4-2400.yaml"


def requests(addrs, cycles=None, writes=None):
    n = len(addrs)
    return RequestTrace(line=np.arange(n) + 2, cycle=np.asarray(cycles if cycles is not None else [0] * n, np.int64),
                        is_write=np.asarray(writes if writes is not None else [False] * n, np.bool_),
                        addr=np.asarray(addrs, np.int64))


def ddr4_addr(row=0, bank=0, bg=0, burst=0):
    # row|bank|bankgroup|column|offset: [32:17] row, [16:15] bank, [14:13] bank group, [12:6] burst
    return (row << 17) | (bank << 15) | (bg << 13) | (burst << 6)


def test_ddr4_address_mapping_matches_the_issue_bit_layout():
    hw = load_hardware(DDR4)
    f = decode(hw, np.array([ddr4_addr(row=0x1234, bank=2, bg=3, burst=77) + 5], np.int64))
    assert (f["row"][0], f["bank"][0], f["bankgroup"][0], f["column"][0]) == (0x1234, 2, 3, 77 * 8)
    assert hw.dram.field_bits() == {"channel": 0, "rank": 0, "bankgroup": 2, "bank": 2, "row": 16,
                                    "column": 7, "offset": 6}


def test_dependent_chain_waits_for_each_read():
    c = no_refresh(DDR4)
    tm = c.timing
    r = run_request_trace(c, requests([ddr4_addr(burst=k) for k in range(5)]), max_outstanding=1)
    first = tm["nRCD"]
    rd_latency = tm["nCL"] + tm["nBL"]
    assert list(r.issue_at) == [first + k * rd_latency for k in range(5)]
    lat = r.requests["latency_cycles"]
    assert lat["max"] == first + 5 * rd_latency  # the last request arrived at 0 and waited for all
    s = r.summary()
    assert (s["row_hits"], s["row_misses"], s["row_conflicts"]) == (4, 1, 0)


def test_unlimited_outstanding_pipelines_reads():
    c = no_refresh(DDR4)
    tm = c.timing
    r = run_request_trace(c, requests([ddr4_addr(burst=k) for k in range(5)]))
    assert list(r.issue_at) == [tm["nRCD"] + k * tm["nCCDL"] for k in range(5)]


def test_fr_fcfs_serves_row_hits_before_an_older_conflict():
    c = no_refresh(DDR4)
    # A (row 0), B (row 1, same bank: a conflict), C (row 0 again): FR-FCFS serves C before B
    trace = requests([ddr4_addr(row=0), ddr4_addr(row=1), ddr4_addr(row=0, burst=1)])
    fr = run_request_trace(c, trace)
    assert fr.issue_at[2] < fr.issue_at[1]
    assert fr.requests["scheduler"] == "fr-fcfs"
    fcfs_c = compiled(DDR4, "dram.refresh.enabled=false", "dram.controller.scheduler=fcfs")
    fc = run_request_trace(fcfs_c, trace)
    assert fc.issue_at[0] < fc.issue_at[1] < fc.issue_at[2]
    s = fc.summary()
    assert (s["row_hits"], s["row_misses"], s["row_conflicts"]) == (0, 1, 2)


def test_queue_depth_limits_lookahead():
    trace = requests([ddr4_addr(row=0), ddr4_addr(row=1), ddr4_addr(row=0, burst=1)])
    # two entries: C enters when A's read leaves the queue, still in time to overtake B's precharge
    two = run_request_trace(compiled(DDR4, "dram.refresh.enabled=false", "dram.controller.queue_depth=2"), trace)
    assert two.issue_at[2] < two.issue_at[1]
    # one entry: nothing to reorder, so B's conflict is served before C
    one = run_request_trace(compiled(DDR4, "dram.refresh.enabled=false", "dram.controller.queue_depth=1"), trace)
    assert one.issue_at[0] < one.issue_at[1] < one.issue_at[2]


def test_arrival_cycles_are_respected():
    c = no_refresh(DDR4)
    r = run_request_trace(c, requests([ddr4_addr(), ddr4_addr(burst=1)], cycles=[0, 1000]))
    assert r.issue_at[1] == 1000


def test_streaming_one_row_is_spaced_by_long_ccd():
    c = no_refresh(DDR4)
    tm = c.timing
    s = run_request_trace(c, streaming_reads(128)).summary()
    # one 8 KB row: one bank, so reads go nCCD_L apart, not at the burst time
    assert s["cycles"] == tm["nRCD"] + 127 * tm["nCCDL"] + tm["nCL"] + tm["nBL"] == 798
    assert s["bytes_read"] == 128 * 64 and s["row_hits"] == 127


def test_streaming_many_rows_overlaps_bank_groups():
    c = no_refresh(DDR4)
    tm = c.timing
    s = run_request_trace(c, streaming_reads(4096)).summary()
    # consecutive 8 KB chunks sit in different bank groups, so FR-FCFS overlaps the tail of one with
    # the head of the next: faster than one bank group at nCCD_L, never faster than the data bus
    assert 4096 * tm["nBL"] < s["cycles"] < 4096 * tm["nCCDL"]
    # 32 chunks over 16 banks: the first visit of each bank is a miss, the second (row 1) a conflict
    assert (s["row_misses"], s["row_conflicts"]) == (16, 16)
    assert s["bandwidth_GBps"] < c.hw.dram.peak_bandwidth_Bps / 1e9


@st.composite
def request_traces(draw, name):
    hw = compiled(name).hw
    n = draw(st.integers(1, 80))
    cap = hw.dram.organization.capacity_bytes
    # addresses drawn from a few rows so that hits, misses and conflicts all happen
    rows = draw(st.lists(st.integers(0, 7), min_size=1, max_size=4))
    access = hw.dram.organization.access_bytes
    addrs, cycles, writes = [], [], []
    cycle = 0
    for _ in range(n):
        base = draw(st.sampled_from(rows)) * (cap // 8)
        addrs.append((base + draw(st.integers(0, 4095)) * access) % cap)
        cycle += draw(st.integers(0, 50)) if draw(st.booleans()) else draw(st.integers(0, 5000))
        cycles.append(cycle)
        writes.append(draw(st.booleans()))
    return requests(addrs, cycles, writes), draw(st.one_of(st.none(), st.integers(1, 8)))


def _controller_output_is_clean(name, drawn):
    trace, outstanding = drawn
    c = compiled(name)
    r = run_request_trace(c, trace, outstanding, record=True)
    assert (r.issue_at >= trace.cycle).all()
    violations = check(c, issued_from_record(c, r.record))
    assert violations == [], [str(v) for v in violations[:5]]


@pytest.mark.parametrize("name", BUNDLED)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_controller_commands_are_protocol_clean(name, data):
    _controller_output_is_clean(name, data.draw(request_traces(name)))
