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


@pytest.mark.parametrize("bf16_here", [True, False])
def test_a_bf16_checkpoint_trains_fp32_master_weights(tiny_model_dir, tmp_path, monkeypatch, bf16_here):
    """Qwen, Llama and Gemma ship bf16 weights. Full fine-tuning must not update them in bf16 (an update of
    lr x grad is far below bf16's spacing and rounds to nothing); under LoRA with a bf16 autocast the frozen base
    stays bf16 (half the memory) while the adapters and the head copy peft makes train in fp32; in a run without
    one (a CPU without bf16, train.precision fp32) the base is loaded in fp32, or its bf16 outputs would meet the
    fp32 head. The estimate counts the same. Both machines are simulated: the rule must not depend on the host."""
    import shutil

    import torch
    from transformers import AutoModel

    from studio import hardware
    from studio.hardware import Device
    from studio.memory import estimate
    from studio.models import build_model

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16_here)
    folder = tmp_path / "llama-bf16"
    AutoModel.from_pretrained(tiny_model_dir("llama")).to(torch.bfloat16).save_pretrained(folder)
    for f in tiny_model_dir("llama").glob("*token*"):
        shutil.copy(f, folder)
    train = {"precision": "bf16"}  # "auto" is fp32 on every CPU; bf16 autocasts only where the CPU has it
    dtypes = {}
    for method in ("full", "lora"):
        bundle = build_model(tiny_config(folder, method, **train), ["neg", "pos"])
        params = dict(bundle.model.named_parameters())
        dtypes[method] = (
            {p.dtype for p in params.values() if p.requires_grad},
            {p.dtype for p in params.values() if not p.requires_grad},
        )
    assert dtypes["full"] == ({torch.float32}, set())
    assert dtypes["lora"] == ({torch.float32}, {torch.bfloat16 if bf16_here else torch.float32})

    cpu = Device("cpu", "cpu", 24_000.0, 24_000.0, 0)
    parts = {m: estimate(tiny_config(folder, m, **train), device=cpu).parts for m in ("full", "lora")}
    ratio = 2 if bf16_here else 1
    assert parts["full"]["weights"] == pytest.approx(ratio * parts["lora"]["weights"], rel=0.01)
