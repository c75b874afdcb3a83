"""Serving (issue 17): latency against offered load for gpt2 on gddr6-aim, Poisson arrivals, each
request a 64-token prompt and 16 output tokens: at a maximum batch of 1 and of 8 (continuous batching)
on the bundled one-vector datapath, and at 8 on a 16-vector one (``pim.buffer_vectors=16``,
``pim.vectors_per_mac=16``, ``energy.dram.mac_vector_pJ=384`` as analysis/batching.py sources it:
256 BF16 multiply-adds at 1.5 pJ, Horowitz ISSCC 2014; accumulators assumed negligible).

    python analysis/serving.py [--out analysis/figures] [--requests 2000]

Step costs are simulated once per maximum batch (:class:`pimsim.serving.engine.EngineCosts`) and shared
by every rate.
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
from pimsim.serving.engine import EngineCosts
from pimsim.serving.scheduler import serve
from pimsim.serving.summary import Slo, summarize
from pimsim.workloads.cards import load_card

HW, MODEL, PROMPT, OUTPUT, SEED = "gddr6-aim.yaml", "gpt2", 64, 16, 0
RATES = [10, 20, 40, 60, 70, 80, 100, 150, 200]
SLO = Slo(ttft_s=0.1, tpot_s=1e-3)
WIDE = ["pim.buffer_vectors=16", "pim.vectors_per_mac=16", "energy.dram.mac_vector_pJ=384"]
SYSTEMS = [("1-vector", 1, []), ("1-vector", 8, []), ("16-vector", 8, WIDE)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("figures")))
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    card = load_card(MODEL)
    print(f"{MODEL} on {HW}: {args.requests} Poisson requests per point, prompt {PROMPT}, output {OUTPUT}, "
          f"seed {SEED}; goodput at TTFT <= {SLO.ttft_s * 1e3:g} ms, TPOT <= {SLO.tpot_s * 1e3:g} ms")
    print(f"{'datapath':>9} {'batch':>5} {'rate/s':>7} {'TTFT p50':>9} {'p99':>9} {'TPOT p50':>9} {'p99':>9} "
          f"{'e2e p50':>9} {'p99':>9} {'tokens/s':>9} {'goodput/s':>9} {'mJ/token':>9}   (latencies in ms)")
    summaries, frames, names = [], [], []
    for system, max_batch, overrides in SYSTEMS:
        kept = None
        costs = EngineCosts(load_hardware(HW, overrides), card, max_batch, PROMPT + OUTPUT - 1)
        for rate in RATES:
            run = serve(poisson_requests(float(rate), args.requests, PROMPT, OUTPUT, SEED), costs, max_batch)
            s = summarize(run, SLO)
            summaries.append({"model": card.name, "hw": f"{costs.hw.name} {system}", "rate_per_s": float(rate),
                              **s.to_json()})
            print(f"{system:>9} {max_batch:>5} {rate:>7} " + " ".join(
                f"{v * 1e3:>9.2f}" for v in (s.ttft_s["p50"], s.ttft_s["p99"], s.tpot_s["p50"], s.tpot_s["p99"],
                                              s.e2e_s["p50"], s.e2e_s["p99"]))
                  + f" {s.throughput_tokens_per_s:>9.1f} {s.goodput_requests_per_s:>9.2f}"
                  + f" {s.energy_per_token_J * 1e3:>9.3f}")
            if s.slo_attainment >= 0.9:  # the highest rate at which 90% of the requests meet the SLO
                kept = (rate, run)
        if kept is not None:
            import pandas as pd

            frames.append(pd.DataFrame([r.to_row() for r in kept[1].records]))
            names.append(f"{system}, max batch {max_batch}, {kept[0]} requests per s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.serve_load(summaries).savefig(out / "serving-load.png")
    plots.serve_cdf(frames, names).savefig(out / "serving-cdf.png")
    print(f"wrote {out / 'serving-load.png'} and {out / 'serving-cdf.png'}")


if __name__ == "__main__":
    main()
