"""DRAM standards, the compiled timing model, the numba kernels and the protocol checker."""
