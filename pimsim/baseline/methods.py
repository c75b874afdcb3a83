"""How a measured baseline decodes: the named methods ``pimsim baseline --method`` offers, the settings each
one fixes, and the decode loop each one runs.

- ``paper``: the PIM-GPT paper's way (REFERENCE.md sections 1 and 3b): Hugging Face eager decode, batch 1, a
  dynamic KV cache that grows by one token per step, fp32, and on a CPU one core (one torch thread) charged
  one core's power. Attention is HF's plain ("eager") implementation, as GPT-2 ran in 2023, before
  transformers gave it PyTorch's fused attention. The paper does not say its GPU's data type; fp32 is the
  default there too, and another ``--dtype`` is recorded as given.
- ``compiled``: the stronger baseline a reviewer asks for, because batch-1 eager decode is dispatch-bound: a
  static (preallocated) KV cache and the decode step compiled by ``torch.compile`` (TorchInductor's C++
  code on a CPU, one thread unless told; on CUDA its "reduce-overhead" mode, which replays the step as a
  CUDA graph). The static cache attends over its whole preallocated length under a mask, as HF's static
  cache does.
- ``eager``: HF eager decode with whatever ``--dtype``, ``--threads`` and ``--attention`` say (PyTorch's
  fused attention by default, torch's own thread count): what ``pimsim baseline`` measured before methods
  were named.

A setting that contradicts the method (``--method paper --threads 4``) is an error, never silently changed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from pimsim.errors import PimsimError

METHODS = ("paper", "compiled", "eager")
DTYPES = ("fp32", "fp16", "bf16")
ATTENTIONS = ("sdpa", "eager")


@dataclass(frozen=True)
class MethodSettings:
    """Everything a method fixes about a measured run; written into the record as ``method_settings``."""

    method: str
    device: str
    dtype: str
    threads: int | None  # torch CPU threads (None: torch's choice); on CUDA, the host threads
    attention: str  # "eager" (HF's plain matrix products) or "sdpa" (PyTorch's fused attention)
    cache: str  # "dynamic" (grows a token per step) or "static" (preallocated to the run's length)
    compile_mode: str | None  # None (eager), "default" (TorchInductor), "reduce-overhead" (CUDA graphs)
    batch: int = 1

    @property
    def label(self) -> str:
        """The row label every table prints beside this baseline's numbers."""
        where = "GPU" if self.device == "cuda" else (f"{self.threads} core" + ("s" if self.threads != 1 else "")
                                                    if self.threads else "torch's threads")
        if self.method == "paper":
            return f"measured, paper method (eager HF, dynamic cache, batch 1, {self.dtype}, {where})"
        if self.method == "compiled":
            engine = "torch.compile + CUDA graphs" if self.compile_mode == "reduce-overhead" else "torch.compile"
            return f"measured, stronger baseline (static KV cache + {engine}, batch 1, {self.dtype}, {where})"
        return f"measured, eager HF (custom settings: {self.attention} attention, {self.dtype}, {where})"

    def as_record(self) -> dict:
        return {"method": self.method, "method_label": self.label, "method_settings": asdict(self)}


def resolve_method(method: str, device: str, dtype: str | None = None, threads: int | None = None,
                   attention: str | None = None, warmup: int = 3) -> MethodSettings:
    """The settings of ``method`` on ``device``, with the caller's explicit choices where the method allows
    them; every contradiction is listed in one error."""
    problems = []
    if method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if device not in ("cpu", "cuda"):
        problems.append(f"device must be cpu or cuda, not {device!r}")
    if dtype is not None and dtype not in DTYPES:
        problems.append(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if attention is not None and attention not in ATTENTIONS:
        problems.append(f"attention must be sdpa or eager, not {attention!r}")
    if threads is not None and threads < 1:
        problems.append(f"threads must be at least 1, not {threads}")
    if problems:
        raise PimsimError("; ".join(problems))
    cpu = device == "cpu"
    if method == "paper":
        if cpu and dtype not in (None, "fp32"):
            problems.append(f"--method paper runs fp32 on a CPU (the paper's CPU baseline), not {dtype}")
        if cpu and threads not in (None, 1):
            problems.append(f"--method paper runs one CPU core (one thread, charged one core's power), "
                            f"not {threads} threads")
        if attention not in (None, "eager"):
            problems.append("--method paper runs HF's plain (eager) attention, as GPT-2 ran when the paper "
                            "measured it; use --method eager for sdpa")
        settings = MethodSettings("paper", device, dtype or "fp32", 1 if cpu else threads, "eager", "dynamic", None)
    elif method == "compiled":
        if warmup < (3 if not cpu else 1):
            problems.append(f"--method compiled needs at least {3 if not cpu else 1} warm-up tokens "
                            f"(compilation{' and CUDA-graph recording' if not cpu else ''} must not be timed), "
                            f"not {warmup}")
        settings = MethodSettings("compiled", device, dtype or "fp32", (threads or 1) if cpu else threads,
                                  attention or "sdpa", "static", "default" if cpu else "reduce-overhead")
    else:
        settings = MethodSettings("eager", device, dtype or "fp32", threads, attention or "sdpa", "dynamic", None)
    if problems:
        raise PimsimError("; ".join(problems))
    return settings


class Decoder:
    """Greedy decode of one sequence, one token per call, the way ``settings`` says."""

    def __init__(self, model, config, settings: MethodSettings, max_len: int):
        import torch

        self.torch, self.model, self.settings = torch, model, settings
        self.position = 0
        self.compile_s = None
        if settings.cache == "static":
            import transformers

            self.cache = transformers.StaticCache(config=config, max_cache_len=max_len)
            # fullgraph: a graph break would put Python dispatch back into every step, the cost this
            # method exists to remove; dynamic=False: every step has the same shapes with a static cache
            self.step_fn = torch.compile(model.forward, mode=settings.compile_mode, fullgraph=True, dynamic=False)
        else:
            self.cache = None
            self.step_fn = model

    def prefill(self, ids):
        """The prompt in one eager forward pass (not compiled: its shape differs from a decode step's)."""
        n = ids.shape[1]
        kwargs = {"position_ids": self._positions(n)} if self.settings.cache == "static" else {}
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, **kwargs)
        return self._next(out, n)

    def step(self, token):
        if self.settings.cache == "dynamic":
            return self._next(self.model(input_ids=token, past_key_values=self.cache, use_cache=True), 1)
        if self.settings.compile_mode == "reduce-overhead":
            self.torch.compiler.cudagraph_mark_step_begin()  # the graph's outputs are read before the next replay
        first = self.compile_s is None
        started = time.perf_counter()
        try:
            out = self.step_fn(input_ids=token, past_key_values=self.cache, use_cache=True,
                               position_ids=self._positions(1))
        except Exception as exc:  # inductor needs a C++ compiler; a model may not compile whole
            if not first:
                raise
            lines = str(exc).strip().splitlines()
            raise PimsimError(f"--method compiled: torch.compile could not compile the decode step "
                              f"({type(exc).__name__}: {lines[0][:300] if lines else ''})") from None
        if first:  # the first call compiles: its time is recorded, never counted as a decode step
            self.compile_s = time.perf_counter() - started
        return self._next(out, 1)

    def _positions(self, n: int):
        return self.torch.arange(self.position, self.position + n, device=self.settings.device)[None]

    def _next(self, out, n: int):
        if self.settings.cache == "dynamic":
            self.cache = out.past_key_values
        self.position += n
        return out.logits[:, -1:].argmax(-1)
