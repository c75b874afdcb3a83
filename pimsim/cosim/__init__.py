"""Functional co-simulation: real numbers through the PIM numerics and the ASIC approximations."""
