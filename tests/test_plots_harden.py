"""Issue 19: figures say what they aggregate or refuse, and are fit for a paper (each test failed before)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from pimsim.cli import main
from pimsim.errors import PimsimError
from pimsim.report import plots


def _frame():
    rows = []
    for model, scale in (("gpt2", 1.0), ("gpt2-xl", 10.0)):
        for channels in (4, 8):
            for freq in (100, 1000):
                for fmt in ("bf16", "ternary"):
                    t = scale / channels / (1 + freq / 1000) / (2 if fmt == "ternary" else 1)
                    rows.append({"id": f"{model}{channels}{freq}{fmt}", "model": model, "status": "ok",
                                 "set:dram.organization.channels": channels, "set:asic.freq_MHz": freq,
                                 "set:weight_format": fmt, "latency_per_token_s": t * 1e-3, "tokens_per_s": 1e3 / t,
                                 "energy_per_token_J": t * (1 + channels / 8) * 1e-3})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _default_size():
    yield
    plots.set_size(None)


def test_sweep_refuses_to_zigzag_through_unplotted_axes_and_where_fixes_them():
    frame = _frame()
    with pytest.raises(PimsimError, match="asic.freq_MHz .*weight_format .*also vary.*--where"):
        plots.sweep_lines(frame, "dram.channels", "latency_per_token_s")
    fig = plots.sweep_lines(frame, "dram.channels", "latency_per_token_s", hue="asic.freq_MHz",
                            filters=["weight_format=bf16"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in axes] == ["gpt2", "gpt2-xl"]  # one panel per model
    assert all(len(line.get_xdata()) == 2 for ax in axes for line in ax.get_lines())  # no zig-zag
    assert "weight_format=bf16" in fig.get_supxlabel()
    assert axes[0].get_xlabel() == "dram.organization.channels (count)"


def test_heatmap_does_not_average_over_models_or_other_axes_and_takes_text_axes():
    frame = _frame()
    with pytest.raises(PimsimError, match="weight_format .*also vary"):
        plots.sweep_heatmap(frame, "dram.channels", "asic.freq_MHz", "latency_per_token_s")
    fig = plots.sweep_heatmap(frame, "dram.channels", "weight_format", "latency_per_token_s",
                              filters=["asic.freq_MHz=100"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    small = panels[0].images[0].get_array()
    big = panels[1].images[0].get_array()
    assert big[0, 0] == pytest.approx(10 * small[0, 0])  # each model its own numbers, not their mean
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["bf16", "ternary"]


def test_pareto_draws_one_front_per_model_with_annotated_points():
    fig = plots.pareto(_frame(), filters=["weight_format=bf16"])
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["gpt2", "gpt2-xl"]
    assert all(any("channels=" in t.get_text() for t in ax.texts) for ax in panels)


def _with(result, schedule: str, busy_s: dict):
    """`result` as if it had run on `schedule` with the parts' busy times `busy_s`."""
    d = result.details
    return dataclasses.replace(result, details=dataclasses.replace(
        d, schedule=schedule, time=dataclasses.replace(d.time, busy_s=busy_s, titles={k: k for k in busy_s})))


def test_breakdown_keeps_two_runs_of_the_same_model_and_hardware_apart():
    from pimsim.run_types import RunSpec
    from pimsim.runs import simulate

    result = simulate(RunSpec(model="gpt2", hw="gddr6-aim.yaml", prompt_len=4, gen_tokens=1))
    run = _with(result, "serial", {"ffn": 1.0, "qkv": 1.0})
    other = _with(result, "overlap", {"ffn": 3.0, "qkv": 1.0})
    fig = plots.breakdown([run, other])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 2 and len(set(labels)) == 2 and "overlap" in labels[1]
    assert sorted({round(p.get_x(), 3) for p in ax.patches}) == [-0.3, 0.7]  # two bars, side by side
    twins = [t.get_text() for t in plots.breakdown([run, run]).axes[0].get_xticklabels()]
    assert twins[0] != twins[1]


def test_compare_shows_speedups_below_one_with_a_1x_line():
    result = {"model": "gpt2", "hw": "gddr6-aim", "rows": [
        {"baseline": "h100", "kind": "roofline", "speedup": 0.25, "energy_efficiency": 3.0},
        {"baseline": "t4", "kind": "roofline", "speedup": 2.0, "energy_efficiency": None}]}
    fig = plots.compare_bars(result)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] < 0.25
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())
    assert any("not measured" in t.get_text() for t in fig.axes[1].texts)


def test_timeline_says_whole_run_when_it_shows_the_whole_run():
    trace = {"traceEvents": [{"ph": "M", "tid": 1, "args": {"name": "ASIC"}},
                             {"ph": "X", "tid": 1, "ts": 0, "dur": 5, "cat": "ffn"},
                             {"ph": "X", "tid": 1, "ts": 5, "dur": 5, "cat": "asic"}]}
    assert plots.timeline(trace).axes[0].get_title().startswith("whole run")
    trace["traceEvents"].append({"ph": "X", "tid": 1, "ts": 3, "dur": 1, "cat": "lm_head"})
    assert plots.timeline(trace).axes[0].get_title().startswith("first token (4.0 of 10.0 us)")


def test_pdf_figures_embed_truetype_fonts_and_size_column_is_a_column_wide(tmp_path):
    plots.set_size("column")
    fig = plots.sweep_lines(_frame(), "dram.channels", "latency_per_token_s", hue="asic.freq_MHz",
                            filters=["weight_format=bf16", "model=gpt2"])
    assert fig.get_size_inches()[0] == pytest.approx(3.5)
    fig.savefig(tmp_path / "f.pdf")
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf


def test_bad_plot_inputs_end_in_one_message(tmp_path, capsys):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    _frame().to_parquet(sweep / "points.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    spec = {"target": "gpt2", "draft": "gpt2", "hw": "gddr6-aim", "tokens": 4, "latency_per_token_s": 1.0}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "list.json").write_text("[1, 2]")
    out = str(tmp_path / "x.png")
    cases = [(["sweep", str(sweep), "--x", "dram.channels", "--y", "nope", "--where", "model=gpt2"],
              "no metric 'nope'"),
             (["sweep", str(tmp_path / "garbage.parquet"), "--x", "a", "--y", "b"], "not a readable points.parquet"),
             (["tokens", str(tmp_path / "spec.json")], "speculative-decoding result"),
             (["compare", str(tmp_path / "list.json")], "not a `pimsim compare --json` result"),
             (["timeline", str(tmp_path / "spec.json")], "not a --timeline trace"),
             (["heatmap", str(sweep), "--x", "dram.channels", "--y", "asic.freq_MHz", "--value", "model",
               "--where", "weight_format=bf16"], "--value model: not a number"),
             (["sweep", str(sweep), "--x", "dram.channels", "--y", "latency_per_token_s",
               "--where", "weight_format=fp8"],
              "no row has weight_format = 'fp8'")]
    for argv, message in cases:
        assert main(["plot", *argv, "--out", out]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_hue_model_draws_the_models_in_one_panel():
    fig = plots.sweep_lines(_frame(), "dram.channels", "latency_per_token_s", hue="model",
                            filters=["weight_format=bf16", "asic.freq_MHz=100"])
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert [line.get_label() for line in ax.get_lines()] == ["model = gpt2", "model = gpt2-xl"]
