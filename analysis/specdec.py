"""Speculative decoding on PIM (issue 8): speed-up over plain decoding against the acceptance rate alpha
and the draft length k, on gddr6-aim with its one-vector global buffer and with a 16-vector one, and on an
H100 roofline; then full simulated runs of the policies and placements.

    python analysis/specdec.py [--out analysis/figures]

Sensitivity: for each k the simulator times one verify step of k + 1 tokens (GEMVs over all k + 1 vectors
at once, attention and the rest per token) and one draft step, at the middle of the run; the expected
time per token is (k x draft + verify) / E[tokens per step], with E = (1 - alpha^(k+1)) / (1 - alpha)
(REFERENCE.md section 6). The GPU roofline times the same steps with pimsim's roofline model (weights and
KV once per step, FLOPs times k + 1, one launch per op). Full runs (seeded acceptance) check the expected
values and compare vanilla, PEARL and the draft placements. Figure: ``specdec-alpha-k.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pimsim.baseline.devices import load_device
from pimsim.baseline.roofline import token_time_s
from pimsim.config import load_hardware
from pimsim.engine.decode import DecodeSimulation
from pimsim.report import plots
from pimsim.runs import specdec_run
from pimsim.workloads.acceptance import expected_tokens_per_step
from pimsim.workloads.cards import load_card
from pimsim.workloads.opgraph import PARTS
from pimsim.workloads.specdec import parse_spec
from pimsim.workloads.tracer import traced_graph

TARGET, DRAFT = "gpt2-xl", "gpt2"
PROMPT, TOKENS = 64, 32
ALPHAS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
KS = [1, 2, 4, 8]
PUBLISHED = ("published (REFERENCE.md section 6): PEARL up to 3.79x over autoregressive and 1.52x over vanilla "
             "speculative decoding (GPU); SpecPIM 1.52x / 2.02x speed-up and 6.67x / 2.68x energy efficiency over "
             "GPU / prior PIM")


def pim_costs(hw_name: str, overrides: list[str]) -> dict:
    """Seconds of one target decode step, one draft step and a verify step of k + 1 tokens, per k."""
    hw = load_hardware(hw_name, overrides)
    target, draft = traced_graph(load_card(TARGET)), traced_graph(load_card(DRAFT))
    mid = PROMPT + TOKENS // 2
    t_sim = DecodeSimulation(hw, target, PROMPT, TOKENS + max(KS))
    d_sim = DecodeSimulation(hw, draft, PROMPT, TOKENS + max(KS))

    def time(sim, tokens):
        return sim.advance(sim.verify_steps(mid, tokens), 0, dict.fromkeys(PARTS, 0)) * 1e-12

    return {"target": time(t_sim, 1), "draft": time(d_sim, 1), "verify": {k: time(t_sim, k + 1) for k in KS}}


def gpu_costs(device: str = "h100", dtype: str = "fp16") -> dict:
    spec = load_device(device)
    target, draft = traced_graph(load_card(TARGET)), traced_graph(load_card(DRAFT))
    ctx = PROMPT + TOKENS // 2

    def verify(graph, tokens):
        t = token_time_s(spec, graph, ctx, dtype)
        return max(t["memory_s"], tokens * t["compute_s"]) + t["overhead_s"]

    return {"target": verify(target, 1), "draft": verify(draft, 1), "verify": {k: verify(target, k + 1) for k in KS}}


def speedup(costs: dict, alpha: float, k: int) -> float:
    per_token = (k * costs["draft"] + costs["verify"][k]) / expected_tokens_per_step(alpha, k)
    return costs["target"] / per_token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    systems = {"gddr6-aim (1-vector buffer)": pim_costs("gddr6-aim.yaml", []),
               "gddr6-aim, 16-vector buffer": pim_costs("gddr6-aim.yaml", ["pim.buffer_vectors=16"]),
               "hbm-pim (1-vector buffer)": pim_costs("hbm-pim.yaml", []),
               "H100 roofline (fp16)": gpu_costs()}
    print(f"1. {TARGET} verifying {DRAFT}'s drafts: cost of a step (at token {PROMPT + TOKENS // 2})")
    for name, c in systems.items():
        verify = "  ".join(f"k={k}: {c['verify'][k] / c['target']:.2f}x" for k in KS)
        print(f"  {name:<28} target {c['target'] * 1e3:.3f} ms, draft {c['draft'] / c['target']:.3f}x of it; "
              f"verify {verify}")
    print("2. expected speed-up over plain decoding (alpha x k)")
    for name, c in systems.items():
        best = max(((speedup(c, a, k), a, k) for a in ALPHAS for k in KS))
        rows = "  ".join(f"a={a}: " + "/".join(f"{speedup(c, a, k):.2f}" for k in KS) for a in (0.6, 0.8, 0.95))
        print(f"  {name:<28} (k = {'/'.join(map(str, KS))}) {rows};  best {best[0]:.2f}x at alpha {best[1]}, "
              f"k {best[2]}")
    plt = plots._plt()
    fig, axes = plt.subplots(1, len(systems), figsize=(16, 4.2), layout="constrained", sharey=True)
    for ax, (name, c) in zip(axes, systems.items()):
        for k in KS:
            ax.plot(ALPHAS, [speedup(c, a, k) for a in ALPHAS], marker="o", label=f"k = {k}")
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("acceptance rate alpha")
    axes[0].set_ylabel("speed-up over plain decoding")
    axes[0].legend(fontsize=8)
    fig.savefig(out / "specdec-alpha-k.png")

    print("3. full runs (gddr6-aim, alpha 0.8 seeded, k 4, 32 tokens): simulated vs expected")
    hw = load_hardware("gddr6-aim.yaml", [])
    wide = load_hardware("gddr6-aim.yaml", ["pim.buffer_vectors=16"])
    runs = [("vanilla, same channels", hw, f"target={TARGET},draft={DRAFT},k=4,alpha=0.8"),
            ("vanilla, same, 16-vector buffer", wide, f"target={TARGET},draft={DRAFT},k=4,alpha=0.8"),
            ("vanilla, draft on the ASIC", hw, f"target={TARGET},draft={DRAFT},k=4,alpha=0.8,placement=asic"),
            ("vanilla, gpt2-large on 6 + gpt2 on 2 ch", hw,
             "target=gpt2-large,draft=gpt2,k=4,alpha=0.8,placement=group,draft_channels=2"),
            ("PEARL, gpt2-large on 6 + gpt2 on 2 ch", hw,
             "target=gpt2-large,draft=gpt2,k=4,alpha=0.8,placement=group,draft_channels=2,policy=pearl"),
            ("PEARL, 16-vector buffer", wide,
             "target=gpt2-large,draft=gpt2,k=4,alpha=0.8,placement=group,draft_channels=2,policy=pearl")]
    for name, h, text in runs:
        r = specdec_run(h, parse_spec(text), PROMPT, TOKENS)
        print(f"  {name:<42} {r.latency_per_token_s * 1e3:.3f} ms/token, speed-up "
              f"{r.speedup_over_autoregressive:.3f}x, energy {r.energy.energy_ratio_over_autoregressive:.2f}x plain, "
              f"{r.tokens_per_verify_step:.2f} tokens per target pass"
              + (f" (expected {r.expected_tokens_per_verify_step:.2f})"
                 if r.expected_tokens_per_verify_step is not None else ""))
    print(f"\n{PUBLISHED}\nfigure in {out}")


if __name__ == "__main__":
    main()
