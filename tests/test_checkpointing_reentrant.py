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


def _kept_by_a_forward(model, batch) -> float:
    """MB of tensor storage a training forward leaves alive (what backward will read)."""
    import gc

    def live() -> dict[int, int]:
        out = {}
        for o in gc.get_objects():
            if isinstance(o, torch.Tensor):
                try:
                    storage = o.untyped_storage()
                except (RuntimeError, NotImplementedError):
                    continue
                out[storage.data_ptr()] = storage.nbytes()
        return out

    gc.collect()
    before = live()
    out = model(**batch)
    gc.collect()
    kept = sum(n for ptr, n in live().items() if ptr not in before) / 2**20
    out.loss.backward()
    return kept


def test_an_8bit_base_checkpoints_through_the_reentrant_path_which_keeps_no_layer_input(tiny_model_dir, tmp_path):
    """bitsandbytes' 8-bit matmul keeps its input on the autograd context, out of the non-reentrant path's reach:
    with that path the forward kept every 8-bit layer's input (H200: 7.5 GB against 4.8 estimated). The studio
    takes the reentrant path over an 8-bit base, and the forward keeps a fraction of it."""
    from studio.models import build_model

    config = tiny_config(tiny_model_dir("bert"), "qlora", gradient_checkpointing=True)
    eight = config.with_overrides(["method.bits=8"])
    assert (config.reentrant_checkpointing, eight.reentrant_checkpointing) == (False, True)
    assert eight.train.checkpointing_reentrant is False  # the config says what was asked, not what runs
    bundle = build_model(eight, ["negative", "positive"])
    assert any("reentrant path over the 8-bit base" in n for n in bundle.notes)
    model = bundle.model
    model.train()
    batch = {"input_ids": torch.randint(5, 100, (16, 128)), "labels": torch.zeros(16, dtype=torch.long)}
    reentrant = _kept_by_a_forward(model, batch)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    non_reentrant = _kept_by_a_forward(model, batch)
    print(f"kept by the forward: reentrant {reentrant:.1f} MB, non-reentrant {non_reentrant:.1f} MB")
    assert reentrant < 0.5 * non_reentrant, (reentrant, non_reentrant)
    assert all(torch.count_nonzero(p.grad) for n, p in model.named_parameters() if "lora_B" in n)
    args = hf_trainer.training_arguments(eight, tmp_path, None, "fp32", hf_trainer.BatchLayout(16, 1, 1), [])
    kwargs = getattr(args, "activation_checkpointing_kwargs", None) or args.gradient_checkpointing_kwargs
    assert kwargs == {"use_reentrant": True}  # and the Trainer is told the same
