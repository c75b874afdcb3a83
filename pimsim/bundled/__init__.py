"""Bundled data (hardware configs, model cards), installed from the top-level folders."""
