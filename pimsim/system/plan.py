"""How a run splits a model over devices: ``--devices N --parallel tp|pp|tp=T,pp=P``, or the hardware
file's ``system.devices`` and ``system.parallel`` where the flags are not given."""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.errors import ConfigError, Problem

KINDS = ("tp", "pp")


@dataclass(frozen=True)
class ParallelPlan:
    tp: int  # devices of a tensor-parallel group (each holds 1/tp of every layer)
    pp: int  # pipeline stages (each a tensor-parallel group holding a run of whole layers)

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    def text(self) -> str:
        return f"tp={self.tp},pp={self.pp}"


def _parse(text: str, devices: int | None, problems: list[Problem]) -> dict[str, int]:
    text = text.strip()
    if text in KINDS:
        if devices is None:
            problems.append(Problem("parallel", f"{text!r} needs a device count (--devices N)"))
            return {}
        return {text: devices}
    sizes: dict[str, int] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in KINDS:
            problems.append(Problem("parallel", f"{item.strip()!r}: expected tp, pp or tp=T,pp=P"))
            continue
        if key in sizes:
            problems.append(Problem("parallel", f"{key} given twice"))
            continue
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            problems.append(Problem("parallel", f"{key}={value.strip()!r}: a whole number of devices >= 1"))
            continue
        sizes[key] = size
    return sizes


def parallel_plan(devices: int | None, parallel: str | None, file_devices: int = 1,
                  file_parallel: str | None = None) -> ParallelPlan:
    """The plan of a run: the flags where given, else the hardware file's system section. Every problem
    at once (a ConfigError), never a guessed split."""
    problems: list[Problem] = []
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        problems.append(Problem("devices", f"a whole number >= 1, not {devices!r}"))
        devices = None
    if parallel is not None and not (isinstance(parallel, str) and parallel.strip()):
        problems.append(Problem("parallel", f"tp, pp or tp=T,pp=P, not {parallel!r}"))
        parallel = None
    if devices == 1 and parallel is None and not problems:  # one device: nothing to split, whatever the file says
        return ParallelPlan(1, 1)
    text = parallel if parallel is not None else file_parallel
    count = devices if devices is not None else file_devices
    if text is None:
        if count not in (None, 1):
            problems.append(Problem("parallel", f"{count} devices need a split: --parallel tp, pp or tp=T,pp=P"))
        if problems:
            raise ConfigError("run", problems)
        return ParallelPlan(1, 1)
    sizes = _parse(text, count, problems)
    plan = ParallelPlan(sizes.get("tp", 1), sizes.get("pp", 1))
    if not problems and devices is not None and plan.devices != devices:
        problems.append(Problem("devices", f"{devices} devices, but {text} uses {plan.devices}"))
    if problems:
        raise ConfigError("run", problems)
    return plan
