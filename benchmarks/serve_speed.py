"""Simulator speed of `pimsim serve`: wall-clock seconds for 10,000-request serving runs.

    python benchmarks/serve_speed.py [--repeat 3] [--requests 10000]

(a) gpt2 on gddr6-aim, Poisson arrivals, as a user types it (a fresh process: Python, numba cache load,
    tracing cache, every distinct step shape simulated once);
(b) gpt2 on gddr6-aim, max batch 16, prompts of 16..512 and outputs of 8..128 tokens drawn per request
    (hundreds of distinct prompt lengths and contexts), in-process with fresh step costs each time (each
    distinct piece simulated once);
(c) the scheduler alone, closed-form step costs, max batch 8 (SimPy overhead per request and step).

Medians of --repeat runs. Set OMP_WAIT_POLICY=PASSIVE on shared machines (numba and torch threads).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
from _host import describe

from pimsim.config.loader import load_hardware
from pimsim.serving.arrivals import Request, poisson_requests
from pimsim.serving.costs import ClosedFormCosts
from pimsim.serving.scheduler import serve
from pimsim.serving.service import serve_model
from pimsim.workloads.cards import load_card


def timed(fn, repeat: int) -> tuple[list[float], object]:
    out, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        out.append(time.perf_counter() - t)
    return out, result


def show(label: str, times: list[float], extra: str = "") -> None:
    print(f"{label}\n  wall (median of {len(times)}) {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}){extra}")


def varied(count: int, rate: float, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, count))
    prompts, outputs = rng.integers(16, 513, count), rng.integers(8, 129, count)
    return [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(times, prompts, outputs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=10_000)
    args = ap.parse_args()
    n = args.requests
    print(describe())

    cmd = [sys.executable, "-m", "pimsim", "serve", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--rate", "50",
           "--requests", str(n), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True)  # fills the numba and graph caches, as a first run does
    times, _ = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat)
    show(f"(a) {' '.join(cmd[2:])}   (fresh process)", times)

    hw, card = load_hardware("gddr6-aim.yaml", []), load_card("gpt2")
    requests = varied(n, 20.0, seed=0)
    serve_model(hw, card, requests[:10], 16)  # the graph cache and kernels, not the steps (fresh each run below)
    times, outcome = timed(lambda: serve_model(hw, card, requests, 16), args.repeat)
    shapes = outcome.costs.distinct_shapes()
    show(f"(b) gpt2 on gddr6-aim, max batch 16, {n:,} requests, prompts 16-512, outputs 8-128 (in-process)", times,
         f"\n  -> {shapes['batch_sizes']} batch sizes and {shapes['prompt_lens']} prompt lengths simulated; "
         f"{outcome.run.decode_steps:,} decode steps, {outcome.run.prefills:,} prefills served, mean batch "
         f"{outcome.summary.mean_batch:.2f}")

    costs = ClosedFormCosts(step_s=2e-3, per_sequence_s=2e-4, per_context_token_s=1e-7, prefill_s=1e-3,
                            per_prompt_token_s=1e-5)
    reqs = poisson_requests(100.0, n, 128, 16, seed=0)
    times, run = timed(lambda: serve(reqs, costs, 8), args.repeat)
    show(f"(c) scheduler alone: {n:,} requests, closed-form costs, max batch 8", times,
         f"\n  -> {run.decode_steps:,} decode steps, {run.prefills:,} prefills")


if __name__ == "__main__":
    main()
