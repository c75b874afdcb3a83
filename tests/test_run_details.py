"""Typed run details (issue 16 item 3): every figure of a run is a typed field, its JSON is the record
`pimsim run --json` wrote before the types existed (key for key, in the same order), a record read back
is typed again, and a record of another schema is refused with one message."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from pimsim.cli import main
from pimsim.errors import PimsimError
from pimsim.json_fields import from_json, to_json
from pimsim.run_details import DecodeRun, SpecDecRun
from pimsim.run_types import (
    DECODE_ROW_METRICS,
    ENERGY_PART_PREFIX,
    SCHEMA_VERSION,
    TIME_PART_PREFIX,
    RunResult,
    RunSpec,
)
from pimsim.runs import simulate

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import capture  # noqa: E402

RECORDS = sorted(p for p in GOLDEN.glob("*.json") if p.stem != "sweep-rows")


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_every_golden_record_reads_back_typed_and_writes_the_same_text(path):
    record = json.loads(path.read_text())
    if "error" in record:  # a model that does not fit: an error, no record
        return
    kind = SpecDecRun if "spec_dec" in record else DecodeRun
    typed = from_json(kind, record)
    assert capture.canonical(to_json(typed)) == path.read_text()
    assert from_json(kind, to_json(typed)) == typed


def _small(**changes) -> RunSpec:
    return RunSpec(**{"model": "gpt2", "hw": "gddr6-aim.yaml", "prompt_len": 8, "gen_tokens": 2, **changes})


@pytest.mark.parametrize("changes", [{}, {"batch": 2}, {"prefill": "asic"}, {"prefill": "pim"},
                                     {"decode_fc_on": "h100"}],
                         ids=["plain", "batch", "prefill-asic", "prefill-pim", "hetero"])
def test_a_result_read_back_from_its_json_is_the_same_result(changes):
    result = simulate(_small(**changes))
    text = json.dumps(result.to_json())
    again = RunResult.from_json(json.loads(text))
    assert again.details == result.details and again.kind == "decode"
    assert json.dumps(again.to_json()) == text  # byte for byte, keys in the same order
    assert again.spec.batch == result.spec.batch and again.spec.prefill == result.spec.prefill
    assert again.spec.decode_fc_on == result.spec.decode_fc_on
    assert again.latency_per_token_s == result.latency_per_token_s and again.breakdown_s == result.breakdown_s


def test_several_devices_and_spec_dec_read_back_too():
    system = simulate(RunSpec(model="gpt2", hw="cent.yaml", prompt_len=8, gen_tokens=2, devices=2, parallel="tp"))
    assert system.details.system.tensor_parallel == 2 and system.details.system.stages[0].memory.rows_per_bank > 0
    assert list(system.to_json())[-4:] == ["system", "config_hash", "notes", "config"]  # its own key order
    back = RunResult.from_json(json.loads(json.dumps(system.to_json())))
    assert back.details == system.details and back.spec.devices == 2
    spec = simulate(RunSpec(model=None, hw="gddr6-aim.yaml", prompt_len=8, gen_tokens=3,
                            spec_dec="draft=gpt2,target=gpt2-medium,k=2,alpha=0.8"))
    d = spec.details
    assert spec.kind == "spec_dec" and sum(d.kept) == d.gen_tokens == 3
    assert spec.breakdown_s == {"draft": d.time_s.draft_s, "verify": d.time_s.verify_s}
    assert d.speedup_over_autoregressive == pytest.approx(d.autoregressive.latency_per_token_s
                                                          / d.latency_per_token_s, rel=1e-12)
    back = RunResult.from_json(json.loads(json.dumps(spec.to_json())))
    assert back.details == d and back.spec.mode == "spec_dec" and json.dumps(back.to_json()) == json.dumps(
        spec.to_json())


def test_the_typed_fields_are_the_records_figures():
    result = simulate(_small())
    d, record = result.details, result.to_json()
    assert d.latency.latency_per_token_s == record["latency_per_token_s"] == result.latency_per_token_s
    assert d.latency.tpot_p90_s == record["tpot_p90_s"] and d.per_token_s == tuple(record["per_token_s"])
    assert d.dram.commands == record["commands"] and d.dram.row_hits == record["row_hits"]
    assert (d.data.internal_bytes, d.data.external_bytes) == (record["bytes_internal"], record["bytes_external"])
    assert d.bound.bound_efficiency == record["bound_efficiency"]
    assert d.energy.energy_breakdown_J == record["energy_breakdown_J"]
    assert d.energy.detail.actions.commands == record["energy"]["actions"]["commands"]
    assert d.memory.rows_per_bank_used == record["memory"]["rows_per_bank_used"] and d.graph.layers == 12
    # MAC commands x PIM units x the bytes each access reads: the bytes read inside the banks
    assert d.data.internal_bytes == d.dram.commands["MACAB"] * 16 * 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.hw = "other"


def test_sweep_rows_have_the_documented_columns():
    row = simulate(_small()).to_row()
    parts = [k for k in row if k.startswith((TIME_PART_PREFIX, ENERGY_PART_PREFIX))]
    assert list(row)[:3] == ["hw", "prompt_len", "gen_tokens"]
    assert list(row)[3:len(row) - len(parts)] == list(DECODE_ROW_METRICS)


def test_records_of_another_schema_or_shape_are_refused_with_what_they_are():
    record = json.loads(json.dumps(simulate(_small()).to_json()))
    with pytest.raises(PimsimError, match=f"schema_version 2; this pimsim reads records of schema version "
                                          f"{SCHEMA_VERSION}"):
        RunResult.from_json({**record, "schema_version": 2}, "old.json")
    with pytest.raises(PimsimError, match="old.json: no schema_version"):
        RunResult.from_json({k: v for k, v in record.items() if k != "schema_version"}, "old.json")
    with pytest.raises(PimsimError, match="kind 'gemv', not a run record"):
        RunResult.from_json({**record, "kind": "gemv"})
    with pytest.raises(PimsimError, match="unknown key.*'latency_p95_s'"):
        RunResult.from_json({**record, "latency_p95_s": 1.0})
    with pytest.raises(PimsimError, match="no 'row_hits'"):
        RunResult.from_json({k: v for k, v in record.items() if k != "row_hits"})
    with pytest.raises(PimsimError, match="memory: unknown key"):
        RunResult.from_json({**record, "memory": {**record["memory"], "banks_on_fire": 1}})
    with pytest.raises(PimsimError, match="a JSON list expected"):
        RunResult.from_json({**record, "per_token_s": 3.0})
    with pytest.raises(PimsimError, match="row_hits: int expected, not 'many'"):
        RunResult.from_json({**record, "row_hits": "many"})
    with pytest.raises(PimsimError, match=r"per_token_s\[1\]: float expected, not True"):
        RunResult.from_json({**record, "per_token_s": [1.0, True]})
    with pytest.raises(PimsimError, match="not a `pimsim run --json` record"):
        RunResult.from_json([1, 2])
    # what `pimsim run` adds after a run is kept as it is
    extra = RunResult.from_json({**record, "host": {"wall_s": 1.0}})
    assert extra.to_json()["host"] == {"wall_s": 1.0}


# ---- no_cache: a run setting passed down to the tracer, no environment variable on the way ----------
@pytest.fixture
def tracer_calls(tmp_path, monkeypatch):
    """Every cache lookup of the tracer: (use_cache, PIMSIM_NO_CACHE at that moment), over an empty cache."""
    from pimsim.workloads import tracer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PIMSIM_NO_CACHE", raising=False)
    calls, real = [], tracer._cached

    def spy(path, trace, adopt, use_cache, *rest):
        calls.append((use_cache, os.environ.get("PIMSIM_NO_CACHE")))
        return real(path, trace, adopt, use_cache, *rest)

    monkeypatch.setattr(tracer, "_cached", spy)
    return calls


def test_no_cache_reaches_the_tracer_as_an_argument(tracer_calls):
    from pimsim.workloads.tracer import cache_files

    fresh = simulate(_small(no_cache=True, gen_tokens=1))
    assert tracer_calls == [(False, None)] and cache_files() == []  # traced afresh, nothing written
    cached = simulate(_small(gen_tokens=1))
    assert tracer_calls[-1] == (True, None) and len(cache_files()) == 1
    assert cached.to_json() == fresh.to_json()  # the same result either way


def test_run_no_cache_sets_no_environment_variable(tracer_calls, capsys):
    from pimsim.workloads.tracer import cache_files

    args = ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "4", "--quiet"]
    assert main([*args, "--no-cache"]) == 0
    assert tracer_calls == [(False, None)] and cache_files() == []
    # speculative decoding: both models and the autoregressive baseline traced afresh, nothing cached
    assert main([*args, "--spec-dec", "draft=gpt2,k=2,alpha=0.8", "--no-cache"]) == 0
    assert tracer_calls and set(tracer_calls) == {(False, None)} and cache_files() == []


def test_no_cache_is_checked_like_every_setting():
    with pytest.raises(PimsimError, match="no_cache: true or false, not 'yes'"):
        RunSpec(model="gpt2", hw="gddr6-aim.yaml", no_cache="yes")

