"""Adapter placement and wrapping (studio/adapters.py) on tiny architectures of every family."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, _configs

from studio import adapters
from studio.adapters import ADAPTER_KINDS, explicit_targets, head_modules, is_adapter_weight, linear_module_names
from studio.architectures import family_for
from studio.config import MethodConfig
from studio.errors import ModelError
from studio.methods import METHODS


def meta_classifier(family: str):
    """The family's tiny classification model, shapes only (placement needs no weights)."""
    from transformers import AutoModelForSequenceClassification

    config = _configs()[family][0]
    config.num_labels = 3
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


def family_of(model):
    return family_for(model.config.model_type)


def test_head_modules_are_the_family_head_plus_what_the_checkpoint_lacked():
    roberta, distilbert, llama = meta_classifier("roberta"), meta_classifier("distilbert"), meta_classifier("llama")
    # RoBERTa's head is a module with children: its missing weights are inside `classifier`
    assert head_modules(roberta, family_of(roberta), ["classifier.dense", "classifier.out_proj"]) == ["classifier"]
    assert head_modules(distilbert, family_of(distilbert), ["classifier"]) == ["pre_classifier", "classifier"]
    assert head_modules(llama, family_of(llama), ["score"]) == ["score"]
    # outside the table: whatever is new trains (a randomly initialised layer must not stay frozen)
    assert head_modules(llama, None, ["score"]) == ["score"]


def test_all_linear_leaves_out_the_head_and_the_unquantized_modules():
    model = meta_classifier("bert")
    names = linear_module_names(model, ["classifier", "bert.pooler"])
    assert names and not any("classifier" in n or "pooler" in n for n in names)
    assert len(names) == 2 * 6  # per layer: query, key, value, attention output, intermediate, output
    method = MethodConfig(name="lora", placement="all-linear")
    assert explicit_targets(model, method, family_of(model), ["classifier"]) == names  # + the family's skips


def test_only_custom_and_all_linear_name_their_own_targets():
    model = meta_classifier("bert")
    family = family_of(model)
    custom = MethodConfig(name="ia3", placement="custom", target_modules=["key", "value"])
    assert explicit_targets(model, custom, family, ["classifier"]) == ["key", "value"]
    for placement in ("qv", "attention", "attention+ffn"):
        assert explicit_targets(model, MethodConfig(name="lora", placement=placement), family, []) is None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["lora", "ia3"])
@pytest.mark.parametrize("placement", ["qv", "attention+ffn"])
def test_named_placements_come_from_the_family_table(family, name, placement):
    model = meta_classifier(family)
    fam = family_of(model)
    method = MethodConfig(name=name, r=8, alpha=16, dropout=0.05, placement=placement)
    config = adapters.peft_config(model, method, fam, [])
    assert config.peft_type.value.lower() == name
    assert sorted(config.modules_to_save) == sorted(head_modules(model, fam, []))
    if name == "lora":
        assert set(config.target_modules) == set(fam.lora_targets(placement))
        assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
    else:
        targets, feedforward = fam.ia3_modules(placement)
        assert (config.target_modules, config.feedforward_modules or None) == (targets, feedforward)


@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_wrap_trains_the_adapters_and_the_head_and_the_kind_names_what_peft_made(tiny_model_dir, name):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir("bert"), num_labels=3)
    wrapped = adapters.wrap(model, MethodConfig(name=name), family_of(model), [])
    kind = ADAPTER_KINDS[name]
    trained = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trained and all(is_adapter_weight(n) or "classifier" in n for n in trained)
    assert any(kind.param_marker in n for n in trained)
    assert any(hasattr(m, kind.module_marker) for m in wrapped.modules())
    assert {m.adapter for m in METHODS.values() if m.adapter} == set(ADAPTER_KINDS)


def test_a_placement_that_matches_nothing_is_a_readable_error(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir("bert"), num_labels=3)
    method = MethodConfig(name="lora", placement="custom", target_modules=["no_such_module"])
    with pytest.raises(ModelError, match="method.placement: could not place lora adapters"):
        adapters.wrap(model, method, family_of(model), [])
    with pytest.raises(ValueError, match="no adapters"):
        adapters.peft_config(model, MethodConfig(name="full"), family_of(model), [])


def test_adapter_weights_are_told_from_the_base_and_the_head():
    assert is_adapter_weight("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight")
    assert is_adapter_weight("base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l")
    assert not is_adapter_weight("base_model.model.classifier.modules_to_save.default.weight")


def test_lora_on_gpt2_conv1d_sets_fan_in_fan_out_so_peft_does_not_warn():
    """GPT-2's attention and MLP are Conv1D (weights stored transposed): the config says so, rather than peft
    warning on every wrap and load that it corrected it; a Linear model keeps the default."""
    import warnings

    from peft import get_peft_model

    gpt2, bert = meta_classifier("gpt2"), meta_classifier("bert")
    method = MethodConfig(name="lora", placement="qv")
    config = adapters.peft_config(gpt2, method, family_of(gpt2), ["score"])
    assert config.fan_in_fan_out is True
    assert adapters.peft_config(bert, method, family_of(bert), ["classifier"]).fan_in_fan_out is False
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="fan_in_fan_out")
        get_peft_model(gpt2, config)
