"""Sweep points: grids, zipped axes and random samples over config keys, filtered by constraints.

A sweep file (YAML):

    hw: gddr6-aim.yaml
    models: [gpt2, gpt2-xl]
    run: {prompt_len: 64, gen_tokens: 8, schedule: serial, fidelity: fast}
    grid: {dram.organization.channels: [4, 8, 16], asic.freq_MHz: [100, 1000]}
    zip: {asic.lanes: [64, 256], asic.pipeline_cycles: [2, 4]}     # varied together
    random: {count: 4, seed: 0, axes: {asic.link.latency_ns: [1, 20]}} # uniform in [low, high]
    constraints: ["asic.freq_MHz >= 100 or dram.organization.channels <= 8"]

Every point is one model with one set of config overrides (``--set`` values); ``weight_format`` is an
axis (or run key) that is a run option instead (``pimsim run --weight-format``). With ``run: {spec_dec:
"draft=gpt2,k=4,alpha=0.8"}`` every point is a speculative-decoding run whose target is the point's
model; axes ``spec_dec.alpha``, ``spec_dec.k``, ... vary its settings. Its id hashes the model,
the overrides, the run options and the base config file, so a re-run recognises finished points.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import operator
import random
from dataclasses import dataclass, field
from pathlib import Path

from pimsim.config.files import read_yaml
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve

# short names people type for the keys a sweep touches most
ALIASES = {"dram.channels": "dram.organization.channels", "dram.rows": "dram.organization.rows",
           "channels": "dram.organization.channels"}
MAX_POINTS = 100_000  # a sweep's points are listed up front; far beyond this, listing alone would exhaust memory
RUN_KEYS = {"prompt_len", "gen_tokens", "schedule", "fidelity", "weight_format", "spec_dec", "batch", "serve"}
# grid keys that are run options, not hardware settings (``--grid weight_format=bf16,ternary``, ``batch=1,4,16``)
RUN_AXES = {"weight_format", "batch"}
SPEC_DEC_AXIS = "spec_dec."  # grid keys spec_dec.alpha, spec_dec.k, ... vary a run's --spec-dec settings
# grid keys serve.rate, serve.max_batch, ... (and run: {serve: {...}}) make every point a serving run
SERVE_AXIS = "serve."
FILE_KEYS = {"hw", "models", "run", "grid", "zip", "random", "constraints"}


@dataclass
class Sweep:
    hw: str
    models: list[str]
    run: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    zipped: dict[str, list] = field(default_factory=dict)
    random_axes: dict[str, list] = field(default_factory=dict)
    random_count: int = 0
    random_seed: int = 0
    constraints: list[str] = field(default_factory=list)

    def points(self) -> list[dict]:
        """Every point that passes the constraints: {"model", "overrides", "id"}."""
        axes = [[{}]]
        for key, values in self.grid.items():
            axes.append([{key: v} for v in values])
        if self.zipped:
            lengths = {len(v) for v in self.zipped.values()}
            axes.append([dict(zip(self.zipped, values)) for values in zip(*self.zipped.values())] if lengths else [{}])
        if self.random_count > MAX_POINTS:
            raise PimsimError(f"{self.random_count:,} random samples is beyond what one sweep runs ({MAX_POINTS:,})")
        if self.random_count:
            rng = random.Random(self.random_seed)
            samples = []
            for _ in range(self.random_count):
                samples.append({k: rng.uniform(lo, hi) if isinstance(lo, float) or isinstance(hi, float)
                                else rng.randint(lo, hi) for k, (lo, hi) in self.random_axes.items()})
            axes.append(samples)
        combos = len(self.models) * math.prod(len(a) for a in axes)
        if combos > MAX_POINTS:
            raise PimsimError(f"the sweep spans {combos:,} points before its constraints, beyond what one sweep "
                              f"runs ({MAX_POINTS:,}); split it or sample it (random: {{count: N, ...}})")
        swept = [*self.grid, *self.zipped, *self.random_axes]
        checks = [_compile(c, swept) for c in self.constraints]
        base = inputs_digest(self.hw, self.run)
        out = []
        for model in self.models:
            model_digest = _card_digest(model)
            for combo in itertools.product(*axes):
                overrides = {}
                for part in combo:
                    overrides.update(part)
                if all(check(overrides) for check in checks):
                    out.append({"model": model, "overrides": overrides,
                                "id": point_id(model, overrides, self.run, base + model_digest)})
        return out


def point_spec(hw: str, point: dict, run: dict):
    """The :class:`~pimsim.run_types.RunSpec` of one point: the sweep's run settings, patched by the
    point's run axes (``weight_format``, ``batch``), its ``spec_dec.KEY`` axes and its hardware overrides."""
    from pimsim.run_types import RunSpec, patched_spec_dec

    axes = point["overrides"]
    options = {**run, **{k: v for k, v in axes.items() if k in RUN_AXES}}
    spec_axes = {k[len(SPEC_DEC_AXIS):]: v for k, v in axes.items() if k.startswith(SPEC_DEC_AXIS)}
    hardware = {k: v for k, v in axes.items() if k not in RUN_AXES and not k.startswith(SPEC_DEC_AXIS)}
    spec_dec = options.get("spec_dec")
    if spec_dec is not None or spec_axes:
        spec_dec = patched_spec_dec(None if spec_dec is None else str(spec_dec), point["model"], spec_axes)
    return RunSpec(model=point["model"], hw=hw, prompt_len=options.get("prompt_len"),
                   gen_tokens=options.get("gen_tokens"), schedule=options.get("schedule", "serial"),
                   fidelity=options.get("fidelity", "fast"), weight_format=options.get("weight_format"),
                   spec_dec=spec_dec, overrides=hardware, batch=options.get("batch", 1))


def serving_point(point: dict, run: dict) -> tuple[dict, dict, str | None] | None:
    """A serving point's (serve settings, hardware overrides, weight format), or None for a plain run:
    a point serves when the run has ``serve`` settings or an axis is ``serve.KEY`` (the axis wins)."""
    axes = point["overrides"]
    served = {k[len(SERVE_AXIS):]: v for k, v in axes.items() if k.startswith(SERVE_AXIS)}
    if "serve" not in run and not served:
        return None
    base = run.get("serve") or {}
    if not isinstance(base, dict):
        raise PimsimError(f"run.serve: a mapping of serving settings (rate, requests, ...), not {base!r}")
    hardware = {k: v for k, v in axes.items() if k not in RUN_AXES and not k.startswith(SERVE_AXIS)}
    return {**base, **served}, hardware, axes.get("weight_format", run.get("weight_format"))


def point_id(model: str, overrides: dict, run: dict, base_digest: str) -> str:
    text = json.dumps([model, sorted(overrides.items()), sorted(run.items()), base_digest], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def inputs_digest(hw: str, run: dict) -> str:
    """A hash of everything besides the point's own settings that decides its numbers: every file of the
    hardware's ``extends:`` chain (by content), the draft card of a spec-dec run, the tracer's version
    and pimsim's. A resumed sweep reruns a point when any of them changed."""
    from pimsim import __version__
    from pimsim.config.loader import chain_files
    from pimsim.workloads.tracer import TRACER_VERSION

    digest = hashlib.sha256(f"pimsim {__version__} tracer {TRACER_VERSION}".encode())
    try:
        for path in chain_files(hw):
            digest.update(path.read_bytes())
    except PimsimError:
        digest.update(f"unreadable {hw}".encode())  # reported when the point's config is loaded
    spec = str(run.get("spec_dec") or "")
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key.strip() in ("draft", "trace") and value.strip():
            digest.update(_file_bytes(value.strip()))
    return digest.hexdigest()[:16]


def _card_digest(model: str) -> str:
    return hashlib.sha256(_file_bytes(model)).hexdigest()[:16]


def _file_bytes(name: str) -> bytes:
    """The content of a model card, spec-dec card or acceptance trace, by the name the run gives it."""
    try:
        return resolve(name, "workloads").read_bytes()
    except (PimsimError, OSError):
        return f"unreadable {name}".encode()  # the point fails with the loader's message


def _key(key: str) -> str:
    return ALIASES.get(key, key)


def parse_grid(texts: list[str]) -> dict[str, list]:
    """``--grid key=v1,v2,...`` (values read as YAML) -> {key: [values]}."""
    from pimsim.config.files import parse_yaml

    grid = {}
    for text in texts:
        key, sep, values = text.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise PimsimError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. --grid asic.freq_MHz=100,1000")
        grid[_key(key.strip())] = [parse_yaml(v) for v in values.split(",")]
    return grid


def load_sweep_file(path: str | Path) -> Sweep:
    raw = read_yaml(Path(path))
    problems = []
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [Problem("", "expected a mapping (a sweep file)")])
    for key in raw:
        if key not in FILE_KEYS:
            problems.append(Problem(str(key), f"unknown key (known: {', '.join(sorted(FILE_KEYS))})"))
    if not isinstance(raw.get("hw"), str):
        problems.append(Problem("hw", "missing: the base hardware description"))
    models = raw.get("models")
    if not (isinstance(models, list) and models and all(isinstance(m, str) for m in models)):
        problems.append(Problem("models", "a list of model cards"))
    run = raw.get("run") or {}
    for key in run if isinstance(run, dict) else ["run"]:
        if key not in RUN_KEYS:
            problems.append(Problem(f"run.{key}", f"unknown (known: {', '.join(sorted(RUN_KEYS))})"))
    sections = {}
    for name in ("grid", "zip"):
        section = raw.get(name) or {}
        if not isinstance(section, dict) or not all(isinstance(v, list) and v for v in section.values()):
            problems.append(Problem(name, "a mapping of config keys to non-empty lists of values"))
            section = {}
        sections[name] = {_key(k): v for k, v in section.items()}
    if sections["zip"] and len({len(v) for v in sections["zip"].values()}) > 1:
        problems.append(Problem("zip", "zipped axes need lists of the same length"))
    rnd = raw.get("random") or {}
    axes = rnd.get("axes", {}) if isinstance(rnd, dict) else {}
    if rnd and not (isinstance(rnd.get("count"), int) and rnd["count"] > 0 and isinstance(axes, dict)
                    and all(isinstance(v, list) and len(v) == 2 for v in axes.values())):
        problems.append(Problem("random", "needs count (>0) and axes {key: [low, high]}"))
    constraints = raw.get("constraints") or []
    for i, text in enumerate(constraints if isinstance(constraints, list) else [constraints]):
        try:
            _compile(text)
        except PimsimError as exc:
            problems.append(Problem(f"constraints[{i}]", str(exc)))
    if problems:
        raise ConfigError(str(path), problems)
    return Sweep(raw["hw"], models, dict(run), sections["grid"], sections["zip"],
                 {_key(k): v for k, v in axes.items()}, int(rnd.get("count", 0)), int(rnd.get("seed", 0)),
                 list(constraints))


# --- constraints: a small expression language over the swept keys (no calls, no attributes) --------------
_OPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
        ast.NotEq: operator.ne, ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Mod: operator.mod}


MAX_CONSTRAINT_CHARS = 1000


def _compile(text: str, swept: list[str] | None = None):
    """A constraint as a function of a point's settings. With `swept` (the sweep's axes), a key that is
    not one of them is an error: it would otherwise never reject anything."""
    if not isinstance(text, str):
        raise PimsimError(f"constraint {text!r} is not text")
    if len(text) > MAX_CONSTRAINT_CHARS:
        raise PimsimError(f"constraint of {len(text):,} characters: longer than {MAX_CONSTRAINT_CHARS} (one "
                          f"expression over the swept keys)")
    names = {}

    def dotted(node) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            return ".".join([node.id, *reversed(parts)])
        return None

    def check(node):
        if isinstance(node, ast.Expression):
            return check(node.body)
        if isinstance(node, (ast.Attribute, ast.Name)):
            key = dotted(node)
            if key is None:
                raise PimsimError(f"constraint {text!r}: only config keys, numbers and operators are allowed")
            names[id(node)] = _key(key)
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return
        if isinstance(node, ast.BoolOp):
            return [check(v) for v in node.values]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            return check(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return check(node.left), check(node.right)
        if isinstance(node, ast.Compare) and all(type(o) in _OPS for o in node.ops):
            return [check(node.left), *[check(c) for c in node.comparators]]
        raise PimsimError(f"constraint {text!r}: {type(node).__name__} is not allowed")

    try:
        tree = ast.parse(text, mode="eval")
        check(tree)
    except SyntaxError as exc:
        raise PimsimError(f"constraint {text!r}: not an expression ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise PimsimError(f"constraint {text!r}: nested too deeply") from None
    if swept is not None:
        unknown = sorted({key for key in names.values() if key not in swept})
        if unknown:
            axes = ", ".join(swept) or "none"
            raise PimsimError(f"constraint {text!r}: {', '.join(unknown)} "
                              f"{'is not a swept key' if len(unknown) == 1 else 'are not swept keys'} "
                              f"(the sweep's axes: {axes}); a constraint on it would never reject a point")

    def evaluate(node, values):
        if isinstance(node, ast.Expression):
            return evaluate(node.body, values)
        if id(node) in names:
            key = names[id(node)]
            if key not in values:
                return None  # a key this point does not set: the constraint cannot reject it
            return values[key]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BoolOp):
            results = [evaluate(v, values) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.UnaryOp):
            v = evaluate(node.operand, values)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp):
            left, right = evaluate(node.left, values), evaluate(node.right, values)
            if left is None or right is None:
                return None
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
                # "x" * 10**9 would build a huge string; arithmetic is for numbers only
                raise TypeError(f"arithmetic on {left!r} and {right!r} (numbers only)")
            return _OPS[type(node.op)](left, right)
        left = evaluate(node.left, values)
        for op, comp in zip(node.ops, node.comparators):
            right = evaluate(comp, values)
            if left is None or right is None:
                return True
            if not _OPS[type(op)](left, right):
                return False
            left = right
        return True

    def run(values: dict) -> bool:
        try:
            return bool(evaluate(tree, values))
        except (ZeroDivisionError, TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise PimsimError(f"constraint {text!r} fails on the point {shown}: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None

    return run
