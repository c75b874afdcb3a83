"""Number formats on PIM (issues 7, 18): the same model on the same hardware with bf16 (fp16 on HBM-PIM),
int8, fp8-e4m3, int4-g128, ternary (2-bit and base-3 packed) and binary block weights; which models fit only
in narrow formats; where the time goes once weights shrink; what row packing is worth.

    python analysis/number_formats.py [--out analysis/figures] [--jobs 2] [--formats F ...] [--table-only]

int4-g128 runs on HBM-PIM with ``mapping.gemv=row_partition`` (Samsung's GEMV kernel reads no group
scales); every other point keeps each config's own GEMV strategy. ``--formats`` limits section 1 to some
formats (the native one always runs); ``--table-only`` prints section 1 alone and draws no figure.

Every number comes from ``pimsim.runs.simulate`` through pimsim's sweep runner (prompt 64 tokens, 4
generated, serial schedule, fast fidelity). Figures: ``formats.png`` (tokens/s and energy per token by
format), ``formats-breakdown.png`` (time and energy shares of gpt2-xl on gddr6-aim by format).
Results and reading: analysis/README.md.
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
HW = {"gddr6-aim.yaml": "bf16", "hbm-pim.yaml": "fp16"}  # each config's native weight format
FORMATS = ["int8", "fp8-e4m3", "int4-g128", "ternary", "ternary-b3", "binary"]
# formats a config's default GEMV strategy cannot run, and the strategy they take instead
STRATEGY_FOR = {("hbm-pim.yaml", "int4-g128"): "row_partition"}
MODELS = ["gpt2-xl", "tinyllama-1.1b", "bitnet-b1.58-1.3b", "bitnet-b1.58-3b"]
FOCUS = "gpt2-xl"  # the model of the breakdown and row-packing studies


def sweep(folder: Path, name: str, hw: str, models, grid: dict, jobs: int) -> pd.DataFrame:
    result = run_sweep(Sweep(hw, list(models), dict(RUN), grid), folder / name, jobs=jobs, progress=False)
    return pd.DataFrame(result["rows"])


def formats_figure(frame: pd.DataFrame, out: Path, formats: list[str]) -> None:
    plt = plots._plt()
    ok = frame[frame["status"] == "ok"]
    fig, axes = plt.subplots(2, len(HW), figsize=(12, 7), layout="constrained", squeeze=False)
    order = ["native", *formats]
    for col, hw in enumerate(HW):
        part = ok[ok["hw"] == hw]
        for row, (metric, scale, label) in enumerate((("tokens_per_s", 1, "tokens/s"),
                                                      ("energy_per_token_J", 1e3, "energy per token (mJ)"))):
            ax = axes[row][col]
            width = 0.8 / len(MODELS)
            for i, model in enumerate(MODELS):
                m = part[part["model"] == model].set_index("format")
                values = [m[metric].get(f, float("nan")) * scale for f in order]
                xs = [k + (i - (len(MODELS) - 1) / 2) * width for k in range(len(order))]
                ax.bar(xs, values, width, label=model)
                for x, v in zip(xs, values):
                    if v != v:  # NaN: the model does not fit in this format
                        ax.annotate("does not fit", (x, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                                    ha="center", va="bottom", fontsize=7, color="0.4")
            ax.set_xticks(range(len(order)), [HW[hw] if f == "native" else f for f in order])
            ax.set_ylabel(label)
            ax.set_yscale("log")
            ax.grid(axis="x", visible=False)
            ax.set_title(f"{hw.removesuffix('.yaml')}: {label}")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.savefig(out / "formats.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", help="keep the sweep folders here")
    ap.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS, help="formats beside the native one")
    ap.add_argument("--table-only", action="store_true", help="section 1 only, no figures")
    args = ap.parse_args()
    formats = [f for f in FORMATS if f in args.formats]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pimsim-formats-"))

    frames = []
    for hw, native in HW.items():
        plain = [native, *(f for f in formats if (hw, f) not in STRATEGY_FOR)]
        parts = [sweep(folder, f"formats-{hw}", hw, MODELS, {"weight_format": plain}, args.jobs)]
        for fmt in formats:
            if (hw, fmt) in STRATEGY_FOR:
                parts.append(sweep(folder, f"formats-{hw}-{fmt}", hw, MODELS,
                                   {"weight_format": [fmt], "mapping.gemv": [STRATEGY_FOR[hw, fmt]]}, args.jobs))
        f = pd.concat(parts, ignore_index=True)
        f["hw"] = hw
        f["format"] = f["set:weight_format"].where(f["set:weight_format"] != native, "native")
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)

    print(f"1. the same model, the same hardware, {len(formats) + 1} weight formats (prompt 64, 4 tokens)")
    for (hw, model), part in frame.groupby(["hw", "model"], sort=False):
        part = part.set_index("format")
        base = part.loc["native"]
        print(f"  {model} on {hw.removesuffix('.yaml')}:")
        for fmt in ["native", *formats]:
            row = part.loc[fmt]
            name = HW[hw] if fmt == "native" else fmt
            if (hw, fmt) in STRATEGY_FOR:
                name += "*"
            if row["status"] != "ok":
                print(f"    {name:<11} does not run: {row['error'].split(';')[0]}")
                continue
            speed = (f"{base['latency_per_token_s'] / row['latency_per_token_s']:5.2f}x faster, "
                     f"{base['energy_per_token_J'] / row['energy_per_token_J']:5.2f}x less energy"
                     if base["status"] == "ok" else "(native does not fit)")
            print(f"    {name:<11} {row['tokens_per_s']:9.1f} tokens/s  {row['energy_per_token_J'] * 1e3:7.2f} "
                  f"mJ/token  {speed}")
    for (hw, fmt), strategy in STRATEGY_FOR.items():
        if fmt in formats:
            print(f"  * {fmt} on {hw.removesuffix('.yaml')} with mapping.gemv={strategy}")
    if args.table_only:
        return
    formats_figure(frame, out, formats)

    print(f"2. where the time goes: {FOCUS} on gddr6-aim")
    results, names = [], []
    for fmt in ["bf16", *formats]:
        r = simulate(RunSpec(model=FOCUS, hw="gddr6-aim.yaml", prompt_len=RUN["prompt_len"],
                             gen_tokens=RUN["gen_tokens"], weight_format=fmt))
        results.append(r)
        names.append(f"{fmt}\n{r.latency_per_token_s * 1e3:.3f} ms")
        share = r.details.time.share
        groups = {"block GEMVs": ("qkv", "out_proj", "ffn"), "LM head": ("lm_head",),
                  "attention": ("attn_scores", "softmax", "attn_context"), "KV writes": ("kv_write",),
                  "ASIC": ("asic", "quantize"), "transfers": ("transfers",)}
        print(f"  {fmt:<11} " + "  ".join(f"{g} {100 * sum(share.get(p, 0) for p in parts):4.1f}%"
                                           for g, parts in groups.items()))
    plots.breakdown(results, names=names).savefig(out / "formats-breakdown.png")

    print(f"3. row packing (ternary, {FOCUS})")
    for hw in HW:
        times = {p: simulate(RunSpec(model=FOCUS, hw=hw, prompt_len=RUN["prompt_len"], gen_tokens=RUN["gen_tokens"],
                                     weight_format="ternary", overrides={"mapping.row_packing": p}))
                 for p in ("auto", "never")}
        a, n = times["auto"], times["never"]
        print(f"  {hw.removesuffix('.yaml'):<10} packed {a.latency_per_token_s * 1e3:.3f} ms, "
              f"{a.details.memory.rows_per_bank_used:,} rows/bank; one output row per DRAM row "
              f"{n.latency_per_token_s * 1e3:.3f} ms, {n.details.memory.rows_per_bank_used:,} rows/bank")
    print(f"\nfigures in {out}; sweeps in {folder}")


if __name__ == "__main__":
    main()
