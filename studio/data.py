"""Datasets for training: pick the columns, clean, read the labels, balance, split.

The one module the rest of the studio imports for data: loading lives in `studio.datasource` (`SAMPLES`,
`load_raw`, `columns`, `preview`) and token ids and statistics in `studio.tokenization` (`tokenize`, `label_ids`,
`token_lengths`, `length_stats`, `dataset_stats`); both are re-exported here.
The rules below are also written for users in docs/data.md; keep the two in step.

- Columns: ``data.text_column`` / ``data.label_column``, else the sample's own, else the first present of
  `TEXT_COLUMNS` and of `LABEL_COLUMNS` (exact name first, then ignoring case).
- Labels: strings -> classes in sorted order (numbers written as text sort as numbers); integers -> names
  from ``data.label_names`` (must cover every id), else from the dataset's ClassLabel feature, else the
  numbers themselves as text (ids renumbered 0..k-1 in numeric order); floats that are all whole numbers
  are integers; other floats are an error (this is classification). With ``data.label_names`` set, string
  labels take that order too (every label must be listed).
- Several labels per row (a list, e.g. GoEmotions, or a string split on ``data.label_separator``): the
  task is multi-label (``data.task: multi_label``, or ``auto`` when some row has several labels and
  ``multi_label`` is empty): each row keeps its set of labels (duplicates dropped; a row with none is a row
  without a label). Otherwise ``multi_label: drop`` keeps single-label rows only (the default of
  ``task: single_label``), ``first`` keeps each row's first label. Both counted. Under ``auto``, list labels
  that never hold more than one label make a single-label task.
- Rows with an empty/missing text or no label (None, NaN, "", -1 under a ClassLabel) are dropped and
  counted; only when nothing is left is it an error. Fewer than 2 classes is an error.
- Splits (``splits: auto``): the source's train/validation/test are kept (other splits, e.g. IMDb's
  "unsupervised", are ignored); a missing validation and/or test is carved from train so that it gets the
  size its ratio implies (train + test given: validation = train x r_val / (r_train + r_val)); a source
  with train only is split by ``split_ratios``; one without train is pooled and split. ``ratio``: every
  split is pooled and split by ``split_ratios``. Sizes: test = round(N x r_test), validation =
  round(N x r_val), train the rest (at least 1 row each).
- Multi-label splits keep the label as a list of ids (``Sequence(ClassLabel)``); carving and sampling
  stratify by each row's rarest label (a row of a rare emotion lands in every split in proportion); ``balance``
  is single-label only (an error that says so).
- All carving and sampling is stratified by label (``datasets``' ``train_test_split`` with
  ``stratify_by_column``) and seeded; when a class is too small to stratify, a seeded random split is used
  and a note says so.
- ``max_samples``: a stratified sample of that many rows before splitting; under ``auto`` each source
  split is sampled in proportion to its size (so the total may differ by a row or two). Ignored (with a
  note) when ``balance`` is set. ``max_train_samples``: a stratified cap on train, after splitting.
- ``balance`` (k labels x n samples): every split is pooled (after the multi-label rule), k labels kept
  (the most frequent, ties broken by name; or the listed ones), n // k rows drawn from each (seeded),
  then split by ``split_ratios``: ``num_samples`` is a total, so 800 -> 640 / 80 / 80. Label ids then
  follow the kept names in sorted order (0..k-1). A label with fewer than n // k rows is an error.
- Same config and seed -> identical splits and `PreparedData.fingerprint`; another seed -> other splits
  (wherever anything is carved or sampled).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.config import DataConfig
from studio.datasource import SAMPLES, Sample, columns, describe_source, load_raw, preview
from studio.errors import DataError
from studio.tokenization import dataset_stats, label_ids, length_stats, token_lengths, tokenize

__all__ = ["SAMPLES", "Sample", "PreparedData", "load_raw", "columns", "preview", "prepare", "tokenize",
           "token_lengths", "length_stats", "dataset_stats", "TEXT_COLUMNS", "LABEL_COLUMNS", "find_column",
           "missing", "label_ids"]  # fmt: skip

TEXT_COLUMNS = ("text", "sentence", "review", "content", "comment", "document")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "category", "target")
SPLITS = ("train", "validation", "test")


@dataclass
class PreparedData:
    """Clean, split data ready to tokenize.

    Attributes:
        splits: ``datasets.DatasetDict`` with exactly train / validation / test, each with the columns
            ``text`` (string) and ``label`` (ClassLabel named `label_names`; multi-label: a list of them).
        label_names: class names; a label's id is its position.
        fingerprint: 16 hex digits over the label names and every split's texts and labels in order.
        report: rows_loaded, dropped_empty_text, dropped_missing_label, dropped_multi_label,
            multi_label_first (rows reduced to their first label), dropped_other_labels (balance),
            rows ({split: count}), text_column, label_column, source (one line), notes (sentences).
    """

    splits: Any
    label_names: list[str]
    fingerprint: str
    report: dict[str, Any] = field(default_factory=dict)
    task: str = "single_label"
    """single_label | multi_label (what `data.task: auto` resolved to)."""

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"


# ---- prepare -------------------------------------------------------------------------------------------
def prepare(cfg: DataConfig, seed: int, raw: Any = None) -> PreparedData:
    """Load `cfg.source` and turn it into labelled train/validation/test splits (rules: module docstring).

    `raw`: the source as `load_raw(cfg)` returns it, when the caller has already read it.

    Raises:
        DataError: the source cannot be loaded, a column is missing, the labels are not classes, or too
            few rows/classes are left.
    """
    notes: list[str] = []
    used = _used_splits(load_raw(cfg) if raw is None else raw, notes)
    sample = SAMPLES.get(cfg.source)
    first = used["train"] if "train" in used else next(iter(used.values()))
    text_col = _pick_column(first.column_names, cfg.text_column or (sample and sample.text_column), "text")
    label_col = _pick_column(first.column_names, cfg.label_column or (sample and sample.label_column), "label")
    if text_col == label_col:
        raise DataError(f"data.label_column: '{label_col}' is also the text column; set data.label_column")
    report: dict[str, Any] = {
        "source": describe_source(cfg), "text_column": text_col, "label_column": label_col, "rows_loaded": 0,
        "dropped_empty_text": 0, "dropped_missing_label": 0, "dropped_multi_label": 0, "multi_label_first": 0,
        "dropped_other_labels": 0, "rows": {}, "notes": notes,
    }  # fmt: skip
    class_names = _class_names(first.features.get(label_col))
    cleaned = {name: _clean(name, split, text_col, label_col, cfg, class_names, report) for name, split in used.items()}
    _note_drops(report)
    task = _resolve_task(cfg, cleaned, notes)
    names, splits = _labelled(cleaned, task, cfg, class_names, label_col)
    for k in [k for k, v in splits.items() if len(v) == 0]:
        del splits[k]
        notes.append(f"the source's {k} split has no usable rows: treated as missing")
    if cfg.balance is not None and task == "multi_label":
        raise DataError("data.balance: draws rows of one label each, but this data is multi-label (rows carry "
                        "several labels); set data.multi_label: drop (or first), or remove balance")  # fmt: skip
    if cfg.balance is not None:
        pooled = _balance(_concat(list(splits.values())), names, cfg, seed, report)
        names = pooled.features["label"].names
        splits = _three_way(pooled, cfg.split_ratios, seed, notes)
    else:
        splits = _split(splits, cfg, seed, notes)
    if cfg.max_train_samples and len(splits["train"]) > cfg.max_train_samples:
        splits["train"] = _carve(splits["train"], cfg.max_train_samples, seed, notes)[1]
        notes.append(f"train capped at {cfg.max_train_samples} rows (max_train_samples)")
    _refuse_unseen_labels(splits, [k for k in used if k != "train" and k in splits], names)
    from datasets import DatasetDict

    out = DatasetDict({k: splits[k].flatten_indices() for k in SPLITS})
    report["rows"] = {k: len(v) for k, v in out.items()}
    report["notes"] = list(dict.fromkeys(notes))
    report["task"] = task
    return PreparedData(out, list(names), _fingerprint(out, names), report, task)


def _labelled(cleaned: dict[str, tuple[list, list]], task: str, cfg: DataConfig, class_names: list[str] | None,
              label_col: str) -> tuple[list[str], dict[str, Any]]:  # fmt: skip
    """(label names in id order, each split as a Dataset of text and label ids: one id, or a row's set)."""
    multi = task == "multi_label"
    all_labels = [v for _, labels in cleaned.values() for row in labels for v in (row if multi else [row])]
    if not all_labels:
        raise DataError(f"data.source: no usable rows in {cfg.source}: every row has an empty text or no label")
    names, to_id = _label_mapping(all_labels, cfg, class_names)
    present = sorted({to_id(v) for v in all_labels})
    if len(present) < 2:
        raise DataError(f"data.label_column: '{label_col}' needs at least 2 classes; found only '{names[present[0]]}'")
    if multi:
        return names, {k: _dataset(texts, [sorted({to_id(v) for v in row}) for row in labels], names, multi=True)
                       for k, (texts, labels) in cleaned.items()}  # fmt: skip
    return names, {k: _dataset(texts, [to_id(v) for v in labels], names) for k, (texts, labels) in cleaned.items()}


def _resolve_task(cfg: DataConfig, cleaned: dict[str, tuple[list, list]], notes: list[str]) -> str:
    """single_label or multi_label; under single_label every row's label becomes one value (in place)."""
    rows = [row for _, labels in cleaned.values() for row in labels]
    several = any(isinstance(row, list) and len(row) > 1 for row in rows)
    task = cfg.task if cfg.task != "auto" else ("multi_label" if several else "single_label")
    if task == "multi_label":
        for _, labels in cleaned.values():
            labels[:] = [row if isinstance(row, list) else [row] for row in labels]
        if cfg.task == "auto":
            share = sum(isinstance(r, list) and len(r) > 1 for r in rows) / max(len(rows), 1)
            notes.append(f"multi-label task: {share:.0%} of the rows carry several labels (data.task: auto); set "
                         "data.multi_label: drop or first to train a single-label classifier")  # fmt: skip
    else:
        for _, labels in cleaned.values():
            labels[:] = [row[0] if isinstance(row, list) else row for row in labels]
    return task


def _refuse_unseen_labels(splits: dict, given: list[str], names: list[str]) -> None:
    """A label in the source's own validation or test split that the training split never has: the model
    cannot learn it, and every such row would count as an error. (Splits the studio carves are stratified.)"""
    trained = set(label_ids(splits["train"]))
    unseen = {k: sorted(names[i] for i in set(label_ids(splits[k])) - trained) for k in given}
    unseen = {k: v for k, v in unseen.items() if v}
    if unseen:
        where = "; ".join(f"{', '.join(repr(n) for n in v)} in {k}" for k, v in unseen.items())
        raise DataError(
            f"data.label_column: labels that the train split never has cannot be learnt ({where}); add training "
            "rows with them or drop those rows, or pool the data with splits: ratio"
        )


def _used_splits(raw: Any, notes: list[str]) -> dict[str, Any]:
    """The source's train/validation/test (others ignored); a source with none of them is pooled as train."""
    used = {k: v for k, v in raw.items() if k in SPLITS}
    if not used:
        notes.append(f"the source has no train/validation/test split: pooled {', '.join(raw)} as train")
        return {"train": _concat(list(raw.values()))}
    if len(used) < len(raw):
        notes.append(f"ignored the source's other splits: {', '.join(k for k in raw if k not in SPLITS)}")
    return used


def _pick_column(found: list[str], wanted: str | None, what: str) -> str:
    listed = ", ".join(found)
    if wanted:
        if wanted in found:
            return wanted
        raise DataError(f"data.{what}_column: {what} column '{wanted}' not found; the data has columns: {listed}; "
                        f"set data.{what}_column to one of them")  # fmt: skip
    candidates = TEXT_COLUMNS if what == "text" else LABEL_COLUMNS
    column = find_column(found, candidates)
    if column is not None:
        return column
    raise DataError(f"data.{what}_column: no {what} column found (looked for {', '.join(candidates)}); "
                    f"the data has columns: {listed}; set data.{what}_column")  # fmt: skip


def find_column(found: list[str], candidates: tuple[str, ...]) -> str | None:
    """The first of `candidates` among the column names `found`, exactly, else ignoring case; None if none."""
    lowered = {c.lower(): c for c in found}
    for name in candidates:
        if name in found:
            return name
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def _class_names(feature: Any) -> list[str] | None:
    """Names of a ClassLabel column, or of a list-of-ClassLabel column (multi-label Hub datasets)."""
    from datasets import ClassLabel

    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def missing(value: Any) -> bool:
    """No value: None, NaN, or a blank string (a row's text or label that is not there)."""
    if value is None:
        return True
    if isinstance(value, float):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def _clean(name: str, split: Any, text_col: str, label_col: str, cfg: DataConfig, class_names: list[str] | None,
           report: dict) -> tuple[list[str], list[Any]]:  # fmt: skip
    """(texts, one raw label per row) of the usable rows; what is dropped is counted in `report`."""
    for col in (text_col, label_col):
        if col not in split.column_names:
            raise DataError(
                f"data.source: the {name} split has no column '{col}' (it has "
                f"{', '.join(split.column_names)}); every split needs the text and the label"
            )
    texts, labels = _column(split, text_col), _column(split, label_col)
    report["rows_loaded"] += len(texts)
    reduce = cfg.reduce_multi_label
    kept_texts, kept_labels = [], []
    for text, value in zip(texts, labels, strict=True):
        if missing(text):
            report["dropped_empty_text"] += 1
            continue
        if isinstance(value, str) and cfg.label_separator:
            value = [v.strip() for v in value.split(cfg.label_separator)]
        if isinstance(value, (list, tuple, np.ndarray)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
            value = list(dict.fromkeys(v for v in value if not _no_label(v, class_names)))  # order kept, no repeats
            if len(value) > 1 and reduce == "drop":
                report["dropped_multi_label"] += 1
                continue
            if len(value) > 1 and reduce == "first":
                report["multi_label_first"] += 1
            value = (value[:1] if reduce else value) or None
        if value is None or (not isinstance(value, list) and _no_label(value, class_names)):
            report["dropped_missing_label"] += 1
            continue
        kept_texts.append(text if isinstance(text, str) else str(text))
        kept_labels.append(value.item() if isinstance(value, np.generic) else value)
    return kept_texts, kept_labels


def _no_label(value: Any, class_names: list[str] | None) -> bool:
    """Missing, or -1 under a ClassLabel (its "no label")."""
    return missing(value) or bool(class_names and isinstance(value, (int, np.integer)) and value < 0)


def _note_drops(report: dict) -> None:
    notes = report["notes"]
    if report["dropped_empty_text"]:
        notes.append(f"dropped {report['dropped_empty_text']:,} rows with an empty text")
    if report["dropped_missing_label"]:
        notes.append(f"dropped {report['dropped_missing_label']:,} rows without a label")
    if report["dropped_multi_label"]:
        notes.append(f"dropped {report['dropped_multi_label']:,} rows with several labels (multi_label: drop)")
    if report["multi_label_first"]:
        notes.append(f"kept the first label of {report['multi_label_first']:,} rows with several (multi_label: first)")


def _label_mapping(values: list, cfg: DataConfig, class_names: list[str] | None) -> tuple[list[str], Any]:
    """(names in id order, raw label -> id)."""
    if all(isinstance(v, str) for v in values):
        found = set(values)
        if cfg.label_names:
            unlisted = sorted(found - set(cfg.label_names))
            if unlisted:
                raise DataError(f"data.label_names: does not list {', '.join(unlisted[:10])} (found in the data); "
                                "list every label or leave label_names empty")  # fmt: skip
            names = list(cfg.label_names)
        else:
            names = sorted(found, key=lambda s: (0, int(s), s) if s.strip().lstrip("-").isdigit() else (1, 0, s))
        index = {n: i for i, n in enumerate(names)}
        return names, index.__getitem__
    if not all(isinstance(v, (int, float)) for v in values):  # mixed text and numbers: read all as text
        return _label_mapping([str(v) for v in values], cfg, None)
    odd = [v for v in values if isinstance(v, float) and not v.is_integer()]
    if odd:
        raise DataError(f"data.label_column: labels must be classes, but found numbers such as {odd[0]:g}; "
                        "this is classification: bucket the values into classes first (e.g. low/mid/high)")  # fmt: skip
    ids = sorted({int(v) for v in values})
    names = cfg.label_names or class_names
    if names:
        if ids[0] < 0 or ids[-1] >= len(names):
            source = "data.label_names" if cfg.label_names else "the dataset's class names"
            raise DataError(f"data.label_names: {source} give {len(names)} names (ids 0..{len(names) - 1}) but the "
                            f"labels run from {ids[0]} to {ids[-1]}; give one name per id")  # fmt: skip
        return list(names), int
    position = {i: k for k, i in enumerate(ids)}
    return [str(i) for i in ids], lambda v: position[int(v)]


def _dataset(texts: list[str], labels: list, names: list[str], multi: bool = False) -> Any:
    from datasets import ClassLabel, Dataset, Features, List, Value

    label = ClassLabel(names=list(names))
    features = Features({"text": Value("string"), "label": List(label) if multi else label})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def strata(split: Any) -> np.ndarray:
    """What carving stratifies by: the label; for multi-label rows, each row's rarest label (so the rows of a
    rare label spread over the splits in proportion, as iterative stratification would do for it)."""
    values = _column(split, "label")
    if not values or not isinstance(values[0], list):
        return np.asarray(values, dtype=np.int64)
    counts = np.bincount(np.asarray([i for row in values for i in row], dtype=np.int64))
    return np.asarray([min(row, key=counts.__getitem__) if row else -1 for row in values], dtype=np.int64)


def _column(dataset: Any, name: str) -> list:
    """A column as a Python list (fast: iterating a Dataset column formats row by row)."""
    return dataset.with_format("arrow")[name].to_pylist()


def _concat(parts: list) -> Any:
    from datasets import concatenate_datasets

    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


# ---- splitting -----------------------------------------------------------------------------------------
def _split(splits: dict, cfg: DataConfig, seed: int, notes: list[str]) -> dict:
    if cfg.splits == "ratio" or "train" not in splits:
        if "train" not in splits and cfg.splits == "auto":
            notes.append("no usable train split: pooled every split and split by split_ratios")
        pooled = _concat([splits[k] for k in SPLITS if k in splits])
        if cfg.max_samples and len(pooled) > cfg.max_samples:
            pooled = _carve(pooled, cfg.max_samples, seed, notes)[1]
            notes.append(f"sampled {cfg.max_samples} rows (max_samples)")
        return _three_way(pooled, cfg.split_ratios, seed, notes)
    total = sum(len(v) for v in splits.values())
    if cfg.max_samples and total > cfg.max_samples:
        share = {k: max(1, round(cfg.max_samples * len(v) / total)) for k, v in splits.items()}
        splits = {k: _carve(v, share[k], seed, notes)[1] if share[k] < len(v) else v for k, v in splits.items()}
        notes.append(f"sampled {cfg.max_samples} rows (max_samples), each split in proportion to its size")
    r_train, r_val, r_test = cfg.split_ratios
    if set(splits) == {"train"}:
        return _three_way(splits["train"], cfg.split_ratios, seed, notes)
    if "validation" not in splits:
        n = round(len(splits["train"]) * r_val / (r_train + r_val))
        splits["train"], splits["validation"] = _carve(splits["train"], n, seed, notes)
        notes.append(f"carved validation ({n} rows) from train")
    if "test" not in splits:
        n = round(len(splits["train"]) * r_test / (r_train + r_test))
        splits["train"], splits["test"] = _carve(splits["train"], n, seed, notes)
        notes.append(f"carved test ({n} rows) from train")
    return splits


def _three_way(pooled: Any, ratios: list[float], seed: int, notes: list[str]) -> dict:
    n = len(pooled)
    n_test, n_val = max(1, round(n * ratios[2])), max(1, round(n * ratios[1]))
    if n - n_test - n_val < 1:
        raise DataError(f"data.source: only {n} usable rows: too few to split into train/validation/test")
    rest, test = _carve(pooled, n_test, seed, notes)
    train, validation = _carve(rest, n_val, seed, notes)
    return {"train": train, "validation": validation, "test": test}


def _carve(dataset: Any, n: int, seed: int, notes: list[str]) -> tuple[Any, Any]:
    """(the rest, `n` rows) drawn stratified by label, seeded; unstratified when a class is too small.

    The same draw as ``dataset.train_test_split(test_size=n, stratify_by_column="label", seed=seed)``
    (datasets' own stratified sampler and generator; a test holds the two equal), without its slow
    row-by-row read of the label column (5 s for GoEmotions' 36k training rows).
    """
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    n = max(1, n)
    if n >= len(dataset):
        raise DataError(f"data.source: cannot take {n} of only {len(dataset)} rows; use more data or other ratios")
    labels = strata(dataset)
    try:
        rng = np.random.default_rng(seed)
        rest, taken = next(stratified_shuffle_split_generate_indices(labels, len(dataset) - n, n, rng=rng))
    except ValueError:  # a class with one row, or fewer rows asked than there are classes
        notes.append("a class has too few rows to stratify by label: used a seeded random split there")
        order = np.random.default_rng(seed).permutation(len(dataset))
        taken, rest = order[:n], order[n:]
    return dataset.select(rest), dataset.select(taken)


def _balance(pooled: Any, names: list[str], cfg: DataConfig, seed: int, report: dict) -> Any:
    bal = cfg.balance
    assert bal is not None
    labels = np.asarray(_column(pooled, "label"))
    counts = np.bincount(labels, minlength=len(names))
    if bal.labels == "most_frequent":
        ranked = sorted((i for i in range(len(names)) if counts[i]), key=lambda i: (-counts[i], names[i]))
        if len(ranked) < bal.num_labels:
            raise DataError(f"data.balance.num_labels: asks for {bal.num_labels} labels; the data has {len(ranked)}")
        kept = ranked[: bal.num_labels]
    else:
        repeated = sorted({n for n in bal.labels if bal.labels.count(n) > 1})
        if repeated:
            raise DataError(f"data.balance.labels: lists {', '.join(repeated)} more than once; name "
                            f"{bal.num_labels} different labels")  # fmt: skip
        unknown = [n for n in bal.labels if n not in names]
        if unknown:
            raise DataError(f"data.balance.labels: unknown label(s) {', '.join(unknown)}; the labels are: "
                            f"{', '.join(names)}")  # fmt: skip
        kept = [names.index(n) for n in bal.labels]
    for i in kept:
        if counts[i] < bal.per_label:
            raise DataError(f"data.balance.num_samples: label '{names[i]}' has {counts[i]} rows but {bal.per_label} "
                            f"were asked ({bal.num_samples} samples / {bal.num_labels} labels); lower "
                            "num_samples or pick other labels")  # fmt: skip
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == i), bal.per_label, replace=False)
                                     for i in kept]))  # fmt: skip
    new_names = sorted(names[i] for i in kept)
    remap = {i: new_names.index(names[i]) for i in kept}
    report["dropped_other_labels"] = int(len(pooled) - counts[kept].sum())
    report["notes"].append(f"balanced: {bal.per_label} rows of each of {', '.join(new_names)} "
                           f"({bal.per_label * len(kept)} in total, before the split)")  # fmt: skip
    if bal.num_samples % bal.num_labels:
        report["notes"].append(f"balance.num_samples {bal.num_samples} is not a multiple of {bal.num_labels}: "
                               f"{bal.per_label * bal.num_labels} rows used")  # fmt: skip
    if cfg.max_samples:
        report["notes"].append("max_samples ignored: balance.num_samples sets the size")
    subset = pooled.select(chosen)
    return _dataset(_column(subset, "text"), [remap[i] for i in _column(subset, "label")], new_names)


def _fingerprint(splits: Any, names: list[str]) -> str:
    h = hashlib.sha256(json.dumps(list(names)).encode())
    for name in SPLITS:
        h.update(f"\x1d{name}".encode())
        for text, label in zip(_column(splits[name], "text"), _column(splits[name], "label"), strict=True):
            h.update(f"{label}\x1f{text}\x1e".encode())
    return h.hexdigest()[:16]
