"""Model cards from Hugging Face ``config.json`` files.

``--model path/config.json`` (or a directory holding one) builds a card on the fly, and
``pimsim model import config.json -o card.yaml`` writes it out to edit and keep. The card's
``hf.config`` is the file's architecture fields as they are (transformers fills in its defaults for
the rest, exactly as for a bundled card); fields that describe the checkpoint rather than the
architecture (its dtype, the library version that saved it, remote-code pointers) are left out and
named in the card's description. Nothing is downloaded and no remote code is run: the model type must
be one that the installed transformers knows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pimsim.errors import ConfigError, PimsimError, Problem
from pimsim.resources import check_regular_file

CONFIG_NAME = "config.json"
# Limits on what is read: a config.json is a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20

# Fields of a saved config that describe the checkpoint, not the architecture the tracer builds.
CHECKPOINT_FIELDS = ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype", "auto_map",
                     "quantization_config", "use_cache", "_commit_hash", "_attn_implementation_autoset")
# Where configs keep the number of positions the model was trained for, most specific first.
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
DEFAULT_PROMPT_LEN, DEFAULT_GEN_TOKENS = 64, 16


def is_hf_config_path(name_or_path: str | Path) -> bool:
    """True for a path that names a ``config.json`` file or a directory holding one."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        return True
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def read_hf_config(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The config file's path and its fields; one clear error for anything else."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.exists():
        raise PimsimError(f"{path}: no such file (a Hugging Face config.json, or a directory holding one)")
    check_regular_file(path)  # a directory, FIFO or device is named as such, never read
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise PimsimError(f"{path}: {path.stat().st_size:,} bytes is not a model config (at most "
                          f"{MAX_CONFIG_BYTES:,})")
    try:
        fields = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PimsimError(f"{path}: not a JSON config: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigError(str(path), [Problem("", "expected a JSON object (a Hugging Face model config)")])
    if not isinstance(fields.get("model_type"), str) or not fields["model_type"]:
        raise ConfigError(str(path), [Problem("model_type", "missing: the transformers model type (llama, qwen2, ...) "
                                                            "names the architecture to build")])
    return path, fields


def card_fields(path: Path, fields: dict[str, Any], name: str | None = None, context: int | None = None,
                prompt_len: int | None = None, gen_tokens: int | None = None) -> dict[str, Any]:
    """The model card (as plain data, ready for validation or YAML) built from a config's fields."""
    config = {k: v for k, v in fields.items() if k != "model_type" and k not in CHECKPOINT_FIELDS}
    left_out = sorted(k for k in fields if k in CHECKPOINT_FIELDS)
    positions = next((fields[k] for k in POSITION_FIELDS if isinstance(fields.get(k), int)), None)
    if context is None:
        if positions is None:
            raise PimsimError(f"{path}: the config gives no number of positions ({', '.join(POSITION_FIELDS)}); "
                              "give the context length (--context)")
        context = positions  # a sliding window is honoured per layer (its KV cache is a ring), not a cap
    if name is None:
        name = path.parent.name if path.name == CONFIG_NAME and path.parent.name else path.stem
    prompt_len = min(DEFAULT_PROMPT_LEN, context // 2) if prompt_len is None else prompt_len
    gen_tokens = min(DEFAULT_GEN_TOKENS, max(1, context - prompt_len)) if gen_tokens is None else gen_tokens
    description = f"imported from {path.name} ({fields['model_type']})"
    if left_out:
        description += f"; checkpoint fields left out: {', '.join(left_out)}"
    return {"version": 1, "name": name, "description": description,
            "hf": {"model_type": fields["model_type"], "config": config},
            "context": context, "defaults": {"prompt_len": prompt_len, "gen_tokens": gen_tokens}}


def card_yaml(card: dict[str, Any], source: Path) -> str:
    header = (f"# Imported by `pimsim model import` from {source}: the architecture fields of that config, as\n"
              "# they are (transformers fills in its defaults for the rest). Check the context and defaults.\n")
    return header + yaml.safe_dump(card, sort_keys=False, width=110)
