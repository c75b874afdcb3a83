"""Several devices: a model split over tensor-parallel groups and pipeline stages, each device simulated by
the single-device engine, the exchanges between devices over the interconnect in closed form.

- :mod:`pimsim.system.plan`: the split a run asks for (``--devices``, ``--parallel``).
- :mod:`pimsim.system.shard`: one device's share of the traced op graph.
- :mod:`pimsim.system.interconnect`: time and energy of all-reduce, send and gather.
- :mod:`pimsim.system.fit`: how many devices a model needs.
- :mod:`pimsim.system.run`: the run and its record.
"""
