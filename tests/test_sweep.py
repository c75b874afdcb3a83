"""Sweeps: points from grids, zips, samples and constraints; resumable runs; the Dask seam."""

from __future__ import annotations

import json

import pytest

from pimsim.cli import main
from pimsim.errors import ConfigError, PimsimError
from pimsim.sweep.points import Sweep, load_sweep_file, parse_grid
from pimsim.sweep.runner import read_rows, run_sweep


def test_grid_zip_random_and_constraints_make_the_points():
    grid = parse_grid(["dram.channels=4,8", "asic.freq_MHz=100,1000"])
    s = Sweep("gddr6-aim.yaml", ["gpt2", "gpt2-medium"], grid=grid,
              zipped={"asic.lanes": [64, 256], "asic.pipeline_cycles": [2, 4]},
              constraints=["asic.freq_MHz >= 500 or dram.organization.channels == 4"])
    pts = s.points()
    # 2 models x (2 x 2 grid minus the one the constraint drops) x 2 zipped pairs
    assert len(pts) == 2 * 3 * 2
    first = pts[0]["overrides"]
    assert set(first) == {"dram.organization.channels", "asic.freq_MHz", "asic.lanes", "asic.pipeline_cycles"}
    assert {(p["overrides"]["asic.lanes"], p["overrides"]["asic.pipeline_cycles"]) for p in pts} == {(64, 2), (256, 4)}
    assert len({p["id"] for p in pts}) == len(pts)
    sampled = Sweep("gddr6-aim.yaml", ["gpt2"], random_axes={"asic.lanes": [16, 512]}, random_count=5,
                    random_seed=3).points()
    assert len(sampled) == 5 and all(16 <= p["overrides"]["asic.lanes"] <= 512 for p in sampled)
    assert sampled == Sweep("gddr6-aim.yaml", ["gpt2"], random_axes={"asic.lanes": [16, 512]}, random_count=5,
                            random_seed=3).points()  # seeded: the same points again


def test_sweep_file_problems_are_listed_together(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("hw: gddr6-aim.yaml\nmodels: gpt2\nrun: {tokens: 3}\ngrid: {asic.lanes: 5}\n"
                    "zip: {a: [1, 2], b: [1]}\nconstraints: ['__import__(\"os\")']\ncolour: red\n")
    with pytest.raises(ConfigError) as err:
        load_sweep_file(path)
    text = str(err.value)
    for bit in ("models", "run.tokens", "grid", "zip", "constraints[0]", "colour"):
        assert bit in text
    with pytest.raises(PimsimError, match="expected KEY=V1"):
        parse_grid(["asic.lanes"])


def test_sweep_runs_resumes_and_records_failures(tmp_path):
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"prompt_len": 8, "gen_tokens": 1},
                  grid={"asic.lanes": [0, 64, 256]})
    result = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    assert (result["points"], result["ran"], result["failed"]) == (3, 3, 1)
    rows = {r["set:asic.lanes"]: r for r in read_rows(tmp_path / "points.jsonl")}
    assert rows[0]["status"] == "error" and "asic.lanes" in rows[0]["error"]
    assert rows[256]["status"] == "ok" and rows[256]["latency_per_token_s"] < rows[64]["latency_per_token_s"]
    assert rows[64]["energy_total_J:mac"] > 0 and rows[64]["time_total_s:ffn"] > 0 and rows[64]["config_hash"]
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "points.parquet")
    assert len(frame) == 3 and set(frame["status"]) == {"ok", "error"}
    again = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    assert (again["ran"], again["skipped"]) == (1, 2)  # the failed point is tried again, the rest skipped


def test_weight_format_is_a_sweep_axis_of_run_options(tmp_path):
    from pimsim.runs import run_model

    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"prompt_len": 8, "gen_tokens": 1},
                  grid={"weight_format": ["bf16", "ternary", "fp16"], "asic.lanes": [256]})
    result = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    rows = {r["set:weight_format"]: r for r in read_rows(tmp_path / "points.jsonl")}
    assert (result["ran"], result["failed"]) == (3, 1) and "do not support fp16" in rows["fp16"]["error"]
    assert rows["ternary"]["weight_format"] == "ternary" and rows["bf16"]["weight_format"] == "bf16"
    direct = run_model("gddr6-aim.yaml", "gpt2", 8, 1, weight_format="ternary")
    assert rows["ternary"]["latency_per_token_s"] == direct["latency_per_token_s"]


def test_speculative_decoding_is_swept_over_alpha_and_k(tmp_path):
    from pimsim.config import load_hardware
    from pimsim.runs import run_specdec
    from pimsim.workloads.specdec import parse_spec

    run = {"prompt_len": 8, "gen_tokens": 6, "spec_dec": "draft=gpt2,k=2,alpha=0.5"}
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run=run,
                  grid={"spec_dec.alpha": [0.5, 0.95], "spec_dec.k": [1, 3]})
    result = run_sweep(sweep, tmp_path, jobs=1, progress=False)
    rows = {(r["set:spec_dec.alpha"], r["set:spec_dec.k"]): r for r in read_rows(tmp_path / "points.jsonl")}
    assert result["failed"] == 0 and len(rows) == 4
    direct = run_specdec(load_hardware("gddr6-aim.yaml"), parse_spec("target=gpt2,draft=gpt2,k=3,alpha=0.95"), 8, 6)
    assert rows[(0.95, 3)]["speedup_over_autoregressive"] == direct["speedup_over_autoregressive"]
    assert rows[(0.5, 1)]["expected_tokens_per_verify_step"] == pytest.approx(1.5)


def test_sweep_cli_exit_status_counts_failures(tmp_path, capsys):
    rc = main(["sweep", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--grid", "asic.lanes=0,64",
               "--gen-tokens", "1", "--prompt-len", "4", "--out", str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1 and "1 failed" in captured.out and "failed gpt2" in captured.err


def test_sweep_through_a_dask_cluster_on_loopback(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"prompt_len": 4, "gen_tokens": 1},
                      grid={"dram.organization.channels": [4, 8]})
        result = run_sweep(sweep, tmp_path, cluster=cluster.scheduler_address, progress=False)
    assert (result["ran"], result["failed"]) == (2, 0)
    rows = read_rows(tmp_path / "points.jsonl")
    by = {r["set:dram.organization.channels"]: r["latency_per_token_s"] for r in rows}
    assert by[8] < by[4]
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1")
    assert json.loads((tmp_path / "points.jsonl").read_text().splitlines()[0])["pimsim_version"]


def test_unreachable_cluster_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIMSIM_DASK_TIMEOUT_S", "1")
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"gen_tokens": 1}, grid={"asic.lanes": [64]})
    with pytest.raises(PimsimError, match="cannot reach the Dask scheduler"):
        run_sweep(sweep, tmp_path, cluster="tcp://127.0.0.1:1", progress=False)


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run={"prompt_len": 4, "gen_tokens": 1},
                  grid={"asic.freq_MHz": [100, 1000], "dram.organization.channels": [4, 8]})
    one = run_sweep(sweep, tmp_path / "one", jobs=1, progress=False)["rows"]
    two = run_sweep(sweep, tmp_path / "two", jobs=2, progress=False)["rows"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(one) == strip(two)


def test_a_killed_sweep_restarts_with_every_point_exactly_once(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pimsim", "sweep", "--hw", "gddr6-aim.yaml", "--model", "gpt2",
            "--grid", "asic.freq_MHz=100,200,300,400,500,600,700,800", "--gen-tokens", "2", "--prompt-len", "4",
            "--out", str(out), "--quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    jsonl = out / "points.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (jsonl.is_file() and jsonl.read_text().count("\n") >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-run
    proc.wait()
    finished = jsonl.read_text().count("\n")
    assert 2 <= finished < 8
    with jsonl.open("a") as f:
        f.write('{"id": "torn li')  # as if killed while writing a line
    assert subprocess.run(argv, capture_output=True).returncode == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line whole
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 8 and all(r["status"] == "ok" for r in rows)


def test_specdec_sweep_runs_each_point_in_its_weight_format():
    """A sweep with run.spec_dec and a weight_format axis ran every point in the target card's format
    (bf16) while its rows said otherwise: each point now runs in its own format, and its row says which."""
    from pimsim.config import load_hardware
    from pimsim.runs import run_specdec
    from pimsim.sweep.points import Sweep
    from pimsim.sweep.runner import run_point
    from pimsim.workloads.specdec import parse_spec

    run = {"prompt_len": 8, "gen_tokens": 4, "spec_dec": "draft=gpt2,k=2,alpha=0.5"}
    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], run, grid={"weight_format": ["bf16", "ternary"]})
    rows = {r["set:weight_format"]: r for r in (run_point(sweep.hw, p, sweep.run) for p in sweep.points())}
    hw = load_hardware("gddr6-aim.yaml")
    for fmt in ("bf16", "ternary"):
        assert rows[fmt]["status"] == "ok", rows[fmt]["error"]
        direct = run_specdec(hw, parse_spec("target=gpt2,draft=gpt2,k=2,alpha=0.5"), 8, 4,
                             weight_format=fmt)
        assert direct["weight_format"] == fmt
        assert rows[fmt]["weight_format"] == fmt
        assert rows[fmt]["latency_per_token_s"] == direct["latency_per_token_s"]
    assert rows["ternary"]["latency_per_token_s"] < rows["bf16"]["latency_per_token_s"]
