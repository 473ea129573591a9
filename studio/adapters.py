"""Where the adapters go and how peft wraps a model with them: placement, peft configs, the wrap itself.

- `head_modules`: what trains besides the adapters (the family's head and every module the checkpoint
  lacked), saved whole with the adapter (peft's `modules_to_save`).
- `explicit_targets`: the modules of a `custom` or `all-linear` placement; the named placements (qv,
  attention, attention+ffn) come from the family table (studio/architectures.py).
- `peft_config` and `wrap`: the peft config of a `MethodConfig` for one model, and the wrapped model.
- `ADAPTER_KINDS`: one `AdapterKind` per peft adapter type (`Method.adapter` in studio/methods.py): its
  config builder and how its parameters and wrapped modules are named.

Training (`models.build_model`), the memory estimate (which places the adapters on a meta copy of the model to
count them) and export's model card (which saved tensors are adapters) all go through this module, so the
adapters counted are the adapters trained. peft and torch are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from studio.architectures import Family
    from studio.config import MethodConfig


# ---- placement -----------------------------------------------------------------------------------------
def head_modules(model: nn.Module, family: Family | None, new_modules: list[str]) -> list[str]:
    """What trains besides the adapters: the family's head plus anything the checkpoint lacked."""
    names = list(family.head) if family else []
    for full in new_modules:
        if not any(full == h or full.endswith("." + h) or full.startswith(h + ".") for h in names):
            names.append(full.split(".")[0] if full.split(".")[0] in dict(model.named_children()) else full)
    return list(dict.fromkeys(names))


def linear_module_names(model: nn.Module, exclude: list[str]) -> list[str]:
    """Every linear layer outside `exclude` by full name (peft's own 'all-linear' would also wrap the
    classifier); bitsandbytes' 4/8-bit layers count as linear when bitsandbytes is installed."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    linear_types: tuple[type, ...] = (nn.Linear, Conv1D)
    try:
        import bitsandbytes as bnb

        linear_types += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:
        pass
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, linear_types):
            continue
        parts = name.split(".")
        if any(h in parts or name.startswith(h) for h in exclude):
            continue
        out.append(name)
    return out


def explicit_targets(
    model: nn.Module, method: MethodConfig, family: Family | None, heads: list[str]
) -> list[str] | None:
    """The modules a `custom` or `all-linear` placement wraps (all-linear: every linear layer outside the head
    and the layers kept out of quantization); None for a placement the family table names."""
    placement = method.resolved_placement()
    if placement == "custom":
        return list(method.target_modules or [])
    if placement == "all-linear":
        return linear_module_names(model, heads + (list(family.skip_quantization) if family else []))
    return None


# ---- peft configs, one builder per adapter type --------------------------------------------------------
def _named_family(family: Family | None) -> Family:
    if family is None:  # models.check_family refuses named placements on unknown architectures first
        raise ModelError("method.placement: this architecture has no named placements; use placement custom")
    return family


def _lora_config(method: MethodConfig, family: Family | None, targets: list[str] | None, heads: list[str]) -> Any:
    from peft import LoraConfig, TaskType

    if targets is None:
        targets = _named_family(family).lora_targets(method.resolved_placement())
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=targets,
        modules_to_save=list(heads),  # peft mutates modules_to_save: always hand it a fresh list
    )


def _ia3_config(method: MethodConfig, family: Family | None, targets: list[str] | None, heads: list[str]) -> Any:
    from peft import IA3Config, TaskType

    feedforward: list[str] | None = None
    if targets is None:
        targets, feedforward = _named_family(family).ia3_modules(method.resolved_placement())
    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=targets,
        feedforward_modules=feedforward if feedforward is not None else [],
        modules_to_save=list(heads),
    )


@dataclass(frozen=True)
class AdapterKind:
    """One peft adapter type as the studio uses it."""

    name: str
    """peft's name for it (`Method.adapter`)."""
    param_marker: str
    """Every parameter it adds has this in its name (how a saved adapter's own tensors are told from the head)."""
    module_marker: str
    """An attribute of every module it wraps."""
    keeps_inputs: bool
    """For the backward pass it keeps each wrapped layer's input (LoRA: the input of its A matrix); otherwise
    the tensors it scales (IA3). The memory estimate counts its activations by this."""
    config: Callable[[MethodConfig, Family | None, list[str] | None, list[str]], Any]
    """(method, family, explicit targets or None, head modules) -> its peft config."""


ADAPTER_KINDS: dict[str, AdapterKind] = {
    "lora": AdapterKind("lora", "lora_", "lora_A", keeps_inputs=True, config=_lora_config),
    "ia3": AdapterKind("ia3", "ia3_", "ia3_l", keeps_inputs=False, config=_ia3_config),
}


def is_adapter_weight(name: str) -> bool:
    """Whether a parameter (or saved tensor) name belongs to an adapter rather than the base or the head."""
    return any(kind.param_marker in name for kind in ADAPTER_KINDS.values())


# ---- the wrap ------------------------------------------------------------------------------------------
def peft_config(model: nn.Module, method: MethodConfig, family: Family | None, new_modules: list[str]) -> Any:
    """The peft config that places `method`'s adapters on `model` (and trains its head and new modules); with
    `method.freeze_layers` N, only on layers N and up (`_above`), so the backward pass stops there as it does for
    a full fine-tune with frozen lower layers."""
    if method.adapter is None:
        raise ValueError(f"method {method.name} has no adapters to place")
    heads = head_modules(model, family, new_modules)
    config = ADAPTER_KINDS[method.adapter].config(method, family, explicit_targets(model, method, family, heads), heads)
    if method.adapter == "lora" and _has_conv1d(model):
        config.fan_in_fan_out = True  # GPT-2's Conv1D stores its weight transposed (peft would warn and set it)
    if method.freeze_layers:
        _above(config, model, method.freeze_layers)
    return config


def _above(config: Any, model: nn.Module, frozen: int) -> None:
    """Narrow `config`'s targets to modules of layer `frozen` and up, as lists of full names. (peft's
    `layers_to_transform` does this only for list targets and ignores it for the regex ones this module builds.)"""
    import re

    stack, _ = layer_stack(model, model.config, frozen, "this model", most=-1)
    below = re.compile(rf"{re.escape(stack)}\.(\d+)\.")

    def kept(targets: Any) -> Any:
        if targets is None:
            return None

        def hit(name: str) -> bool:
            if isinstance(targets, str):
                return re.fullmatch(targets, name) is not None
            return any(name == t or name.endswith(f".{t}") for t in targets)

        names = [n for n, _ in model.named_modules() if n and hit(n)]
        return [n for n in names if not (m := below.match(n)) or int(m.group(1)) >= frozen]

    config.target_modules = kept(config.target_modules)
    if getattr(config, "feedforward_modules", None) is not None:  # IA3's: a subset of the targets
        config.feedforward_modules = kept(config.feedforward_modules)


def layer_stack(model: nn.Module, hf_config: Any, frozen: int, name: str, most: int | None) -> tuple[str, int]:
    """(name of the model's stack of transformer layers, its length) for `method.freeze_layers` = `frozen`.
    `most`: how many layers may be frozen relative to the count (None: all of them, -1: all but one, so that an
    adapter has a layer to go in).

    Raises:
        ModelError: the model has fewer layers than that, or no stack of them can be found.
    """
    from torch import nn

    count = getattr(hf_config, "num_hidden_layers", None) or getattr(hf_config, "n_layer", None) or 0
    limit = count if most is None else count + most
    if frozen > limit:
        trains = "trains only the head" if most is None else "leaves one layer for the adapters"
        raise ModelError(
            f"method.freeze_layers: {name} has {count} transformer layers, so {frozen} cannot be frozen; "
            f"use at most {max(limit, 0)} ({max(limit, 0)} {trains})"
        )
    stack = next((n for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == count), None)
    if stack is None:
        raise ModelError(f"method.freeze_layers: cannot find the stack of {count} layers in {name}; set it to 0")
    return stack, count


def _has_conv1d(model: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for m in model.modules())


def wrap(model: nn.Module, method: MethodConfig, family: Family | None, new_modules: list[str]) -> Any:
    """`model` wrapped with `method`'s adapters (a peft model in which only the adapters and the head train).

    Raises:
        ModelError: peft cannot place the adapters (e.g. a custom target that matches no module).
    """
    from peft import get_peft_model

    config = peft_config(model, method, family, new_modules)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise ModelError(f"method.placement: could not place {method.adapter} adapters: {e}") from None
