"""Fast against cycle fidelity on the bundled model cards.

    python analysis/fidelity_agreement.py [--hw gddr6-aim hbm-pim] [--prompt-len P] [--gen-tokens N]
        [--models ...] [--weight-format F] [--set KEY=VALUE ...]

Each model runs at its card's default prompt for N tokens (default: the card's; serial schedule), or at
``--prompt-len``, once with ``fidelity=fast`` (each distinct command stream simulated from an idle memory,
refreshes charged where the refresh clock puts them) and once with ``fidelity=cycle`` (every command
through one DRAM state for the whole run). Prints one row per model and device: both total times, the gap
(fast minus cycle, relative to cycle), both energies per token and the CPU seconds the pair took; then
the largest gap per device. ``--models`` defaults to every bundled model card (speculative-decoding
cards are runs of two of them, left out); one that does not run on a device (too large for its memory
or its ASIC buffer) is listed with pimsim's error. ``--weight-format`` and ``--set`` (config overrides,
e.g. ``pim.kv_format=fp8-e4m3``) apply to every run. Cycle fidelity costs about 0.2-1 s of CPU time per
token of a 1B-parameter model.
"""

from __future__ import annotations

import argparse
import time

import yaml

from pimsim.config.loader import parse_override
from pimsim.errors import PimsimError
from pimsim.resources import bundled_dir
from pimsim.run_types import RunSpec
from pimsim.runs import simulate

HW = ("gddr6-aim", "hbm-pim")


def bundled_models() -> list[str]:
    """Every bundled model card, by name (a spec-dec card names two of them: it is left out)."""
    names = []
    for path in sorted(bundled_dir("workloads").glob("*.yaml")):
        card = yaml.safe_load(path.read_text())
        if isinstance(card, dict) and card.get("kind") != "spec-dec":
            names.append(path.stem)
    return names


def compare(model: str, hw: str, gen_tokens: int | None, weight_format: str | None = None,
            overrides: dict | None = None, prompt_len: int | None = None) -> dict:
    spec = dict(model=model, hw=hw, prompt_len=prompt_len, gen_tokens=gen_tokens, weight_format=weight_format,
                overrides=overrides or {})
    fast = simulate(RunSpec(**spec, fidelity="fast"))
    cycle = simulate(RunSpec(**spec, fidelity="cycle"))
    return {"model": model, "hw": hw, "prompt_len": fast.prompt_len, "tokens": fast.tokens,
            "fast_s": fast.total_time_s, "cycle_s": cycle.total_time_s,
            "gap": fast.total_time_s / cycle.total_time_s - 1,
            "fast_J": fast.energy_per_token_J, "cycle_J": cycle.energy_per_token_J}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", nargs="+", default=list(HW))
    ap.add_argument("--models", nargs="+", default=None, help="model cards (default: every bundled one)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default: each card's)")
    ap.add_argument("--gen-tokens", type=int, default=None, help="tokens to generate (default: each card's)")
    ap.add_argument("--weight-format", default=None, help="block weights' format (default: each card's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (repeatable)")
    args = ap.parse_args(argv)
    models = args.models or bundled_models()
    overrides = {".".join(parts): value for parts, value in map(parse_override, args.overrides)}
    tokens = "each card's default number of" if args.gen_tokens is None else str(args.gen_tokens)
    prompt = "each card's default prompt" if args.prompt_len is None else f"prompt {args.prompt_len}"
    extra = "".join(f", {k}={v}" for k, v in ([("weight format", args.weight_format)] if args.weight_format else [])
                    + list(overrides.items()))
    print(f"fast vs cycle fidelity, serial schedule, {prompt}, {tokens} tokens{extra}\n")
    print("| model | hw | prompt | tokens | fast ms/token | cycle ms/token | fast - cycle "
          "| energy/token fast / cycle (mJ) | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst: dict[str, tuple[float, str]] = {}
    for hw in args.hw:
        for model in models:
            cpu = time.process_time()
            try:
                r = compare(model, hw, args.gen_tokens, args.weight_format, overrides, args.prompt_len)
            except PimsimError as e:
                first = str(e).strip().splitlines()[0]
                print(f"| {model} | {hw} | | | | | does not run: {first} | | |", flush=True)
                continue
            cpu = time.process_time() - cpu
            print(f"| {model} | {hw} | {r['prompt_len']} | {r['tokens']} | {1e3 * r['fast_s'] / r['tokens']:.4f} "
                  f"| {1e3 * r['cycle_s'] / r['tokens']:.4f} | {100 * r['gap']:+.2f}% "
                  f"| {1e3 * r['fast_J']:.3f} / {1e3 * r['cycle_J']:.3f} | {cpu:.0f} |", flush=True)
            if hw not in worst or abs(r["gap"]) > abs(worst[hw][0]):
                worst[hw] = (r["gap"], model)
    print()
    for hw, (gap, model) in worst.items():
        print(f"largest gap on {hw}: {100 * gap:+.2f}% ({model})")


if __name__ == "__main__":
    main()
