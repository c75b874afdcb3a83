"""Heterogeneous decode placement, AttAcc-style (``pimsim run ... --batch B --decode-fc-on DEVICE``).

The FC layers of a batch (every weight GEMV: QKV, output projection, FFN, LM head) run on a host device
(a :mod:`pimsim.baseline.devices` spec: ``a100``, ``h100``, ...) as GEMMs over the batch's vectors, while
attention over each sequence's KV cache stays in the PIM memory (simulated in pieces, as
:class:`pimsim.step_costs.StepCosts` composes a step). A link (a bundled interconnect preset,
hwconfigs/interconnects/, ``pcie5-x16`` unless ``--link`` names another) carries each layer's
Q, K and V vectors to the PIM side and the attention outputs back.

Closed form of one decode step of batch B, L layers, context c_s for sequence s:

- host, one GEMM i of R_i x C_i weights over v vectors (fp16 on a GPU, fp32 on a CPU; s bytes each)::

      g_i(v) = max((R_i C_i + v (R_i + C_i)) s / BW, 2 v R_i C_i / PEAK) + launch

  the weights read once per GEMM from the host's memory at its bandwidth, the vectors in and out too.
  Host chunks: H_0(v) = the QKV GEMMs of layer 1; H_l(v) = layer l's output projection and FFN and
  layer l+1's QKV; H_L(v) = layer L's output projection and FFN and the LM head.
- PIM, per layer, for the sequences S of a (sub-)batch: X_l(S) = sum over s in S of P(c_s) / L, where
  P(c) is one sequence's simulated non-GEMV work of a step (embedding, KV appends, attention over c + 1
  tokens, ASIC norms/softmax/activations; :meth:`StepCosts.per_sequence`), shared evenly by the layers
  (exact for models whose layers are alike, as every dense card here; embedding and final norm are
  spread with them).
- link, per layer, two transfers of v vectors (``Interconnect.send``: latency + bytes / bandwidth)::

      K_l(v) = [alpha + v (H + 2 H_kv) d s / BW_link] + [alpha + v H d s / BW_link]

  (H query heads, H_kv key/value heads, d head size), energy 8 bytes x ``energy_pJ_per_bit``.
- **serial** (one chain, the batch together)::

      T_serial = sum_{l=0..L} H_l(B) + sum_{l=1..L} (K_l(B) + X_l(all))

- **overlap** (AttAcc's pipelining: the batch split into halves a = ceil(B/2), b = floor(B/2); the
  host runs one half's FC while the PIM side runs the other half's link and attention). Stage
  Y_l^k = K_l(|k|) + X_l(k); host order H_0^a, H_0^b, H_1^a, ...; PIM order Y_1^a, Y_1^b, Y_2^a, ...::

      start(H_l^k) = max(end of the host's previous chunk, end(Y_l^k))     (Y_0 ends at 0)
      start(Y_l^k) = max(end of the PIM side's previous stage, end(H_{l-1}^k))
      T_overlap = end(H_L^b)

  Each half reads the weights once more, so the host works sum_l H_l(a) + H_l(b) >= sum_l H_l(B):
  overlap pays where the host is compute-bound or the PIM side is long, and can lose at small
  batches where the host re-reads its weights for nothing. Always
  max(host work, PIM work) <= T_overlap <= host work + PIM work.
- **auto** (the default): the shorter of the two for each step, as a runtime choosing per batch
  would; the JSON names the schedule each step used. A batch of 1 runs serial (nothing to split).

Energy: host = power_W x its busy time (an estimate, as the roofline baselines; idle power while it
waits on the PIM side is not charged), PIM = the simulated pieces' energy, link = bits x pJ/bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimsim.baseline.devices import DeviceSpec, load_device
from pimsim.baseline.roofline import DTYPE_BYTES, default_dtype
from pimsim.config.files import problems_from_validation, read_yaml
from pimsim.config.models import InterconnectConfig
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve
from pimsim.run_details import DecodePlacement, HeteroPlacement, HostDevice, LinkFigures
from pimsim.system.interconnect import Interconnect

SCHEDULES = ("auto", "serial", "overlap")
DEFAULT_LINK = "pcie5-x16"


def load_link(name: str) -> InterconnectConfig:
    """A bundled interconnect preset (``pcie5-x16``, ``cxl2-x16``) or a path to one."""
    from pydantic import ValidationError

    path = resolve(name, "interconnects")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [Problem("", "expected a mapping (an interconnect description)")])
    try:
        return InterconnectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), problems_from_validation(exc, InterconnectConfig)) from None


@dataclass(frozen=True)
class Gemm:
    rows: int
    cols: int


def gemm_time_s(spec: DeviceSpec, gemm: Gemm, vectors: int) -> float:
    """g_i(v) of the module's closed form: one GEMM over `vectors` vectors on the host."""
    dtype = default_dtype(spec)
    weights = gemm.rows * gemm.cols
    nbytes = (weights + vectors * (gemm.rows + gemm.cols)) * DTYPE_BYTES[dtype]
    memory_s = nbytes / (spec.memory_bandwidth_GBps * 1e9)
    compute_s = 2 * vectors * weights / (spec.peak_TFLOPS[dtype] * 1e12)
    return max(memory_s, compute_s) + spec.launch_overhead_us * 1e-6


@dataclass(frozen=True)
class StepSplit:
    """One decode step's parts under the hetero placement (seconds; energies in joules, None without
    an energy section on the PIM hardware)."""

    serial_s: float
    overlap_s: float
    schedule: str  # the schedule this step used
    host_s: float  # host busy time of the used schedule
    pim_s: float  # PIM attention and other per-sequence work (same under both schedules)
    link_s: float  # link busy time of the used schedule
    host_J: float
    pim_J: float | None
    link_J: float

    @property
    def time_s(self) -> float:
        return self.serial_s if self.schedule == "serial" else self.overlap_s


class HeteroDecode:
    """Decode steps of a batch with the FC layers on host device `fc_on` and attention in PIM
    (`costs`: the :class:`~pimsim.step_costs.StepCosts` of the model on the PIM hardware)."""

    def __init__(self, costs, fc_on: str, link: str = DEFAULT_LINK, schedule: str = "auto"):
        if schedule not in SCHEDULES:
            raise PimsimError(f"decode FC schedule: one of {', '.join(SCHEDULES)}, not {schedule!r}")
        self.costs, self.schedule = costs, schedule
        self.spec = load_device(fc_on)
        self.link_name = link
        self.link = Interconnect(load_link(link))
        graph = costs.sim.graph
        meta = graph.meta
        if meta.moe or meta.encoder_decoder:
            raise PimsimError(f"{costs.card.name}: the hetero decode placement takes dense decoder-only models")
        self.layers = meta.layers
        self.act_bytes = DTYPE_BYTES[default_dtype(self.spec)]
        # host chunks H_0 .. H_L (see the module's closed form)
        self.chunks: list[list[Gemm]] = [[] for _ in range(self.layers + 1)]
        for op in graph.ops:
            if op.kind != "gemv":
                continue
            if op.layer is None:
                self.chunks[self.layers].append(Gemm(op.rows, op.cols))  # the LM head, after the last layer
            else:
                self.chunks[op.layer if op.part == "qkv" else op.layer + 1].append(Gemm(op.rows, op.cols))
        q = meta.heads * meta.head_dim
        kv = meta.kv_heads * meta.head_dim
        self.to_pim_elements, self.back_elements = q + 2 * kv, q

    def host_chunk_s(self, chunk: int, vectors: int) -> float:
        return sum(gemm_time_s(self.spec, g, vectors) for g in self.chunks[chunk])

    def host_fc_s(self, vectors: int) -> float:
        """Every FC GEMM of one step over `vectors` vectors on the host (sum of H_l(v))."""
        return sum(self.host_chunk_s(i, vectors) for i in range(self.layers + 1))

    def link_layer(self, vectors: int) -> tuple[float, int]:
        """K_l(v): one layer's two transfers (seconds, bits)."""
        there = self.link.send(vectors * self.to_pim_elements * self.act_bytes)
        back = self.link.send(vectors * self.back_elements * self.act_bytes)
        return (there.time_ps + back.time_ps) * 1e-12, there.bits + back.bits

    def step(self, contexts: list[int]) -> StepSplit:
        """One decode step of ``len(contexts)`` sequences (contexts as :meth:`StepCosts.decode_step`)."""
        n, L = len(contexts), self.layers
        pieces = [self.costs.per_sequence(c) for c in contexts]
        pim_s = sum(p.time_s for p in pieces)
        pim_J = None if any(p.energy_J is None for p in pieces) else sum(p.energy_J for p in pieces)
        link_s, link_bits = self.link_layer(n)
        host_s = self.host_fc_s(n)
        serial = host_s + L * link_s + pim_s
        if n == 1:
            overlap, halves = serial, None
        else:
            halves = (pieces[:(n + 1) // 2], pieces[(n + 1) // 2:])
            overlap = self._overlap(halves)
        use = self.schedule if self.schedule != "auto" else ("overlap" if overlap < serial else "serial")
        if n == 1:
            use = "serial"
        if use == "overlap":
            host_s = sum(self.host_fc_s(len(h)) for h in halves)
            link_s, link_bits = 0.0, 0
            for h in halves:
                t, b = self.link_layer(len(h))
                link_s, link_bits = link_s + t, link_bits + b
        host_J = self.spec.power_W * host_s
        return StepSplit(serial, overlap, use, host_s, pim_s, L * link_s, host_J, pim_J,
                         L * link_bits * self.link.config.energy_pJ_per_bit * 1e-12)

    def _overlap(self, halves) -> float:
        """T_overlap of the module's recurrence for two sub-batches."""
        L = self.layers
        host_free = pim_free = 0.0
        y_end = [0.0, 0.0]  # end of each half's last PIM stage
        h_end = [0.0, 0.0]  # end of each half's last host chunk
        for layer in range(L + 1):
            for k, half in enumerate(halves):
                start = max(host_free, y_end[k])
                h_end[k] = host_free = start + self.host_chunk_s(layer, len(half))
            if layer == L:
                break
            for k, half in enumerate(halves):
                stage = self.link_layer(len(half))[0] + sum(p.time_s for p in half) / L
                start = max(pim_free, h_end[k])
                y_end[k] = pim_free = start + stage
        return host_free


def decode_placement(costs, fc_on: str, link: str, schedule: str, prompt_len: int, gen_tokens: int,
                     batch: int) -> DecodePlacement:
    """The ``decode_placement`` figures of a run: `gen_tokens` steps of `batch` sequences whose contexts
    start at `prompt_len`."""
    hetero = HeteroDecode(costs, fc_on, link, schedule)
    steps = [hetero.step([prompt_len + t] * batch) for t in range(gen_tokens)]
    total = sum(s.time_s for s in steps)
    host_J, link_J = sum(s.host_J for s in steps), sum(s.link_J for s in steps)
    pim_J = None if any(s.pim_J is None for s in steps) else sum(s.pim_J for s in steps)
    total_J = pim_J + host_J + link_J if pim_J is not None else None
    cfg = hetero.link.config
    return DecodePlacement(
        placement=HeteroPlacement(fc=fc_on, attention="pim", link=link),
        fc_device=HostDevice(name=hetero.spec.name, dtype=default_dtype(hetero.spec),
                             memory_bandwidth_GBps=hetero.spec.memory_bandwidth_GBps, power_W=hetero.spec.power_W),
        link=LinkFigures(bandwidth_GBps=cfg.bandwidth_GBps, latency_ns=cfg.latency_ns,
                         energy_pJ_per_bit=cfg.energy_pJ_per_bit),
        schedule=schedule, schedule_per_step=tuple(s.schedule for s in steps),
        host_fc_s=sum(s.host_s for s in steps), pim_attention_s=sum(s.pim_s for s in steps),
        link_s=sum(s.link_s for s in steps),
        serial_step_s=tuple(s.serial_s for s in steps), overlap_step_s=tuple(s.overlap_s for s in steps),
        per_step_s=tuple(s.time_s for s in steps),
        latency_per_token_s=total / gen_tokens, total_time_s=total, tokens_per_s=gen_tokens * batch / total,
        host_fc_J=host_J, link_J=link_J, pim_attention_J=pim_J, total_J=total_J,
        energy_per_token_J=total_J / (gen_tokens * batch) if total_J is not None else None,
        note="FC GEMMs on the host (roofline per GEMM, energy power_W x busy time), attention and per-sequence "
             "work simulated in PIM pieces (fast fidelity, serial), the link per layer; the record's top-level "
             "figures are the all-PIM run of the same batch, for comparison (pimsim.hetero has the closed form)")
