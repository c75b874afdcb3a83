"""Cycle fidelity on several threads: seconds per generated token at 1, 2, ... numba threads.

    python benchmarks/cycle_parallel.py [--threads 1,2,4,8,16] [--tokens 16] [--prompt-len 0]
                                        [--repeat 3] [--hw gddr6-aim.yaml] [--model gpt2-xl]
                                        [--runs] [--by-kind] [--split-min-ms MS] [--twins on|off]

Each repeat builds the run (mapping, untimed) and times only its token generation at cycle fidelity: every
command of every token through the kernel (a twin channel's by its kind's first), a long PIM stream's
channels split over the threads where it pays (pimsim.engine.dram_timing.CycleTiming). Prints the median
seconds per token per thread count, the speed-up over one thread, and the projection to 1024 tokens
(attention grows with the context, so run with --prompt-len near the end of the range too to see the cost of
late tokens). Thread counts above what numba was started with (NUMBA_NUM_THREADS, by default the core count)
are skipped. Every thread count's run is checked to give the same per-token times as the first. A last line
gives the CPU time of one CycleTiming.run call on a one-command stream: the engine-side cost paid per PIM
stream (a gpt2-xl token issues 387). With --runs it first times each long stream of the first token on one
thread: command by command, with its runs of repeats in closed form, and with its periodic row groups
skipped as well (pimsim.dram.periods; min of 15 each, alternating, from an idle memory). Channels that start
a stream alike and issue alike are issued once and copied (pimsim.dram.twins), as pimsim runs; --twins off
issues every channel (the figure before them); the channels copied per token are printed. With --by-kind
it first times the last token's streams by kind, each from the state the run gave it, twins on and off.
Set OMP_WAIT_POLICY=PASSIVE on shared machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba

sys.path.insert(0, str(Path(__file__).parent))
from _host import describe  # noqa: E402

from pimsim.config import load_hardware  # noqa: E402
from pimsim.engine.decode import DecodeSimulation  # noqa: E402
from pimsim.runs import hardware_for  # noqa: E402
from pimsim.workloads.cards import load_card  # noqa: E402
from pimsim.workloads.tracer import traced_graph  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hw", default="gddr6-aim.yaml")
    ap.add_argument("--model", default="gpt2-xl")
    ap.add_argument("--runs", action="store_true",
                    help="time the closed-form runs and period groups against command by command")
    ap.add_argument("--twins", choices=("on", "off"), default="on",
                    help="issue channels that start a stream alike and issue alike once (pimsim.dram.twins; "
                         "default on, as pimsim runs): off issues every channel, for the figure before")
    ap.add_argument("--by-kind", action="store_true",
                    help="first time the last token's streams one by one, by kind (weight GEMVs, K/V appends, "
                         "scores, context), each from the DRAM state the run gave it, twins on and off")
    ap.add_argument("--split-min-ms", type=float, default=None, metavar="MS",
                    help="split a stream's channels over the threads only where its first run on one took MS "
                         "milliseconds or more (default: the engine's SPLIT_MIN_SECONDS); 0 splits every long "
                         "stream: for finding where the split pays on a machine")
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.threads.split(",")]
    except ValueError:
        ap.error(f"--threads takes comma-separated integers, not {args.threads!r}")
    if any(n < 1 for n in counts) or args.tokens < 1 or args.repeat < 1:
        ap.error("--threads, --tokens and --repeat must be at least 1")
    if args.split_min_ms is not None and args.split_min_ms < 0:
        ap.error("--split-min-ms must be at least 0")
    import pimsim.engine.dram_timing as dram_timing

    if args.split_min_ms is not None:
        dram_timing.SPLIT_MIN_SECONDS = args.split_min_ms / 1e3
    dram_timing.TWIN_CHANNELS = args.twins == "on"
    print(describe())
    print(f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, "
          f"at most {numba.config.NUMBA_NUM_THREADS} threads; a stream's channels split over them from "
          f"{dram_timing.PARALLEL_MIN_COMMANDS} commands where its first run took "
          f"{dram_timing.SPLIT_MIN_SECONDS * 1e3:g} ms or more on one")
    card = load_card(args.model)
    hw = hardware_for(load_hardware(args.hw), card, None)
    graph = traced_graph(card)

    copied = []

    def run_once() -> tuple[float, float, list[int]]:
        sim = DecodeSimulation(hw, graph, args.prompt_len, args.tokens, fidelity="cycle")
        t, cpu = time.perf_counter(), time.process_time()
        result = sim.run()
        copied.append(sim.timing.twin_channels)
        return time.perf_counter() - t, time.process_time() - cpu, result.per_token_ps

    numba.set_num_threads(1)
    run_once()  # compile / load the kernels and fill the tracing cache
    if args.runs:
        closed_form_gain(hw, graph)
    if args.by_kind:
        by_kind(hw, graph, args.prompt_len, args.tokens)
    print(f"{args.model} on {args.hw}, tokens at positions {args.prompt_len}..{args.prompt_len + args.tokens - 1}, "
          f"cycle fidelity, median of {args.repeat}")
    print("s/token: wall seconds per token (median, min, max); cpu: CPU seconds of all threads per token "
          "(median); speed-up: of the median wall time over the first thread count's")
    print(f"{'threads':>7}  {'s/token':>8}  {'min':>8}  {'max':>8}  {'cpu':>8}  {'speed-up':>8}  {'1024 tokens':>11}")
    base, reference = None, None
    for n in counts:
        if n > numba.config.NUMBA_NUM_THREADS:
            print(f"{n:>7}  skipped: numba started with {numba.config.NUMBA_NUM_THREADS} threads")
            continue
        numba.set_num_threads(n)
        if n > 1:
            run_once()  # the parallel kernel's first call on this thread count
        per, cpus, times = [], [], None
        for _ in range(args.repeat):
            seconds, cpu, times = run_once()
            per.append(seconds / args.tokens)
            cpus.append(cpu / args.tokens)
        if reference is None:
            reference = times
        elif times != reference:
            raise SystemExit(f"pimsim bug: {n} threads gave other per-token times than {counts[0]}")
        median = statistics.median(per)
        base = base or median
        print(f"{n:>7}  {median:8.4f}  {min(per):8.4f}  {max(per):8.4f}  {statistics.median(cpus):8.4f}  "
              f"{base / median:7.2f}x  {median * 1024:9.1f} s")
    print(f"twin channels {args.twins}: {copied[-1] / args.tokens:.0f} channels per token copied from a twin "
          f"instead of issued")
    print(f"CycleTiming.run of a one-command stream: {call_overhead_us(hw):.1f} us CPU per call (median of 5 x 2000)")


def closed_form_gain(hw, graph) -> None:
    from pimsim.dram.kernel import issue_into, repeat_runs
    from pimsim.dram.periods import period_groups
    from pimsim.dram.timing_state import new_state
    from pimsim.engine.dram_timing import PARALLEL_MIN_COMMANDS

    sim = DecodeSimulation(hw, graph, 0, 1, fidelity="cycle")
    streams, issue = {}, sim.timing.run  # (CycleTiming.run_streams calls run: a plan's streams come here too)
    sim.timing.run = lambda stream, start_ps: streams.setdefault(stream.key, stream) and issue(stream, start_ps)
    sim.run()
    print("one thread, CPU ms per stream (min of 15): command by command / runs in closed form / "
          "runs and period groups")
    spec = sim.compiled.spec
    for stream in streams.values():
        if len(stream) < PARALLEL_MIN_COMMANDS:
            continue
        cmd, node, row, col = stream.cmd, stream.node, stream.rows(), stream.column
        runs, groups = repeat_runs(cmd, node, row), period_groups(spec, cmd, node, row)
        inputs = {"each": (None, None), "runs": (runs, None), "periods": (runs, groups)}
        best = dict.fromkeys(inputs, float("inf"))
        for _ in range(15):
            for kind, (r, g) in inputs.items():
                state = new_state(spec)
                cpu = time.process_time()
                issue_into(spec, state, cmd, node, row, col, 0, r, g)
                best[kind] = min(best[kind], time.process_time() - cpu)
        ms = {kind: f"{t * 1e3:.3f}" for kind, t in best.items()}
        print(f"  {stream.key[0]} {stream.key[1]}x{stream.key[2]}, {len(stream):,} commands: {ms['each']} / "
              f"{ms['runs']} / {ms['periods']} ms ({best['periods'] / best['each']:.2f}x)")


def by_kind(hw, graph, prompt_len: int, tokens: int) -> None:
    """CPU ms per token by stream kind: the last token's CycleTiming.run calls, each replayed from a copy
    of the state the run gave it (min of 3), with twin channels on and off, and the channels copied."""
    from collections import defaultdict

    from pimsim.dram.timing_state import State

    sim = DecodeSimulation(hw, graph, prompt_len, tokens, fidelity="cycle")
    timing, calls = sim.timing, []
    issue = timing.run
    timing.run = lambda stream, start_ps: calls.append((stream, start_ps, State(*(a.copy() for a in timing.state)))) \
        or issue(stream, start_ps)
    sim.run()
    last = calls[-len(calls) // tokens:]
    table: dict = defaultdict(lambda: defaultdict(float))
    for twins in (False, True):
        timing.twins = twins
        for stream, start_ps, state in last:
            best = float("inf")
            for _ in range(3):
                timing.state = State(*(a.copy() for a in state))
                before, cpu = timing.twin_channels, time.process_time()
                issue(stream, start_ps)
                best = min(best, time.process_time() - cpu)
            row = table[str(stream.key[0])]
            row["ms on" if twins else "ms off"] += best * 1e3
            if twins:
                row["streams"] += 1
                row["commands"] += len(stream)
                row["copied"] += timing.twin_channels - before
    print(f"the last token's streams (position {prompt_len + tokens - 1}) by kind, CPU ms (min of 3 each), "
          "every channel issued / twins copied:")
    for kind, row in sorted(table.items(), key=lambda kv: -kv[1]["ms off"]):
        print(f"  {kind:10s} {row['streams']:4.0f} streams {row['commands']:10,.0f} commands  "
              f"{row['ms off']:7.2f} / {row['ms on']:6.2f} ms  {row['copied']:5.0f} channels copied")
    print(f"  {'all':10s} {sum(r['ms off'] for r in table.values()):45.2f} / "
          f"{sum(r['ms on'] for r in table.values()):6.2f} ms")


def call_overhead_us(hw) -> float:
    import numpy as np

    from pimsim.dram.compile import compile_standard
    from pimsim.engine.dram_timing import CycleTiming
    from pimsim.mapper.model import Stream

    compiled = compile_standard(hw)
    one = np.ones(1, np.int64)
    # a PREA of channel 0's rank: legal whatever is open, and each call issues it again
    prea = one * compiled.command_names.index("PREA")
    stream = Stream(("overhead",), prea, one * int(compiled.rank_node(0)), -one, -one, np.zeros(1), np.zeros(1))
    timing = CycleTiming(compiled)
    t = timing.run(stream, 0)
    per = []
    for _ in range(5):
        cpu = time.process_time()
        for _ in range(2000):
            t = timing.run(stream, t)
        per.append((time.process_time() - cpu) / 2000 * 1e6)
    return statistics.median(per)


if __name__ == "__main__":
    main()
