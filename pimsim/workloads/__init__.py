"""Workloads: model cards and tracing PyTorch models into op graphs."""
