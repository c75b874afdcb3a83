"""Baselines: device specs, rooflines (closed form), measured PyTorch runs, and the comparison."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.baseline.compare import compare
from pimsim.baseline.devices import load_device
from pimsim.baseline.measure import measure
from pimsim.baseline.roofline import roofline, token_time_s
from pimsim.cli import main
from pimsim.config import load_hardware
from pimsim.errors import ConfigError, PimsimError
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_card(write_card(tmp_path_factory.mktemp("c"), "tiny-gpt2", "gpt2", TINY_GPT2))


def test_bundled_devices_load_with_their_sources():
    t4 = load_device("t4")
    assert (t4.memory_bandwidth_GBps, t4.peak_TFLOPS["fp16"], t4.power_W) == (320, 65.0, 70)
    assert load_device("xeon-gold-6154").kind == "cpu"
    with pytest.raises(PimsimError, match="no bundled baselines file"):
        load_device("v100")


def test_bad_device_file_lists_its_problems(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\nkind: tpu\nmemory_bandwidth_GBps: -1\npeak_TFLOPS: {fp32: 1}\n"
                    "power_W: 1\nlaunch_overhead_us: 0\n")
    with pytest.raises(ConfigError) as err:
        load_device(str(path))
    assert "kind" in str(err.value) and "memory_bandwidth_GBps" in str(err.value)


def test_roofline_is_bytes_over_bandwidth_plus_launches():
    g = traced_graph(load_card("gpt2"))
    t4 = load_device("t4")
    step = token_time_s(t4, g, context=100, dtype="fp16")
    weights = sum(op.rows * op.cols for op in g.ops if op.kind == "gemv")
    kv = 2 * 12 * 12 * 64 * 100
    assert step["bytes"] == 2 * (weights + kv)
    assert step["memory_s"] == pytest.approx(step["bytes"] / 320e9)
    assert step["memory_s"] > step["compute_s"]  # decode at batch 1 is memory-bound
    assert step["time_s"] == pytest.approx(step["memory_s"] + step["operators"] * 5e-6)
    r = roofline(t4, g, 99, 2)
    assert r["latency_per_token_s"] == pytest.approx(
        (token_time_s(t4, g, 100, "fp16")["time_s"] + token_time_s(t4, g, 101, "fp16")["time_s"]) / 2)
    assert r["energy_per_token_J"] == pytest.approx(70 * r["latency_per_token_s"]) and "estimate" in r["energy_kind"]
    with pytest.raises(PimsimError, match="no bf16 peak"):
        token_time_s(t4, g, 10, "bf16")


def test_this_machine_is_probed():
    spec = load_device("this-machine")
    assert spec.memory_bandwidth_GBps > 0.5 and spec.peak_TFLOPS["fp32"] > 0.001
    assert "probe" in spec.source


def test_measured_cpu_run_records_latency_and_host(tiny):
    r = measure(tiny, "cpu", "fp32", prompt_len=4, gen_tokens=5, threads=1, warmup=1)
    assert r["kind"] == "measured" and len(r["per_token_s"]) == 5
    assert r["latency_p10_s"] <= r["latency_per_token_s"] <= r["latency_p90_s"]
    assert r["host"]["torch_threads"] == 1 and r["host"]["OMP_WAIT_POLICY"]
    assert r["prefill_s"] > 0 and r["peak_memory_bytes"] > 0
    assert (r["energy_per_token_J"] is None) == (r["energy_kind"] is None)
    with pytest.raises(PimsimError, match="exceeds the context"):
        measure(tiny, "cpu", prompt_len=60, gen_tokens=10)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_measured_cuda_run(tiny, dtype):
    r = measure(tiny, "cuda", dtype, prompt_len=4, gen_tokens=5, warmup=2)
    assert r["device"] == "cuda" and r["host"]["gpu"] and r["latency_per_token_s"] > 0


def test_compare_labels_every_number(tiny, tmp_path):
    record = measure(tiny, "cpu", "fp32", prompt_len=4, gen_tokens=3, threads=1, warmup=1)
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(record))
    hw = load_hardware("gddr6-aim.yaml")
    out = compare(hw, tiny, [str(path), "t4"], prompt_len=8, gen_tokens=2)
    measured, t4 = out["rows"]
    assert measured["kind"] == "measured" and (measured["prompt_len"], measured["gen_tokens"]) == (4, 3)
    assert t4["kind"] == "roofline" and (t4["prompt_len"], t4["gen_tokens"]) == (8, 2)
    for row in (measured, t4):
        assert row["speedup"] == pytest.approx(row["baseline_latency_per_token_s"] / row["pim_latency_per_token_s"])
        assert row["baseline_energy_kind"] and row["provenance"]
        assert row["energy_efficiency"] == pytest.approx(
            row["baseline_energy_per_token_J"] / row["pim_energy_per_token_J"])
    assert "estimate" in measured["baseline_energy_kind"] or "counter" in measured["baseline_energy_kind"]


def test_compare_refuses_a_record_of_another_model(tiny, tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"kind": "measured", "model": "gpt2-xl"}))
    with pytest.raises(PimsimError, match="measures gpt2-xl"):
        compare(load_hardware("gddr6-aim.yaml"), tiny, [str(path)])
    rc = main(["compare", "--hw", "gddr6-aim.yaml", "--model", "gpt2"])
    assert rc == 2 and "at least one --baseline" in capsys.readouterr().err


def test_baseline_and_compare_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = write_card(tmp_path, "tiny", "gpt2", TINY_GPT2)
    assert main(["baseline", "--model", str(card), "--threads", "1", "--prompt-len", "4", "--gen-tokens", "3",
                 "--warmup", "1", "--out", "cpu.json"]) == 0
    assert "ms/token median" in capsys.readouterr().out
    assert main(["compare", "--hw", "gddr6-aim.yaml", "--model", str(card), "--baseline", "cpu.json",
                 "--baseline", "xeon-gold-6154"]) == 0
    out = capsys.readouterr().out
    assert "measured" in out and "roofline" in out and "speed-up" in out
