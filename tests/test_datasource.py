"""Where rows come from: the shipped samples, local files of every format, folders, Hub ids; and each bad source
refused with one `DataError` naming the file and what is wrong. What the rows mean (columns, labels, splits) is
tested in tests/test_data.py.

Real files only: the shipped samples and small files written in tmp_path (the Hub client is replaced, never
called).
"""

from __future__ import annotations

import json
from collections import Counter

import datasets
import pytest
from test_data import ROWS, cfg, write

from studio.config import DataConfig
from studio.datasource import SAMPLES, columns, describe_source, load_raw, preview
from studio.errors import DataError


# ---- the shipped samples -------------------------------------------------------------------------------
def test_shipped_samples_load_as_they_are():
    imdb = load_raw(DataConfig(source="imdb-sample"))
    assert list(imdb) == ["train"] and imdb["train"].num_rows == 3180
    assert Counter(imdb["train"]["sentiment"]) == {"positive": 1600, "negative": 1580}
    go = load_raw(DataConfig(source="goemotions"))
    assert {k: v.num_rows for k, v in go.items()} == {"train": 43410, "validation": 5426, "test": 5427}
    assert go["train"].column_names == ["text", "labels", "id"]
    assert go["validation"][1]["labels"] == ["approval", "neutral"]  # names, not ids; multi-label kept
    assert columns(DataConfig(source="goemotions")) == ["text", "labels", "id"]
    head = preview(DataConfig(source="imdb-sample"), n=5)
    assert list(head.columns) == ["review", "sentiment"] and len(head) == 5
    assert head["review"][0].startswith("One of the other reviewers")


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_sample_holds_the_columns_it_names(name):
    sample = SAMPLES[name]
    assert sample.path.exists() and sample.description
    assert {sample.text_column, sample.label_column} <= set(columns(DataConfig(source=name)))


def test_describe_source_names_what_the_source_is(tmp_path):
    assert describe_source(DataConfig(source="imdb-sample")) == (
        "sample 'imdb-sample': IMDb movie reviews, positive/negative (3,180 rows, train only)"
    )
    file = write(tmp_path / "d.csv", ROWS)
    assert describe_source(cfg(file)) == f"file {file}"
    assert describe_source(cfg(tmp_path)) == f"folder {tmp_path}"
    assert describe_source(DataConfig(source="owner/emotions")) == "Hugging Face Hub dataset 'owner/emotions'"
    hub = DataConfig(source="owner/emotions", hub_config="simplified")
    assert describe_source(hub) == "Hugging Face Hub dataset 'owner/emotions' (simplified)"


# ---- local files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.parquet", "d.csv.gz", "d.jsonl.gz"])
def test_every_file_format_reads_the_same_rows(tmp_path, name):
    raw = load_raw(cfg(write(tmp_path / name, ROWS)))
    assert list(raw) == ["train"] and raw["train"].to_list() == ROWS


def test_json_files_may_hold_records_columns_or_lines(tmp_path):
    rows = ROWS[:3]
    layouts = {
        "records.json": json.dumps(rows),
        "columns.json": json.dumps({k: [r[k] for r in rows] for k in rows[0]}),  # pandas' orient="list"
        "lines.json": "\n".join(json.dumps(r) for r in rows),  # JSON lines under a .json name
        "gaps.jsonl": "\n\n".join(json.dumps(r) for r in rows) + "\n\n",  # blank lines are no rows
    }
    for name, text in layouts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert load_raw(cfg(tmp_path / name))["train"].to_list() == rows, name
    (tmp_path / "one.json").write_text(json.dumps(rows[0]), encoding="utf-8")
    assert load_raw(cfg(tmp_path / "one.json"))["train"].to_list() == rows[:1]  # a single object is one row


def test_text_files_keep_what_they_say(tmp_path):
    """A spreadsheet's byte-order mark is no part of the first column's name; "NA" and "null" are texts, only an
    empty cell is missing; a tab-separated file keeps the commas of its texts."""
    (tmp_path / "excel.csv").write_bytes("\ufefftext,label\nNA,a\nnull,b\n,c\n".encode())
    raw = load_raw(cfg(tmp_path / "excel.csv"))["train"]
    assert raw.column_names == ["text", "label"] and raw["text"] == ["NA", "null", None]
    (tmp_path / "d.tsv").write_text("text\tlabel\nslow, long, dull\tneg\n", encoding="utf-8")
    assert load_raw(cfg(tmp_path / "d.tsv"))["train"].to_list() == [{"text": "slow, long, dull", "label": "neg"}]


# ---- folders -------------------------------------------------------------------------------------------
def test_folder_of_split_files_names_the_splits(tmp_path):
    rows = ROWS * 5
    write(tmp_path / "f" / "train.csv", rows[:40])
    write(tmp_path / "f" / "dev.csv", rows[40:50])  # dev -> validation
    write(tmp_path / "f" / "test-00000-of-00001.csv", rows[50:])  # Hub-style shard name
    raw = load_raw(cfg(tmp_path / "f"))
    assert {k: v.num_rows for k, v in raw.items()} == {"train": 40, "validation": 10, "test": 10}
    assert raw["test"]["text"] == [r["text"] for r in rows[50:]]


def test_split_names_ignore_case_and_shards_join_in_name_order(tmp_path):
    write(tmp_path / "f" / "train_part2.jsonl", ROWS[6:])
    write(tmp_path / "f" / "Training_part1.jsonl", ROWS[:6])  # "training", any case: train
    write(tmp_path / "f" / "VAL.jsonl", ROWS[:2])
    write(tmp_path / "f" / "test-00001-of-00002.parquet", ROWS[3:4])
    write(tmp_path / "f" / "test-00000-of-00002.parquet", ROWS[2:3])
    raw = load_raw(cfg(tmp_path / "f"))
    assert list(raw) == ["train", "validation", "test"]  # in this order, whatever the files' order
    assert raw["train"]["text"] == [r["text"] for r in ROWS]
    assert raw["test"]["text"] == [r["text"] for r in ROWS[2:4]]
    assert columns(cfg(tmp_path / "f")) == ["text", "label"]


def test_a_folder_without_a_train_split_is_previewed_from_its_first_split(tmp_path):
    write(tmp_path / "f" / "test.csv", [{"review": "fine", "stars": 4}, {"review": "poor", "stars": 1}])
    assert list(load_raw(cfg(tmp_path / "f"))) == ["test"]
    assert columns(cfg(tmp_path / "f")) == ["review", "stars"]
    assert preview(cfg(tmp_path / "f"), n=20)["review"].tolist() == ["fine", "poor"]  # fewer rows than asked


def test_folder_of_other_files_is_pooled_into_train(tmp_path):
    write(tmp_path / "f" / "part1.jsonl", ROWS[:5])
    write(tmp_path / "f" / "part2.jsonl", ROWS[5:])
    (tmp_path / "f" / "README.md").write_text("not data", encoding="utf-8")  # other files are no part of it
    raw = load_raw(cfg(tmp_path / "f"))
    assert list(raw) == ["train"] and raw["train"]["text"] == [r["text"] for r in ROWS]


def test_folder_mixing_split_files_and_others_is_refused(tmp_path):
    write(tmp_path / "f" / "train.csv", ROWS)
    write(tmp_path / "f" / "extra.csv", ROWS)
    with pytest.raises(DataError, match="mixes split files.*extra.csv.*move those out or name them after a split"):
        load_raw(cfg(tmp_path / "f"))


def test_save_to_disk_folders_keep_their_splits(tmp_path):
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"sentence": ["s0", "s1", "s2"], "label": [0, 1, 0]}, features=features)
    datasets.DatasetDict({"train": ds, "valid": ds, "unsupervised": ds}).save_to_disk(tmp_path / "dd")
    raw = load_raw(cfg(tmp_path / "dd"))
    assert set(raw) == {"train", "validation", "unsupervised"}  # valid -> validation, others kept as-is
    assert raw["train"].features["label"].names == ["neg", "pos"]  # the ClassLabel names come along
    ds.save_to_disk(tmp_path / "single")  # a plain Dataset folder becomes train
    assert list(load_raw(cfg(tmp_path / "single"))) == ["train"]


# ---- the Hub -------------------------------------------------------------------------------------------
@pytest.fixture
def hub(monkeypatch) -> list[tuple[str, str | None]]:
    """Stands in for the Hub client (never the network): the calls it got."""
    calls = []

    def fake_load_dataset(source, config=None):
        calls.append((source, config))
        if source == "owner/missing":
            raise FileNotFoundError("Dataset 'owner/missing' doesn't exist on the Hub")
        if source == "owner/single":
            return datasets.Dataset.from_list(ROWS)
        return datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(ROWS), "dev": datasets.Dataset.from_list(ROWS)}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_ids_go_to_load_dataset_and_failures_become_data_errors(hub):
    raw = load_raw(DataConfig(source="owner/emotions", hub_config="simplified"))
    assert hub == [("owner/emotions", "simplified")] and set(raw) == {"train", "validation"}
    with pytest.raises(DataError, match=r"could not load 'owner/missing' from the Hugging Face Hub: .*doesn't exist"):
        load_raw(DataConfig(source="owner/missing"))
    for path_like in ("reviews.csv", "./data/x", "a/b/c.parquet", "notes.xlsx", "~/reviews.csv", "data\\x.csv"):
        with pytest.raises(DataError, match="file not found"):
            load_raw(DataConfig(source=path_like))
    assert len(hub) == 2  # paths that look like files never reach the Hub


def test_a_dotted_hub_id_is_no_file_and_a_single_dataset_is_train(hub):
    assert list(load_raw(DataConfig(source="owner/name.v2"))) == ["train", "validation"]
    assert list(load_raw(DataConfig(source="owner/single"))) == ["train"]
    assert [source for source, _ in hub] == ["owner/name.v2", "owner/single"]


# ---- bad input -----------------------------------------------------------------------------------------
BAD_FILES = [  # (file name, its bytes, what the one-line DataError must say)
    ("d.xlsx", b"PK\x03\x04", r"d.xlsx has an unsupported file type '.xlsx'; supported: .csv, .tsv"),
    ("noext", b"text,label\na,b\n", r"noext has an unsupported file type '\(none\)'.*may be gzipped: .csv.gz"),
    ("zero.csv", b"", "zero.csv is empty \\(0 bytes\\)"),
    ("blank.csv", b"  \n\n", "blank.csv is empty \\(no rows\\)"),
    ("header.csv", b"text,label\n", "header.csv is empty"),
    ("empty.json", b"[]", "empty.json is empty \\(no rows\\)"),
    ("latin1.csv", "text,label\ncafé crème,a\n".encode("latin-1"), "latin1.csv is not UTF-8 text.*re-save it as UTF-8"),
    ("broken.parquet", b"PAR1 this is not parquet", "broken.parquet is not a readable Parquet file"),
    ("bad.jsonl", b'{"text": "a", "label": 1}\n{"text": oops}\n', "bad.jsonl line 2 is not valid JSON"),
    ("scalar.jsonl", b'{"text": "a"}\n42\n', r'scalar.jsonl line 2 is not a JSON object \({"text": ...}\)'),
    ("uneven.json", b'{"text": ["a", "b"], "label": ["x"]}', "uneven.json is an object of columns of different"),
    ("quote.csv", b'text,label\n"never closed,a\n', "quote.csv is not valid CSV"),
    ("twice.csv", b"text,text,label\na,b,c\n", "twice.csv has more than one column named 'text'; give each column"),
    ("notgz.csv.gz", b"plain text", "notgz.csv.gz is empty \\(no rows\\)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "words"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_one_data_error_naming_it(tmp_path, name, content, words):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=f"^data.source: {words}"):
        load_raw(cfg(tmp_path / name))


def test_bad_paths_and_folders(tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        load_raw(cfg(tmp_path / "nope.csv"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=r"the folder .*empty_dir holds no data files \(.csv, .tsv"):
        load_raw(cfg(tmp_path / "empty_dir"))
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(tmp_path / "saved")
    (tmp_path / "saved" / "state.json").write_text("{damaged", encoding="utf-8")
    with pytest.raises(DataError, match="saved is not a readable saved dataset"):
        load_raw(cfg(tmp_path / "saved"))
    write(tmp_path / "types" / "a.jsonl", [{"text": "x", "label": 1}])
    write(tmp_path / "types" / "b.jsonl", [{"text": "y", "label": [1, 2]}])
    with pytest.raises(DataError, match="a.jsonl, b.jsonl have different columns or types"):
        load_raw(cfg(tmp_path / "types"))


def test_a_parquet_file_with_a_repeated_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([["a"], ["b"]], names=["text", "text"]), tmp_path / "twice.parquet")
    # pyarrow refuses to read it before the studio's own check would name the column: its words name it too
    with pytest.raises(DataError, match="twice.parquet .*text"):
        load_raw(cfg(tmp_path / "twice.parquet"))


def test_a_json_list_of_non_objects_is_a_data_error(tmp_path):
    (tmp_path / "numbers.json").write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(DataError, match="numbers.json is a JSON array of numbers .*not of objects"):
        load_raw(cfg(tmp_path / "numbers.json"))


def test_a_csv_row_with_more_fields_than_the_header_is_refused(tmp_path):
    (tmp_path / "commas.csv").write_text("text,label\nbad, really bad,neg\ngreat film,pos\n", encoding="utf-8")
    with pytest.raises(DataError, match="commas.csv is not valid CSV: 1 row does not have the header's 2 fields"):
        load_raw(cfg(tmp_path / "commas.csv"))
