"""Regenerate the traces bundled in ``workloads/``: ``python -m pimsim.trace.bundled [OUT_DIR]``."""

from __future__ import annotations

import sys
from pathlib import Path

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.trace.files import write_commands, write_requests
from pimsim.trace.generate import pim_row_sweep, streaming_reads

GEMV = "gemv-2048x1024-aim.csv"
STREAM = "stream-read.csv"


def write_all(out_dir: Path) -> list[Path]:
    aim = compile_standard(load_hardware("gddr6-aim.yaml"))
    write_commands(out_dir / GEMV, aim, pim_row_sweep(aim, rows=16, macs_per_row=64, with_io=True))
    write_requests(out_dir / STREAM, streaming_reads(16384))
    return [out_dir / GEMV, out_dir / STREAM]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "workloads"
    for path in write_all(target):
        print(path)
