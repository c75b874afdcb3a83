"""Trace ingestion speed: reading and writing command traces, in commands per second.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/trace_ingest.py [--repeat 5] [--rows 4096] [--line-reader]

The trace of issue 20: gddr6-aim, 8 channels x 4096 rows x (ACTAB, 64 MACAB, PREA) = 2,162,688 commands
(a 42 MB CSV without a cycle column). Printed, each a median of --repeat after one warm-up:
  (a) reading the CSV (pimsim.trace.files.read_command_trace: the compiled scanner);
  (b) reading the same commands from Parquet;
  (c) writing the issued commands with cycles (the --emit-commands path), CSV and Parquet;
  (d) end to end: `pimsim trace run` in a fresh process (start-up, reading, simulating, summary), and
      `pimsim trace run --emit-commands` (CPU: the mean of the child processes);
  (e) with --line-reader, once: the line-by-line reader (the reader before the scanner, kept for the error
      pass), for the before/after comparison; it takes tens of seconds.
Wall and CPU seconds are both printed: on a shared machine the CPU time is the steadier figure.
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

from pimsim.config import load_hardware  # noqa: E402
from pimsim.dram.compile import compile_standard  # noqa: E402
from pimsim.dram.simulate import run_command_trace  # noqa: E402
from pimsim.trace.files import read_command_trace, read_command_trace_by_line, write_command_trace  # noqa: E402
from pimsim.trace.generate import pim_row_sweep  # noqa: E402


def timed(fn, repeat: int, warm: bool = True):
    if warm:
        fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def show(label: str, commands: int, wall: float, cpu: float | None = None) -> None:
    cpu_text = f", CPU {cpu:.3f} s -> {commands / cpu / 1e6:.1f} M/s of CPU" if cpu else ""
    print(f"{label}\n  {wall:.3f} s wall -> {commands / wall / 1e6:.2f} M commands/s{cpu_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--line-reader", action="store_true", help="also time the line-by-line reader once")
    args = parser.parse_args()
    print(describe())
    aim = compile_standard(load_hardware("gddr6-aim.yaml"))
    sweep = pim_row_sweep(aim, rows=args.rows, macs_per_row=64)
    n = len(sweep)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path, parquet_path = tmp / "sweep.csv", tmp / "sweep.parquet"
        rec = sweep_record(sweep)
        write_command_trace(csv_path, aim, rec, with_cycles=False)
        write_command_trace(parquet_path, aim, rec, with_cycles=False)
        print(f"trace: {n:,} commands, {csv_path.stat().st_size / 1e6:.1f} MB CSV, "
              f"{parquet_path.stat().st_size / 1e6:.1f} MB Parquet")
        show("(a) read the CSV (read_command_trace)", n, *timed(lambda: read_command_trace(csv_path, aim), args.repeat))
        show("(b) read the Parquet file", n, *timed(lambda: read_command_trace(parquet_path, aim), args.repeat))
        issued = run_command_trace(aim, read_command_trace(csv_path, aim), record=True).record
        m = len(issued)
        show(f"(c) write {m:,} issued commands with cycles, CSV (--emit-commands OUT.csv)", m,
             *timed(lambda: write_command_trace(tmp / "out.csv", aim, issued), args.repeat))
        show(f"(c) write {m:,} issued commands with cycles, Parquet (--emit-commands OUT.parquet)", m,
             *timed(lambda: write_command_trace(tmp / "out.parquet", aim, issued), args.repeat))
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        for extra in ([], ["--emit-commands", str(tmp / "emitted.csv")]):
            argv = [sys.executable, "-m", "pimsim", "trace", "run", str(csv_path), "--hw", "gddr6-aim.yaml", *extra]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs = max(1, args.repeat // 2)
            wall, _ = timed(lambda: subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL), runs,
                            warm=False)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / runs
            show(f"(d) end to end: pimsim trace run sweep.csv --hw gddr6-aim.yaml {' '.join(extra[:1])}".rstrip(),
                 n, wall, cpu)
        if args.line_reader:
            show("(e) the line-by-line reader (before)", n,
                 *timed(lambda: read_command_trace_by_line(csv_path, aim), 1, warm=False))


def sweep_record(sweep):
    """The trace as a kernel record (cycle, cmd, node, row, column, source) so the writer can write it."""
    import numpy as np

    return np.stack([sweep.cycle, sweep.cmd, sweep.node, sweep.row, sweep.column, np.arange(len(sweep))], axis=1)


if __name__ == "__main__":
    main()
