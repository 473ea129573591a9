"""The one precision rule (studio/precision.py), and the places that must agree with it."""

from __future__ import annotations

import pytest
import torch

from studio import hardware
from studio.config import RunConfig
from studio.precision import Compute, resolve

GPU_BF16, GPU_FP16 = Compute("cuda", True), Compute("cuda", False)  # e.g. an H100; a T4 or V100
CPU_BF16, CPU = Compute("cpu", True), Compute("cpu", False)  # AVX512-BF16 / AMX; AVX2
NO_BF16_CPU = "this CPU has no native bf16 (AVX512-BF16, AMX), so bf16 runs ~20x slower: training in fp32"

RULE = [  # (requested, device, mode, note)
    ("auto", GPU_BF16, "bf16", None),
    ("auto", GPU_FP16, "fp16", None),
    ("bf16", GPU_BF16, "bf16", None),
    ("bf16", GPU_FP16, "fp16", "this GPU has no bf16: training in fp16"),
    ("fp16", GPU_BF16, "fp16", None),
    ("fp32", GPU_BF16, "fp32", None),
    ("auto", CPU_BF16, "fp32", None),
    ("bf16", CPU_BF16, "bf16", None),
    ("bf16", CPU, "fp32", NO_BF16_CPU),
    ("fp16", CPU_BF16, "fp32", "fp16 mixed precision needs a CUDA GPU: training in fp32 on the CPU"),
    ("fp32", CPU, "fp32", None),
]


@pytest.mark.parametrize(("requested", "compute", "mode", "note"), RULE)
def test_the_rule(requested, compute, mode, note):
    p = resolve(requested, compute)
    assert (p.mode, p.note, p.quant_compute) == (mode, note, None)
    assert p.mixed == (mode != "fp32")
    assert p.autocast_dtype() == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)


@pytest.mark.parametrize(
    ("asked", "compute", "dtype"),
    [
        ("auto", GPU_BF16, "bfloat16"),
        ("auto", GPU_FP16, "float16"),
        ("auto", CPU_BF16, "float32"),  # a CPU's 4-bit kernels compute in fp32 unless asked otherwise
        ("bfloat16", CPU, "bfloat16"),
        ("float16", GPU_BF16, "float16"),
    ],
)
def test_the_4bit_compute_dtype_follows_method_compute_dtype_and_the_device(asked, compute, dtype):
    method = RunConfig.from_dict({"method": {"name": "qlora", "compute_dtype": asked}}).method
    for requested in ("auto", "fp32"):  # independent of the autocast
        p = resolve(requested, compute, method)
        assert p.quant_compute == dtype and p.quant_compute_dtype() == getattr(torch, dtype)
    lora = RunConfig.from_dict({"method": {"name": "lora", "compute_dtype": asked}}).method
    assert resolve("auto", compute, lora).quant_compute is None  # no quantized base, no compute dtype
    with pytest.raises(ValueError, match="does not quantize"):
        resolve("auto", compute, lora).quant_compute_dtype()


def test_devices_as_training_and_the_estimate_see_them(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    cpu = hardware.Device("cpu", "CPU", 32000, 16000, 0)
    assert Compute.of(cpu) == CPU_BF16
    assert Compute.of(hardware.Device("cuda", "H100", 81559, 80000, 1)) == GPU_BF16  # NVML: bf16 assumed
    if not torch.cuda.is_available():
        assert Compute.here() == CPU_BF16
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert Compute.of(cpu) == CPU


@pytest.mark.parametrize("requested", ["auto", "fp32", "fp16", "bf16"])
@pytest.mark.parametrize("bf16", [True, False])
def test_training_and_the_estimate_agree(monkeypatch, requested, bf16):
    """The Trainer's precision (precision.resolve_precision) and the estimate's autocast, on this CPU."""
    from studio.memory import estimate
    from studio.precision import resolve_precision

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16)
    if torch.cuda.is_available():
        pytest.skip("compares against the CPU rule")
    expected = resolve(requested, Compute("cpu", bf16))
    assert resolve_precision(requested) == (expected.mode, expected.note)
    cpu = hardware.Device("cpu", "CPU", 32000, 16000, 0)
    config = RunConfig.from_dict({"model": {"name": "bert-base"}, "train": {"precision": requested}})
    notes = " ".join(estimate(config, 2, cpu).notes)
    assert (f"in {expected.mode} autocast" in notes) == expected.mixed
    assert (f"runs as {expected.mode} on the CPU" in notes) == (requested not in ("auto", expected.mode))


def test_speed_fast_asks_for_bf16_where_the_rule_gives_something_else():
    from studio.speed_plan import plan

    h100 = hardware.Device("cuda", "NVIDIA H100 80GB HBM3", 81559.0, 80000.0, 1)
    for requested in ("auto", "bf16", "fp16", "fp32"):
        config = RunConfig.from_dict({"model": {"name": "bert-base"}, "train": {"precision": requested}})
        changed = {c.field: c.after for c in plan(config, h100, 2, 16000).choices}
        assert changed.get("train.precision") == (None if resolve(requested, GPU_BF16).mode == "bf16" else "auto")


def test_a_qlora_model_computes_in_the_resolved_dtype(tiny_model_dir):
    """The QLoRA load asks the rule: on a CPU `compute_dtype: auto` is fp32, an explicit one is kept."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit

    from studio.models import build_model

    for asked, dtype in (("auto", torch.float32), ("bfloat16", torch.bfloat16)):
        config = RunConfig.from_dict({"model": {"name": str(tiny_model_dir("bert"))},
                                      "method": {"name": "qlora", "compute_dtype": asked}})  # fmt: skip
        model = build_model(config, ["a", "b"]).model
        layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
        assert layers and {m.compute_dtype for m in layers} == {dtype}


def test_precision_imports_no_torch_at_import():
    import subprocess
    import sys

    code = "import sys, studio.precision, studio.methods; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_fp32_run_of_a_bf16_checkpoint_trains_and_is_estimated_in_fp32(tiny_model_dir, tmp_path):
    """A bf16 checkpoint under LoRA with train.precision fp32 (or a CPU without bf16): its base is loaded in fp32,
    not left bf16 beside the fp32 head (it failed: 'expected mat1 and mat2 to have the same dtype', Llama-3.2-1B
    on an H200, benchmarks/results/memory_heldout), and the estimate counts fp32 weights."""
    import torch
    from test_training import tiny_config
    from transformers import AutoModel

    from studio.hardware import Device
    from studio.memory import estimate
    from studio.registry import Registry
    from studio.training import Run

    folder = tmp_path / "bf16-llama"
    AutoModel.from_pretrained(tiny_model_dir("llama")).to(torch.bfloat16).save_pretrained(folder)
    for f in tiny_model_dir("llama").glob("*token*"):
        (folder / f.name).write_bytes(f.read_bytes())
    config = tiny_config(folder, "lora", max_steps=2, precision="fp32")
    result = Run(config, Registry(tmp_path / "runs")).execute()
    assert result.status == "completed", result.message
    gpu = Device(kind="cuda", name="NVIDIA H200", total_mb=143771, free_mb=140000, count=1)
    as_fp32 = estimate(config, num_labels=2, device=gpu)
    as_bf16 = estimate(config.with_overrides(["train.precision=bf16"]), num_labels=2, device=gpu)
    assert as_fp32.parts["weights"] > 1.9 * as_bf16.parts["weights"]
    assert any("loaded in fp32" in n for n in as_fp32.notes)


def test_tf32_set_by_transformers_new_api_is_readable_by_the_legacy_getters():
    """transformers turns TF32 on through PyTorch's new API for compiled bf16 runs; inductor's matmul autotuning
    then reads a legacy getter, which refused ("mix of the legacy and new APIs") until `agree_tf32` re-states it.
    In a subprocess: the switches are process-wide and have no clean reset."""
    import subprocess
    import sys

    code = ("import torch\nfrom studio.hf_trainer import agree_tf32\ntorch.backends.fp32_precision = 'tf32'\n"
            "agree_tf32()\nprint(torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32, "
            "torch.backends.cuda.matmul.fp32_precision)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["high", "True", "tf32"]
