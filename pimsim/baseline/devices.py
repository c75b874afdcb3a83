"""Named CPU/GPU devices for roofline baselines (``hwconfigs/baselines/*.yaml``), and "this machine"
measured by a short probe."""

from __future__ import annotations

import os
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from pimsim.config.files import problems_from_validation, read_yaml
from pimsim.errors import ConfigError, Problem
from pimsim.resources import resolve

THIS_MACHINE = "this-machine"


class DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: StrictInt = Field(description="schema version (1)")
    name: str = Field(min_length=1)
    kind: Literal["cpu", "gpu"]
    description: str = ""
    memory_bandwidth_GBps: float = Field(gt=0, le=1e5)
    peak_TFLOPS: dict[Literal["fp32", "fp16", "bf16"], float] = Field(description="dense peak per data type")
    power_W: float = Field(gt=0, le=1e5, description="board or package power used for energy estimates")
    cores: StrictInt | None = Field(None, gt=0, le=4096,
                                    description="CPU cores sharing power_W (a CPU's per-core power: power_W / cores)")
    launch_overhead_us: float = Field(ge=0, le=1e4, description="fixed cost of one operator (kernel launch)")
    source: str = Field("datasheet", description="where the figures come from")


def load_device(name: str) -> DeviceSpec:
    """A bundled device (``t4``, ``a100``, ``h100``, ``xeon-gold-6154``), a path, or ``this-machine``."""
    if name == THIS_MACHINE:
        return probe_this_machine()
    path = resolve(name, "baselines")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [Problem("", "expected a mapping (a device description)")])
    try:
        spec = DeviceSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), problems_from_validation(exc, DeviceSpec)) from None
    problems = []
    if spec.version != 1:
        problems.append(Problem("version", f"{spec.version}: this pimsim reads version 1"))
    if spec.kind == "gpu" and spec.cores is not None:
        problems.append(Problem("cores", "a GPU's power is its board's; cores is for CPUs (per-core power)"))
    if problems:
        raise ConfigError(str(path), problems)
    return spec


def probe_this_machine(seconds: float = 0.5) -> DeviceSpec:
    """Measure this CPU's memory bandwidth (a large array copy) and FP32 matrix throughput (numpy)."""
    import numpy as np

    a = np.ones(64 * 2**20 // 4, np.float32)  # 64 MiB, well beyond the caches
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    bandwidth = 2 * a.nbytes / best / 1e9  # bytes read and written
    n = 512
    x = np.ones((n, n), np.float32)
    x @ x
    t = time.perf_counter()
    reps = 0
    while time.perf_counter() - t < seconds / 2:
        x @ x
        reps += 1
    flops = 2 * n**3 * reps / (time.perf_counter() - t)
    cpus = os.cpu_count() or 1
    power = float(os.environ.get("PIMSIM_CPU_POWER_W", 10.0 * cpus))
    return DeviceSpec(version=1, name=THIS_MACHINE, kind="cpu", memory_bandwidth_GBps=bandwidth,
                      peak_TFLOPS={"fp32": flops / 1e12}, power_W=power, cores=cpus,
                      launch_overhead_us=2.0,
                      description=f"this machine, probed: {bandwidth:.1f} GB/s copy, {flops / 1e9:.1f} GFLOP/s "
                                  f"FP32 matmul ({os.cpu_count()} cpus)",
                      source=f"measured by a copy and a matmul probe; power assumed {power:g} W (10 W per cpu; "
                             f"PIMSIM_CPU_POWER_W overrides)")

