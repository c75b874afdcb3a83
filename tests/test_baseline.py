"""Baselines: device specs, rooflines (closed form), measured PyTorch runs, and the comparison."""

from __future__ import annotations

import json
import types

import pytest
from conftest import TINY_GPT2, write_card

from pimsim.baseline.compare import (
    PAPER,
    Baseline,
    PimFigures,
    compare,
    comparison_row,
    format_comparison,
    paper_power_ratio,
    pim_figures,
)
from pimsim.baseline.devices import load_device
from pimsim.baseline.measure import measure
from pimsim.baseline.methods import resolve_method
from pimsim.baseline.power import CoreDomainCounter, core_power
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
    xeon = load_device("xeon-gold-6154")
    assert xeon.kind == "cpu" and (xeon.power_W, xeon.cores) == (200, 18)
    with pytest.raises(PimsimError, match="no bundled baselines file"):
        load_device("v100")


def test_bad_device_file_lists_its_problems(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\nkind: tpu\nmemory_bandwidth_GBps: -1\npeak_TFLOPS: {fp32: 1}\n"
                    "power_W: 1\nlaunch_overhead_us: 0\n")
    with pytest.raises(ConfigError) as err:
        load_device(str(path))
    assert "kind" in str(err.value) and "memory_bandwidth_GBps" in str(err.value)
    path.write_text("version: 1\nname: x\nkind: gpu\nmemory_bandwidth_GBps: 1\npeak_TFLOPS: {fp32: 1}\n"
                    "power_W: 1\nlaunch_overhead_us: 0\ncores: 8\n")
    with pytest.raises(ConfigError, match="cores is for CPUs"):
        load_device(str(path))


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
    assert r["kind"] == "measured" and len(r["per_token_s"]) == 5 and r["method"] == "eager"
    assert r["latency_p10_s"] <= r["latency_per_token_s"] <= r["latency_p90_s"]
    assert r["host"]["torch_threads"] == 1 and r["host"]["OMP_WAIT_POLICY"]
    assert 0 < r["cpu_time_per_token_s"] and len(r["host"]["load_average_1min"]) == 2
    assert r["prefill_s"] > 0 and r["peak_memory_bytes"] > 0
    assert (r["energy_per_token_J"] is None) == (r["energy_kind"] is None)
    with pytest.raises(PimsimError, match="exceeds the context"):
        measure(tiny, "cpu", prompt_len=60, gen_tokens=10)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_measured_cuda_run(tiny, dtype):
    r = measure(tiny, "cuda", dtype, prompt_len=4, gen_tokens=5, warmup=2)
    assert r["device"] == "cuda" and r["host"]["gpu"] and r["latency_per_token_s"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU here")
def test_compiled_cuda_run_replays_a_cuda_graph_and_generates_what_paper_eager_does(tiny):
    paper = measure(tiny, "cuda", "fp32", prompt_len=4, gen_tokens=5, warmup=3, method="paper")
    compiled = measure(tiny, "cuda", "fp32", prompt_len=4, gen_tokens=5, warmup=3, method="compiled")
    assert compiled["method_settings"]["compile_mode"] == "reduce-overhead"
    assert "CUDA graphs" in compiled["method_label"]
    assert compiled["tokens"] == paper["tokens"] and "core_power" not in compiled


def test_compare_labels_every_number(tiny, tmp_path):
    record = measure(tiny, "cpu", prompt_len=4, gen_tokens=3, warmup=1, method="paper")
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(record))
    hw = load_hardware("gddr6-aim.yaml")
    out = compare(hw, tiny, [str(path), "t4"], prompt_len=8, gen_tokens=2)
    measured, t4 = out["rows"]
    assert measured["kind"] == "measured" and (measured["prompt_len"], measured["gen_tokens"]) == (4, 3)
    assert measured["method"] == "paper" and measured["label"].startswith("measured, paper method")
    assert measured["sources"]["baseline"] == "measured" and measured["paper"]["device"] == "Intel Xeon Gold 6154"
    assert t4["kind"] == "roofline" and (t4["prompt_len"], t4["gen_tokens"]) == (8, 2)
    assert t4["label"].startswith("roofline bound") and t4["sources"]["baseline"] == "roofline bound"
    assert t4["paper"]["speedup"] == [41.0, 137.0]
    for row in (measured, t4):
        assert row["sources"]["pim"] == "simulated" and "PIM-GPT" in row["sources"]["paper"]
        assert row["speedup"] == pytest.approx(row["baseline_latency_per_token_s"] / row["pim_latency_per_token_s"])
        assert row["baseline_energy_kind"] and row["provenance"]
        assert row["energy_efficiency"] == pytest.approx(
            row["baseline_energy_per_token_J"] / row["pim_energy_per_token_J"])
        assert row["power_ratio"] == pytest.approx(row["energy_efficiency"] / row["speedup"])
    # the CPU run is charged one core: the paper's Xeon's TDP / cores here, where no RAPL core domain is readable
    cp = record["core_power"]
    assert measured["baseline_energy_per_token_J"] == cp["energy_per_token_J"]
    assert measured["baseline_energy_kind"].startswith("measured" if cp["kind"] == "measured" else "estimate")
    assert t4["baseline_power_W"] == pytest.approx(70.0)  # a roofline's energy is its spec power x its time
    text = format_comparison(out)
    assert "roofline bound" in text and "measured" in text and "W ratio" in text and "0.51-0.56x" in text


def test_ratio_columns_are_the_arithmetic_of_their_inputs():
    base = Baseline("cpu.json", "measured", "paper", "measured, paper method", "cpu", "here", 64, 16,
                    latency_per_token_s=0.040, energy_per_token_J=0.44, energy_label="estimate: 1 core x 11 W")
    pim = PimFigures(latency_per_token_s=0.0002, energy_per_token_J=0.002, config_hash="h")
    row = comparison_row(base, pim)
    assert row["speedup"] == pytest.approx(200.0) and row["energy_efficiency"] == pytest.approx(220.0)
    assert row["baseline_power_W"] == pytest.approx(11.0) and row["pim_power_W"] == pytest.approx(10.0)
    assert row["power_ratio"] == pytest.approx(1.1) == row["energy_efficiency"] / row["speedup"]
    # the paper's implied power ratios: energy-efficiency range / speed-up range, end by end
    assert paper_power_ratio("gpu") == pytest.approx((383 / 137, 123 / 41))  # 2.80, 3.00
    assert paper_power_ratio("cpu") == pytest.approx((320 / 631, 602 / 1074))  # 0.51, 0.56
    assert row["paper"]["power_ratio"] == pytest.approx(list(paper_power_ratio("cpu")))
    assert PAPER["cpu"]["speedup"] == (631.0, 1074.0) and PAPER["gpu"]["energy_efficiency"] == (123.0, 383.0)
    # a baseline without energy gets no energy ratio and no power ratio, never a made-up one
    blind = comparison_row(Baseline("g.json", "measured", "eager", "m", "gpu", "x", 1, 1, 0.01, None, "none"), pim)
    assert blind["energy_efficiency"] is None and blind["power_ratio"] is None and blind["speedup"] == 50.0
    run = types.SimpleNamespace(latency_per_token_s=1.0, energy_per_token_J=2.0, config_hash="c")  # a RunResult's
    assert pim_figures(run) == PimFigures(1.0, 2.0, "c")


def test_compare_refuses_unlabelled_records(tiny, tmp_path):
    record = measure(tiny, "cpu", prompt_len=4, gen_tokens=2, warmup=0, method="eager", threads=1)
    for key in ("method", "method_label", "method_settings", "core_power"):
        record.pop(key)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record))
    with pytest.raises(PimsimError) as err:
        compare(load_hardware("gddr6-aim.yaml"), tiny, [str(path), "t4"])
    assert "no method label" in str(err.value) and "without its core_power block" in str(err.value)


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
    assert "measured, eager HF" in out and "roofline bound" in out and "speed-up" in out and "W ratio" in out
    assert main(["baseline", "--model", str(card), "--method", "paper", "--threads", "2", "--dtype", "bf16",
                 "--prompt-len", "4", "--gen-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert "not bf16" in err and "not 2 threads" in err  # every contradiction in one error
    assert main(["baseline", "--model", str(card), "--cpu-spec", "t4", "--prompt-len", "4", "--gen-tokens", "1"]) == 2
    assert "needs a CPU description with cores" in capsys.readouterr().err


def test_paper_method_record_says_what_it_fixed(tiny):
    r = measure(tiny, "cpu", prompt_len=4, gen_tokens=3, warmup=1, method="paper")
    assert r["method"] == "paper" and r["method_label"].startswith("measured, paper method")
    assert r["method_settings"] == {"method": "paper", "device": "cpu", "dtype": "fp32", "threads": 1,
                                    "attention": "eager", "cache": "dynamic", "compile_mode": None, "batch": 1}
    assert (r["dtype"], r["attention"], r["host"]["torch_threads"]) == ("fp32", "eager", 1)
    assert r["compile_s"] is None and len(r["tokens"]) == 1 + 1 + 3  # prefill's token, warm-up, timed
    cp = r["core_power"]
    assert cp["cores_charged"] == 1
    if cp["kind"] == "datasheet":  # no RAPL core domain here: the paper's Xeon, 200 W / 18 cores
        assert cp["per_core_W"] == pytest.approx(200 / 18) and "TDP / cores of xeon-gold-6154" in cp["source"]
        assert cp["energy_per_token_J"] == pytest.approx(200 / 18 * r["latency_per_token_s"])


def test_methods_fix_their_settings_and_refuse_contradictions():
    cpu = resolve_method("compiled", "cpu")
    assert (cpu.cache, cpu.compile_mode, cpu.threads, cpu.attention) == ("static", "default", 1, "sdpa")
    gpu = resolve_method("compiled", "cuda", "fp16")  # the GPU path's settings, checked without a GPU
    assert (gpu.cache, gpu.compile_mode, gpu.dtype) == ("static", "reduce-overhead", "fp16")
    assert "CUDA graphs" in gpu.label and "static KV cache" in gpu.label
    assert resolve_method("paper", "cuda", "fp16").label.endswith("fp16, GPU)")
    eager = resolve_method("eager", "cpu", threads=2)
    assert (eager.cache, eager.compile_mode, eager.threads, eager.attention) == ("dynamic", None, 2, "sdpa")
    with pytest.raises(PimsimError, match="needs at least 3 warm-up tokens"):
        resolve_method("compiled", "cuda", warmup=2)
    with pytest.raises(PimsimError, match="needs at least 1 warm-up tokens"):
        resolve_method("compiled", "cpu", warmup=0)
    with pytest.raises(PimsimError) as err:
        resolve_method("paper", "cpu", "fp16", 4, "sdpa")
    assert "not fp16" in str(err.value) and "not 4 threads" in str(err.value) and "eager" in str(err.value)
    with pytest.raises(PimsimError, match="method must be one of"):
        resolve_method("fast", "cpu")


def _rapl(root, uj, max_uj=1000_000_000, name="core"):
    zone = root / "intel-rapl:0:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_core_power_reads_the_rapl_core_domain_and_undoes_a_wrap(tmp_path):
    zone = _rapl(tmp_path, 999_000_000)
    counter = CoreDomainCounter(tmp_path)
    counter.start()
    (zone / "energy_uj").write_text("2000000\n")  # wrapped past 1000 J: 1 J + 2 J = 3 J
    joules = counter.stop()
    assert joules == pytest.approx(3.0)
    cp = core_power(1, 0.05, 0.5, 10, joules, counter.why)
    assert cp["kind"] == "measured" and "RAPL core domain" in cp["source"]
    assert cp["energy_per_token_J"] == pytest.approx(0.3) and cp["power_W"] == pytest.approx(6.0)
    other = tmp_path / "pkg"
    _rapl(other, 5, name="uncore")
    assert CoreDomainCounter(other).zone is None and CoreDomainCounter(other).stop() is None


@pytest.mark.slow
def test_compiled_baseline_generates_what_eager_generates(tiny):
    eager = measure(tiny, "cpu", prompt_len=4, gen_tokens=4, warmup=1, method="eager", threads=1)
    compiled = measure(tiny, "cpu", prompt_len=4, gen_tokens=4, warmup=1, method="compiled")
    assert compiled["method_settings"]["cache"] == "static" and compiled["method_settings"]["compile_mode"] == "default"
    assert compiled["compile_s"] > 0 and compiled["latency_per_token_s"] > 0
    assert compiled["tokens"] == eager["tokens"]  # the same greedy function, computed another way
    assert "static KV cache + torch.compile" in compiled["method_label"]


def test_a_gpu_record_read_over_too_short_an_nvml_window_is_not_used_as_measured():
    """h100-gpt2-fp16 timed 64 tokens at 4.6 ms (0.29 s): its NVML reading is below what the counter resolves,
    so the comparison leaves its energy out and says why; a long enough window stays measured."""
    from pimsim.baseline.compare import _measured_energy
    from pimsim.baseline.measure import NVML_MIN_WINDOW_S

    record = {"device": "cuda", "energy_per_token_J": 0.6, "energy_kind": "NVML total energy counter",
              "gen_tokens": 64, "latency_per_token_s": 0.0046, "latency_mean_s": 0.0046,
              "per_token_s": [0.0046] * 64, "host": {"gpu": "NVIDIA H100 80GB HBM3"}}
    energy, label = _measured_energy(record)
    assert energy is None and "too short" in label and "--gen-tokens" in label  # not replaced by a 700 W spec
    record["per_token_s"] = [NVML_MIN_WINDOW_S / 64] * 64  # exactly the limit: the reading is used
    assert _measured_energy(record) == (0.6, "measured: NVML total energy counter")
    record["host"]["gpu"] = "NVIDIA H200"
    record["per_token_s"] = [0.0046] * 64
    assert _measured_energy(record)[0] is None
