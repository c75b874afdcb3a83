"""`pimsim plot`: every kind of figure renders from the results pimsim writes, and bad inputs are clear."""

from __future__ import annotations

import pytest

from pimsim.cli import main


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    assert main(["sweep", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--grid", "dram.channels=4,8",
                 "--grid", "asic.freq_MHz=100,1000", "--gen-tokens", "1", "--prompt-len", "4",
                 "--out", str(d / "sw"), "--quiet"]) == 0
    for name, hw in (("a", "gddr6-aim.yaml"), ("b", "hbm-pim.yaml")):
        assert main(["run", "--hw", hw, "--model", "gpt2", "--gen-tokens", "3", "--prompt-len", "8",
                     "--json", str(d / f"{name}.json"), "--quiet"]) == 0
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "8",
                 "--timeline", str(d / "tl.json"), "--quiet"]) == 0
    assert main(["compare", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--baseline", "t4",
                 "--baseline", "xeon-gold-6154", "--gen-tokens", "2", "--json", str(d / "c.json")]) == 0
    return d


@pytest.mark.parametrize("argv", [
    ["sweep", "sw", "--x", "dram.channels", "--y", "latency_per_token_s", "--hue", "asic.freq_MHz", "--logx"],
    ["heatmap", "sw", "--x", "dram.channels", "--y", "asic.freq_MHz", "--value", "energy_per_token_J"],
    ["pareto", "sw/points.parquet"],
    ["breakdown", "a.json", "b.json"],
    ["compare", "c.json"],
    ["tokens", "a.json"],
    ["timeline", "tl.json"],
])
@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_every_figure_renders(results, capsys, argv, suffix):
    out = results / f"{argv[0]}{suffix}"
    inputs = [str(results / a) if a.endswith((".json", ".parquet")) or a == "sw" else a for a in argv[1:]]
    assert main(["plot", argv[0], *inputs, "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 5000
    head = out.read_bytes()[:8]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else head.startswith(b"%PDF")


def test_bad_plot_inputs_are_clear(results, capsys):
    assert main(["plot", "sweep", str(results / "sw"), "--x", "nope", "--y", "latency_per_token_s",
                 "--out", str(results / "x.png")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert main(["plot", "tokens", str(results / "missing.json"), "--out", str(results / "x.png")]) == 2
    assert "not a readable JSON" in capsys.readouterr().err
    assert main(["plot", "pareto", str(results), "--out", str(results / "x.png")]) == 2
    assert "no points.parquet" in capsys.readouterr().err
    assert main(["plot", "tokens", str(results / "a.json"), "--out", str(results / "x.txt")]) == 2
