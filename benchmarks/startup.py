"""Start-up time of the command line: wall seconds of fresh `pimsim` processes, per command.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/startup.py [--repeat 7]

Each command runs --repeat times in a fresh process (after one untimed run that fills the numba and graph
caches); the median and min wall seconds are printed, and the median CPU seconds (user + system) of the
process, the steadier figure on a shared machine, next to a bare `python -c pass`. Commands that trace no model should
start in well under a second; those that run a numba kernel pay numba's own start (its import and the
first cached-kernel load: about 0.5 s on a 2-core x86_64) on top. `python -X importtime -m pimsim ...` shows
where a command's imports go.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _host import describe  # noqa: E402

PIMSIM = [sys.executable, "-m", "pimsim"]


def commands(tmp: Path) -> list[tuple[str, list[str]]]:
    run_json = tmp / "run.json"
    return [
        ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"]),
        ("pimsim --version", PIMSIM + ["--version"]),
        ("pimsim config list", PIMSIM + ["config", "list"]),
        ("pimsim validate gddr6-aim.yaml", PIMSIM + ["validate", "gddr6-aim.yaml"]),
        ("pimsim config show hbm-pim.yaml", PIMSIM + ["config", "show", "hbm-pim.yaml"]),
        ("pimsim model list", PIMSIM + ["model", "list"]),
        ("pimsim kernel gemv --hw gddr6-aim.yaml --rows 64 --cols 64",
         PIMSIM + ["kernel", "gemv", "--hw", "gddr6-aim.yaml", "--rows", "64", "--cols", "64"]),
        ("pimsim trace run gemv-2048x1024-aim.csv --hw gddr6-aim.yaml",
         PIMSIM + ["trace", "run", "gemv-2048x1024-aim.csv", "--hw", "gddr6-aim.yaml"]),
        ("pimsim plot breakdown run.json --out fig.png",
         PIMSIM + ["plot", "breakdown", str(run_json), "--out", str(tmp / "fig.png")]),
        ("pimsim run --hw gddr6-aim.yaml --model gpt2 --gen-tokens 1 --prompt-len 8 (cached graph)",
         PIMSIM + ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "1", "--prompt-len", "8",
                   "--quiet"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        # a run record for the plot, and warm numba / graph caches
        subprocess.run(PIMSIM + ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "2",
                                 "--prompt-len", "8", "--quiet", "--json", str(tmp / "run.json")],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        for label, argv in commands(tmp):
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times, cpus = [], []
            for _ in range(args.repeat):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            print(f"{statistics.median(times):6.3f} s wall median (min {min(times):.3f}), "
                  f"{statistics.median(cpus):6.3f} s CPU, of {args.repeat}  {label}", flush=True)


if __name__ == "__main__":
    main()
