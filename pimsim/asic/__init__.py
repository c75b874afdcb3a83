"""The ASIC beside the PIM memory: latency of vector work and link transfers."""
