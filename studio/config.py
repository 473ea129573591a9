"""The one config tree of a run: data, model, method, training.

Every entry point builds a `RunConfig`: the CLI from a preset YAML plus ``--set`` overrides, the UI from its
form, the tests in code. Values are validated when the object is built (pydantic dataclasses: types,
ranges, allowed values, unknown keys), cross-field rules live in ``__post_init__``, and every problem is
raised as a `ConfigError` naming the dotted field. Presets in ``presets/`` are saved RunConfigs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from studio.errors import ConfigError
from studio.methods import METHODS, AdapterName, Method, MethodName

CONFIG_VERSION = 6
"""Bumped when a preset written by this version would not mean the same to an older one.
2: `train.speed` (default fast); a version-1 config without it means exactly what it says (as_set).
3: `data.task` (default auto: rows with several labels make a multi-label task); a config of format 1 or 2
without it was single-label (rows with several labels dropped unless `multi_label: first`), and reads so.
4: data intake: `data.validation_source` / `test_source` (separate files), `header`, `delimiter`, `label_file`,
`merge_label_case`, `drop_duplicates`; an older config without them means what it meant.
5: `method.freeze_layers` (default 0: every layer trains, as before).
6: `train.checkpointing_reentrant` (default false: the non-reentrant checkpointing the studio always used)."""

_STRICT = ConfigDict(extra="forbid", validate_assignment=True)


def _f(default: Any = dataclasses.MISSING, help: str = "", **constraints: Any) -> Any:
    """A field with its help text (shown by the CLI and the UI) and pydantic constraints."""
    if callable(default) and isinstance(default, type):
        return Field(default_factory=default, description=help, **constraints)
    return Field(default=default, description=help, **constraints)


@dataclass(config=_STRICT)
class BalanceConfig:
    """A balanced subset: `num_labels` classes, `num_samples` rows in total, num_samples/num_labels each.

    The GoEmotions study's "2/4/8/16 labels x 800/1600/2400 samples" are totals (its 800-sample runs have
    80 validation rows = 10%), so `num_samples` is the total before the train/validation/test split.
    """

    num_labels: int = _f(2, "How many classes to keep.", ge=2)
    num_samples: int = _f(800, "Rows in total (all splits), drawn equally from each kept class.", ge=2)
    labels: Literal["most_frequent"] | list[str] = _f(
        "most_frequent", "Which classes: the most frequent ones, or a list of label names."
    )

    def __post_init__(self) -> None:
        if self.num_samples < self.num_labels:
            raise ConfigError("data.balance.num_samples", f"must be at least num_labels ({self.num_labels})")
        if isinstance(self.labels, list) and len(set(self.labels)) != len(self.labels):
            raise ConfigError("data.balance.labels", f"lists a label twice: {self.labels}")
        if isinstance(self.labels, list) and len(self.labels) != self.num_labels:
            raise ConfigError(
                "data.balance.labels",
                f"lists {len(self.labels)} labels but num_labels is {self.num_labels}; make them agree",
            )

    @property
    def per_label(self) -> int:
        return self.num_samples // self.num_labels


@dataclass(config=_STRICT)
class SplitSource:
    """A file, folder or Hub dataset that gives one split (validation or test) beside `data.source`.

    In a preset, a plain string is short for ``{source: ...}``.
    """

    source: str = _f(..., "A local CSV/TSV/JSONL/JSON/Parquet/TXT file or folder, or a Hugging Face Hub dataset id.",
                     min_length=1)  # fmt: skip
    split: str | None = _f(
        None, "Which split of a source with several (a folder of split files, a Hub dataset): empty = the one "
        "named like the role (validation/dev, test), or the only one."
    )  # fmt: skip
    hub_config: str | None = _f(None, "Config (subset) name of a Hub dataset.")
    text_column: str | None = _f(None, "Its text column, when named differently from data.text_column.")
    label_column: str | None = _f(None, "Its label column, when named differently from data.label_column.")
    label_file: str | None = _f(None, "A file with one label per line, parallel to a text-per-line source.")


def _split_source(value: Any) -> Any:
    return {"source": value} if isinstance(value, str) else value


@dataclass(config=_STRICT)
class DataConfig:
    """Where the texts and labels come from and how they are split and tokenized."""

    source: str = _f(
        "imdb-sample",
        "A shipped sample (imdb-sample, goemotions), a local CSV/TSV/JSONL/Parquet file or folder, "
        "or a Hugging Face Hub dataset id.",
        min_length=1,
    )
    hub_config: str | None = _f(None, "Config (subset) name of a Hub dataset, e.g. 'simplified'.")
    text_column: str | None = _f(None, "Column holding the text; empty = detect (text, review, sentence, ...).")
    label_column: str | None = _f(None, "Column holding the label; empty = detect (label, labels, sentiment, ...).")
    label_names: list[str] | None = _f(
        None, "Names for integer labels 0..n-1 when the data has none; for string labels, their id order."
    )
    label_separator: str | None = _f(
        None, "Labels given as one string with several values (e.g. '3,27') are split on this."
    )
    task: Literal["auto", "single_label", "multi_label"] = _f(
        "auto",
        "single_label: one class per text (softmax); multi_label: any number of labels per text (a sigmoid per "
        "label, a tuned threshold each); auto: multi-label when rows carry several labels (a list, or a string "
        "split on label_separator) and multi_label is not set, else single-label.",
    )
    multi_label: Literal["drop", "first"] | None = _f(
        None,
        "Make data with several labels per row single-label: drop such rows, or keep each row's first label. "
        "Empty: keep every label (a multi-label task; under task single_label such rows are dropped).",
    )
    splits: Literal["auto", "ratio"] = _f(
        "auto",
        "auto: keep the dataset's own train/validation/test splits and carve the missing ones from train; "
        "ratio: pool every row and split by split_ratios (stratified).",
    )
    split_ratios: list[float] = _f([0.8, 0.1, 0.1], "train, validation, test shares; must sum to 1.")
    max_samples: int | None = _f(None, "Use at most this many rows of the pooled data (stratified sample).", ge=10)
    max_train_samples: int | None = _f(None, "Cap the training split (stratified sample).", ge=2)
    balance: BalanceConfig | None = _f(
        None,
        "Balanced subset of k labels x n samples in total: drawn from all splits pooled, then split by "
        "split_ratios (the source's own splits are not kept).",
    )
    max_length: int = _f(256, "Longest input in tokens; longer texts are truncated.", ge=8, le=32768)
    validation_source: SplitSource | None = _f(
        None, "A separate validation file/folder/Hub split (used as is; else validation comes from source)."
    )
    test_source: SplitSource | None = _f(
        None, "A separate test file/folder/Hub split, used whole (never sampled); else test comes from source."
    )
    header: bool | None = _f(
        None, "Whether a CSV/TSV/TXT file's first line names its columns; empty = yes for .csv/.tsv, and for .txt "
        "only when it names a known column. Without a header the columns are text, label (or column_1, ...)."
    )  # fmt: skip
    delimiter: str | None = _f(
        None, "Field separator of CSV/TXT files; empty = detected from the file (, ; tab |).", min_length=1,
        max_length=1
    )  # fmt: skip
    label_file: str | None = _f(
        None, "A file with one label per line, parallel to a source with one text per line (.txt)."
    )
    merge_label_case: bool = _f(
        False, "Treat labels that differ only by case (Pos, pos) as one class, spelled as its most common form."
    )
    drop_duplicates: bool = _f(
        False, "Drop repeated texts within each split, and validation/test rows whose text is also in train."
    )

    _sources = field_validator("validation_source", "test_source", mode="before")(_split_source)

    def __post_init__(self) -> None:
        r = self.split_ratios
        if len(r) != 3:
            raise ConfigError("data.split_ratios", f"needs 3 values (train, validation, test), got {len(r)}")
        if any(x <= 0 for x in r):
            raise ConfigError("data.split_ratios", f"every share must be > 0, got {r}")
        if abs(sum(r) - 1.0) > 1e-6:
            raise ConfigError("data.split_ratios", f"must sum to 1, got {r} (sum {sum(r):g}); e.g. [0.8, 0.1, 0.1]")
        if self.balance is not None and self.max_samples is not None:
            raise ConfigError("data.max_samples", "does not apply with data.balance (its num_samples sets the size)")
        if self.label_separator == "":
            raise ConfigError("data.label_separator", "must not be empty; use null for single labels")
        if self.task == "multi_label" and self.multi_label is not None:
            raise ConfigError(
                "data.multi_label",
                f"'{self.multi_label}' makes the data single-label, but data.task is multi_label; leave "
                "multi_label empty, or set task: single_label",
            )
        if self.balance is not None and (self.validation_source or self.test_source):
            raise ConfigError(
                "data.balance",
                "pools every row and splits it again, which would mix a separate validation/test file into "
                "training; remove balance (use max_samples), or the separate file",
            )
        if self.task == "multi_label" and self.balance is not None:
            raise ConfigError(
                "data.balance",
                "draws k labels x n rows of one label each, which a multi-label task does not have; remove "
                "balance (use max_samples) or set task: single_label",
            )

    @property
    def reduce_multi_label(self) -> Literal["drop", "first"] | None:
        """How rows with several labels become single-label: the `multi_label` setting; `drop` under
        task single_label when it is empty; None when they stay multi-label (task multi_label or auto)."""
        if self.multi_label is not None:
            return self.multi_label
        return "drop" if self.task == "single_label" else None


@dataclass(config=_STRICT)
class ModelConfig:
    """Which pretrained model to start from."""

    name: str = _f(
        "minilm-l6",
        "A studio alias (minilm-l6, bert-base, distilbert, roberta-base, deberta-v3-base, ...), "
        "a local folder, or a Hugging Face Hub model id.",
        min_length=1,
    )
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) to pin.")
    trust_remote_code: bool = _f(False, "Run code shipped with a Hub model. Off unless you trust the source.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = _f(
        None, "Attention kernel; empty = the library's default (sdpa where supported)."
    )


Placement = Literal["auto", "qv", "attention", "attention+ffn", "all-linear", "custom"]


@dataclass(config=_STRICT)
class MethodConfig:
    """How the model is adapted: full fine-tuning, LoRA, QLoRA (LoRA on a 4/8-bit base) or IA3."""

    name: MethodName = _f("lora", "full | lora | qlora | ia3")
    bits: Literal[4, 8] = _f(4, "QLoRA: quantize the frozen base to 4 or 8 bits.")
    quant_type: Literal["nf4", "fp4"] = _f("nf4", "QLoRA 4-bit data type.")
    double_quant: bool = _f(True, "QLoRA 4-bit: quantize the quantization constants too (~0.4 bit/param saved).")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = _f(
        "auto", "QLoRA: dtype of the matmuls; auto = bf16 where the GPU has it, else fp16, fp32 on CPU."
    )
    r: int = _f(16, "LoRA rank.", ge=1, le=1024)
    alpha: float = _f(32.0, "LoRA alpha (scale = alpha / r).", gt=0)
    dropout: float = _f(0.1, "LoRA dropout.", ge=0.0, lt=1.0)
    placement: Placement = _f(
        "auto",
        "Adapter placement: qv (query+value), attention, attention+ffn, all-linear, or custom "
        "(target_modules). auto = qv for LoRA, attention+ffn for IA3.",
    )
    target_modules: list[str] | None = _f(None, "Module names for placement=custom.")
    freeze_layers: int = _f(
        0,
        "Keep the embeddings and the lowest N transformer layers as they are: full fine-tuning freezes them, "
        "LoRA/QLoRA/IA3 put no adapters there; the backward pass stops above them (faster, less memory). "
        "0: every layer trains.",
        ge=0,
        le=1024,
    )

    def __post_init__(self) -> None:
        if self.placement == "custom" and not self.target_modules:
            raise ConfigError("method.target_modules", "placement 'custom' needs a non-empty list of module names")
        if self.target_modules and self.placement != "custom":
            raise ConfigError("method.placement", "set placement: custom to use method.target_modules")
        if self.spec.trains_every_weight and self.placement != "auto":
            raise ConfigError("method.placement", "full fine-tuning trains every weight; leave placement at auto")

    @property
    def spec(self) -> Method:
        """This method's row of the method table (studio/methods.py)."""
        return METHODS[self.name]

    @property
    def quantized(self) -> bool:
        return self.spec.quantized

    @property
    def adapter(self) -> AdapterName | None:
        return self.spec.adapter

    @property
    def quant_bits(self) -> int | None:
        """The bits of the quantized base (`bits`), None when the base is not quantized."""
        return self.bits if self.spec.quantized else None

    def resolved_placement(self) -> str:
        """The placement `auto` stands for: the method's default (full fine-tuning keeps `auto`)."""
        if self.placement != "auto":
            return self.placement
        return self.spec.default_placement or self.placement


Optimizer = Literal[
    "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "adafactor", "sgd"
]
MetricName = Literal[
    "accuracy", "f1_macro", "f1_weighted", "loss", "f1_micro", "hamming_loss", "roc_auc_macro", "ap_macro"
]
MULTI_LABEL_METRICS = frozenset({"f1_micro", "hamming_loss", "roc_auc_macro", "ap_macro"})
"""Validation metrics only multi-label runs compute."""
LOWER_IS_BETTER = frozenset({"loss", "hamming_loss"})
BNB_OPTIMIZERS = frozenset({"paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit"})


@dataclass(config=_STRICT)
class TrainConfig:
    """The Trainer's knobs (names follow the seed studies, mapped to TrainingArguments in training.py)."""

    epochs: float = _f(3.0, "Passes over the training split.", gt=0)
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs).", ge=1)
    batch_size: int = _f(16, "Per-device training batch size.", ge=1, le=65536)
    eval_batch_size: int | None = _f(None, "Per-device evaluation batch size; empty = 2 x batch_size.", ge=1)
    grad_accum: int = _f(1, "Gradient accumulation steps (effective batch = batch_size x grad_accum).", ge=1)
    learning_rate: float = _f(2e-4, "Peak learning rate.", gt=0, le=1)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"] = (
        _f("linear", "Learning-rate schedule after warm-up.")
    )
    warmup_ratio: float = _f(0.0, "Share of the steps spent warming up.", ge=0, lt=1)
    weight_decay: float = _f(0.0, "AdamW weight decay.", ge=0)
    optimizer: Optimizer = _f("adamw_torch", "Optimizer (8-bit and paged ones need bitsandbytes).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).", ge=0)
    label_smoothing: float = _f(0.0, "Label smoothing factor.", ge=0, lt=1)
    class_weights: Literal["none", "balanced"] | dict[str, float] = _f(
        "none",
        "Weight each class in the loss: none; balanced (inversely to its count in the training split, as "
        "scikit-learn's 'balanced'); or {label: weight}. Weights are relative: scaled so the average training "
        "example weighs 1. For skewed classes (the Data tab shows the ratio).",
    )
    loss: Literal["cross_entropy", "focal"] = _f(
        "cross_entropy",
        "cross_entropy, or focal (Lin et al. 2017): down-weights examples the model already gets right.",
    )
    focal_gamma: float = _f(2.0, "Focal loss's focusing parameter (0 = cross-entropy; 2 is the paper's).", ge=0, le=10)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = _f(
        "auto", "Mixed precision; auto = bf16 on GPUs that have it, else fp16; fp32 on CPU."
    )
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward: less memory, ~30% slower.")
    checkpointing_reentrant: bool = _f(
        False,
        "Gradient checkpointing through PyTorch's older reentrant path (peft's and older transformers' default, "
        "which published QLoRA recipes ran) rather than the non-reentrant one: for reproducing such a recipe.",
    )
    eval_strategy: Literal["epoch", "steps", "no"] = _f("epoch", "When to evaluate on the validation split.")
    eval_steps: int | None = _f(None, "Evaluate every N steps (eval_strategy: steps).", ge=1)
    logging_steps: int = _f(10, "Log the training loss every N steps.", ge=1)
    early_stopping_patience: int | None = _f(
        None, "Stop after this many evaluations without improvement of metric_for_best.", ge=1
    )
    metric_for_best: MetricName = _f(
        "accuracy",
        "Validation metric that picks the best checkpoint and drives early stopping. Multi-label tasks: accuracy "
        "is the exact-match share; f1_micro, hamming_loss, roc_auc_macro and ap_macro are theirs (F1 and Hamming "
        "at threshold 0.5 while training; thresholds are tuned at the end).",
    )
    load_best_at_end: bool = _f(True, "Finish with the best checkpoint's weights rather than the last.")
    report_to: list[Literal["tensorboard", "wandb"]] = _f(
        [], "Extra experiment trackers; a missing package or login falls back to local logs."
    )
    mlflow: Literal["auto", "without_model", "off"] = _f(
        "auto",
        "Log the run to MLflow when MLFLOW_TRACKING_URI is set: its parameters, live metrics, test results, plots "
        "and model folder (auto); the same less the model's weights (without_model); or never (off). A server "
        "that cannot be reached leaves a warning in the run's log; the run goes on.",
    )
    dataloader_workers: int = _f(0, "Worker processes feeding batches.", ge=0, le=64)
    speed: Literal["fast", "frugal", "as_set"] = _f(
        "fast",
        "fast: on a GPU the studio picks the fastest settings that fit (bf16, a 16-bit base, a large batch, no "
        "checkpointing, fused AdamW), each choice shown; frugal: near the least memory, as fast as "
        "that allows (checkpointing; a 4-bit base and paged 8-bit AdamW where they save much); as_set: exactly "
        "the settings given. On a CPU all three train as set.",
    )
    length_grouping: bool = _f(False, "Batch texts of similar token length together: less padding, same data.")
    torch_compile: bool = _f(False, "Compile the model with torch.compile (pays back on long runs only).")
    half_activations: bool = _f(
        False,
        "Under bf16/fp16 autocast, keep the hidden states between layers in 16 bit rather than fp32 (norms "
        "still compute in fp32): about half the activation memory under QLoRA.",
    )
    expandable_segments: bool = _f(
        False,
        "GPU memory allocator: grow segments rather than cache fixed-size blocks, so batches of varying length "
        "strand less memory (PyTorch's expandable_segments).",
    )
    checkpoint_steps: int | None = _f(
        None,
        "Save a resumable checkpoint (weights, optimizer, scheduler, random states) every N optimizer steps: "
        "`python -m studio resume RUN_ID` continues a run that was killed from its last one.",
        ge=1,
    )
    stop_on_collapse: bool = _f(
        False,
        "Stop a run that is not learning (its validation predictions collapsed onto one class for several "
        "evaluations, or its loss diverged): it evaluates and saves what it has and ends as stopped, flagged. "
        "Off: the run goes on and is flagged all the same.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.class_weights, dict):
            if not self.class_weights:
                raise ConfigError("train.class_weights", "is empty; name labels and weights, or use balanced / none")
            bad = {k: v for k, v in self.class_weights.items() if not v > 0}
            if bad:
                label, weight = next(iter(bad.items()))
                raise ConfigError("train.class_weights", f"the weight of '{label}' is {weight:g}; weights must be > 0")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ConfigError("train.eval_steps", "is required when eval_strategy is 'steps'")
        # the Trainer picks the best among its saved checkpoints, so with load_best it saves when it evaluates
        every, best = self.checkpoint_steps, self.load_best_at_end and self.eval_strategy != "no"
        if every and best and (self.eval_strategy != "steps" or every % (self.eval_steps or 1)):
            raise ConfigError(
                "train.checkpoint_steps",
                "with load_best_at_end the checkpoints must fall on evaluations: set eval_strategy: steps with "
                "eval_steps dividing checkpoint_steps, or load_best_at_end: false",
            )
        if self.early_stopping_patience is not None and self.eval_strategy == "no":
            raise ConfigError("train.early_stopping_patience", "needs evaluations: set eval_strategy to epoch or steps")

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(config=_STRICT)
class RunConfig:
    """One training run. Presets are YAML files of this (see presets/)."""

    version: int = _f(CONFIG_VERSION, "Config format version.", ge=1)
    name: str = _f("run", "Short name used in the run id.", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = _f("", "Free text: what this run or preset is for.")
    seed: int = _f(42, "Seed for splits, sampling, initialisation and data order.", ge=0)
    data: DataConfig = _f(DataConfig, "Dataset.")
    model: ModelConfig = _f(ModelConfig, "Base model.")
    method: MethodConfig = _f(MethodConfig, "Fine-tuning method.")
    train: TrainConfig = _f(TrainConfig, "Training loop.")

    def __post_init__(self) -> None:
        _check_version(self.version)

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _ADAPTER.dump_python(self, mode="json")

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        """Build and validate; every problem becomes a ConfigError naming the field."""
        if not isinstance(data, dict):
            raise ConfigError("", f"a run config must be a mapping of sections, got {type(data).__name__}")
        version = data.get("version", CONFIG_VERSION)
        if isinstance(version, int):  # first: a newer format may also bring keys this version doesn't know
            _check_version(version)
            if version < 2 and isinstance(data.get("train", {}), dict) and "speed" not in data.get("train", {}):
                # format 1 had no speed profiles: such a preset (or a saved run's config) meant its settings
                data = {**data, "train": {**data.get("train", {}), "speed": "as_set"}}
            section = data.get("data", {})
            if version < 3 and isinstance(section, dict) and "task" not in section:
                # formats 1-2 were single-label: rows with several labels dropped unless multi_label said first
                data = {**data, "data": {**section, "task": "single_label",
                                         "multi_label": section.get("multi_label") or "drop"}}  # fmt: skip
        try:
            return cls(**data)
        except ValidationError as e:
            raise _to_config_error(e) from None

    def to_yaml(self, path: str | Path | None = None, header: str = "") -> str:
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110)
        text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + body
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("", f"preset file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError("", f"{path} is not valid YAML{_yaml_problem(e)}") from None
        if data is None:
            raise ConfigError("", f"{path} is empty; a preset needs at least one section (data, model, ...)")
        return cls.from_dict(data)

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply ``key.path=value`` assignments (values parsed as YAML: 1, 2e-4, true, [a, b])."""
        data = self.to_dict()
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError("", f"override '{item}' must look like section.field=value")
            node, parts = data, key.strip().split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {} if node.get(part) is None else node[part]
                    if not isinstance(node[part], dict):
                        raise ConfigError(key, "is not a section; cannot set a field inside it")
                node = node[part]
            node[parts[-1]] = _parse_value(raw)
        return RunConfig.from_dict(data)

    @property
    def reentrant_checkpointing(self) -> bool:
        """Gradient checkpointing through PyTorch's reentrant path: when asked (`train.checkpointing_reentrant`),
        and always over an 8-bit base. bitsandbytes' LLM.int8() matmul keeps its input on the autograd context
        (`ctx.tensors`), out of reach of the non-reentrant path's saved-tensor hooks, so there checkpointing
        freed nothing of those layers: DistilBERT 8-bit QLoRA 128 x 256 peaked at 7.5 GB on an H200 against
        the 4.8 GB its checkpointing was estimated at (benchmarks/results/memory_heldout/snapshots/). The
        reentrant path runs the forward without autograd, so nothing is kept; 4-bit layers save through
        `save_for_backward` and checkpoint either way."""
        return self.train.checkpointing_reentrant or self.method.quant_bits == 8

    def config_hash(self) -> str:
        """Identity of what is trained: everything but the name and description."""
        d = self.to_dict()
        d.pop("name", None)
        d.pop("description", None)
        d["train"].pop("mlflow", None)  # where the run is tracked, not what trains
        # Fields added since runs were first recorded drop out at the value that means the old behaviour, so
        # a registry's earlier runs keep their identity (a grid resumes across the upgrade).
        for section, neutrals in (("train", _HASH_NEUTRAL), ("data", _DATA_HASH_NEUTRAL), ("method", _METHOD_NEUTRAL)):
            for key, neutral in neutrals.items():
                if key in d[section] and d[section][key] == neutral:
                    d[section].pop(key)
        if d["data"].get("task") == "single_label" and d["data"].get("multi_label") in (None, "drop"):
            d["data"].pop("task")  # what formats 1-2 meant: single-label, multi-label rows dropped
            d["data"]["multi_label"] = "drop"
        d["version"] = min(d.get("version", CONFIG_VERSION), 2)  # formats 3-5 add fields only (neutral above)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


_HASH_NEUTRAL = {
    "speed": "as_set",
    "length_grouping": False,
    "torch_compile": False,
    "half_activations": False,
    "checkpointing_reentrant": False,
    "expandable_segments": False,
    "checkpoint_steps": None,
    "stop_on_collapse": False,
    "class_weights": "none",
    "loss": "cross_entropy",
    "focal_gamma": 2.0,
}
_DATA_HASH_NEUTRAL = {
    "validation_source": None,
    "test_source": None,
    "header": None,
    "delimiter": None,
    "label_file": None,
    "merge_label_case": False,
    "drop_duplicates": False,
}
_METHOD_NEUTRAL = {"freeze_layers": 0}
_ADAPTER = TypeAdapter(RunConfig)
SECTIONS: dict[str, type] = {  # dotted section path -> its dataclass (the top level is "")
    "": RunConfig,
    "data": DataConfig,
    "data.balance": BalanceConfig,
    "data.validation_source": SplitSource,
    "data.test_source": SplitSource,
    "model": ModelConfig,
    "method": MethodConfig,
    "train": TrainConfig,
}


def _check_version(version: int) -> None:
    if version > CONFIG_VERSION:
        raise ConfigError(
            "version",
            f"this preset is format {version}, made by a newer Fine-Tune Studio (this one reads up to "
            f"{CONFIG_VERSION}); upgrade the studio",
        )


_YAML11_WORDS = {"no", "yes", "on", "off", "y", "n"}


def _parse_value(raw: str) -> Any:
    # YAML 1.1 reads `no`/`yes`/`on`/`off` as booleans, but `train.eval_strategy=no` means the word; pydantic
    # still turns these words into booleans for the bool fields.
    if raw.strip().lower() in _YAML11_WORDS:
        return raw.strip()
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


def _to_config_error(e: ValidationError) -> ConfigError:
    """Turn pydantic's report into one line per problem, each naming its dotted field."""
    messages, first_field, fields_said = [], "", set()
    for err in e.errors():
        path: list[str] = []
        for part in err["loc"]:
            section = ".".join(path)
            cls = SECTIONS.get(section)
            if cls is None:  # inside a field: the rest names a branch of its type (a union's), not a field
                break
            known = part in {f.name for f in dataclasses.fields(cls)}
            if not isinstance(part, str) or not (known or err["type"] == "unexpected_keyword_argument"):
                break
            path.append(part)
        field = ".".join(path)
        if err["type"] == "unexpected_keyword_argument":
            section = ".".join(path[:-1])
            allowed = ", ".join(f.name for f in dataclasses.fields(SECTIONS.get(section, RunConfig)))
            msg = f"unknown key; {section or 'the top level'} takes: {allowed}"
        elif err["type"] in ("value_error", "assertion_error") and "ctx" in err:
            inner = err["ctx"].get("error")
            if isinstance(inner, ConfigError):
                field, msg = inner.field, str(inner).removeprefix(f"{inner.field}: ")
            else:
                msg = str(inner)
        else:
            msg = f"{err['msg']} (got {err.get('input')!r})"
        if field and field in fields_said:  # a union's other branches: its first complaint says enough
            continue
        fields_said.add(field)
        first_field = first_field or field
        line = f"{field}: {msg}" if field else msg
        if line not in messages:
            messages.append(line)
    error = ConfigError(first_field, "")
    error.args = ("; ".join(messages),)
    return error


def field_help(section: type, name: str) -> str:
    """The help text of a config field (for the CLI and the UI)."""
    for f in dataclasses.fields(section):
        if f.name == name:
            return getattr(f.default, "description", "") or ""
    raise KeyError(name)


def _yaml_problem(e: Exception) -> str:
    """': what' with the line and column (1-based) where YAML found it, and where the construct it was in began."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if mark is None:
        return f": {problem}"
    said = f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and start is not None and (start.line, start.column) != (mark.line, mark.column):
        said += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    return said
