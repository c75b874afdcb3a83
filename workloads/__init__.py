# Bundled model cards and traces; installed as package data (pimsim.bundled.workloads).
