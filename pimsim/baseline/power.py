"""The power a measured CPU baseline is charged: the cores it ran on, not the whole socket.

The PIM-GPT paper's own ratios say its CPU baseline drew about half of PIM-GPT's power (energy-efficiency
ratio / speed-up ratio = 320-602 / 631-1074, about 0.5; REFERENCE.md section 3b), so the paper charged
something like one core, not a 200 W socket. pimsim charges the cores a run used (its torch threads) one
core's power each, from the first source that exists:

1. measured: the RAPL core domain (powercap ``intel-rapl:N:M`` whose ``name`` is ``core``, Intel's PP0),
   energy over the timed decode steps. The domain covers every core of the package, so on a shared
   machine other work on other cores is counted too; the record says so.
2. datasheet: a CPU description's TDP / cores (``hwconfigs/baselines``; by default the paper's Xeon Gold
   6154, 200 W / 18 cores = 11.1 W), times the measured time, labelled a datasheet estimate and naming
   the CPU it describes (which need not be the host's).
"""

from __future__ import annotations

from pathlib import Path

from pimsim.baseline.devices import load_device
from pimsim.errors import PimsimError

POWERCAP = Path("/sys/class/powercap")
DEFAULT_CPU_SPEC = "xeon-gold-6154"  # the paper's CPU


def rapl_core_domain(root: Path = POWERCAP) -> Path | None:
    """The powercap folder of package 0's core domain, or None where there is none or it is unreadable."""
    for zone in sorted(root.glob("intel-rapl:0:*")):
        try:
            if (zone / "name").read_text().strip() == "core":
                int((zone / "energy_uj").read_text())
                return zone
        except (OSError, ValueError):
            continue
    return None


class CoreDomainCounter:
    """Joules of the RAPL core domain between start() and stop(); None where it cannot be read. The counter
    wraps at ``max_energy_range_uj``; one wrap between start and stop is undone (two wraps, hours of
    decode at core-domain power, would go undetected)."""

    def __init__(self, root: Path = POWERCAP):
        self.zone = rapl_core_domain(root)
        self.why = None if self.zone else f"no readable RAPL core domain under {root}"
        self.start_uj = None

    def _read_uj(self) -> int:
        return int((self.zone / "energy_uj").read_text())

    def start(self):
        self.start_uj = self._read_uj() if self.zone else None

    def stop(self) -> float | None:
        if self.zone is None or self.start_uj is None:
            return None
        delta = self._read_uj() - self.start_uj
        if delta < 0:
            delta += int((self.zone / "max_energy_range_uj").read_text())
        return delta * 1e-6


def cpu_spec_for_cores(cpu_spec: str):
    """The CPU description that prices a core where no counter is readable; checked before a run starts."""
    spec = load_device(cpu_spec)
    if spec.kind != "cpu" or not spec.cores:
        raise PimsimError(f"--cpu-spec {cpu_spec}: per-core power needs a CPU description with cores "
                          f"(power_W / cores); {spec.name} has kind {spec.kind}, cores {spec.cores}")
    return spec


def core_power(cores: int, latency_per_token_s: float, run_s: float, gen_tokens: int,
               core_joules: float | None, counter_why: str | None, cpu_spec: str = DEFAULT_CPU_SPEC) -> dict:
    """The ``core_power`` block of a CPU record: the energy per token charged to the ``cores`` the run
    used, and where the power comes from."""
    if core_joules is not None:
        return {"kind": "measured", "source": "RAPL core domain (package 0 PP0: every core of the package, so "
                                              "other work on the machine is counted too)",
                "cores_charged": cores, "power_W": core_joules / run_s,
                "per_core_W": core_joules / run_s / cores, "energy_per_token_J": core_joules / gen_tokens}
    spec = cpu_spec_for_cores(cpu_spec)
    per_core = spec.power_W / spec.cores
    return {"kind": "datasheet",
            "source": f"datasheet TDP / cores of {spec.name} ({spec.power_W:g} W / {spec.cores} = {per_core:.2f} W "
                      f"per core; {spec.description}), not this host's measured power ({counter_why})",
            "cores_charged": cores, "power_W": per_core * cores, "per_core_W": per_core,
            "energy_per_token_J": per_core * cores * latency_per_token_s}
