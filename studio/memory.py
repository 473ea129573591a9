"""Peak training memory, estimated without loading anything: weights, adapters, gradients, optimizer,
activations and overhead, for the live estimate of the UI's "Model & method" tab.

Parameter counts are exact, not estimated: the model's architecture is built on the meta device (shapes, no
storage) from its config (for catalogue models, their published `ModelChoice.dims`); transformers' own
bitsandbytes rules say which layers a QLoRA load quantizes; the adapters are placed by the studio's own
`adapters.wrap` on a meta copy at rank 1 (LoRA sizes scale with r). Those facts are cached per model and
placement, so a knob change costs arithmetic only. What each method stores and trains comes from its row of
the method table (studio/methods.py), the autocast from `precision.resolve`.

Bytes come from the formula in `_peak`, every constant named below. Sources:
- Mixed precision keeps fp32 master weights (Micikevicius et al. 2018); AdamW keeps 2 states per parameter
  in the parameter's dtype (torch); bitsandbytes 8-bit optimizers 2 bytes (Dettmers et al. 2022).
- Activations: tensor by tensor per layer by autograd's rules (see `_layer_bytes`); all 16-bit with a
  GELU FFN this is Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models", eq. 1) without the s*s scores that sdpa / flash kernels recompute.
- Gradient checkpointing keeps each layer's input and recomputes one layer at a time (Chen et al. 2016).
- 4-bit NF4: 0.5 byte per weight + an fp32 absmax per 64 weights; double quantization stores those absmax
  in 8 bit with an fp32 scale per 256 of them (Dettmers et al. 2023, QLoRA). LLM.int8(): 1 byte per weight
  + an fp32 scale per output row (Dettmers et al. 2022).
- The peak is the largest of a step's phases (`_peak`), not the sum of every part's maximum.
Validated on an H100 by benchmarks/memory_validation.py (results in benchmarks/results/, the errors in the
README); constants marked "calibrated" or "measured" come from those runs, the rest from the sources.
Ignored: bitsandbytes' 32-bit states for tensors under 4,096 elements; Gemma 3's q/k norms.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import precision
from studio.adapters import ADAPTER_KINDS
from studio.architectures import Family, family_for, model_choice
from studio.config import MethodConfig, ModelConfig, RunConfig
from studio.errors import ModelError
from studio.hardware import Device, detect

MB = 2**20
PARTS = ("weights", "adapters", "gradients", "optimizer", "activations", "overhead")

ADAPTER_BYTES = 4
"""LoRA / IA3 weights are fp32 whatever the base dtype (peft's autocast_adapter_dtype)."""
QUANT_BLOCK = 64
"""bitsandbytes 4-bit: one absmax scale per 64 weights."""
NESTED_BLOCK = 256
"""Double quantization: the absmax scales in 8 bit, one fp32 scale per 256 of them."""
OPTIMIZER_STATE_BYTES = {
    "paged_adamw_8bit": 2.0,  # two 8-bit blockwise states; paged: may spill to CPU RAM, counted here
    "adamw_bnb_8bit": 2.0,
    "paged_adamw_32bit": 8.0,  # two fp32 states
    "adafactor": 0.05,  # factored second moment (rows + columns of each matrix), no momentum: ~nothing
    "sgd": 0.0,  # the Trainer's SGD has no momentum, so no state
}
"""Bytes of state per trainable parameter; adamw_torch(_fused) keep two states in the parameter's dtype."""
DROPOUT_MASK_BYTES = 1
"""A dropout keeps a 1-byte mask of its input (two per layer: attention output and FFN output) on a GPU, where
it is one fused kernel. On a CPU it is not fused: it draws a noise tensor of its input's dtype (bernoulli, scaled)
and multiplies, and the product keeps the noise, so there the mask weighs what its input does (`_mask_bytes`;
counted with autograd's saved-tensor hooks on the CPU grid's LoRA run: benchmarks/results/cpu_memory)."""
CUDA_CONTEXT_MB = 760.0
"""The CUDA context and the kernels / cuBLAS workspace loaded by the first steps, outside torch's allocator:
measured as NVML's process memory minus torch's reserved memory, 758-766 MB in every case on an H100
(CUDA 13, torch 2.11; 612 MB right after CUDA initialises)."""
CUBLAS_WORKSPACES_MB = 64.0
"""Two cuBLAS workspaces of 32 MiB (torch's default on Hopper) that torch's allocator holds for the whole run: one
for the forward pass's thread, made at its first matmul, and one for autograd's backward thread. In every H200
allocator trace (benchmarks/results/memory_heldout/snapshots/) they were the only 32 MiB blocks, never freed;
they are inside torch's reserve, so CUDA_CONTEXT_MB (NVML minus that reserve) leaves them out. Older GPUs get
smaller workspaces: there this overcounts by up to ~48 MB."""
EAGER_BACKWARD_SCORES = 2
"""Eager attention's backward pass holds two s x s tensors per head at once (a node's incoming and outgoing
gradients: the cast's, the dropout's, the softmax's, fp32 under autocast) beside the saved activations: at 512
tokens with small heads that is more than an FFN's temporaries (BACKWARD_TEMPORARIES), which the estimate counted
alone (MiniLM IA3 eager 8 x 512 was -11% on the held-out set; -5% with it). By autograd's rules, not fitted."""
FRAGMENTATION = 0.04
"""The caching allocator's reserve beyond what it has allocated, as a share of the allocations: 1-6% with
adapters in the H100 measurements (calibrated) ..."""
PHASE_REUSE_MISS = 0.4
"""... plus this share of the smaller of two phases: the backward pass's activations and the optimizer step's
gradients and temporaries. The allocator caches each phase's blocks; the other phase reuses them only where sizes
fit (an embedding's gradient, 94-1,002 MB, fits no activation block), so the reserve holds the larger phase and part
of the smaller. Found on issue 26's second held-out set, where full fine-tunes whose two phases are of one size
were under-estimated by 5-12% (DeBERTa-v3 full 2 x 512: -12.1%); fitted on the calibration rows only
(benchmarks/results/memory_heldout/README.md, "Issue 26's verdict"). Not with checkpointing, whose own term
(CHECKPOINT_FRAGMENTATION) was calibrated with both phases in it. It replaces a term of 15% of the activations
under the foreach AdamW, which missed the phases' sizes."""
CHECKPOINT_FRAGMENTATION = 0.7
"""With gradient checkpointing the allocator also keeps this share of one layer's activations reserved
(7-12% reserve in the measurements, against 1-6% without; calibrated)."""
IA3_BYTES = 4
"""Bytes per element of the tensors IA3 scales that it keeps: measured twice their 16-bit size (the product
with the fp32 IA3 vector is promoted to fp32)."""
IA3_BACKWARD_TENSORS = 3
"""IA3 scales the FFN's inner activations in fp32 (peft casts them to its vector's dtype), so that layer's backward
holds three fp32 tensors of the FFN's width at once: the incoming gradient cast to fp32, the input's gradient and
the product summed into the vector's gradient. An H200 allocator trace of MiniLM IA3 32 x 256 found 284 MB of the
backward thread's tensors alive at the peak against the 48 MB counted (benchmarks/results/memory_heldout3/
peaks.md). By autograd's rules, not fitted."""
INT8_INPUT_BYTES = 3
"""LLM.int8() (bitsandbytes MatMul8bitLt) keeps each input as fp16 and as int8: 3 bytes per element."""
BACKWARD_TEMPORARIES = 2.0
"""Tensors of the FFN's width the backward pass holds at once beside the saved activations (calibrated)."""
DEBERTA_SCORE_BYTES = 8.5
"""Bytes per s x s attention score DeBERTa's disentangled attention keeps (eager: an fp32 softmax, the dropout
mask, a 16-bit copy, the gathers' position index)..."""
DEBERTA_SPAN_BYTES = 3.5
"""... and per head, token and relative distance (2 x att_span wide, 512 for v3: the 16-bit content-to-position and
position-to-content scores, which the gathers keep)..."""
DEBERTA_POSITION_COPIES = 2
"""... and, per sequence rather than per token, the position keys and queries (heads x span x head dim), repeated
for every sequence of the batch and kept by the bmm that reads them: it weighs most at short lengths (an H200
allocator trace of DeBERTa-v3 LoRA 64 x 64 found 576 + 528 MB of them in 4.8 GB, which the estimate missed:
benchmarks/results/memory_heldout/snapshots/). The two constants were refitted with this term on the calibration
rows (all at 256 tokens) and the held-out set's length rows (128-2048 tokens): 8.5 and 3.5 bytes, from 8.5 and
4.5 without it; benchmarks/results/memory_heldout/README.md."""
SDPA_MASK_COPY = 1
"""sdpa with a padding mask keeps, per layer, its own copy of the s x s mask in the matmul dtype (the memory-
efficient kernel's attention bias, saved for its backward): s bytes x 2 per token and layer in bf16, 4 KB at
2,048 tokens. An H200 allocator trace of SmolLM2 LoRA 6 x 2048 found one 48 MB block per layer
(benchmarks/results/memory_heldout/snapshots/); it is what made long sequences under-estimated."""
CPU_RUNTIME_MB = 650.0
"""Python, torch, transformers, datasets and tokenizers themselves with the run's data and Trainer: a quick-demo
process held 684-752 MB at its first training step, 87 MB of it the weights (benchmarks/results/cpu_memory)."""
CPU_RUN_GROWTH_MB = 210.0
"""What a CPU process's RSS gains over a whole run beyond one step's high water mark, whatever the model: the heap
fragments as steps, validation passes and checkpoints allocate and free (the quick demo peaked 1,267 MB after 12
steps, 1,326 MB after its 125). Fitted with `CPU_HEAP_RESERVE` on whole runs."""
CPU_HEAP_RESERVE = 0.21
"""On a CPU the process keeps part of what autograd frees (glibc's heap holds freed blocks for reuse; RSS has no
allocator to release them to): this share of a step's activations beyond them. Fitted with `CPU_RUN_GROWTH_MB` on
whole runs of the quick demo at four shapes and the 28-label GoEmotions preset (within 3.6%); on the cases held
out of the fit, SmolLM2 LoRA and the CPU grid's two runs, within 8.6% (LoRA under: its adapters' temporaries
churn the heap more); benchmarks/cpu_memory.py, benchmarks/results/cpu_memory."""
SAFETY_MARGIN = 0.95
"""A config fits when its estimate plus SAFETY_MB stays under 95% of the free memory: room for what the estimate
misses (other processes' allocations, allocator spikes), so "fits" and "largest batch" don't promise the last MB."""
SAFETY_MB = 128.0
"""... and a fixed allowance beside the 5%: small models' misses are a fixed size, not a share. Set from issue 26's
held-out sets: beyond 5% of its measured peak, no measured row's estimate fell short by more than 76 MB (MiniLM
IA3 32 x 256, -8.6%: 2,146 MB measured). With 128 MB, "fits" was wrong for no calibration row and no held-out row
but one measured before the 8-bit checkpointing fix; the fourth held-out set, measured once after, had none
(benchmarks/results/memory_heldout/README.md, "Issue 26's verdict")."""
MAX_BATCH = 65536
"""The largest train.batch_size the config accepts."""


@dataclass
class MemoryEstimate:
    parts: dict[str, float]
    """MB per part, in the order of `PARTS`."""
    total_mb: float
    trainable_params: int
    total_params: int
    device: Device
    fits: bool
    """total_mb + SAFETY_MB <= SAFETY_MARGIN x device.free_mb."""
    largest_batch: int | None
    """The largest per-device train.batch_size that still fits (None: not even 1)."""
    notes: list[str] = field(default_factory=list)
    adapter_targets: tuple[str, ...] = ()
    """The modules the adapters wrap, named within a layer (e.g. self_attn.q_proj); () for full FT."""


def usable_mb(device: Device) -> float:
    """What an estimate may reach and still "fit": the free memory less the safety margins."""
    return device.free_mb * SAFETY_MARGIN - SAFETY_MB


def estimate(config: RunConfig, num_labels: int = 2, device: Device | None = None) -> MemoryEstimate:
    """Estimate the peak memory of training `config` with a head of `num_labels` classes on `device`.

    Raises:
        ModelError: the model cannot be resolved, or the method cannot be placed on it (the same message
            training would give).
    """
    from studio.models import check_family

    device = device or detect()
    facts = _model_facts(config.model, num_labels)
    check_family(facts.family, facts.hf_config.model_type, config.method)
    adapter = config.method.adapter
    ad = None
    if adapter is not None:
        targets = tuple(config.method.target_modules or ()) or None
        ad = _adapter_facts(facts, adapter, config.method.resolved_placement(), targets, config.method.freeze_layers)
    raw, phase = _peak(facts, ad, config, device, config.train.batch_size)
    parts = {k: v / MB for k, v in raw.items()}
    total = sum(parts.values())

    usable = usable_mb(device)

    def fits_at(batch: int) -> bool:
        return sum(_peak(facts, ad, config, device, batch)[0].values()) / MB <= usable

    if ad is None:
        total_params = facts.total_params
        trainable = total_params - _frozen_params(facts, config)
    else:
        rank = _rank(config.method)
        trainable, total_params = ad.per_rank * rank + ad.head, ad.base_and_head + ad.per_rank * rank
    return MemoryEstimate(
        parts=parts,
        total_mb=total,
        trainable_params=trainable,
        total_params=total_params,
        device=device,
        fits=total <= usable,
        largest_batch=_largest_batch(fits_at),
        notes=[PHASE_NOTES[phase]] + _notes(facts, config, device),
        adapter_targets=ad.targets if ad else (),
    )


PHASE_NOTES = {
    "backward": "peak at the start of the backward pass: every activation of the forward pass is held (the "
    "gradients replace them layer by layer, so they are not all held at once)",
    "backward end": "peak at the end of the backward pass: all gradients and one layer's activations",
    "optimizer step": "peak at the optimizer step: the gradients and AdamW's temporary copy of them",
    "evaluation": "peak in evaluation: its batch without a backward pass outweighs training's",
    "cpu": "peak RSS: every activation of the forward pass and all the gradients (the process keeps the heap's high "
    "water mark, so both count)",
}


# ---- the formula ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Widths:
    """Bytes per element of what a step holds, from the method, the precision and the checkpoint."""

    weights: int
    """The float weights (Method.base_weights: fp32 under QLoRA, where prepare_model_for_kbit_training upcasts
    them, and fp32 master weights under full fine-tuning; the checkpoint's dtype under LoRA / IA3), which is
    also the residual stream's dtype."""
    matmul: int
    """Matmul outputs: 16-bit under autocast or in a 16-bit model."""
    stream: int
    """The residual stream (16 bit with half_activations, models._half_stream)."""
    frozen: int
    """The frozen float weights (16 bit with half_activations under adapters)."""
    mixed: bool
    cpu: bool = False


def _widths(f: _ModelFacts, ad: _AdapterFacts | None, config: RunConfig, device: Device) -> _Widths:
    method, train = config.method, config.train
    mixed = precision.resolve(train.precision, precision.Compute.of(device)).mixed
    # a frozen 16-bit base stays 16-bit under autocast; an fp32 run loads it in fp32 (models.load_classifier)
    wb = f.weight_bytes if method.spec.base_weights == "checkpoint" and mixed else 4
    e = 2 if mixed or wb == 2 else 4
    half = train.half_activations and mixed
    return _Widths(wb, e, e if half else wb, e if half and ad is not None else wb, mixed, device.kind == "cpu")


def _held(f: _ModelFacts, ad: _AdapterFacts | None, config: RunConfig, device: Device, w: _Widths) -> tuple:
    """(weights, adapters, gradients, optimizer states, the optimizer step's temporaries) in bytes: what a
    step holds whatever its phase (gradients from the end of the backward pass to the optimizer step)."""
    method, train = config.method, config.train
    cuda = device.kind == "cuda"
    # weights: the base as loaded; QLoRA stores its linear layers in 4/8 bit, the rest (embeddings, norms,
    # head) in fp32.
    weights = f.total_params * w.frozen
    if method.quantized:
        q = sum(i * o for i, o in f.quantized)
        weights += _quantized_bytes(q, sum(o for _, o in f.quantized), method) - q * w.frozen
    # trainable parameters as (count, bytes each): all in fp32 (models.py upcasts adapters and head)
    if ad is None:
        trainable = [(f.total_params - _frozen_params(f, config), w.weights)]
        adapters = 0.0
    else:
        n = ad.per_rank * _rank(method)
        trainable = [(n, ADAPTER_BYTES), (ad.head, ADAPTER_BYTES)]
        adapters = (n + ad.head) * ADAPTER_BYTES
    gradients = sum(n * b for n, b in trainable)
    states = sum(n * _state_bytes(train.optimizer, b) for n, b in trainable)
    if ad is None and train.optimizer in ("paged_adamw_8bit", "adamw_bnb_8bit"):
        states += f.embedding_params * (8.0 - _state_bytes(train.optimizer, w.weights))  # the Trainer keeps them 32-bit
    if cuda and train.optimizer.startswith("paged_"):
        states = 0.0  # CUDA unified memory, outside the device's allocations: paged to CPU RAM under pressure
    # torch's foreach AdamW (the default on a GPU) computes sqrt(v) for every parameter at once: one more copy
    step_temp = gradients if cuda and train.optimizer == "adamw_torch" else 0.0
    return weights, adapters, gradients, states, step_temp


def _activations(f: _ModelFacts, ad: _AdapterFacts | None, config: RunConfig, w: _Widths, batch: int) -> tuple:
    """(held through the backward pass, what the backward's end holds, evaluation's, one layer's per token):
    what one layer keeps per token for the backward pass, the adapters' own tensors, the embedding / final norm
    and head, and autocast's 16-bit copies of fp32 weights."""
    method, train, s = config.method, config.train, config.data.max_length
    tokens = batch * s
    attn = _effective_attention(config.model.attn_implementation or f.attn_implementation, f, w.cpu)
    layer = _layer_bytes(f, s, w, attn, full=ad is None, quantized=method.quantized)
    adapter_inputs = 0.0  # LoRA keeps its layers' inputs (in 16 bit) and dropout masks; IA3 its scaled tensors
    if ad is not None and ad.keeps_inputs:
        adapter_inputs = ad.inputs * (w.matmul + (_mask_bytes(w, w.matmul) if method.dropout > 0 else 0))
    elif ad is not None:
        adapter_inputs = ad.inputs * IA3_BYTES
    if method.quant_bits == 8:  # LLM.int8() layers keep their input, frozen or not
        adapter_inputs += sum(i for i, _ in f.quantized) * INT8_INPUT_BYTES
    layer += adapter_inputs / f.layers
    edges = f.hidden * (4 + (_mask_bytes(w, 4) if f.dropout else 0) + (w.matmul if f.decoder else 0))
    casts = 2 * f.matmul_params if w.mixed and w.frozen == 4 and not method.quantized else 0.0
    # Autocast caches the copies of trainable weights for the whole forward pass; frozen weights' copies are
    # kept by each matmul that used them, so checkpointing keeps one layer's.
    casts_one_layer = casts / f.layers
    # the backward pass of one FFN holds gradients of its i-wide tensors beside the saved activations
    transient = BACKWARD_TEMPORARIES * tokens * f.ffn_width * w.matmul
    if attn == "eager" and not f.relative_attention:  # or its attention's, s x s per head, in fp32 under autocast
        transient = max(transient, EAGER_BACKWARD_SCORES * tokens * f.heads * s * (4 if w.mixed else w.matmul))
    if ad is not None and not ad.keeps_inputs and not w.cpu:  # or IA3's FFN, its scaling in fp32 at the FFN's width
        # (on a CPU, CPU_HEAP_RESERVE was fitted on whole runs with these transients in them)
        transient = max(transient, IA3_BACKWARD_TENSORS * tokens * f.ffn_width * IA3_BYTES)
    if train.gradient_checkpointing:  # each layer keeps its input; one layer at a time is recomputed
        held = tokens * (f.layers * w.stream * f.hidden + edges + layer) + (casts if ad is None else casts_one_layer)
    else:  # layers that method.freeze_layers keeps frozen record nothing for a backward pass
        held = tokens * ((f.layers - min(method.freeze_layers, f.layers)) * layer + edges) + casts
    eval_batch = train.eval_batch_size or 2 * batch
    # evaluation keeps nothing for a backward pass: about one layer's tensors at a time
    return held + transient, tokens * layer + casts_one_layer + transient, eval_batch * s * (layer + edges), layer


def _frozen_params(f: _ModelFacts, config: RunConfig) -> int:
    """Parameters `method.freeze_layers` keeps frozen in a full fine-tune, counted on the meta-device model
    by the same rule training applies (models.frozen_lower)."""
    if not config.method.freeze_layers:
        return 0
    return _frozen_count(f, config.method.freeze_layers, config.model.name)


@functools.lru_cache(maxsize=32)  # every batch the largest-batch search tries asks again; the count is the model's
def _frozen_count(f: _ModelFacts, layers: int, name: str) -> int:
    from studio.models import frozen_lower

    return sum(p.numel() for p in frozen_lower(f.model, f.hf_config, layers, f.new_modules, name))


def _peak(f: _ModelFacts, ad: _AdapterFacts | None, config: RunConfig, device: Device, batch: int) -> tuple:
    """(bytes per part, phase) for `batch` sequences per device (everything else from `config`): the largest
    of what training holds in each phase of a step.

    Phases: the start of the backward pass (the forward's activations all held), the end of it (gradients
    complete, one layer's activations), the optimizer step (gradients + the optimizer's temporaries) and
    evaluation. Weights, adapters and optimizer states are held throughout.
    """
    train = config.train
    w = _widths(f, ad, config, device)
    weights, adapters, gradients, states, step_temp = _held(f, ad, config, device, w)
    backward, backward_end, evaluation, layer = _activations(f, ad, config, w, batch)
    accumulated = gradients if train.grad_accum > 1 else 0.0  # the previous micro-batches' gradients
    phases = {
        "backward": (accumulated, backward),
        "backward end": (gradients, backward_end),
        "optimizer step": (gradients + step_temp, 0.0),
        "evaluation": (0.0, evaluation),
    }
    phase = max(phases, key=lambda k: sum(phases[k]))
    grads, activations = phases[phase]
    if device.kind == "cpu":  # RSS keeps the heap's high water: the backward pass's activations and the gradients
        phase, grads, activations = "cpu", gradients, max(backward, evaluation)
    rest = weights + adapters + grads + states + activations
    # the caching allocator keeps the larger of the backward pass's blocks and the optimizer step's, and part of
    # the smaller's: blocks of one phase's sizes serve the other's requests only in part (PHASE_REUSE_MISS)
    reserve = FRAGMENTATION * rest
    if train.gradient_checkpointing:  # recomputing allocates and frees a layer's tensors once per layer
        reserve += CHECKPOINT_FRAGMENTATION * batch * config.data.max_length * layer
    else:
        reserve += PHASE_REUSE_MISS * min(backward, gradients + step_temp)
    overhead = (
        (CUDA_CONTEXT_MB + CUBLAS_WORKSPACES_MB) * MB + reserve
        if device.kind == "cuda"
        else ((CPU_RUNTIME_MB + CPU_RUN_GROWTH_MB) * MB + CPU_HEAP_RESERVE * activations)
    )
    values = (weights, adapters, grads, states, activations, overhead)
    return dict(zip(PARTS, values, strict=True)), phase


def _effective_attention(attn: str, f: _ModelFacts, cpu: bool) -> str:
    """On a CPU, sdpa with attention dropout (BERT-family encoders train with it) runs PyTorch's math path, which
    keeps the s x s probabilities like eager attention does: measured, the quick demo at 256 tokens peaked 428 MB
    above the same tokens at 128 (benchmarks/results/cpu_memory)."""
    return "eager" if cpu and attn == "sdpa" and f.attention_dropout else attn


def _mask_bytes(w: _Widths, width: int) -> int:
    """What a dropout keeps of an input `width` bytes wide: a 1-byte mask on a GPU, its noise on a CPU."""
    return width if w.cpu else DROPOUT_MASK_BYTES


def _layer_bytes(f: _ModelFacts, s: int, w: _Widths, attn: str, full: bool, quantized: bool) -> float:
    """Bytes one transformer layer keeps per token for the backward pass, tensor by tensor, by autograd's rules
    (checked against the H100 measurements): a matmul keeps its input only when its weight trains (full
    fine-tuning), so frozen layers keep nothing of their own; norms compute in fp32 and keep an fp32 input;
    sdpa keeps q, k, v and its output but not the s x s scores; the activation keeps its input (gated FFNs:
    also the act and up outputs for their product). With all of it 16-bit and a 4h GELU FFN, full
    fine-tuning gives Korthikanti et al.'s 34h (eq. 1 without its 5as scores term)."""
    h, i, e, rb, mixed = f.hidden, f.ffn_width, w.matmul, w.stream, w.mixed
    norms = f.norms * h * (4 if mixed or rb == 4 or f.rms_norm else rb)
    if full and f.rms_norm:
        norms += f.norms * h * rb  # RMSNorm's weight multiplies apart: its gradient needs the normalised input
    # q, k, v and the output at full width: padded batches carry a mask, and with a mask transformers repeats
    # GQA's smaller k/v to full width for sdpa (the measured Llama / Qwen peaks confirm it)
    attention = e * 4 * h
    if f.relative_attention:
        attention += f.heads * (s * DEBERTA_SCORE_BYTES + f.relative_span * DEBERTA_SPAN_BYTES)
        # per sequence, not per token: the position keys and queries, repeated for every sequence of the batch
        # before their bmm (which keeps them): 2 x (heads x span x head_dim) each, spread over its s tokens
        attention += DEBERTA_POSITION_COPIES * f.relative_span * h * e / s
    elif attn == "eager":  # the softmax's output (fp32 under autocast) and what the next matmul keeps: its
        # 16-bit copy under autocast, or (counted on a CPU, where autograd's saved tensors were counted) dropout's
        # output; and dropout's mask. On a GPU in fp32 the one held-out row that has it measured 1.7% under
        # without the dropout output, 4.5% over with it: left as measured until an allocator trace says
        probs = 4 if mixed else e
        kept = e if mixed or (f.attention_dropout and w.cpu) else 0
        attention += f.heads * s * (probs + kept + (_mask_bytes(w, probs) if f.attention_dropout else 0))
    elif attn == "sdpa":
        attention += SDPA_MASK_COPY * e * s
    fe = rb if quantized else e  # 4-bit layers return their input's dtype: the fp32 stream
    if f.composed_gelu:  # x * 0.5 * (1 + tanh(c (x + 0.044715 x^3))) in python ops: pow's fp32 input (autocast
        act = (12 + fe) * i  # runs pow in fp32), tanh's output, and both factors of the last product
    else:
        act = fe * i * (3 if f.gated else 1)
    inputs = 0.0
    if full:  # q/k/v (and gate/up) read one input; an fp32 stream under autocast is cast once per reader
        copies = (f.attention_inputs, f.ffn_inputs) if mixed and rb == 4 else (1, 1)
        inputs = e * h * sum(copies) + e * i  # the output projection reads sdpa's output, already kept
    masks = 2 * h * _mask_bytes(w, e) if f.dropout else 0
    return norms + attention + act + inputs + masks


def _quantized_bytes(params: int, rows: int, method: MethodConfig) -> float:
    if method.bits == 8:
        return params + 4 * rows  # int8 + an fp32 scale per output row
    blocks = params / QUANT_BLOCK
    constants = blocks + 4 * blocks / NESTED_BLOCK if method.double_quant else 4 * blocks
    return params / 2 + constants


def _state_bytes(optimizer: str, param_bytes: int) -> float:
    if optimizer in ("adamw_torch", "adamw_torch_fused"):
        return 2 * param_bytes  # exp_avg and exp_avg_sq, in the parameter's dtype
    return OPTIMIZER_STATE_BYTES[optimizer]


def _rank(method: MethodConfig) -> int:
    """What the adapters' size at rank 1 scales by: method.r for LoRA's matrices, 1 for IA3's vectors."""
    return method.r if method.spec.rank else 1


def _largest_batch(fits_at: Callable[[int], bool]) -> int | None:
    if not fits_at(1):
        return None
    lo, hi = 1, 2  # double, then bisect: fits_at is monotonic in the batch
    while hi <= MAX_BATCH and fits_at(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_BATCH + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_at(mid) else (lo, mid)
    return lo


STRANDED_NOTE = (
    "batches of varying length strand cached memory without train.expandable_segments (the speed profiles turn it "
    "on): on IMDb's real lengths the seed recipe as set peaked 15-16% above this estimate, fast at batch 128 6-10% "
    "(H100, H200; the estimate is calibrated on batches of one length)"
)
"""Measured in benchmarks/results/train_speed (train_speed.py's rows against today's estimate); with the segments on,
the same workloads peaked up to 7% below it (h200_frugal_8000x1, h200_16000x1_expandable)."""


def _notes(f: _ModelFacts, config: RunConfig, device: Device) -> list[str]:
    from studio.models import check_max_length

    method, train, s = config.method, config.train, config.data.max_length
    mode = precision.resolve(train.precision, precision.Compute.of(device)).mode
    # a frozen bf16 base under autocast (an fp32 run loads it in fp32)
    stored_16bit = f.weight_bytes == 2 and method.spec.base_weights == "checkpoint" and mode != "fp32"
    if mode != "fp32":
        dtype = f"{mode} autocast"
    else:
        dtype = "the model's 16-bit dtype" if stored_16bit else "fp32"
    notes = [f"activations for batch {train.batch_size} x {s} tokens in {dtype} ({s} is an upper bound: "
             "batches are padded to their longest text)"]  # fmt: skip
    if mode != train.precision and train.precision != "auto":
        notes.append(f"train.precision {train.precision} runs as {mode} on the {device.kind.upper()}")
    chosen = config.model.attn_implementation or f.attn_implementation
    attn = _effective_attention(chosen, f, device.kind == "cpu")
    why = " (on a CPU, sdpa with attention dropout keeps them)" if attn != chosen else ""
    notes.append(f"{attn} attention: the {s} x {s} attention scores are {'' if attn == 'eager' else 'not '}stored{why}")
    if device.kind == "cpu":
        notes.append(f"counts the training process's peak RSS: Python and its libraries with the data "
                     f"(~{CPU_RUNTIME_MB:.0f} MB), the weights, gradients and optimizer states, the activations, "
                     f"{CPU_HEAP_RESERVE:.0%} of them again for what the heap keeps after autograd frees it, and "
                     f"~{CPU_RUN_GROWTH_MB:.0f} MB the heap gains over a whole run; "
                     "dataloader worker processes are not counted")  # fmt: skip
    if train.gradient_checkpointing:
        notes.append("gradient checkpointing: each layer keeps only its input; one layer at a time is recomputed")
    if method.quantized:
        q = sum(i * o for i, o in f.quantized) / 1e6
        notes.append(f"{q:.1f}M weights in {len(f.quantized)} linear layers stored in {method.bits} bit; "
                     "embeddings, norms and head in fp32")  # fmt: skip
    elif stored_16bit:
        notes.append("frozen weights stay in the checkpoint's 16-bit dtype; adapters and head train in fp32")
    elif f.weight_bytes == 2 and method.spec.base_weights == "checkpoint":
        notes.append("the checkpoint's 16-bit weights are loaded in fp32: the run computes in fp32")
    elif f.weight_bytes == 2:
        notes.append(
            "the checkpoint's 16-bit weights train as fp32 master weights (16-bit updates would round to nothing)"
        )
    elif mode != "fp32":
        notes.append("activations include the 16-bit copies autocast makes of the fp32 weights for the backward pass")
    if train.optimizer.startswith("paged_") and device.kind == "cuda":
        notes.append("paged optimizer: its states live in CUDA unified memory, paged out to CPU RAM when the GPU "
                     "is full, so they are not counted in the GPU peak")  # fmt: skip
    if device.kind == "cuda" and not train.expandable_segments:
        notes.append(STRANDED_NOTE)
    if device.count > 1:
        notes.append(f"{device.count} GPUs: each holds all of this (data parallel); shown for GPU 0")
    try:
        check_max_length(f.hf_config, s)
    except ModelError as err:
        notes.append(str(err))
    return notes


def format_estimate(e: MemoryEstimate) -> str:
    """A few lines for a terminal: total and verdict, the parts, the parameters, the notes."""
    where = e.device.name if e.device.kind == "cuda" else "CPU RAM"
    verdict = "fits" if e.fits else "does NOT fit"
    largest = f"; largest batch {e.largest_batch:,}" if e.largest_batch else ""
    lines = [
        f"Peak training memory ~ {_size(e.total_mb)}: {verdict} in {where} ({_size(e.device.free_mb)} free){largest}",
        "  " + " | ".join(f"{k} {_size(v)}" for k, v in e.parts.items()),
        f"  parameters: {e.trainable_params:,} trainable of {e.total_params:,} "
        f"({e.trainable_params / max(e.total_params, 1):.2%})",
    ]
    return "\n".join(lines + [f"  - {n}" for n in e.notes])


def _size(mb: float) -> str:
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.0f} MB"


# ---- facts about the model (cached) --------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _ModelFacts:
    hf_config: Any
    model: Any
    """The classification model on the meta device: shapes only."""
    family: Family | None
    new_modules: tuple[str, ...]
    """Modules the checkpoint lacks (they start random and train with the head)."""
    num_labels: int
    total_params: int
    weight_bytes: int
    """Bytes per weight as loaded without quantization: the checkpoint's dtype (transformers 5: dtype auto)."""
    matmul_params: int
    """Weights of every linear layer (what autocast casts to 16 bit)."""
    quantized: tuple[tuple[int, int], ...]
    """(in, out) of each layer a QLoRA load quantizes."""
    hidden: int
    layers: int
    heads: int
    ffn_width: int
    gated: bool
    attn_implementation: str
    norms: int
    """Norm layers of hidden width in one transformer layer."""
    rms_norm: bool
    dropout: bool
    """Hidden-state dropout is on (encoders): every dropout keeps a mask."""
    relative_attention: bool
    """DeBERTa's disentangled attention: eager, with position-to-content scores."""
    decoder: bool
    attention_inputs: int
    """Linear layers reading the attention's input (q, k, v: 3; GPT-2's fused c_attn: 1) ..."""
    ffn_inputs: int
    """... and the FFN's input (gated: gate and up)."""
    embedding_params: int
    composed_gelu: bool
    attention_dropout: bool = False
    """Dropout on the attention probabilities (BERT-family encoders)."""
    relative_span: int = 0
    """DeBERTa: the relative distances its position scores span (2 x att_span: 512 for v3's 256 buckets)."""
    """The activation is transformers' GELU written in python ops (gelu_new: GPT-2), not a fused kernel."""


@dataclass(frozen=True)
class _AdapterFacts:
    keeps_inputs: bool
    """The adapter keeps its layers' inputs for the backward pass (LoRA), not the tensors it scales (IA3)."""
    per_rank: int
    """LoRA: parameters at r = 1 (they scale with r); IA3: all of its scaling vectors."""
    head: int
    """The trainable copy of the head (peft's modules_to_save)."""
    base_and_head: int
    """What peft counts besides the adapters: the base, its head and the head's trainable copy."""
    inputs: int
    """Elements per token of the adapters' own activations (LoRA: its layers' inputs; IA3: scaled tensors)."""
    targets: tuple[str, ...] = ()
    """The wrapped modules' names within a layer (e.g. self_attn.q_proj), in model order."""


def _model_facts(cfg: ModelConfig, num_labels: int) -> _ModelFacts:
    config_json = Path(cfg.name).expanduser() / "config.json"
    stamp = config_json.stat().st_mtime_ns if config_json.is_file() else None  # a folder rewritten: rebuild
    return _facts_for(cfg.name, cfg.revision, cfg.trust_remote_code, num_labels, stamp)


@functools.lru_cache(maxsize=8)
def _facts_for(name: str, revision: str | None, trust: bool, num_labels: int, stamp: int | None) -> _ModelFacts:
    import torch
    from transformers.pytorch_utils import Conv1D

    mcfg = ModelConfig(name=name, revision=revision, trust_remote_code=trust)
    hf_config, source = _hf_config(mcfg)
    model = _build_meta_model(hf_config, num_labels, trust)
    family = family_for(hf_config.model_type)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | Conv1D)}
    c = hf_config
    hidden = getattr(c, "hidden_size", None) or model.get_input_embeddings().embedding_dim
    # FFN width: intermediate_size (BERT, Llama), n_inner (GPT-2, None = 4h), hidden_dim (DistilBERT)
    ffn = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or getattr(c, "hidden_dim", None)
    ffn = ffn or 4 * hidden
    dtype = getattr(c, "dtype", None)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    layer0 = [m for n, m in model.named_modules() if re.search(r"\.(?:layer|layers|h)\.0\.", n)]
    norms = [m for m in layer0 if "norm" in type(m).__name__.lower() and getattr(m, "weight", None) is not None]
    dropout = max(float(getattr(c, k, 0.0) or 0.0) for k in ("hidden_dropout_prob", "dropout", "resid_pdrop"))
    attention_in, ffn_in = (len(family.attention) - 1, len(family.ffn) - 1) if family else (3, 1)
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    return _ModelFacts(
        hf_config=hf_config,
        model=model,
        family=family,
        new_modules=_new_modules(model, source),
        num_labels=num_labels,
        total_params=sum(p.numel() for p in model.parameters()),
        weight_bytes=2 if dtype == torch.bfloat16 else 4,  # fp16 checkpoints train in fp32 (models.py)
        matmul_params=sum(m.weight.numel() for m in linears.values()),
        quantized=_quantized_layers(model, family, linears),
        hidden=hidden,
        layers=getattr(c, "num_hidden_layers", None) or 1,
        heads=getattr(c, "num_attention_heads", None) or 1,
        ffn_width=ffn,
        gated=any(n.endswith("gate_proj") for n in linears),
        attn_implementation=getattr(model.config, "_attn_implementation", None) or "eager",
        norms=sum(1 for m in norms if m.weight.numel() == hidden) or 2,
        rms_norm=any("rms" in type(m).__name__.lower() for m in norms),
        dropout=dropout > 0,
        relative_attention=bool(getattr(c, "relative_attention", False)),
        decoder=bool(family and family.decoder),
        attention_inputs=attention_in,
        ffn_inputs=ffn_in,
        embedding_params=sum(m.weight.numel() for m in embeddings),
        composed_gelu=(getattr(c, "hidden_act", None) or getattr(c, "activation_function", None))
        in ("gelu_new", "gelu_fast"),
        attention_dropout=any(float(getattr(c, k, 0.0) or 0.0) > 0
                              for k in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")),
        relative_span=_relative_span(c),
    )  # fmt: skip


def _relative_span(c: Any) -> int:
    """2 x DeBERTa's att_span (transformers' pos_ebd_size: the position buckets, else max_relative_positions,
    else max_position_embeddings); 0 for models without relative attention."""
    if not getattr(c, "relative_attention", False):
        return 0
    buckets = getattr(c, "position_buckets", -1) or -1
    span = buckets if buckets > 0 else getattr(c, "max_relative_positions", -1) or -1
    return 2 * (span if span > 0 else getattr(c, "max_position_embeddings", 512))


def _hf_config(mcfg: ModelConfig) -> tuple[Any, str | None]:
    """(config, source): a catalogue alias's published dims (no source), else the real config and its source."""
    from transformers import AutoConfig

    from studio.models import load_config, resolve_source

    choice = model_choice(mcfg.name)
    if choice is not None and choice.dims and not choice.source.startswith("pypi:") and mcfg.revision is None:
        # A catalogue model's dims are its published config: use them rather than asking the Hub, so a live
        # estimate never waits on the network (offline, huggingface_hub retries for ~20 s before failing).
        dims = dict(choice.dims)
        return AutoConfig.for_model(dims.pop("model_type"), **dims), None
    source = resolve_source(mcfg)
    return load_config(mcfg, source), source


def _build_meta_model(hf_config: Any, num_labels: int, trust_remote_code: bool) -> Any:
    """The classification model build_model would load, with shapes only (no memory, no weights read)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(hf_config)
    config.num_labels = num_labels
    try:
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError) as e:
        raise ModelError(f"model.name: '{config.model_type}' cannot be built for classification: {e}") from None


def _new_modules(model: Any, source: str | None) -> tuple[str, ...]:
    """What `models.load_classifier` reports as missing: from a local folder's safetensors keys, else (Hub) the
    modules outside the base model, which is what a base checkpoint lacks."""
    prefix = model.base_model_prefix + "."
    names = [n for n, _ in model.named_parameters()]
    keys = _checkpoint_keys(source)
    if keys is None:
        missing = [n for n in names if not n.startswith(prefix)]
    else:
        missing = [n for n in names if n not in keys and n.removeprefix(prefix) not in keys]
    return tuple(sorted({n.rsplit(".", 1)[0] for n in missing}))


def _checkpoint_keys(source: str | None) -> set[str] | None:
    import json

    from safetensors import safe_open

    folder = Path(source) if source else None
    if folder is None or not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    keys: set[str] = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as reader:  # reads the header only
            keys.update(reader.keys())
    return keys


def _quantized_layers(model: Any, family: Family | None, linears: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    """The layers transformers' bitsandbytes integration replaces, by its own rules and the studio's skips."""
    import torch
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    from studio.models import quantization_skips

    skip = HfQuantizer.get_modules_to_not_convert(model, quantization_skips(family), model._keep_in_fp32_modules)
    out = []
    for name, m in linears.items():
        if (type(m) is torch.nn.Linear or isinstance(m, Conv1D)) and should_convert_module(name, skip):
            out.append(tuple(m.weight.shape) if isinstance(m, Conv1D) else (m.in_features, m.out_features))
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _adapter_facts(f: _ModelFacts, adapter: str, placement: str, targets: tuple[str, ...] | None,
                   frozen: int = 0) -> _AdapterFacts:  # fmt: skip
    """Place the adapters with the studio's own code (peft) on a meta copy at rank 1 (none in the `frozen`
    lowest layers), and count."""
    from studio import adapters

    # The method named after the adapter type places its adapters on an unquantized base: the meta copy is
    # never quantized (its quantized layers are counted apart, `_quantized_layers`).
    method = MethodConfig(name=adapter, r=1, placement=placement, target_modules=list(targets) if targets else None,
                          freeze_layers=frozen)  # fmt: skip
    peft_model = adapters.wrap(copy.deepcopy(f.model), method, f.family, list(f.new_modules))
    kind = ADAPTER_KINDS[adapter]
    count = head = 0
    for name, p in peft_model.named_parameters():
        if p.requires_grad and adapters.is_adapter_weight(name):
            count += p.numel()
        elif p.requires_grad:
            head += p.numel()
    wrapped = [m for m in peft_model.modules() if hasattr(m, kind.module_marker)]
    inputs = sum(m.in_features for m in wrapped) if kind.keeps_inputs else count
    _, total = peft_model.get_nb_trainable_parameters()
    names = [n for n, m in peft_model.named_modules() if hasattr(m, kind.module_marker)]
    targets = tuple(dict.fromkeys(re.sub(r"^.*?\.(?:layer|layers|h)\.\d+\.", "", n) for n in names))
    return _AdapterFacts(keeps_inputs=kind.keeps_inputs, per_rank=count, head=head, base_and_head=int(total) - count,
                         inputs=inputs, targets=targets)  # fmt: skip
