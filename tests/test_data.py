"""Data: what the rows mean: columns, labels, multi-label rule, splits, balance, determinism, tokenization
cache, errors. Reading the sources themselves (formats, folders, the Hub, bad files) is tests/test_datasource.py.

Real data only: the shipped samples (IMDb sample, GoEmotions) and small files written in tmp_path.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studio import data
from studio.config import BalanceConfig, DataConfig, RunConfig
from studio.errors import ConfigError, DataError

GOEMOTIONS = Path(data.SAMPLES["goemotions"].path)
ROWS = [  # 12 rows, 3 classes, a comma and a quote inside texts (CSV quoting must survive)
    {"text": f'review {i}: "{w}", really {w}', "label": w}
    for i, w in enumerate(["good", "bad", "meh", "good", "bad", "meh", "good", "bad", "meh", "good", "bad", "meh"])
]


def write(path: Path, rows: list[dict]) -> Path:
    """Write rows in the format that `path`'s suffix names (.csv, .tsv, .jsonl, .json, .parquet, + .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.removesuffix(".gz")
    frame = pd.DataFrame(rows)
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if name.endswith((".csv", ".tsv")):
        text = frame.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",")
    elif name.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        text = json.dumps(rows)
    raw = text.encode("utf-8")
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def cfg(source: str | Path, **kw) -> DataConfig:
    return DataConfig(source=str(source), **kw)


def labels_of(split) -> list[str]:
    names = split.features["label"].names
    return [names[i] for i in split.with_format("arrow")["label"].to_pylist()]  # fast on 36k rows


@pytest.fixture(scope="module")
def goemotions_raw() -> dict[str, list[list[str]]]:
    """The shipped GoEmotions label lists per split, read with pyarrow (independent of studio.data)."""
    return {
        s: pq.read_table(GOEMOTIONS / f"{s}.parquet")["labels"].to_pylist() for s in ("train", "validation", "test")
    }


@pytest.fixture(scope="module")
def goemotions_single():
    return data.prepare(DataConfig(source="goemotions", task="single_label"), seed=0)


# ---- sources (read by studio.datasource: tests/test_datasource.py) -------------------------------------
@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.parquet", "d.csv.gz", "d.jsonl.gz"])
def test_every_file_format_prepares_the_same_data(tmp_path, name):
    source = write(tmp_path / name, ROWS)
    reference = data.prepare(cfg(write(tmp_path / "ref" / "d.parquet", ROWS)), seed=3)
    assert data.prepare(cfg(source), seed=3).fingerprint == reference.fingerprint


def test_given_splits_are_kept_not_re_split(tmp_path):
    rows = ROWS * 5
    write(tmp_path / "f" / "train.csv", rows[:40])
    write(tmp_path / "f" / "dev.csv", rows[40:50])
    write(tmp_path / "f" / "test-00000-of-00001.csv", rows[50:])
    prepared = data.prepare(cfg(tmp_path / "f"), seed=0)
    assert prepared.report["rows"] == {"train": 40, "validation": 10, "test": 10}
    assert prepared.splits["test"]["text"] == [r["text"] for r in rows[50:]]


def test_a_given_split_without_the_label_column_is_refused(tmp_path):
    write(tmp_path / "f" / "train.csv", ROWS)
    write(tmp_path / "f" / "test.csv", [{"text": "unlabelled"}])
    with pytest.raises(DataError, match="the test split has no column 'label' \\(it has text\\)"):
        data.prepare(cfg(tmp_path / "f"), seed=0)


def test_save_to_disk_folders_with_classlabel_names(tmp_path):
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = {"sentence": [f"s{i}" for i in range(30)], "label": [i % 2 for i in range(30)]}
    ds = datasets.Dataset.from_dict(rows, features=features)
    unlabelled = datasets.Dataset.from_dict({"sentence": ["u1", "u2"], "label": [-1, -1]}, features=features)
    datasets.DatasetDict({"train": ds, "valid": ds.select(range(10)), "unsupervised": unlabelled}).save_to_disk(
        tmp_path / "dd"
    )
    prepared = data.prepare(cfg(tmp_path / "dd"), seed=0)
    assert prepared.label_names == ["neg", "pos"]  # from the ClassLabel feature
    assert prepared.report["rows_loaded"] == 40 and prepared.report["text_column"] == "sentence"
    assert any("unsupervised" in note for note in prepared.report["notes"])
    datasets.DatasetDict({"train": ds, "test": unlabelled}).save_to_disk(tmp_path / "hub_like")
    carved = data.prepare(cfg(tmp_path / "hub_like"), seed=0)  # -1 = no label: the test split is carved instead
    assert carved.report["dropped_missing_label"] == 2 and carved.report["rows"] == {
        "train": 24,
        "validation": 3,
        "test": 3,
    }


# ---- columns -------------------------------------------------------------------------------------------
def test_column_detection_and_errors_listing_the_columns(tmp_path):
    rows = [{"id": i, "sentence": f"t{i}", "category": "ab"[i % 2]} for i in range(20)]
    prepared = data.prepare(cfg(write(tmp_path / "d.csv", rows)), seed=0)
    assert (prepared.report["text_column"], prepared.report["label_column"]) == ("sentence", "category")
    assert prepared.splits["train"].column_names == ["text", "label"]
    imdb = tmp_path / "imdb.csv"
    write(imdb, [{"review": "fine", "sentiment": "positive"}, {"review": "no", "sentiment": "negative"}])
    with pytest.raises(DataError, match="text column 'body' not found.*columns: review, sentiment.*data.text_column"):
        data.prepare(cfg(imdb, text_column="body"), seed=0)
    odd = write(tmp_path / "odd.csv", [{"body": "x", "stars": "a"}])
    with pytest.raises(DataError, match=r"data.text_column: no text column found .*columns: body, stars"):
        data.prepare(cfg(odd), seed=0)
    with pytest.raises(DataError, match=r"data.label_column: no label column found .*columns: body, stars"):
        data.prepare(cfg(odd, text_column="body"), seed=0)


# ---- labels --------------------------------------------------------------------------------------------
def test_string_labels_get_sorted_names(tmp_path):
    prepared = data.prepare(cfg(write(tmp_path / "d.jsonl", ROWS * 2)), seed=0)
    assert prepared.label_names == ["bad", "good", "meh"]
    assert prepared.splits["train"].features["label"].names == ["bad", "good", "meh"]
    pooled = [lab for s in prepared.splits.values() for lab in labels_of(s)]
    assert Counter(pooled) == {"good": 8, "bad": 8, "meh": 8}  # ids map back to the right names


def test_int_labels_with_and_without_names(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(30)]
    source = write(tmp_path / "d.csv", rows)
    assert data.prepare(cfg(source), seed=0).label_names == ["0", "1", "2"]
    named = data.prepare(cfg(source, label_names=["neg", "neu", "pos"]), seed=0)
    assert named.label_names == ["neg", "neu", "pos"]
    by_text = {t: lab for s in named.splits.values() for t, lab in zip(s["text"], labels_of(s), strict=True)}
    assert by_text["t4"] == "neu" and by_text["t5"] == "pos"  # id i -> label_names[i]
    with pytest.raises(DataError, match="data.label_names: .*2 names.*from 0 to 2"):
        data.prepare(cfg(source, label_names=["neg", "pos"]), seed=0)
    shifted = write(tmp_path / "s.csv", [{"text": f"t{i}", "label": 1 + i % 2} for i in range(20)])
    prepared = data.prepare(cfg(shifted), seed=0)  # 1/2 -> ids 0/1 named "1"/"2"
    assert prepared.label_names == ["1", "2"] and set(prepared.splits["train"]["label"]) == {0, 1}


def test_float_labels(tmp_path):
    whole = write(tmp_path / "w.jsonl", [{"text": f"t{i}", "label": float(i % 2)} for i in range(20)])
    assert data.prepare(cfg(whole), seed=0).label_names == ["0", "1"]
    scores = write(tmp_path / "s.jsonl", [{"text": f"t{i}", "label": i / 7} for i in range(20)])
    with pytest.raises(DataError, match="classification: bucket"):
        data.prepare(cfg(scores), seed=0)


def test_multi_label_drop_and_first_on_goemotions(goemotions_raw, goemotions_single):
    multi = {s: sum(len(v) > 1 for v in rows) for s, rows in goemotions_raw.items()}
    assert goemotions_single.report["dropped_multi_label"] == sum(multi.values()) == 8817
    for split, rows in goemotions_raw.items():  # auto keeps GoEmotions' own splits, minus multi-label rows
        assert len(goemotions_single.splits[split]) == len(rows) - multi[split]
    assert len(goemotions_single.label_names) == 28 and "neutral" in goemotions_single.label_names
    first = data.prepare(DataConfig(source="goemotions", task="single_label", multi_label="first"), seed=0)
    assert first.report["dropped_multi_label"] == 0 and first.report["multi_label_first"] == 8817
    assert len(first.splits["validation"]) == 5426
    assert labels_of(first.splits["validation"])[1] == "approval"  # ["approval", "neutral"] -> first


def test_multi_label_classlabel_lists_like_the_hub_goemotions(tmp_path):
    names = ["anger", "joy", "neutral"]
    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.List(datasets.ClassLabel(names=names))}
    )
    rows = {"text": [f"t{i}" for i in range(40)], "labels": [[1], [2], [0], [1, 2]] * 10}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(tmp_path / "go")
    prepared = data.prepare(cfg(tmp_path / "go", multi_label="first"), seed=0)
    assert prepared.label_names == names and prepared.report["multi_label_first"] == 10
    assert Counter(lab for s in prepared.splits.values() for lab in labels_of(s)) == {
        "joy": 20,
        "neutral": 10,
        "anger": 10,
    }


def test_separator_multi_label_strings(tmp_path):
    rows = [{"text": f"t{i}", "label": ["a", "b", "a,b", "b, a"][i % 4]} for i in range(40)]
    source = write(tmp_path / "d.csv", rows)
    dropped = data.prepare(cfg(source, label_separator=",", multi_label="drop"), seed=0)
    assert dropped.report["dropped_multi_label"] == 20 and sum(dropped.report["rows"].values()) == 20
    first = data.prepare(cfg(source, label_separator=",", multi_label="first"), seed=0)
    assert Counter(lab for s in first.splits.values() for lab in labels_of(s)) == {"a": 20, "b": 20}
    as_is = data.prepare(cfg(source), seed=0)  # no separator: "a,b" is a class of its own
    assert as_is.label_names == ["a", "a,b", "b", "b, a"]


def test_empty_texts_and_missing_labels_are_dropped_and_counted(tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(30)]
    rows[0]["text"], rows[1]["text"], rows[2]["text"] = "", "   ", None
    rows[3]["label"] = None
    source = tmp_path / "d.csv"
    write(source, rows)
    prepared = data.prepare(cfg(source), seed=0)
    assert prepared.report["dropped_empty_text"] == 3 and prepared.report["dropped_missing_label"] == 1
    assert sum(prepared.report["rows"].values()) == 26 and prepared.report["rows_loaded"] == 30
    all_texts = [t for s in prepared.splits.values() for t in s["text"]]
    assert all(t.strip() for t in all_texts) and "t3" not in all_texts
    na = write(tmp_path / "na.csv", [{"text": "NA", "label": "a"}, {"text": "null", "label": "b"}] * 5)
    assert data.prepare(cfg(na), seed=0).report["dropped_empty_text"] == 0  # "NA" is a text, not a gap
    blank = write(tmp_path / "blank.jsonl", [{"text": " ", "label": "a"}, {"text": "x", "label": None}])
    with pytest.raises(DataError, match="no usable rows"):
        data.prepare(cfg(blank), seed=0)


def test_a_single_class_is_refused(tmp_path):
    source = write(tmp_path / "d.csv", [{"text": f"t{i}", "label": "spam"} for i in range(10)])
    with pytest.raises(DataError, match="needs at least 2 classes; found only 'spam'"):
        data.prepare(cfg(source), seed=0)


# ---- splits --------------------------------------------------------------------------------------------
def test_auto_splits_imdb_80_10_10_stratified():
    prepared = data.prepare(DataConfig(source="imdb-sample"), seed=0)
    rows = prepared.report["rows"]
    assert all(abs(rows[k] - 3180 * r) <= 1 for k, r in (("train", 0.8), ("validation", 0.1), ("test", 0.1)))
    for split in prepared.splits.values():
        positive = labels_of(split).count("positive")
        assert abs(positive - len(split) * 1600 / 3180) <= 1  # proportions kept in every split
    texts = Counter(t for s in prepared.splits.values() for t in s["text"])
    assert texts == Counter(data.load_raw(DataConfig(source="imdb-sample"))["train"]["review"])  # none lost or doubled


def test_auto_carves_only_the_missing_validation(tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(120)]
    write(tmp_path / "f" / "train.csv", rows[:90])
    write(tmp_path / "f" / "test.csv", rows[90:])
    prepared = data.prepare(cfg(tmp_path / "f"), seed=0)
    assert prepared.report["rows"] == {"train": 80, "validation": 10, "test": 30}  # 90 * 0.1 / 0.9 = 10
    assert sorted(prepared.splits["test"]["text"]) == sorted(r["text"] for r in rows[90:])
    assert Counter(labels_of(prepared.splits["validation"])) == {"a": 5, "b": 5}


def test_ratio_pools_every_split(tmp_path):
    rows = [{"text": f"t{i}", "label": "abc"[i % 3]} for i in range(300)]
    write(tmp_path / "f" / "train.csv", rows[:100])
    write(tmp_path / "f" / "validation.csv", rows[100:200])
    write(tmp_path / "f" / "test.csv", rows[200:])
    prepared = data.prepare(cfg(tmp_path / "f", splits="ratio", split_ratios=[0.6, 0.2, 0.2]), seed=0)
    assert prepared.report["rows"] == {"train": 180, "validation": 60, "test": 60}
    assert Counter(labels_of(prepared.splits["test"])) == {"a": 20, "b": 20, "c": 20}
    assert {int(t[1:]) for t in prepared.splits["test"]["text"]} & set(range(100)), "test mixes the source splits"


def test_max_samples_and_max_train_samples(goemotions_single):
    small = data.prepare(DataConfig(source="imdb-sample", max_samples=500), seed=0)
    assert small.report["rows"] == {"train": 400, "validation": 50, "test": 50}
    capped = data.prepare(DataConfig(source="imdb-sample", max_train_samples=100), seed=0)
    assert capped.report["rows"] == {"train": 100, "validation": 318, "test": 318}
    assert abs(labels_of(capped.splits["train"]).count("positive") - 50) <= 1  # stratified
    go = data.prepare(DataConfig(source="goemotions", task="single_label", max_samples=1000), seed=0)
    own = {k: len(v) for k, v in goemotions_single.splits.items()}  # each own split sampled in proportion
    assert go.report["rows"] == {k: round(1000 * n / sum(own.values())) for k, n in own.items()}
    assert Counter(labels_of(go.splits["train"]))["neutral"] == pytest.approx(
        799 * Counter(labels_of(goemotions_single.splits["train"]))["neutral"] / own["train"], abs=1
    )


def test_carving_is_datasets_stratified_train_test_split():
    raw = data.load_raw(DataConfig(source="imdb-sample"))["train"]
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    pooled = datasets.Dataset.from_dict(
        {"text": raw["review"], "label": [int(s == "positive") for s in raw["sentiment"]]}, features=features
    )
    reference = pooled.train_test_split(test_size=318, stratify_by_column="label", seed=7)
    prepared = data.prepare(DataConfig(source="imdb-sample"), seed=7)
    assert prepared.splits["test"]["text"] == reference["test"]["text"]


def test_balance_goemotions_4_labels_800_samples(goemotions_single):
    balance = BalanceConfig(num_labels=4, num_samples=800)
    prepared = data.prepare(DataConfig(source="goemotions", task="single_label", balance=balance), seed=0)
    assert prepared.report["rows"] == {"train": 640, "validation": 80, "test": 80}
    single = Counter(lab for s in goemotions_single.splits.values() for lab in labels_of(s))
    top4 = sorted(sorted(single, key=lambda n: (-single[n], n))[:4])
    assert prepared.label_names == top4 and prepared.splits["train"].features["label"].names == top4
    overall = Counter(lab for s in prepared.splits.values() for lab in labels_of(s))
    assert overall == dict.fromkeys(top4, 200)
    assert Counter(labels_of(prepared.splits["validation"])) == dict.fromkeys(top4, 20)
    assert prepared.report["dropped_other_labels"] == sum(single.values()) - sum(single[n] for n in top4)
    named = BalanceConfig(num_labels=3, num_samples=100, labels=["joy", "anger", "fear"])
    uneven = data.prepare(DataConfig(source="goemotions", task="single_label", balance=named), seed=0)
    assert uneven.label_names == ["anger", "fear", "joy"] and sum(uneven.report["rows"].values()) == 99
    assert any("not a multiple of 3: 99 rows used" in note for note in uneven.report["notes"])


def test_balance_errors(goemotions_single):
    grief = Counter(labels_of(goemotions_single.splits["train"]))["grief"]
    grief += sum(labels_of(goemotions_single.splits[s]).count("grief") for s in ("validation", "test"))
    too_many = BalanceConfig(num_labels=2, num_samples=2000, labels=["grief", "joy"])
    with pytest.raises(DataError, match=f"label 'grief' has {grief} rows but 1000 were asked"):
        data.prepare(DataConfig(source="goemotions", task="single_label", balance=too_many), seed=0)
    unknown = BalanceConfig(num_labels=2, num_samples=100, labels=["joy", "glee"])
    with pytest.raises(DataError, match="unknown label.*glee.*admiration, amusement"):
        data.prepare(DataConfig(source="goemotions", task="single_label", balance=unknown), seed=0)
    with pytest.raises(ConfigError, match="data.balance.labels: lists a label twice"):  # caught by the config now
        BalanceConfig(num_labels=2, num_samples=100, labels=["joy", "joy"])


# ---- determinism ---------------------------------------------------------------------------------------
def test_same_seed_same_data_other_seed_or_data_other_fingerprint(tmp_path):
    a = data.prepare(DataConfig(source="imdb-sample", max_samples=300), seed=1)
    b = data.prepare(DataConfig(source="imdb-sample", max_samples=300), seed=1)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a.splits["train"]["text"] == b.splits["train"]["text"]
    c = data.prepare(DataConfig(source="imdb-sample", max_samples=300), seed=2)
    assert c.fingerprint != a.fingerprint and c.splits["test"]["text"] != a.splits["test"]["text"]
    rows = [dict(r) for r in ROWS * 3]
    before = data.prepare(cfg(write(tmp_path / "a.csv", rows)), seed=0).fingerprint
    rows[7]["text"] += "!"
    assert data.prepare(cfg(write(tmp_path / "b.csv", rows)), seed=0).fingerprint != before


# ---- tokenization --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imdb_small():
    return data.prepare(DataConfig(source="imdb-sample", max_samples=200), seed=0)


def test_tokenize_is_unpadded_truncated_and_cached(imdb_small, bert_tokenizer, cache_dir, monkeypatch):
    from studio import tokenization

    calls = []
    real_encode = tokenization.encode_ids

    def counting(*args, **kwargs):
        calls.append(1)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(tokenization, "encode_ids", counting)
    first, hit = data.tokenize(imdb_small, bert_tokenizer, 64, cache_dir)
    assert not hit and calls
    train = first["train"]
    assert train.column_names == ["input_ids", "labels"]  # the collator makes the masks
    lengths = [len(ids) for ids in train["input_ids"]]
    assert max(lengths) == 64 and min(lengths) < 64  # truncated at max_length, no padding
    from transformers import DataCollatorWithPadding

    short, long = min(range(len(lengths)), key=lengths.__getitem__), lengths.index(64)
    batch = DataCollatorWithPadding(bert_tokenizer)([train[short], train[long]])
    assert batch["attention_mask"][0].sum() == lengths[short] and batch["attention_mask"][1].sum() == 64
    assert train["labels"] == imdb_small.splits["train"]["label"]
    assert train["input_ids"][0][0] == bert_tokenizer.cls_token_id

    calls.clear()
    second, hit = data.tokenize(imdb_small, bert_tokenizer, 64, cache_dir)
    assert hit and not calls  # loaded from disk, tokenizer untouched
    assert second["test"]["input_ids"] == first["test"]["input_ids"]
    assert [p.name for p in (cache_dir / "tokenized").iterdir() if p.name.startswith(".")] == []  # no temp left

    _, hit = data.tokenize(imdb_small, bert_tokenizer, 128, cache_dir)
    assert not hit and calls and len(list((cache_dir / "tokenized").iterdir())) == 2


def test_tokenize_without_cache_dir_writes_nothing(imdb_small, bert_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, hit = data.tokenize(imdb_small, bert_tokenizer, 32, None)
    assert not hit and len(out["validation"]) == 20 and list(tmp_path.iterdir()) == []


def test_token_lengths_and_stats(imdb_small, bert_tokenizer):
    assert data.token_lengths(["hello world", "hello"], bert_tokenizer) == [4, 3]  # [CLS] ... [SEP]
    assert len(data.token_lengths(["a b"] * 50, bert_tokenizer, sample=10)) == 10
    stats = data.length_stats(list(range(1, 101)), max_length=90)
    assert stats["p50"] == pytest.approx(50.5) and stats["max"] == 100 and stats["truncated_share"] == 0.1
    full = data.dataset_stats(imdb_small, bert_tokenizer, max_length=256)
    assert full["rows"] == {"train": 160, "validation": 20, "test": 20}
    assert sum(full["labels"]["train"].values()) == 160 and set(full["labels"]["test"]) == {"negative", "positive"}
    assert full["token_lengths"]["count"] == 160 and 0.2 < full["token_lengths"]["truncated_share"] < 0.7
    assert "token_lengths" not in data.dataset_stats(imdb_small)


# ---- bad input (bad files: tests/test_datasource.py) ---------------------------------------------------
def test_split_ratios_must_sum_to_one():
    with pytest.raises(ConfigError, match="data.split_ratios: must sum to 1"):
        RunConfig.from_dict({"data": {"split_ratios": [0.7, 0.2, 0.2]}})
    with pytest.raises(ConfigError, match="must sum to 1"):
        DataConfig(split_ratios=[0.5, 0.1, 0.1])


def test_messy_but_valid_files_load_as_written(tmp_path, bert_tokenizer):
    """Quotes, commas and newlines inside a CSV cell stay one text; a single huge text (1 MB) loads and is cut
    at max_length when tokenized, not refused."""
    from studio.tokenization import tokenize

    rows = [{"text": f'He said "no, never",\nthen left. Review {i}', "label": "pos" if i % 2 else "neg"}
            for i in range(30)]  # fmt: skip
    rows[0]["text"] = "word " * 200_000
    prepared = data.prepare(DataConfig(source=str(write(tmp_path / "messy.csv", rows))), seed=0)
    texts = [t for split in prepared.splits.values() for t in split["text"]]
    assert len(texts) == 30 and sorted(texts) == sorted(r["text"] for r in rows)
    tokenized, _ = tokenize(prepared, bert_tokenizer, 32, None)
    assert max(len(ids) for split in tokenized.values() for ids in split["input_ids"]) == 32
