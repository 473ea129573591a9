"""What the Data tab shows about a dataset before training: columns, preview, splits, labels, token lengths.

It runs the same `prepare` a run will run (same columns, label rules, splits and balance), so the numbers on
the page are the numbers training gets. Token lengths are counted with the chosen model's tokenizer on a
seeded sample of the train split; when that tokenizer cannot be loaded (a Hub model while offline) the
overview still shows everything else and says why the histogram is missing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from studio.config import DataConfig, ModelConfig, RunConfig
from studio.errors import StudioError


@dataclass
class DataOverview:
    columns: list[str]
    text_column: str
    label_column: str
    preview: Any
    """pandas DataFrame: the first raw rows, every column."""
    rows: dict[str, int]
    label_names: list[str]
    label_counts: dict[str, dict[str, int]]
    """split -> label -> rows (multi-label: the rows carrying the label)."""
    lengths: list[int] = field(default_factory=list)
    """Untruncated token counts of up to `sample` train texts; empty when no tokenizer could be loaded."""
    notes: list[str] = field(default_factory=list)
    task: str = "single_label"
    """What the data makes: single_label or multi_label (what `data.task: auto` resolved to)."""
    labels_per_row: dict[str, float] = field(default_factory=dict)
    """Multi-label: split -> the mean number of labels a row carries."""
    made_single: int = 0
    """Rows with several labels that were made single-label (dropped, or cut to their first label)."""
    origins: dict[str, str] = field(default_factory=dict)
    """split -> where its rows came from, in words (`report["origins"]`)."""
    duplicates: dict[str, int] = field(default_factory=dict)
    """split -> texts repeated in it (a text seen earlier in the split)."""
    leaked: dict[str, int] = field(default_factory=dict)
    """validation / test -> its rows whose text is also in train."""

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"

    def truncated_share(self, max_length: int) -> float:
        return sum(n > max_length for n in self.lengths) / len(self.lengths) if self.lengths else 0.0


def overview(config: RunConfig, preview_rows: int = 20, sample: int = 2000, tokens: bool = True) -> DataOverview:
    """Prepare `config.data` exactly as a run would and describe it (without `tokens`, no tokenizer is loaded and
    no token length counted).

    Raises:
        DataError / ConfigError: the source cannot be loaded or does not fit the config.
    """
    from studio.data import dataset_stats, load_raw, prepare, token_lengths

    raw = load_raw(config.data)
    first = raw["train"] if "train" in raw else next(iter(raw.values()))
    prepared = prepare(config.data, config.seed, raw)  # the source read once, for the preview and the splits
    stats = dataset_stats(prepared)
    notes = list(prepared.report.get("notes", []))
    lengths: list[int] = []
    try:
        if tokens:
            tokenizer = tokenizer_for(config.model)
            lengths = token_lengths(prepared.splits["train"]["text"], tokenizer, sample=sample, seed=config.seed)
    except StudioError as e:
        notes.append(f"token lengths unavailable: {e}")
    return DataOverview(
        columns=list(first.column_names),
        text_column=prepared.report["text_column"],
        label_column=prepared.report["label_column"],
        preview=first.select(range(min(preview_rows, len(first)))).to_pandas(),
        rows=stats["rows"],
        label_names=prepared.label_names,
        label_counts=stats["labels"],
        lengths=lengths,
        notes=notes,
        task=stats["task"],
        labels_per_row=stats.get("labels_per_row", {}),
        made_single=prepared.report.get("dropped_multi_label", 0) + prepared.report.get("multi_label_first", 0),
        origins=prepared.report.get("origins", {}),
        duplicates=prepared.report.get("duplicates", {}),
        leaked=prepared.report.get("leaked", {}),
    )


def tokenizer_for(model: ModelConfig) -> Any:
    """The tokenizer a run of `model` uses (cached: the Data tab asks again on every change)."""
    return _tokenizer(model.name, model.revision, model.trust_remote_code)


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str, revision: str | None, trust_remote_code: bool) -> Any:
    from studio.architectures import family_for
    from studio.models import load_config, load_tokenizer, resolve_source

    model = ModelConfig(name=name, revision=revision, trust_remote_code=trust_remote_code)
    source = resolve_source(model)
    family = family_for(load_config(model, source).model_type)
    return load_tokenizer(model, source, family)


def is_hub_source(data: DataConfig) -> bool:
    """Whether `data.source` is loaded from the Hugging Face Hub (which needs the network), as `load_raw` decides:
    not a shipped sample, not an existing file or folder, and not shaped like a path."""
    from pathlib import Path

    from studio.datasource import SAMPLES, looks_like_path

    if data.source in SAMPLES:
        return False
    return not Path(data.source).expanduser().exists() and not looks_like_path(data.source)
