"""PIM-GPT's headline table, recomputed: speed-up and energy efficiency of the gddr6-aim system over
the paper's GPU (NVIDIA T4) and CPU (Xeon Gold 6154), for its 8 models.

    python analysis/pimgpt_headline.py [--prompt-len 64] [--gen-tokens 16]

The baselines here are rooflines (the best those devices could do: bytes over bandwidth, plus one
kernel launch per operator, energy = spec power x time) and, where a measured record of the same model
is in ``analysis/records/`` (``pimsim baseline ... --out``), the measured run. The paper measured real
devices through a framework; a roofline is the kindest possible baseline, so pimsim's ratios against it
are lower bounds on what the paper's method would give. Paper ranges (npj Unconv. Comput. 2024):
41-137x faster and 123-383x more energy-efficient than the T4; 631-1074x and 320-602x against the CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pimsim.baseline.compare import estimate_energy
from pimsim.baseline.devices import load_device
from pimsim.baseline.roofline import roofline
from pimsim.runs import run_model
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl")
PAPER = {"t4": ((41, 137), (123, 383)), "xeon-gold-6154": ((631, 1074), (320, 602))}
RECORDS = Path(__file__).resolve().parent / "records"


def records_for(model: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(RECORDS.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("model") == model:
            out.append((path.stem, record))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=16)
    args = ap.parse_args()
    devices = {name: load_device(name) for name in PAPER}
    print(f"gddr6-aim (serial, fast) vs rooflines, prompt {args.prompt_len}, {args.gen_tokens} tokens\n")
    print(f"{'model':<13}{'PIM ms':>8}{'PIM mJ':>8}{'T4 ms':>8}{'x T4':>7}{'E x T4':>8}"
          f"{'Xeon ms':>9}{'x Xeon':>8}{'E x Xeon':>10}")
    ratios = {name: ([], []) for name in PAPER}
    for model in MODELS:
        card = load_card(model)
        pim = run_model("gddr6-aim.yaml", card, args.prompt_len, args.gen_tokens)
        graph = traced_graph(card)
        t, e = pim["latency_per_token_s"], pim["energy_per_token_J"]
        row = f"{model:<13}{t * 1e3:>8.3f}{e * 1e3:>8.2f}"
        for name, spec in devices.items():
            base = roofline(spec, graph, args.prompt_len, args.gen_tokens)
            speed, eff = base["latency_per_token_s"] / t, base["energy_per_token_J"] / e
            ratios[name][0].append(speed)
            ratios[name][1].append(eff)
            row += f"{base['latency_per_token_s'] * 1e3:>{8 if name == 't4' else 9}.3f}{speed:>7.1f}x" \
                   f"{eff:>{7 if name == 't4' else 9}.1f}x"
        print(row)
    print()
    for name, (speeds, effs) in ratios.items():
        (ps, pe) = PAPER[name]
        print(f"{name:<15} roofline speed-up {min(speeds):.1f}-{max(speeds):.1f}x (paper, measured: {ps[0]}-{ps[1]}x); "
              f"energy efficiency {min(effs):.0f}-{max(effs):.0f}x (paper: {pe[0]}-{pe[1]}x)")
    print("\nmeasured records (analysis/records):")
    for model in MODELS:
        for stem, record in records_for(model):
            pim = run_model("gddr6-aim.yaml", model, record["prompt_len"], record["gen_tokens"])
            energy = record["energy_per_token_J"]
            kind = record["energy_kind"]
            if energy is None:
                energy, kind = estimate_energy(record)
            where = record["host"].get("gpu") or record["host"]["cpu"]
            print(f"  {stem:<26} {where[:28]:<28} {record['latency_per_token_s'] * 1e3:9.3f} ms/token -> "
                  f"{record['latency_per_token_s'] / pim['latency_per_token_s']:7.1f}x; "
                  f"{energy * 1e3:9.2f} mJ/token -> {energy / pim['energy_per_token_J']:7.1f}x ({kind})")


if __name__ == "__main__":
    main()
