"""Baselines: the same models measured in PyTorch on CPU/GPU, and device rooflines."""
