"""Device-level validation of the hbm-pim preset against Samsung's public HBM-PIM figures.

    python analysis/validation_hbm_pim.py

:func:`rows` returns the table rows (pimsim vs the vendor, each with its source and what differs);
:func:`print_table` prints them. ``analysis/validation.py`` renders :func:`rows` and :func:`closed_form_rows`
as its HBM-PIM section (``analysis/validation.md``).

Samsung's figures (REFERENCE.md section 3): PIMSimulator's PIMBenchFixture.gemv, a 4096 x 4096 FP16
GEMV on 64 pseudo-channels (system_hbm_64ch.ini, 2 ranks per channel, staggered refresh, refresh on),
13,166 cycles with PIM and 36,082 without (2.74x); its PIMKernelFixture.gemv functional test (a
4096 x 1024 GEMV checked against numpy).

pimsim is configured as close to that as it can be (:func:`bench_hardware`): 64 pseudo-channels, 16,384
rows (PIMSimulator's HBM2_samsung_2M_16B_x64.ini), refresh on, the vendor's kernel with its write-back
(``results="write_back"``). What differs is listed in each row's ``differs`` field.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pimsimulator_rules as vendor  # analysis/ is on sys.path: run as a script, via validation.py or the tests

from pimsim.config.loader import load_hardware
from pimsim.dram.compile import compile_standard
from pimsim.dram.simulate import run_command_trace
from pimsim.mapper import hbm_pim_gemv
from pimsim.mapper.placement import Geometry
from pimsim.trace.files import CommandTrace

VENDOR_PIM_CYCLES = 13_166  # PIMSimulator PIMBenchFixture.gemv, 4096 x 4096, 64 channels, refresh on
VENDOR_NO_PIM_CYCLES = 36_082
VENDOR_SOURCE = "SAITPublic/PIMSimulator src/tests/PIMBenchTestCases.{h,cpp} (gemv 4096x4096, system_hbm_64ch.ini)"
DIFFERS_NO_PIM = ("pimsim streams the weights only (the vendor also reads the input twice and writes the "
                  "output twice, 16 KB in all); pimsim's FR-FCFS controller, 1 rank")


def _fmt(a) -> str:
    return f"{a:,.3g}" if isinstance(a, float) else (f"{a:,}" if isinstance(a, int) else str(a))


def bench_hardware(refresh: bool = True):
    """hbm-pim.yaml as PIMSimulator's 64-channel bench runs it."""
    return load_hardware("hbm-pim.yaml", ["dram.organization.channels=64", "dram.organization.rows=16384",
                                          f"dram.refresh.enabled={'true' if refresh else 'false'}",
                                          "mapping.gemv=hbm_pim_gemv"])


def vendor_kernel_cycles(hw, rows: int, cols: int, results: str = "write_back") -> dict:
    """Cycles of the vendor's GEMV kernel on `hw` (every channel), with its command counts."""
    compiled = compile_standard(hw)
    placement = hbm_pim_gemv.place(hw, Geometry.of(hw), rows, cols)
    program = hbm_pim_gemv.hbm_pim_gemv_program(compiled, placement, Geometry.of(hw).lanes_out, results=results)
    n = len(program)
    trace = CommandTrace(line=np.arange(n) + 1, cycle=np.zeros(n, np.int64), has_cycles=False, cmd=program.cmd,
                         node=program.node, row=program.row, column=program.column, source="<hbm_pim_gemv>")
    summary = run_command_trace(compiled, trace).summary()
    refreshes = summary["commands"].get("REF", 0) // hw.dram.organization.channels
    return {"cycles": summary["cycles"], "commands": summary["commands"], "refreshes_per_channel": refreshes}


def closed_form_cycles(hw, rows: int, cols: int) -> int:
    """pimsim's cycles for the vendor GEMV (``results="read"``), refresh off, from the timing table alone.

    Per channel (all channels run the same stream at once), commands issue in order, each at its earliest
    legal cycle (row and column commands on their own buses may share a cycle):

    - SB -> AB: four ACT/PRE pairs, PRE nRAS after its ACT, the next ACT one cycle later; the CRF writes
      start with the last PRE, nBL apart, and PIMON follows nBL after them;
    - per output tile: T GRF_A writes max(nCCDL, nBL) apart after PIMON (register writes address one bank
      group), the first row's ACTAB with the last one, the first MAC max(nRCDRDMAC, nCWLGB + nBL + nWTRL)
      later (write-to-read: a MAC is a RD); MACs max(nCCDL, nBL) apart within a row; a row change inside a
      tile costs nRTP + nRP + nRCDRDMAC from MAC to MAC; a tile change (a new tile of the same bank, or the
      switch to the odd bank) puts the PREA nRTP after the last MAC, the first GRF_A write at
      max(nCL + nBL + 2 - nCWLGB, nRTP) (read-to-write turnaround), the ACTAB with the last write or nRP
      after the PREA, the first MAC max(nRCDRDMAC after the ACTAB, nCWLGB + nBL + nWTRL after the last
      write); R reads nBLRES apart start nRTP after the last MAC (with the PREA); PIMOFF nCLREG + nBLRES +
      2 - nCWLGB after the last read (bus turnaround), the next PIMON max(nCCDL, nBL) after it;
    - AB -> SB: two ACT/PRE pairs from PIMOFF; the stream ends nRP after the last PRE.
    """
    t = hw.dram.timing
    g = Geometry.of(hw)
    p = hbm_pim_gemv.place(hw, g, rows, cols)
    nbl, ras, rp, rtp = t["nBL"], t["nRAS"], t["nRP"], t["nRTP"]
    wgap = max(t["nCCDL"], nbl)  # register write to register write (one bank group)
    ccd = max(t["nCCDL"], nbl)
    write_to_mac = t["nCWLGB"] + nbl + t["nWTRL"]
    mac_after_act = max(t["nRCDRDMAC"], write_to_mac)
    writes = p.tile_accesses * g.writes_per_mac
    rows_per_tile = p.registers * p.tile_accesses // p.accesses_per_row
    if rows_per_tile * p.accesses_per_row != p.registers * p.tile_accesses:
        raise ValueError("the closed form covers tiles of whole DRAM rows (FP16 weights)")
    nit = p.input_tiles
    crf = len(hbm_pim_gemv.gemv_crf_program(nit, p.registers, p.tile_accesses))
    pimon = 4 * (ras + 1) - 1 + -(-crf // 8) * wgap
    macs = nit * p.registers * p.tile_accesses
    row_gap = rtp + rp + t["nRCDRDMAC"]
    last_write = max(t["nCL"] + nbl + 2 - t["nCWLGB"], rtp) + (writes - 1) * wgap  # after the last MAC
    tile_gap = max(max(last_write, rtp + rp) + t["nRCDRDMAC"], last_write + write_to_mac)
    switches = ((row_gap, nit * (rows_per_tile - 1)), (tile_gap, nit - 1))
    mac_span = (macs - 1) * ccd + sum(n * (gap - ccd) for gap, n in switches)
    read_to_write = t["nCLREG"] + t["nBLRES"] + 2 - t["nCWLGB"]
    tile = writes * wgap + mac_after_act + mac_span + rtp + (p.registers - 1) * t["nBLRES"] + read_to_write
    pimoff = pimon + p.output_tiles * tile + (p.output_tiles - 1) * wgap
    return pimoff + 2 * (ras + 1) - 1 + rp


# The vendor's rules that pimsim does not follow, in the order they are switched off one after another to
# measure each one's share (pimsimulator_rules.Rules fields): (field, value that removes the rule, cause)
RULE_SHARES = (
    ("ranks", 1, "2 ranks per channel: rank 0's first refresh at tREFI/2, rank 1's REF takes a command slot"),
    ("park", False, "park-in/park-out: 16 + 2 SB-mode writes per channel, each with its ACT (4 per tXAW)"),
    ("register_row", False, "register writes (GRF_A, CRF, PIMON/PIMOFF) are writes to row 0x3fff of the odd "
                            "(PIMON/PIMOFF: even) bank, which must be opened: the odd input tiles close and reopen "
                            "their bank twice each, and the eager precharge closes row 0x3fff between tiles"),
    ("trtrs", 2, "its read-to-write turnaround RL + BL/2 + tRTRS - WL with tRTRS 1 (assumed) is 15 cycles, "
                 "pimsim's (two idle bus cycles) 16"),
)  # pimsim follows its other rules: MACs are RDs to the bus turnarounds, register writes spaced tCCD_L
REMAINDER = ("pimsim's own stream under the vendor's timing otherwise: SB <-> AB as ACT/PRE pairs to the "
             "reserved rows (the vendor: writes, each with its ACT and a later PRE), issued in stream order "
             "(the vendor's queue reorders row commands within a barrier group)")
REFRESH_REMAINDER = ("pimsim's refresh: PREA, REF nRP later, the row reopened, where DRAMSim2 issues REF the cycle "
                     "after the precharge and lets MACs run until a precharge is due")


def vendor_decomposition(rows: int, cols: int, channels: int, timing: dict, refresh: bool) -> dict:
    """The vendor's cycles (``derived``) by pimsimulator_rules, and each rule's share: the cycles saved by
    switching it off after the ones before it (:data:`RULE_SHARES`); ``without_rules`` is what remains."""
    rules = vendor.Rules(refresh=refresh)
    derived = prev = vendor.gemv_cycles(rows, cols, channels, timing, rules).cycles
    shares = []
    for name, value, cause in RULE_SHARES:
        rules = replace(rules, **{name: value})
        now = vendor.gemv_cycles(rows, cols, channels, timing, rules).cycles
        shares.append((name, prev - now, cause))
        prev = now
    return {"derived": derived, "shares": shares, "without_rules": prev}


def describe_gap(pimsim_cycles: int, d: dict, remainder_refresh_off: int | None = None) -> str:
    """pimsim minus the derived vendor figure, term by term (the terms add up to it). With refresh on,
    ``remainder_refresh_off`` (the same shape's remainder with refresh off) splits the remainder into the
    stream's part and refresh's."""
    parts = [f"{-share:+,} {name}: {cause}" for name, share, cause in d["shares"] if share]
    remainder = pimsim_cycles - d["without_rules"]
    if remainder_refresh_off is None:
        parts.append(f"{remainder:+,} remainder: {REMAINDER}")
    else:
        parts.append(f"{remainder_refresh_off:+,} remainder as with refresh off: {REMAINDER}")
        parts.append(f"{remainder - remainder_refresh_off:+,} refresh: {REFRESH_REMAINDER}")
    return "; ".join(parts)


def rows(functional: bool = True) -> list[dict]:
    """pimsim vs Samsung's public HBM-PIM figures, one dict per figure."""
    from pimsim import kernels

    hw = bench_hardware()
    pim = vendor_kernel_cycles(hw, 4096, 4096)["cycles"]
    channels, timing = hw.dram.organization.channels, dict(hw.dram.timing)
    d = vendor_decomposition(4096, 4096, channels, timing, refresh=True)
    off = vendor_decomposition(4096, 4096, channels, timing, refresh=False)
    pim_off = vendor_kernel_cycles(bench_hardware(refresh=False), 4096, 4096)["cycles"]
    differs_pim = (f"the vendor's rules re-stated (pimsimulator_rules) give {d['derived']:,} cycles: "
                   f"{VENDOR_PIM_CYCLES - d['derived']:+,} not reproduced (what the re-statement leaves out: "
                   f"DRAMSim2's order of updates within a cycle, its end-of-run count, tRTRS assumed 1); pimsim "
                   f"vs those {d['derived']:,}: " + describe_gap(pim, d, pim_off - off["without_rules"]))
    no_pim = kernels._no_pim_baseline(compile_standard(hw), Geometry.of(hw), 4096, 4096)["cycles"]
    out = [
        {"figure": "4096x4096 GEMV, PIM (cycles)", "vendor": VENDOR_PIM_CYCLES, "pimsim": pim,
         "ratio": pim / VENDOR_PIM_CYCLES, "source": VENDOR_SOURCE, "differs": differs_pim},
        {"figure": "4096x4096 GEMV, no PIM (cycles)", "vendor": VENDOR_NO_PIM_CYCLES, "pimsim": no_pim,
         "ratio": no_pim / VENDOR_NO_PIM_CYCLES, "source": VENDOR_SOURCE, "differs": DIFFERS_NO_PIM},
        {"figure": "4096x4096 GEMV, speed-up", "vendor": VENDOR_NO_PIM_CYCLES / VENDOR_PIM_CYCLES,
         "pimsim": no_pim / pim, "ratio": (no_pim / pim) / (VENDOR_NO_PIM_CYCLES / VENDOR_PIM_CYCLES),
         "source": VENDOR_SOURCE, "differs": "both of the above"},
    ]
    if functional:
        rng = np.random.default_rng(0)
        W = rng.standard_normal((4096, 1024)).astype(np.float32)
        x = rng.standard_normal(1024).astype(np.float32)
        small = load_hardware("hbm-pim.yaml", ["mapping.gemv=hbm_pim_gemv"])
        got = kernels.gemv(small, W=W, x=x).stats["functional"]
        out.append({"figure": "4096x1024 FP16 GEMV, functional (max |error| / sum of |products|)",
                    "vendor": "matches numpy (PIMKernelFixture.gemv)",
                    "pimsim": got["max_error_relative_to_sum_of_magnitudes"],
                    "ratio": None, "source": "SAITPublic/PIMSimulator src/tests/KernelTestCases.cpp (gemv)",
                    "differs": "pimsim's own random data (the vendor's .npy inputs are not shipped); FP16 GRF_B "
                               "accumulation in the kernel's order, lanes added in FP32 by the ASIC"})
    return out


SHAPES = {"small": (7, 33), "square": (4096, 4096), "tall": (8192, 512), "wide": (512, 8192),
          "LM head (gpt2-xl)": (50257, 1600)}


def closed_form_rows(shapes: dict | None = None) -> list[dict]:
    """The vendor GEMV on hbm-pim.yaml (16 pseudo-channels, the ``read`` results path): pimsim's closed form
    (refresh off) beside the simulated cycles with refresh off and on."""
    out = []
    off, on = (load_hardware("hbm-pim.yaml", ["mapping.gemv=hbm_pim_gemv", f"dram.refresh.enabled={r}"])
               for r in ("false", "true"))
    for name, (m, n) in (shapes or SHAPES).items():
        sim_off = vendor_kernel_cycles(off, m, n, results="read")
        sim_on = vendor_kernel_cycles(on, m, n, results="read")
        out.append({"shape": name, "rows": m, "cols": n, "closed_form": closed_form_cycles(off, m, n),
                    "simulated_refresh_off": sim_off["cycles"], "simulated_refresh_on": sim_on["cycles"],
                    "refreshes": sim_on["refreshes_per_channel"]})
    return out


def vendor_shape_rows(shapes: dict | None = None) -> list[dict]:
    """The vendor's kernel (write-back results) on hbm-pim.yaml's 16 pseudo-channels, refresh off and on:
    pimsim's simulated cycles beside the vendor's cycles derived from its rules, and the gap term by term."""
    out, remainder_off = [], {}
    for refresh in (False, True):
        hw = load_hardware("hbm-pim.yaml",
                           ["mapping.gemv=hbm_pim_gemv", f"dram.refresh.enabled={str(refresh).lower()}"])
        for name, (m, n) in (shapes or SHAPES).items():
            sim = vendor_kernel_cycles(hw, m, n, results="write_back")["cycles"]
            d = vendor_decomposition(m, n, hw.dram.organization.channels, dict(hw.dram.timing), refresh)
            if not refresh:
                remainder_off[name] = sim - d["without_rules"]
            split = remainder_off[name] if refresh else None
            out.append({"shape": name, "rows": m, "cols": n, "refresh": refresh, "pimsim": sim,
                        "derived": d["derived"], "cause": describe_gap(sim, d, split)})
    return out


def print_table(table: list[dict]) -> None:
    print("| figure | Samsung | pimsim | pimsim / Samsung | source | what differs |")
    print("|---|---|---|---|---|---|")
    for r in table:
        v, p = r["vendor"], r["pimsim"]
        fmt = _fmt
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(f"| {r['figure']} | {fmt(v)} | {fmt(p)} | {ratio} | {r['source']} | {r['differs']} |")


if __name__ == "__main__":
    print_table(rows())
    print()
    print("| shape | M x N | closed form, refresh off | simulated, refresh off | simulated, refresh on |")
    print("|---|---|---|---|---|")
    for r in closed_form_rows():
        print(f"| {r['shape']} | {r['rows']:,} x {r['cols']:,} | {r['closed_form']:,} | {r['simulated_refresh_off']:,} "
              f"| {r['simulated_refresh_on']:,} |")
