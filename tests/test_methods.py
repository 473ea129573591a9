"""The method table (studio/methods.py): every row is consistent, and the config and the engine read it."""

from __future__ import annotations

import typing

import pytest

from studio.adapters import ADAPTER_KINDS
from studio.config import RunConfig
from studio.errors import ConfigError
from studio.methods import ADAPTER_METHODS, METHODS, MethodName


def test_the_table_holds_exactly_the_methods_the_config_accepts():
    assert tuple(METHODS) == typing.get_args(MethodName) == ("full", "lora", "qlora", "ia3")
    for name, method in METHODS.items():
        assert method.name == name
        assert RunConfig.from_dict({"method": {"name": name}}).method.spec is method
    with pytest.raises(ConfigError, match="method.name"):
        RunConfig.from_dict({"method": {"name": "dora"}})


@pytest.mark.parametrize("name", list(METHODS))
def test_each_row_is_consistent(name):
    m = METHODS[name]
    assert (m.adapter is None) == (m.default_placement is None) == m.trains_every_weight == (not m.mergeable)
    assert m.saves == ("model" if m.adapter is None else "adapter")
    assert m.adapter is None or m.adapter in ADAPTER_KINDS  # peft knows how to build it
    assert m.quantized == (m.base_weights == "quantized")
    assert not m.rank or m.adapter == "lora"  # r, alpha and dropout are LoRA's knobs
    assert m.base_weights == ("fp32" if m.adapter is None else m.base_weights)
    if m.quantized_variant:  # the same adapters, on a quantized base
        twin = METHODS[m.quantized_variant]
        assert twin.quantized and not m.quantized and twin.adapter == m.adapter
    if m.unquantized_variant:
        twin = METHODS[m.unquantized_variant]
        assert m.quantized and not twin.quantized and twin.adapter == m.adapter
    if m.leaner:
        assert METHODS[m.leaner].quantized and not m.quantized


def test_labels_tags_and_colours_tell_methods_apart():
    for field in ("label", "hub_tag", "color"):
        values = [getattr(m, field) for m in METHODS.values()]
        assert len(set(values)) == len(values), field
    assert ADAPTER_METHODS == ("lora", "qlora", "ia3")


@pytest.mark.parametrize("name", list(METHODS))
def test_method_config_reads_its_row(name):
    method = RunConfig.from_dict({"method": {"name": name, "bits": 8}}).method
    spec = METHODS[name]
    assert (method.adapter, method.quantized) == (spec.adapter, spec.quantized)
    assert method.quant_bits == (8 if spec.quantized else None)
    assert method.resolved_placement() == (spec.default_placement or "auto")
    if spec.trains_every_weight:
        with pytest.raises(ConfigError, match="method.placement: full fine-tuning trains every weight"):
            RunConfig.from_dict({"method": {"name": name, "placement": "attention"}})
    else:
        placed = RunConfig.from_dict({"method": {"name": name, "placement": "attention"}}).method
        assert placed.resolved_placement() == "attention"


def test_labels_read_the_table():
    from studio.plots import METHOD_COLORS
    from studio.registry import _method_label

    assert {name: m.color for name, m in METHODS.items()} == METHOD_COLORS
    labels = {n: _method_label(RunConfig.from_dict({"method": {"name": n, "r": 8}})) for n in METHODS}
    assert labels == {
        "full": "full", "lora": "lora qv r8", "qlora": "qlora qv r8 4-bit nf4", "ia3": "ia3 attention+ffn"
    }  # fmt: skip


def test_the_leaner_method_is_what_the_memory_advice_and_the_out_of_memory_advice_offer(monkeypatch):
    """Batch 1, checkpointing, an 8-bit optimizer and 64 tokens leave one lever: the leaner method (QLoRA, 974 MB),
    which fits 1,250 MB (within 95%, less 128 MB: 1,059 MB usable) where LoRA (1,281 MB) and full fine-tuning
    (1,711 MB) do not."""
    import torch

    from studio import hardware
    from studio.failures import explain_failure
    from studio.memory_advice import suggestions

    gpu = hardware.Device("cuda", "small GPU", 1250, 1250, 1)
    lean = {"gradient_checkpointing": True, "batch_size": 1, "optimizer": "paged_adamw_8bit"}
    for name, spec in METHODS.items():
        config = RunConfig.from_dict({"model": {"name": "bert-base"}, "method": {"name": name}, "train": lean,
                                      "data": {"max_length": 64}})  # fmt: skip
        offered = [(s.change, s.overrides) for s in suggestions(config, 2, gpu)]
        if spec.leaner:
            assert offered == [("QLoRA: LoRA on a 4-bit NF4 base", ["method.name=qlora", "method.bits=4"])], name
        else:  # QLoRA fits already; IA3 has nothing leaner
            assert offered == [], name
        monkeypatch.setattr(hardware, "detect", lambda: hardware.Device("cuda", "big GPU", 10**6, 10**6, 1))
        advice = explain_failure(torch.OutOfMemoryError("CUDA out of memory"), config)
        assert ("use method qlora" in advice) == (spec.leaner == "qlora"), advice
