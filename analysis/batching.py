"""Where batching and speculative decoding start to pay on PIM (issue 17): gpt2-medium on gddr6-aim with a
multi-vector MAC datapath (``pim.vectors_per_mac`` m = 1 ... 16; the global buffer holding 16 vectors),
against today's device (one-vector buffer and MAC).

    python analysis/batching.py [--out analysis/figures]

Costs come from :class:`pimsim.step_costs.StepCosts` (fast fidelity, serial schedule): a decode step of
B sequences is the weight GEMVs of B vectors plus each sequence's attention and ASIC work; a
speculative verify step of k + 1 tokens is the GEMVs of k + 1 vectors plus each token's attention, and
the expected time per token is (k x draft step + verify step) / E[tokens per step], E = (1 - alpha^(k+1))
/ (1 - alpha) (gpt2 as the draft, on the same datapath; placement and contention between the two models
left out, as in analysis/specdec.py's sensitivity study).

Energy of the wider datapath: each vector after the first adds ``energy.dram.mac_vector_pJ`` = 384 pJ to a
MACAB: 256 BF16 multiply-adds (16 banks x 16 lanes) at 1.5 pJ (Horowitz, ISSCC 2014, 45 nm), the
arithmetic share of gddr6-aim's MACAB in its own energy notes; the extra accumulators' energy is
assumed negligible beside it. Figure: ``batching.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pimsim.step_costs import StepCosts
from pimsim.workloads.acceptance import expected_tokens_per_step

HW, TARGET, DRAFT = "gddr6-aim.yaml", "gpt2-medium", "gpt2"
CONTEXT = 128  # tokens in each sequence's cache at the timed step
BATCHES = [1, 2, 4, 8, 16]
PER_MAC = [1, 2, 4, 8, 16]
KS, ALPHAS = [1, 2, 4, 8], [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
MAC_VECTOR_PJ = 384.0  # 256 BF16 multiply-adds x 1.5 pJ (Horowitz ISSCC 2014): gddr6-aim's MACAB arithmetic share


def datapaths() -> dict[str, list[str]]:
    """Today's device, then a 16-vector buffer with m vectors per MAC."""
    out = {"today (1-vector buffer, m=1)": []}
    for m in PER_MAC:
        out[f"16-vector buffer, m={m}"] = ["pim.buffer_vectors=16", f"pim.vectors_per_mac={m}",
                                           f"energy.dram.mac_vector_pJ={MAC_VECTOR_PJ}"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("figures")))
    args = ap.parse_args()
    batch_gain, spec_speedup, energy = {}, {}, {}
    print(f"{TARGET} on {HW}, {CONTEXT} tokens of context per sequence; throughput gain = tokens/s of a batch "
          "over tokens/s of one sequence")
    print(f"{'datapath':<30}" + "".join(f"{'B=' + str(b):>9}" for b in BATCHES) + f"{'mJ/token B=16':>15}")
    for name, sets in datapaths().items():
        target = StepCosts(HW, TARGET, max_batch=max(BATCHES), max_context=CONTEXT + max(KS) + 1, overrides=sets)
        draft = StepCosts(HW, DRAFT, max_batch=1, max_context=CONTEXT + max(KS) + 1, overrides=sets)
        one = target.decode_step([CONTEXT])
        gains = {b: b * one.time_s / target.decode_step([CONTEXT] * b).time_s for b in BATCHES}
        batch_gain[name] = gains
        big = target.decode_step([CONTEXT] * max(BATCHES))
        energy[name] = big.energy_J / max(BATCHES)
        print(f"{name:<30}" + "".join(f"{gains[b]:>8.2f}x" for b in BATCHES) + f"{energy[name] * 1e3:>15.2f}")
        d = draft.decode_step([CONTEXT]).time_s
        speed = {}
        for k in KS:
            verify = target.gemvs(k + 1) + sum((target.per_sequence(CONTEXT + j) for j in range(1, k + 1)),
                                               target.per_sequence(CONTEXT))
            for alpha in ALPHAS:
                per_token = (k * d + verify.time_s) / expected_tokens_per_step(alpha, k)
                speed[k, alpha] = one.time_s / per_token
        spec_speedup[name] = speed
    print()
    print("speculative decoding (draft gpt2): speed-up over plain decoding at the best k for each alpha")
    print(f"{'datapath':<30}" + "".join(f"{'a=' + str(a):>10}" for a in ALPHAS))
    for name, speed in spec_speedup.items():
        cells = []
        for alpha in ALPHAS:
            k = max(KS, key=lambda kk: speed[kk, alpha])
            cells.append(f"{speed[k, alpha]:>6.2f}x k{k}")
        print(f"{name:<30}" + "".join(f"{c:>10}" for c in cells))
    _figure(Path(args.out) / "batching.png", batch_gain, spec_speedup)


def _figure(path: Path, batch_gain: dict, spec_speedup: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pimsim.report import plots

    plt.style.use(plots.STYLE)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, gains in batch_gain.items():
        left.plot(BATCHES, [gains[b] for b in BATCHES], marker="o", label=name)
    left.axhline(1.0, color="grey", lw=0.8, ls=":")
    left.set_xscale("log", base=2)
    left.set_xticks(BATCHES, [str(b) for b in BATCHES])
    left.set_xlabel("batch (sequences in lock step)")
    left.set_ylabel("throughput over one sequence")
    left.set_title(f"batching: {TARGET}, {CONTEXT}-token contexts")
    left.legend(fontsize=7)
    for name, speed in spec_speedup.items():
        right.plot(ALPHAS, [max(speed[k, a] for k in KS) for a in ALPHAS], marker="o", label=name)
    right.axhline(1.0, color="grey", lw=0.8, ls=":")
    right.set_xlabel("acceptance rate alpha")
    right.set_ylabel("speed-up over plain decoding (best k)")
    right.set_title(f"speculative decoding: {TARGET}, draft {DRAFT}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
