"""Device-level validation: pimsim's bundled PIM devices against their vendors' public models.

    python analysis/validation.py [--out analysis/validation.md]

Writes ``analysis/validation.md``: one table row per benchmark, with pimsim's cycles, the peer's
figure, the difference and its cause, and where the peer's figure comes from.

GDDR6-AiM (SK hynix's public AiM simulator, arkhadem/aim_simulator). Its sources cannot be compiled or
run here, so its figures are closed forms of its own rules, applied to the same command schedule
pimsim runs (:func:`aim_vendor_cycles`), the rules read from its device model (src/dram/impl/GDDR6.cpp,
preset GDDR6_AiM_timing), its controller (src/dram_controller/impl/AiM_dram_controller.cpp) and its DMA
(src/memory_system/impl/aim_DRAM_system.cpp):

- the controller serves its queue in order and issues at most one command per cycle;
- an instruction that needs the other mode (WR_GB and RD_MAC need register mode, MAC_ABK MAC mode)
  first gets a TMOD, issued on the cycle its own command could issue; every command waits nMODCH after
  a TMOD;
- MAC_ABK opens its row lazily: PREA (when open rows hold another row) then ACT16, then MAC16 every
  max(nCCDS, nCCDL) cycles from nRCDRDMAC after the ACT16; PREA waits nRTP after a MAC, nRAS after an
  ACT16; ACT16 waits nRP after a PREA;
- WRGB every max(nBL, nCCDS) cycles; RDMAC nCCDL after a MAC; WRGB nCLREG + nBL + 3 - nCWLGB + nWPRE
  after an RDMAC;
- RD_MAC blocks the DMA: the next instruction reaches a channel on the cycle after the result
  returned (RDMAC + nCLREG + nBL + 1); every channel runs a prefix of the same schedule (checked), so
  the wait for every addressed channel is the wait for one and the slowest channel sets the time;
- a run ends when the last result has returned (RDMAC + nCLREG + nBL) or the last MAC is done (+1);
- it issues no refresh, and counts cycles of a tCK it computes as 1 ns (2000 MT/s over its preset,
  whose own tCK is 0.5 ns): its cycle counts are compared, not its nanoseconds.

HBM-PIM (Samsung's public PIMSimulator, SAITPublic/PIMSimulator): its one published figure here is the
4096 x 4096 bench (REFERENCE.md section 3). Its sources cannot be built here either; its cycles for other
shapes (and the bench's, as a check of the derivation) are derived by ``analysis/pimsimulator_rules.py``,
which re-states its GEMV kernel's transaction sequence and its DRAMSim2 controller's rules, and each
difference from pimsim is measured by switching the vendor's rules off one after another
(``validation_hbm_pim.RULE_SHARES``); what remains is pimsim's own stream.

Another device's section is a function returning rows (dicts with the keys of :data:`COLUMNS`, or
:class:`Row`); add it to :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pimsim.config import load_hardware
from pimsim.dram.compile import Compiled, compile_standard
from pimsim.dram.simulate import run_command_trace
from pimsim.kernels import gemv
from pimsim.mapper.gemv import STRATEGIES
from pimsim.mapper.placement import Geometry, auto_pack, auto_split, place_gemv
from pimsim.trace.generate import pim_row_sweep

AIM = "gddr6-aim.yaml"
AIM_SIM = "arkhadem/aim_simulator"
OUT = Path(__file__).resolve().parent / "validation.md"

COLUMNS = ("device", "benchmark", "refresh", "pimsim_cycles", "peer_cycles", "difference", "cause", "source")

# GEMV shapes (output rows x input columns): small, square, tall, wide, LM-head sized (GPT-2 medium's
# 50257-token vocabulary over d_model 1024)
GEMV_SHAPES = (("small", 128, 128), ("square", 1024, 1024), ("tall", 4096, 1024), ("wide", 1024, 4096),
               ("LM head", 50257, 1024))
MICRO_ROWS = 1024  # AiM's test/micro_macab_1024_16banks: 1024 MAC_ABK instructions of 64 columns each


@dataclass(frozen=True)
class Row:
    device: str
    benchmark: str
    refresh: str
    pimsim_cycles: int
    peer_cycles: int
    difference: int
    cause: str
    source: str


# --- the AiM simulator's schedule, in closed form ---------------------------------------------------

def _channel_sequences(c: Compiled, cmd: np.ndarray, node: np.ndarray) -> dict[int, list[str]]:
    """Each channel's commands in stream order, without pimsim's own mode changes and precharges (the
    AiM controller decides those itself, from each instruction's mode and its open rows)."""
    names = c.command_names
    skip = {c.standard.mode_change, "PREA"}
    out: dict[int, list[str]] = {}
    chans = np.asarray(c.channel_of(node)) - int(c.level_base[0])
    for k, ch in zip(cmd.tolist(), chans.tolist()):
        if names[k] not in skip:
            out.setdefault(int(ch), []).append(names[k])
    return out


def aim_vendor_cycles(timing: dict[str, int], commands: list[str]) -> int:
    """Cycles the AiM simulator takes for one channel's WRGB / ACTAB / MACAB / RDMAC sequence from reset
    (MAC mode, banks closed), by the rules in the module docstring."""
    t = timing
    mac_gap = max(t["nCCDS"], t["nCCDL"])
    host_wait = t["nCLREG"] + t["nBL"] + 1
    mode, rows_open = "mac", False
    last = {"WRGB": None, "RDMAC": None, "MAC": None, "ACT": None, "PREA": None}
    prev = -1  # the channel's previous issue (one command per cycle)
    end = 0

    def switch(ready: int, want: str) -> int:
        nonlocal mode, prev
        if mode == want:
            return ready
        prev = ready  # the TMOD
        mode = want
        return ready + t["nMODCH"]

    def after_rdmac(lat: int) -> int:
        return -1 if last["RDMAC"] is None else last["RDMAC"] + lat

    for name in commands:
        if name == "WRGB":
            ready = max(prev + 1, after_rdmac(max(host_wait, t["nCLREG"] + t["nBL"] + 3 - t["nCWLGB"] + t["nWPRE"])),
                        -1 if last["WRGB"] is None else last["WRGB"] + max(t["nBL"], t["nCCDS"]), 0)
            at = switch(ready, "register")
            last["WRGB"] = at
            end = max(end, at + t["nCWLGB"] + t["nBL"])
        elif name == "ACTAB":  # the start of a MAC_ABK instruction on a new row
            ready = max(prev + 1, after_rdmac(host_wait), 0)
            at = switch(ready, "mac")
            if rows_open:
                at = max(at, last["MAC"] + t["nRTP"], last["ACT"] + t["nRAS"])
                last["PREA"] = prev = at
                at += t["nRP"]
            last["ACT"] = at
            rows_open = True
            last["MAC"] = None
        elif name == "MACAB":
            at = last["ACT"] + t["nRCDRDMAC"] if last["MAC"] is None else last["MAC"] + mac_gap
            at = max(at, prev + 1)
            last["MAC"] = at
            end = max(end, at + 1)
        elif name == "RDMAC":
            ready = max(prev + 1, last["MAC"] + t["nCCDL"], after_rdmac(host_wait))
            at = switch(ready, "register")
            last["RDMAC"] = at
            end = max(end, at + t["nCLREG"] + t["nBL"])
        else:
            raise ValueError(f"the AiM closed form has no rule for {name}")
        prev = at
    return end


# --- the rows -----------------------------------------------------------------------------------------

def aim_micro_benchmark() -> Row:
    """AiM's MAC micro-benchmark: 1024 rows x 64 all-bank MACs, on every channel."""
    hw = load_hardware(AIM, ["dram.refresh.enabled=false"])
    c = compile_standard(hw)
    t = c.timing
    trace = pim_row_sweep(c, rows=MICRO_ROWS, macs_per_row=hw.dram.organization.accesses_per_row, channels=1)
    sim = run_command_trace(c, trace).cycles
    seq = _channel_sequences(c, trace.cmd, trace.node)[0]
    peer = aim_vendor_cycles(t, seq)
    start, tail = t["nMODCH"], t["nRTP"] + t["nRP"] - 1
    return Row("GDDR6-AiM", f"MAC micro-benchmark: {MICRO_ROWS} rows x 64 MAC_ABK", "off", sim, peer, sim - peer,
               f"+{start}: pimsim's trace starts in register mode and switches once; +{tail}: it ends when the "
               f"last row's precharge is done (nRTP + nRP after the last MAC), AiM when the last MAC is",
               f"{AIM_SIM} test/micro_macab_1024_16banks.csv, closed form of its rules")


def aim_gemv_rows() -> list[Row]:
    rows = []
    for refresh in ("off", "on"):
        hw = load_hardware(AIM, [f"dram.refresh.enabled={'true' if refresh == 'on' else 'false'}"])
        c = compile_standard(hw)
        t = c.timing
        g = Geometry.of(hw)
        for label, m, n in GEMV_SHAPES:
            split = auto_split(g, m, n)
            placement = place_gemv(g, m, n, split=split, pack=auto_pack(g, m, n, split))
            program = STRATEGIES[hw.mapping.gemv](c, placement, g.lanes_out)
            sim = int(gemv(hw, m, n, functional=False).stats["cycles"])
            seqs = _channel_sequences(c, program.cmd, program.node)
            # AiM's RD_MAC waits for every addressed channel: the slowest channel's time only where every
            # channel runs a prefix of the longest schedule (the same waves, some with one more)
            longest = max(seqs.values(), key=len)
            if any(s != longest[:len(s)] for s in seqs.values()):
                raise ValueError(f"{m} x {n}: the channels run different schedules; the closed form would need "
                                 "AiM's lockstep at every result read")
            peer = max(aim_vendor_cycles(t, s) for s in seqs.values())
            start = t["nMODCH"]
            tail = (t["nCLREG"] + t["nBL"] + 1) + t["nRP"] - (t["nCLREG"] + t["nBL"])
            cause = (f"-{start}: AiM starts in MAC mode and switches once before its first buffer write (pimsim's "
                     f"streams start in register mode, where the previous GEMV left the channel); +{tail}: pimsim's "
                     f"stream closes its last row after the host wait, so the next stream finds the banks closed")
            if refresh == "on":
                off = next(r for r in rows if r.benchmark.endswith(f"{m} x {n}") and r.refresh == "off")
                cause = (f"{off.difference:+d} as with refresh off; {sim - off.pimsim_cycles:+d}: pimsim's refresh "
                         f"(AiM's simulator issues none)")
            rows.append(Row("GDDR6-AiM", f"GEMV {label}, {m} x {n}", refresh, sim, peer, sim - peer, cause,
                            f"{AIM_SIM}, closed form of its rules on pimsim's row_partition schedule"))
    return rows


def aim_rows() -> list[Row]:
    return [aim_micro_benchmark()] + aim_gemv_rows()


def hbm_pim_rows() -> list[Row | dict]:
    """HBM-PIM against Samsung's PIMSimulator (analysis/validation_hbm_pim.py): its 4096 x 4096 bench
    (64 pseudo-channels, refresh on) with PIM and without, the speed-up, the functional check; then the
    vendor kernel on hbm-pim.yaml's shapes against the vendor's cycles derived from its rules
    (analysis/pimsimulator_rules.py: no published figure exists for these shapes), refresh off and on,
    the difference term by term; then pimsim's own closed form of its schedule (refresh off: exact)."""
    import validation_hbm_pim as v  # analysis/ is on sys.path when run as a script; see _import_sibling

    out: list[Row | dict] = []
    for r in v.rows():
        if r["figure"].endswith("(cycles)"):
            out.append(Row("HBM-PIM", r["figure"].replace(" (cycles)", ""), "on", int(r["pimsim"]),
                           int(r["vendor"]), int(r["pimsim"]) - int(r["vendor"]),
                           f"pimsim / Samsung {r['ratio']:.3f}; {r['differs']}", r["source"]))
        elif r["ratio"] is not None:  # the speed-up: a ratio, not cycles
            out.append({"device": "HBM-PIM", "benchmark": r["figure"], "refresh": "on",
                        "pimsim_cycles": f"{r['pimsim']:.2f}x", "peer_cycles": f"{r['vendor']:.2f}x",
                        "difference": f"{r['ratio']:.3f} (ratio)", "cause": r["differs"], "source": r["source"]})
        else:  # the functional check
            out.append({"device": "HBM-PIM", "benchmark": r["figure"], "refresh": "-",
                        "pimsim_cycles": f"{r['pimsim']:.2e}", "peer_cycles": r["vendor"], "difference": "-",
                        "cause": r["differs"], "source": r["source"]})
    for r in v.vendor_shape_rows():
        out.append(Row("HBM-PIM", f"GEMV {r['shape']}, {r['rows']} x {r['cols']} (hbm-pim.yaml, write-back), "
                       "vendor's rules", "on" if r["refresh"] else "off", r["pimsim"], r["derived"],
                       r["pimsim"] - r["derived"], r["cause"],
                       f"{v.vendor.SOURCE}: derived, not measured (its rules re-stated in "
                       "analysis/pimsimulator_rules.py)"))
    for r in v.closed_form_rows():
        for refresh, sim in (("off", r["simulated_refresh_off"]), ("on", r["simulated_refresh_on"])):
            cause = ("none: the closed form is exact" if refresh == "off" else
                     f"{r['refreshes']} refreshes per channel (the closed form has none)")
            out.append(Row("HBM-PIM", f"GEMV {r['shape']}, {r['rows']} x {r['cols']} (hbm-pim.yaml)", refresh,
                           sim, r["closed_form"], sim - r["closed_form"], cause,
                           "pimsim's closed form of Samsung's GEMV kernel (validation_hbm_pim.closed_form_cycles), "
                           "not a vendor figure"))
    return out


def _import_sibling() -> None:
    """validation_hbm_pim lives beside this file; make it importable however this module was loaded."""
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)


_import_sibling()

# Each section: a title and a function returning its rows (Row or dicts with the keys of COLUMNS).
SECTIONS = [("GDDR6-AiM (SK hynix AiM simulator)", aim_rows),
            ("HBM-PIM (Samsung PIMSimulator)", hbm_pim_rows)]


def _cells(row) -> list[str]:
    d = asdict(row) if isinstance(row, Row) else dict(row)
    missing = [k for k in COLUMNS if k not in d]
    if missing:
        raise ValueError(f"a validation row lacks {missing}")
    return [f"{d[k]:,}" if isinstance(d[k], (int, np.integer)) else str(d[k]) for k in COLUMNS]


def render(sections) -> str:
    lines = ["# Device-level validation", "",
             "Generated by `python analysis/validation.py`; do not edit by hand. Cycles are device clock cycles "
             "(GDDR6-AiM: tCK 0.5 ns; HBM-PIM: tCK 1 ns). The peer's figure, the difference (pimsim minus peer) "
             "and its cause per "
             "row; the module docstring of analysis/validation.py says how each peer figure is obtained.", ""]
    for title, rows_of in sections:
        lines += [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows_of()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    text = render(SECTIONS)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
