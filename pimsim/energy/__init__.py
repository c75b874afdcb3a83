"""The energy model: counted actions times sourced costs, plus background power over time."""
