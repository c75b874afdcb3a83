"""What a transformers config says about its attention: a sliding window. The tracer records it in the
graph's meta (which layers use it, it reads from their KV cache layers). Plain attribute reads: no torch
or transformers import."""

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
