"""The bad-input matrix (issue 9): each bad input gets one line naming the field or file and what to do, exit
status 2 from the CLI, and nothing already saved is touched. `docs/bad_inputs.md` is this table, rendered by
`render()` and kept equal to it by `test_the_docs_table_is_this_matrix`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from studio.cli import EXIT_BAD_INPUT, main

DOC = Path(__file__).parents[1] / "docs" / "bad_inputs.md"


@dataclass(frozen=True)
class Bad:
    area: str
    what: str
    argv: Callable[[Path, Callable[[str], Path]], list[str]]
    """(tmp folder, tiny model folder by family) -> CLI arguments after --runs-dir (files made in tmp)."""
    words: tuple[str, ...]
    """Words the one-line message must contain: the field or file, and the way out."""


def _file(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _csv(tmp: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp / name
    frame.to_csv(path, index=False)
    return str(path)


def _train(*sets: str) -> list[str]:
    return ["train", "quick_demo", "--quiet", *[a for s in sets for a in ("--set", s)]]


def _reviews(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(n)],
                         "label": ["pos" if i % 2 else "neg" for i in range(n)]})  # fmt: skip


def _split_folder(tmp: Path) -> str:
    folder = tmp / "given-splits"
    folder.mkdir()
    _reviews().to_csv(folder / "train.csv", index=False)
    _reviews(10).assign(label=["pos", "neg", "meh"] + ["pos"] * 7).to_csv(folder / "test.csv", index=False)
    return str(folder)


def _multi_label_folder(tmp: Path) -> str:
    folder = tmp / "multi-label-splits"
    folder.mkdir()
    labels = ["pos", "neg", "pos;neg"]
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [labels[i % 3] for i in range(30)]}).to_csv(
        folder / "train.csv", index=False)  # fmt: skip
    pd.DataFrame({"text": ["a", "b"], "label": ["pos;zebra", "neg"]}).to_csv(folder / "test.csv", index=False)
    return str(folder)


def _jsonl_with_gaps() -> str:
    rows = [{"text": t, "label": v} for t, v in zip(_reviews().text, _reviews().label, strict=True)]
    rows[38] = {"body": rows[38]["text"], "label": "pos"}
    rows[39] = {"label": "neg"}
    return "\n".join(json.dumps(r) for r in rows)


def _jsonl_nested() -> str:
    return "\n".join(json.dumps({"text": {"title": f"t{i}", "body": "b"}, "label": "pos"}) for i in range(4))


def _xlsx_named_csv(tmp: Path) -> str:
    import zipfile

    with zipfile.ZipFile(tmp / "sheet.csv", "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return str(tmp / "sheet.csv")


def _csv_without_header(tmp: Path) -> str:
    _reviews().to_csv(tmp / "bare.csv", index=False, header=False)
    return str(tmp / "bare.csv")


def _no_config(tmp: Path) -> str:
    (tmp / "empty-model").mkdir()
    return str(tmp / "empty-model")


def _bin_only(tmp: Path, model: Path) -> str:
    import shutil

    folder = tmp / "bin-model"
    shutil.copytree(model, folder)
    for f in folder.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    return str(folder)


def _mismatched(tmp: Path, bert: Path, gpt2: Path) -> str:
    import shutil

    folder = tmp / "mismatch"
    shutil.copytree(bert, folder)
    for f in folder.glob("*token*"):
        f.unlink()
    for f in gpt2.glob("*token*"):
        shutil.copy(f, folder)
    for f in gpt2.glob("*.json"):
        if f.name not in ("config.json",):
            shutil.copy(f, folder)
    return str(folder)


MATRIX: list[Bad] = [
    # ---- config --------------------------------------------------------------------------------------
    Bad("config", "batch size 0", lambda t, m: _train("train.batch_size=0"), ("train.batch_size", "1")),
    Bad("config", "negative learning rate", lambda t, m: _train("train.learning_rate=-1e-4"),
        ("train.learning_rate",)),
    Bad("config", "LoRA rank 0", lambda t, m: _train("method.r=0"), ("method.r",)),
    Bad("config", "an unknown key", lambda t, m: _train("train.bogus=1"), ("train.bogus", "unknown key")),
    Bad("config", "a value of the wrong type", lambda t, m: _train("train.epochs=many"), ("train.epochs",)),
    Bad("config", "a choice that does not exist", lambda t, m: _train("train.optimizer=adam9000"),
        ("train.optimizer",)),
    Bad("config", "eval every N steps without N", lambda t, m: _train("train.eval_strategy=steps",
        "train.eval_steps=null"), ("train.eval_steps",)),
    Bad("config", "placement custom without target modules", lambda t, m: _train("method.placement=custom"),
        ("method.target_modules",)),
    Bad("config", "full fine-tuning with an adapter placement", lambda t, m: _train("method.name=full",
        "method.placement=qv"), ("method.placement", "auto")),
    Bad("config", "early stopping without evaluations", lambda t, m: _train("train.eval_strategy=no",
        "train.early_stopping_patience=2"), ("train.early_stopping_patience",)),
    Bad("config", "a preset from a newer studio",
        lambda t, m: ["train", _file(t, "new.yaml", "version: 99\nname: x\n")], ("version", "upgrade")),
    Bad("config", "a preset that is not YAML",
        lambda t, m: ["train", _file(t, "broken.yaml", "data: [unclosed\n")], ("not valid YAML",)),
    Bad("config", "an empty preset", lambda t, m: ["train", _file(t, "empty.yaml", "")], ("empty",)),
    Bad("config", "a preset that does not exist", lambda t, m: ["train", "no_such_preset"],
        ("preset not found", "quick_demo")),
    Bad("config", "a negative class weight", lambda t, m: _train("train.class_weights={positive: -1}"),
        ("train.class_weights", "must be > 0")),
    Bad("config", "focal gamma below 0", lambda t, m: _train("train.loss=focal", "train.focal_gamma=-1"),
        ("train.focal_gamma", "greater than or equal to 0")),
    Bad("config", "a multi-label task told to drop multi-label rows",
        lambda t, m: _train("data.task=multi_label", "data.multi_label=drop"),
        ("data.multi_label", "single-label", "task: single_label")),
    Bad("config", "a multi-label metric on single-label data",
        lambda t, m: _train("train.metric_for_best=roc_auc_macro"),
        ("train.metric_for_best", "multi-label metric", "f1_macro")),
    # ---- data ----------------------------------------------------------------------------------------
    Bad("data", "a file that does not exist", lambda t, m: _train("data.source=missing.csv"),
        ("file not found: missing.csv",)),
    Bad("data", "a file type the studio does not read",
        lambda t, m: _train(f"data.source={_file(t, 'reviews.docx', b'PK fake')}"),
        ("reviews.docx", "supported: .csv")),
    Bad("data", "a truncated Parquet file",
        lambda t, m: _train(f"data.source={_file(t, 'cut.parquet', b'PAR1 truncated')}"),
        ("cut.parquet", "not a readable Parquet file")),
    Bad("data", "an empty CSV", lambda t, m: _train(f"data.source={_file(t, 'empty.csv', '')}"),
        ("empty.csv is empty",)),
    Bad("data", "a label column that is not there", lambda t, m: _train("data.label_column=stars"),
        ("data.label_column", "review, sentiment")),
    Bad("data", "a text column that is not there", lambda t, m: _train("data.text_column=body"),
        ("data.text_column", "review, sentiment")),
    Bad("data", "a single label in the data",
        lambda t, m: _train(f"data.source={_csv(t, 'one.csv', _reviews().assign(label='pos'))}"),
        ("data.label_column", "at least 2 classes")),
    Bad("data", "labels that are fractional numbers",
        lambda t, m: _train(f"data.source={_csv(t, 'floats.csv', _reviews().assign(label=[i / 7 for i in range(40)]))}"),  # noqa: E501
        ("data.label_column", "bucket the values into classes")),
    Bad("data", "duplicated column names",
        lambda t, m: _train(f"data.source={_file(t, 'dup.csv', 'text,text,label' + chr(10) + 'a,b,pos' + chr(10))}"),
        ("dup.csv", "more than one column named 'text'")),
    Bad("data", "a test label that train never has", lambda t, m: _train(f"data.source={_split_folder(t)}"),
        ("data.label_column", "'meh' in test", "never has")),
    Bad("data", "class weights naming a label the data does not have",
        lambda t, m: _train("train.class_weights={thrilled: 2}"),
        ("train.class_weights", "'thrilled' is not a label", "negative, positive")),
    Bad("data", "a multi-label test label that train never has",
        lambda t, m: _train(f"data.source={_multi_label_folder(t)}", "data.label_separator=;", "data.task=auto",
                            "data.multi_label=null"),
        ("data.label_column", "'zebra' in test", "never has")),
    Bad("data", "a balanced subset of multi-label data",
        lambda t, m: _train("data.source=goemotions", "data.task=auto", "data.multi_label=null",
                            "data.balance={num_labels: 2, num_samples: 100}"),
        ("data.balance", "multi-label", "multi_label: drop")),
    Bad("data", "a balanced subset larger than the data",
        lambda t, m: _train("data.balance={num_labels: 2, num_samples: 100000}"), ("data.balance",)),
    # ---- data intake (issue 22) -----------------------------------------------------------------------
    Bad("data", "a JSON array of numbers, not of rows",
        lambda t, m: _train(f"data.source={_file(t, 'rows.json', '[1, 2, 3]')}"),
        ("rows.json is a JSON array of numbers", "must be an object")),
    Bad("data", "JSON lines of which some lack the text",
        lambda t, m: _train(f"data.source={_file(t, 'gaps.jsonl', _jsonl_with_gaps())}"),
        ("gaps.jsonl", "2 of 40 rows have no 'text'", "line 39", "data.text_column")),
    Bad("data", "texts that are JSON objects",
        lambda t, m: _train(f"data.source={_file(t, 'nested.jsonl', _jsonl_nested())}"),
        ("data.text_column", "are objects or lists", "flatten")),
    Bad("data", "a spreadsheet saved with a .csv name",
        lambda t, m: _train(f"data.source={_xlsx_named_csv(t)}"), ("sheet.csv is an Excel workbook", "CSV UTF-8")),
    Bad("data", "an unquoted comma in the first row's text",
        lambda t, m: _train(f"data.source={_file(t, 'commas.csv', 'text,label' + chr(10) + 'bad, really,neg' + chr(10))}"),  # noqa: E501
        ("commas.csv is not valid CSV", "the header's 2 fields", "double quotes")),
    Bad("data", "a file without a header row",
        lambda t, m: _train(f"data.source={_csv_without_header(t)}"), ("data.text_column", "data.header: false")),
    Bad("data", "an id column as the label",
        lambda t, m: _train(f"data.source={_csv(t, 'ids.csv', _reviews(60).assign(id=[f'r{i}' for i in range(60)]))}",
                            "data.label_column=id"),
        ("data.label_column", "'id' has 60 different values", "'label' (2 values) looks like the label")),
    Bad("data", "every row multi-label while multi-label rows are dropped",
        lambda t, m: _train(f"data.source={_csv(t, 'multi.csv', _reviews().assign(label='pos;neg'))}",
                            "data.label_separator=;", "data.task=single_label"),
        ("data.multi_label", "carries several labels", "data.task: multi_label")),
    Bad("data", "a label file that does not match the texts",
        lambda t, m: _train(f"data.source={_file(t, 'texts.txt', chr(10).join(_reviews().text))}",
                            f"data.label_file={_file(t, 'labels.txt', 'pos' + chr(10) + 'neg')}"),
        ("data.label_file", "labels.txt has 2 lines but texts.txt has 40 texts")),
    Bad("data", "a separate test file that does not exist",
        lambda t, m: _train("data.test_source=held-out.csv"), ("data.test_source", "file not found: held-out.csv")),
    Bad("data", "a separate validation file without the text column",
        lambda t, m: _train(f"data.validation_source={_file(t, 'dev.csv', 'body,sentiment' + chr(10) + 'a,positive')}"),  # noqa: E501
        ("data.validation_source.text_column", "body, sentiment")),
    # ---- model ---------------------------------------------------------------------------------------
    Bad("model", "a Hub id that does not exist (or no network)",
        lambda t, m: _train("model.name=nobody/no-such-model-xyz", "data.max_samples=60"), ("model.name",)),
    Bad("model", "a local folder without config.json",
        lambda t, m: _train(f"model.name={_no_config(t)}", "data.max_samples=60"), ("model.name",)),
    Bad("model", "a folder with pickled .bin weights only",
        lambda t, m: _train(f"model.name={_bin_only(t, m('bert'))}", "data.max_samples=60"),
        ("model.name", "safetensors")),
    Bad("model", "a tokenizer that does not belong to the model",
        lambda t, m: _train(f"model.name={_mismatched(t, m('bert'), m('gpt2'))}", "data.max_samples=60"),
        ("model.name", "do not belong together")),
    Bad("model", "max length above the model's limit",
        lambda t, m: _train(f"model.name={m('bert')}", "data.max_length=100000", "data.max_samples=60"),
        ("data.max_length",)),
    # ---- playground / predict ------------------------------------------------------------------------
    Bad("predict", "a run id that does not exist", lambda t, m: ["predict", "20990101-000000-nope-0000", "hi"],
        ("no run '20990101-000000-nope-0000'",)),
    Bad("predict", "a path instead of a run id", lambda t, m: ["predict", "../../etc", "hi"], ("not a run id",)),
    Bad("predict", "show a run that does not exist", lambda t, m: ["show", "nope"], ("no run 'nope'",)),
    Bad("predict", "a label threshold outside [0, 1]",
        lambda t, m: ["predict", "20990101-000000-nope-0000", "hi", "--threshold", "1.5"],
        ("--threshold", "outside [0, 1]")),
]  # fmt: skip


def _snapshot(runs_dir: Path) -> tuple:
    """Every run folder's files (with their mtimes) and every registry row. The SQLite file itself is left
    out: opening the registry may checkpoint its write-ahead log, which rewrites the file, not the rows."""
    from studio.registry import Registry

    files = {str(p.relative_to(runs_dir)): p.stat().st_mtime for p in runs_dir.rglob("*")
             if p.is_file() and not p.name.startswith("registry.sqlite")}  # fmt: skip
    return files, [r.__dict__ for r in Registry(runs_dir).list()]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model_dir):
    """A runs folder with one finished run: no bad input may touch it."""
    from test_training import tiny_config

    from studio.registry import Registry
    from studio.training import Run

    runs = tmp_path_factory.mktemp("runs")
    result = Run(tiny_config(tiny_model_dir("bert"), "lora", max_steps=1), Registry(runs)).execute()
    assert result.status == "completed"
    return runs


@pytest.mark.parametrize("bad", MATRIX, ids=[f"{b.area}: {b.what}" for b in MATRIX])
def test_bad_input_gets_one_line_and_touches_nothing(bad, saved, tmp_path, tiny_model_dir, capsys):
    before = _snapshot(saved)
    code = main(["--runs-dir", str(saved), *bad.argv(tmp_path, tiny_model_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in bad.words:
        assert word in err[0], err[0]
    assert _snapshot(saved) == before  # nothing saved was touched (a failed run writes no folder either)


def render() -> str:
    rows = [f"| {b.area} | {b.what} | {', '.join(f'`{w}`' for w in b.words)} |" for b in MATRIX]
    return (
        "# Bad inputs\n\n"
        "Generated from `tests/test_bad_inputs.py` (`MATRIX`), which checks each: the CLI exits with status 2\n"
        "and one line `error: ...` containing the words listed (the field or file, and what to do), and the\n"
        f"runs folder is untouched. {len(MATRIX)} inputs.\n\n"
        "| area | bad input | the message names |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def test_the_docs_table_is_this_matrix():
    assert len(MATRIX) >= 25
    assert DOC.read_text(encoding="utf-8") == render(), "regenerate: PYTHONPATH=. python tests/test_bad_inputs.py"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(json.dumps({"written": str(DOC), "inputs": len(MATRIX)}))
