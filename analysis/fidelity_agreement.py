"""Fast against cycle fidelity on the bundled decoder cards.

    python analysis/fidelity_agreement.py [--hw gddr6-aim hbm-pim] [--gen-tokens N] [--models ...]
        [--weight-format F] [--set KEY=VALUE ...]

Each model runs at its card's default prompt for N tokens (default: the card's; serial schedule), once with
``fidelity=fast`` (each distinct command stream simulated from an idle memory, expected refresh cost)
and once with ``fidelity=cycle`` (every command through one DRAM state for the whole run). Prints one
row per model and device: both total times, the gap (fast minus cycle, relative to cycle) and both
energies per token; then the largest gap per device. A model that does not fit a device is listed with
pimsim's error. ``--weight-format`` and ``--set`` (config overrides, e.g. ``pim.kv_format=fp8-e4m3``) apply
to every run. Cycle fidelity costs about 0.2-1 s of wall time per token of a 1B-parameter model.
"""

from __future__ import annotations

import argparse
import time

from pimsim.config.loader import parse_override
from pimsim.errors import PimsimError
from pimsim.run_types import RunSpec
from pimsim.runs import simulate

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl",
          "opt-1.3b", "smollm2-135m", "tinyllama-1.1b")
HW = ("gddr6-aim", "hbm-pim")


def compare(model: str, hw: str, gen_tokens: int | None, weight_format: str | None = None,
            overrides: dict | None = None) -> dict:
    spec = dict(model=model, hw=hw, gen_tokens=gen_tokens, weight_format=weight_format, overrides=overrides or {})
    fast = simulate(RunSpec(**spec, fidelity="fast"))
    cycle = simulate(RunSpec(**spec, fidelity="cycle"))
    return {"model": model, "hw": hw, "prompt_len": fast.prompt_len, "tokens": fast.tokens,
            "fast_s": fast.total_time_s, "cycle_s": cycle.total_time_s,
            "gap": fast.total_time_s / cycle.total_time_s - 1,
            "fast_J": fast.energy_per_token_J, "cycle_J": cycle.energy_per_token_J}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", nargs="+", default=list(HW))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--gen-tokens", type=int, default=None, help="tokens to generate (default: each card's)")
    ap.add_argument("--weight-format", default=None, help="block weights' format (default: each card's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (repeatable)")
    args = ap.parse_args(argv)
    overrides = {".".join(parts): value for parts, value in map(parse_override, args.overrides)}
    tokens = "each card's default number of" if args.gen_tokens is None else str(args.gen_tokens)
    extra = "".join(f", {k}={v}" for k, v in ([("weight format", args.weight_format)] if args.weight_format else [])
                    + list(overrides.items()))
    print(f"fast vs cycle fidelity, serial schedule, each card's default prompt, {tokens} tokens{extra}\n")
    print("| model | hw | prompt | tokens | fast ms/token | cycle ms/token | fast - cycle "
          "| energy/token fast / cycle (mJ) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst: dict[str, tuple[float, str]] = {}
    for hw in args.hw:
        for model in args.models:
            t0 = time.perf_counter()
            try:
                r = compare(model, hw, args.gen_tokens, args.weight_format, overrides)
            except PimsimError as e:
                first = str(e).strip().splitlines()[0]
                print(f"| {model} | {hw} | | | | | does not run: {first} | | |", flush=True)
                continue
            wall = time.perf_counter() - t0
            print(f"| {model} | {hw} | {r['prompt_len']} | {r['tokens']} | {1e3 * r['fast_s'] / r['tokens']:.4f} "
                  f"| {1e3 * r['cycle_s'] / r['tokens']:.4f} | {100 * r['gap']:+.2f}% "
                  f"| {1e3 * r['fast_J']:.3f} / {1e3 * r['cycle_J']:.3f} | {wall:.0f} |", flush=True)
            if hw not in worst or abs(r["gap"]) > abs(worst[hw][0]):
                worst[hw] = (r["gap"], model)
    print()
    for hw, (gap, model) in worst.items():
        print(f"largest gap on {hw}: {100 * gap:+.2f}% ({model})")


if __name__ == "__main__":
    main()
