"""The figures of a serving run: latency percentiles, throughput, goodput at SLOs, energy per token,
and the per-request rows (JSONL or Parquet)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pimsim.errors import PimsimError
from pimsim.serving.scheduler import ServeRun

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Slo:
    """Latency targets a request must meet to count towards goodput (None: no target)."""

    ttft_s: float | None = None
    tpot_s: float | None = None

    def met(self, ttft_s: float, tpot_s: float | None) -> bool:
        return ((self.ttft_s is None or ttft_s <= self.ttft_s)
                and (self.tpot_s is None or tpot_s is None or tpot_s <= self.tpot_s))


@dataclass(frozen=True)
class ServeSummary:
    requests: int
    output_tokens: int
    duration_s: float  # from the first arrival to the last finish
    ttft_s: dict[str, float]  # p50, p90, p99 (and mean)
    tpot_s: dict[str, float | None]  # over requests with more than one output token
    e2e_s: dict[str, float]
    queue_s: dict[str, float]
    throughput_tokens_per_s: float
    throughput_requests_per_s: float
    goodput_requests_per_s: float  # requests meeting every SLO given, per second
    slo_attainment: float  # their share of all requests
    slo: Slo
    energy_per_token_J: float | None
    energy_total_J: float | None
    mean_batch: float  # sequences per decode step
    device_busy_share: float
    mean_in_system: float  # time-average number of requests arrived and not finished (Little's L)
    kv_peak: int
    kv_capacity: int
    kv_unit: str
    max_batch: int
    prefills: int
    decode_steps: int
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("slo", "notes")}
        out["slo"] = {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s}
        out["notes"] = list(self.notes)
        return out


def _stats(values: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {f"p{q}": None for q in PERCENTILES} | {"mean": None}
    arr = np.asarray(values, float)
    out = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES))}
    return out | {"mean": float(arr.mean())}


def summarize(run: ServeRun, slo: Slo = Slo(), notes: tuple[str, ...] = ()) -> ServeSummary:
    records = run.records
    tokens = sum(r.request.output_len for r in records)
    start = min(r.request.arrival_s for r in records)
    duration = run.end_s - start
    tpots = [r.tpot_s for r in records if r.tpot_s is not None]
    good = sum(slo.met(r.ttft_s, r.tpot_s) for r in records)
    return ServeSummary(
        requests=len(records), output_tokens=tokens, duration_s=duration,
        ttft_s=_stats([r.ttft_s for r in records]), tpot_s=_stats(tpots), e2e_s=_stats([r.e2e_s for r in records]),
        queue_s=_stats([r.queue_s for r in records]),
        throughput_tokens_per_s=tokens / duration if duration > 0 else math.inf,
        throughput_requests_per_s=len(records) / duration if duration > 0 else math.inf,
        goodput_requests_per_s=good / duration if duration > 0 else math.inf,
        slo_attainment=good / len(records), slo=slo,
        energy_per_token_J=run.energy_J / tokens if run.energy_J is not None else None,
        energy_total_J=run.energy_J,
        mean_batch=run.decode_sequences / run.decode_steps if run.decode_steps else 0.0,
        device_busy_share=run.busy_s / run.end_s if run.end_s > 0 else 0.0,
        mean_in_system=run.in_system_s / run.end_s if run.end_s > 0 else 0.0,
        kv_peak=run.kv_peak, kv_capacity=run.kv_capacity, kv_unit=run.kv_unit, max_batch=run.max_batch,
        prefills=run.prefills, decode_steps=run.decode_steps, notes=tuple(notes))


def summary_text(s: ServeSummary, title: str) -> str:
    def ms(v):
        return "-" if v is None else f"{v * 1e3:.3f}"

    lines = [title, f"  {s.requests:,} requests, {s.output_tokens:,} output tokens in {s.duration_s:.4g} s "
                    f"(max batch {s.max_batch}, mean batch {s.mean_batch:.2f}, device busy {s.device_busy_share:.1%})",
             f"  {'latency (ms)':<24}{'p50':>12}{'p90':>12}{'p99':>12}{'mean':>12}"]
    for name, stats in (("time to first token", s.ttft_s), ("time per output token", s.tpot_s),
                        ("end to end", s.e2e_s), ("queueing", s.queue_s)):
        lines.append(f"  {name:<24}" + "".join(f"{ms(stats[k]):>12}" for k in ("p50", "p90", "p99", "mean")))
    lines.append(f"  throughput               {s.throughput_tokens_per_s:,.1f} tokens/s, "
                 f"{s.throughput_requests_per_s:,.3f} requests/s")
    slos = ", ".join(f"{n} <= {v * 1e3:g} ms" for n, v in (("TTFT", s.slo.ttft_s), ("TPOT", s.slo.tpot_s))
                     if v is not None) or "no SLO given"
    lines.append(f"  goodput                  {s.goodput_requests_per_s:,.3f} requests/s "
                 f"({s.slo_attainment:.1%} meet {slos})")
    if s.energy_per_token_J is not None:
        lines.append(f"  energy per output token  {s.energy_per_token_J * 1e3:.4f} mJ "
                     f"({s.energy_total_J:.4g} J in all)")
    lines.append(f"  KV memory                peak {s.kv_peak:,} of {s.kv_capacity:,} {s.kv_unit}")
    return "\n".join(lines)


def write_rows(run: ServeRun, path: str) -> None:
    """Per-request rows: JSON Lines (.jsonl) or Parquet (.parquet)."""
    rows = [r.to_row() for r in run.records]
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path, index=False)
    elif suffix == ".jsonl":
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    else:
        raise PimsimError(f"--out {path}: give a .jsonl or .parquet file")


def read_rows(path: str):
    """Per-request rows written by :func:`write_rows`, as a pandas DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise PimsimError(f"{path}: no such file")
    try:
        return pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_json(p, lines=True)
    except Exception as exc:  # pyarrow's and pandas' errors of a file of another kind
        raise PimsimError(f"{path}: not `pimsim serve --out` rows ({type(exc).__name__}: {str(exc)[:200]})") from None
