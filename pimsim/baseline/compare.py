"""Speed-up and energy efficiency of the simulated PIM system over baselines, every number labelled with
where it comes from: measured (a ``pimsim baseline`` record, which names its method), roofline bound (a
device description's best case), simulated (pimsim's PIM run) or paper (PIM-GPT's published ranges).

Beside each pair of ratios stands the power ratio, baseline power / PIM power, which is exactly the
energy-efficiency ratio / the speed-up ratio; the paper's own ranges imply one too (REFERENCE.md section
3b: about 2.8-3.0 for its T4 GPU, about 0.5 for its CPU, which therefore drew about half of PIM-GPT's
power, not a socket's 200 W). A reader who sees pimsim's power ratio far from the paper's sees why the
energy figures differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pimsim.baseline.devices import load_device
from pimsim.baseline.measure import NVML_MIN_WINDOW_S
from pimsim.baseline.methods import METHODS
from pimsim.baseline.roofline import roofline
from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.run_types import RunResult, RunSpec
from pimsim.runs import simulate_loaded
from pimsim.workloads.cards import ModelCard
from pimsim.workloads.tracer import traced_graph

# PIM-GPT, journal version (Wu, Wang, Lu, npj Unconventional Computing 1, 4, 2024): ranges over its 8 models.
PAPER_SOURCE = "PIM-GPT (npj Unconv. Comput. 2024), range over its 8 models"
PAPER = {
    "gpu": {"device": "NVIDIA T4", "speedup": (41.0, 137.0), "energy_efficiency": (123.0, 383.0)},
    "cpu": {"device": "Intel Xeon Gold 6154", "speedup": (631.0, 1074.0), "energy_efficiency": (320.0, 602.0)},
}


def paper_power_ratio(kind: str) -> tuple[float, float]:
    """Baseline power / PIM-GPT power implied by the paper's ranges: energy-efficiency ratio / speed-up ratio
    at each end of the range (GPU 123/41 and 383/137; CPU 320/631 and 602/1074), low to high."""
    paper = PAPER[kind]
    ends = [e / s for e, s in zip(paper["energy_efficiency"], paper["speedup"])]
    return min(ends), max(ends)


@dataclass(frozen=True)
class PimFigures:
    """The few figures of a simulated run that a comparison needs."""

    latency_per_token_s: float
    energy_per_token_J: float | None
    config_hash: str


def pim_figures(result: RunResult) -> PimFigures:
    """The one place a comparison reads a simulated run's result."""
    return PimFigures(result.latency_per_token_s, result.energy_per_token_J, result.config_hash)


@dataclass(frozen=True)
class Baseline:
    """One baseline's per-token figures and what each is."""

    name: str
    kind: str  # "measured" or "roofline"
    method: str  # a measured method (paper, compiled, eager) or "roofline"
    label: str  # e.g. "measured, paper method (...)" or "roofline bound (...)"
    device_kind: str  # "cpu" or "gpu": which of the paper's baselines it stands beside
    provenance: str
    prompt_len: int
    gen_tokens: int
    latency_per_token_s: float
    energy_per_token_J: float | None
    energy_label: str  # "measured: ...", "estimate: ..." or "roofline bound: ..."


REQUIRED = ("kind", "model", "device", "dtype", "prompt_len", "gen_tokens", "latency_per_token_s", "host")


def measured_baseline(path: Path, card: ModelCard) -> Baseline:
    """A ``pimsim baseline`` record. One without a method label is refused: its numbers cannot be set
    beside others without saying how they were measured."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PimsimError(f"--baseline {path}: not a readable JSON record ({exc})") from None
    if not isinstance(record, dict) or record.get("kind") != "measured":
        raise PimsimError(f"--baseline {path}: not a `pimsim baseline` record")
    problems = [f"no {key!r}" for key in REQUIRED if key not in record]
    if record.get("model") != card.name:
        problems.append(f"measures {record.get('model')}, not {card.name}")
    if record.get("method") not in METHODS or "method_label" not in record:
        problems.append(f"no method label ({record.get('method')!r}; one of {', '.join(METHODS)} expected): "
                        f"measured before `pimsim baseline` recorded its method; measure it again with "
                        f"--method paper, compiled or eager")
    if record.get("device") == "cpu" and "core_power" not in record:
        problems.append("a CPU record without its core_power block (the power its cores are charged)")
    if problems:
        raise PimsimError(f"--baseline {path}: " + "; ".join(problems))
    host = record["host"]
    where = host.get("gpu") or host["cpu"]
    provenance = (f"{record['device']} {record['dtype']} on {where}, torch {host['torch']}, "
                  f"{host['torch_threads']} threads, OMP_WAIT_POLICY={host['OMP_WAIT_POLICY']}, "
                  f"median of {record['gen_tokens']} tokens")
    energy, energy_label = _measured_energy(record)
    return Baseline(str(path), "measured", record["method"], record["method_label"],
                    "cpu" if record["device"] == "cpu" else "gpu", provenance, record["prompt_len"],
                    record["gen_tokens"], record["latency_per_token_s"], energy, energy_label)


_GPU_SPECS = {"H100": "h100", "A100": "a100", "T4": "t4"}


def _measured_energy(record: dict) -> tuple[float | None, str]:
    """A CPU run is charged its cores (``core_power``: the RAPL core domain, or TDP / cores); a GPU run its
    NVML energy counter, else its board's spec power x the measured time, else nothing."""
    if record["device"] == "cpu":
        cp = record["core_power"]
        kind = "measured" if cp["kind"] == "measured" else "estimate"
        return cp["energy_per_token_J"], (f"{kind}: {cp['cores_charged']} core(s) x {cp['per_core_W']:.2f} W, "
                                          f"{cp['source']}")
    window_s = sum(record.get("per_token_s") or ()) or record["gen_tokens"] * record["latency_mean_s"]
    short = (record.get("energy_kind") or "").startswith("NVML") and window_s < NVML_MIN_WINDOW_S
    if record.get("energy_per_token_J") is not None and not short:
        return record["energy_per_token_J"], f"measured: {record['energy_kind']}"
    if short:  # a record made before NVML windows were checked: its reading is not used, nor replaced by a
        # board's spec power (at batch 1 a GPU draws a fraction of it: 110-180 W of an H100's/H200's 700 W here)
        return None, (f"none: its {window_s:.2f} s NVML window is too short to read (under {NVML_MIN_WINDOW_S:g} s); "
                      "measure it again with more --gen-tokens")
    gpu = record["host"].get("gpu") or ""
    for key, spec_name in _GPU_SPECS.items():
        if key in gpu:
            power = load_device(spec_name).power_W
            return (power * record["latency_per_token_s"],
                    f"estimate: {spec_name} spec power {power:g} W x measured time (no readable counter)")
    return None, f"none (no counter and no spec for {gpu!r})"


def roofline_baseline(name: str, card: ModelCard, prompt_len: int, gen_tokens: int) -> Baseline:
    spec = load_device(name)
    base = roofline(spec, traced_graph(card), prompt_len, gen_tokens)
    label = f"roofline bound ({spec.name}, {base['dtype']}, {base['bound']}-bound)"
    provenance = f"{base['description']} ({base['spec']['source']})"
    return Baseline(name, "roofline", "roofline", label, spec.kind, provenance, prompt_len, gen_tokens,
                    base["latency_per_token_s"], base["energy_per_token_J"],
                    f"roofline bound: {spec.power_W:g} W spec power x bound time")


def compare(hw: HardwareConfig, card: ModelCard, baselines: list[str], prompt_len: int | None = None,
            gen_tokens: int | None = None, fidelity: str = "fast") -> dict:
    if not baselines:
        raise PimsimError("name at least one --baseline (a record from `pimsim baseline`, or a device: "
                          "t4, a100, h100, xeon-gold-6154, this-machine)")
    prompt_len = card.defaults.prompt_len if prompt_len is None else prompt_len
    gen_tokens = card.defaults.gen_tokens if gen_tokens is None else gen_tokens
    bases = []
    for name in baselines:
        path = Path(name)
        if path.suffix == ".json" or path.is_file():
            bases.append(measured_baseline(path, card))
        else:
            bases.append(roofline_baseline(name, card, prompt_len, gen_tokens))
    pim_runs: dict[tuple, PimFigures] = {}
    rows = []
    for base in bases:
        key = (base.prompt_len, base.gen_tokens)
        if key not in pim_runs:
            spec = RunSpec(model=card.name, hw=hw.name, prompt_len=key[0], gen_tokens=key[1], fidelity=fidelity)
            pim_runs[key] = pim_figures(simulate_loaded(spec, hw, card))
        rows.append(comparison_row(base, pim_runs[key]))
    return {"model": card.name, "hw": hw.name, "fidelity": fidelity, "rows": rows,
            "pim_config_hash": {f"{p}+{g}": r.config_hash for (p, g), r in pim_runs.items()}}


def comparison_row(base: Baseline, pim: PimFigures) -> dict:
    """The ratios of one baseline over the PIM run, with the power ratio and the paper's ranges beside them."""
    speedup = base.latency_per_token_s / pim.latency_per_token_s
    energy, pim_energy = base.energy_per_token_J, pim.energy_per_token_J
    base_power = energy / base.latency_per_token_s if energy is not None else None
    pim_power = pim_energy / pim.latency_per_token_s if pim_energy is not None else None
    paper = PAPER[base.device_kind]
    return {
        "baseline": base.name, "kind": base.kind, "method": base.method, "label": base.label,
        "provenance": base.provenance, "prompt_len": base.prompt_len, "gen_tokens": base.gen_tokens,
        "sources": {"baseline": "measured" if base.kind == "measured" else "roofline bound", "pim": "simulated",
                    "paper": PAPER_SOURCE},
        "baseline_latency_per_token_s": base.latency_per_token_s,
        "pim_latency_per_token_s": pim.latency_per_token_s,
        "speedup": speedup,
        "baseline_energy_per_token_J": energy, "baseline_energy_kind": base.energy_label,
        "pim_energy_per_token_J": pim_energy,
        "energy_efficiency": energy / pim_energy if energy is not None and pim_energy else None,
        "baseline_power_W": base_power, "pim_power_W": pim_power,
        "power_ratio": base_power / pim_power if base_power is not None and pim_power else None,
        "paper": {"device": paper["device"], "speedup": list(paper["speedup"]),
                  "energy_efficiency": list(paper["energy_efficiency"]),
                  "power_ratio": list(paper_power_ratio(base.device_kind))},
    }


def _num(value: float | None, scale: float, digits: int) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _x(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _range(pair, digits: int = 0) -> str:
    return f"{pair[0]:.{digits}f}-{pair[1]:.{digits}f}x"


def format_comparison(out: dict) -> str:
    """The table ``pimsim compare`` prints: baseline figures (measured or roofline bound), the PIM run's
    (simulated), the ratios, the power ratio, and the paper's ranges for the same kind of device."""
    lines = [f"{out['model']} on {out['hw']} ({out['fidelity']} fidelity). Sources: baseline = measured or "
             f"roofline bound (per row); PIM = simulated; paper = {PAPER_SOURCE}.",
             "W ratio = baseline power / PIM power = energy eff. / speed-up.",
             f"{'baseline':<24}{'source':<16}{'ms/token':>10}{'PIM ms':>9}{'speed-up':>10}{'mJ/token':>11}"
             f"{'PIM mJ':>9}{'energy eff.':>12}{'base W':>9}{'PIM W':>8}{'W ratio':>9}"
             f"{'paper: speed-up':>17}{'energy eff.':>13}{'W ratio':>12}"]
    for r in out["rows"]:
        name = Path(r["baseline"]).name if r["kind"] == "measured" else r["baseline"]
        paper = r["paper"]
        lines.append(
            f"{name[:23]:<24}{r['sources']['baseline']:<16}{_num(r['baseline_latency_per_token_s'], 1e3, 3):>10}"
            f"{_num(r['pim_latency_per_token_s'], 1e3, 3):>9}{_x(r['speedup']):>10}"
            f"{_num(r['baseline_energy_per_token_J'], 1e3, 2):>11}{_num(r['pim_energy_per_token_J'], 1e3, 3):>9}"
            f"{_x(r['energy_efficiency']):>12}{_num(r['baseline_power_W'], 1, 1):>9}"
            f"{_num(r['pim_power_W'], 1, 2):>8}{_x(r['power_ratio'], 2):>9}"
            f"{_range(paper['speedup']):>17}{_range(paper['energy_efficiency']):>13}"
            f"{_range(paper['power_ratio'], 2):>12}")
        lines.append(f"    {r['label']}; {r['provenance']}")
        lines.append(f"    energy: {r['baseline_energy_kind']}; paper's figures are against its {paper['device']}")
    return "\n".join(lines)
