"""Model loading and adapter placement for every family x method, on tiny random models."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from tiny import FAMILIES
from torch import nn

from studio.config import RunConfig
from studio.errors import ModelError
from studio.models import build_model

LABELS = ["neg", "neu", "pos"]


def config_for(folder, method="lora", **method_kw) -> RunConfig:
    return RunConfig.from_dict(
        {"model": {"name": str(folder)}, "method": {"name": method, **method_kw}, "data": {"max_length": 64}}
    )


def trained_module_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["full", "lora", "qlora", "ia3"])
def test_every_family_and_method_builds_and_backpropagates(tiny_model_dir, family, method):
    bundle = build_model(config_for(tiny_model_dir(family), method), LABELS)
    model, tok = bundle.model, bundle.tokenizer
    enc = tok(["a short one", "a somewhat longer text to force padding here"], padding=True, return_tensors="pt")
    out = model(**enc, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    out.loss.backward()
    trained = trained_module_names(model)
    assert trained and all(model.get_parameter(n).grad is not None for n in trained)
    if method == "full":
        assert bundle.trainable_params == bundle.total_params
        return
    assert bundle.trainable_params < bundle.total_params / 20
    head_params = [n for n in trained if "modules_to_save" in n]
    assert head_params, "the classification head must train"
    if method == "qlora":
        import bitsandbytes as bnb

        quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert quantized, "the base must be 4-bit"
        for name, module in model.named_modules():  # the head stays a float nn.Linear
            if "modules_to_save" in name and isinstance(module, nn.Linear):
                assert not isinstance(module, bnb.nn.Linear4bit) and module.weight.dtype == torch.float32


def lora_wrapped(model) -> set[str]:
    return {n.split(".")[-1] if "." in n else n for n, m in model.named_modules() if hasattr(m, "lora_A")}


def test_lora_placements_target_the_family_modules(tiny_model_dir):
    folder = tiny_model_dir("bert")
    qv = build_model(config_for(folder, placement="qv"), LABELS).model
    assert lora_wrapped(qv) == {"query", "value"}
    attention = build_model(config_for(folder, placement="attention"), LABELS).model
    assert lora_wrapped(attention) == {"query", "key", "value", "dense"}
    full_names = {n for n, m in attention.named_modules() if hasattr(m, "lora_A")}
    assert not any("intermediate" in n for n in full_names), "attention placement must leave the FFN alone"
    ffn = build_model(config_for(folder, placement="attention+ffn"), LABELS).model
    assert any("intermediate.dense" in n for n, m in ffn.named_modules() if hasattr(m, "lora_A"))
    all_linear = build_model(config_for(folder, placement="all-linear"), LABELS).model
    wrapped = {n for n, m in all_linear.named_modules() if hasattr(m, "lora_A")}
    assert not any("classifier" in n for n in wrapped), "all-linear must not wrap the head"
    assert any("intermediate.dense" in n for n in wrapped) and any("attention.self.key" in n for n in wrapped)
    custom = build_model(config_for(folder, placement="custom", target_modules=["key"]), LABELS).model
    assert lora_wrapped(custom) == {"key"}


def test_lora_rank_sets_the_adapter_size(tiny_model_dir):
    folder = tiny_model_dir("bert")
    small = build_model(config_for(folder, r=2), LABELS).trainable_params
    large = build_model(config_for(folder, r=8), LABELS).trainable_params
    # hidden 32, 2 layers x (query + value) x (A + B) = 2*2*2*32 = 256 parameters per rank step
    assert large - small == 6 * 256


def test_ia3_placements(tiny_model_dir):
    folder = tiny_model_dir("bert")
    attn = build_model(config_for(folder, "ia3", placement="attention"), LABELS).model
    ffn = build_model(config_for(folder, "ia3", placement="attention+ffn"), LABELS).model
    scaled = lambda m: {n for n, mod in m.named_modules() if hasattr(mod, "ia3_l")}  # noqa: E731
    assert all(n.endswith(("key", "value")) for n in scaled(attn))
    extra = scaled(ffn) - scaled(attn)
    assert extra and all(n.endswith("output.dense") and "attention" not in n for n in extra)
    assert ffn.peft_config["default"].feedforward_modules


def test_new_modules_train_even_when_the_family_does_not_list_them(tiny_model_dir):
    # DeBERTa's pooler and DistilBERT's pre_classifier are new on top of the checkpoint: they must train.
    for family, module in (("deberta-v2", "pooler"), ("distilbert", "pre_classifier")):
        model = build_model(config_for(tiny_model_dir(family)), LABELS).model
        assert any(module in n and "modules_to_save" in n for n in trained_module_names(model))


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_a_text_s_logits(tiny_model_dir, family):
    bundle = build_model(config_for(tiny_model_dir(family), "full"), LABELS)
    model, tok = bundle.model.eval(), bundle.tokenizer
    texts = ["short", "this text is quite a bit longer than the other one"]
    with torch.no_grad():
        batch = model(**tok(texts, padding=True, return_tensors="pt")).logits
        alone = model(**tok(texts[:1], return_tensors="pt")).logits
    assert tok.padding_side == "right" and tok.pad_token is not None
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-4)


# ---- bad input -----------------------------------------------------------------------------------------
def test_missing_and_invalid_model_folders(tmp_path):
    with pytest.raises(ModelError, match="model.name: folder not found"):
        build_model(config_for("./no/such/model"), LABELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        build_model(config_for(tmp_path / "empty"), LABELS)
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        build_model(config_for(file), LABELS)


def test_pickle_only_weights_are_refused(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir("bert"), folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="only safetensors"):
        build_model(config_for(folder), LABELS)


def test_unknown_architecture(tmp_path):
    from tiny import ASSETS
    from transformers import AutoModel, AutoTokenizer, ElectraConfig

    folder = tmp_path / "electra"
    AutoModel.from_config(
        ElectraConfig(
            vocab_size=30522,
            hidden_size=32,
            embedding_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(ASSETS / "bert-base-uncased").save_pretrained(folder)
    with pytest.raises(ModelError, match="architecture 'electra' is not in the studio's registry"):
        build_model(config_for(folder, "lora"), LABELS)
    assert build_model(config_for(folder, "full"), LABELS).trainable_params > 0  # full FT needs no registry
    custom = build_model(config_for(folder, "lora", placement="custom", target_modules=["query"]), LABELS)
    assert custom.trainable_params < custom.total_params


def test_bitsandbytes_missing_is_explained(tiny_model_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(ModelError, match=r"method.name: QLoRA \(4-bit\) needs bitsandbytes.*pip install"):
        build_model(config_for(tiny_model_dir("bert"), "qlora"), LABELS)


def test_max_length_beyond_the_model(tiny_model_dir):
    cfg = config_for(tiny_model_dir("bert")).with_overrides(["data.max_length=1024"])
    with pytest.raises(ModelError, match="data.max_length: 1024 is longer than this model's limit of 512"):
        build_model(cfg, LABELS)


def test_tokenizer_that_does_not_belong_to_the_model(tmp_path):
    from tiny import ASSETS
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "small-vocab"
    BertModel(
        BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(ASSETS / "bert-base-uncased").save_pretrained(folder)
    with pytest.raises(ModelError, match="30522 tokens but the model's embedding only 1000"):
        build_model(config_for(folder, "full"), LABELS)


def test_aliases_resolve_to_the_catalogue():
    from studio.architectures import CATALOGUE, family_for
    from studio.models import resolve_source

    assert resolve_source(RunConfig().model).endswith("model")  # minilm-l6 comes from its PyPI package
    assert json.loads((__import__("pathlib").Path(resolve_source(RunConfig().model)) / "config.json").read_text())
    for choice in CATALOGUE:
        assert (
            family_for(
                {
                    "bert": "bert",
                    "distilbert": "distilbert",
                    "roberta": "roberta",
                    "deberta-v2": "deberta-v2",
                    "gpt2": "gpt2",
                    "qwen2": "qwen2",
                    "llama": "llama",
                    "gemma3": "gemma3_text",
                }[choice.family]
            ).name
            == choice.family
        )


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_half_activations_keep_the_stream_and_frozen_weights_in_16_bit(tiny_model_dir, family, method, monkeypatch):
    """train.half_activations: under bf16 autocast every layer's input is bf16 (fp32 without it under QLoRA,
    where prepare_model_for_kbit_training upcasts the embeddings and the 4-bit layers return their input's
    dtype) and, where the run resolves to bf16, the frozen float weights are stored in bf16 while what trains
    stays fp32; the loss and every trainable gradient still flow."""
    from studio import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)  # a run asking for bf16 gets it on any CPU

    def layer_input_dtypes(half: bool, precision: str) -> set:
        # (bitsandbytes casts a 4-bit layer's bias to its compute dtype in every forward: bf16, as on a GPU)
        kw = {"compute_dtype": "bfloat16"} if method == "qlora" and precision == "bf16" else {}
        overrides = [f"train.half_activations={half}", f"train.precision={precision}"]
        config = config_for(tiny_model_dir(family), method, **kw).with_overrides(overrides)
        bundle = build_model(config, LABELS)
        model, seen = bundle.model, set()
        layer = next(m for n, m in model.named_modules() if n.endswith(("layer.1", "layers.1")))
        layer.register_forward_pre_hook(lambda _m, args, _kw: seen.add(args[0].dtype), with_kwargs=True)
        enc = bundle.tokenizer(["a text", "another text here"], padding=True, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**enc, labels=torch.tensor([0, 1]))
        out.loss.backward()
        under_autocast = set(seen)
        assert torch.isfinite(out.loss)
        assert all(p.grad is not None and p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
        frozen = {p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()}
        assert frozen == ({torch.bfloat16} if half and precision == "bf16" else {torch.float32})
        if precision == "fp32":  # no autocast in such a run: the hooks leave the fp32 model alone
            seen.clear()
            model(**enc)
            assert seen == {torch.float32}
        return under_autocast

    assert layer_input_dtypes(True, "fp32") == {torch.bfloat16}
    assert layer_input_dtypes(True, "bf16") == {torch.bfloat16}
    if method == "qlora":
        assert layer_input_dtypes(False, "fp32") == {torch.float32}


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_qlora_trains_after_evaluating_on_cpus_with_avx512_bf16(tiny_model_dir, runs_dir, monkeypatch, family):
    """bitsandbytes repacks a 4-bit weight for its AVX512-BF16 CPU kernel on the first no-grad eval forward; a
    run that evaluates and then trains again broke on such CPUs (narrow layers: "shape '[96, 0]' is invalid";
    wider ones: an in-place write into a view of the repacked leaf). Every host here takes that path: bitsandbytes
    is told the CPU has AVX512-BF16, so each Linear4bit is built with the repack switched on, and the studio must
    switch it off. The run evaluates every 2 steps and trains on after each evaluation."""
    import bitsandbytes.nn.modules as bnb_modules
    from bitsandbytes.nn import Linear4bit
    from test_training import tiny_config

    from studio.models import keep_4bit_layout
    from studio.registry import Registry
    from studio.training import Run

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    layer = Linear4bit(64, 96, compute_dtype=torch.float32)
    assert layer.support_avx512bf16_for_cpu  # the path is forced on this host
    assert keep_4bit_layout(layer) == 1 and not layer.support_avx512bf16_for_cpu

    config = tiny_config(tiny_model_dir(family), "qlora", max_steps=6, eval_strategy="steps", eval_steps=2)
    result = Run(config, Registry(runs_dir)).execute()
    assert result.status == "completed", result.message
