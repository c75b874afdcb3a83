"""Model cards: a decoder's (or encoder-decoder's) Hugging Face architecture config plus pimsim's
defaults for it.

A card names a ``transformers`` model type and the config values that differ from its defaults; the
tracer builds the model from exactly that, so a new decoder family needs a card, not code. An
encoder-decoder card (BART) also gives the source length its encoder runs over, ``defaults.source_len``;
whether a model is one is its config's to say, so the tracer checks that, not the loader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_serializer

from pimsim.config.files import problems_from_validation, read_yaml
from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import resolve
from pimsim.workloads.hf_import import card_fields, is_hf_config_path, read_hf_config

if TYPE_CHECKING:
    from pimsim.config.models import HardwareConfig

# Bounded before any tracing: a mistyped layer count would otherwise trace for minutes with no output.
MAX_LAYERS = 1024
LAYER_KEYS = ("n_layer", "num_hidden_layers", "num_layers", "decoder_layers", "encoder_layers")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HfArchitecture(_Strict):
    model_type: str = Field(min_length=1, description="transformers model type (gpt2, opt, llama, ...)")
    config: dict[str, Any] = Field(default_factory=dict, description="config values that differ from the defaults")


class RunDefaults(_Strict):
    prompt_len: StrictInt = Field(64, ge=0, description="tokens already in the KV cache when generation starts")
    gen_tokens: StrictInt = Field(16, ge=1, description="tokens generated")
    source_len: StrictInt | None = Field(None, ge=1, description="encoder-decoder models only (required there): "
                                                                  "source tokens the encoder runs over")


# which weight formats each quantizer produces (pimsim.workloads.quantize)
QUANTIZER_FORMATS = {"bitnet": ("ternary", "ternary-b3"), "liu-ternary": ("ternary", "ternary-b3"),
                     "liu-binary": ("binary",)}


class Quantization(_Strict):
    """How the model's transformer-block weights are stored (embeddings and the LM head stay in the
    hardware's KV-cache format, as BitNet keeps them in high precision)."""

    weight_format: Literal["bf16", "fp16", "fp8-e4m3", "int8", "int4-g128", "ternary", "ternary-b3", "binary"]
    quantizer: Literal["bitnet", "liu-ternary", "liu-binary"] | None = Field(
        None, description="how weights and activations are quantized (functional runs; timing does not depend "
                          "on it)")


class ExpertRouting(_Strict):
    """Mixture-of-experts models only: how generated tokens pick their experts (pimsim.workloads.routing)."""

    routing: Literal["uniform", "zipf", "trace"] = Field("uniform", description="seeded uniform choice, seeded "
                                                         "Zipf-skewed choice, or a recorded routing trace")
    seed: StrictInt = Field(0, ge=0, description="seed of the uniform and zipf models")
    skew: float = Field(1.0, ge=0, le=16, description="zipf: expert of rank r picked with weight 1 / r ** skew")
    trace: str | None = Field(None, description="trace: CSV file token,layer,experts (relative to the working "
                                                "directory)")
    placement: Literal["spread", "channel_groups"] = Field("spread", description="where experts sit: every "
                                                           "expert over every channel, or expert e on channel "
                                                           "group e mod channel_groups")
    channel_groups: StrictInt | None = Field(None, ge=1, description="channel_groups: the group count (default: "
                                                                     "the most that divide the channels, at most "
                                                                     "one per expert)")

    def spec(self):
        from pimsim.workloads.routing import RoutingSpec

        return RoutingSpec(self.routing, self.seed, self.skew, Path(self.trace) if self.trace else None,
                           self.placement, self.channel_groups)


class ModelCard(_Strict):
    version: StrictInt = Field(description="schema version of this file (1)")
    name: str = Field(min_length=1)
    description: str = ""
    hf: HfArchitecture
    context: StrictInt = Field(ge=2, le=1 << 20, description="longest sequence the model supports")
    defaults: RunDefaults = RunDefaults()
    quantization: Quantization | None = None
    experts: ExpertRouting | None = Field(None, description="mixture-of-experts models: expert routing "
                                                            "(uniform, seed 0 when not given)")

    @model_serializer(mode="wrap")
    def _without_absent_experts(self, handler):
        # a card without an experts section dumps (and hashes) as it did before the section existed
        data = handler(self)
        if isinstance(data, dict) and data.get("experts") is None:
            data.pop("experts", None)
        return data

    def routing(self):
        """The card's expert routing (uniform, seed 0 where the card gives none)."""
        return (self.experts or ExpertRouting()).spec()

    def shape_key(self) -> str:
        """A hash of everything that shapes the traced graph (not the name or the defaults)."""
        text = json.dumps({"model_type": self.hf.model_type, "config": self.hf.config}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_HIDDEN_KEYS = ("n_embd", "hidden_size", "d_model")
_FFN_KEYS = ("n_inner", "intermediate_size", "ffn_dim", "decoder_ffn_dim")


def weight_lower_bound(card: ModelCard) -> int | None:
    """At least how many weights the card's blocks and embedding hold, from its config alone (None where
    the config does not name its layer count and width). Every block has at least a query and an output
    projection of width x width and an MLP of two width x ffn matrices, and the token embedding is vocab
    x width: a lower bound for any model family, so a card far too large for a memory is refused before
    a tracing that takes seconds to minutes."""
    config = card.hf.config

    def first(keys) -> int | None:
        for key in keys:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    layers, hidden = first(LAYER_KEYS), first(_HIDDEN_KEYS)
    if layers is None or hidden is None:
        return None
    ffn = first(_FFN_KEYS) or 0
    vocab = first(("vocab_size",)) or 0
    return layers * (2 * hidden * hidden + 2 * hidden * ffn) + vocab * hidden


def load_card(name_or_path: str | Path) -> ModelCard:
    """Load ``--model NAME`` (bundled card), a path to a card, or a Hugging Face ``config.json`` (or a
    directory holding one: a card is built from it, see :mod:`pimsim.workloads.hf_import`); every
    problem reported at once."""
    if is_hf_config_path(name_or_path):
        config_path, fields = read_hf_config(name_or_path)
        return validated_card(card_fields(config_path, fields), str(config_path))
    path = resolve(name_or_path, "workloads")
    return validated_card(read_yaml(path), str(path))


def validated_card(raw: Any, where: str) -> ModelCard:
    """A card from its data, every problem reported at once against `where`."""
    if not isinstance(raw, dict):
        raise ConfigError(where, [Problem("", "expected a mapping at the top level (a model card)")])
    problems = []
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(where, problems_from_validation(exc, ModelCard)) from None
    if card.version != 1:
        problems.append(Problem("version", f"{card.version}: this pimsim reads model cards of version 1"))
    d = card.defaults
    if d.prompt_len + d.gen_tokens > card.context:
        problems.append(Problem("defaults", f"prompt_len {d.prompt_len} + gen_tokens {d.gen_tokens} exceeds the "
                                            f"context of {card.context}"))
    for key in LAYER_KEYS:
        layers = card.hf.config.get(key)
        if isinstance(layers, int) and layers > MAX_LAYERS:
            problems.append(Problem(f"hf.config.{key}", f"{layers:,} layers: more than the {MAX_LAYERS:,} pimsim "
                                                        f"traces (the largest published decoders have under 200)"))
    q = card.quantization
    if q is not None and q.quantizer is not None and q.weight_format not in QUANTIZER_FORMATS[q.quantizer]:
        problems.append(Problem("quantization.quantizer", f"{q.quantizer} makes "
                                f"{' or '.join(QUANTIZER_FORMATS[q.quantizer])} weights, not {q.weight_format}"))
    e = card.experts
    if e is not None and (e.routing == "trace") != (e.trace is not None):
        problems.append(Problem("experts.trace", "a routing trace file goes with routing: trace, and only with it"))
    if e is not None and e.channel_groups is not None and e.placement != "channel_groups":
        problems.append(Problem("experts.channel_groups", "goes with placement: channel_groups"))
    if problems:
        raise ConfigError(where, problems)
    return card


def hardware_for(hw: HardwareConfig, card: ModelCard, weight_format: str | None = None) -> HardwareConfig:
    """The hardware holding the model's block weights in `weight_format`, else in the card's format,
    else in the hardware's own (see HardwareConfig.with_weight_format)."""
    fmt = weight_format or (card.quantization.weight_format if card.quantization else None)
    if fmt is None or hw.pim is None:
        return hw
    try:
        return hw.with_weight_format(fmt)
    except ValueError as exc:
        raise PimsimError(f"{card.name} in {fmt}: {exc}") from None


def check_weights_are_cards(card: ModelCard, config) -> None:
    """Loaded weights' transformers `config` must be the card's model: its model type and every whole-number
    or boolean setting the card gives (a mismatch is refused, not simulated as the card)."""
    if getattr(config, "model_type", card.hf.model_type) != card.hf.model_type:
        raise PimsimError(f"the weights are not {card.name}'s: a {config.model_type} model, the card says "
                          f"{card.hf.model_type}")
    want = card.hf.config
    for key, value in want.items():
        got = getattr(config, key, None)
        if isinstance(value, (int, bool)) and got is not None and got != value:
            raise PimsimError(f"the weights are not {card.name}'s: {key} is {got}, the card says {value}")
