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
- Label strings lose surrounding spaces; labels that differ only by case get a note, or become one class
  (``merge_label_case``); a label column where most of 20+ classes have one row (an id) is an error that
  names a likelier column. Texts that are objects or lists, and labels that are objects, are errors.
- ``validation_source`` / ``test_source``: separate files that give that split whole (never sampled, never
  pooled by ``splits: ratio``); their columns are their own settings, else the main column names, else
  detected. ``report["origins"]`` says where each split came from.
- Repeated texts within a split and validation/test texts also in train are counted (``report["duplicates"]``,
  ``report["leaked"]``, a note each) and dropped with ``drop_duplicates``.
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
from studio.datasource import (
    LABEL_COLUMNS,
    SAMPLES,
    TEXT_COLUMNS,
    Sample,
    columns,
    describe_source,
    find_column,
    in_memory_fingerprint,
    load_raw,
    load_split,
    nested_error,
    preview,
)
from studio.errors import DataError
from studio.tokenization import dataset_stats, label_ids, length_stats, token_lengths, tokenize

__all__ = ["SAMPLES", "Sample", "PreparedData", "load_raw", "columns", "preview", "prepare", "tokenize",
           "token_lengths", "length_stats", "dataset_stats", "TEXT_COLUMNS", "LABEL_COLUMNS", "find_column",
           "missing", "label_ids"]  # fmt: skip

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
    """Load `cfg.source` (and `validation_source` / `test_source`) and turn it into labelled
    train/validation/test splits (rules: module docstring).

    `raw`: the source as `load_raw(cfg)` returns it, when the caller has already read it.

    Raises:
        DataError: the source cannot be loaded, a column is missing, the labels are not classes, or too
            few rows/classes are left.
    """
    notes: list[str] = []
    sources = _sources(cfg, load_raw(cfg) if raw is None else raw, notes)
    text_col, label_col = sources.columns["train" if "train" in sources.columns else next(iter(sources.columns))]
    report: dict[str, Any] = {
        "source": describe_source(cfg), "text_column": text_col, "label_column": label_col, "rows_loaded": 0,
        "dropped_empty_text": 0, "dropped_missing_label": 0, "dropped_multi_label": 0, "multi_label_first": 0,
        "dropped_other_labels": 0, "rows": {}, "notes": notes,
    }  # fmt: skip
    cleaned = {name: _clean(name, split, *sources.columns[name], cfg, sources.class_names, report)
               for name, split in sources.splits.items()}  # fmt: skip
    _note_drops(report)
    task = _resolve_task(cfg, cleaned, notes)
    _label_case(cleaned, task == "multi_label", cfg, notes)
    names, splits = _labelled(cleaned, task, cfg, sources.class_names, label_col, report)
    _refuse_id_like_labels(splits, names, sources, label_col)
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
        splits = _split(splits, cfg, seed, notes, fixed=set(sources.given))
    if cfg.max_train_samples and len(splits["train"]) > cfg.max_train_samples:
        splits["train"] = _carve(splits["train"], cfg.max_train_samples, seed, notes)[1]
        notes.append(f"train capped at {cfg.max_train_samples} rows (max_train_samples)")
    _refuse_unseen_labels(splits, [k for k in sources.splits if k != "train" and k in splits], names)
    splits = _duplicates(splits, cfg, report)
    from datasets import DatasetDict

    out = DatasetDict({k: _materialised(splits[k]) for k in SPLITS})
    report["rows"] = {k: len(v) for k, v in out.items()}
    report["origins"] = _origins(cfg, sources, out)
    report["notes"] = list(dict.fromkeys(notes))
    report["task"] = task
    return PreparedData(out, list(names), _fingerprint(out, names), report, task)


@dataclass
class _Sources:
    """The raw splits a run reads, before cleaning: the source's own, and the separate files that replace them."""

    splits: dict[str, Any]
    columns: dict[str, tuple[str, str]]
    """split -> (text column, label column) in that split."""
    class_names: list[str] | None
    given: dict[str, str] = field(default_factory=dict)
    """split -> the `data.<split>_source` it came from."""
    own: list[str] = field(default_factory=list)
    """The source's own splits (train/validation/test) that are used."""


def _sources(cfg: DataConfig, raw: Any, notes: list[str]) -> _Sources:
    used = _used_splits(raw, notes)
    given = {role: getattr(cfg, f"{role}_source").source for role in ("validation", "test")
             if getattr(cfg, f"{role}_source") is not None}  # fmt: skip
    for role in given:
        if role in used:
            notes.append(f"the source's own {role} split is not used: data.{role}_source replaces it")
            del used[role]
    if not used:
        raise DataError(f"data.source: {cfg.source} gives no training rows once its splits are replaced by "
                        "data.validation_source / test_source")  # fmt: skip
    sample = SAMPLES.get(cfg.source)
    first = used["train"] if "train" in used else next(iter(used.values()))
    text_col = _pick_column(first.column_names, cfg.text_column or (sample and sample.text_column), "text")
    label_col = _pick_column(first.column_names, cfg.label_column or (sample and sample.label_column), "label")
    if text_col == label_col:
        raise DataError(f"data.label_column: '{label_col}' is also the text column; set data.label_column")
    columns = {k: (text_col, label_col) for k in used}
    splits = dict(used)
    for role in given:
        spec = getattr(cfg, f"{role}_source")
        splits[role] = load_split(cfg, role)
        found = splits[role].column_names
        columns[role] = (
            _pick_column(found, spec.text_column or (text_col if text_col in found else None), "text", role),
            _pick_column(found, spec.label_column or (label_col if label_col in found else None), "label", role),
        )
    return _Sources(splits, columns, _class_names(first.features.get(label_col)), given, list(used))


def _origins(cfg: DataConfig, sources: _Sources, out: Any) -> dict[str, str]:
    """Where each split's rows came from, in words (Inspect shows it)."""
    origins = {}
    single = sources.own == ["train"]  # one file: its rows are train, less what was carved off
    for k in SPLITS:
        if k in sources.given:
            origins[k] = f"{sources.given[k]} (data.{k}_source, {len(out[k]):,} rows)"
        elif cfg.balance is None and cfg.splits == "auto" and k in sources.own:
            origins[k] = (
                f"{cfg.source} ({len(out[k]):,} rows)" if single else f"the source's {k} split ({len(out[k]):,} rows)"
            )
        else:
            origins[k] = f"carved from {cfg.source} ({len(out[k]):,} rows)"
    return origins


def _labelled(cleaned: dict[str, tuple[list, list]], task: str, cfg: DataConfig, class_names: list[str] | None,
              label_col: str, report: dict) -> tuple[list[str], dict[str, Any]]:  # fmt: skip
    """(label names in id order, each split as a Dataset of text and label ids: one id, or a row's set)."""
    multi = task == "multi_label"
    all_labels = [v for _, labels in cleaned.values() for row in labels for v in (row if multi else [row])]
    if not all_labels and report["dropped_multi_label"]:
        raise DataError(
            f"data.multi_label: every labelled row of {cfg.source} carries several labels "
            f"({report['dropped_multi_label']:,} rows), and multi_label: drop removes such rows; set data.task: "
            "multi_label to keep every label, or data.multi_label: first to keep each row's first"
        )
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


def _pick_column(found: list[str], wanted: str | None, what: str, role: str | None = None) -> str:
    setting = f"data.{role}_source.{what}_column" if role else f"data.{what}_column"
    where = f"data.{role}_source has" if role else "the data has"
    listed = ", ".join(found)
    if wanted:
        if wanted in found:
            return wanted
        raise DataError(f"{setting}: {what} column '{wanted}' not found; {where} columns: {listed}; "
                        f"set {setting} to one of them")  # fmt: skip
    candidates = TEXT_COLUMNS if what == "text" else LABEL_COLUMNS
    column = find_column(found, candidates)
    if column is not None:
        return column
    raise DataError(f"{setting}: no {what} column found (looked for {', '.join(candidates)}); {where} columns: "
                    f"{listed}; set {setting} (or data.header: false: a file whose first line is data)")  # fmt: skip


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
    _refuse_nested(name, texts, labels, text_col, label_col)
    report["rows_loaded"] += len(texts)
    reduce = cfg.reduce_multi_label
    kept_texts, kept_labels = [], []
    for text, value in zip(texts, labels, strict=True):
        if missing(text):
            report["dropped_empty_text"] += 1
            continue
        if isinstance(value, str):  # "pos " and "pos" are one label
            value = [v.strip() for v in value.split(cfg.label_separator)] if cfg.label_separator else value.strip()
        if isinstance(value, (list, tuple, np.ndarray)):
            value = [v.item() if isinstance(v, np.generic) else v.strip() if isinstance(v, str) else v for v in value]
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


def _refuse_nested(split: str, texts: list, labels: list, text_col: str, label_col: str) -> None:
    """Texts that are objects or lists, and labels that are objects, are refused: turned into strings they
    would train on JSON. (A list of labels is a multi-label row.)"""
    for role, column, values, kinds in (("text", text_col, texts, (dict, list)), ("label", label_col, labels, dict)):
        bad = [i for i, v in enumerate(values) if isinstance(v, kinds)]
        if bad:
            raise nested_error(role, column, f"the {split} split", len(bad), f"row {bad[0] + 1}", values[bad[0]])


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
    numbers = _as_numbers(values)
    if numbers is not None:  # a CSV's "0"/"1" (every CSV cell is read as text) are the numbers 0/1
        names, to_id = _label_mapping(numbers, cfg, class_names)
        return names, lambda v: to_id(_number(v) if isinstance(v, str) else v)
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


def _as_numbers(values: list) -> list | None:
    """String labels that all read as numbers, as numbers; None when any is a word (or none is a string)."""
    if not any(isinstance(v, str) for v in values):
        return None
    try:
        return [_number(v) if isinstance(v, str) else v for v in values]
    except ValueError:
        return None


def _number(text: str) -> int | float:
    value = float(text)  # ValueError for words; "nan"/"inf" are words here
    if not np.isfinite(value):
        raise ValueError(text)
    return int(value) if value.is_integer() else value


def _label_case(cleaned: dict[str, tuple[list, list]], multi: bool, cfg: DataConfig, notes: list[str]) -> None:
    """Labels that differ only by case ("Pos", "pos"): a note naming them, or (`merge_label_case`) one class
    spelled as the listed name (data.label_names) or the most common spelling. In place."""
    from collections import Counter

    counts = Counter(v for _, labels in cleaned.values() for row in labels for v in (row if multi else [row])
                     if isinstance(v, str))  # fmt: skip
    groups: dict[str, list[str]] = {}
    for spelling in counts:
        groups.setdefault(spelling.lower(), []).append(spelling)
    variants = [sorted(g, key=lambda v: (-counts[v], v)) for g in groups.values() if len(g) > 1]
    if not variants:
        return
    shown = "; ".join(" and ".join(f"'{v}' ({counts[v]:,} rows)" for v in g) for g in variants[:3])
    if not cfg.merge_label_case:
        notes.append(f"labels that differ only by case are separate classes: {shown}; set data.merge_label_case: "
                     "true to merge them")  # fmt: skip
        return
    listed = set(cfg.label_names or ())
    to = {v: next((x for x in g if x in listed), g[0]) for g in variants for v in g}
    for _, labels in cleaned.values():
        labels[:] = [list(dict.fromkeys(to.get(v, v) for v in row)) if multi else to.get(row, row) for row in labels]
    notes.append(f"merged labels that differ only by case (data.merge_label_case): {shown}")


def _refuse_id_like_labels(splits: dict, names: list[str], sources: _Sources, label_col: str) -> None:
    """A label column where most classes have a single row (an id, a free-text column) would train for minutes
    to nothing: refused, naming a column that looks more like labels."""
    rows = np.bincount(np.asarray([i for k in splits for i in label_ids(splits[k])], dtype=np.int64),
                       minlength=len(names))  # fmt: skip
    single = int((rows < 2).sum())
    if len(names) < 20 or single <= len(names) / 2:
        return
    first = sources.splits["train" if "train" in sources.splits else next(iter(sources.splits))]
    text_col = sources.columns["train" if "train" in sources.columns else next(iter(sources.columns))][0]
    sample = first.select(range(min(len(first), 5000)))
    distinct = {}
    for column in sample.column_names:
        if column not in (text_col, label_col):
            values = {json.dumps(v, default=str) for v in _column(sample, column) if not missing(v)}
            if 2 <= len(values) <= max(2, min(100, len(sample) // 5)):
                distinct[column] = len(values)
    better = min(distinct, key=lambda c: (c not in LABEL_COLUMNS, distinct[c])) if distinct else None
    hint = (f"'{better}' ({distinct[better]} values) looks like the label: set data.label_column: {better}" if better
            else "set data.label_column to the column that holds the classes")  # fmt: skip
    raise DataError(
        f"data.label_column: '{label_col}' has {len(names):,} different values and {single:,} of them occur only "
        f"once: that is an id or a free text, not a class to learn; {hint}"
    )


def _dataset(texts: list[str], labels: list, names: list[str], multi: bool = False) -> Any:
    import pyarrow as pa
    from datasets import ClassLabel, Dataset, DatasetInfo, Features, List, Value
    from datasets.table import InMemoryTable

    label = ClassLabel(names=list(names))
    features = Features({"text": Value("string"), "label": List(label) if multi else label})
    # The ids are valid by construction: straight into Arrow, not `Dataset.from_dict`'s row-by-row encoding
    # (1.9 s of a 248,000-row CSV's prepare).
    table = pa.table({"text": pa.array(texts, pa.string()), "label": pa.array(labels, features.arrow_schema.field(
        "label").type)}, schema=features.arrow_schema)  # fmt: skip
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=features), fingerprint=in_memory_fingerprint())


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
    from studio.tokenization import arrow_column

    return arrow_column(dataset, name).to_pylist()


def _materialised(dataset: Any) -> Any:
    """`dataset` with the rows its selections chose laid out in order (no indices mapping). Not
    `Dataset.flatten_indices`: that runs `map`, which casts every row on its own (16 s of a 248,000-row CSV's
    17 s prepare); one Arrow `take` of the same rows is 0.1 s. The indices table is `datasets`' own (private)."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    indices = getattr(dataset, "_indices", None)
    if indices is None:
        return dataset
    table = InMemoryTable(dataset.data.table.take(indices.column(0)))
    return Dataset(table, info=dataset.info.copy(), fingerprint=in_memory_fingerprint())


def _concat(parts: list) -> Any:
    from datasets import concatenate_datasets

    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


# ---- splitting -----------------------------------------------------------------------------------------
def _split(splits: dict, cfg: DataConfig, seed: int, notes: list[str], fixed: set[str] = frozenset()) -> dict:
    """Train/validation/test from the cleaned splits; `fixed` ones (separate files) are used as they are."""
    kept = {k: splits[k] for k in fixed}
    own = {k: v for k, v in splits.items() if k not in fixed}
    if cfg.splits == "ratio" or "train" not in own:
        if "train" not in own and cfg.splits == "auto":
            notes.append("no usable train split: pooled every split and split by split_ratios")
        pooled = _concat([own[k] for k in SPLITS if k in own])
        if cfg.max_samples and len(pooled) > cfg.max_samples:
            pooled = _carve(pooled, cfg.max_samples, seed, notes)[1]
            notes.append(f"sampled {cfg.max_samples} rows (max_samples)")
        if not kept:
            return _three_way(pooled, cfg.split_ratios, seed, notes)
        own = {"train": pooled}
    elif cfg.max_samples and (total := sum(len(v) for v in own.values())) > cfg.max_samples:
        share = {k: max(1, round(cfg.max_samples * len(v) / total)) for k, v in own.items()}
        own = {k: _carve(v, share[k], seed, notes)[1] if share[k] < len(v) else v for k, v in own.items()}
        notes.append(f"sampled {cfg.max_samples} rows (max_samples), each split in proportion to its size"
                     + (" (separate validation/test files are used whole)" if kept else ""))  # fmt: skip
    splits = {**own, **kept}
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


def _duplicates(splits: dict, cfg: DataConfig, report: dict) -> dict:
    """Count repeated texts in each split and validation/test texts that are also in train (leakage), into
    ``report["duplicates"]`` / ``report["leaked"]`` with a note each; drop them with `data.drop_duplicates`."""
    texts = {k: [t.strip() for t in _column(splits[k], "text")] for k in SPLITS}
    in_train = set(texts["train"])
    repeated, leaked, keep = {}, {}, {}
    for k in SPLITS:
        seen: set[str] = set()
        first = [not (t in seen or seen.add(t)) for t in texts[k]]  # type: ignore[func-returns-value]
        repeated[k] = first.count(False)
        outside = [k == "train" or t not in in_train for t in texts[k]]
        if k != "train":
            leaked[k] = outside.count(False)
        keep[k] = [a and b for a, b in zip(first, outside, strict=True)]
    report["duplicates"], report["leaked"] = repeated, leaked
    action = "dropped (data.drop_duplicates)" if cfg.drop_duplicates else "set data.drop_duplicates: true to drop them"
    for k, n in repeated.items():
        if n:
            report["notes"].append(f"{k} has {_count(n, 'repeated text')} (a text seen earlier in {k}): {action}")
    for k, n in leaked.items():
        if n:
            report["notes"].append(f"{_count(n, f'{k} row')} {'has' if n == 1 else 'have'} a text that is also in "
                                   f"train (leakage: {k} scores flatter the model): {action}")  # fmt: skip
    if not cfg.drop_duplicates:
        return splits
    return {k: splits[k].select(np.flatnonzero(keep[k])) if not all(keep[k]) else splits[k] for k in SPLITS}


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


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _fingerprint(splits: Any, names: list[str]) -> str:
    h = hashlib.sha256(json.dumps(list(names)).encode())
    for name in SPLITS:
        h.update(f"\x1d{name}".encode())
        for text, label in zip(_column(splits[name], "text"), _column(splits[name], "label"), strict=True):
            h.update(f"{label}\x1f{text}\x1e".encode())
    return h.hexdigest()[:16]
