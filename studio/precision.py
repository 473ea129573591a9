"""Which number formats a run computes in: the one rule for training, the 4-bit layers, the estimate and the plans.

`resolve(requested, compute, method)` turns `train.precision` (auto | fp32 | fp16 | bf16) and
`method.compute_dtype` into what runs on a device: bf16 or fp16 autocast over fp32 weights, or fp32
throughout, and the dtype a quantized base's 4/8-bit layers compute in. Training (hf_trainer.build_trainer's
TrainingArguments), the model (models: `train.half_activations`, the QLoRA load, the merge), the memory
estimate and the speed plans all ask it, so they cannot disagree about a device.

The rule: on a GPU, auto is bf16 where the GPU has it (no loss scaler) and fp16 elsewhere; bf16 asked of a GPU
without it runs in fp16. On a CPU, auto is fp32, fp16 (a CUDA feature) runs in fp32, and so does bf16 on a CPU
without native bf16 (AVX512-BF16 or AMX), where torch emulates every op ~20x slower. A 4-bit layer computes in
`method.compute_dtype`; auto is the GPU's 16-bit type (bf16, else fp16) and fp32 on a CPU, whatever the
autocast.

Imports torch only inside the functions that need it (the estimate runs in the UI process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from studio import hardware

if TYPE_CHECKING:
    import torch

    from studio.config import MethodConfig

Mode = Literal["fp32", "fp16", "bf16"]
DtypeName = Literal["bfloat16", "float16", "float32"]


@dataclass(frozen=True)
class Compute:
    """What the rule needs to know of the device a run computes on."""

    kind: Literal["cuda", "cpu"]
    bf16: bool
    """Computes bf16 natively: Ampere and later GPUs; CPUs with AVX512-BF16 or AMX."""

    @classmethod
    def here(cls) -> Compute:
        """This process's device, as training sees it (torch)."""
        import torch

        if torch.cuda.is_available():
            return cls("cuda", torch.cuda.is_bf16_supported())
        return cls("cpu", hardware.cpu_has_bf16())

    @classmethod
    def of(cls, device: hardware.Device) -> Compute:
        """A device as the memory estimate and the speed plans see it (NVML, no torch). NVML does not say
        whether a GPU has bf16: taken as yes, which counts the same bytes as the fp16 it would run instead."""
        if device.kind == "cuda":
            return cls("cuda", True)
        return cls("cpu", hardware.cpu_has_bf16())


@dataclass(frozen=True)
class Precision:
    """What a run computes in on one device."""

    mode: Mode
    """bf16 / fp16: autocast over fp32 weights (the Trainer's bf16 / fp16 arguments); fp32: no autocast."""
    note: str | None
    """Why `mode` is not what was asked, for the run's log; None when it is (or when auto was asked)."""
    quant_compute: DtypeName | None
    """The dtype a quantized base's layers compute in (bitsandbytes' compute dtype); None when the method does
    not quantize its base (or none was given)."""

    @property
    def mixed(self) -> bool:
        """16-bit autocast is on: matmul outputs, and what the backward pass keeps of them, are 16-bit."""
        return self.mode != "fp32"

    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None without autocast."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode)

    def quant_compute_dtype(self) -> torch.dtype:
        """`quant_compute` as a torch dtype (for BitsAndBytesConfig and merges)."""
        import torch

        if self.quant_compute is None:
            raise ValueError("this run's method does not quantize its base: it has no 4-bit compute dtype")
        return getattr(torch, self.quant_compute)


def resolve(requested: str, compute: Compute, method: MethodConfig | None = None) -> Precision:
    """What `train.precision` = `requested` (and, for a quantized base, `method.compute_dtype`) runs as on
    `compute` (see the module docstring for the rule)."""
    mode, note = _mode(requested, compute)
    quant: DtypeName | None = None
    if method is not None and method.quantized:
        quant = method.compute_dtype if method.compute_dtype != "auto" else _native_16bit(compute)
    return Precision(mode, note, quant)


def _mode(requested: str, compute: Compute) -> tuple[Mode, str | None]:
    if compute.kind == "cuda":
        if requested == "auto":
            return ("bf16" if compute.bf16 else "fp16"), None
        if requested == "bf16" and not compute.bf16:
            return "fp16", "this GPU has no bf16: training in fp16"
        return requested, None  # type: ignore[return-value]
    if requested == "fp16":
        return "fp32", "fp16 mixed precision needs a CUDA GPU: training in fp32 on the CPU"
    if requested == "bf16" and not compute.bf16:
        return "fp32", "this CPU has no native bf16 (AVX512-BF16, AMX), so bf16 runs ~20x slower: training in fp32"
    return ("fp32" if requested == "auto" else requested), None  # type: ignore[return-value]


def _native_16bit(compute: Compute) -> DtypeName:
    """A 4-bit layer's compute dtype for `compute_dtype: auto`: the GPU's 16-bit type, fp32 on a CPU."""
    if compute.kind == "cuda":
        return "bfloat16" if compute.bf16 else "float16"
    return "float32"


def resolve_precision(requested: str) -> tuple[str, str | None]:
    """(fp32 | fp16 | bf16, note) on this process's device: `resolve` with `Compute.here()`."""
    resolved = resolve(requested, Compute.here())
    return resolved.mode, resolved.note
