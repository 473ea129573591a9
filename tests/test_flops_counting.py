"""benchmarks/flops.py: the FLOP conventions the speed tables state (a full fine-tune counts every weight's
gradient; LoRA only its adapters' and the head's; attention's s^2 term from real lengths)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import flops  # noqa: E402


def test_full_fine_tuning_counts_six_per_weight_plus_attention_and_lora_four(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir("bert"), num_labels=2)
    full = flops.shape_of(model)
    assert full.trainable_matmul_params == full.matmul_params < full.total_params  # embeddings: no matmul
    attended = flops.attention_length([10, 30])  # (100 + 900) / 40
    assert attended == 25.0
    per_token = flops.flops_per_token(full, attended)
    assert per_token == pytest.approx(6 * full.matmul_params + 12 * full.layers * 25.0 * full.hidden)
    assert flops.flops_per_token(full, attended, "6N") == 6 * full.total_params

    lora = flops.shape_of(get_peft_model(model, LoraConfig(r=4, target_modules=["query", "value"],
                                                           task_type="SEQ_CLS")))  # fmt: skip
    assert 0 < lora.trainable_matmul_params < lora.matmul_params / 10
    dense = flops.flops_per_token(lora, 0.0)  # no weight gradient for the frozen base: 4 per weight, not 6
    assert dense == pytest.approx(4 * lora.matmul_params + 2 * lora.trainable_matmul_params)
    assert flops.mfu(1e9, 1e5, 1000.0) == pytest.approx(10.0)  # 1e14 FLOP/s of a 1e15 peak
    with pytest.raises(ValueError):
        flops.flops_per_token(full, attended, "5N")
