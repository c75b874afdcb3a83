"""Simulator speed of `pimsim run`: wall-clock seconds for whole token-generation runs.

    python benchmarks/run_speed.py [--repeat 3] [--cycle-tokens 32] [--skip-long] [--only a|b|c] [--parts]

(a) the README's run, as a user types it (a fresh process: Python, numba cache load, tracing cache);
(b) gpt2-xl on gddr6-aim, 1024 tokens, fast fidelity (in-process, after a warm-up run);
(c) gpt2-xl on gddr6-aim at cycle fidelity: seconds per token over --cycle-tokens tokens, and the
    projection to 1024 tokens (every command of every token goes through the kernel, a twin channel's by
    its kind's first, so the cost per token is flat apart from attention's growth with the context).

Medians of --repeat runs, wall-clock and, for (b) and (c), the CPU time of this process (all its threads:
on a shared machine the steadier figure). ``--parts`` splits (b)'s CPU time into building the steps of
ops (the lowering and the mapper: ``Lowerer.steps``), simulating the distinct streams
(``FastTiming._simulate``) and the rest (the per-token loop, ``FastTiming.run``, setting up the run).
Set OMP_WAIT_POLICY=PASSIVE on shared machines (numba and torch threads). benchmarks/cycle_parallel.py
measures (c) per thread count.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba

sys.path.insert(0, str(Path(__file__).parent))
from _host import describe  # noqa: E402

from pimsim.runs import run_model  # noqa: E402

CPU: list[float] = []  # CPU seconds (all threads of this process) of the last timed() call's runs


def timed(fn, repeat: int) -> list[float]:
    out = []
    CPU.clear()
    for _ in range(repeat):
        t, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - t)
        CPU.append(time.process_time() - cpu)
    return out


def show(label: str, times: list[float], extra: str = "", cpu: bool = True) -> None:
    spent = f"; CPU of this process (median) {statistics.median(CPU):.2f} s" if cpu else ""
    print(f"{label}\n  wall (median of {len(times)}) {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}){spent}{extra}")


def _time_parts() -> dict[str, float]:
    """Accumulate the CPU seconds spent building steps and simulating distinct streams (by wrapping the two
    functions that do them) into the returned dict, from now on."""
    from pimsim.engine.dram_timing import FastTiming
    from pimsim.engine.lowering import Lowerer

    spent = {"build": 0.0, "simulate": 0.0}

    def wrap(cls, name: str, part: str) -> None:
        inner = getattr(cls, name)

        def timed_call(*args, **kwargs):
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[part] += time.process_time() - start
        setattr(cls, name, timed_call)

    wrap(Lowerer, "steps", "build")
    wrap(FastTiming, "_simulate", "simulate")
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cycle-tokens", type=int, default=32)
    ap.add_argument("--skip-long", action="store_true", help="skip (b) and (c)")
    ap.add_argument("--only", choices=("a", "b", "c"), help="run this one alone")
    ap.add_argument("--parts", action="store_true", help="split (b)'s CPU time into its parts")
    args = ap.parse_args()
    wanted = (lambda part: args.only in (None, part))  # noqa: E731
    print(describe())
    print(f"numba threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS; cycle fidelity splits channels over them)")

    cmd = [sys.executable, "-m", "pimsim", "run", "--hw", "hbm-pim.yaml", "--model", "gpt2-xl", "--quiet"]
    run_model("hbm-pim.yaml", "gpt2-xl")  # fills the numba and graph caches, as a user's first run does
    if wanted("a"):
        show("(a) pimsim run --hw hbm-pim.yaml --model gpt2-xl   (16 tokens, fast, fresh process)",
             timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat), cpu=False)
    if args.skip_long:
        return
    if wanted("b"):
        run_model("gddr6-aim.yaml", "gpt2-xl", prompt_len=0, gen_tokens=4)
        parts = _time_parts() if args.parts else None
        show("(b) gpt2-xl on gddr6-aim, 1024 tokens from an empty cache, fast fidelity (in-process)",
             timed(lambda: run_model("gddr6-aim.yaml", "gpt2-xl", prompt_len=0, gen_tokens=1024), args.repeat))
        if parts is not None:
            runs = len(CPU)
            build, simulate = parts["build"] / runs, parts["simulate"] / runs
            print(f"  CPU per run (mean of {runs}): building steps {build:.2f} s, simulating distinct streams "
                  f"{simulate:.2f} s, the rest {sum(CPU) / runs - build - simulate:.2f} s")
    if not wanted("c"):
        return
    n = args.cycle_tokens
    times = timed(lambda: run_model("gddr6-aim.yaml", "gpt2-xl", prompt_len=0, gen_tokens=n, fidelity="cycle"),
                  args.repeat)
    per = statistics.median(times) / n
    show(f"(c) gpt2-xl on gddr6-aim, {n} tokens, cycle fidelity (in-process)", times,
         f"\n  -> {per:.3f} s per token at positions 0-{n - 1}, the first token's mapping included "
         f"(CPU {statistics.median(CPU) / n:.3f} s per token); later tokens cost more, as attention grows with "
         f"the context: time a whole run, e.g. pimsim run --fidelity cycle --prompt-len 0 --gen-tokens 1024")


if __name__ == "__main__":
    main()
