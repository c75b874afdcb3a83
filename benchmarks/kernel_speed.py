"""Simulator speed: simulated commands per second and DRAM cycles per second.

    python benchmarks/kernel_speed.py [--repeat 5]

(a) a 1 M-request streaming-read trace on ddr4-2400 through the FR-FCFS controller;
(b) 1024 rows x 64 all-bank MACs per channel on all 8 channels of gddr6-aim through the in-order kernel;
(c) the same DDR4 stream as a ready-made command stream (ACT, 128 RD, PRE per row) through the kernel;
(d) 1024 rows x 32 all-bank MACs per channel on all 16 channels of hbm-pim through the in-order kernel
    (32 MACs fill an HBM-PIM row: 128 columns, bursts of 4).
A last block prints the kernel's command rate per bundled standard (the in-order kernel: (c), (b), (d)).
Refresh is on, as in a real run. Each case is compiled and warmed up first (compile time is printed
separately), then timed `--repeat` times; the median is reported. Single-threaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _host import describe  # noqa: E402

from pimsim.config import load_hardware  # noqa: E402
from pimsim.dram.compile import compile_standard  # noqa: E402
from pimsim.dram.simulate import run_command_trace, run_request_trace  # noqa: E402
from pimsim.dram.warmup import warm_up  # noqa: E402
from pimsim.trace.files import CommandTrace  # noqa: E402
from pimsim.trace.generate import pim_row_sweep, streaming_reads  # noqa: E402


def ddr4_command_stream(c, requests: int) -> CommandTrace:
    ids = {n: i for i, n in enumerate(c.command_names)}
    per_row = 128
    rows = requests // per_row
    cmd, node, row = [], [], []
    for r in range(rows):
        bank = int(c.bank_node(0, 0, r % 4, (r // 4) % 4))
        cmd += [ids["ACT"]] + [ids["RD"]] * per_row + [ids["PRE"]]
        node += [bank] * (per_row + 2)
        row += [r // 16] * (per_row + 1) + [-1]
    n = len(cmd)
    a = lambda x: np.asarray(x, np.int64)  # noqa: E731
    return CommandTrace(line=np.arange(n) + 2, cycle=np.zeros(n, np.int64), has_cycles=False, cmd=a(cmd),
                        node=a(node), row=a(row), column=np.full(n, -1, np.int64))


def measure(label, run, repeat):
    t0 = time.perf_counter()
    result = run()
    first = time.perf_counter() - t0
    times, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    s = result.summary()
    commands = sum(s["commands"].values())
    channels = len(s["channels"])
    med, cpu = statistics.median(times), statistics.median(cpus)
    print(f"{label}")
    print(f"  commands issued      {commands:,}   simulated cycles {s['cycles']:,} x {channels} channel(s)")
    print(f"  wall (median of {repeat}) {med:.3f} s   (min {min(times):.3f}, max {max(times):.3f}; "
          f"first call after warm-up {first:.2f} s); CPU (median) {cpu:.3f} s")
    print(f"  -> {commands / med / 1e6:.2f} M commands/s, {s['cycles'] / med / 1e6:.1f} M cycles/s, "
          f"{s['cycles'] * channels / med / 1e6:.1f} M channel-cycles/s")
    print(f"  -> {commands / cpu / 1e6:.2f} M commands per CPU second (the steadier figure on a shared machine)")
    return commands / med, commands / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    print(describe())
    print(f"numba {numba.__version__}, numpy {np.__version__}")
    print(f"warm-up (compile or load the numba kernels): {warm_up():.2f} s")
    ddr4 = compile_standard(load_hardware("ddr4-2400.yaml"))
    aim = compile_standard(load_hardware("gddr6-aim.yaml"))
    reads = streaming_reads(args.requests)
    measure(f"(a) ddr4-2400, {args.requests:,} streaming reads, FR-FCFS controller (queue 32)",
            lambda: run_request_trace(ddr4, reads), args.repeat)
    sweep = pim_row_sweep(aim, rows=1024, macs_per_row=64)
    rates = {}
    rates["gddr6-aim (GDDR6-AiM)"] = measure(
        "(b) gddr6-aim, 8 channels x 1024 rows x (ACTAB, 64 MACAB, PREA), in-order kernel",
        lambda: run_command_trace(aim, sweep), args.repeat)
    stream = ddr4_command_stream(ddr4, args.requests)
    rates["ddr4-2400 (DDR4)"] = measure(
        "(c) ddr4-2400, the same reads as a command stream (ACT, 128 RD, PRE), in-order kernel",
        lambda: run_command_trace(ddr4, stream), args.repeat)
    hbm = compile_standard(load_hardware("hbm-pim.yaml"))
    hbm_sweep = pim_row_sweep(hbm, rows=1024, macs_per_row=32)
    rates["hbm-pim (HBM2-PIM)"] = measure(
        "(d) hbm-pim, 16 channels x 1024 rows x (ACTAB, 32 MACAB, PREA), in-order kernel",
        lambda: run_command_trace(hbm, hbm_sweep), args.repeat)
    print("in-order kernel, commands per second per bundled standard (wall; per CPU second):")
    for name, (rate, cpu_rate) in rates.items():
        print(f"  {name:<24} {rate / 1e6:6.2f} M commands/s; {cpu_rate / 1e6:6.2f} M per CPU s")


if __name__ == "__main__":
    main()
