"""Serving (issue 17): latency against offered load for gpt2 on gddr6-aim, Poisson arrivals, each
request a 64-token prompt and 16 output tokens, for each maximum batch the engine's step costs take.

    python analysis/serving.py [--out analysis/figures] [--requests 2000] [--max-batch 1,8]

Prints one row per (max batch, rate): TTFT, TPOT and end-to-end p50/p99, throughput, goodput at TTFT <=
100 ms and TPOT <= 1 ms, energy per output token. Figures: ``serving-load.png`` (latency against rate)
and ``serving-cdf.png`` (the latency distributions at the highest rate at which 90% of the requests meet
the SLO, per batch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pimsim.config import load_hardware
from pimsim.report import plots
from pimsim.serving.arrivals import poisson_requests
from pimsim.serving.service import serve_model
from pimsim.serving.summary import Slo
from pimsim.workloads.cards import load_card

HW, MODEL, PROMPT, OUTPUT, SEED = "gddr6-aim.yaml", "gpt2", 64, 16, 0
RATES = [10, 20, 30, 40, 50, 55, 60, 62]
SLO = Slo(ttft_s=0.1, tpot_s=1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("figures")))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--max-batch", default="1", help="comma-separated maximum batches")
    args = ap.parse_args()
    hw, card = load_hardware(HW, []), load_card(MODEL)
    print(f"{MODEL} on {HW}: {args.requests} Poisson requests per point, prompt {PROMPT}, output {OUTPUT}, "
          f"seed {SEED}; goodput at TTFT <= {SLO.ttft_s * 1e3:g} ms, TPOT <= {SLO.tpot_s * 1e3:g} ms")
    print(f"{'batch':>5} {'rate/s':>7} {'TTFT p50':>9} {'p99':>9} {'TPOT p50':>9} {'p99':>9} {'e2e p50':>9} "
          f"{'p99':>9} {'tokens/s':>9} {'goodput/s':>9} {'mJ/token':>9}   (latencies in ms)")
    summaries, frames, names = [], [], []
    for max_batch in (int(b) for b in args.max_batch.split(",")):
        kept = None
        for rate in RATES:
            requests = poisson_requests(float(rate), args.requests, PROMPT, OUTPUT, SEED)
            outcome = serve_model(hw, card, requests, max_batch, SLO)
            s = outcome.summary
            summaries.append({"model": card.name, "hw": outcome.costs.hw.name, "rate_per_s": float(rate),
                              **s.to_json()})
            print(f"{max_batch:>5} {rate:>7} " + " ".join(
                f"{v * 1e3:>9.2f}" for v in (s.ttft_s["p50"], s.ttft_s["p99"], s.tpot_s["p50"], s.tpot_s["p99"],
                                              s.e2e_s["p50"], s.e2e_s["p99"]))
                  + f" {s.throughput_tokens_per_s:>9.1f} {s.goodput_requests_per_s:>9.2f}"
                  + f" {s.energy_per_token_J * 1e3:>9.3f}")
            if s.slo_attainment >= 0.9:  # the highest rate at which 90% of the requests meet the SLO
                kept = (rate, outcome)
        if kept is not None:
            import pandas as pd

            frames.append(pd.DataFrame([r.to_row() for r in kept[1].run.records]))
            names.append(f"max batch {max_batch}, {kept[0]} requests per s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.serve_load(summaries).savefig(out / "serving-load.png")
    plots.serve_cdf(frames, names).savefig(out / "serving-cdf.png")
    print(f"wrote {out / 'serving-load.png'} and {out / 'serving-cdf.png'}")


if __name__ == "__main__":
    main()
