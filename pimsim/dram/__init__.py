"""DRAM standards, the compiled timing model, the numba kernels and the protocol checker.

Numba caches compiled kernels on disk, but it invalidates a cached function only when *its own*
source file changes, not when a function it calls (and inlines) from another file does. The kernels
here span several files, so the cache lives in a directory named after a hash of all of them: any
edit to any kernel source compiles afresh, and stale machine code can never be loaded.
"""

from __future__ import annotations

import hashlib
import os
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
    return Path(base) / digest.hexdigest()[:16]


numba.config.CACHE_DIR = str(_kernel_cache_dir())
