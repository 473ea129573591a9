"""Data intake (issue 22): files as users have them load right or are refused in their words, and separate
validation/test files are first-class. Every test makes its own file."""

from __future__ import annotations

import bz2
import gzip
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from studio.config import ConfigError, DataConfig
from studio.data import label_ids, load_raw, prepare
from studio.errors import DataError


def _write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def _reviews_csv(n: int = 60, sep: str = ",", header: bool = True) -> str:
    rows = [f"review {i} was {'good' if i % 2 else 'bad'}{sep}{'pos' if i % 2 else 'neg'}" for i in range(n)]
    return "\n".join(([f"text{sep}label"] if header else []) + rows) + "\n"


def _texts(prepared, split: str = "train") -> list[str]:
    return prepared.splits[split]["text"]


# ---- 1-3: JSON -----------------------------------------------------------------------------------------
def test_jsonl_rows_are_read_with_every_key_not_only_the_first_rows(tmp_path):
    lines = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg", "source": "web"}]
    raw = load_raw(DataConfig(source=_write(tmp_path / "keys.jsonl", "\n".join(map(json.dumps, lines)))))
    assert raw["train"].column_names == ["text", "label", "source"]
    assert raw["train"]["source"] == [None, "web"]


def test_jsonl_rows_without_the_text_are_refused_with_the_count_and_the_first_line(tmp_path):
    lines = [json.dumps({"text": f"t{i}", "label": "pos"}) for i in range(5)] + ['{"body": "x", "label": "neg"}'] * 2
    with pytest.raises(DataError, match=r"2 of 7 rows have no 'text' \(the text column\), the first at line 6"):
        load_raw(DataConfig(source=_write(tmp_path / "gaps.jsonl", "\n".join(lines))))
    # predict reads the same file with the gaps as None, to mark those rows
    raw = load_raw(DataConfig(source=str(tmp_path / "gaps.jsonl")), check_columns=False)
    assert raw["train"]["text"][5:] == [None, None]


@pytest.mark.parametrize(("content", "kind"), [("[[\"a\", \"pos\"], [\"b\", \"neg\"]]", "lists"),
                                               ('["a", "b"]', "strings"), ("[1, 2]", "numbers")])  # fmt: skip
def test_a_json_array_of_non_objects_is_refused_naming_what_it_holds(tmp_path, content, kind):
    with pytest.raises(DataError, match=f"rows.json is a JSON array of {kind} .*must be an object"):
        load_raw(DataConfig(source=_write(tmp_path / "rows.json", content)))


def test_nested_texts_are_refused_and_a_list_label_is_multi_label(tmp_path):
    nested = [{"text": {"title": "t", "body": "b"}, "label": "pos"}, {"text": "plain", "label": "neg"}]
    with pytest.raises(DataError, match=r"data.text_column: 1 texts? in 'text' of nested.jsonl is objects or lists"):
        load_raw(DataConfig(source=_write(tmp_path / "nested.jsonl", "\n".join(map(json.dumps, nested)))))
    lists = [{"text": ["a", "b"], "label": "pos"}] * 3
    with pytest.raises(DataError, match="3 texts in 'text' of lists.jsonl are objects or lists.*line 1"):
        load_raw(DataConfig(source=_write(tmp_path / "lists.jsonl", "\n".join(map(json.dumps, lists)))))
    # typed formats (Parquet) are checked when the columns are picked, the row named
    pd.DataFrame({"text": [["a", "b"]] * 3, "label": ["pos"] * 3}).to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(DataError, match="3 texts in 'text' of the train split are objects or lists.*row 1"):
        prepare(DataConfig(source=str(tmp_path / "lists.parquet")), 0)
    objects = [{"text": f"t{i}", "label": {"name": "pos"}} for i in range(3)]
    with pytest.raises(DataError, match="data.label_column: 3 labels in .label. of objects.jsonl are objects.*line 1"):
        prepare(DataConfig(source=_write(tmp_path / "objects.jsonl", "\n".join(map(json.dumps, objects)))), 0)
    mixed = [{"text": f"t{i}", "label": ["pos", "neg"] if i % 3 == 0 else "pos"} for i in range(30)]
    mixed += [{"text": f"n{i}", "label": "neg"} for i in range(30)]
    data = prepare(DataConfig(source=_write(tmp_path / "mixed.jsonl", "\n".join(map(json.dumps, mixed)))), 0)
    assert data.multi_label and data.label_names == ["neg", "pos"]


# ---- 4: what a file is, by its content -----------------------------------------------------------------
def test_compression_is_read_from_the_content_not_the_name(tmp_path):
    text = _reviews_csv().encode()
    for name, packed in (("gz-named.csv", gzip.compress(text)), ("bz.csv", bz2.compress(text)),
                         ("plain.csv.gz", text)):  # fmt: skip
        assert len(load_raw(DataConfig(source=_write(tmp_path / name, packed)))["train"]) == 60, name


def test_a_spreadsheet_or_pdf_named_csv_is_named_for_what_it_is(tmp_path):
    with zipfile.ZipFile(tmp_path / "sheet.csv", "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(DataError, match=r"sheet.csv is an Excel workbook \(.xlsx\), not CSV text; .*CSV UTF-8"):
        load_raw(DataConfig(source=str(tmp_path / "sheet.csv")))
    with zipfile.ZipFile(tmp_path / "bundle.jsonl", "w") as z:
        z.writestr("data/reviews.jsonl", "{}")
    with pytest.raises(DataError, match="bundle.jsonl is a zip archive, not JSONL text; extract it"):
        load_raw(DataConfig(source=str(tmp_path / "bundle.jsonl")))
    with pytest.raises(DataError, match="report.csv is a PDF document"):
        load_raw(DataConfig(source=_write(tmp_path / "report.csv", b"%PDF-1.7 ...")))
    with pytest.raises(DataError, match=r"old.csv is an old-format Office file \(.xls or .doc\)"):
        load_raw(DataConfig(source=_write(tmp_path / "old.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64)))


def test_a_parquet_file_with_another_name_and_utf16_text_are_read(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_parquet(tmp_path / "really-parquet.csv")
    assert load_raw(DataConfig(source=str(tmp_path / "really-parquet.csv")))["train"]["label"] == ["x", "y"]
    path = _write(tmp_path / "unicode.tsv", "text\tlabel\ncafé\tpos\n".encode("utf-16"))
    assert load_raw(DataConfig(source=path))["train"]["text"] == ["café"]


# ---- 5-7: values ---------------------------------------------------------------------------------------
def test_texts_that_look_like_numbers_stay_text(tmp_path):
    path = _write(tmp_path / "codes.csv", "text,label\n001074,a\n1e5,b\n 12 ,a\nNA,b\n")
    assert load_raw(DataConfig(source=path))["train"]["text"] == ["001074", "1e5", " 12 ", "NA"]


def test_number_labels_written_in_a_csv_are_still_numbers(tmp_path):
    rows = "\n".join(f"t{i},{i % 2}" for i in range(40))
    path = _write(tmp_path / "ids.csv", "text,label\n" + rows + "\n")
    assert prepare(DataConfig(source=path, label_names=["neg", "pos"]), 0).label_names == ["neg", "pos"]
    path = _write(tmp_path / "scores.csv", "text,label\n" + "\n".join(f"t{i},{i / 7:.3f}" for i in range(40)))
    with pytest.raises(DataError, match="bucket the values into classes"):
        prepare(DataConfig(source=path), 0)


def test_label_spaces_are_stripped_and_case_variants_are_reported_or_merged(tmp_path):
    labels = ["pos", "pos ", " neg", "neg", "Pos"] * 12
    path = _write(tmp_path / "spell.csv", "text,label\n" + "".join(f"t{i},{v}\n" for i, v in enumerate(labels)))
    kept = prepare(DataConfig(source=path), 0)
    assert kept.label_names == ["Pos", "neg", "pos"]
    assert any("differ only by case" in n and "'pos' (24 rows) and 'Pos' (12 rows)" in n for n in kept.report["notes"])
    merged = prepare(DataConfig(source=path, merge_label_case=True), 0)
    assert merged.label_names == ["neg", "pos"]
    assert sum(len(merged.splits[k]) for k in merged.splits) == 60


def test_an_id_column_as_the_label_is_refused_naming_a_likelier_one(tmp_path):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(300)], "id": [f"r{i}" for i in range(300)],
                          "stars": [str(1 + i % 5) for i in range(300)]})  # fmt: skip
    frame.to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(DataError, match=r"data.label_column: 'id' has 300 different values .*'stars' \(5 values\) "
                                        "looks like the label: set data.label_column: stars"):  # fmt: skip
        prepare(DataConfig(source=str(tmp_path / "ids.csv"), label_column="id"), 0)


# ---- 8: headers, delimiters, text files ---------------------------------------------------------------
@pytest.mark.parametrize("sep", [";", "|", "\t"])
def test_the_delimiter_is_sniffed(tmp_path, sep):
    data = prepare(DataConfig(source=_write(tmp_path / "sep.csv", _reviews_csv(sep=sep))), 0)
    assert data.label_names == ["neg", "pos"] and data.report["rows_loaded"] == 60


def test_a_comma_csv_whose_texts_hold_semicolons_stays_a_comma_csv(tmp_path):
    rows = "".join(f'"a; b; c {i}",{"pos" if i % 2 else "neg"}\n' for i in range(40))
    raw = load_raw(DataConfig(source=_write(tmp_path / "semi-in-text.csv", "text,label\n" + rows)))
    assert raw["train"]["text"][0] == "a; b; c 0"


def test_a_file_without_a_header_keeps_its_first_row(tmp_path):
    path = _write(tmp_path / "bare.csv", _reviews_csv(header=False))
    assert len(load_raw(DataConfig(source=path, header=False))["train"]) == 60
    with pytest.raises(DataError, match="data.header: false"):  # by default the first row is the header
        prepare(DataConfig(source=path), 0)
    wide = _write(tmp_path / "wide.csv", "".join(f"{i},t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    raw = load_raw(DataConfig(source=wide, header=False))
    assert raw["train"].column_names == ["column_1", "column_2", "column_3"]


def test_txt_files_text_label_lines_one_text_per_line_and_a_label_file(tmp_path):
    lines = _write(tmp_path / "lines.txt", _reviews_csv(sep=";", header=False))  # no header: detected
    assert prepare(DataConfig(source=lines), 0).report["rows_loaded"] == 60
    with_header = _write(tmp_path / "named.txt", _reviews_csv(sep="|"))
    assert prepare(DataConfig(source=with_header), 0).report["rows_loaded"] == 60
    texts = _write(tmp_path / "texts.txt", "".join(f"review, number {i}\n" for i in range(40)) + "\n")
    assert load_raw(DataConfig(source=texts))["train"].column_names == ["text"]
    labels = _write(tmp_path / "labels.txt", "".join(f"{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    data = prepare(DataConfig(source=texts, label_file=labels), 0)
    assert data.report["rows_loaded"] == 40 and data.label_names == ["neg", "pos"]
    short = _write(tmp_path / "short.txt", "pos\nneg\n")
    with pytest.raises(DataError, match="data.label_file: short.txt has 2 lines but texts.txt has 40 texts"):
        prepare(DataConfig(source=texts, label_file=short), 0)


# ---- 9: every row multi-label, told to drop them --------------------------------------------------------
def test_dropping_every_row_for_its_several_labels_says_so(tmp_path):
    path = _write(tmp_path / "all-multi.csv", "text,label\n" + "".join(f't{i},"a,b"\n' for i in range(20)))
    with pytest.raises(DataError, match="data.multi_label: every labelled row .* carries several labels .*20 rows"
                                        ".*data.task: multi_label"):  # fmt: skip
        prepare(DataConfig(source=path, label_separator=",", task="single_label"), 0)


# ---- 12: duplicates and leakage -------------------------------------------------------------------------
def _leaky_folder(tmp_path: Path) -> str:
    folder = tmp_path / "leaky"
    folder.mkdir()
    train = [f"text {i % 50}" for i in range(60)]  # 10 repeats
    labels = [("pos", "neg")[i % 50 % 2] for i in range(60)]
    pd.DataFrame({"text": train, "label": labels}).to_csv(folder / "train.csv", index=False)
    test = [f"text {i}" for i in range(45, 55)]  # 5 also in train
    pd.DataFrame({"text": test, "label": [("pos", "neg")[i % 2] for i in range(45, 55)]}).to_csv(
        folder / "test.csv", index=False)  # fmt: skip
    return str(folder)


def test_repeated_and_leaked_texts_are_counted_and_can_be_dropped(tmp_path):
    cfg = DataConfig(source=_leaky_folder(tmp_path), splits="auto")
    data = prepare(cfg, 0)
    assert sum(data.report["duplicates"].values()) + data.report["leaked"]["validation"] >= 10
    leaked = len(set(_texts(data, "test")) & set(_texts(data)))  # 5 test texts are in the source's train, most kept
    assert leaked >= 3 and data.report["leaked"]["test"] == leaked
    assert any(f"{leaked} test rows have a text that is also in train" in n for n in data.report["notes"])  # >= 3
    clean = prepare(DataConfig(source=cfg.source, drop_duplicates=True), 0)
    train = set(_texts(clean))
    assert len(train) == len(_texts(clean)) and not train & set(_texts(clean, "test"))
    assert not train & set(_texts(clean, "validation"))
    assert len(clean.splits["test"]) == 10 - clean.report["leaked"]["test"]  # a given test file loses only those


# ---- separate validation / test files -------------------------------------------------------------------
def _separate(tmp_path: Path) -> dict[str, str]:
    pd.DataFrame(
        {"sentence": [f"train text {i}" for i in range(200)], "label": [("pos", "neg")[i % 2] for i in range(200)]}
    ).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(
        {"content": [f"dev text {i}" for i in range(30)], "label": [("pos", "neg")[i % 2] for i in range(30)]}
    ).to_csv(tmp_path / "dev.csv", index=False)
    pd.DataFrame(
        {"text": [f"test text {i}" for i in range(40)], "label": [("pos", "neg")[i % 2] for i in range(40)]}
    ).to_csv(tmp_path / "held.csv", index=False)
    return {
        name: str(tmp_path / f"{file}.csv") for name, file in (("source", "train"), ("dev", "dev"), ("test", "held"))
    }


def test_separate_validation_and_test_files_with_their_own_column_names(tmp_path):
    files = _separate(tmp_path)
    dev = {"source": files["dev"], "text_column": "content"}
    cfg = DataConfig(source=files["source"], text_column="sentence", max_train_samples=50, max_samples=100,
                     validation_source=dev, test_source=files["test"])  # fmt: skip
    data = prepare(cfg, 0)
    assert data.report["rows"] == {"train": 50, "validation": 30, "test": 40}  # test never sampled, train capped
    assert _texts(data, "test") == [f"test text {i}" for i in range(40)]  # in the file's order
    assert "data.test_source" in data.report["origins"]["test"] and "held.csv" in data.report["origins"]["test"]
    assert "data.validation_source" in data.report["origins"]["validation"]
    assert all(t.startswith("train text") for t in _texts(data))


def test_a_separate_test_file_only_carves_validation_from_the_source(tmp_path):
    files = _separate(tmp_path)
    data = prepare(DataConfig(source=files["source"], test_source=files["test"]), 0)
    assert data.report["rows"] == {"train": 178, "validation": 22, "test": 40}  # 200 x 0.1 / 0.9 = 22
    assert "carved from" in data.report["origins"]["validation"]
    ratio = prepare(DataConfig(source=files["source"], test_source=files["test"], splits="ratio"), 0)
    assert ratio.report["rows"]["test"] == 40


def test_a_separate_file_is_named_in_its_errors(tmp_path):
    files = _separate(tmp_path)
    body = _write(tmp_path / "body.csv", "body,label\na,pos\nb,neg\n")
    with pytest.raises(DataError, match="data.validation_source.text_column: no text column found.*body, label"):
        prepare(DataConfig(source=files["source"], validation_source=body), 0)
    with pytest.raises(DataError, match="data.test_source: file not found: nope.csv"):
        prepare(DataConfig(source=files["source"], test_source="nope.csv"), 0)
    unseen = _write(tmp_path / "unseen.csv", "text,label\na,pos\nb,meh\n")
    with pytest.raises(DataError, match="'meh' in test"):
        prepare(DataConfig(source=files["source"], test_source=unseen), 0)
    with pytest.raises(ConfigError, match="data.balance"):
        DataConfig(source=files["source"], test_source=files["test"], balance={"num_labels": 2, "num_samples": 40})


def test_a_split_of_a_folder_can_be_the_test_source(tmp_path):
    folder = tmp_path / "splits"
    folder.mkdir()
    for name in ("train", "test"):
        pd.DataFrame({"text": [f"{name} {i}" for i in range(20)], "label": ["pos", "neg"] * 10}).to_csv(
            folder / f"{name}.csv", index=False)  # fmt: skip
    files = _separate(tmp_path)
    data = prepare(DataConfig(source=files["source"], text_column="sentence", test_source=str(folder)), 0)
    assert _texts(data, "test")[0] == "test 0"
    picked = prepare(DataConfig(source=files["source"], text_column="sentence",
                                test_source={"source": str(folder), "split": "train"}), 0)  # fmt: skip
    assert _texts(picked, "test")[0] == "train 0"
    assert set(label_ids(picked.splits["test"])) == {0, 1}


def test_a_run_trains_on_the_source_and_tests_on_the_separate_file_with_its_notes(tmp_path, tiny_model_dir):
    """A run with a separate test file: its test metrics count exactly that file's rows, and the run's data
    report keeps where each split came from and the leakage note."""
    from test_training import tiny_config

    from studio.registry import Registry
    from studio.training import Run

    files = _separate(tmp_path)
    held = pd.read_csv(files["test"])
    pd.concat([held, pd.DataFrame({"text": ["train text 3"], "label": ["neg"]})]).to_csv(files["test"], index=False)
    config = tiny_config(tiny_model_dir("bert"), "lora", max_steps=1).with_overrides(
        [
            f"data.source={files['source']}",
            f"data.test_source={files['test']}",
            "data.max_samples=null",
            "data.text_column=sentence",
        ]  # fmt: skip
    )
    result = Run(config, Registry(tmp_path / "runs")).execute()
    assert result.status == "completed"
    data = Registry(tmp_path / "runs").summary(result.run_id).data
    assert data.rows["test"] == 41 and "data.test_source" in data.extra["origins"]["test"]
    assert data.extra["leaked"]["test"] == 1
    assert any("1 test row has a text that is also in train" in n for n in data.notes)


def test_a_blank_line_in_a_one_column_file_is_an_empty_text_not_nothing(tmp_path):
    raw = load_raw(DataConfig(source=_write(tmp_path / "texts.csv", "text\ngood\n\nbad\n\n")))
    assert raw["train"]["text"] == ["good", None, "bad"]  # the row is kept (predict marks it); the end is the end
