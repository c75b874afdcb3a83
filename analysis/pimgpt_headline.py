"""PIM-GPT's headline table, recomputed: speed-up and energy efficiency of the gddr6-aim system over the
paper's GPU (NVIDIA T4) and CPU (Xeon Gold 6154), for its 8 models, with every number labelled.

    python analysis/pimgpt_headline.py [--prompt-len 64] [--gen-tokens 16]

Prints two Markdown tables (the README's, verbatim):

1. the 8 models against the T4 and the Xeon socket as **roofline bounds** (bytes over bandwidth plus one
   launch per operator; energy = spec power x time: 70 W, 200 W) - the kindest baselines those devices
   allow, not a reproduction of the paper's measured runs;
2. every **measured** record in ``analysis/records/`` (``pimsim baseline --method ... --out``), each row
   labelled with its method: ``paper`` (eager HF decode, batch 1, fp32 on one CPU core charged one core's
   power), ``compiled`` (static KV cache + torch.compile, the stronger baseline) or ``eager`` (custom).

Beside each speed-up and energy-efficiency ratio: baseline power / PIM power (= energy efficiency /
speed-up) and the ratio the paper's own ranges imply (GPU 2.8-3.0, CPU 0.51-0.56, REFERENCE.md section 3b),
so a reader sees why the energy figures differ: a whole 200 W socket against ~10 W of PIM is a power ratio
near 20, where the paper's CPU figures imply about 0.5. PIM figures are simulated (gddr6-aim, serial,
fast fidelity); the paper's are its journal ranges over its 8 models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pimsim.baseline.compare import (
    PAPER,
    PAPER_SOURCE,
    comparison_row,
    measured_baseline,
    paper_power_ratio,
    pim_figures,
    roofline_baseline,
)
from pimsim.run_types import RunSpec
from pimsim.runs import simulate
from pimsim.workloads.cards import load_card

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl")
ROOFLINES = {"t4": "gpu", "xeon-gold-6154": "cpu"}  # the paper's two baselines, as device descriptions
RECORDS = Path(__file__).resolve().parent / "records"
HW = "gddr6-aim.yaml"


def records() -> list[Path]:
    return sorted(RECORDS.glob("*.json"))


def _pim(cache: dict, card, prompt_len: int, gen_tokens: int):
    key = (card.name, prompt_len, gen_tokens)
    if key not in cache:
        spec = RunSpec(model=card.name, hw=HW, prompt_len=prompt_len, gen_tokens=gen_tokens)
        cache[key] = pim_figures(simulate(spec))
    return cache[key]


def _x(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}x"


def _paper(kind: str) -> str:
    paper = PAPER[kind]
    lo, hi = paper_power_ratio(kind)
    return (f"{paper['speedup'][0]:.0f}-{paper['speedup'][1]:.0f}x / {paper['energy_efficiency'][0]:.0f}-"
            f"{paper['energy_efficiency'][1]:.0f}x / {lo:.2f}-{hi:.2f}x")


def roofline_table(prompt_len: int, gen_tokens: int, cache: dict) -> dict:
    print(f"Table 1. gddr6-aim (simulated: serial, fast) against roofline bounds, prompt {prompt_len}, "
          f"{gen_tokens} tokens. Each device: speed-up / energy efficiency / W ratio (baseline power / PIM power).\n")
    print("| model | PIM ms/token (simulated) | PIM mJ/token | PIM W | T4 roofline bound (70 W) | "
          "Xeon socket roofline bound (200 W) |")
    print("|---|---|---|---|---|---|")
    ranges = {name: {"speedup": [], "energy_efficiency": [], "power_ratio": []} for name in ROOFLINES}
    for model in MODELS:
        card = load_card(model)
        pim = _pim(cache, card, prompt_len, gen_tokens)
        cells = []
        for name in ROOFLINES:
            row = comparison_row(roofline_baseline(name, card, prompt_len, gen_tokens), pim)
            for key in ranges[name]:
                ranges[name][key].append(row[key])
            cells.append(f"{_x(row['speedup'])} / {_x(row['energy_efficiency'], 0)} / {_x(row['power_ratio'], 1)}")
            pim_power = row["pim_power_W"]
        print(f"| {model} | {pim.latency_per_token_s * 1e3:.3f} | {pim.energy_per_token_J * 1e3:.2f} | "
              f"{pim_power:.1f} | {cells[0]} | {cells[1]} |")
    print("| **range, roofline bound** | | | | "
          + " | ".join(f"{min(r['speedup']):.1f}-{max(r['speedup']):.1f}x / {min(r['energy_efficiency']):.0f}-"
                       f"{max(r['energy_efficiency']):.0f}x / {min(r['power_ratio']):.1f}-{max(r['power_ratio']):.1f}x"
                       for r in ranges.values()) + " |")
    print(f"| **paper (measured T4, Xeon)** | | | | {_paper('gpu')} | {_paper('cpu')} |")
    print(f"\npaper = {PAPER_SOURCE}; its W ratio is its energy-efficiency range / its speed-up range.\n")
    return ranges


def measured_table(cache: dict) -> list[dict]:
    print("Table 2. Measured baselines (analysis/records/) against gddr6-aim (simulated) at each record's prompt "
          "and token count. Baseline figures measured (energy: measured counter, or estimate as labelled); "
          "paper = its range for the same kind of device.\n")
    print("| record | method | baseline ms/token (measured: wall median; process CPU median) | speed-up (wall; CPU) | "
          "baseline mJ/token | energy eff. | baseline W / PIM W | W ratio | paper: speed-up / energy eff. / W ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    notes = {}
    for path in records():
        card = load_card(_model_of(path))
        base = measured_baseline(path, card)
        row = comparison_row(base, _pim(cache, card, base.prompt_len, base.gen_tokens))
        rows.append(row)
        energy_kind = row["baseline_energy_kind"].split(":", 1)[0]
        notes.setdefault(row["baseline_energy_kind"], len(notes) + 1)
        energy = row["baseline_energy_per_token_J"]
        cpu_time = json.loads(path.read_text()).get("cpu_time_per_token_s")  # absent from records before it was kept
        wall = f"{base.latency_per_token_s * 1e3:.2f}" + ("" if cpu_time is None else f"; {cpu_time * 1e3:.2f}")
        speed = _x(row["speedup"])
        if cpu_time is not None:
            speed += f"; {_x(cpu_time / row['pim_latency_per_token_s'])}"
        print(f"| {path.stem} | {base.label.removeprefix('measured, ')} | {wall} | "
              f"{speed} | {'-' if energy is None else f'{energy * 1e3:.1f}'} ({energy_kind} "
              f"[{notes[row['baseline_energy_kind']]}]) | {_x(row['energy_efficiency'])} | "
              f"{_w(row['baseline_power_W'])} / {_w(row['pim_power_W'])} | {_x(row['power_ratio'], 2)} | "
              f"{_paper(base.device_kind)} |")
    print()
    for text, n in notes.items():
        print(f"[{n}] {text}")
    print("\nWall-clock medians are what the ratios use. The process CPU time per token leaves out the time a run "
          "waited for a core: where the two differ, the machine was loaded, and an unloaded run would be near the "
          "CPU time (the speed-up after the semicolon).")
    return rows


def _w(value):
    return "-" if value is None else f"{value:.1f}"


def _model_of(path: Path) -> str:
    return json.loads(path.read_text())["model"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=16)
    args = ap.parse_args()
    cache: dict = {}
    roofline_table(args.prompt_len, args.gen_tokens, cache)
    measured_table(cache)


if __name__ == "__main__":
    main()
