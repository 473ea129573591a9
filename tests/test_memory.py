"""Memory estimate: parameter counts equal the real build's, every knob moves the right part, fits and the
largest batch agree with the device, every catalogue alias estimates offline, the model facts are cached."""

from __future__ import annotations

import pytest

from studio import memory
from studio.architectures import CATALOGUE
from studio.config import RunConfig
from studio.errors import ModelError
from studio.hardware import Device
from studio.memory import PARTS, estimate, format_estimate, usable_mb
from studio.models import build_model

LABELS = ["neg", "neu", "pos"]
H100 = Device(kind="cuda", name="NVIDIA H100 80GB HBM3", total_mb=81559.0, free_mb=80000.0, count=1)


def config_for(model, method="lora", max_length=64, **method_kw) -> RunConfig:
    return RunConfig.from_dict(
        {"model": {"name": str(model)}, "method": {"name": method, **method_kw}, "data": {"max_length": max_length}}
    )


# ---- parameter counts: the key test ------------------------------------------------------------------------
COMBOS = [("full", {})] + [
    (method, {"placement": placement, "r": 4})
    for method in ("lora", "qlora", "ia3")
    for placement in ("qv", "attention+ffn", "all-linear")
]


@pytest.fixture
def tokenizer_once(monkeypatch):
    """Reading tokenizer.json is most of a tiny build: load each folder's tokenizer once per test."""
    from studio import models

    loaded: dict[str, object] = {}
    real = models.load_tokenizer

    def load(cfg, source, family):
        if source not in loaded:
            loaded[source] = real(cfg, source, family)
        return loaded[source]

    monkeypatch.setattr(models, "load_tokenizer", load)


@pytest.mark.usefixtures("tokenizer_once")
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_parameter_counts_equal_the_real_build(tiny_model_dir, family):
    folder = tiny_model_dir(family)
    for method, kw in COMBOS:
        config = config_for(folder, method, **kw)
        real = build_model(config, LABELS)
        est = estimate(config, num_labels=len(LABELS), device=H100)
        assert (est.trainable_params, est.total_params) == (real.trainable_params, real.total_params), (method, kw)


@pytest.mark.parametrize("family", ["distilbert", "roberta", "deberta-v2"])
def test_heads_and_new_modules_count_like_the_real_build(tiny_model_dir, family):
    # DistilBERT's pre_classifier, DeBERTa's pooler, RoBERTa's two-layer head: all-linear must leave them out
    # of the adapters and train them whole.
    config = config_for(tiny_model_dir(family), "lora", placement="all-linear", r=2)
    real = build_model(config, LABELS)
    est = estimate(config, num_labels=len(LABELS), device=H100)
    assert (est.trainable_params, est.total_params) == (real.trainable_params, real.total_params)


def test_custom_targets_and_unsupported_methods_behave_like_the_build(tiny_model_dir):
    folder = tiny_model_dir("bert")
    custom = config_for(folder, placement="custom", target_modules=["key", "intermediate.dense"])
    assert estimate(custom, 3, H100).trainable_params == build_model(custom, LABELS).trainable_params
    with pytest.raises(ModelError, match="folder not found"):
        estimate(config_for("./no/such/model"), 3, H100)
    with pytest.raises(ModelError, match="could not place lora adapters"):
        estimate(config_for(folder, placement="custom", target_modules=["no_such_layer"]), 3, H100)


def test_a_gpu_run_without_expandable_segments_is_told_what_varying_lengths_strand():
    """The estimate is calibrated on batches of one length; on IMDb's real lengths the seed recipe as set peaked
    15-16% above it without expandable segments (benchmarks/results/train_speed), so the estimate says so."""
    assert memory.STRANDED_NOTE in estimate(bert(), device=H100).notes
    assert memory.STRANDED_NOTE not in estimate(bert(train={"expandable_segments": True}), device=H100).notes
    cpu = Device(kind="cpu", name="CPU", total_mb=32000, free_mb=16000, count=0)
    assert memory.STRANDED_NOTE not in estimate(bert(), device=cpu).notes  # a CPU has no caching allocator


# ---- every knob moves the estimate the right way ---------------------------------------------------------
def bert(**sections) -> RunConfig:
    """bert-base (the catalogue's dimensions offline) with section overrides, e.g. train={'batch_size': 8}."""
    data = {"model": {"name": "bert-base"}, "method": {"name": "lora"}, **sections}
    return RunConfig.from_dict(data)


def parts(config: RunConfig, device: Device = H100) -> dict[str, float]:
    return estimate(config, device=device).parts


def test_parts_are_in_order_and_add_up():
    e = estimate(bert(), device=H100)
    assert tuple(e.parts) == PARTS and all(v >= 0 for v in e.parts.values())
    assert e.total_mb == pytest.approx(sum(e.parts.values()))
    assert e.fits and e.largest_batch and e.largest_batch > 16
    text = format_estimate(e)
    assert "fits in NVIDIA H100" in text and "trainable of" in text and "activations for batch 16 x 256" in text


def test_sizes_raise_the_estimate():
    base = estimate(bert(), device=H100).total_mb
    assert estimate(bert(train={"batch_size": 32}), device=H100).total_mb > base
    assert estimate(bert(data={"max_length": 512}), device=H100).total_mb > base
    assert parts(bert(method={"name": "lora", "r": 64}))["adapters"] > parts(bert())["adapters"]
    assert parts(bert(method={"name": "lora", "placement": "all-linear"}))["adapters"] > parts(bert())["adapters"]
    # a large evaluation batch can need more than training does
    assert parts(bert(train={"eval_batch_size": 4096}))["activations"] > parts(bert())["activations"]


def test_memory_savers_lower_their_part():
    assert parts(bert(train={"gradient_checkpointing": True}))["activations"] < parts(bert())["activations"]
    full = {"name": "full"}
    adam = parts(bert(method=full))["optimizer"]
    # 8-bit states are a quarter of AdamW's, but the Trainer keeps the embeddings' states 32-bit
    assert adam / 4 < parts(bert(method=full, train={"optimizer": "adamw_bnb_8bit"}))["optimizer"] < adam / 2
    paged = estimate(bert(method=full, train={"optimizer": "paged_adamw_8bit"}), device=H100)
    assert paged.parts["optimizer"] == 0 and any("unified memory" in n for n in paged.notes)
    assert parts(bert(method=full, train={"optimizer": "adafactor"}))["optimizer"] < adam / 50
    assert parts(bert(method=full, train={"optimizer": "sgd"}))["optimizer"] == 0


def test_the_peak_is_the_largest_phase_of_a_step():
    # full fine-tuning frees the gradients after each step: the backward pass starts with every activation and
    # no gradient; with checkpointing the optimizer step (gradients + foreach AdamW's copy) is the peak
    full = {"name": "full"}
    e = estimate(bert(method=full), device=H100)
    assert e.parts["gradients"] == 0 and e.parts["activations"] > 0 and "start of the backward" in e.notes[0]
    accumulating = estimate(bert(method=full, train={"grad_accum": 2}), device=H100)
    assert accumulating.parts["gradients"] == pytest.approx(e.parts["weights"])  # the earlier micro-batches'
    ckpt = estimate(bert(method=full, train={"gradient_checkpointing": True}), device=H100)
    assert "optimizer step" in ckpt.notes[0] and ckpt.parts["activations"] == 0
    assert ckpt.parts["gradients"] == pytest.approx(2 * e.parts["weights"])
    fused = estimate(bert(method=full, train={"gradient_checkpointing": True, "optimizer": "adamw_torch_fused"}),
                     device=H100)  # fmt: skip
    assert fused.total_mb < ckpt.total_mb  # no temporary copy


def test_composed_gelu_and_eager_attention_keep_more():
    gpt2 = estimate(RunConfig.from_dict({"model": {"name": "gpt2-xl"}, "method": {"name": "lora"}}), device=H100)
    gemma = estimate(RunConfig.from_dict({"model": {"name": "gemma-3-1b"}, "method": {"name": "lora"}}), device=H100)
    assert memory._model_facts(RunConfig.from_dict({"model": {"name": "gpt2-xl"}}).model, 2).composed_gelu
    assert not memory._model_facts(RunConfig.from_dict({"model": {"name": "gemma-3-1b"}}).model, 2).composed_gelu
    assert gpt2.parts["activations"] > gemma.parts["activations"]
    eager = parts(bert(model={"name": "bert-base", "attn_implementation": "eager"}))["activations"]
    assert eager > 1.3 * parts(bert())["activations"]  # the s x s scores: softmax output, its copy, dropout mask


def test_quantization_shrinks_the_weights():
    lora = parts(bert())["weights"]
    four = parts(bert(method={"name": "qlora"}))["weights"]
    eight = parts(bert(method={"name": "qlora", "bits": 8}))["weights"]
    no_dq = parts(bert(method={"name": "qlora", "double_quant": False}))["weights"]
    assert four < eight < lora
    assert four < no_dq < four * 1.05  # double quantization saves ~0.37 bit of ~4.5 on the linear layers only


def test_precision_and_compute_dtype_set_the_activation_size():
    bf16 = parts(bert(train={"precision": "bf16"}))["activations"]
    assert parts(bert(train={"precision": "fp32"}))["activations"] > 1.3 * bf16  # measured 1.41 on the H100
    qlora32 = bert(method={"name": "qlora", "compute_dtype": "float32"}, train={"precision": "fp32"})
    qlora16 = bert(method={"name": "qlora", "compute_dtype": "bfloat16"}, train={"precision": "fp32"})
    # 4-bit layers keep no input of their own and return their input's dtype: the compute dtype only sets
    # temporaries, not what the backward pass keeps
    assert parts(qlora32)["activations"] == parts(qlora16)["activations"]
    cpu = Device(kind="cpu", name="CPU", total_mb=32000, free_mb=16000, count=0)
    e = estimate(bert(train={"precision": "fp16"}), device=cpu)
    assert any("fp16 runs as fp32 on the CPU" in n for n in e.notes)
    assert e.parts["activations"] == pytest.approx(parts(bert(train={"precision": "fp32"}), cpu)["activations"])


def test_half_activations_shrink_the_fp32_stream_only():
    ckpt = {"gradient_checkpointing": True, "precision": "bf16"}
    for method in ("qlora", "lora"):
        base = parts(bert(method={"name": method}, train=ckpt))["activations"]
        half = parts(bert(method={"name": method}, train={**ckpt, "half_activations": True}))["activations"]
        assert half < 0.85 * base  # the checkpointed layer inputs and what the layers keep, in 16 bit
    fp32 = {"precision": "fp32"}  # no autocast: the hooks do nothing, nor does the estimate
    assert parts(bert(method={"name": "qlora"}, train={**fp32, "half_activations": True})) == parts(
        bert(method={"name": "qlora"}, train=fp32)
    )


# ---- fits and the largest batch ------------------------------------------------------------------------
def test_fits_and_largest_batch_on_a_small_gpu():
    small = Device(kind="cuda", name="small GPU", total_mb=2048, free_mb=1500, count=1)
    full = estimate(bert(method={"name": "full"}), device=small)  # 110M x (4 + 4 + 8) bytes > 1.5 GB
    assert not full.fits and full.largest_batch is None

    qlora = bert(method={"name": "qlora"}, train={"batch_size": 64, "eval_batch_size": 8})
    e = estimate(qlora, device=small)
    assert e.largest_batch is not None and 1 < e.largest_batch < 64 and not e.fits

    def total_at(batch: int) -> float:
        return estimate(qlora.with_overrides([f"train.batch_size={batch}"]), device=small).total_mb

    usable = usable_mb(small)  # safety margins: the last 5% of free memory and 128 MB are not promised
    assert total_at(e.largest_batch) <= usable < total_at(e.largest_batch + 1)


# ---- the catalogue, offline ------------------------------------------------------------------------------
@pytest.mark.parametrize("choice", CATALOGUE, ids=lambda c: c.alias)
def test_every_catalogue_model_estimates_offline(choice):
    e = estimate(RunConfig.from_dict({"model": {"name": choice.alias}, "method": {"name": "lora"}}), device=H100)
    full = estimate(RunConfig.from_dict({"model": {"name": choice.alias}, "method": {"name": "full"}}), device=H100)
    assert full.total_params / 1e6 == pytest.approx(choice.params_m, rel=0.02)
    assert 0 < e.trainable_params < full.total_params / 50 and e.total_mb < full.total_mb


def test_catalogue_dims_match_the_real_config_where_it_is_shipped():
    # minilm-l6's real config ships with the studio: its dims must build the same model
    from transformers import AutoConfig

    from studio.architectures import model_choice
    from studio.config import ModelConfig
    from studio.models import load_config, resolve_source

    choice = model_choice("minilm-l6")
    real = load_config(ModelConfig(), resolve_source(ModelConfig()))
    dims = dict(choice.dims)
    from_dims = AutoConfig.for_model(dims.pop("model_type"), **dims)
    count = lambda c: sum(p.numel() for p in memory._build_meta_model(c, 2, False).parameters())  # noqa: E731
    assert count(from_dims) == count(real)


# ---- caching -----------------------------------------------------------------------------------------------
def test_the_model_is_built_once_per_model(monkeypatch):
    calls = []
    real_build = memory._build_meta_model

    def counting(*args):
        calls.append(args)
        return real_build(*args)

    monkeypatch.setattr(memory, "_build_meta_model", counting)
    memory._facts_for.cache_clear()
    estimate(bert(), device=H100)
    estimate(bert(train={"batch_size": 8}, method={"name": "qlora", "r": 4}), device=H100)
    assert len(calls) == 1
    estimate(bert(), num_labels=5, device=H100)  # another head: another model
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("model", "placement", "targets"),
    [
        ("smollm2-135m", "qv", ("self_attn.q_proj", "self_attn.v_proj")),
        ("gpt2-xl", "attention+ffn", ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")),
        ("qwen2.5-1.5b", "attention", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")),
        ("distilbert", "qv", ("attention.q_lin", "attention.v_lin")),
    ],
)
def test_the_estimate_names_the_modules_the_adapters_wrap(model, placement, targets):
    config = RunConfig.from_dict({"model": {"name": model}, "method": {"name": "lora", "placement": placement}})
    assert estimate(config, device=H100).adapter_targets == targets
    full = RunConfig.from_dict({"model": {"name": model}, "method": {"name": "full"}})
    assert estimate(full, device=H100).adapter_targets == ()


# ---- the CPU estimate (process RSS) --------------------------------------------------------------------------
CPU = Device(kind="cpu", name="CPU", total_mb=32000, free_mb=16000, count=0)


def test_on_a_cpu_encoders_keep_their_attention_scores_and_the_heap_keeps_part_of_what_autograd_frees():
    full = {"name": "full"}
    long = bert(method=full, data={"max_length": 256}, train={"batch_size": 16})
    wide = bert(method=full, data={"max_length": 128}, train={"batch_size": 32})  # the same tokens a step
    # CPU sdpa with attention dropout runs the math path, which keeps the s x s probabilities: longer texts cost
    # more than their tokens (on the GPU the two are within the masks' difference)
    assert parts(long, CPU)["activations"] > 1.1 * parts(wide, CPU)["activations"]
    assert parts(long)["activations"] < 1.05 * parts(wide)["activations"]
    e = estimate(long, device=CPU)
    # RSS keeps the high water: the gradients count at the peak, and the heap's reserve sits in the overhead
    assert e.parts["gradients"] == pytest.approx(e.parts["weights"])
    reserve = memory.CPU_HEAP_RESERVE * e.parts["activations"]
    assert e.parts["overhead"] == pytest.approx(memory.CPU_RUNTIME_MB + memory.CPU_RUN_GROWTH_MB + reserve)


def test_the_cpu_estimate_is_within_15_percent_of_the_measured_peak_rss():
    """benchmarks/cpu_memory.py's cases (the shipped CPU presets and the quick demo at other shapes, each trained in
    its own process on 2 cores), recomputed: the estimate within 15% of the measured peak RSS."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    import cpu_memory

    measured = json.loads((root / "benchmarks" / "results" / "cpu_memory" / "cpu_memory.json").read_text())
    assert {r["case"] for r in measured["cases"]} == set(cpu_memory.CASES)
    for row in measured["cases"]:
        labels = 28 if cpu_memory.CASES[row["case"]][0].startswith("goemotions") else 2
        now = estimate(cpu_memory.config_of(row["case"]), labels, CPU).total_mb
        assert abs(now - row["peak_rss_mb"]) <= 0.15 * row["peak_rss_mb"], (row["case"], now, row["peak_rss_mb"])


@pytest.mark.parametrize(
    "method",
    [
        {"name": "full"},
        {"name": "full", "freeze_layers": 3},
        {"name": "lora", "placement": "attention+ffn"},
        {"name": "ia3"},
    ],  # fmt: skip
    ids=["full", "freeze3", "lora", "ia3"],
)
def test_on_a_cpu_the_activations_are_what_autograd_saves(method):
    """The real MiniLM-L6 in training mode on this CPU: the bytes every tensor autograd saves for the backward
    pass holds (weights aside), counted by saved-tensor hooks, against the estimate's activations, which add
    the backward pass's own temporaries. CPU dropout keeps an fp32 noise tensor, not a 1-byte mask: LoRA's
    dropout on each adapted layer's input made the LoRA estimate 30% short before it was counted so."""
    import torch

    config = RunConfig.from_dict(
        {"model": {"name": "minilm-l6"}, "method": method, "data": {"max_length": 64}, "train": {"batch_size": 4}}
    )
    model = build_model(config, ["neg", "pos"]).model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    ids = torch.randint(1000, 9000, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(4, dtype=torch.long))
    held = sum(saved.values()) / 2**20
    assert held <= estimate(config, num_labels=2, device=CPU).parts["activations"] <= 1.15 * held
