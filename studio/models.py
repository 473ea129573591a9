"""Load a base model for sequence classification and prepare it for the chosen method.

`build_model` is the one entry point training uses: it resolves the model name (alias, local folder or Hub
id), loads the tokenizer and the model (4/8-bit through bitsandbytes for QLoRA), applies the family's pad
rules and wraps the model with peft (LoRA or IA3, placed by studio/adapters.py) so that only the adapters and
the head train. `load_for_inference` rebuilds the same model from a finished run's folder.

The steps others reuse are public: `check_family` and `check_max_length` (the memory estimate refuses and
warns as training would), `load_classifier` (export merges into the same base).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio import adapters, gguf, precision
from studio.architectures import Family, family_for, model_choice, names_a_folder, supported_model_types
from studio.config import MethodConfig, ModelConfig, RunConfig
from studio.errors import ModelError

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    model: nn.Module
    tokenizer: Any
    family: Family | None
    source: str
    """What was loaded: a local folder or a Hub id."""
    trainable_params: int
    total_params: int
    notes: list[str] = field(default_factory=list)


# ---- names and sources ---------------------------------------------------------------------------------
def resolve_source(cfg: ModelConfig) -> str:
    """Alias -> folder or Hub id; a local folder must hold a config.json; a GGUF file becomes a cached folder."""
    choice = model_choice(cfg.name)
    if choice is not None:
        if choice.source.startswith("pypi:"):
            return _pypi_model_path(choice.source.removeprefix("pypi:"), choice.alias)
        if choice.source.startswith("gguf:"):
            return str(gguf.exported_folder(gguf.package_file(choice.source.removeprefix("gguf:"), choice.alias)))
        return choice.source
    path = Path(cfg.name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return str(gguf.exported_folder(path))
        if not path.is_dir():
            raise ModelError(
                f"model.name: {path} is a file; point it at a model folder (with config.json) or a .gguf file"
            )
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model.name: the folder {path} has no config.json; point it at a folder saved with "
                "save_pretrained, or use a Hub id"
            )
        return str(path)
    if names_a_folder(cfg.name):
        raise ModelError(f"model.name: folder not found: {cfg.name}")
    return cfg.name


def _pypi_model_path(package: str, alias: str) -> str:
    try:
        module = importlib.import_module(package)
    except ImportError:
        pip_name = package.replace("_", "-")
        raise ModelError(f"model.name: '{alias}' needs the package {pip_name}: pip install {pip_name}") from None
    return str(module.get_model_path())


def _hub_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    return {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}


def load_config(cfg: ModelConfig, source: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, **_hub_kwargs(cfg))
    except (OSError, ValueError) as e:
        where = "folder" if Path(source).exists() else "Hugging Face Hub id"
        reason = str(e).strip().splitlines()[0][:300]
        raise ModelError(f"model.name: could not load the {where} '{cfg.name}': {reason}") from None


def load_tokenizer(cfg: ModelConfig, source: str, family: Family | None) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source, **_hub_kwargs(cfg))
    except (OSError, ValueError, TypeError) as e:
        reason = str(e).strip().splitlines()[0][:300]
        raise ModelError(f"model.name: could not load a tokenizer for '{cfg.name}': {reason}") from None
    if tok.pad_token is None:
        # GPT-2, Qwen2 and Llama ship no pad token; batching needs one. The head pools the last token that
        # is not pad_token_id, so pad on the right (left padding would shift what is pooled).
        if tok.eos_token is None:
            raise ModelError(f"model.name: the tokenizer of '{cfg.name}' has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


# ---- bitsandbytes --------------------------------------------------------------------------------------
def require_bitsandbytes(field_name: str, what: str) -> None:
    """bitsandbytes is optional: imported only for QLoRA and 8-bit optimizers, with a clear error."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(
            f"{field_name}: {what} needs bitsandbytes, which is not installed: pip install 'bitsandbytes>=0.50' "
            "(or choose method lora / optimizer adamw_torch)"
        )
    try:
        importlib.import_module("bitsandbytes")
    except Exception as e:  # a broken native library raises all sorts of errors
        raise ModelError(f"{field_name}: {what} needs bitsandbytes, which failed to load here: {e}") from None


def keep_4bit_layout(model: nn.Module) -> int:
    """Keep every bitsandbytes 4-bit layer in the layout it trains in; returns how many layers were changed.

    On CPUs with AVX512-BF16 (AMD Zen 4, recent Xeons), bitsandbytes >= 0.49 repacks a `Linear4bit`'s weight
    for a faster CPU kernel the first time the layer runs in eval mode without grad, and never packs it back.
    A studio run evaluates and then trains again, so the repack breaks it twice: layers narrower than the
    quant block fail ("shape '[96, 0]' is invalid"), and the next training forward writes in place into a
    view of the repacked weight ("a view of a leaf Variable that requires grad is being used in an in-place
    operation"). The layer's own switch turns the repack off; nothing else changes (the same 4-bit kernel runs
    in training and in evaluation, so numbers match on every CPU).
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    changed = 0
    for module in model.modules():
        if isinstance(module, Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def quantization_skips(family: Family | None) -> list[str] | None:
    """The modules a QLoRA load keeps out of 4/8 bit (bitsandbytes' llm_int8_skip_modules): the family's."""
    return list(family.skip_quantization) if family else None


def quantization_config(method: MethodConfig, family: Family | None, compute_dtype: torch.dtype) -> Any:
    """transformers' bitsandbytes config for `method`'s quantized base; `compute_dtype` is what its 4-bit
    layers compute in (`precision.resolve(...).quant_compute_dtype()`)."""
    from transformers import BitsAndBytesConfig

    skip = quantization_skips(family)
    if method.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.quant_type,
        bnb_4bit_use_double_quant=method.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip,
    )


# ---- the model -----------------------------------------------------------------------------------------
def _prepare_quantized(model: Any, config: RunConfig, notes: list[str]) -> Any:
    """peft's preparation of a quantized base for training (fp32 norms and head, checkpointing as configured:
    `RunConfig.reentrant_checkpointing`, which an 8-bit base always takes; a note says so)."""
    from peft import prepare_model_for_kbit_training

    checkpointing, reentrant = config.train.gradient_checkpointing, config.reentrant_checkpointing
    if checkpointing and reentrant and not config.train.checkpointing_reentrant:
        notes.append("gradient checkpointing runs PyTorch's reentrant path over the 8-bit base: its layers keep "
                     "their inputs out of the other path's reach, which would save no memory there")  # fmt: skip
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": reentrant})  # fmt: skip


def build_model(
    config: RunConfig, label_names: list[str], task: str = "single_label", priors: list[float] | None = None
) -> ModelBundle:
    """Load tokenizer + model for `config` with a head of len(label_names) classes (`task` multi_label: a
    sigmoid per label), ready to train. `priors`: each label's share of training rows, which a multi-label head's
    output bias starts at (`init_output_bias`)."""
    method, mcfg = config.method, config.model
    source = resolve_source(mcfg)
    hf_config = load_config(mcfg, source)
    family = family_for(hf_config.model_type)
    check_family(family, hf_config.model_type, method)
    check_max_length(hf_config, config.data.max_length)
    if method.quantized:
        require_bitsandbytes("method.name", f"{method.spec.label} ({method.bits}-bit)")
    tokenizer = load_tokenizer(mcfg, source, family)
    model, new_modules = load_classifier(config, source, label_names, tokenizer, family, task=task)
    _check_vocab(model, tokenizer, mcfg.name)
    notes: list[str] = []
    if priors is not None and init_output_bias(model, new_modules, priors):
        notes.append("the head's output bias starts at each label's log-odds in train (what predicting the label "
                     "priors scores), so training moves the features from the first step")  # fmt: skip
    if method.quantized:
        model = _prepare_quantized(model, config, notes)
    if method.adapter is not None:
        model = adapters.wrap(model, method, family, new_modules)
        _upcast_trainable(model)
        trainable, total = model.get_nb_trainable_parameters()
        if method.quantized and family is not None and family.name == "deberta-v2":
            _query_in_autocast_dtype(model)  # one architecture's quirk under 4-bit layers: see its docstring
    else:
        for p in frozen_lower(model, hf_config, method.freeze_layers, new_modules, mcfg.name):
            p.requires_grad_(False)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    if config.train.half_activations:
        _half_stream(model, precision.resolve(config.train.precision, precision.Compute.here()).autocast_dtype())
    return ModelBundle(model, tokenizer, family, source, int(trainable), int(total), notes)


def frozen_lower(model: nn.Module, hf_config: Any, layers: int, keep: list[str] | tuple[str, ...], name: str) -> list:
    """The parameters `method.freeze_layers` keeps frozen in a full fine-tune: the embeddings and the lowest
    `layers` transformer layers, never the new head (`keep`). With nothing below them needing a gradient,
    autograd records no backward pass for those layers at all, which is where the time goes (most "partial
    fine-tuning" recipes freeze from the bottom, e.g. Howard & Ruder 2018). Also used on the meta-device model
    of the memory estimate, so both count the same parameters.

    Raises:
        ModelError: more layers than the model has.
    """
    if not layers:
        return []
    stack, _ = adapters.layer_stack(model, hf_config, layers, name, most=None)
    lower = tuple(f"{stack}.{i}." for i in range(layers))
    embeddings = {id(p) for p in model.get_input_embeddings().parameters()}

    def frozen(n: str, p: nn.Parameter) -> bool:
        if any(n == m or n.startswith(f"{m}.") for m in keep):
            return False
        return n.startswith(lower) or id(p) in embeddings or "embed" in n or n.endswith("wpe.weight")

    return [p for n, p in model.named_parameters() if frozen(n, p)]


def init_output_bias(model: nn.Module, new_modules: list[str], priors: list[float]) -> bool:
    """Start a fresh multi-label head's output bias at log(p / (1 - p)) for each label's training share p: the
    "prior" initialisation of Lin et al. 2017 (focal loss, section 4.1). With 28 rare labels a zero bias makes the
    first few hundred steps learn only the priors (the loss falls from ln 2 to the priors' entropy while the
    features barely move; MiniLM on GoEmotions sat there for ~1,000 steps). True when a head with a bias took it;
    heads without a bias (decoders' `score`) are left as they are."""
    k = len(priors)
    for name, module in model.named_modules():
        fresh = any(name == m or name.startswith(f"{m}.") for m in new_modules)
        if fresh and isinstance(module, nn.Linear) and module.out_features == k and module.bias is not None:
            p = torch.tensor(priors, dtype=torch.float64).clamp(1e-4, 1 - 1e-4)
            with torch.no_grad():
                module.bias.copy_(torch.log(p / (1 - p)).to(module.bias.dtype))
            return True
    return False


def _upcast_trainable(model: nn.Module) -> None:
    """Keep every trainable parameter in fp32. peft upcasts its adapter weights, but the head it copies for
    `modules_to_save` keeps the base's dtype: a bf16 head would round its updates away (see load_classifier)."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def _to_autocast_dtype(_module: nn.Module, _inputs: Any, out: Any) -> Any:
    """Forward hook: a tensor output in autocast's dtype while autocast is on (else unchanged)."""
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        kind = out.device.type
        if torch.is_autocast_enabled(kind) and out.dtype != torch.get_autocast_dtype(kind):
            return out.to(torch.get_autocast_dtype(kind))
    return out


def _half_stream(model: nn.Module, dtype: torch.dtype | None) -> None:
    """`train.half_activations`: the hidden states between layers, and the frozen float weights, in autocast's
    16-bit `dtype` rather than fp32 (None: the run has no autocast, so only the hooks, which then do nothing).

    Under autocast every norm computes in fp32 and returns fp32, and under QLoRA prepare_model_for_kbit_training
    makes the embeddings fp32 and the 4-bit layers return their input's dtype, so the whole residual stream,
    and every tensor checkpointing or autograd keeps from it, is fp32 although each matmul runs in 16 bit.
    Casting each norm's and the input embeddings' output to the autocast dtype makes it 16-bit, as in a model
    loaded in bf16: the norms still compute in fp32 inside, the matmuls see what they would have cast to
    anyway; only the residual additions round to 16 bit. No hook library does this, so a hook per module.

    The frozen float weights (embeddings, norms, biases; under LoRA/IA3 every base weight) are stored in `dtype`
    too: autocast would cast them to it in every forward anyway (a copy per weight per pass), and frozen weights
    take no updates to round away. What trains stays fp32 (full fine-tuning's master weights, adapters, head).
    """
    if dtype is not None:
        for p in model.parameters():
            if not p.requires_grad and p.dtype == torch.float32:
                p.data = p.data.to(dtype)
    hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None)
    for module in model.modules():
        kind = type(module).__name__.lower()
        weight = getattr(module, "weight", None)
        if ("layernorm" in kind or "rmsnorm" in kind or isinstance(module, nn.LayerNorm)) and (
            weight is None or hidden is None or weight.shape[-1] == hidden
        ):
            module.register_forward_hook(_to_autocast_dtype)
    embeddings = model.get_input_embeddings()
    if embeddings is not None:
        embeddings.register_forward_hook(_to_autocast_dtype)


def _query_in_autocast_dtype(model: nn.Module) -> None:
    """Give DeBERTa's attention its query in the autocast dtype.

    DeBERTa masks its scores with `finfo(query.dtype).min`. Under QLoRA the 4-bit layers return their input's
    dtype (fp32: prepare_model_for_kbit_training upcasts the stream) while autocast makes the scores bf16/fp16,
    and the fp32 minimum overflows them: "value cannot be converted to type c10::BFloat16 without overflow"
    (found by benchmarks/memory_validation.py on an H100). The query's next op is a bmm that autocast casts to
    that dtype anyway, so casting it one op earlier changes no number. Outside autocast this does nothing.
    """

    for name, module in model.named_modules():
        if name.endswith("attention.self.query_proj"):
            module.register_forward_hook(_to_autocast_dtype)


def check_family(family: Family | None, model_type: str, method: MethodConfig) -> None:
    """Refuse a method that needs the family table on an architecture outside it (`family` None).

    Full fine-tuning needs no table, LoRA / IA3 only for named placements (custom names its own modules);
    a quantized base always does: the table says which modules stay out of 4/8 bit (the head must train).

    Raises:
        ModelError: naming the supported architectures and what would work instead.
    """
    if family is not None or method.spec.trains_every_weight:
        return
    if method.placement == "custom" and not method.quantized:
        return
    raise ModelError(
        f"model.name: architecture '{model_type}' is not in the studio's registry (supported: "
        f"{', '.join(supported_model_types())}); use method full, or LoRA/IA3 with placement custom and "
        "method.target_modules"
    )


def check_max_length(hf_config: Any, max_length: int) -> None:
    """Refuse a `data.max_length` beyond the model's absolute position embeddings (relative and rotary
    positions have no such limit).

    Raises:
        ModelError: naming the model's usable limit.
    """
    limit = getattr(hf_config, "max_position_embeddings", None)
    relative = getattr(hf_config, "relative_attention", False)  # DeBERTa: positions are relative
    if getattr(hf_config, "position_embedding_type", "absolute") != "absolute" or not limit or relative:
        return
    # RoBERTa-style models reserve padding_idx + 1 positions.
    roberta_like = hf_config.model_type in ("roberta", "xlm-roberta")
    usable = limit - ((hf_config.pad_token_id or 0) + 1 if roberta_like else 0)
    if max_length > usable:
        raise ModelError(f"data.max_length: {max_length} is longer than this model's limit of {usable} tokens")


def _check_vocab(model: nn.Module, tokenizer: Any, name: str) -> None:
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ModelError(
            f"model.name: the tokenizer of '{name}' has {len(tokenizer)} tokens but the model's embedding only "
            f"{vocab}; they do not belong together"
        )


def load_classifier(
    config: RunConfig,
    source: str,
    label_names: list[str],
    tokenizer: Any,
    family: Family | None,
    quantize: bool | None = None,
    task: str = "single_label",
) -> tuple[nn.Module, list[str]]:
    """`config`'s base model from `source` for classification into `label_names`, with a fresh head.

    `task` multi_label records ``problem_type: multi_label_classification`` in the model's config: its saved
    config then tells any transformers user (the pipeline, an export) to read a sigmoid per label.

    The base is quantized as the method says (`quantize` overrides: export merges into an unquantized base),
    on this process's device, and stored as `Method.base_weights` says: a 16-bit checkpoint whose weights
    train becomes fp32.

    Returns:
        The model and the modules the checkpoint did not have (they start random and train with the head).

    Raises:
        ModelError: the checkpoint cannot be loaded for classification.
    """
    from transformers import AutoModelForSequenceClassification

    mcfg, method = config.model, config.method
    quantize = method.quantized if quantize is None else quantize
    kwargs: dict[str, Any] = dict(
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        use_safetensors=_prefers_safetensors(source),
        output_loading_info=True,
        **_hub_kwargs(mcfg),
    )
    if family is not None and family.decoder:
        # Decoder heads pool the last token that is not pad_token_id; their configs often have none.
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    if task == "multi_label":
        kwargs["problem_type"] = "multi_label_classification"
    if mcfg.attn_implementation:
        kwargs["attn_implementation"] = mcfg.attn_implementation
    if quantize:
        numerics = precision.resolve(config.train.precision, precision.Compute.here(), method)
        kwargs["quantization_config"] = quantization_config(method, family, numerics.quant_compute_dtype())
        kwargs["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
        kwargs["dtype"] = torch.float32
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:300]
        raise ModelError(f"model.name: could not load '{mcfg.name}' for classification: {reason}") from None
    if quantize:
        keep_4bit_layout(model)
    if not quantize and _upcast_weights(model.dtype, config):
        # transformers loads a checkpoint in its stored dtype. Weights stored in fp16 cannot be trained as they
        # are: AdamW's updates and eps underflow and the loss turns NaN within steps (seen with MiniLM saved in
        # fp16 on an H100). bf16 keeps fp32's range but has 8 bits of mantissa: an update of lr 2e-5 x a unit
        # step is below half its spacing (2^-8 of the weight), so full fine-tuning would round most updates to
        # nothing. Train these as fp32 master weights; autocast still computes in 16 bit. Frozen bf16 weights
        # under adapters stay bf16 (what trains is upcast in build_model).
        model = model.float()
    new_modules = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", ())})
    return model, new_modules


def _upcast_weights(dtype: torch.dtype, config: RunConfig) -> bool:
    """Whether a checkpoint stored in `dtype` is loaded as fp32 (see load_classifier): fp16 always; bf16 when its
    weights train, or when the run has no 16-bit autocast (train.precision fp32, or a CPU without bf16), where a
    bf16 base would hand bf16 hidden states to the fp32 head and adapters ("expected mat1 and mat2 to have the
    same dtype": Llama-3.2-1B LoRA in fp32 on an H200, benchmarks/results/memory_heldout)."""
    method = config.method
    if dtype == torch.float16:
        return True
    fp32_run = precision.resolve(config.train.precision, precision.Compute.here(), method).autocast_dtype() is None
    return dtype == torch.bfloat16 and (method.spec.base_weights == "fp32" or fp32_run)


def _prefers_safetensors(source: str) -> bool | None:
    """Local folders must hold safetensors (pickled .bin files can run code); Hub ids may fall back."""
    path = Path(source)
    if path.is_dir():
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.safetensors.index.json")):
            raise ModelError(f"model.name: {path} has no .safetensors weights; the studio loads only safetensors")
        return True
    return None


# ---- inference -----------------------------------------------------------------------------------------
def load_for_inference(run_dir: Path, config: RunConfig, label_names: list[str]) -> tuple[nn.Module, Any]:
    """Rebuild a finished run's model from its folder (safetensors only), in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    tokenizer.padding_side = "right"
    if (run_dir / "model").is_dir():
        model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model", use_safetensors=True)
    else:
        from peft import PeftModel

        adapter_dir = run_dir / "adapter"
        if not (adapter_dir / "adapter_model.safetensors").is_file():
            raise ModelError(f"run folder {run_dir} has no saved model (adapter/adapter_model.safetensors)")
        source = resolve_source(config.model)
        hf_config = load_config(config.model, source)
        family = family_for(hf_config.model_type)
        if config.method.quantized:
            require_bitsandbytes("method.name", f"this {config.method.spec.label} run")
        base, _ = load_classifier(config, source, label_names, tokenizer, family, task=read_task(run_dir))
        model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False)
    model.eval()
    return model, tokenizer


def read_label_map(run_dir: Path) -> list[str]:
    data = json.loads((run_dir / "label_map.json").read_text(encoding="utf-8"))
    return [data["id2label"][str(i)] for i in range(len(data["id2label"]))]


def read_task(run_dir: Path) -> str:
    """single_label | multi_label, from the run's label_map.json (runs from before multi-label: single_label)."""
    data = json.loads((Path(run_dir) / "label_map.json").read_text(encoding="utf-8"))
    return "multi_label" if data.get("task") == "multi_label" else "single_label"
