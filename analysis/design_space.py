"""Four design-space studies on gddr6-aim, each a sweep through pimsim's own sweep runner, a table and
a figure in ``analysis/figures/``:

1. channel scaling (2-32 channels) for gpt2 and gpt2-xl: latency and energy per token;
2. ASIC clock sensitivity (100 MHz - 1 GHz) at two ASIC widths;
3. context length: latency per token of gpt2-xl from an empty cache to 1,024 tokens;
4. mapping strategies (row_partition vs wave_major, channel splitting on/off) on both PIM configs.

    python analysis/design_space.py [--out analysis/figures] [--jobs 2]

Sweep results land in a temporary folder (re-running reuses nothing); pass --keep DIR to keep them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from pimsim.report import plots
from pimsim.run_types import RunSpec
from pimsim.runs import simulate
from pimsim.sweep.points import Sweep
from pimsim.sweep.runner import run_sweep

RUN = {"prompt_len": 64, "gen_tokens": 4}


def sweep(folder: Path, name: str, models, grid: dict, jobs: int, hw: str = "gddr6-aim.yaml") -> pd.DataFrame:
    result = run_sweep(Sweep(hw, list(models), dict(RUN), grid), folder / name, jobs=jobs, progress=False)
    frame = pd.DataFrame(result["rows"])
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        print(f"  {len(failed)} point(s) failed: {failed['error'].iloc[0]}")
    return frame[frame["status"] == "ok"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", help="keep the sweep folders here")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pimsim-design-"))

    print("1. channel scaling (gddr6-aim, prompt 64, 4 tokens)")
    ch = sweep(folder, "channels", ["gpt2", "gpt2-xl"], {"dram.organization.channels": [2, 4, 8, 16, 32]}, args.jobs)
    key = "set:dram.organization.channels"
    for model, part in ch.groupby("model"):
        part = part.sort_values(key)
        base = part[part[key] == 8]["latency_per_token_s"].iloc[0]
        print(f"  {model:<8} " + "  ".join(f"{int(c)} ch {t * 1e3:.3f} ms (speed {base / t:.2f}x of 8 ch)"
                                           for c, t in zip(part[key], part["latency_per_token_s"])))
    plots.sweep_lines(ch, "dram.channels", "latency_per_token_s", "model", logx=True, logy=True).savefig(
        out / "channels.png")

    context = f"context {RUN['prompt_len']}-{RUN['prompt_len'] + RUN['gen_tokens'] - 1} tokens"
    print(f"2. ASIC clock sensitivity (gpt3-xl, {context}): latency per token and throughput against 1 GHz")
    asic = sweep(folder, "asic", ["gpt3-xl"], {"asic.freq_MHz": [100, 200, 500, 1000], "asic.lanes": [64, 256]},
                 args.jobs)
    for lanes, part in asic.groupby("set:asic.lanes"):
        part = part.sort_values("set:asic.freq_MHz")
        fast = part["latency_per_token_s"].iloc[-1]
        print(f"  {int(lanes)} lanes: " + "  ".join(
            f"{int(f)} MHz +{t / fast - 1:.1%} ({fast / t - 1:+.1%} tokens/s)"
            for f, t in zip(part["set:asic.freq_MHz"], part["latency_per_token_s"])))
    plots.sweep_lines(asic, "asic.freq_MHz", "latency_per_token_s", "asic.lanes", logx=True).savefig(
        out / "asic-clock.png")

    print("3. context length (gpt2-xl on gddr6-aim, 1,024 tokens from an empty cache)")
    r = simulate(RunSpec(model="gpt2-xl", hw="gddr6-aim.yaml", prompt_len=0, gen_tokens=1024))
    per = r.details.per_token_s
    print(f"  token 1 {per[0] * 1e3:.3f} ms, token 512 {per[511] * 1e3:.3f} ms, token 1024 {per[-1] * 1e3:.3f} ms "
          f"(+{per[-1] / per[0] - 1:.1%}); softmax {100 * r.details.time.share.get('softmax', 0):.1f}% of the run")
    plots.tokens(r).savefig(out / "context-gpt2-xl.png")

    print("4. mapping strategies (gpt2-xl)")
    for hw in ("gddr6-aim.yaml", "hbm-pim.yaml"):
        m = sweep(folder, f"mapping-{hw}", ["gpt2-xl"], {"mapping.gemv": ["row_partition", "wave_major"],
                                                         "mapping.channel_split": ["auto", "never"]}, args.jobs, hw)
        for _, row in m.sort_values(["set:mapping.gemv", "set:mapping.channel_split"]).iterrows():
            print(f"  {hw:<15} {row['set:mapping.gemv']:<14} split {row['set:mapping.channel_split']:<6} "
                  f"{row['latency_per_token_s'] * 1e3:7.3f} ms/token  {row['energy_per_token_J'] * 1e3:7.2f} mJ/token")
    print(f"\nfigures in {out}; sweeps in {folder}")


if __name__ == "__main__":
    main()
