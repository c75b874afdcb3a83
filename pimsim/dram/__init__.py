"""DRAM standards, the compiled timing model, the numba kernels and the protocol checker.

Numba caches compiled kernels on disk, but it invalidates a cached function only when *its own*
source file changes, not when a function it calls (and inlines) from another file does. The kernels
here span several files, so the cache lives in a directory named after a hash of all of them: any
edit to any kernel source compiles afresh, and stale machine code can never be loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

_KERNEL_SOURCES = ("timing_state.py", "kernel.py", "controller.py")


def _kernel_cache_dir() -> Path:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _KERNEL_SOURCES:
        digest.update((here / name).read_bytes())
    digest.update(numba.__version__.encode())
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pimsim", "numba")
    for root in (Path(base), Path(tempfile.gettempdir()) / f"pimsim-numba-{os.getuid()}"):
        target = root / digest.hexdigest()[:16]
        try:  # a home directory that cannot be written to must not stop the simulator
            target.mkdir(parents=True, exist_ok=True)
            if os.access(target, os.W_OK):
                return target
        except OSError:
            continue
    return target


numba.config.CACHE_DIR = str(_kernel_cache_dir())
