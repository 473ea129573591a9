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
