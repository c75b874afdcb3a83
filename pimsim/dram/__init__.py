"""DRAM standards, the compiled timing model, the numba kernels and the protocol checker."""

from pimsim._numba_cache import configure

configure()
