"""Where rows come from: shipped samples, local files and folders, Hugging Face Hub datasets.

`load_raw` returns the source as it is (every column, its own splits), with split names normalised
(``dev``/``valid``/``val`` -> ``validation``). What the rows mean (columns, labels, splits) is decided in
`studio.data`. Local files are read here rather than through ``datasets.load_dataset`` so that a bad file
gives one clear `DataError` (wrong encoding, empty, corrupt) and nothing is written to the datasets cache.

Sources, in the order they are tried:
- a `SAMPLES` name (``imdb-sample``, ``goemotions``), shipped in ``assets/data``;
- an existing path: a ``.csv``/``.tsv``/``.jsonl``/``.json``/``.parquet`` file (the text formats may be
  gzipped, e.g. ``reviews.csv.gz``) -> one ``train`` split; a folder written by ``save_to_disk``; a folder of
  data files whose names give the splits (``train.csv``, ``dev.csv``, ``test-00000-of-00001.parquet``, ...);
  a folder of other data files -> all pooled into ``train``;
- anything else that does not look like a path: a Hub dataset id (``stanfordnlp/imdb``).
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.config import DataConfig
from studio.errors import DataError

if TYPE_CHECKING:
    import datasets
    import pandas as pd

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "data"
TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
SUFFIXES = (*TEXT_SUFFIXES, ".parquet")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip
# A source that isn't an existing path is taken for a Hub id unless it clearly means a file.
_FILE_LIKE_SUFFIXES = (*SUFFIXES, ".gz", ".txt", ".xlsx", ".xls", ".zip", ".arrow", ".pkl")


@dataclass(frozen=True)
class Sample:
    """A dataset shipped with the studio (see assets/data/README.md)."""

    name: str
    path: Path
    text_column: str
    label_column: str
    description: str


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("imdb-sample", ASSETS / "imdb_sample.csv.gz", "review", "sentiment",
               "IMDb movie reviews, positive/negative (3,180 rows, train only)"),
        Sample("goemotions", ASSETS / "goemotions", "text", "labels",
               "GoEmotions Reddit comments, 27 emotions + neutral, multi-label; own train/validation/test "
               "(43,410 / 5,426 / 5,427 rows)"),
    )
}  # fmt: skip


def load_raw(cfg: DataConfig) -> datasets.DatasetDict:
    """The source as-is: all its columns and splits, split names normalised.

    Raises:
        DataError: the file is missing, empty, not UTF-8, corrupt or of an unknown type; or the Hub
            dataset cannot be loaded.
    """
    sample = SAMPLES.get(cfg.source)
    path = sample.path if sample else Path(cfg.source).expanduser()
    if sample or path.exists():
        return _load_path(path)
    if looks_like_path(cfg.source):
        raise DataError(f"data.source: file not found: {cfg.source}")
    return _load_hub(cfg.source, cfg.hub_config)


def columns(cfg: DataConfig) -> list[str]:
    """Column names of the raw source (those of its train split, or of its first split)."""
    return list(_first_split(load_raw(cfg)).column_names)


def preview(cfg: DataConfig, n: int = 20) -> pd.DataFrame:
    """The first `n` raw rows of the train split (or of the first split), every column."""
    split = _first_split(load_raw(cfg))
    return split.select(range(min(n, len(split)))).to_pandas()


def describe_source(cfg: DataConfig) -> str:
    """One line for reports: what `cfg.source` is."""
    if cfg.source in SAMPLES:
        return f"sample '{cfg.source}': {SAMPLES[cfg.source].description}"
    path = Path(cfg.source).expanduser()
    if path.exists():
        return f"{'folder' if path.is_dir() else 'file'} {path}"
    return f"Hugging Face Hub dataset '{cfg.source}'" + (f" ({cfg.hub_config})" if cfg.hub_config else "")


def _first_split(raw: datasets.DatasetDict) -> datasets.Dataset:
    return raw["train"] if "train" in raw else next(iter(raw.values()))


def looks_like_path(source: str) -> bool:
    """Whether `data.source` names a local file or folder rather than a Hub dataset id, by its form alone
    (the path need not exist)."""
    if source.startswith(("/", "./", "../", "~", ".\\")) or "\\" in source or source.count("/") > 1:
        return True
    suffix = Path(source).suffix.lower()
    # "owner/name.v2" is a valid Hub id; a bare "reviews.xlsx" or any known data suffix is a file
    return suffix in _FILE_LIKE_SUFFIXES or (bool(suffix) and "/" not in source)


def _split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name.lower(), name)


# ---- local files ---------------------------------------------------------------------------------------
def _load_path(path: Path) -> datasets.DatasetDict:
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

    if not path.is_dir():
        return DatasetDict({"train": _read_file(path)})
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        try:
            loaded = load_from_disk(str(path))
        except Exception as e:  # arrow/JSON errors of a damaged folder
            raise DataError(f"data.source: {path} is not a readable saved dataset: {_reason(e)}") from None
        if isinstance(loaded, Dataset):
            return DatasetDict({"train": loaded})
        return DatasetDict({_split_name(k): v for k, v in loaded.items()})
    files = sorted(p for p in path.iterdir() if p.is_file() and _data_suffix(p) in SUFFIXES)
    if not files:
        raise DataError(f"data.source: the folder {path} holds no data files ({', '.join(SUFFIXES)})")
    named = {f: _split_of_file(f) for f in files}
    if any(named.values()):
        others = [f.name for f, split in named.items() if split is None]
        if others:
            raise DataError(
                f"data.source: the folder {path} mixes split files (train, validation/dev, test) with others "
                f"({', '.join(others)}); move those out or name them after a split"
            )
        groups: dict[str, list[Path]] = {}
        for f, split in named.items():
            groups.setdefault(split, []).append(f)  # type: ignore[arg-type]
    else:
        groups = {"train": files}
    out = {}
    for split in sorted(groups, key=["train", "validation", "test"].index):
        parts = [_read_file(f) for f in groups[split]]
        try:
            out[split] = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        except ValueError as e:
            names = ", ".join(f.name for f in groups[split])
            raise DataError(f"data.source: {names} have different columns or types: {_reason(e)}") from None
    return DatasetDict(out)


def _split_of_file(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    for candidate in (stem, stem.split("-")[0], stem.split("_")[0]):  # "test-00000-of-00001" is a test shard
        if candidate in SPLIT_ALIASES:
            return SPLIT_ALIASES[candidate]
    return None


def _data_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] == ".gz" and suffixes[-2] in TEXT_SUFFIXES:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _read_file(path: Path) -> datasets.Dataset:
    import pyarrow as pa
    from datasets import Dataset

    suffix = _data_suffix(path)
    if suffix not in SUFFIXES:
        shown = "".join(path.suffixes[-2:]) or "(none)"
        raise DataError(
            f"data.source: {path.name} has an unsupported file type '{shown}'; supported: "
            f"{', '.join(SUFFIXES)} (.csv, .tsv, .jsonl and .json may be gzipped: .csv.gz)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"data.source: {path.name} is empty (0 bytes)")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            _refuse_duplicate_columns(path, table.column_names)
        else:
            table = _read_text_table(path, suffix)
        dataset = Dataset(table)
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(
            f"data.source: {path.name} is not UTF-8 text (undecodable byte at position {e.start}); "
            "re-save it as UTF-8 (e.g. in a spreadsheet: Save As > CSV UTF-8)"
        ) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        kind = "Parquet" if suffix == ".parquet" else suffix.lstrip(".").upper()
        raise DataError(f"data.source: {path.name} is not a readable {kind} file: {_reason(e)}") from None
    except (OSError, ValueError, EOFError) as e:  # gzip/CSV parser errors
        raise DataError(f"data.source: {path.name} could not be read: {_reason(e)}") from None
    if len(dataset) == 0:
        raise DataError(f"data.source: {path.name} is empty (no rows)")
    return dataset


def _refuse_duplicate_columns(path: Path, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"data.source: {path.name} has more than one column named {', '.join(repr(n) for n in repeated)}; "
            "give each column its own name in the header"
        )


def _read_text_table(path: Path, suffix: str) -> object:
    import pandas as pd
    import pyarrow as pa

    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig")  # strict: a wrong encoding must not silently garble the texts
    if not text.strip():
        raise DataError(f"data.source: {path.name} is empty (no rows)")
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        try:
            # only empty cells are missing: a review reading "NA" or "null" is text
            frame = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise DataError(f"data.source: {path.name} is empty (no rows)") from None
        except pd.errors.ParserError as e:
            raise DataError(f"data.source: {path.name} is not valid {suffix[1:].upper()}: {_reason(e)}") from None
        # pandas renames a repeated header ("text", "text.1"), which would train on one of them silently
        header = pd.read_csv(io.StringIO(text), sep=sep, header=None, nrows=1, keep_default_na=False, dtype=str)
        _refuse_duplicate_columns(path, header.iloc[0].tolist())
        return pa.Table.from_pandas(frame, preserve_index=False)
    return pa.Table.from_pylist(_json_records(path.name, text))


def _json_records(name: str, text: str) -> list[dict]:
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON lines: one object per line
        if isinstance(whole, list):
            return whole
        if isinstance(whole, dict) and all(isinstance(v, list) for v in whole.values()):
            keys = list(whole)
            return [dict(zip(keys, row, strict=True)) for row in zip(*whole.values(), strict=True)]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"data.source: {name} line {number} is not valid JSON: {e.msg}") from None
            if not isinstance(records[-1], dict):
                raise DataError(f'data.source: {name} line {number} is not a JSON object ({{"text": ...}})')
    return records


# ---- the Hub -------------------------------------------------------------------------------------------
def _load_hub(source: str, hub_config: str | None) -> datasets.DatasetDict:
    import datasets

    try:
        loaded = datasets.load_dataset(source, hub_config)
    except Exception as e:  # the Hub client raises many kinds (connection, not found, gated, bad config)
        raise DataError(
            f"data.source: could not load '{source}' from the Hugging Face Hub: {_reason(e)}; check the id "
            "(and data.hub_config), or use a local file"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    return datasets.DatasetDict({_split_name(k): v for k, v in loaded.items()})


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
