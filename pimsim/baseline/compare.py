"""Speed-up and energy efficiency of the simulated PIM system over baselines, each number labelled with
where it comes from: a measured run (a ``pimsim baseline`` JSON record) or a device roofline."""

from __future__ import annotations

import json
from pathlib import Path

from pimsim.baseline.devices import load_device
from pimsim.baseline.roofline import roofline
from pimsim.config.models import HardwareConfig
from pimsim.errors import PimsimError
from pimsim.run_types import RunResult, RunSpec
from pimsim.runs import simulate_loaded
from pimsim.workloads.cards import ModelCard
from pimsim.workloads.tracer import traced_graph


def _load_record(path: Path, card: ModelCard) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PimsimError(f"--baseline {path}: not a readable JSON record ({exc})") from None
    if not isinstance(record, dict) or record.get("kind") != "measured":
        raise PimsimError(f"--baseline {path}: not a `pimsim baseline` record")
    if record.get("model") != card.name:
        raise PimsimError(f"--baseline {path}: measures {record.get('model')}, not {card.name}")
    return record


CPU_CORE_W = 10.0  # assumed: power of one busy server core, for CPU runs without a readable counter
_GPU_SPECS = {"H100": "h100", "A100": "a100", "T4": "t4"}


def estimate_energy(base: dict) -> tuple[float | None, str]:
    """Energy per token of a measured run without a counter: busy cores x an assumed per-core power on
    a CPU; the named device's spec power on a GPU pimsim has a spec for; otherwise none."""
    t = base["latency_per_token_s"]
    if base["device"] == "cpu":
        cores = base["host"]["torch_threads"]
        return CPU_CORE_W * cores * t, f"estimate ({cores} busy cores x {CPU_CORE_W:g} W assumed x measured time)"
    gpu = base["host"].get("gpu") or ""
    for key, spec in _GPU_SPECS.items():
        if key in gpu:
            power = load_device(spec).power_W
            return power * t, f"estimate ({spec} spec power {power:g} W x measured time; no readable counter)"
    return None, f"none (no counter and no spec for {gpu!r})"


def compare(hw: HardwareConfig, card: ModelCard, baselines: list[str], prompt_len: int | None = None,
            gen_tokens: int | None = None, fidelity: str = "fast") -> dict:
    if not baselines:
        raise PimsimError("name at least one --baseline (a record from `pimsim baseline`, or a device: "
                          "t4, a100, h100, xeon-gold-6154, this-machine)")
    prompt_len = card.defaults.prompt_len if prompt_len is None else prompt_len
    gen_tokens = card.defaults.gen_tokens if gen_tokens is None else gen_tokens
    graph = traced_graph(card)
    pim_runs: dict[tuple, RunResult] = {}

    def pim(p: int, g: int) -> RunResult:
        if (p, g) not in pim_runs:
            spec = RunSpec(model=card.name, hw=hw.name, prompt_len=p, gen_tokens=g, fidelity=fidelity)
            pim_runs[(p, g)] = simulate_loaded(spec, hw, card)
        return pim_runs[(p, g)]

    rows = []
    for name in baselines:
        path = Path(name)
        if path.suffix == ".json" or path.is_file():
            base = _load_record(path, card)
            where = base["host"].get("gpu") or base["host"]["cpu"]
            provenance = (f"measured {base['device']} {base['dtype']} on {where}, torch {base['host']['torch']}, "
                          f"{base['host']['torch_threads']} threads, "
                          f"OMP_WAIT_POLICY={base['host']['OMP_WAIT_POLICY']}, {base['gen_tokens']} tokens")
        else:
            base = roofline(load_device(name), graph, prompt_len, gen_tokens)
            provenance = f"roofline of {base['description']} ({base['spec']['source']}), {base['dtype']}, " \
                         f"{base['bound']}-bound"
        run = pim(base["prompt_len"], base["gen_tokens"])
        energy = base.get("energy_per_token_J")
        energy_kind = base.get("energy_kind") or "none"
        if energy is None and base["kind"] == "measured":  # no counter: estimate, and say how
            energy, energy_kind = estimate_energy(base)
        pim_energy = run.energy_per_token_J
        rows.append({
            "baseline": name, "kind": base["kind"], "provenance": provenance,
            "prompt_len": base["prompt_len"], "gen_tokens": base["gen_tokens"],
            "baseline_latency_per_token_s": base["latency_per_token_s"],
            "pim_latency_per_token_s": run.latency_per_token_s,
            "speedup": base["latency_per_token_s"] / run.latency_per_token_s,
            "baseline_energy_per_token_J": energy, "baseline_energy_kind": energy_kind,
            "pim_energy_per_token_J": pim_energy,
            "energy_efficiency": energy / pim_energy if energy and pim_energy else None,
        })
    return {"model": card.name, "hw": hw.name, "fidelity": fidelity, "rows": rows,
            "pim_config_hash": {f"{p}+{g}": r.config_hash for (p, g), r in pim_runs.items()}}
