"""Where numba keeps compiled kernels.

Numba invalidates a cached function only when *its own* source file changes, not when a function it
calls (and inlines) from another file does. pimsim's kernels span several files, so the cache lives in
a directory named after a hash of every source file of the packages that hold kernels: any edit
compiles afresh, and stale machine code can never be loaded. Kernel modules decorate with this module's
`njit`, which configures the directory before the first kernel is defined: numba is imported only by the
modules that hold kernels, never by ``import pimsim.dram`` (a config check or ``pimsim validate`` does
not pay for numba's start-up).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

_KERNEL_PACKAGES = ("dram", "pim", "trace")  # every package with an njit kernel
_configured: Path | None = None


def _digest() -> str:
    root = Path(__file__).parent
    digest = hashlib.sha256(numba.__version__.encode())
    for package in _KERNEL_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def configure() -> Path:
    global _configured
    if _configured is not None:
        return _configured
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pimsim", "numba")
    digest = _digest()
    for root in (Path(base), Path(tempfile.gettempdir()) / f"pimsim-numba-{os.getuid()}"):
        target = root / digest
        try:  # a home directory that cannot be written to must not stop the simulator
            target.mkdir(parents=True, exist_ok=True)
            if os.access(target, os.W_OK):
                break
        except OSError:
            continue
    discard_damaged(target)
    numba.config.CACHE_DIR = str(target)
    _configured = target
    return target


def cache_root() -> Path:
    """The folder holding every version's numba cache (``pimsim cache info|clear``)."""
    return Path(os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pimsim", "numba"))


def _cached_functions(target: Path) -> list[list[tuple[str, list[int]]]]:
    """Every cached function under `target`, in the order of their index paths: its index (.nbi), then
    its data files (``STEM.N.nbc`` beside ``STEM.nbi``, as numba names them), each path with its size and
    mtime. One walk of the folder with ``os.scandir``, paths kept as text (this runs before every kernel
    command: a glob per index, and Path objects, cost 20-30 ms with a hundred cached functions)."""
    indexes: dict[str, tuple[str, list[int]]] = {}
    data: dict[str, list[tuple[str, list[int]]]] = {}
    folders = [str(target)]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                name = entry.name
                if not name.endswith((".nbi", ".nbc")):
                    continue
                stat = entry.stat()
            except OSError:
                continue
            found = (entry.path, [stat.st_size, stat.st_mtime_ns])
            if name.endswith(".nbi"):
                indexes[entry.path[: -len(".nbi")]] = found
            else:  # STEM.N.nbc belongs to STEM.nbi
                data.setdefault(entry.path[: -len(".nbc")].rpartition(".")[0], []).append(found)
    return [[index, *sorted(data.get(stem, []))] for stem, index in sorted(indexes.items(), key=lambda kv: kv[1][0])]


def discard_damaged(target: Path) -> list[Path]:
    """Remove every cached function whose index (.nbi) or data (.nbc) file is not a whole pickled stream
    (a run killed while numba wrote it, a full disk): numba would fail on it with an UnpicklingError in
    every later run; without it, numba compiles that function again. Only the opcode stream is walked
    (pickletools), so nothing is unpickled here. Returns the files removed."""
    import json

    removed: list[Path] = []
    manifest = target / "verified.json"  # files already walked, by size and mtime: each is walked once
    try:
        verified = json.loads(manifest.read_text())
    except (OSError, ValueError):
        verified = {}
    seen = {}
    root = len(str(target)) + 1
    for files in _cached_functions(target) if target.is_dir() else []:
        stamps = {path[root:]: stamp for path, stamp in files}
        if all(verified.get(k) == v for k, v in stamps.items()):
            seen.update(stamps)
            continue
        import pickletools  # only for files not walked before (its import alone costs about 20 ms)

        try:
            for i, (path, _) in enumerate(files):
                with open(path, "rb") as f:
                    for _ in range(2 if i == 0 else 1):  # an index (first) is two pickles back to back
                        for _op in pickletools.genops(f):
                            pass
                    if f.read(1):
                        raise ValueError("bytes after the end of the pickled data")
            seen.update(stamps)
        except (OSError, ValueError, EOFError):
            for path, _ in files:
                try:
                    os.unlink(path)
                    removed.append(Path(path))
                except OSError:
                    pass
    if seen != verified:
        try:
            tmp = manifest.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(seen))
            tmp.replace(manifest)
        except OSError:
            pass  # a read-only cache: walk again next time
    if removed:
        import sys

        print(f"pimsim: discarded {len(removed)} damaged numba cache file(s) in {target} "
              f"({', '.join(str(p.relative_to(target)) for p in removed[:4])}); those kernels compile again",
              file=sys.stderr)
    return removed


def njit(*args, allocates: bool = True, **kwargs):
    """``numba.njit`` with the cache directory configured first (numba reads it when a kernel is defined).

    ``allocates=False`` is for the kernel's helpers that only read and write the arrays they are given
    (constraint checks, commits, state comparisons): they are compiled without numba's runtime (its ``_nrt``
    option), so numba refuses to compile one that allocates, and they no longer count references. With the
    runtime, every array argument is counted up on entry and down on return, each an atomic add (numba
    also does this for a function inlined at its own level, ``inline="always"``): replaying gpt2-xl's
    weight GEMVs, perf found 71% of the time spent in compiled code in ``NRT_incref``/``NRT_decref``
    (README, "Cycle fidelity: the kernel's helpers without reference counts"). Results are the same:
    reference counts only decide when memory is freed, and these helpers neither make nor free any."""
    configure()
    if not allocates:
        kwargs["_nrt"] = False
    return numba.njit(*args, **kwargs)
