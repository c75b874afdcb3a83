"""`pimsim run` and `pimsim model list` through ``pimsim.cli.main``."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pimsim.cli import main


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_json_has_every_documented_key(capsys):
    rc, out, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--prompt-len", "10",
                       "--gen-tokens", "2", "--json", "-")
    assert rc == 0, err
    r = json.loads(out)
    for key in ("model", "hw", "tokens", "latency_per_token_s", "tokens_per_s", "total_time_s", "breakdown_s",
                "row_hit_rate", "bytes_internal", "bytes_external", "bound_efficiency", "config_hash",
                "pimsim_version", "config", "model_card", "commands", "per_token_s"):
        assert key in r, key
    assert r["model"] == "gpt2" and r["hw"] == "gddr6-aim" and r["tokens"] == 2 and r["prompt_len"] == 10
    assert r["total_time_s"] == pytest.approx(sum(r["per_token_s"]))
    assert r["tokens_per_s"] == pytest.approx(2 / r["total_time_s"])
    assert sum(r["breakdown_s"].values()) == pytest.approx(r["total_time_s"], rel=1e-9)  # serial: parts add up
    assert set(r["breakdown_s"]) >= {"qkv", "attn_scores", "softmax", "attn_context", "out_proj", "ffn", "lm_head",
                                     "asic", "transfers", "kv_write"}
    assert 0.9 < r["row_hit_rate"] < 1 and 0 < r["bound_efficiency"] < 1
    assert r["bytes_internal"] > 10 * r["bytes_external"] > 0
    assert r["config"]["asic"]["freq_MHz"] == 1000


def test_run_table_and_json_file(capsys, tmp_path):
    rc, out, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1",
                       "--json", str(tmp_path / "r.json"), "--quiet")
    assert rc == 0, err
    assert "per token" in out and "tokens/s" in out and "FFN" in out and "hit rate" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["tokens"] == 1 and saved["prompt_len"] == 64  # the card's default prompt


def test_same_inputs_same_numbers_and_hash(capsys):
    argv = ("run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--json", "-")
    a = json.loads(run(capsys, *argv)[1])
    b = json.loads(run(capsys, *argv)[1])
    a.pop("host"), b.pop("host")
    assert a == b
    c = json.loads(run(capsys, *argv, "--set", "asic.freq_MHz=100")[1])
    assert c["config_hash"] != a["config_hash"] and c["total_time_s"] > a["total_time_s"]


def test_timeline_is_a_chrome_trace(capsys, tmp_path):
    path = tmp_path / "t.json"
    rc, _, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1",
                     "--schedule", "overlap", "--timeline", str(path), "--quiet")
    assert rc == 0, err
    events = json.loads(path.read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in slices} == {0, 1, 2, 3} | {100 + ch for ch in range(8)}  # tokens, units, channels
    assert all(e["dur"] > 0 for e in slices if e["tid"] < 100)
    assert any(e["cat"] == "softmax" for e in slices)
    pim = [e for e in slices if e["tid"] == 3]
    per_channel = [e for e in slices if e["tid"] >= 100]
    assert max(e["ts"] + e["dur"] for e in per_channel) == pytest.approx(max(e["ts"] + e["dur"] for e in pim))
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e.get("tid", 0) >= 100}
    assert names == {f"channel {ch}" for ch in range(8)}


@pytest.mark.parametrize("fidelity", ["fast", "cycle"])
def test_timeline_channel_tracks_end_with_their_streams(capsys, tmp_path, fidelity):
    path = tmp_path / "t.json"
    rc, _, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1",
                     "--fidelity", fidelity, "--timeline", str(path), "--quiet")
    assert rc == 0, err
    slices = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    by_start = {}
    for e in slices:
        if e["tid"] == 3:
            by_start[e["ts"]] = e["ts"] + e["dur"]
    for e in slices:
        if e["tid"] >= 100:  # no channel outlasts the stream it belongs to
            assert e["ts"] + e["dur"] <= by_start[e["ts"]] + 1e-6


def test_timeline_marks_each_token_and_keeps_the_first_n_gzipped(capsys, tmp_path):
    """Before: no token boundaries, and every token of a long run in one uncompressed file."""
    import gzip

    whole, capped = tmp_path / "all.json", tmp_path / "two.json.gz"
    argv = ("run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "4", "--quiet", "--json", "-")
    out = json.loads(run(capsys, *argv, "--timeline", str(whole))[1])
    events = json.loads(whole.read_text())["traceEvents"]
    tokens = [e for e in events if e["ph"] == "X" and e["tid"] == 0]
    assert [e["name"] for e in tokens] == [f"token {i}" for i in range(4)]
    assert [e["dur"] for e in tokens] == pytest.approx([t * 1e6 for t in out["per_token_s"]])
    ends = [e["ts"] + e["dur"] for e in tokens]
    assert ends[-1] == pytest.approx(max(e["ts"] + e["dur"] for e in events if e["ph"] == "X"))
    run(capsys, *argv, "--timeline", str(capped), "--timeline-tokens", "2")
    with gzip.open(capped, "rt") as f:
        short = json.loads(f.read())["traceEvents"]
    assert [e["name"] for e in short if e["ph"] == "X" and e["tid"] == 0] == ["token 0", "token 1"]
    assert max(e["ts"] for e in short if e["ph"] == "X") < ends[1]
    assert len(short) < len(events) and "first 2 of 4 tokens" in short[0]["args"]["name"]
    assert main(["plot", "timeline", str(capped), "--out", str(tmp_path / "t.png")]) == 0
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--timeline-tokens", "2"]) == 2


@pytest.mark.parametrize("argv, message", [
    (("--model", "gpt7"), "no bundled workloads file"),
    (("--model", "gpt2", "--prompt-len", "1020", "--gen-tokens", "10"), "longer than its context of 1024"),
    (("--model", "gpt2", "--set", "dram.organization.rows=64"), "does not fit in gddr6-aim"),
    (("--model", "gpt2", "--set", "asic.lanes=0"), "asic.lanes"),
])
def test_bad_input_is_one_message(capsys, argv, message):
    rc, out, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", *argv, "--quiet")
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_hardware_without_pim_is_refused(capsys):
    rc, _, err = run(capsys, "run", "--hw", "ddr4-2400.yaml", "--model", "gpt2", "--quiet")
    assert rc == 2 and "no pim and asic section" in err


def test_model_list(capsys):
    rc, out, _ = run(capsys, "model", "list")
    assert rc == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert "gpt2-xl" in names and "tinyllama-1.1b" in names


def test_functional_flags_are_checked_before_simulating(capsys):
    rc, _, err = run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--functional",
                     "--weights", "/nonexistent.gguf", "--quiet")
    assert rc == 2 and "no such file" in err


def test_a_reader_that_leaves_early_is_no_error():
    import subprocess
    import sys

    # `true` exits without reading, so pimsim always writes into a closed pipe
    done = subprocess.run(f"{sys.executable} -m pimsim run --hw gddr6-aim.yaml --model gpt2 --gen-tokens 1 --quiet "
                          f"| true; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_config_hash_names_the_graph_not_the_library_versions(monkeypatch):
    """A fresh install with other torch/transformers versions that trace the same graph prints the
    same config hash (the quick start's hash must hold there); a changed traced op changes it."""
    from pimsim.runs import run_model
    from pimsim.workloads import tracer

    first = run_model("gddr6-aim.yaml", "gpt2", prompt_len=8, gen_tokens=1)
    real = tracer.traced_graph

    def other_versions(card, *args, **kwargs):
        graph = real(card, *args, **kwargs)
        graph.meta = dataclasses.replace(
            graph.meta, traced_with=dataclasses.replace(graph.meta.traced_with, torch="9.9", transformers="9.9"))
        return graph

    monkeypatch.setattr("pimsim.runs.traced_graph", other_versions)
    again = run_model("gddr6-aim.yaml", "gpt2", prompt_len=8, gen_tokens=1)
    assert again["graph"]["traced_with"]["torch"] == "9.9"  # still recorded in the result
    assert again["config_hash"] == first["config_hash"]

    def one_op_less(card, *args, **kwargs):
        graph = real(card, *args, **kwargs)
        graph.ops = graph.ops[:-1]
        return graph

    monkeypatch.setattr("pimsim.runs.traced_graph", one_op_less)
    assert run_model("gddr6-aim.yaml", "gpt2", prompt_len=8, gen_tokens=1)["config_hash"] != first["config_hash"]


def test_tpot_percentiles_and_sweep_row_scope(capsys):
    """TPOT (time per output token) at p50/p90/p99 where there are several tokens; sweep rows name the
    hardware and lengths, and say that each part's figures are totals over the run."""
    import numpy as np

    from pimsim.run_types import RunSpec
    from pimsim.runs import simulate

    r = json.loads(run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "5",
                       "--prompt-len", "250", "--json", "-")[1])
    for q in (50, 90, 99):
        assert r[f"tpot_p{q}_s"] == pytest.approx(float(np.percentile(r["per_token_s"], q)))
    assert r["tpot_p50_s"] == pytest.approx(r["latency_median_token_s"])
    assert min(r["per_token_s"]) <= r["tpot_p50_s"] <= r["tpot_p90_s"] <= r["tpot_p99_s"] <= max(r["per_token_s"])
    one = json.loads(run(capsys, "run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1",
                         "--json", "-")[1])
    assert "tpot_p50_s" not in one  # one token has no distribution
    row = simulate(RunSpec(model="gpt2", hw="gddr6-aim.yaml", prompt_len=8, gen_tokens=2)).to_row()
    assert (row["hw"], row["prompt_len"], row["gen_tokens"]) == ("gddr6-aim", 8, 2)
    total = sum(v for k, v in row.items() if k.startswith("time_total_s:"))
    assert total == pytest.approx(row["total_time_s"])  # serial: the parts add up to the run, not a token
