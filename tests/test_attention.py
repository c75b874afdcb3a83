"""Attention over a KV cache in the banks: layout, append cost, and results against numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compiled

from pimsim.cli import main
from pimsim.dram.checker import check, issued_from_record
from pimsim.dram.kernel import run_commands
from pimsim.errors import PimsimError
from pimsim.kernels import attention
from pimsim.mapper.attention import append_program, kv_layout
from pimsim.mapper.placement import Geometry

PIM = ("gddr6-aim.yaml", "hbm-pim.yaml")


@pytest.mark.parametrize("name", PIM)
def test_scores_and_outputs_match_numpy_as_the_cache_grows(name):
    hw = compiled(name).hw
    eps = 2.0**-24 if hw.pim.accumulator_format == "fp32" else 2.0**-11
    for context in (1, 2, 17, 40):
        s = attention(hw, heads=3, head_dim=40, context=context, max_context=48, functional=True, seed=context)
        f = s["functional"]
        assert f["scores"].shape == (context, 3) and f["context"].shape == (3, 40)
        # within the accumulation error: a few roundings per addition, relative to the sum of |products|
        assert np.abs(f["scores"] - f["want_scores"]).max() <= eps * 64 * 40 * 4
        assert np.abs(f["context"] - f["want_context"]).max() <= eps * 64 * max(context, 16) * 4


def test_append_writes_exactly_what_the_layout_says():
    c = compiled("gddr6-aim.yaml")
    g = Geometry.of(c.hw)
    heads, dim, tmax = 4, 64, 100
    layout = kv_layout(g, heads, dim, tmax)
    prog = append_program(c, layout, 37)  # timing only: zero payloads
    names = np.array(c.command_names)[prog.cmd]
    # K: one row of heads x dim values = 16 column accesses; V: one masked write per (head, dimension)
    assert (names == "WR").sum() == heads * dim // 16 + heads * dim
    # K: the token's 256 values sit in one DRAM row; V: each dimension's row holds all 4 heads x 112
    # reserved tokens (448 of 1024 elements), so the token's values need one row per dimension, in each
    # of the two channel groups V^T (64 rows for 128 slots) is split over
    assert layout.v.split == 2 and layout.k.split == 1
    assert (names == "ACT").sum() == 1 + 2 * dim
    unsplit = compiled("gddr6-aim.yaml", "mapping.channel_split=never")
    prog_off = append_program(unsplit, kv_layout(Geometry.of(unsplit.hw), heads, dim, tmax), 37)
    assert (np.array(c.command_names)[prog_off.cmd] == "ACT").sum() == 1 + dim
    _, _, rec, err = run_commands(c.spec, prog.cmd, prog.node, prog.row, prog.column,
                                  np.zeros(len(prog), np.int64), record=True)
    assert err[0] == 0 and check(c, issued_from_record(c, rec)) == []


def test_append_cost_is_flat_and_reading_cost_grows_with_the_context():
    hw = compiled("gddr6-aim.yaml").hw
    runs = [attention(hw, 12, 64, t, 1024) for t in (64, 256, 1024)]
    appends = [r["phases"]["append"]["cycles"] for r in runs]
    assert max(appends) - min(appends) <= 0.1 * max(appends)  # same rows to write, wherever the token
    scores = [r["phases"]["scores"]["cycles"] for r in runs]
    contexts = [r["phases"]["context"]["cycles"] for r in runs]
    assert scores[0] < scores[1] < scores[2] and contexts[0] < contexts[1] < contexts[2]


def test_a_context_beyond_the_reservation_is_an_error(capsys):
    with pytest.raises(PimsimError, match="between 1 and the reserved"):
        attention(compiled("gddr6-aim.yaml").hw, 2, 64, 10, 5)
    assert main(["kernel", "attention", "--hw", "gddr6-aim.yaml", "--heads", "2", "--head-dim", "64",
                 "--context", "10", "--max-context", "5"]) == 2
    assert "reserved" in capsys.readouterr().err


def test_attention_cli_json(capsys):
    assert main(["kernel", "attention", "--hw", "hbm-pim.yaml", "--heads", "4", "--head-dim", "32", "--context",
                 "20", "--functional", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["phases"]) == {"append", "scores", "context"}
    assert out["cycles"] == sum(p["cycles"] for p in out["phases"].values())
    assert out["functional"]["scores_max_abs_error"] < 0.05
