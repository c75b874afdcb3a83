"""Start-up time of the command line: wall seconds of fresh `pimsim` processes, per command.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/startup.py [--repeat 7]

Each command runs --repeat times in a fresh process (after one untimed run that fills the numba, graph
and bytecode caches); the median and min wall seconds are printed, and the median CPU seconds (user +
system) of the process, the steadier figure on a shared machine, next to a bare `python -c pass`.

Python's bytecode cache is on, as in an installed copy (pip compiles every module): the processes write
their .pyc files under a temporary folder (PYTHONPYCACHEPREFIX), even where PYTHONDONTWRITEBYTECODE is
set, which would otherwise make every run compile pimsim's modules from source again (about 0.1 s for
`pimsim kernel`). `--source` keeps the environment's setting instead.

The "floor" rows time the libraries alone, in the same fresh processes: `import numba` (numpy with it);
numba's floor for a command that runs a kernel, that is numba's import and the first call of a cached
one-line kernel (a `cache=True` function summing an array, compiled by the untimed run), which makes
numba set up its compiler context (every typing and lowering registry: numba's own cost, paid once per
process whatever the kernel); pydantic with pimsim's config models; and matplotlib's Figure with the Agg
canvas (what `pimsim plot` draws with). A command cannot start faster than its floor.
`python -X importtime -m pimsim ...` shows where a command's imports go.

`--baseline DIR` times a second copy of pimsim (a checkout of another commit: DIR holds its `pimsim`
package, put first on PYTHONPATH) in the same loop: each repeat runs the baseline, then this one, so a
change of the machine's load hits both alike, and prints both columns.
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


FLOOR_KERNEL = """
import numba


@numba.njit(cache=True)
def total(values):
    s = 0
    for v in values:
        s += v
    return s
"""


def floors(tmp: Path) -> list[tuple[str, list[str]]]:
    (tmp / "floor_kernel.py").write_text(FLOOR_KERNEL)
    first_call = f"import sys; sys.path.insert(0, {str(tmp)!r}); import numpy, floor_kernel; " \
                 "floor_kernel.total(numpy.arange(3))"
    return [
        ("floor: import numba (with numpy)", [sys.executable, "-c", "import numba"]),
        ("floor: import numba + first call of a cached one-line kernel", [sys.executable, "-c", first_call]),
        ("floor: import pydantic + pimsim.config.models", [sys.executable, "-c", "import pimsim.config.models"]),
        ("floor: import matplotlib.figure + the Agg canvas",
         [sys.executable, "-c", "import matplotlib.figure, matplotlib.backends.backend_agg"]),
    ]


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
    parser.add_argument("--source", action="store_true",
                        help="keep the environment's bytecode setting (PYTHONDONTWRITEBYTECODE compiles from source)")
    parser.add_argument("--no-floors", action="store_true", help="time pimsim's commands only")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also time the pimsim package under DIR (another checkout), interleaved")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # this checkout's pimsim, whatever is installed (the processes run in a temporary folder)
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        if not args.source:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        print("bytecode: " + ("as the environment has it (PYTHONDONTWRITEBYTECODE="
                              f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')})" if args.source
                              else "cached under a temporary PYTHONPYCACHEPREFIX"))
        # a run record for the plot, and warm numba / graph caches
        subprocess.run(PIMSIM + ["run", "--hw", "gddr6-aim.yaml", "--model", "gpt2", "--gen-tokens", "2",
                                 "--prompt-len", "8", "--quiet", "--json", str(tmp / "run.json")],
                       check=True, env=env, stdout=subprocess.DEVNULL, cwd=tmp)
        # in the temporary folder: `python -m` puts the working directory first on sys.path, where a
        # checkout's own pimsim would hide the baseline's
        variants = [("", env)]
        if args.baseline:
            variants = [("baseline ", {**env, "PYTHONPATH": os.path.abspath(args.baseline)}), ("this ", env)]
        for label, argv in (commands(tmp) if args.no_floors else commands(tmp) + floors(tmp)):
            times: dict[str, list[float]] = {name: [] for name, _ in variants}
            cpus: dict[str, list[float]] = {name: [] for name, _ in variants}
            for _, variant_env in variants:
                subprocess.run(argv, check=True, env=variant_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=tmp)
            for _ in range(args.repeat):
                for name, variant_env in variants:
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    subprocess.run(argv, check=True, env=variant_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=tmp)
                    times[name].append(time.perf_counter() - start)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpus[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            figures = "; ".join(f"{name}{statistics.median(times[name]):6.3f} s wall median (min "
                                f"{min(times[name]):.3f}), {statistics.median(cpus[name]):6.3f} s CPU"
                                for name, _ in variants)
            print(f"{figures}, of {args.repeat}  {label}", flush=True)


if __name__ == "__main__":
    main()
