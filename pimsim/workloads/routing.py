"""Which experts each generated token uses in each mixture-of-experts layer.

A decode step of an MoE model multiplies by the weights of only the experts its router picks, so the
time and bytes of a token depend on the choice. pimsim does not compute router scores (it has no
weights), so the choice comes from a *routing model* named in the model card's ``experts`` section:

- ``uniform``: every token picks ``top_k`` distinct experts, each set equally likely;
- ``zipf``: experts are ranked per layer (a seeded shuffle) and expert of rank r (1-based) is picked
  with weight 1 / r ** ``skew``, ``top_k`` of them without replacement (skew 0 is uniform; a larger skew
  sends more tokens to a few hot experts, the imbalance measured routers show);
- ``trace``: a recorded routing, one CSV row per generated token and MoE layer
  (``token,layer,experts`` with the experts space-separated, token 0 the first generated token).

Where the experts sit is the mapper's (``placement``): ``spread`` (every expert over every channel) or
``channel_groups`` (expert e on channel group e mod G, see pimsim.mapper.model).

Seeded choices depend only on (seed, layer, token position), never on the order they are asked in, so
a run's routing is the same at either fidelity and schedule, and the same run gives the same choice.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimsim.errors import PimsimError
from pimsim.workloads.opgraph import MoeShape

ROUTING_MODELS = ("uniform", "zipf", "trace")
# The longest routing trace read: a row per token and layer; 64 MiB holds millions of rows.
MAX_TRACE_BYTES = 64 << 20


@dataclass(frozen=True)
class RoutingSpec:
    """How tokens pick experts: a seeded model, or a recorded trace (see the module doc)."""

    model: str = "uniform"
    seed: int = 0
    skew: float = 1.0  # zipf only: the exponent of 1 / rank ** skew
    trace: Path | None = None  # trace only: the CSV file
    placement: str = "spread"  # where experts sit: "spread" or "channel_groups"
    channel_groups: int | None = None  # channel_groups: G (default: the most groups of whole channels <= experts)

    def expert_groups(self, channels: int, experts: int) -> int:
        """Channel groups the experts are dealt to (1 for spread)."""
        if self.placement == "spread":
            return 1
        if self.channel_groups is not None:
            return self.channel_groups
        return max(d for d in range(1, channels + 1) if channels % d == 0 and d <= experts)

    def describe(self) -> str:
        if self.model == "trace":
            return f"recorded trace {self.trace}"
        return f"{self.model} (seed {self.seed}" + (f", skew {self.skew:g})" if self.model == "zipf" else ")")


class Router:
    """The experts each token at each position picks, per MoE layer, for a run whose first generated
    token sits at `first_position`."""

    def __init__(self, spec: RoutingSpec, shape: MoeShape, first_position: int):
        if spec.model not in ROUTING_MODELS:
            raise PimsimError(f"routing model {spec.model!r}: expected one of {', '.join(ROUTING_MODELS)}")
        if shape.top_k > shape.experts:
            raise PimsimError(f"top-{shape.top_k} of {shape.experts} experts: cannot pick more experts than there are")
        self.spec, self.shape, self.first_position = spec, shape, first_position
        self._chosen: dict[tuple[int, int], tuple[int, ...]] = {}
        self._recorded = _read_trace(spec.trace, shape) if spec.model == "trace" else None
        self._ranks: dict[int, np.ndarray] = {}

    def experts(self, layer: int, position: int) -> tuple[int, ...]:
        """The experts (ascending) the token at `position` uses in MoE layer `layer`."""
        key = (layer, position)
        got = self._chosen.get(key)
        if got is None:
            got = self._chosen[key] = self._choose(layer, position)
        return got

    def _choose(self, layer: int, position: int) -> tuple[int, ...]:
        n, k = self.shape.experts, self.shape.top_k
        if self._recorded is not None:
            token = position - self.first_position
            got = self._recorded.get((token, layer))
            if got is None:
                raise PimsimError(f"routing trace {self.spec.trace}: no row for generated token {token}, layer {layer} "
                                  f"(the run needs a row per generated token and MoE layer)")
            return got
        rng = np.random.default_rng([self.spec.seed, layer, position])
        if self.spec.model == "uniform":
            picked = rng.choice(n, size=k, replace=False)
        else:
            weights = 1.0 / np.arange(1, n + 1) ** self.spec.skew
            ranks = rng.choice(n, size=k, replace=False, p=weights / weights.sum())
            picked = self._ranking(layer)[ranks]
        return tuple(sorted(int(e) for e in picked))

    def _ranking(self, layer: int) -> np.ndarray:
        """The layer's experts from hottest to coldest (a seeded shuffle: hot experts differ per layer)."""
        got = self._ranks.get(layer)
        if got is None:
            got = self._ranks[layer] = np.random.default_rng([self.spec.seed, layer]).permutation(self.shape.experts)
        return got

    def report(self, positions: range) -> dict:
        """Tokens per expert over the run's positions, per MoE layer, and how uneven they are: imbalance is
        the busiest expert's tokens over the mean (1.0 when every expert gets the same)."""
        n = self.shape.experts
        loads = {}
        for layer in self.shape.layers:
            counts = np.zeros(n, np.int64)
            for position in positions:
                counts[list(self.experts(layer, position))] += 1
            loads[layer] = counts
        per_layer = [float(c.max() / c.mean()) if c.sum() else 0.0 for c in loads.values()]
        total = sum(loads.values())
        out = {"routing": self.spec.describe(), "experts": n, "top_k": self.shape.top_k,
               "moe_layers": len(self.shape.layers), "tokens": len(positions),
               "tokens_per_expert": {str(layer): c.tolist() for layer, c in loads.items()},
               "imbalance_max": max(per_layer), "imbalance_mean": float(np.mean(per_layer)),
               "imbalance_all_layers": float(total.max() / total.mean()) if total.sum() else 0.0,
               "unused_experts": int(sum(int((c == 0).sum()) for c in loads.values()))}
        if self.spec.trace is not None:
            out["trace_sha256"] = hashlib.sha256(self.spec.trace.read_bytes()).hexdigest()
        return out


def _read_trace(path: Path | None, shape: MoeShape) -> dict[tuple[int, int], tuple[int, ...]]:
    """(token, layer) -> experts from a routing CSV; every problem in one error."""
    if path is None:
        raise PimsimError("routing model 'trace' needs a trace file (experts.trace in the model card)")
    if not path.is_file():
        raise PimsimError(f"routing trace {path}: no such file")
    if path.stat().st_size > MAX_TRACE_BYTES:
        raise PimsimError(f"routing trace {path}: {path.stat().st_size:,} bytes, more than the {MAX_TRACE_BYTES:,} "
                          f"read")
    problems: list[str] = []
    rows: dict[tuple[int, int], tuple[int, ...]] = {}
    layers = set(shape.layers)
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["token", "layer", "experts"]:
                problems.append(f"line 1: expected the header 'token,layer,experts', got {header}")
            for line, row in enumerate(reader, start=2):
                if len(problems) >= 20:
                    problems.append("... (stopped after 20 problems)")
                    break
                if len(row) != 3:
                    problems.append(f"line {line}: expected 3 fields (token, layer, experts), got {len(row)}")
                    continue
                try:
                    token, layer = int(row[0]), int(row[1])
                    experts = tuple(int(e) for e in row[2].split())
                except ValueError:
                    problems.append(f"line {line}: token, layer and experts must be integers, got {row}")
                    continue
                if token < 0:
                    problems.append(f"line {line}: token {token} is negative")
                if layer not in layers:
                    problems.append(f"line {line}: layer {layer} is not an MoE layer of the model "
                                    f"({min(layers)}..{max(layers)})")
                if len(experts) != shape.top_k or len(set(experts)) != len(experts):
                    problems.append(f"line {line}: {len(experts)} experts {list(experts)}; each token picks "
                                    f"{shape.top_k} distinct experts")
                if any(not 0 <= e < shape.experts for e in experts):
                    problems.append(f"line {line}: experts {list(experts)} outside 0..{shape.experts - 1}")
                if (token, layer) in rows:
                    problems.append(f"line {line}: a second row for token {token}, layer {layer}")
                rows[(token, layer)] = tuple(sorted(experts))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"cannot read it: {exc}")
    if problems:
        raise PimsimError(f"routing trace {path}:\n  " + "\n  ".join(problems))
    return rows
