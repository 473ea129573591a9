"""`method.freeze_layers`: the embeddings and the lowest layers kept as they are (full fine-tuning freezes them,
LoRA / QLoRA / IA3 put no adapters there), counted alike by training and the memory estimate."""

from __future__ import annotations

import pytest
import torch

from studio.config import RunConfig
from studio.errors import ModelError
from studio.hardware import Device
from studio.memory import estimate
from studio.models import build_model

CPU = Device("cpu", "cpu", 24_000.0, 24_000.0, 0)


def config(folder, method="full", freeze=1, batch_size=16) -> RunConfig:
    return RunConfig.from_dict({
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
        "model": {"name": str(folder)},
        "method": {"name": method, "freeze_layers": freeze},
        "train": {"epochs": 1, "batch_size": batch_size},
    })  # fmt: skip


@pytest.mark.parametrize("family", ["bert", "distilbert", "deberta-v2", "llama"])
def test_the_embeddings_and_the_lowest_layers_stay_frozen_and_the_estimate_counts_the_same(tiny_model_dir, family):
    bundle = build_model(config(tiny_model_dir(family)), ["neg", "pos"])
    frozen = [n for n, p in bundle.model.named_parameters() if not p.requires_grad]
    trained = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    assert frozen and all(".0." in n or "embed" in n for n in frozen), frozen
    assert any(".1." in n for n in trained), trained  # the top layer (of 2) trains, and the head
    assert not any(".0." in n for n in trained)
    assert bundle.trainable_params == sum(p.numel() for p in bundle.model.parameters() if p.requires_grad)
    assert estimate(config(tiny_model_dir(family)), device=CPU).trainable_params == bundle.trainable_params


def test_nothing_below_the_trained_layers_gets_a_gradient(tiny_model_dir):
    bundle = build_model(config(tiny_model_dir("bert")), ["neg", "pos"])
    batch = bundle.tokenizer(["a good film", "a bad film"], return_tensors="pt", padding=True)
    bundle.model(**batch, labels=torch.tensor([1, 0])).loss.backward()
    grads = {n: p.grad is not None for n, p in bundle.model.named_parameters()}
    assert all(grads[n] for n, p in bundle.model.named_parameters() if p.requires_grad)
    assert not any(grads[n] for n, p in bundle.model.named_parameters() if not p.requires_grad)


def test_freezing_cuts_the_estimated_optimizer_state_and_peak(tiny_model_dir):
    est = {k: estimate(config(tiny_model_dir("bert"), freeze=k, batch_size=64), device=CPU) for k in (0, 1, 2)}
    assert est[0].parts["optimizer"] > est[1].parts["optimizer"] > est[2].parts["optimizer"]
    assert est[0].total_mb > est[1].total_mb > est[2].total_mb
    assert est[0].parts["weights"] == est[2].parts["weights"]


@pytest.mark.parametrize(("family", "method"), [("bert", "lora"), ("gpt2", "lora"), ("llama", "ia3"),
                                                ("roberta", "qlora")])  # fmt: skip
def test_adapters_go_only_above_the_frozen_layers(tiny_model_dir, family, method):
    bundle = build_model(config(tiny_model_dir(family), method=method), ["neg", "pos"])
    adapters = [n for n, p in bundle.model.named_parameters() if p.requires_grad and ("lora_" in n or "ia3_" in n)]
    assert adapters and all(".1." in n for n in adapters), adapters  # layer 1 of 2 only
    if method != "qlora":  # the estimate's meta copy is never quantized: it counts the same adapters
        assert estimate(config(tiny_model_dir(family), method=method), device=CPU).trainable_params == (
            bundle.trainable_params)  # fmt: skip


def test_too_many_layers_are_refused_in_words(tiny_model_dir):
    with pytest.raises(ModelError, match="has 2 transformer layers, so 3 cannot be frozen; use at most 2"):
        build_model(config(tiny_model_dir("bert"), freeze=3), ["neg", "pos"])
    with pytest.raises(ModelError, match="so 3 cannot be frozen"):
        estimate(config(tiny_model_dir("bert"), freeze=3), device=CPU)
    with pytest.raises(ModelError, match="so 2 cannot be frozen; use at most 1 .1 leaves one layer for the adapters"):
        build_model(config(tiny_model_dir("bert"), method="lora", freeze=2), ["neg", "pos"])


def test_freezing_nothing_keeps_every_earlier_run_identity(tiny_model_dir):
    base = RunConfig.from_dict({"data": {"source": "imdb-sample"}, "method": {"name": "full"}})
    explicit = RunConfig.from_dict({"data": {"source": "imdb-sample"}, "method": {"name": "full", "freeze_layers": 0}})
    frozen = RunConfig.from_dict({"data": {"source": "imdb-sample"}, "method": {"name": "full", "freeze_layers": 2}})
    assert base.config_hash() == explicit.config_hash() != frozen.config_hash()


def test_a_run_with_frozen_layers_trains_saves_and_reloads_the_same(tiny_model_dir, runs_dir):
    from test_training import assert_reload_reproduces_saved_predictions

    from studio.registry import Registry
    from studio.training import Run

    registry = Registry(runs_dir)
    result = Run(config(tiny_model_dir("bert")), registry).execute()
    assert result.status == "completed", result.message
    eff = result.summary.efficiency
    assert 0 < eff.trainable_params < eff.total_params
    assert_reload_reproduces_saved_predictions(registry, result.run_id)
