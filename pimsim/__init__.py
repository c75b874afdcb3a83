"""pimsim: a cycle-accurate simulator of DRAM processing-in-memory for LLM token generation."""

__version__ = "0.1.0"
