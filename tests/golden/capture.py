"""Golden outputs of pimsim runs, to prove a refactor preserves behaviour byte for byte.

    python tests/golden/capture.py            # write tests/golden/*.json from the current code
    python tests/golden/capture.py --check    # recompute and compare (exit 1 on any difference)
    python tests/golden/capture.py --check --only cheap

Each case is one run through the Python API with its host (wall-clock) keys dropped, written as
canonical JSON (sorted keys, floats by repr), so two runs of the same code give the same bytes. The
per-token latency list is kept (it is short: 2 tokens). ``tests/test_golden.py`` recomputes the cheap
cases in the default test run and all of them under ``-m slow``.

Graphs are traced afresh into a private cache (:func:`private_trace_cache`): the shared one in
``~/.cache/pimsim/graphs`` may hold graphs another checkout's tracer wrote under the same key, and a
graph's identity is part of every ``config_hash``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent
HOST_KEYS = {"host", "wall_s", "_timeline"}
LIBRARY_VERSION_KEYS = ("torch", "transformers")  # as pimsim.workloads.opgraph leaves them out of hashes
SHORT = {"prompt_len": 16, "gen_tokens": 2}
PIM_CONFIGS = ("gddr6-aim", "hbm-pim")
# cards that are decoder or encoder-decoder models (the spec-dec cards are runs, listed below)
SPEC_CARDS = {"gpt2-large-pearl-gpt2", "gpt2-xl-spec-gpt2", "smollm2-self-spec"}
# too large for a memory at any format the card allows: they raise a clear error, captured as such
CHEAP = {"fast-gddr6-aim-gpt2", "fast-hbm-pim-gpt2-ternary", "cycle-gddr6-aim-gpt2", "overlap-hbm-pim-gpt2",
         "specdec-vanilla", "encdec-bart-base-gddr6-aim", "sweep-rows"}


@contextmanager
def private_trace_cache(directory: str | None = None):
    """Trace graphs into `directory` (a fresh temporary one by default) instead of the shared cache."""
    from pimsim.workloads import tracer

    with tempfile.TemporaryDirectory() as tmp:
        saved = tracer.cache_dir
        tracer.cache_dir = lambda: Path(directory or tmp)
        try:
            yield
        finally:
            tracer.cache_dir = saved


def _strip(value):
    """What a golden holds: the run's figures, without wall-clock times (``host``) and without the
    versions of the libraries that traced the graph (``traced_with``'s torch and transformers: the
    results and the config hash do not depend on them, so a CI install of a newer torch must pass)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if k not in HOST_KEYS and not (k in LIBRARY_VERSION_KEYS and "tracer" in value)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def canonical(value) -> str:
    return json.dumps(_strip(value), sort_keys=True, indent=1, default=str) + "\n"


def _cards() -> list[str]:
    from pimsim.resources import bundled_dir

    return sorted(p.stem for p in bundled_dir("workloads").glob("*.yaml") if p.stem not in SPEC_CARDS)


def _run(hw: str, model: str, **options) -> dict:
    from pimsim.errors import PimsimError
    from pimsim.runs import run_model

    try:
        return run_model(f"{hw}.yaml", model, **{**SHORT, **options})
    except PimsimError as exc:  # a model that does not fit is an answer too
        return {"error": str(exc)}


def _specdec(text: str) -> dict:
    from pimsim.config.loader import load_hardware
    from pimsim.runs import run_specdec
    from pimsim.workloads.specdec import parse_spec

    return run_specdec(load_hardware("gddr6-aim.yaml", []), parse_spec(text), 16, 6)


def _sweep_rows() -> list[dict]:
    from pimsim.sweep.points import Sweep
    from pimsim.sweep.runner import run_point

    sweep = Sweep("gddr6-aim.yaml", ["gpt2"], dict(SHORT),
                  grid={"asic.freq_MHz": [500, 1000], "weight_format": ["bf16", "ternary"]})
    return [run_point(sweep.hw, p, sweep.run) for p in sweep.points()]


def cases() -> dict:
    """name -> a function computing that case's result."""
    out = {}
    for hw in PIM_CONFIGS:
        for card in _cards():
            out[f"fast-{hw}-{card}"] = lambda hw=hw, card=card: _run(hw, card)
    for hw in PIM_CONFIGS:
        for card in ("gpt2", "smollm2-135m", "gpt2-ternary"):
            out[f"cycle-{hw}-{card}"] = lambda hw=hw, card=card: _run(hw, card, fidelity="cycle")
            out[f"overlap-{hw}-{card}"] = lambda hw=hw, card=card: _run(hw, card, schedule="overlap")
        out[f"overlap-cycle-{hw}-gpt2"] = lambda hw=hw: _run(hw, "gpt2", schedule="overlap", fidelity="cycle")
    out["encdec-bart-base-gddr6-aim"] = lambda: _run("gddr6-aim", "bart-base", source_len=16)
    out["encdec-bart-base-overlap-hbm-pim"] = lambda: _run("hbm-pim", "bart-base", source_len=16, schedule="overlap")
    out["narrow-gpt2-ternary-cycle-gddr6-aim"] = lambda: _run("gddr6-aim", "gpt2-ternary", fidelity="cycle")
    out["specdec-vanilla"] = lambda: _specdec("draft=gpt2,target=gpt2-medium,k=2,alpha=0.8")
    out["specdec-vanilla-group"] = lambda: _specdec("draft=gpt2,target=gpt2-medium,k=3,alpha=0.7,placement=group,"
                                                    "draft_channels=4")
    out["specdec-pearl"] = lambda: _specdec("draft=gpt2,target=gpt2-medium,k=3,alpha=0.8,policy=pearl,"
                                            "placement=group,draft_channels=4")
    out["specdec-asic"] = lambda: _specdec("draft=gpt2,target=gpt2-medium,k=2,alpha=0.8,placement=asic")
    out["sweep-rows"] = _sweep_rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the stored files instead of writing them")
    ap.add_argument("--only", choices=("cheap", "all"), default="all")
    ap.add_argument("-k", default=None, help="only cases whose name contains this")
    args = ap.parse_args(argv)
    bad = []
    with private_trace_cache():
        _write_or_check(args, bad)
    return 1 if bad else 0


def _write_or_check(args, bad: list) -> None:
    for name, compute in cases().items():
        if args.only == "cheap" and name not in CHEAP or args.k and args.k not in name:
            continue
        text = canonical(compute())
        path = HERE / f"{name}.json"
        if args.check:
            same = path.is_file() and path.read_text() == text
            print(f"{'same' if same else 'DIFFERENT':9s} {name}", flush=True)
            if not same:
                bad.append(name)
                path.with_suffix(".new").write_text(text)
        else:
            path.write_text(text)
            print(f"wrote {path.name} ({len(text):,} B)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
