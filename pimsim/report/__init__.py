"""Presenting results: terminal tables and JSON."""
