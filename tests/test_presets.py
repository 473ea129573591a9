"""Every preset validates, says what it is, and builds its model (on a tiny model of the same family)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.architectures import model_choice
from studio.config import RunConfig
from studio.models import build_model

PRESETS = sorted((Path(__file__).parent.parent / "presets").glob("*.yaml"))


def test_there_are_presets():
    assert {p.stem for p in PRESETS} >= {"quick_demo", "imdb_bert_qlora"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_validates_and_builds(path, tiny_model_dir):
    config = RunConfig.from_yaml(path)
    assert config.description and path.read_text().startswith("#"), "a preset says what it reproduces"
    assert RunConfig.from_yaml(path).to_dict() == RunConfig.from_dict(config.to_dict()).to_dict()
    choice = model_choice(config.model.name)
    family = choice.family if choice else "bert"
    # the tiny models have 2 layers: a preset's frozen lower layers (the quick demo's 3) become 1 of them
    frozen = min(config.method.freeze_layers, 1)
    tiny = config.with_overrides([f"model.name={tiny_model_dir(family)}", f"method.freeze_layers={frozen}"])
    bundle = build_model(tiny, ["a", "b"])
    assert bundle.trainable_params > 0


def test_seed_000_preset_is_the_study_recipe():
    c = RunConfig.from_yaml(Path(__file__).parent.parent / "presets" / "imdb_bert_qlora.yaml")
    assert (c.model.name, c.method.name, c.method.bits, c.method.quant_type, c.method.double_quant) == (
        "bert-base", "qlora", 4, "nf4", True)  # fmt: skip
    assert (c.method.r, c.method.alpha, c.method.dropout, c.method.placement) == (16, 32, 0.1, "qv")
    t = c.train
    assert (t.epochs, t.batch_size, t.grad_accum, t.learning_rate, t.scheduler) == (3, 16, 2, 2e-4, "cosine")
    assert (t.warmup_ratio, t.weight_decay, t.optimizer, t.precision) == (0.1, 0.01, "paged_adamw_8bit", "fp16")
    assert t.gradient_checkpointing and t.early_stopping_patience == 2
    assert c.data.max_length == 256 and c.data.split_ratios == [0.8, 0.1, 0.1] and c.data.splits == "ratio"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_a_presets_learning_rate_stays_near_its_methods_safe_rate_and_says_why_above_it(path):
    """Issue 20: presets use the range test's measured safe rates (methods.Method.safe_learning_rate); a short
    demo may need more (its few steps), within 3x, and its learning_rate line says so."""
    config = RunConfig.from_yaml(path)
    rate, safe = config.train.learning_rate, config.method.spec.safe_learning_rate
    assert rate <= 3 * safe, f"{path.name}: {rate:g} is more than 3x {config.method.name}'s safe rate {safe:g}"
    if rate > safe:
        line = next(x for x in path.read_text().splitlines() if x.strip().startswith("learning_rate:"))
        assert "safe rate" in line, f"{path.name}: say on the learning_rate line why it is above the safe rate"
