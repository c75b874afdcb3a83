"""Time and energy of moving values between devices, in closed form.

Symbols: p devices, n bytes (the whole vector), B the link bandwidth of one device in each direction
(``bandwidth_GBps``), alpha the cost of one message (``latency_ns``, plus ``switch_latency_ns`` through a
switch), e the energy of one bit from one device to another (``energy_pJ_per_bit``).

- **Ring all-reduce** (reduce-scatter, then all-gather, around a ring of the p devices; Patarasuk and
  Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 69(2), 2009;
  Thakur, Rabenseifner and Gropp, "Optimization of collective communication operations in MPICH",
  IJHPCA 19(1), 2005)::

      T = 2 (p - 1) alpha + 2 (p - 1) / p * n / B

  Each device sends 2 (p - 1) / p * n bytes, so the links carry 2 (p - 1) n bytes in all. With a switch
  every device has one full-duplex port, so the ring runs through it at the same rate; each step pays
  the switch's latency too. The additions of the reduce-scatter (the gamma term of Thakur et al.) are
  left out: (p - 1) / p * n adds on each device's vector unit, small beside the transfer.
- **Reduce at a shared host** (one host ASIC does the vector work of every device): each device sends
  its partial vector to the host, and the host sends the sum back to each, over the host's one port::

      T = 2 alpha + 2 p n / B            (2 p n bytes moved)

- **Send** (pipeline stage to the next)::

      T = alpha + n / B                  (n bytes moved)

- **Ring all-gather** of k bytes from each device (the best logit of each vocabulary shard)::

      T = (p - 1) alpha + (p - 1) k / B  ((p - 1) p k bytes moved)

Times are rounded to whole picoseconds, as every other time in pimsim.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.config.models import InterconnectConfig


@dataclass(frozen=True)
class Transfer:
    """One exchange between devices: how long it takes and how many bits cross links."""

    kind: str  # "all_reduce", "host_reduce", "send", "gather"
    time_ps: int
    bits: int


class Interconnect:
    def __init__(self, config: InterconnectConfig):
        self.config = config
        self.ps_per_byte = 1e3 / config.bandwidth_GBps  # 1 GB/s = 1e9 B/s = 1e-3 B/ps
        switch = config.switch_latency_ns if config.topology == "switch" else 0.0
        self.alpha_ps = (config.latency_ns + switch) * 1e3

    def all_reduce(self, nbytes: int, devices: int) -> Transfer:
        if devices == 1:
            return Transfer("all_reduce", 0, 0)
        p = devices
        time = 2 * (p - 1) * self.alpha_ps + 2 * (p - 1) / p * nbytes * self.ps_per_byte
        return Transfer("all_reduce", round(time), 8 * 2 * (p - 1) * nbytes)

    def host_reduce(self, nbytes: int, devices: int) -> Transfer:
        if devices == 1:
            return Transfer("host_reduce", 0, 0)
        time = 2 * self.alpha_ps + 2 * devices * nbytes * self.ps_per_byte
        return Transfer("host_reduce", round(time), 8 * 2 * devices * nbytes)

    def send(self, nbytes: int) -> Transfer:
        return Transfer("send", round(self.alpha_ps + nbytes * self.ps_per_byte), 8 * nbytes)

    def gather(self, nbytes_each: int, devices: int) -> Transfer:
        if devices == 1:
            return Transfer("gather", 0, 0)
        p = devices
        time = (p - 1) * self.alpha_ps + (p - 1) * nbytes_each * self.ps_per_byte
        return Transfer("gather", round(time), 8 * (p - 1) * p * nbytes_each)

    def energy_J(self, bits: int) -> float:
        return bits * self.config.energy_pJ_per_bit * 1e-12
