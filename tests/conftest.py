"""Shared helpers: compiled bundled configs and a tiny language for writing command streams."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import yaml

from pimsim.config import load_hardware
from pimsim.dram.compile import Compiled, compile_standard
from pimsim.dram.kernel import run_commands
from pimsim.dram.standard import Level
from pimsim.dram.timing_state import K_REPEAT


def _one_config_per_standard() -> tuple[str, ...]:
    """The first bundled hardware file (by name) of every standard pimsim knows, so that a new standard's
    constraints are tested as soon as it has a bundled config (and a standard without one fails here)."""
    from pimsim.dram.standards import STANDARDS
    from pimsim.resources import bundled_dir

    first: dict[str, str] = {}
    for path in sorted(bundled_dir("hwconfigs").glob("*.yaml")):
        text = yaml.safe_load(path.read_text())
        if "extends" in text:  # a system built on another file (cent, aimx): its standard is that file's
            continue
        first.setdefault(text["dram"]["standard"], path.name)
    missing = sorted(set(STANDARDS) - set(first))
    assert not missing, f"standards without a bundled hardware config: {missing}"
    return tuple(first[name] for name in STANDARDS)


BUNDLED = _one_config_per_standard()


@lru_cache(maxsize=None)
def compiled(name: str, *overrides: str) -> Compiled:
    return compile_standard(load_hardware(name, list(overrides)))


def no_refresh(name: str) -> Compiled:
    return compiled(name, "dram.refresh.enabled=false")


def without_fast_path(c: Compiled) -> Compiled:
    """The same compiled config with the repeated-command fast path disabled (every command slow)."""
    cmds = c.spec.cmds.copy()
    cmds[:, K_REPEAT] = -1
    return dataclasses.replace(c, spec=c.spec._replace(cmds=cmds))


def node_for(c: Compiled, command: str, channel: int = 0, bg: int = 0, bank: int = 0) -> int:
    scope = c.standard.command(command).scope
    if scope == Level.BANK:
        return int(c.bank_node(channel, 0, bg, bank))
    if scope == Level.RANK:
        return int(c.rank_node(channel))
    return int(c.channel_node(channel))


def stream(c: Compiled, steps):
    """steps: (command, dict(channel=, bg=, bank=, row=, col=, at=)) tuples -> kernel arrays."""
    ids = {n: i for i, n in enumerate(c.command_names)}
    cmd, node, row, col, tmin = [], [], [], [], []
    for name, kw in steps:
        cmd.append(ids[name])
        node.append(node_for(c, name, kw.get("channel", 0), kw.get("bg", 0), kw.get("bank", 0)))
        row.append(kw.get("row", -1))
        col.append(kw.get("col", -1))
        tmin.append(kw.get("at", 0))
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    return a(cmd), a(node), a(row), a(col), a(tmin)


def issue(c: Compiled, steps, record: bool = False):
    """Run a stream; returns (issue cycles, state, record). Fails the test on a kernel error."""
    st, issue_at, rec, err = run_commands(c.spec, *stream(c, steps), record=record)
    assert err[0] == 0, f"kernel error {err}"
    return issue_at, st, rec


def S(command: str, **kw):
    return (command, kw)


@pytest.fixture(params=BUNDLED)
def bundled_name(request):
    return request.param


# tiny decoders for engine and tracer tests: real transformers models, traced in a fraction of a second
def write_card(tmp_path, name, model_type, config, context=64, extra=""):
    cfg = ", ".join(f"{k}: {v}" for k, v in config.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\nhf:\n  model_type: {model_type}\n  config: {{{cfg}}}\n"
                    f"context: {context}\ndefaults: {{prompt_len: 8, gen_tokens: 4}}\n{extra}")
    return path


TINY_GPT2 = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=500,
                 activation_function="gelu_pytorch_tanh")
TINY_LLAMA = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=300, max_position_embeddings=64, tie_word_embeddings="false")
