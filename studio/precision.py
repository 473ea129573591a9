"""Which floating-point precision a run trains in, from what it asks and what the hardware supports."""

from __future__ import annotations


def resolve_precision(requested: str) -> tuple[str, str | None]:
    """(fp32 | fp16 | bf16, note): what the hardware supports, closest to what was asked."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return ("bf16" if bf16 else "fp16"), None
        if requested == "bf16" and not bf16:
            return "fp16", "this GPU has no bf16: training in fp16"
        return requested, None
    if requested == "fp16":
        return "fp32", "fp16 mixed precision needs a CUDA GPU: training in fp32 on the CPU"
    if requested == "bf16":
        from studio.hardware import cpu_has_bf16

        if not cpu_has_bf16():
            return "fp32", "this CPU has no native bf16 (AVX512-BF16, AMX), so bf16 runs ~20x slower: training in fp32"
    return ("fp32" if requested == "auto" else requested), None
