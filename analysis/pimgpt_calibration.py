"""pimsim against the PIM-GPT paper's reported behaviour (Wu, Wang, Lu, npj Unconv. Comput. 2024).

    python analysis/pimgpt_calibration.py [--prompt-len 512] [--gen-tokens 4] [--fidelity fast]

On gddr6-aim (8 channels of GDDR6-AiM, the paper's setup) with the serial schedule (the paper's
simulator fetches an instruction only when ASIC and PIM are idle), for the paper's 8 GPT models:

1. row-buffer hit rate (paper: about 98%);
2. share of latency that is not matrix-vector work (paper: 1.16% for GPT3-XL), counted two ways:
   the ASIC's vector work alone (softmax, norms, activations, residuals), and everything that is not
   a MAC stream (plus ASIC<->memory transfers, KV writes, embedding reads);
3. 8 -> 16 channels (paper: close to linear);
4. the ASIC at 100 MHz instead of 1 GHz (paper: at most about 20% slower).

Each figure is computed by ``pimsim.runs.run_model`` from the bundled configs; nothing is fitted.
"""

from __future__ import annotations

import argparse

from pimsim.runs import run_model

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl")
MV_PARTS = {"qkv", "attn_scores", "attn_context", "out_proj", "ffn", "lm_head"}
ASIC_PARTS = {"softmax", "asic"}


def shares(result: dict) -> tuple[float, float]:
    total = sum(result["breakdown_s"].values())
    asic = sum(v for k, v in result["breakdown_s"].items() if k in ASIC_PARTS) / total
    non_mv = sum(v for k, v in result["breakdown_s"].items() if k not in MV_PARTS) / total
    return asic, non_mv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=4)
    ap.add_argument("--fidelity", choices=("fast", "cycle"), default="fast")
    args = ap.parse_args()
    run = dict(prompt_len=args.prompt_len, gen_tokens=args.gen_tokens, fidelity=args.fidelity)
    print(f"gddr6-aim, serial schedule, {args.fidelity} fidelity, KV cache of {args.prompt_len} tokens, "
          f"{args.gen_tokens} generated\n")
    print(f"{'model':<13}{'ms/token':>10}{'hit rate':>10}{'ASIC ops':>10}{'non-MV':>9}{'16 ch':>8}{'ASIC 100MHz':>13}")
    for model in MODELS:
        base = run_model("gddr6-aim.yaml", model, **run)
        wide = run_model("gddr6-aim.yaml", model, overrides=["dram.organization.channels=16"], **run)
        slow = run_model("gddr6-aim.yaml", model, overrides=["asic.freq_MHz=100"], **run)
        asic, non_mv = shares(base)
        t = base["latency_per_token_s"]
        print(f"{model:<13}{t * 1e3:>10.3f}{100 * base['row_hit_rate']:>9.2f}%{100 * asic:>9.2f}%"
              f"{100 * non_mv:>8.2f}%{t / wide['latency_per_token_s']:>7.2f}x"
              f"{slow['latency_per_token_s'] / t - 1:>+12.1%}")
    print("\n16 ch: speed-up with 16 channels instead of 8 (same per-channel device); ASIC 100MHz: latency change "
          "with the ASIC core at 100 MHz instead of 1 GHz (its links to the memory controllers keep their clock)")


if __name__ == "__main__":
    main()
