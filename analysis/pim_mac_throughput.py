"""All-bank MAC throughput of the bundled PIM systems: peak vs. what the cycle-accurate kernel gives.

    python analysis/pim_mac_throughput.py

For each PIM config, one channel sweeps `rows` DRAM rows with ACTAB, one MACAB per column of the row,
PREA (refresh on), and the table shows how much of the peak MAC rate survives row activation,
precharge and refresh. Peak: every PIM unit does `lanes_per_unit` multiply-adds per MACAB, and
MACABs issue back to back at the standard's MAC-to-MAC gap.
"""

from __future__ import annotations

from pimsim.config import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.dram.simulate import run_command_trace
from pimsim.dram.timing_state import K_REPEAT
from pimsim.trace.generate import pim_row_sweep


def row_sweep(name: str, rows: int = 1024) -> dict:
    c = compile_standard(load_hardware(name))
    hw = c.hw
    org, pim = hw.dram.organization, hw.pim
    macs = org.accesses_per_row
    result = run_command_trace(c, pim_row_sweep(c, rows=rows, macs_per_row=macs, channels=1))
    units = org.banks // pim.banks_per_unit
    flop_per_mac = 2 * pim.lanes_per_unit * units
    gap = int(c.spec.cmds[c.command_names.index("MACAB"), K_REPEAT])
    peak = flop_per_mac / (gap * hw.dram.tCK_s)
    achieved = rows * macs * flop_per_mac / (result.cycles * hw.dram.tCK_s)
    return {"config": name, "macs_per_row": macs, "mac_gap_cycles": gap, "cycles_per_row": result.cycles / rows,
            "peak_GFLOPS_per_channel": peak / 1e9, "achieved_GFLOPS_per_channel": achieved / 1e9,
            "efficiency": achieved / peak, "channels": org.channels,
            "row_hit_rate": result.summary()["row_hit_rate"]}


def main() -> None:
    print(f"{'config':<16}{'MACs/row':>9}{'gap':>5}{'cyc/row':>9}{'peak GF/ch':>12}{'sim GF/ch':>11}"
          f"{'eff.':>7}{'system TF':>11}{'hit rate':>10}")
    for name in ("gddr6-aim.yaml", "hbm-pim.yaml"):
        r = row_sweep(name)
        print(f"{r['config']:<16}{r['macs_per_row']:>9}{r['mac_gap_cycles']:>5}{r['cycles_per_row']:>9.1f}"
              f"{r['peak_GFLOPS_per_channel']:>12.1f}{r['achieved_GFLOPS_per_channel']:>11.1f}"
              f"{100 * r['efficiency']:>6.1f}%{r['achieved_GFLOPS_per_channel'] * r['channels'] / 1e3:>11.2f}"
              f"{100 * r['row_hit_rate']:>9.2f}%")


if __name__ == "__main__":
    main()
