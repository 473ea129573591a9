"""Token ids for training, and statistics of prepared data (rows, labels, token lengths).

Tokenized splits are cached on disk, keyed by the data's fingerprint, ``max_length`` and the tokenizer's
identity, so a second run on the same data and model skips tokenization (see `tokenize`). No padding here:
``transformers.DataCollatorWithPadding`` pads each batch to its own longest row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from studio.data import PreparedData


def _column(dataset: Any, name: str) -> list:
    """A column as a Python list (fast: iterating a Dataset column formats row by row)."""
    return arrow_column(dataset, name).to_pylist()


def arrow_column(dataset: Any, name: str) -> Any:
    """A column as Arrow, in the dataset's row order. A selection (`select`, a carved split) is one Arrow
    `take` of its indices, which are `datasets`' own (private) table: its formatter gathers them in Python
    batches, 10x slower on 200,000 rows."""
    indices = getattr(dataset, "_indices", None)
    if indices is None:
        return dataset.data.table.column(name)
    return dataset.data.table.column(name).take(indices.column(0))


def label_ids(split: Any) -> list[int]:
    """Every label id of a split, once per row it occurs in (multi-label rows give each of theirs)."""
    values = _column(split, "label")
    return [i for row in values for i in row] if values and isinstance(values[0], list) else values


FORMAT = 2
"""Bumped when the cached columns change (2: input_ids and labels only)."""


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash that changes whenever the tokenizer would produce other ids for the same text."""
    if getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
        digest = _fast_state_digest(tokenizer.backend_tokenizer.to_str()).copy()
    else:
        init = getattr(tokenizer, "init_kwargs", {})
        body = json.dumps([sorted(tokenizer.get_vocab().items()), {k: repr(v) for k, v in sorted(init.items())}])
        digest = hashlib.sha256(body.encode())
    digest.update(json.dumps([type(tokenizer).__name__, list(tokenizer.all_special_tokens)]).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _fast_state_digest(raw: str) -> Any:
    """sha256 fed with a fast tokenizer's serialized state, its per-call settings left out, keyed by that state:
    a run asks twice (tokens, lengths), and the 1.5 MB state of a byte-level BPE took 0.3 s to re-read each time."""
    state = json.loads(raw)
    for per_call in ("truncation", "padding"):  # set by each call, so not part of the identity
        state.pop(per_call, None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode())


def tokenize(data: PreparedData, tokenizer: Any, max_length: int, cache_dir: str | Path | None) -> tuple[Any, bool]:
    """Token ids of every split, unpadded (the collator pads each batch), truncated at `max_length`.

    Returns:
        (DatasetDict with input_ids and labels; whether it came from the cache). The cache key covers the
        cache format, the data's fingerprint, `max_length` and the tokenizer's identity; entries live in
        ``cache_dir/tokenized/<key>`` and are written to a temporary folder first, then renamed, so a reader
        never sees half an entry.
    """
    from datasets import DatasetDict, load_from_disk

    key = f"{FORMAT}|{data.fingerprint}|{max_length}|{tokenizer_identity(tokenizer)}"
    key = hashlib.sha256(key.encode()).hexdigest()
    target = Path(cache_dir) / "tokenized" / key[:32] if cache_dir is not None else None
    if target is not None and (target / "dataset_dict.json").is_file():
        return load_from_disk(str(target)), True
    out = DatasetDict({name: _encode(split, tokenizer, max_length) for name, split in data.splits.items()})
    if target is not None:
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        out.save_to_disk(str(tmp))
        try:
            tmp.rename(target)  # atomic on one filesystem
        except OSError:  # another process finished the same entry first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    return out, False


def _encode(split: Any, tokenizer: Any, max_length: int) -> Any:
    """input_ids (int32 lists) and labels of one split.

    One call of the fast tokenizer over the whole split, straight into Arrow: `Dataset.map` in batches spent
    3.6 s converting and writing Python lists for 20,000 IMDb reviews on 2 cores, this 0.5 s (the tokenizing
    itself, ~9 s there, runs on every core). Only the ids are kept: the collator makes each batch's attention
    mask, and models fill absent token_type_ids with zeros, which is all a single-text tokenizer makes.
    """
    import pyarrow as pa
    from datasets import Dataset

    ids = encode_ids(tokenizer, _column(split, "text"), max_length)
    labels = split.with_format("arrow")["label"]
    if pa.types.is_list(labels.type):  # multi-label: a 0/1 float per label (binary cross-entropy's targets)
        labels = pa.array(multi_hot(labels.to_pylist(), split.features["label"].feature.num_classes).tolist(),
                          type=pa.list_(pa.float32()))  # fmt: skip
    return Dataset.from_dict({"input_ids": pa.array(ids, type=pa.list_(pa.int32())), "labels": labels})


def encode_ids(tokenizer: Any, texts: list[str], max_length: int | None) -> list[list[int]]:
    """Token ids of `texts` (special tokens added), truncated at `max_length` (None: not truncated): what
    ``tokenizer(texts, truncation=True, max_length=...)["input_ids"]`` gives, faster.

    A fast tokenizer's Rust backend is called directly, on a copy (the tokenizer's own backend keeps its
    settings), with ``encode_batch_fast`` (no character offsets): transformers' call converts each row's
    encoding in Python (0.7 s of 20,000 IMDb reviews on one core, which more cores do not shorten) and the
    offsets cost the Rust part ~15%. Other tokenizers take the ordinary call.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False}
        return tokenizer(texts, return_attention_mask=False, return_token_type_ids=False, verbose=False,
                         **kwargs)["input_ids"]  # fmt: skip
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    if max_length:
        copy.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
    else:
        copy.no_truncation()
    return [e.ids for e in copy.encode_batch_fast(texts, add_special_tokens=True)]


def multi_hot(rows: list[list[int]], k: int) -> np.ndarray:
    """(n, k) float32 of 0/1: row i has a 1 at each of its label ids."""
    out = np.zeros((len(rows), k), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, row] = 1.0
    return out


def token_lengths(texts: list[str], tokenizer: Any, sample: int = 2000, seed: int = 0) -> list[int]:
    """Untruncated token counts (special tokens included) of up to `sample` texts, drawn seeded."""
    texts = list(texts)
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    if not texts:
        return []
    return [len(ids) for ids in encode_ids(tokenizer, texts, None)]


def length_stats(lengths: list[int], max_length: int) -> dict[str, float]:
    """Percentiles, max and mean of token lengths, and the share of texts longer than `max_length`."""
    arr = np.asarray(lengths, dtype=float)
    if arr.size == 0:
        return {"count": 0, "max_length": max_length, "truncated_share": 0.0}
    p10, p50, p90, p95, p99 = (float(x) for x in np.percentile(arr, [10, 50, 90, 95, 99]))
    return {"count": int(arr.size), "p10": p10, "p50": p50, "p90": p90, "p95": p95, "p99": p99,
            "max": int(arr.max()), "mean": float(arr.mean()), "max_length": max_length,
            "truncated_share": float((arr > max_length).mean())}  # fmt: skip


def cached_token_lengths(data: PreparedData, tokenizer: Any, cache_dir: str | Path | None) -> list[int]:
    """`token_lengths` of the training split (its default sample), kept in ``cache_dir/lengths/`` under the
    data's fingerprint and the tokenizer's identity, like the tokenized splits: a second run of the same data and
    tokenizer reads them (the 2,000 texts took 1.4 s to tokenize again on 2 cores)."""
    if cache_dir is None:
        return token_lengths(_column(data.splits["train"], "text"), tokenizer)
    key = hashlib.sha256(f"{FORMAT}|{data.fingerprint}|{tokenizer_identity(tokenizer)}".encode()).hexdigest()
    path = Path(cache_dir) / "lengths" / f"{key[:32]}.json"
    try:
        return [int(n) for n in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):  # absent, or not a list of numbers: measure again
        pass
    lengths = token_lengths(_column(data.splits["train"], "text"), tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(lengths))
    tmp.replace(path)  # atomic: a reader sees all of it or none
    return lengths


def dataset_stats(data: PreparedData, tokenizer: Any = None, max_length: int | None = None,
                  cache_dir: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Rows and label counts per split (multi-label: rows carrying each label, and the mean labels per row);
    token-length statistics of train when a tokenizer is given (cached in `cache_dir` when given).

    Without `max_length`, the truncated share is measured against the tokenizer's ``model_max_length``.
    """
    stats: dict[str, Any] = {"rows": {}, "labels": {}, "task": data.task}
    for name, split in data.splits.items():
        ids = label_ids(split)
        counts = np.bincount(np.asarray(ids, dtype=int), minlength=len(data.label_names))
        stats["rows"][name] = len(split)
        stats["labels"][name] = {label: int(c) for label, c in zip(data.label_names, counts, strict=True)}
        if data.multi_label:
            stats.setdefault("labels_per_row", {})[name] = round(len(ids) / max(len(split), 1), 4)
    if tokenizer is not None:
        limit = max_length or int(min(getattr(tokenizer, "model_max_length", 512), 1_000_000))
        lengths = cached_token_lengths(data, tokenizer, cache_dir)
        stats["token_lengths"] = length_stats(lengths, limit)
    return stats
