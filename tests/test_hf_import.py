"""Model cards from Hugging Face config.json files: `--model path/config.json` and `pimsim model import`."""

from __future__ import annotations

import json

import pytest
import yaml

from pimsim.cli import main
from pimsim.errors import PimsimError
from pimsim.workloads.cards import load_card
from pimsim.workloads.tracer import traced_graph

TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0", "use_cache": True, "num_hidden_layers": 2, "hidden_size": 64,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 300,
    "max_position_embeddings": 128, "tie_word_embeddings": False, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}}


def write_config(folder, fields, name="config.json"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(fields))
    return path


def test_a_config_file_or_its_folder_is_a_card(tmp_path):
    path = write_config(tmp_path / "tiny-llama-3", TINY_LLAMA_CONFIG)
    for given in (path, path.parent, str(path)):
        card = load_card(given)
        assert card.name == "tiny-llama-3" and card.hf.model_type == "llama" and card.context == 128
        assert "torch_dtype" not in card.hf.config and "architectures" not in card.hf.config
        assert "left out: architectures, torch_dtype, transformers_version, use_cache" in card.description
    graph = traced_graph(card, use_cache=False)
    assert graph.meta.kv_heads == 2 and graph.meta.layers == 2
    # transformers rewrites rope_scaling in place; the card must not change under it
    assert card.hf.config["rope_scaling"] == TINY_LLAMA_CONFIG["rope_scaling"]
    assert load_card(path).shape_key() == card.shape_key()


def test_the_same_architecture_as_a_bundled_card_traces_the_same_graph(tmp_path):
    bundled = load_card("tinyllama-1.1b")
    fields = {"model_type": "llama", **bundled.hf.config, "max_position_embeddings": 2048}
    card = load_card(write_config(tmp_path / "tl", fields))
    assert card.shape_key() == bundled.shape_key()


def test_a_sliding_window_leaves_the_context_at_the_positions(tmp_path):
    fields = {"model_type": "mistral", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 300, "max_position_embeddings": 256,
              "sliding_window": 96}
    card = load_card(write_config(tmp_path / "m", fields))
    assert card.context == 256  # the tracer honours the window per layer (a ring KV cache); no cap needed


def test_model_import_writes_a_card_that_loads_back(tmp_path, capsys):
    path = write_config(tmp_path / "src", TINY_LLAMA_CONFIG)
    out = tmp_path / "card.yaml"
    assert main(["model", "import", str(path), "-o", str(out), "--name", "mine", "--prompt-len", "8",
                 "--gen-tokens", "2"]) == 0
    assert "model card mine" in capsys.readouterr().out
    card = load_card(out)
    assert card.name == "mine" and card.defaults.prompt_len == 8 and card.defaults.gen_tokens == 2
    assert yaml.safe_load(out.read_text())["hf"]["config"]["rope_scaling"]["rope_type"] == "llama3"
    assert main(["run", "--hw", "gddr6-aim.yaml", "--model", str(out), "--quiet"]) == 0


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON config"),
    ("[1, 2]", "expected a JSON object"),
    ('{"hidden_size": 64}', "model_type: missing"),
    ('{"model_type": "llama", "hidden_size": 64}', "no number of positions"),
    ('{"model_type": "not-a-model", "max_position_embeddings": 64}', "is not a model type of transformers"),
])
def test_bad_configs_are_one_message(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["model", "import", str(path), "-o", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "c.yaml").exists()


def test_a_missing_config_is_named(tmp_path):
    with pytest.raises(PimsimError, match="no such file"):
        load_card(tmp_path / "nowhere" / "config.json")


@pytest.mark.parametrize("name, layers, weights_B", [("qwen2.5-0.5b", 24, 0.494), ("gemma-2-2b", 26, 2.614),
                                                     ("phi-3-mini", 32, 3.821), ("mistral-7b", 32, 7.248),
                                                     ("qwen2.5-7b", 28, 7.615), ("llama-3.1-8b", 32, 8.030),
                                                     ("gpt-j-6b", 28, 6.050)])
def test_cards_of_todays_models_trace_to_their_published_sizes(name, layers, weights_B):
    graph = traced_graph(load_card(name))
    assert graph.meta.layers == layers
    assert graph.weight_elements() / 1e9 == pytest.approx(weights_B, abs=0.001)


def test_a_fifo_is_named_and_never_read(tmp_path):
    import os

    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(PimsimError, match="is a FIFO"):  # reading it would block
        load_card(fifo)


def test_a_mixture_of_experts_config_imports_and_traces(tmp_path, capsys):
    """Before, MoE configs were refused; now the card traces with its router and experts."""
    fields = {"model_type": "mixtral", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 300, "max_position_embeddings": 256,
              "num_local_experts": 4, "num_experts_per_tok": 2}
    path = write_config(tmp_path / "moe", fields)
    assert main(["model", "import", str(path), "-o", str(tmp_path / "moe.yaml")]) == 0
    graph = traced_graph(load_card(tmp_path / "moe.yaml"), use_cache=False)
    assert graph.meta.moe.to_dict() == {"layers": [0, 1], "experts": 4, "top_k": 2}
