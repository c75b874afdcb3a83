"""pimsim: a cycle-accurate simulator of DRAM processing-in-memory for LLM token generation.

The Python API (each function imports the simulator only when called, so ``import pimsim`` is cheap)::

    import pimsim
    r = pimsim.run(hw="gddr6-aim", model="gpt2", gen_tokens=4)     # a typed RunResult
    r.latency_per_token_s, r.breakdown_s, r.to_dict(), r.to_frame()
    table = pimsim.sweep(hw="gddr6-aim", models=["gpt2"], grid={"asic.freq_MHz": [500, 1000]})
    g = pimsim.gemv(hw="hbm-pim", rows=2048, cols=1024)           # one GEMV on the PIM banks

Bad input (an unknown option, a wrong type such as ``gen_tokens=2.5``, an invalid config) raises one
:class:`PimsimError` listing every problem.
"""

# The subpackage pimsim.sweep (a docstring only, cheap) is loaded first, so the function `sweep` below
# takes its name on this module; loading pimsim.sweep.points later does not put the package back.
import pimsim.sweep as _sweep_package  # noqa: F401
from pimsim.errors import PimsimError
from pimsim.run_types import RunResult

__version__ = "0.1.0"
__all__ = ["PimsimError", "RunResult", "__version__", "gemv", "run", "sweep"]


def run(hw: str, model: str | None = None, **options):
    """Simulate one run and return its :class:`~pimsim.run_types.RunResult`.

    `hw` and `model` are names of bundled descriptions and cards, or paths. Options are the fields of
    :class:`~pimsim.run_types.RunSpec`: ``prompt_len``, ``gen_tokens``, ``source_len``, ``schedule``
    (serial | overlap), ``fidelity`` (fast | cycle), ``weight_format``, ``spec_dec`` (for example
    ``"draft=gpt2,k=4,alpha=0.8"``), ``overrides`` (``{"asic.freq_MHz": 500}``), ``check_protocol``.
    """
    from pimsim.run_types import RunSpec
    from pimsim.runs import simulate

    return simulate(RunSpec(model=model, hw=hw, **_known_options(options, RunSpec, ("model", "hw"))))


def sweep(hw: str, models: list[str], grid: dict | None = None, *, zipped: dict | None = None,
          run: dict | None = None, constraints: list[str] | None = None, out: str | None = None, jobs: int = 1):
    """Run a design-space sweep and return its rows as a pandas DataFrame (one row per point).

    `grid` and `zipped` map config keys (or ``weight_format``, ``spec_dec.KEY``) to lists of values;
    `run` holds run settings for every point (``prompt_len``, ``gen_tokens``, ``fidelity``, ...). With
    `out` the points are kept in that directory (``points.jsonl``, ``points.parquet``) and a re-run
    skips finished ones; without it, in a temporary directory.
    """
    import tempfile

    import pandas as pd

    from pimsim.sweep.points import RUN_KEYS, Sweep
    from pimsim.sweep.runner import run_sweep

    problems = []
    if not (isinstance(models, list) and models and all(isinstance(m, str) for m in models)):
        problems.append(f"models: a non-empty list of model card names, not {models!r}")
    for name, axes in (("grid", grid), ("zipped", zipped)):
        if axes is not None and not (isinstance(axes, dict) and all(isinstance(v, list) and v for v in axes.values())):
            problems.append(f"{name}: a mapping of keys to non-empty lists of values")
    unknown = sorted(set(run or {}) - RUN_KEYS)
    if unknown:
        problems.append(f"run: unknown settings {', '.join(unknown)} (known: {', '.join(sorted(RUN_KEYS))})")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        problems.append(f"jobs: a whole number >= 1, not {jobs!r}")
    if problems:
        raise PimsimError("sweep: " + "; ".join(problems))
    s = Sweep(hw, list(models), dict(run or {}), dict(grid or {}), dict(zipped or {}),
              constraints=list(constraints or []))
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_sweep(s, tmp, jobs, progress=False)
    else:
        result = run_sweep(s, out, jobs, progress=False)
    return pd.DataFrame(result["rows"])


def gemv(hw: str, rows: int, cols: int, *, functional: bool = False, no_pim: bool = False, seed: int = 0,
         overrides: dict | None = None) -> dict:
    """Map y = W x (random W and x, seeded) onto the PIM banks of `hw` and simulate it; returns the
    statistics ``pimsim kernel gemv --json`` writes (cycles, commands, energy, and with ``no_pim`` the
    same product read out over the pins)."""
    from pimsim.config.loader import load_hardware
    from pimsim.kernels import gemv as simulate_gemv
    from pimsim.run_types import RunSpec

    problems = [f"{name}: a whole number >= 1, not {value!r}" for name, value in (("rows", rows), ("cols", cols))
                if not isinstance(value, int) or isinstance(value, bool) or value < 1]
    if problems:
        raise PimsimError("gemv: " + "; ".join(problems))
    texts = RunSpec(model="gemv", hw=hw, overrides=overrides or {}).override_texts()  # checks hw and overrides
    result = simulate_gemv(load_hardware(hw, texts), rows, cols, functional=functional, no_pim=no_pim, seed=seed)
    out = dict(result.stats)
    if result.baseline_stats is not None:
        out["no_pim"] = result.baseline_stats
    return out


def _known_options(options: dict, spec_type, taken: tuple[str, ...]) -> dict:
    from dataclasses import fields

    known = [f.name for f in fields(spec_type) if f.name not in taken]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise PimsimError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(known)})")
    return options
