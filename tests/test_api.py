"""The typed run layer (RunSpec -> simulate -> RunResult) and the public Python API on top of it."""

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import pimsim
from pimsim.errors import PimsimError
from pimsim.json_fields import to_json
from pimsim.run_types import SCHEMA_VERSION, RunResult, RunSpec

GOLDEN = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_capture", GOLDEN / "capture.py")
capture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capture)


@pytest.fixture
def own_traces(tmp_path):
    """Fresh traces (the shared graph cache may hold another checkout's graphs: config_hash would differ)."""
    with capture.private_trace_cache(str(tmp_path)):
        yield


def test_run_returns_the_same_record_as_the_engine_did_before(own_traces):
    r = pimsim.run(hw="gddr6-aim", model="gpt2", prompt_len=16, gen_tokens=2)
    assert isinstance(r, RunResult) and r.kind == "decode"
    assert capture.canonical(to_json(r.details)) == (GOLDEN / "fast-gddr6-aim-gpt2.json").read_text()
    assert r.latency_per_token_s == r.details.latency.latency_per_token_s and r.tokens == 2 and r.model == "gpt2"
    d = r.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION and d["kind"] == "decode"
    assert d["config"]["name"] == r.hw and d["config"]["derived"]["access_bytes"] == 32
    row = r.to_row()
    assert row["latency_per_token_s"] == r.latency_per_token_s
    assert row["time_total_s:ffn"] == r.breakdown_s["ffn"]
    assert r.to_frame().shape[0] == 1


def test_spec_dec_run_through_the_api_matches_the_golden_record(own_traces):
    r = pimsim.run(hw="gddr6-aim.yaml", spec_dec="draft=gpt2,target=gpt2-medium,k=2,alpha=0.8", prompt_len=16,
                   gen_tokens=6)
    assert r.kind == "spec_dec" and r.model == "gpt2-medium" and set(r.breakdown_s) == {"draft", "verify"}
    assert capture.canonical(to_json(r.details)) == (GOLDEN / "specdec-vanilla.json").read_text()
    with pytest.raises(PimsimError, match="not the spec-dec target"):
        pimsim.run(hw="gddr6-aim", model="gpt2", spec_dec="draft=gpt2,target=gpt2-medium,k=2,alpha=0.8")


def test_wrong_types_and_values_are_one_error_listing_each():
    with pytest.raises(PimsimError) as err:
        pimsim.run(hw="gddr6-aim", model="gpt2", gen_tokens=2.5, schedule="sideways", prompt_len=True)
    text = str(err.value)
    assert "3 problems" in text and "gen_tokens" in text and "schedule" in text and "prompt_len" in text
    with pytest.raises(PimsimError, match="unknown option gen_token "):
        pimsim.run(hw="gddr6-aim", model="gpt2", gen_token=2)
    with pytest.raises(PimsimError, match="overrides"):
        RunSpec(model="gpt2", hw="gddr6-aim", overrides=["asic.lanes=4"])
    with pytest.raises(PimsimError, match="spec_dec"):
        RunSpec(model="gpt2", hw="gddr6-aim", mode="spec_dec")
    with pytest.raises(PimsimError, match="rows"):
        pimsim.gemv(hw="gddr6-aim", rows=0, cols=8)


def test_run_spec_is_frozen_and_patches_merge_overrides():
    base = RunSpec(model="gpt2", hw="gddr6-aim", overrides={"asic.lanes": 64})
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.gen_tokens = 3
    with pytest.raises(TypeError):
        base.overrides["asic.lanes"] = 8  # read-only
    patched = base.patch(gen_tokens=3, overrides={"asic.freq_MHz": 500})
    assert dict(patched.overrides) == {"asic.lanes": 64, "asic.freq_MHz": 500} and patched.gen_tokens == 3
    assert base.gen_tokens is None and patched.mode == "decode"
    assert patched.override_texts() == ["asic.lanes=64", "asic.freq_MHz=500"]
    with pytest.raises(PimsimError, match="unknown run setting"):
        base.patch(tokens=3)


def test_overrides_reach_the_hardware():
    slow = pimsim.run(hw="gddr6-aim", model="gpt2", prompt_len=16, gen_tokens=1, overrides={"asic.freq_MHz": 100})
    fast = pimsim.run(hw="gddr6-aim", model="gpt2", prompt_len=16, gen_tokens=1)
    assert slow.config_hash != fast.config_hash
    assert slow.breakdown_s["asic"] > fast.breakdown_s["asic"]


def test_sweep_and_gemv():
    table = pimsim.sweep(hw="gddr6-aim", models=["gpt2"], grid={"asic.freq_MHz": [500, 1000]},
                         run={"prompt_len": 16, "gen_tokens": 1})
    assert len(table) == 2 and set(table["status"]) == {"ok"}
    assert table.sort_values("set:asic.freq_MHz")["latency_per_token_s"].is_monotonic_decreasing
    g = pimsim.gemv(hw="gddr6-aim", rows=64, cols=256)
    assert g["cycles"] > 0 and g["commands"]["MACAB"] > 0
    with pytest.raises(PimsimError, match="run: unknown"):
        pimsim.sweep(hw="gddr6-aim", models=["gpt2"], run={"tokens": 3})


def test_import_pimsim_is_cheap():
    code = "import sys, pimsim; print(sorted(m for m in ('numpy', 'torch', 'numba', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_api_names_survive_loading_the_subpackages():
    import pimsim.sweep.runner  # noqa: F401  (the subpackage of the same name)

    assert callable(pimsim.sweep) and callable(pimsim.run) and callable(pimsim.gemv)


def test_the_readme_python_example_runs():
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
