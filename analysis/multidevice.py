"""Several devices: llama-3.1-8b on 1, 2, 4 and 8 CENT devices (tensor parallel and pipeline stages),
llama-3.1-70b on the CENT system, and how many devices each bundled large card needs.

    python analysis/multidevice.py [--out analysis/figures] [--tokens 4]

Prints three tables (scaling, the 70B run, devices needed) and writes ``multidevice-scaling.png``: latency
per token and the communication share against the device count, tp and pp.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pimsim.errors import PimsimError
from pimsim.report import plots
from pimsim.run_details import DecodeRun
from pimsim.run_types import RunSpec
from pimsim.runs import simulate

SCALING_MODEL = "llama-3.1-8b"
SCALING_HW = "cent.yaml"
COUNTS = (1, 2, 4, 8)
FIT_MODELS = ("gemma-2-2b", "phi-3-mini", "gpt-j-6b", "mistral-7b", "qwen2.5-7b", "llama-3.1-8b", "llama-3.1-70b")
FIT_SYSTEMS = ("gddr6-aim.yaml", "hbm-pim.yaml", "cent.yaml")


def run(model: str, hw: str, devices: int, parallel: str | None, tokens: int) -> DecodeRun:
    spec = RunSpec(model=model, hw=hw, prompt_len=64, gen_tokens=tokens, devices=devices,
                   parallel=parallel if devices > 1 else None)
    return simulate(spec).details


def scaling(tokens: int) -> dict[str, list[tuple[int, DecodeRun]]]:
    print(f"{SCALING_MODEL} on {SCALING_HW} (prompt 64, {tokens} tokens, fast fidelity)")
    print(f"{'split':<10}{'devices':>8}{'ms/token':>10}{'speed-up':>10}{'comm %time':>12}{'mJ/token':>10}"
          f"{'comm %energy':>14}")
    one = run(SCALING_MODEL, SCALING_HW, 1, None, tokens)
    base = one.latency.latency_per_token_s
    out: dict[str, list[tuple[int, DecodeRun]]] = {}
    for parallel in ("tp", "pp"):
        rows = out[parallel] = [(1, one)]
        for devices in COUNTS[1:]:
            rows.append((devices, run(SCALING_MODEL, SCALING_HW, devices, parallel, tokens)))
        for devices, r in rows:
            latency_s, system = r.latency.latency_per_token_s, r.system
            print(f"{parallel:<10}{devices:>8}{latency_s * 1e3:>10.3f}"
                  f"{base / latency_s:>10.2f}{100 * (system.communication_share if system else 0):>12.1f}"
                  f"{r.energy_per_token_J * 1e3:>10.2f}"
                  f"{100 * (system.communication_energy_share if system else 0):>14.2f}")
    return out


def big_model(tokens: int) -> None:
    r = run("llama-3.1-70b", SCALING_HW, 32, "tp=8,pp=4", tokens)
    s = r.system
    print(f"\nllama-3.1-70b on {SCALING_HW}, 32 devices (tp=8,pp=4): {r.latency.latency_per_token_s * 1e3:.3f} "
          f"ms/token, communication {s.communication_per_token_s * 1e6:.1f} us/token "
          f"({100 * s.communication_share:.1f}% of the time, {100 * s.communication_energy_share:.2f}% of the energy), "
          f"{r.energy_per_token_J:.3f} J/token")


def devices_needed() -> None:
    from pimsim.config.loader import load_hardware
    from pimsim.system.fit import smallest_plan
    from pimsim.workloads.cards import load_card
    from pimsim.workloads.tracer import traced_graph

    print("\ndevices needed (bf16, KV cache for prompt 64 + 16 tokens): count (split)")
    print(f"{'model':<16}" + "".join(f"{h.removesuffix('.yaml'):>22}" for h in FIT_SYSTEMS))
    for model in FIT_MODELS:
        card = load_card(model)
        cells = []
        try:
            graph = traced_graph(card)
        except PimsimError as exc:
            print(f"{model:<16}  not traced: {str(exc)[:80]}")
            continue
        for hw in FIT_SYSTEMS:
            plan = smallest_plan(load_hardware(hw), graph, card.defaults.prompt_len + card.defaults.gen_tokens)
            cells.append("none" if plan is None else f"{plan.devices} ({plan.text()})")
        print(f"{model:<16}" + "".join(f"{c:>22}" for c in cells))


def figure(results: dict[str, list[tuple[int, DecodeRun]]], out: Path) -> Path:
    plt = plots._plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for parallel, rows in results.items():
        devices = [d for d, _ in rows]
        left.plot(devices, [r.latency.latency_per_token_s * 1e3 for _, r in rows], marker="o", label=parallel)
        right.plot(devices, [100 * (r.system.communication_share if r.system else 0) for _, r in rows],
                   marker="o", label=parallel)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(COUNTS, [str(c) for c in COUNTS])
        ax.set_xlabel(f"devices ({SCALING_HW.removesuffix('.yaml')}, CXL 2.0 x16)")
        ax.legend()
    left.set_ylabel("latency per token (ms)")
    right.set_ylabel("communication share of the time (%)")
    fig.suptitle(f"{SCALING_MODEL}: tensor parallel vs pipeline stages at batch 1")
    path = out / "multidevice-scaling.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "figures")
    ap.add_argument("--tokens", type=int, default=4)
    args = ap.parse_args()
    results = scaling(args.tokens)
    big_model(args.tokens)
    devices_needed()
    print(f"\nfigure: {figure(results, args.out)}")


if __name__ == "__main__":
    main()
