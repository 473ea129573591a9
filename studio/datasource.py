"""Where rows come from: shipped samples, local files and folders, Hugging Face Hub datasets.

`load_raw` returns the source as it is (every column, its own splits), with split names normalised
(``dev``/``valid``/``val`` -> ``validation``). What the rows mean (columns, labels, splits) is decided in
`studio.data`. Local files are read here rather than through ``datasets.load_dataset`` so that a bad file
gives one clear `DataError` (wrong encoding, empty, corrupt) and nothing is written to the datasets cache.

Sources, in the order they are tried:
- a `SAMPLES` name (``imdb-sample``, ``goemotions``), shipped in ``assets/data``;
- an existing path: a ``.csv``/``.tsv``/``.txt``/``.jsonl``/``.json``/``.parquet`` file -> one ``train`` split
  (what a file is comes from its first bytes: gzip/bz2/xz are decompressed whatever the name, a spreadsheet
  or archive named ``.csv`` is refused naming what it is; delimited text is read as strings, its separator
  and header as ``data.delimiter``/``data.header`` say or as detected; see docs/data.md); a folder written
  by ``save_to_disk``; a folder of data files whose names give the splits (``train.csv``, ``dev.csv``,
  ``test-00000-of-00001.parquet``, ...);
  a folder of other data files -> all pooled into ``train``;
- anything else that does not look like a path: a Hub dataset id (``stanfordnlp/imdb``).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.config import DataConfig, SplitSource
from studio.errors import DataError

if TYPE_CHECKING:
    import datasets
    import pandas as pd

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "data"
TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")
SUFFIXES = (*TEXT_SUFFIXES, ".parquet")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test"}  # fmt: skip
# A source that isn't an existing path is taken for a Hub id unless it clearly means a file.
_FILE_LIKE_SUFFIXES = (*SUFFIXES, ".gz", ".bz2", ".xz", ".xlsx", ".xls", ".zip", ".arrow", ".pkl")
_COMPRESSED = (".gz", ".bz2", ".xz")
TEXT_COLUMNS = ("text", "sentence", "review", "content", "comment", "document")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "category", "target")


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


@dataclass(frozen=True)
class ReadOptions:
    """How to read one file: the `data` settings that shape reading, and the columns a run will use (a JSON
    record lacking one of them is refused while reading, where its line is known)."""

    header: bool | None = None
    delimiter: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    label_file: str | None = None
    check_columns: bool = True
    """False: rows lacking the text or label come through as None (predict marks them instead)."""

    @classmethod
    def of(cls, cfg: DataConfig, spec: SplitSource | None = None, check_columns: bool = True) -> ReadOptions:
        sample = SAMPLES.get(spec.source if spec else cfg.source)
        text = (spec and spec.text_column) or cfg.text_column or (sample and sample.text_column) or None
        label = (spec and spec.label_column) or cfg.label_column or (sample and sample.label_column) or None
        return cls(cfg.header, cfg.delimiter, text, label, spec.label_file if spec else cfg.label_file, check_columns)

    def names_a_column(self, fields: list[str]) -> bool:
        """Whether a first line's fields look like column names (one is a known or configured column)."""
        known = {n.lower() for n in (*TEXT_COLUMNS, *LABEL_COLUMNS, self.text_column or "", self.label_column or "")}
        return any(f.strip().lower() in known for f in fields)


def load_raw(cfg: DataConfig, check_columns: bool = True) -> datasets.DatasetDict:
    """The source as-is: all its columns and splits, split names normalised.

    `check_columns`: refuse JSON records that lack the text or label column (False: they read as None).

    Raises:
        DataError: the file is missing, empty, not UTF-8, corrupt or of an unknown type; or the Hub
            dataset cannot be loaded.
    """
    return _load(cfg.source, cfg.hub_config, ReadOptions.of(cfg, check_columns=check_columns), "data.source")


def load_split(cfg: DataConfig, role: str) -> datasets.Dataset:
    """The split that `data.validation_source` or `data.test_source` (`role`: validation or test) gives.

    Raises:
        DataError: as `load_raw`, naming the setting; or the source has several splits and none is named
            like `role` (set its `split`).
    """
    spec: SplitSource = getattr(cfg, f"{role}_source")
    setting = f"data.{role}_source"
    raw = _load(spec.source, spec.hub_config, ReadOptions.of(cfg, spec), setting)
    if spec.split is not None:
        if _split_name(spec.split) not in raw:
            raise DataError(f"{setting}.split: '{spec.split}' is not a split of {spec.source}; it has "
                            f"{', '.join(raw)}")  # fmt: skip
        return raw[_split_name(spec.split)]
    if len(raw) == 1:
        return next(iter(raw.values()))
    if role in raw:
        return raw[role]
    raise DataError(f"{setting}: {spec.source} has several splits ({', '.join(raw)}); choose one with "
                    f"{setting}.split")  # fmt: skip


def _load(source: str, hub_config: str | None, opts: ReadOptions, setting: str) -> datasets.DatasetDict:
    sample = SAMPLES.get(source)
    path = sample.path if sample else Path(source).expanduser()
    try:
        if sample or path.exists():
            if opts.label_file and path.is_dir():
                raise DataError("data.label_file: pairs with a single text file (one text per line), not a folder")
            return _load_path(path, opts)
        if looks_like_path(source):
            raise DataError(f"data.source: file not found: {source}")
        return _load_hub(source, hub_config)
    except DataError as e:
        if setting == "data.source" or not str(e).startswith("data.source"):
            raise
        raise DataError(setting + str(e)[len("data.source") :]) from None


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


def _split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name.lower(), name)


# ---- local files ---------------------------------------------------------------------------------------
def _load_path(path: Path, opts: ReadOptions) -> datasets.DatasetDict:
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

    if not path.is_dir():
        return DatasetDict({"train": _read_file(path, opts)})
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
        parts = [_read_file(f, opts) for f in groups[split]]
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
    if len(suffixes) > 1 and suffixes[-1] in _COMPRESSED and suffixes[-2] in TEXT_SUFFIXES:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def in_memory_fingerprint() -> str:
    """A `datasets` fingerprint for a table built in memory. Without one, `Dataset(...)` hashes the whole table
    by pickling it (0.4 s of the 1.2 s prepare of 20,000 IMDb reviews, in five such hashes). `datasets` only
    names cache files by it, and in-memory datasets write none: a random one (what `datasets` itself falls back
    to when a table cannot be hashed) serves. The studio's own identity of the data is
    `data.PreparedData.fingerprint`, a hash of the texts and labels."""
    from datasets.fingerprint import generate_random_fingerprint

    return generate_random_fingerprint()


def _read_file(path: Path, opts: ReadOptions) -> datasets.Dataset:
    import pyarrow as pa
    from datasets import Dataset

    suffix = _data_suffix(path)
    if suffix not in SUFFIXES:
        shown = "".join(path.suffixes[-2:]) or "(none)"
        raise DataError(
            f"data.source: {path.name} has an unsupported file type '{shown}'; supported: "
            f"{', '.join(SUFFIXES)} (the text formats may be gzipped: .csv.gz, or bz2/xz)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"data.source: {path.name} is empty (0 bytes)")
    try:
        raw = path.read_bytes()
        kind = _content_kind(raw)
        if suffix == ".parquet" or kind == "parquet":  # a Parquet file is read as one whatever its name
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(raw))
            _refuse_duplicate_columns(path, table.column_names)
        else:
            table = _read_text_table(path, suffix, _decompressed(path, raw, kind), opts)
        dataset = Dataset(table, fingerprint=in_memory_fingerprint())
    except DataError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        kind = "Parquet" if suffix == ".parquet" else suffix.lstrip(".").upper()
        raise DataError(f"data.source: {path.name} is not a readable {kind} file: {_reason(e)}") from None
    except (OSError, ValueError, EOFError) as e:  # decompression/CSV parser errors
        raise DataError(f"data.source: {path.name} could not be read: {_reason(e)}") from None
    if len(dataset) == 0:
        raise DataError(f"data.source: {path.name} is empty (no rows)")
    return dataset


# What a file is, by its first bytes (the name can lie: a spreadsheet saved as "reviews.csv"). Hand-written:
# the file-type libraries (python-magic, filetype) need libmagic or know no data formats, and this is a table.
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PAR1", "parquet"),
          (b"PK\x03\x04", "zip"), (b"\xd0\xcf\x11\xe0", "ole"), (b"%PDF", "pdf"), (b"\x28\xb5\x2f\xfd", "zstd"),
          (b"7z\xbc\xaf", "7z"), (b"Rar!", "rar"), (b"SQLite format 3", "sqlite"))  # fmt: skip
_DECOMPRESS = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}
_NOT_TEXT = {
    "ole": ("an old-format Office file (.xls or .doc)", "open it and save it as CSV UTF-8"),
    "pdf": ("a PDF document", "export its table as CSV UTF-8"),
    "zstd": ("a Zstandard archive", "decompress it first (gzip, bz2 and xz are read directly)"),
    "7z": ("a 7-Zip archive", "extract it and point data.source at the file inside"),
    "rar": ("a RAR archive", "extract it and point data.source at the file inside"),
    "sqlite": ("an SQLite database", "export the table as CSV UTF-8"),
}


def _content_kind(raw: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC if raw.startswith(magic)), None)


def _decompressed(path: Path, raw: bytes, kind: str | None) -> bytes:
    """The file's bytes, decompressed when its content is gzip/bz2/xz whatever its name says; other binary
    content (a spreadsheet, an archive, a PDF) is refused, naming what the file really is."""
    if kind in _DECOMPRESS:
        inner = _DECOMPRESS[kind](raw)
        inner_kind = _content_kind(inner)  # a compressed spreadsheet is still a spreadsheet
        return _decompressed(path, inner, inner_kind) if inner_kind in ("zip", *_NOT_TEXT) else inner
    if kind == "zip":
        import zipfile

        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
        if any(n.startswith("xl/") for n in names):
            what, fix = "an Excel workbook (.xlsx)", "open it and save it as CSV UTF-8 (File > Save As > CSV UTF-8)"
        elif any(n.startswith("word/") for n in names):
            what, fix = "a Word document (.docx)", "copy its table into a spreadsheet and save it as CSV UTF-8"
        elif "content.xml" in names:
            what, fix = "an OpenDocument file (.ods/.odt)", "open it and save it as CSV UTF-8"
        else:
            what, fix = "a zip archive", "extract it and point data.source at the file inside"
        raise DataError(f"data.source: {path.name} is {what}, not {_data_suffix(path)[1:].upper()} text; {fix}")
    if kind in _NOT_TEXT:
        what, fix = _NOT_TEXT[kind]
        raise DataError(f"data.source: {path.name} is {what}, not {_data_suffix(path)[1:].upper()} text; {fix}")
    return raw


def _decoded(path: Path, raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark ("Unicode text" exports)
        return raw.decode("utf-16")
    try:
        text = raw.decode("utf-8-sig")  # strict: a wrong encoding must not silently garble the texts
    except UnicodeDecodeError as e:
        raise DataError(
            f"data.source: {path.name} is not UTF-8 text (undecodable byte at position {e.start}); "
            "re-save it as UTF-8 (e.g. in a spreadsheet: Save As > CSV UTF-8)"
        ) from None
    if not text.strip():
        raise DataError(f"data.source: {path.name} is empty (no rows)")
    return text


def _refuse_duplicate_columns(path: Path, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"data.source: {path.name} has more than one column named {', '.join(repr(n) for n in repeated)}; "
            "give each column its own name in the header"
        )


def _read_text_table(path: Path, suffix: str, raw: bytes, opts: ReadOptions) -> object:
    import pyarrow as pa

    if suffix in (".json", ".jsonl"):
        fast = _json_lines_fast(raw, opts) if raw[:4096].lstrip()[:1] == b"{" else None
        return fast if fast is not None else _json_table(path.name, _decoded(path, raw), opts)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: to UTF-8 for the CSV reader
        raw = _decoded(path, raw).encode("utf-8")
    head = _head(path, raw)
    if suffix == ".txt" and opts.label_file:
        sep = None
    else:
        sep = opts.delimiter or ("\t" if suffix == ".tsv" else sniff_delimiter(head, prose=suffix == ".txt"))
    if sep is None and suffix == ".txt":  # no separator: one text per line
        frame = {"text": _lines(_decoded(path, raw))}
        if opts.label_file:
            frame["label"] = _label_lines(path, opts.label_file, len(frame["text"]))
        return pa.table(frame)
    return _delimited(path, suffix, raw, head, sep or ",", opts)


def _head(path: Path, raw: bytes) -> str:
    """The first 64 KB as text, whole lines (what the separator and the header are read from); the rest is
    checked as UTF-8 by the CSV reader."""
    head = raw[:65536]
    if len(raw) > len(head):
        head = head[: head.rfind(b"\n") + 1] or head
    if head.endswith(b"\n") or len(raw) == len(head):
        return _decoded(path, head)  # whole lines: a bad byte here is said as for a whole file
    text = head.decode("utf-8-sig", errors="ignore")  # one 64 KB line cut mid-character; the reader checks it
    if not text.strip():
        raise DataError(f"data.source: {path.name} is empty (no rows)")
    return text


def _lines(text: str) -> list[str]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are the file's end, not empty rows
        lines.pop()
    return lines


def _label_lines(path: Path, label_file: str, rows: int) -> list[str]:
    labels_path = Path(label_file).expanduser()
    if not labels_path.is_file():
        raise DataError(f"data.label_file: file not found: {label_file}")
    raw = labels_path.read_bytes()
    labels = _lines(_decoded(labels_path, _decompressed(labels_path, raw, _content_kind(raw))))
    if len(labels) != rows:
        raise DataError(
            f"data.label_file: {labels_path.name} has {len(labels):,} lines but {path.name} has {rows:,} texts; "
            "give one label per line, in the order of the texts"
        )
    return [line.strip() for line in labels]


def sniff_delimiter(text: str, prose: bool = False) -> str | None:
    """The separator (, tab ; |) that splits the first lines of `text` into the same number (2 or more) of
    fields, or None. `prose` (a .txt file): not the comma, which sentences hold (a .txt of `text,label` lines
    needs data.delimiter). Hand-written: `csv.Sniffer` guesses from character frequencies and picks a comma or a
    space inside free text; this counts quoted fields per row and keeps only a consistent candidate."""
    sample = text[:65536]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only
    best, best_share = None, 0.0
    for candidate in ("\t", ";", "|") if prose else (",", "\t", ";", "|"):
        counts = [len(row) for row in itertools.islice(csv.reader(io.StringIO(sample), delimiter=candidate), 200)
                  if row]  # fmt: skip
        if not counts:
            continue
        width = max(set(counts), key=counts.count)
        share = counts.count(width) / len(counts)
        if width >= 2 and share >= 0.9 and share > best_share:
            best, best_share = candidate, share
    return best


def _delimited(path: Path, suffix: str, raw: bytes, head: str, sep: str, opts: ReadOptions) -> object:
    """A delimited file as a table of strings, read by pyarrow's CSV reader (10x faster than pandas' on a
    50 MB file, with a third of its memory: the bytes are parsed as they are, never made one Python string).
    Every cell is text; only an empty cell is missing; a row with another number of fields than the header
    (an unquoted comma in a text) is refused, with the count and the first such row."""
    import pyarrow as pa
    import pyarrow.csv as pc

    first = next(csv.reader(io.StringIO(head), delimiter=sep), [])
    header = opts.header if opts.header is not None else (suffix != ".txt" or opts.names_a_column(first))
    if header:
        _refuse_duplicate_columns(path, [name.strip() for name in first])
        names = [name.strip() for name in first]
    else:
        width = len(first)
        names = ["text", "label"][:width] if width <= 2 else [f"column_{i + 1}" for i in range(width)]
    single = len(first) == 1  # one column: a blank line is an empty text (a row to count or mark), not nothing
    uneven: list[Any] = []

    def refuse_later(row: Any) -> str:
        uneven.append(row)
        return "skip"

    try:
        table = pc.read_csv(
            io.BytesIO(raw.rstrip(b"\r\n") + b"\n" if single else raw),
            read_options=pc.ReadOptions(column_names=names, skip_rows=1 if header else 0),
            parse_options=pc.ParseOptions(delimiter=sep, newlines_in_values=True, ignore_empty_lines=not single,
                                          invalid_row_handler=refuse_later),
            convert_options=pc.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[""],
                                              strings_can_be_null=True),
        )  # fmt: skip
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "UTF-8" in str(e):
            raise DataError(f"data.source: {path.name} is not UTF-8 text; re-save it as UTF-8 (e.g. in a "
                            "spreadsheet: Save As > CSV UTF-8)") from None  # fmt: skip
        raise DataError(f"data.source: {path.name} is not valid {_kind(sep)}: {_reason(e)}") from None
    if uneven:
        row = uneven[0]
        raise DataError(
            f"data.source: {path.name} is not valid {_kind(sep)}: {len(uneven):,} "
            f"{'row does' if len(uneven) == 1 else 'rows do'} not have the header's {row.expected_columns} fields "
            f"(the first has {row.actual_columns}: {row.text[:60]!r}); a text that "
            f"contains {'a comma' if sep == ',' else repr(sep)} must be in double quotes (or set data.delimiter)"
        )
    return table


def _kind(sep: str) -> str:
    return {",": "CSV", "\t": "TSV"}.get(sep, f"'{sep}'-separated text")


# ---- JSON ----------------------------------------------------------------------------------------------
def _json_table(name: str, text: str, opts: ReadOptions) -> object:
    """JSON records as a table with every key any record has (a record without a key has None there).

    A record lacking the text or label column is refused (with the count and where the first is) unless
    ``opts.check_columns`` is off (predict marks such rows instead); nested values (objects, lists) are refused
    as the text, and an object as the label."""
    import pyarrow as pa

    records, where = _json_records(name, text)
    fast = _json_fast_table(records, opts)
    if fast is not None:
        return fast
    keys = list(dict.fromkeys(k for record in records for k in record))
    wanted = {"text": opts.text_column or find_column(keys, TEXT_COLUMNS),
              "label": opts.label_column or find_column(keys, LABEL_COLUMNS)}  # fmt: skip
    columns = {}
    for key in keys:
        values = [record.get(key) for record in records]
        role = next((r for r, column in wanted.items() if column == key), None)
        if opts.check_columns and role:
            absent = [i for i, record in enumerate(records) if key not in record]
            if absent:
                raise DataError(
                    f"data.source: {name}: {len(absent):,} of {len(records):,} rows {_have(len(absent))} no "
                    f"'{key}' (the {role} column), the first at {where(absent[0])}; give every row a '{key}' or set "
                    f"data.{role}_column"
                )
        columns[key] = _json_column(name, key, values, role, where)
    return pa.table(columns)


def _json_lines_fast(raw: bytes, opts: ReadOptions) -> Any:
    """JSON lines read by pyarrow's JSON reader (C++, 5x faster than a `json.loads` per line), when its table
    is one the careful path would give: the text a plain string present in every row, the label not an object.
    None otherwise (not JSON lines, mixed types, nested texts, a text missing somewhere: the careful path tells
    a missing key from a null and names the line)."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(io.BytesIO(raw))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table if _as_careful(table, opts, absent_as_null=True) else None


def _as_careful(table: Any, opts: ReadOptions, absent_as_null: bool) -> bool:
    """Whether a table read at Arrow's speed is the one the careful path (`_json_table`) would give: the text
    column plain (not an object or list), the label plain or a list. `absent_as_null`: the reader wrote a
    missing key as null, so (when the columns are checked) a null text or label may hide one to refuse."""
    import pyarrow as pa

    text = opts.text_column or find_column(table.column_names, TEXT_COLUMNS)
    label = opts.label_column or find_column(table.column_names, LABEL_COLUMNS)
    for column, allowed in ((text, _plain), (label, lambda t: _plain(t) or pa.types.is_list(t))):
        if column in table.column_names:
            if not allowed(table.schema.field(column).type):
                return False
            if absent_as_null and opts.check_columns and table.column(column).null_count:
                return False
    return True


def _plain(arrow_type: Any) -> bool:
    import pyarrow as pa

    return not (pa.types.is_struct(arrow_type) or pa.types.is_list(arrow_type) or pa.types.is_map(arrow_type)
                or pa.types.is_large_list(arrow_type))  # fmt: skip


def _json_fast_table(records: list[dict], opts: ReadOptions) -> Any:
    """The common case at Arrow's speed: every record has the same keys, each column one type, the text a
    string and the label not an object. None otherwise (the careful path finds and names the problem)."""
    import pyarrow as pa

    if not records or any(record.keys() != records[0].keys() for record in records):
        return None
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return table if _as_careful(table, opts, absent_as_null=False) else None


def _json_column(name: str, key: str, values: list, role: str | None, where: Any) -> list:
    """One column's values, made arrow-friendly: scalars of mixed types become text (labels 1 and "pos");
    in the label column a single label beside lists becomes a list of one."""
    nested = [i for i, v in enumerate(values) if isinstance(v, (dict, list))]
    if not nested:
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            return [None if v is None else str(v) for v in values]
        return values
    objects = [i for i in nested if isinstance(values[i], dict)]
    if role == "text":
        raise nested_error("text", key, name, len(nested), where(nested[0]), values[nested[0]])
    if role == "label" and objects:
        raise nested_error("label", key, name, len(objects), where(objects[0]), values[objects[0]])
    if role == "label":
        return [v if isinstance(v, list) or v is None else [v] for v in values]
    if len(nested) < len([v for v in values if v is not None]):  # another column, mixed: keep it as JSON text
        return [v if v is None else json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
                for v in values]  # fmt: skip
    return values


def nested_error(role: str, column: str, name: str, count: int, where: str, value: Any) -> DataError:
    """Texts that are objects or lists, or labels that are objects: refused, not turned into strings. `where`
    and `value`: the first such row ("line 7", "row 7") and its value."""
    first = f"{where}: {json.dumps(value, ensure_ascii=False, default=str)[:60]}"
    what = "texts" if role == "text" else "labels"
    kind = "objects or lists" if role == "text" else "objects"
    return DataError(
        f"data.{role}_column: {count:,} {what} in '{column}' of {name} {'is' if count == 1 else 'are'} {kind}, not "
        f"plain {'text' if role == 'text' else 'labels'} (the first at {first}); flatten "
        f"{'them into one string each' if role == 'text' else 'them: one label, or a list of labels per row'}"
    )


def _have(count: int) -> str:
    return "has" if count == 1 else "have"


def _json_records(name: str, text: str) -> tuple[list[dict], Any]:
    """(the records, index -> where it is in the file: "line 7" or "item 7")."""
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSON lines: one object per line
        if isinstance(whole, list):
            odd = next((i for i, v in enumerate(whole) if not isinstance(v, dict)), None)
            if odd is not None:
                raise DataError(
                    f"data.source: {name} is a JSON array of {_json_kind(whole[odd])}s (item {odd + 1}), not of "
                    'objects; each row must be an object such as {"text": "...", "label": "..."}'
                )
            return whole, lambda i: f"item {i + 1}"
        if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
            keys = list(whole)
            try:
                rows = [dict(zip(keys, row, strict=True)) for row in zip(*whole.values(), strict=True)]
            except ValueError:
                raise DataError(f"data.source: {name} is an object of columns of different lengths; give every "
                                "column one value per row") from None  # fmt: skip
            return rows, lambda i: f"row {i + 1}"
    records, numbers = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"data.source: {name} line {number} is not valid JSON: {e.msg}") from None
            if not isinstance(records[-1], dict):
                raise DataError(f'data.source: {name} line {number} is not a JSON object ({{"text": ...}})')
            numbers.append(number)
    return records, lambda i: f"line {numbers[i]}"


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else "number" if isinstance(value, (int, float)) else type(value).__name__


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
