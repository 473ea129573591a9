"""How the speed benchmarks count FLOPs for MFU (model FLOPs utilisation), in two stated conventions.

- ``6N``: 6 x every parameter (embeddings included) x real tokens, the convention of the earlier tables (and of
  Kaplan et al.'s C = 6ND). It counts a weight gradient for every weight, so for LoRA, where the frozen base
  computes none, it overstates the work done by about 1.5x; it also leaves attention's s^2 term out.
- ``executed``: the matrix FLOPs the training step must do per real (unpadded) token, as in PaLM's appendix B:
  forward 2 x N_matmul, backward 2 x N_matmul for the gradients of the activations plus 2 x N_trainable for the
  gradients of the weights that train; attention's scores and weighted sum 4 x s x d per layer forward, twice that
  backward, with s the mean real length weighted by length (sum s_i^2 / sum s_i: each token attends to its own
  text). N_matmul is the weights of the linear layers (embeddings are lookups: no FLOPs). Padding, checkpointing's
  recomputation and the optimizer are not counted: they are overhead, not model work.
MFU = FLOPs per token x real tokens per second / the GPU's dense bf16 peak.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    total_params: int
    """Every parameter, embeddings included."""
    matmul_params: int
    """Weights of linear layers (the encoder's or decoder's blocks, the pooler and the head); no embeddings."""
    trainable_matmul_params: int
    """Those of them that get a gradient (all for full fine-tuning; the adapters and the head for LoRA)."""
    layers: int
    hidden: int


def shape_of(model) -> ModelShape:
    """A torch model's shape for FLOP counting: linear weights by module, trainable ones by requires_grad."""
    import torch

    matmul = trainable = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear):  # bitsandbytes' 4- and 8-bit layers subclass it; peft's wrappers do not
            n = module.in_features * module.out_features
            matmul += n
            trainable += n if weight is not None and weight.requires_grad else 0
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    return ModelShape(sum(p.numel() for p in model.parameters()), matmul, trainable, layers, hidden)


def attention_length(lengths: list[int]) -> float:
    """The length each token attends over on average: sum s_i^2 / sum s_i (real lengths, truncated)."""
    return sum(s * s for s in lengths) / sum(lengths)


def flops_per_token(shape: ModelShape, attended: float, convention: str = "executed") -> float:
    if convention == "6N":
        return 6.0 * shape.total_params
    if convention != "executed":
        raise ValueError(f"convention must be 6N or executed, not {convention}")
    dense = 4.0 * shape.matmul_params + 2.0 * shape.trainable_matmul_params
    return dense + 12.0 * shape.layers * attended * shape.hidden


def mfu(per_token: float, tokens_per_s: float, peak_tflops: float) -> float:
    """Percent of the dense bf16 peak."""
    return 100.0 * per_token * tokens_per_s / (peak_tflops * 1e12)
