"""`train.checkpointing_reentrant`: gradient checkpointing through PyTorch's reentrant path (what peft and
transformers 4 ran by default, so what published QLoRA recipes measured), reaching the Trainer and training."""

from __future__ import annotations

import pytest
import torch
from test_training import tiny_config

from studio import hf_trainer
from studio.config import RunConfig
from studio.registry import Registry
from studio.training import Run


@pytest.mark.parametrize("method", ["lora", "qlora"])  # qlora: through peft's prepare_model_for_kbit_training
def test_the_setting_reaches_the_trainer_and_a_tiny_run_trains_through_the_adapters(
    tiny_model_dir, runs_dir, monkeypatch, method
):
    built = []
    original = hf_trainer.build_trainer

    def capture(*a, **k):
        out = original(*a, **k)
        built.append(out[0])
        return out

    monkeypatch.setattr(hf_trainer, "build_trainer", capture)
    config = tiny_config(
        tiny_model_dir("bert"), method, max_steps=4, gradient_checkpointing=True, checkpointing_reentrant=True
    )
    result = Run(config, Registry(runs_dir)).execute()
    assert result.status == "completed", result.message
    (trainer,) = built
    args = trainer.args
    kwargs = getattr(args, "activation_checkpointing_kwargs", None) or args.gradient_checkpointing_kwargs
    assert kwargs == {"use_reentrant": True}
    # the gradient reached the lowest layer's adapter inside its checkpointed block (reentrant checkpointing
    # passes none when the block's input does not require grad: the embeddings' output is made to)
    lowest = [p for n, p in trainer.model.named_parameters() if "lora_B" in n and ".0." in n]
    assert lowest and all(torch.count_nonzero(p) for p in lowest)


def test_default_off_keeps_the_non_reentrant_path_and_the_config_hash():
    base = RunConfig()
    assert base.train.checkpointing_reentrant is False
    assert {"use_reentrant": False} in hf_trainer.checkpointing_args(True).values()
    assert {"use_reentrant": True} in hf_trainer.checkpointing_args(True, reentrant=True).values()
    explicit = base.with_overrides(["train.checkpointing_reentrant=false"])
    assert explicit.config_hash() == base.config_hash()
    assert base.with_overrides(["train.checkpointing_reentrant=true"]).config_hash() != base.config_hash()
    # a run recorded before the field existed (no key, older format) keeps its identity
    old = base.to_dict()
    old["train"].pop("checkpointing_reentrant")
    old["version"] = 5
    assert RunConfig.from_dict(old).config_hash() == base.config_hash()
