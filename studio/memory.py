"""Peak training memory, estimated without loading anything: weights, adapters, gradients, optimizer,
activations and overhead, for the live estimate of the UI's "Model & method" tab.

Parameter counts are exact, not estimated: the model's architecture is built on the meta device (shapes, no
storage) from its config (for catalogue models, their published `ModelChoice.dims`); transformers' own
bitsandbytes rules say which layers a QLoRA load quantizes; the adapters are placed by the studio's own
`models._wrap_with_adapter` on a meta copy at rank 1 (LoRA sizes scale with r). Those facts are cached per
model and placement, so a knob change costs arithmetic only.

Bytes come from the formula in `_breakdown`, every constant named below (a later GPU calibration changes
them here). Sources:
- Mixed precision keeps fp32 master weights (Micikevicius et al. 2018); AdamW keeps 2 states per parameter
  in the parameter's dtype (torch); bitsandbytes 8-bit optimizers 2 bytes (Dettmers et al. 2022).
- Activations of one transformer layer: s*b*h*(34 + 5*a*s/h) bytes at 16 bit (Korthikanti et al. 2022,
  "Reducing Activation Recomputation in Large Transformer Models", eq. 1), written per tensor below so that
  the FFN width i (Llama-style gated FFNs keep 4 i-wide tensors) and the dtypes autocast really uses count.
  The s*s attention scores are stored only by eager attention: sdpa / flash kernels recompute them.
- Gradient checkpointing keeps each layer's input and recomputes one layer at a time (Chen et al. 2016).
- 4-bit NF4: 0.5 byte per weight + an fp32 absmax per 64 weights; double quantization stores those absmax
  in 8 bit with an fp32 scale per 256 of them (Dettmers et al. 2023, QLoRA). LLM.int8(): 1 byte per weight
  + an fp32 scale per output row (Dettmers et al. 2022).
Uncalibrated; ignored: bitsandbytes' 32-bit states for tensors under 4,096 elements, GQA's smaller k/v,
temporary buffers of the backward pass (covered by the fragmentation share).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
"""A dropout keeps a 1-byte mask of its input (two per layer: attention output and FFN output)."""
CUDA_CONTEXT_MB = 500.0
"""CUDA context, cuBLAS / cuDNN workspaces: allocated at the first kernel, outside torch's allocator."""
FRAGMENTATION = 0.10
"""Share added on GPU for the caching allocator's fragmentation and backward-pass temporaries."""
CPU_RUNTIME_MB = 600.0
"""Python, torch, transformers and tokenizers themselves (resident ~520 MB after import)."""
SAFETY_MARGIN = 0.95
"""A config fits when its estimate stays under 95% of the free memory: room for what the estimate misses
(other processes' allocations, allocator spikes), so "fits" and "largest batch" don't promise the last MB."""
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
    """total_mb <= SAFETY_MARGIN x device.free_mb."""
    largest_batch: int | None
    """The largest per-device train.batch_size that still fits (None: not even 1)."""
    notes: list[str] = field(default_factory=list)


def estimate(config: RunConfig, num_labels: int = 2, device: Device | None = None) -> MemoryEstimate:
    """Estimate the peak memory of training `config` with a head of `num_labels` classes on `device`.

    Raises:
        ModelError: the model cannot be resolved, or the method cannot be placed on it (the same message
            training would give).
    """
    from studio.models import _check_family

    device = device or detect()
    facts = _model_facts(config.model, num_labels)
    _check_family(facts.family, facts.hf_config.model_type, config.method)
    adapter = config.method.adapter
    ad = None
    if adapter is not None:
        targets = tuple(config.method.target_modules or ()) or None
        ad = _adapter_facts(facts, adapter, config.method.resolved_placement(), targets)
    parts = _breakdown(facts, ad, config, device, config.train.batch_size)
    total = sum(parts.values())

    usable = device.free_mb * SAFETY_MARGIN

    def fits_at(batch: int) -> bool:
        return sum(_breakdown(facts, ad, config, device, batch).values()) <= usable

    if ad is None:
        trainable = total_params = facts.total_params
    else:
        rank = config.method.r if adapter == "lora" else 1
        trainable, total_params = ad.per_rank * rank + ad.head, ad.base_and_head + ad.per_rank * rank
    return MemoryEstimate(
        parts=parts,
        total_mb=total,
        trainable_params=trainable,
        total_params=total_params,
        device=device,
        fits=total <= usable,
        largest_batch=_largest_batch(fits_at),
        notes=_notes(facts, config, device),
    )


# ---- the formula ---------------------------------------------------------------------------------------
def _breakdown(f: _ModelFacts, ad: _AdapterFacts | None, config: RunConfig, device: Device, batch: int) -> dict:
    """MB per part for `batch` sequences per device (everything else from `config`)."""
    method, train, s = config.method, config.train, config.data.max_length
    # Bytes per element of: the float weights (fp32 under QLoRA: prepare_model_for_kbit_training), which is
    # also the residual stream's dtype; matmul outputs (16-bit under autocast or in a 16-bit model); the
    # inputs the linear layers keep (bitsandbytes keeps them in compute_dtype).
    wb = 4 if method.quantized else f.weight_bytes
    mixed = _precision(train.precision, device) in ("fp16", "bf16")
    e = 2 if mixed or wb == 2 else 4
    ec = _compute_bytes(method, device) if method.quantized else e

    # weights: the base as loaded; QLoRA stores its linear layers in 4/8 bit, the rest (embeddings, norms,
    # head) in fp32.
    weights = f.total_params * wb
    if method.quantized:
        q = sum(i * o for i, o in f.quantized)
        weights += _quantized_bytes(q, sum(o for _, o in f.quantized), method) - q * wb

    # trainable parameters as (count, bytes each): adapters in fp32, the head copy in the base's dtype
    if ad is None:
        trainable = [(f.total_params, wb)]
        adapters = 0.0
    else:
        n = ad.per_rank * (method.r if method.adapter == "lora" else 1)
        trainable = [(n, ADAPTER_BYTES), (ad.head, wb)]
        adapters = n * ADAPTER_BYTES + ad.head * wb
    gradients = sum(n * b for n, b in trainable)
    optimizer = sum(n * _state_bytes(train.optimizer, b) for n, b in trainable)

    # activations kept for the backward pass, per token
    layer = _layer_bytes(f, s, e, ec, wb, config.model.attn_implementation or f.attn_implementation)
    adapter_inputs = 0.0  # LoRA's dropout copies its layers' inputs (+ masks); IA3 keeps its scaled tensors
    if ad is not None and ad.lora:
        adapter_inputs = ad.inputs * (e + DROPOUT_MASK_BYTES) if method.dropout > 0 else 0.0
    elif ad is not None:
        adapter_inputs = ad.inputs * e
    edges = f.hidden * (2 * wb + DROPOUT_MASK_BYTES) + 4 * f.num_labels  # embedding output and norm; fp32 logits
    if train.gradient_checkpointing:
        per_token = f.layers * wb * f.hidden + layer + adapter_inputs / f.layers
    else:
        per_token = f.layers * layer + adapter_inputs
    # Autocast casts fp32 matmul weights to 16 bit and the matmuls keep those copies for the backward pass;
    # with checkpointing only one layer's, except that casts of trainable weights are cached all forward.
    casts = 0.0
    if mixed and wb == 4 and not method.quantized:
        casts = 2 * f.matmul_params / (1 if ad is None or not train.gradient_checkpointing else f.layers)
    activations = batch * s * (per_token + edges) + casts
    # evaluation keeps nothing for a backward pass: about one layer's worth at a time, at its own batch size
    eval_batch = train.eval_batch_size or 2 * batch
    activations = max(activations, eval_batch * s * (layer + edges))

    rest = weights + adapters + gradients + optimizer + activations
    overhead = CUDA_CONTEXT_MB * MB + FRAGMENTATION * rest if device.kind == "cuda" else CPU_RUNTIME_MB * MB
    values = (weights, adapters, gradients, optimizer, activations, overhead)
    return {k: v / MB for k, v in zip(PARTS, values, strict=True)}


def _layer_bytes(f: _ModelFacts, s: int, e: int, ec: int, rb: int, attn: str) -> float:
    """Bytes one layer keeps per token (Korthikanti et al. eq. 1, tensor by tensor). With a GELU FFN of width
    4h and everything 16-bit this is their 34h + 5as."""
    h, i = f.hidden, f.ffn_width
    linear_inputs = 3 * h + i  # the inputs of q/k/v, output projection, FFN in and FFN out
    other = 3 * h + (3 if f.gated else 1) * i  # q, k, v; the activation's input (gated: gate, up, act(gate))
    residual = 2 * h  # the two norms' inputs: the residual stream, in the float weights' dtype
    masks = 2 * h * DROPOUT_MASK_BYTES
    scores = f.heads * s * (2 * e + DROPOUT_MASK_BYTES) if attn == "eager" else 0  # softmax, dropout, mask
    return ec * linear_inputs + e * other + rb * residual + masks + scores


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


def _precision(requested: str, device: Device) -> str:
    """phases.resolve_precision for a given device (a GPU without bf16 uses fp16: the same size)."""
    if device.kind == "cuda":
        return "bf16" if requested == "auto" else requested
    return "fp32" if requested in ("auto", "fp16") else requested


def _compute_bytes(method: MethodConfig, device: Device) -> int:
    if method.compute_dtype == "auto":
        return 2 if device.kind == "cuda" else 4
    return 4 if method.compute_dtype == "float32" else 2


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


def _notes(f: _ModelFacts, config: RunConfig, device: Device) -> list[str]:
    from studio.models import _check_max_length

    method, train, s = config.method, config.train, config.data.max_length
    precision = _precision(train.precision, device)
    if precision != "fp32":
        dtype = f"{precision} autocast"
    else:
        dtype = "the model's 16-bit dtype" if f.weight_bytes == 2 and not method.quantized else "fp32"
    notes = [f"activations for batch {train.batch_size} x {s} tokens in {dtype} ({s} is an upper bound: "
             "batches are padded to their longest text)"]  # fmt: skip
    if precision != train.precision and train.precision != "auto":
        notes.append(f"train.precision {train.precision} runs as {precision} on the {device.kind.upper()}")
    attn = config.model.attn_implementation or f.attn_implementation
    notes.append(f"{attn} attention: the {s} x {s} attention scores are {'' if attn == 'eager' else 'not '}stored")
    if train.gradient_checkpointing:
        notes.append("gradient checkpointing: each layer keeps only its input; one layer at a time is recomputed")
    if method.quantized:
        q = sum(i * o for i, o in f.quantized) / 1e6
        notes.append(f"{q:.1f}M weights in {len(f.quantized)} linear layers stored in {method.bits} bit; "
                     "embeddings, norms and head in fp32")  # fmt: skip
    elif f.weight_bytes == 2:
        notes.append("weights stay in the checkpoint's 16-bit dtype (transformers loads dtype='auto')")
    elif precision != "fp32":
        notes.append("activations include the 16-bit copies autocast makes of the fp32 weights for the backward pass")
    if train.optimizer.startswith("paged_"):
        notes.append("paged optimizer: its states can spill to CPU RAM when the GPU is full; counted here")
    if device.count > 1:
        notes.append(f"{device.count} GPUs: each holds all of this (data parallel); shown for GPU 0")
    try:
        _check_max_length(f.hf_config, s)
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


@dataclass(frozen=True)
class _AdapterFacts:
    lora: bool
    per_rank: int
    """LoRA: parameters at r = 1 (they scale with r); IA3: all of its scaling vectors."""
    head: int
    """The trainable copy of the head (peft's modules_to_save)."""
    base_and_head: int
    """What peft counts besides the adapters: the base, its head and the head's trainable copy."""
    inputs: int
    """Elements per token of the adapters' own activations (LoRA: its layers' inputs; IA3: scaled tensors)."""


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
    return _ModelFacts(
        hf_config=hf_config,
        model=model,
        family=family,
        new_modules=_new_modules(model, source),
        num_labels=num_labels,
        total_params=sum(p.numel() for p in model.parameters()),
        weight_bytes=2 if dtype in (torch.float16, torch.bfloat16) else 4,
        matmul_params=sum(m.weight.numel() for m in linears.values()),
        quantized=_quantized_layers(model, family, linears),
        hidden=hidden,
        layers=getattr(c, "num_hidden_layers", None) or 1,
        heads=getattr(c, "num_attention_heads", None) or 1,
        ffn_width=ffn,
        gated=any(n.endswith("gate_proj") for n in linears),
        attn_implementation=getattr(model.config, "_attn_implementation", None) or "eager",
    )


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
    """What `_load_classifier` reports as missing: from a local folder's safetensors keys, else (Hub) the
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

    from studio.models import quantization_config

    skip = quantization_config(MethodConfig(name="qlora"), family).llm_int8_skip_modules
    skip = HfQuantizer.get_modules_to_not_convert(model, skip, model._keep_in_fp32_modules)
    out = []
    for name, m in linears.items():
        if (type(m) is torch.nn.Linear or isinstance(m, Conv1D)) and should_convert_module(name, skip):
            out.append(tuple(m.weight.shape) if isinstance(m, Conv1D) else (m.in_features, m.out_features))
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _adapter_facts(f: _ModelFacts, adapter: str, placement: str, targets: tuple[str, ...] | None) -> _AdapterFacts:
    """Place the adapters with the studio's own code (peft) on a meta copy at rank 1, and count."""
    from studio.models import _wrap_with_adapter

    method = MethodConfig(name=adapter, r=1, placement=placement, target_modules=list(targets) if targets else None)
    peft_model = _wrap_with_adapter(copy.deepcopy(f.model), method, f.family, list(f.new_modules))
    adapters = head = 0
    for name, p in peft_model.named_parameters():
        if p.requires_grad and ("lora_" in name or "ia3_" in name):
            adapters += p.numel()
        elif p.requires_grad:
            head += p.numel()
    lora = adapter == "lora"
    inputs = sum(m.in_features for m in peft_model.modules() if hasattr(m, "lora_A")) if lora else adapters
    _, total = peft_model.get_nb_trainable_parameters()
    return _AdapterFacts(lora=lora, per_rank=adapters, head=head, base_and_head=int(total) - adapters, inputs=inputs)
