"""The analysis scripts run and agree with the published device figures they rest on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ANALYSIS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pim_mac_throughput_matches_the_published_peaks():
    mod = _load("pim_mac_throughput")
    aim = mod.row_sweep("gddr6-aim.yaml", rows=32)
    # AiM (JSSC 2023): about 1 TFLOPS of BF16 MAC per chip = two x16 channels -> 512 GFLOPS per channel
    assert aim["peak_GFLOPS_per_channel"] == pytest.approx(512.0)
    # ACTAB + 64 MACs + PREA takes 226 cycles without refresh; refresh makes it a little longer
    assert 226 <= aim["cycles_per_row"] < 226 * 1.15
    hbm = mod.row_sweep("hbm-pim.yaml", rows=32)
    # HBM-PIM: 8 units x 16 FP16 lanes every max(nCCDL, nBL) = 4 ns -> 64 GFLOPS per pseudo-channel,
    # about 1 TFLOPS per 16-pseudo-channel stack (Samsung quotes ~1.2 TFLOPS at a 300 MHz PIM clock)
    assert hbm["peak_GFLOPS_per_channel"] * hbm["channels"] == pytest.approx(1024.0)
    assert 0 < hbm["efficiency"] < 1 and 0 < aim["efficiency"] < 1


def test_pimgpt_calibration_runs_and_reports_the_papers_quantities(capsys, monkeypatch):
    mod = _load("pimgpt_calibration")
    monkeypatch.setattr(mod, "MODELS", ("gpt2",))
    monkeypatch.setattr(mod, "LANES", (128, 256))
    monkeypatch.setattr("sys.argv", ["pimgpt_calibration.py", "--prompt-len", "32", "--gen-tokens", "2"])
    mod.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| gpt2 "))
    ms, hit, asic, non_mv, wide, slower, throughput = [c.strip() for c in row.strip("| ").split("|")][1:]
    assert 0.9 < float(hit.rstrip("%")) / 100 < 1
    assert 0 < float(asic.rstrip("%")) < float(non_mv.rstrip("%")) < 100
    assert 1 < float(wide.rstrip("x")) <= 2  # more channels help, at most linearly
    longer, loss = float(slower.rstrip("%")) / 100, -float(throughput.rstrip("%")) / 100
    assert longer > 0 and loss == pytest.approx(1 - 1 / (1 + longer), abs=0.002)  # throughput loss from latency
    assert "context 32-33 tokens" in out and "fitted" in out and "nothing is fitted" not in mod.__doc__
    lanes = {int(line.split("|")[1]): float(line.split("|")[3].strip().rstrip("%"))
             for line in out.split("Table 2.")[1].splitlines() if line.startswith("| 1") or line.startswith("| 2")}
    assert lanes[128] > lanes[256] > 0  # a wider ASIC spends a smaller share of the token on its own work
    assert "fitted: the bundled value" in next(line for line in out.splitlines() if line.startswith("| 256 "))


def test_pimgpt_headline_runs_against_rooflines_and_records(capsys, monkeypatch):
    mod = _load("pimgpt_headline")
    monkeypatch.setattr(mod, "MODELS", ("gpt2",))
    monkeypatch.setattr("sys.argv", ["pimgpt_headline.py", "--prompt-len", "16", "--gen-tokens", "2"])
    mod.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| gpt2 |"))
    assert row.count("x") == 6  # speed-up, energy efficiency and power ratio against both devices
    assert "41-137x / 123-383x / 2.80-3.00x" in out and "631-1074x / 320-602x / 0.51-0.56x" in out
    assert "roofline bound" in out and "measured" in out
    assert "h100-gpt2-fp16" in out and "NVML total energy counter" in out  # a bundled measured record
    assert "cpu-gpt2-paper" in out and "paper method" in out and "TDP / cores" in out


@pytest.mark.slow
def test_design_space_studies_run_and_draw(tmp_path, monkeypatch, capsys):
    mod = _load("design_space")
    monkeypatch.setattr("sys.argv", ["design_space.py", "--out", str(tmp_path), "--jobs", "1"])
    mod.main()
    out = capsys.readouterr().out
    assert "channel scaling" in out and "mapping strategies" in out
    assert {p.name for p in tmp_path.glob("*.png")} == {"channels.png", "asic-clock.png", "context-gpt2-xl.png"}


def test_number_formats_study_runs_and_orders_the_formats(tmp_path, capsys, monkeypatch):
    mod = _load("number_formats")
    monkeypatch.setattr(mod, "MODELS", ["gpt2", "bitnet-b1.58-3b"])
    monkeypatch.setattr(mod, "FOCUS", "gpt2")
    monkeypatch.setattr(mod, "RUN", {"prompt_len": 8, "gen_tokens": 1})
    monkeypatch.setattr("sys.argv", ["number_formats.py", "--out", str(tmp_path), "--jobs", "1"])
    mod.main()
    out = capsys.readouterr().out
    assert (tmp_path / "formats.png").is_file() and (tmp_path / "formats-breakdown.png").is_file()
    aim = out.split("gpt2 on gddr6-aim:")[1].split("bitnet")[0]
    speed = {line.split()[0]: float(line.split()[1]) for line in aim.strip().splitlines()}
    assert speed["bf16"] < speed["int8"] < speed["ternary"] < speed["binary"]
    assert "bf16        does not run: bitnet-b1.58-3b does not fit in gddr6-aim" in out


def test_specdec_study_runs_and_puts_the_gpu_above_pim(tmp_path, capsys, monkeypatch):
    mod = _load("specdec")
    monkeypatch.setattr(mod, "TARGET", "gpt2-medium")
    monkeypatch.setattr(mod, "TOKENS", 8)
    monkeypatch.setattr(mod, "KS", [1, 4])
    monkeypatch.setattr("sys.argv", ["specdec.py", "--out", str(tmp_path)])
    mod.main()
    out = capsys.readouterr().out
    assert (tmp_path / "specdec-alpha-k.png").is_file() and "PEARL up to 3.79x" in out
    best = {line.split("(k =")[0].strip(): float(line.rsplit("best ", 1)[1].split("x")[0])
            for line in out.splitlines() if "best " in line}
    # a one-vector global buffer pays a verify step nearly k + 1 times over: no speed-up; the GPU's is free
    assert best["gddr6-aim (1-vector buffer)"] < 1 < best["H100 roofline (fp16)"]
    assert best["gddr6-aim (1-vector buffer)"] < best["gddr6-aim, 16-vector buffer"]
