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

_KERNEL_PACKAGES = ("dram", "pim")
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
    numba.config.CACHE_DIR = str(target)
    _configured = target
    return target


def njit(*args, **kwargs):
    """``numba.njit`` with the cache directory configured first (numba reads it when a kernel is defined)."""
    configure()
    return numba.njit(*args, **kwargs)
