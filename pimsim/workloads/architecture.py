"""What a transformers config (or a saved config.json's fields) says about the architecture that
decides whether pimsim can time it: a sliding attention window, mixture-of-experts layers. The tracer
asks these of the config it builds; ``pimsim model import`` of the file it reads, so both agree. Plain
attribute reads: no torch or transformers import."""

from __future__ import annotations


def attention_window(config) -> int | None:
    """The sliding window of the model's attention, if any layer attends over a window only (Mistral,
    Gemma 2, Qwen 2 with use_sliding_window); None for full attention everywhere."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    if getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window


# Config fields that give a mixture-of-experts model's expert count (Mixtral; Qwen-MoE, OLMoE;
# DeepSeek; others).
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def mixture_of_experts(config) -> int | None:
    """The number of experts per layer of a mixture-of-experts config, None for a dense model."""
    for key in _EXPERT_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return None
