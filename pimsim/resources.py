"""Finding bundled hardware configs and model cards: an explicit path wins, then the bundled copy."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pimsim.errors import PimsimError

_PACKAGES = {"hwconfigs": "pimsim.bundled.hwconfigs", "workloads": "pimsim.bundled.workloads"}


def bundled_dir(kind: str) -> Path:
    """Where the bundled files of `kind` are: inside the installed package, or, when pimsim runs from
    a source checkout without being installed (``python -m pytest`` in the repository), the top-level
    folder of the checkout. Baseline device specs live in ``hwconfigs/baselines``."""
    if kind == "baselines":
        return bundled_dir("hwconfigs") / "baselines"
    try:
        return Path(str(resources.files(_PACKAGES[kind])))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / kind


def bundled_names(kind: str) -> list[str]:
    root = bundled_dir(kind)
    return sorted(p.name for p in root.glob("*.yaml"))


def resolve(name_or_path: str | Path, kind: str) -> Path:
    """Return the file a user meant by ``--hw NAME`` or ``--model NAME``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    root = bundled_dir(kind)
    # "hwconfigs/gddr6-aim.yaml" typed outside the repository still means the bundled file
    for candidate in (root / str(name_or_path), root / f"{name_or_path}.yaml", root / path.name):
        if candidate.is_file():
            return candidate
    names = ", ".join(bundled_names(kind)) or "none"
    raise PimsimError(f"{name_or_path}: no such file, and no bundled {kind} file of that name (bundled: {names})")
