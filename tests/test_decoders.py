"""Decoder LLMs as classifiers (GPT-2, Qwen2, Llama, Gemma 3 text): each trains with LoRA, QLoRA (4-bit on
CPU with bitsandbytes) and IA3, saves, and reloads to exactly the probabilities it measured."""

from __future__ import annotations

import numpy as np
import pytest
from test_training import assert_reload_reproduces_saved_predictions, events_of, tiny_config

from studio.registry import Registry
from studio.training import Run

DECODERS = ("gpt2", "qwen2", "llama", "gemma3")


@pytest.mark.parametrize("method", ["lora", "qlora", "ia3"])
@pytest.mark.parametrize("family", DECODERS)
def test_a_decoder_trains_saves_and_reloads(tiny_model_dir, runs_dir, family, method):
    registry = Registry(runs_dir)
    result = Run(tiny_config(tiny_model_dir(family), method, max_steps=3), registry).execute()
    assert result.status == "completed", result.message
    losses = [e["loss"] for e in events_of(registry, result.run_id) if e["kind"] == "log" and "loss" in e]
    assert losses and all(np.isfinite(losses))
    predictor = assert_reload_reproduces_saved_predictions(registry, result.run_id)
    # the last-token pooling needs the pad token and right padding the studio set; both survive the reload
    assert predictor.tokenizer.pad_token is not None and predictor.tokenizer.padding_side == "right"


@pytest.mark.parametrize("family", DECODERS)
def test_a_decoder_trains_in_8_bit_and_with_gradient_checkpointing(tiny_model_dir, runs_dir, family):
    """LLM.int8() bases and checkpointed LoRA (frozen embeddings: the inputs must require grad, or the
    checkpointed layers get no gradient and the adapters never train)."""
    registry = Registry(runs_dir)
    for method, train in (("qlora", {"max_steps": 2}), ("lora", {"max_steps": 2, "gradient_checkpointing": True})):
        config = tiny_config(tiny_model_dir(family), method, **train)
        if method == "qlora":
            config = config.with_overrides(["method.bits=8"])
        result = Run(config, registry).execute()
        assert result.status == "completed", f"{method} {train}: {result.message}"
        grad_norms = [e["grad_norm"] for e in events_of(registry, result.run_id) if e.get("grad_norm") is not None]
        assert grad_norms and all(np.isfinite(grad_norms)) and max(grad_norms) > 0, (method, grad_norms)
