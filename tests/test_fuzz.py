"""Fuzzing the inputs people type: model cards, sweep files and command lines end in a clear message
and a non-zero exit, never a traceback. A longer run of each is behind `-m slow`."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimsim.cli import main
from pimsim.errors import ConfigError, PimsimError
from pimsim.sweep.points import load_sweep_file
from pimsim.workloads.cards import load_card

GOOD_CARD = {"version": 1, "name": "fuzz", "hf": {"model_type": "gpt2", "config": {"n_layer": 2, "n_embd": 64,
             "n_head": 4}}, "context": 64, "defaults": {"prompt_len": 4, "gen_tokens": 2}}
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                            st.integers(), max_size=2))


def mutate(base: dict, draw) -> dict:
    """Replace, delete or add one key somewhere in a nested mapping."""
    out = {k: (mutate(v, draw) if isinstance(v, dict) and draw(st.booleans()) else v) for k, v in base.items()}
    action = draw(st.sampled_from(["replace", "delete", "add", "keep"]))
    keys = list(out)
    if action == "replace" and keys:
        out[draw(st.sampled_from(keys))] = draw(JUNK)
    elif action == "delete" and keys:
        out.pop(draw(st.sampled_from(keys)))
    elif action == "add":
        out[draw(st.text(min_size=1, max_size=6))] = draw(JUNK)
    return out


def _settings(n):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings(60)
@given(data=st.data())
def test_mutated_model_cards_load_or_fail_clearly(tmp_path, data):
    card = mutate(GOOD_CARD, data.draw)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    try:
        load_card(path)
    except ConfigError as exc:
        assert exc.problems and str(exc).startswith(str(path))
    except PimsimError:
        pass


@_settings(40)
@given(data=st.data())
def test_mutated_sweep_files_load_or_fail_clearly(tmp_path, data):
    good = {"hw": "gddr6-aim.yaml", "models": ["gpt2"], "run": {"gen_tokens": 1}, "grid": {"asic.lanes": [64]},
            "constraints": ["asic.lanes > 1"]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(mutate(good, data.draw)))
    try:
        sweep = load_sweep_file(path)
        sweep.points()
    except PimsimError:
        pass


WORDS = ["run", "sweep", "plot", "compare", "baseline", "validate", "config", "show", "model", "list", "trace",
         "kernel", "gemv", "--hw", "gddr6-aim.yaml", "nope.yaml", "--model", "gpt2", "gpt7", "--gen-tokens",
         "--prompt-len", "0", "-1", "1", "99999999999", "x", "--set", "asic.lanes=0", "dram.timing.nCL=-3",
         "--fidelity", "cycle", "fast", "--schedule", "eager", "--json", "-", "--out", "/nonexistent/dir/f.png",
         "--rows", "--cols", "--baseline", "t4", "--grid", "asic.lanes=a,b", "--weights", "--quiet", "--x", "=", ""]


@_settings(60)
@given(argv=st.lists(st.sampled_from(WORDS), min_size=1, max_size=7))
def test_nonsense_command_lines_exit_cleanly(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
            rc = exc.code
    assert rc in (0, 1, 2), argv
    assert "Traceback" not in err.getvalue()
    if rc == 2:
        assert err.getvalue().strip(), argv  # one message says what was wrong


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(WORDS), min_size=1, max_size=9))
def test_nonsense_command_lines_exit_cleanly_long(argv):
    test_nonsense_command_lines_exit_cleanly.hypothesis.inner_test(argv)


@_settings(60)
@given(data=st.data())
def test_mutated_hardware_files_validate_or_fail_clearly(tmp_path, data):
    from pimsim.config import load_hardware
    from pimsim.config.loader import load_raw

    _, raw = load_raw("gddr6-aim.yaml")
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(mutate(raw, data.draw)))
    try:
        hw = load_hardware(str(path))
    except ConfigError as exc:
        assert exc.problems
        return
    except PimsimError:
        return
    # whatever validation lets through must compile and time a small GEMV without a traceback
    from pimsim.kernels import gemv

    try:
        gemv(hw, 64, 64)
        for fmt in hw.pim.formats if hw.pim else ():  # and in every extra weight format it lets through
            gemv(hw.with_weight_format(fmt), 64, 64)
    except PimsimError:
        pass
