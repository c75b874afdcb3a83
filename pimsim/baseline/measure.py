"""Measured baselines: the model card's architecture run for real in PyTorch (random weights, the same
shapes), generating tokens greedily with a KV cache, one token per forward pass.

Recorded: decode latency per token (median, p10, p90, mean) after warm-up tokens, the prefill time,
peak memory, energy where a counter is readable (NVML's total-energy counter on NVIDIA GPUs, RAPL
through powercap on CPUs that allow it), and the host: CPU model, cores, threads, torch version,
OpenMP settings, GPU name and driver. Where no counter is readable, energy is left out here; the
comparison estimates it from a device spec's power and says so. Also recorded: the method (``paper``,
``compiled``, ``eager``: ``pimsim.baseline.methods``) with every setting it fixed, the greedy token ids,
and on a CPU the ``core_power`` block: the energy charged to the cores the run used
(``pimsim.baseline.power``: the RAPL core domain, else a datasheet TDP / cores, labelled which).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

from pimsim.baseline.methods import Decoder, resolve_method
from pimsim.baseline.power import DEFAULT_CPU_SPEC, CoreDomainCounter, core_power, cpu_spec_for_cores
from pimsim.errors import PimsimError
from pimsim.workloads.cards import ModelCard

DTYPES = ("fp32", "fp16", "bf16")
RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
# NVML's total-energy counter advances only when the GPU's power sensor updates (every 100 ms on A100/H100,
# whose sensor also averages only part of each period: Yang, Adamek and Armour, SC'24), so a short window
# reads 0 J or a single step. Energy timed over less than this is refused, never reported.
NVML_MIN_WINDOW_S = 1.0  # assumed: ten of the sensor's 100 ms update periods


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _EnergyCounter:
    """Joules between start() and stop(), from NVML or RAPL; None where neither can be read."""

    def __init__(self, device: str, torch=None):
        self.kind, self.reader, self.start_value = None, None, None
        self.wrap = None  # the counter's range, where it wraps around to 0 (RAPL)
        if device == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                handle = _nvml_handle(pynvml, torch)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ since driver load (Volta and later)
                self.kind = "NVML total energy counter"
                self.reader = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) * 1e-3
            except Exception as exc:  # no pynvml, no GPU counter: energy is not measured
                self.why = f"NVML not readable ({type(exc).__name__})"
        else:
            try:
                int(RAPL.read_text())
                self.kind = "RAPL package-0 counter (powercap)"
                self.reader = lambda: int(RAPL.read_text()) * 1e-6
                try:  # energy_uj counts up to max_energy_range_uj, then starts again from 0
                    self.wrap = int((RAPL.parent / "max_energy_range_uj").read_text()) * 1e-6
                except (OSError, ValueError):
                    self.wrap = None
            except (OSError, ValueError) as exc:
                self.why = f"RAPL not readable ({type(exc).__name__}: {RAPL})"

    def start(self):
        self.start_value = self.reader() if self.reader else None

    def stop(self, window_s: float) -> float | None:
        """Joules since start(), over a timed window of `window_s` seconds; None (with ``why``) where the
        counter cannot resolve it."""
        if self.reader is None or self.start_value is None:
            return None
        joules = self.reader() - self.start_value
        if self.kind.startswith("NVML") and (window_s < NVML_MIN_WINDOW_S or joules == 0):
            self.why = (f"the timed window of {window_s:.3f} s is too short for NVML's energy counter (it advances "
                        f"with the power sensor's 100 ms updates; at least {NVML_MIN_WINDOW_S:g} s is needed and "
                        f"it moved {joules:.3f} J): time more tokens with --gen-tokens")
            return None
        if joules < 0 and self.wrap:  # wrapped once during the run (a 2^32 uJ range wraps every ~70 min at 1 kW)
            joules += self.wrap
        if joules < 0:
            self.why = "the energy counter went backwards (wrapped with an unknown range)"
            return None
        return joules


def _nvml_handle(pynvml, torch):
    """The NVML handle of the GPU torch runs on: matched by UUID (NVML numbers GPUs physically, while
    torch's index follows CUDA_VISIBLE_DEVICES), else by PCI bus id, else NVML's index of torch's."""
    index = torch.cuda.current_device() if torch is not None else 0
    props = torch.cuda.get_device_properties(index) if torch is not None else None
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}")
        except Exception:
            pass
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None and hasattr(props, "pci_domain_id"):
        try:
            return pynvml.nvmlDeviceGetHandleByPciBusId(f"{props.pci_domain_id:08x}:{bus:02x}:"
                                                        f"{getattr(props, 'pci_device_id', 0):02x}.0")
        except Exception:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def measure(card: ModelCard, device: str = "cpu", dtype: str | None = None, prompt_len: int | None = None,
            gen_tokens: int | None = None, threads: int | None = None, warmup: int = 3, seed: int = 0,
            attention: str | None = None, method: str = "eager", cpu_spec: str = DEFAULT_CPU_SPEC) -> dict:
    """``method``: "paper", "compiled" or "eager" (``pimsim.baseline.methods``: what each fixes; dtype,
    threads and attention left None take the method's defaults). ``attention``: "sdpa" (PyTorch's fused
    attention; on CUDA with its cuDNN backend switched off, because that backend builds a new plan for
    every KV-cache length: 74 ms per gpt2 token on an H100 with torch 2.11, against 9 ms without it) or
    "eager" (plain matrix products). ``cpu_spec``: the CPU description whose TDP / cores prices a core
    where no RAPL core domain is readable (``pimsim.baseline.power``)."""
    settings = resolve_method(method, device, dtype, threads, attention, warmup)
    dtype, threads, attention = settings.dtype, settings.threads, settings.attention
    if device == "cpu":
        cpu_spec_for_cores(cpu_spec)  # a bad --cpu-spec is an error before the run, not after it
    if card.defaults.source_len is not None:  # the causal-LM loop below would run BART's decoder alone
        raise PimsimError(f"{card.name} is an encoder-decoder model; measured baselines cover decoder-only "
                          "models so far")
    prompt_len = card.defaults.prompt_len if prompt_len is None else prompt_len
    gen_tokens = card.defaults.gen_tokens if gen_tokens is None else gen_tokens
    if prompt_len < 1 or gen_tokens < 1:
        raise PimsimError("a measured baseline needs a prompt of at least 1 token and at least 1 generated token")
    if prompt_len + warmup + gen_tokens > card.context:
        raise PimsimError(f"{card.name}: prompt {prompt_len} + {warmup} warm-up + {gen_tokens} tokens exceeds the "
                          f"context of {card.context}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads on a shared machine
    import logging
    import warnings

    import torch
    import transformers

    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)

    if device == "cuda" and not torch.cuda.is_available():
        raise PimsimError("--device cuda: torch sees no CUDA GPU here")
    if threads is not None:
        torch.set_num_threads(threads)
    cudnn_sdp_off = False
    if device == "cuda" and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)
        cudnn_sdp_off = True
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    config = transformers.AutoConfig.for_model(card.hf.model_type, **card.hf.config)
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch_dtype,
                                                              attn_implementation=attention).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ids = torch.randint(0, config.vocab_size, (1, prompt_len), device=device)
    counter = _EnergyCounter(device, torch)
    core_counter = CoreDomainCounter() if device == "cpu" else None
    decoder = Decoder(model, config, settings, prompt_len + warmup + gen_tokens)
    times, cpu_times = [], []
    load_before = os.getloadavg()[0]
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        token = decoder.prefill(ids)
        sync()
        prefill_s = time.perf_counter() - t0
        tokens = [int(token)]
        for i in range(warmup + gen_tokens):
            if i == warmup:
                counter.start()
                if core_counter:
                    core_counter.start()
                run_t0 = time.perf_counter()
            sync()
            t, cpu_t = time.perf_counter(), time.process_time()
            token = decoder.step(token)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t)
                cpu_times.append(time.process_time() - cpu_t)
            tokens.append(int(token))  # after the clock: reading the id back is not part of a decode step
        run_s = time.perf_counter() - run_t0
        joules = counter.stop(run_s)
        core_joules = core_counter.stop() if core_counter else None
    times_sorted = sorted(times)
    pick = lambda q: times_sorted[min(len(times_sorted) - 1, int(q * len(times_sorted)))]  # noqa: E731
    record = {
        "kind": "measured", "model": card.name, "device": device, "dtype": dtype, "attention": attention,
        "cudnn_sdpa_disabled": cudnn_sdp_off, "prompt_len": prompt_len,
        "gen_tokens": gen_tokens, "warmup_tokens": warmup, "weights": f"random (seed {seed}), same shapes as the card",
        "latency_per_token_s": statistics.median(times), "latency_p10_s": pick(0.1), "latency_p90_s": pick(0.9),
        "latency_mean_s": statistics.fmean(times), "per_token_s": times, "prefill_s": prefill_s,
        "energy_per_token_J": joules / gen_tokens if joules is not None else None,
        "energy_kind": counter.kind if joules is not None else None,
        "energy_note": None if joules is not None else getattr(counter, "why", "no counter"),
        "average_power_W": joules / run_s if joules is not None else None,
        "host": _host(device, torch, threads),
        "peak_memory_bytes": (torch.cuda.max_memory_allocated() if device == "cuda" else _max_rss()),
    }
    record.update(settings.as_record())
    # on a shared machine the wall-clock median includes time the run waited for a core; the process's CPU
    # time per step does not (with one thread it is the step's compute alone), so the two together show
    # how much the load stretched the run
    record["cpu_time_per_token_s"] = statistics.median(cpu_times)
    record["host"]["load_average_1min"] = [load_before, os.getloadavg()[0]]
    record["compile_s"] = decoder.compile_s
    record["tokens"] = tokens  # greedy token ids: methods that compute the same function generate the same ones
    if device == "cpu":
        record["core_power"] = core_power(torch.get_num_threads(), record["latency_per_token_s"], run_s, gen_tokens,
                                          core_joules, core_counter.why, cpu_spec)
    return record


def _max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _host(device: str, torch, threads) -> dict:
    host = {"cpu": _cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "threads_requested": threads,
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "platform": platform.platform()}
    if device == "cuda":
        host["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
        try:
            import pynvml

            pynvml.nvmlInit()
            host["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # the driver version is a nicety
            host["driver"] = None
    return host
