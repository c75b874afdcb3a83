"""Serving: requests arrive, a continuous-batching scheduler runs prefills and decode steps on the
simulated device, and per-request latencies come out.

- :mod:`arrivals` — the requests (Poisson arrivals or a CSV file of them);
- :mod:`costs` — the step-cost protocol the scheduler times steps by, and a closed-form model of it;
- :mod:`engine` — step costs simulated by pimsim's engine (:mod:`pimsim.step_costs`, fast fidelity);
- :mod:`scheduler` — the continuous-batching scheduler (a SimPy process) under a KV-memory limit;
- :mod:`summary` — percentiles, throughput, goodput and energy of a run, per-request rows;
- :mod:`service` — a run end to end (``pimsim serve``, serving sweep points).
"""
