"""The command line: train, runs, show, predict, validate, presets; one-line errors with exit codes."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from studio.cli import EXIT_BAD_INPUT, EXIT_FAILED, main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def trained(tiny_model_dir, runs_dir, capsys):
    code, out, err = run_cli(
        capsys, "--runs-dir", runs_dir, "train", "quick_demo", "--quiet", "--name", "cli",
        "--set", f"model.name={tiny_model_dir('bert')}",
        "--set", "method.freeze_layers=0", "--set", "method.name=lora", "--set", "train.max_steps=2",
        "--set", "data.max_samples=200", "--set", "data.max_length=32",
    )  # fmt: skip
    assert code == 0, err
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run "))
    return run_id, out


def test_train_runs_show_predict(trained, runs_dir, capsys, tmp_path):
    run_id, out = trained
    assert "-cli-" in run_id and "test accuracy" in out and "saved in" in out
    code, out, _ = run_cli(capsys, "--runs-dir", runs_dir, "runs")
    assert code == 0 and run_id in out and "completed" in out
    code, out, _ = run_cli(capsys, "--runs-dir", runs_dir, "show", run_id, "--json")
    assert code == 0 and '"reproducibility"' in out and '"confusion_matrix"' in out
    code, out, _ = run_cli(capsys, "--runs-dir", runs_dir, "predict", run_id, "a fine film", "a dull film")
    assert code == 0 and len(out.strip().splitlines()) == 2
    assert all(line.split("\t")[0] in ("negative", "positive") for line in out.strip().splitlines())
    file = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["good", "bad"]}).to_csv(file, index=False)
    code, out, _ = run_cli(capsys, "--runs-dir", runs_dir, "predict", run_id, "--file", file)
    assert code == 0 and "2 predictions written" in out
    assert list(pd.read_csv(tmp_path / "texts.predictions.csv").columns)[:3] == ["text", "predicted_label", "score"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "no_such_preset"], ["preset not found", "quick_demo"]),
        (["train", "quick_demo", "--set", "train.batch_size=0"], ["train.batch_size"]),
        (["train", "quick_demo", "--set", "train.bogus=1"], ["train.bogus: unknown key"]),
        (["train", "quick_demo", "--set", "data.source=missing.csv"], ["file not found: missing.csv"]),
        (["train", "quick_demo", "--set", "data.label_column=stars"], ["data.label_column", "review, sentiment"]),
        (["predict", "20990101-000000-nope-0000", "text"], ["no run '20990101-000000-nope-0000'"]),
        (["predict", "../../etc", "text"], ["not a run id"]),
        (["show", "nope"], ["no run 'nope'"]),
        (["show", "nope", "--json"], ["no run 'nope'"]),
    ],
)
def test_bad_input_exits_2_with_one_line(runs_dir, capsys, argv, words):
    code, out, err = run_cli(capsys, "--runs-dir", runs_dir, *argv)
    assert code == EXIT_BAD_INPUT
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert not any(p.is_dir() and not p.name.startswith(".") for p in runs_dir.glob("*")), "nothing written"


def test_validate_and_presets_list(capsys):
    code, out, _ = run_cli(capsys, "validate", "quick_demo", "imdb_bert_qlora")
    assert code == 0 and out.count("ok  ") == 2
    assert "data: 2,636 rows (2,000 train / 318 validation / 318 test), 2 labels (single-label); text column " \
           "'review', label column 'sentiment'" in out  # fmt: skip
    assert "data not checked: dipanjanS/imdb_sentiment_finetune_dataset20k is a Hub dataset (needs the network" in out
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and "quick_demo" in out and "imdb_bert_qlora" in out


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.csv", None, ["data.source: file not found: ", "missing.csv"]),
        ("latin.csv", "review,sentiment\ncaf\xe9 cr\xe8me,positive\n".encode("latin-1"), ["latin.csv is not UTF-8"]),
        ("stars.csv", b"review,stars\ngood,5\nbad,1\n", ["data.label_column", "the data has columns: review, stars"]),
    ],
)
def test_validate_checks_the_data_source(capsys, tmp_path, name, content, words):
    file = tmp_path / name
    if content is not None:
        file.write_bytes(content)
    code, out, err = run_cli(capsys, "validate", "quick_demo", "--set", f"data.source={file}")
    assert code == EXIT_BAD_INPUT and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: quick_demo: "), err
    for word in words:
        assert word in lines[0]
    code, out, err = run_cli(capsys, "validate", "quick_demo", "--no-data", "--set", f"data.source={file}")
    assert code == 0 and "data not checked (--no-data)" in out and err == ""


def test_validate_checks_every_preset_and_names_the_bad_one(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: nowhere/reviews.csv\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "validate", bad, "quick_demo")
    assert code == EXIT_BAD_INPUT
    assert err.strip().splitlines() == [f"error: {bad}: data.source: file not found: nowhere/reviews.csv"]
    assert out.startswith("ok  quick_demo: ") and "data: 2,636 rows" in out  # the good one is still checked


# ---- inspect -------------------------------------------------------------------------------------------
def skewed_csv(path) -> str:
    """40 short reviews, 32 'good' and 8 'bad' (4:1), a few long enough to be cut at 8 tokens."""
    rows = [("a fine film" + " and more" * (i % 4), "good") for i in range(32)] + [("dull", "bad")] * 8
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def inspect_args(tiny_model_dir, tmp_path, *more) -> list:
    return ["inspect", "quick_demo", "--set", f"data.source={skewed_csv(tmp_path / 'skewed.csv')}",
            "--set", "data.text_column=text", "--set", "data.label_column=label", "--set", "data.max_length=8",
            "--set", f"model.name={tiny_model_dir('bert')}",
            "--set", "method.freeze_layers=0", *more]  # fmt: skip


@pytest.mark.parametrize("rich", [True, False])
def test_inspect_shows_what_the_data_tab_shows(tiny_model_dir, tmp_path, capsys, monkeypatch, rich):
    import sys

    if not rich:
        for name in ("rich", "rich.console"):  # not installed: plain aligned text
            monkeypatch.setitem(sys.modules, name, None)
    code, out, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path))
    assert code == 0, err
    lines = [line.rstrip() for line in out.splitlines()]
    assert (
        f"file {tmp_path / 'skewed.csv'}" in out and "text 'text', label 'label' (the source has: text, label)" in out
    )
    assert "single-label" in out and "40: 32 train / 4 validation / 4 test" in out
    assert "2; 4.3:1 largest to smallest in train" in out
    header = next(line for line in lines if "validation" in line and "label" in line)
    assert header.split() == ["label", "train", "validation", "test"]
    assert next(line for line in lines if line.strip().startswith("bad")).split() == ["bad", "6", "1", "1"]
    assert next(line for line in lines if line.strip().startswith("good")).split() == ["good", "26", "3", "3"]
    assert "token lengths (32 train texts" in out and "min 3, median 7, p95 11, max 11" in out
    assert "43.8% of texts are cut at data.max_length" in out
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings[-1].startswith("warning: classes are skewed 4.3:1 in train ('good' 26 rows")
    assert "warning: train has 27 repeated texts" in warnings[0]  # 5 different texts in 40 rows: Inspect says so
    assert any("test rows have a text that is also in train (leakage" in w for w in warnings)
    if not rich:
        assert "\x1b" not in out and "─" not in out


def test_inspect_without_tokens_json_and_bad_input(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from studio import dataview

    monkeypatch.setattr(dataview, "tokenizer_for", lambda model: pytest.fail("the tokenizer was loaded"))
    code, out, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path, "--no-tokens"))
    assert code == 0 and "not counted" in out and "--no-tokens" in out, err
    code, out, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path, "--no-tokens", "--json"))
    shown = json.loads(out)
    assert code == 0 and "preview" not in shown and shown["source"].endswith("skewed.csv")
    assert shown["rows"] == {"train": 32, "validation": 4, "test": 4} and shown["task"] == "single_label"
    assert shown["label_counts"]["train"] == {"bad": 6, "good": 26} and shown["length_stats"] is None
    code, _, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path, "--set", "data.label_column=stars"))
    lines = err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and len(lines) == 1 and lines[0].startswith("error: data.label_column: ")
    assert "'stars' not found" in lines[0]


def test_inspect_json_has_the_token_statistics(tiny_model_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path, "--json"))
    shown = json.loads(out)
    assert code == 0, err
    stats = shown["length_stats"]
    assert len(shown["lengths"]) == 32 and stats["count"] == 32 and stats["min"] == min(shown["lengths"])
    assert stats["max_length"] == 8 and 0 < stats["truncated_share"] < 1


def test_inspect_says_why_token_lengths_are_missing_and_shows_new_fields(tiny_model_dir, tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    """A tokenizer that does not load is said, not fatal; fields the overview gains later show without a change
    here (as duplicates, leakage and per-split origins did), and so do their notes."""
    import dataclasses

    from studio import dataview
    from studio.errors import ModelError

    @dataclasses.dataclass
    class Grown(dataview.DataOverview):
        near_duplicates: int = 0
        sources: dict = dataclasses.field(default_factory=dict)

    def no_tokenizer(model):
        raise ModelError("model.name: 'x' is not downloaded; connect once")

    real = dataview.overview

    def grown(config, **kwargs):
        o = real(config, **kwargs)
        fields = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
        fields["notes"] = [*o.notes, "3 texts are in both train and test"]
        return Grown(**fields, near_duplicates=3, sources={"train": "train.csv", "test": "carved from train"})

    monkeypatch.setattr(dataview, "tokenizer_for", no_tokenizer)
    monkeypatch.setattr(dataview, "overview", grown)
    code, out, err = run_cli(capsys, *inspect_args(tiny_model_dir, tmp_path))
    assert code == 0, err
    assert "the tokenizer did not load" in out
    assert "warning: token lengths unavailable: model.name: 'x' is not downloaded; connect once" in out
    assert "warning: 3 texts are in both train and test" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["near", "duplicates", "3"] in lines and [
        "sources",
        "train",
        "train.csv,",
        "test",
        "carved",
        "from",
        "train",
    ] in lines


# ---- export, merge, push -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    """(runs dir, {method: run id}): a tiny LoRA run and a tiny full fine-tune, shared by this module's tests."""
    from studio.registry import Registry

    runs = tmp_path_factory.mktemp("cli-export") / "runs"
    for method in ("lora", "full"):
        code = main([
            "--runs-dir", str(runs), "train", "quick_demo", "--quiet", "--name", f"cli-{method}",
            "--set", f"model.name={tiny_model_dir('bert')}",
            "--set", "method.freeze_layers=0", "--set", f"method.name={method}",
            "--set", "train.max_steps=2", "--set", "data.max_samples=200", "--set", "data.max_length=32",
        ])  # fmt: skip
        assert code == 0
    return runs, {r.name.removeprefix("cli-"): r.id for r in Registry(runs).list()}


class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records the calls and the uploaded file names (no network)."""

    calls: list[tuple] = []

    def __init__(self, token=None):
        RecordingHfApi.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        RecordingHfApi.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        from pathlib import Path

        files = sorted(p.name for p in Path(folder_path).rglob("*") if p.is_file())
        RecordingHfApi.calls.append(("upload_folder", repo_id, files))


def test_export_merge_push(finished, capsys, tmp_path, monkeypatch):
    import huggingface_hub

    runs, ids = finished
    run_id = ids["lora"]
    code, out, err = run_cli(capsys, "--runs-dir", runs, "export", run_id, "--no-check")
    assert code == 0, err
    assert out.strip() == str(runs.resolve() / "exports" / f"{run_id}.zip")
    code, out, _ = run_cli(capsys, "--runs-dir", runs, "export", run_id, "--out", tmp_path / "zips", "--no-check")
    assert code == 0 and out.strip() == str(tmp_path / "zips" / f"{run_id}.zip") and (tmp_path / "zips").is_dir()
    code, out, _ = run_cli(capsys, "--runs-dir", runs, "merge", run_id, "--no-check")
    assert code == 0 and out.strip() == str(runs.resolve() / run_id / "merged")
    again = run_cli(capsys, "--runs-dir", runs, "merge", run_id, "--no-check")
    assert again[1] == out  # a second merge finds the first
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    monkeypatch.setenv("HF_TOKEN", "hf_cli_token")
    RecordingHfApi.calls = []
    argv = ("push", run_id, "alice/imdb-tiny", "--merged", "--public", "--no-check")
    code, out, err = run_cli(capsys, "--runs-dir", runs, *argv)
    assert code == 0, err
    assert out.strip() == "https://huggingface.co/alice/imdb-tiny"
    init, create, upload = RecordingHfApi.calls
    assert init == ("init", "hf_cli_token") and create[2]["private"] is False
    assert "model.safetensors" in upload[2] and "README.md" in upload[2] and "adapter_config.json" not in upload[2]
    RecordingHfApi.calls = []
    code, _, _ = run_cli(capsys, "--runs-dir", runs, "push", ids["full"], "alice/imdb-full", "--no-check")
    assert code == 0 and RecordingHfApi.calls[1][2]["private"] is True


@pytest.mark.parametrize(
    ("argv", "token", "words"),
    [
        (["export", "20990101-000000-nope-0000"], None, ["no run '20990101-000000-nope-0000'"]),
        (["merge", "../../etc"], None, ["not a run id"]),
        (["merge", "{full}"], None, ["is a full fine-tune: its model/ folder is already a plain model"]),
        (["push", "{lora}", "alice/imdb"], None, ["token with write access is needed", "HF_TOKEN"]),
        (["push", "{lora}", "imdb-tiny"], "hf_x", ["repo id 'imdb-tiny' must look like owner/name"]),
        (["push", "nope", "alice/imdb"], "hf_x", ["no run 'nope'"]),
    ],
)
def test_export_bad_input_exits_2_with_one_line(finished, capsys, monkeypatch, argv, token, words):
    runs, ids = finished
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    code, _, err = run_cli(capsys, "--runs-dir", runs, *[a.format(**ids) for a in argv])
    assert code == EXIT_BAD_INPUT
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


# ---- predict --file: where the predictions go, rows without a text -------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    """Loading a run's model fails the test: what is refused must be refused before it."""
    from studio.inference import Predictor

    def refuse(cls, registry, run_id):
        raise AssertionError(f"the model of {run_id} was loaded")

    monkeypatch.setattr(Predictor, "from_run", classmethod(refuse))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing folder", ["{tmp}/nope", "does not exist", "mkdir -p {tmp}/nope"]),
        ("a folder", ["--out: {tmp}/results is a folder", "--out {tmp}/results/texts.predictions.csv"]),
        ("a new folder", ["--out: {tmp}/new is a folder", "--out {tmp}/new/texts.predictions.csv"]),
        ("the input", ["--out: {tmp}/texts.csv is the input file"]),
        ("no text column", ["text column 'body' not found in texts.csv"]),
        ("read-only folder", ["--out: cannot write in folder {tmp}/locked"]),
        ("read-only beside the input", ["{tmp}/locked/texts.predictions.csv (beside the input)", "--out FILE"]),
    ],
)
def test_predict_refuses_a_bad_output_before_the_model_loads(finished, capsys, tmp_path, no_model, case, words):
    runs, ids = finished
    file, locked = tmp_path / "texts.csv", tmp_path / "locked"
    pd.DataFrame({"text": ["good", "bad"]}).to_csv(file, index=False)
    (tmp_path / "results").mkdir()
    extra = {
        "missing folder": ["--out", tmp_path / "nope" / "p.csv"],
        "a folder": ["--out", tmp_path / "results"],
        "a new folder": ["--out", f"{tmp_path / 'new'}/"],
        "the input": ["--out", file],
        "no text column": ["--text-column", "body"],
        "read-only folder": ["--out", locked / "p.csv"],
        "read-only beside the input": [],
    }[case]
    if case.startswith("read-only"):
        if os.geteuid() == 0:
            pytest.skip("root writes in read-only folders")
        locked.mkdir()
        if case == "read-only beside the input":
            file = locked / "texts.csv"
            pd.DataFrame({"text": ["good"]}).to_csv(file, index=False)
        locked.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "--runs-dir", runs, "predict", ids["lora"], "--file", file, *extra)
    finally:
        if locked.exists():
            locked.chmod(0o755)
    assert code == EXIT_BAD_INPUT
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word.format(tmp=tmp_path) in lines[0]
    assert not list(tmp_path.rglob("*.predictions.csv")) and not list(tmp_path.rglob("p.csv")), "nothing written"
    assert not (tmp_path / "new").exists() and not (tmp_path / "nope").exists()


def test_predictions_are_kept_when_writing_them_fails(finished, capsys, tmp_path, monkeypatch):
    """The checks passed, then the disk filled while the model predicted: the table goes to a temporary file,
    said in one line (exit status 1), and no half-written file is left where it was asked for."""
    import errno
    import tempfile
    from pathlib import Path

    runs, ids = finished
    file, target, spare = tmp_path / "texts.csv", tmp_path / "out", tmp_path / "spare"
    file.write_text("id,text\n1,good\n2,\n3,bad\n", encoding="utf-8")
    target.mkdir()
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    to_csv = pd.DataFrame.to_csv

    def full_disk(self, path=None, *args, **kwargs):
        if path is not None and Path(path).parent == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    code, out, err = run_cli(capsys, "--runs-dir", runs, "predict", ids["lora"], "--file", file, "--out",
                             target / "p.csv")  # fmt: skip
    assert code == EXIT_FAILED
    lines = err.strip().splitlines()
    (saved,) = spare.glob("p-*.csv")
    assert len(lines) == 1 and lines[0].startswith(f"error: could not write {target / 'p.csv'} (No space left")
    assert f"the 2 predictions were saved to {saved} instead" in lines[0]
    assert "1 row has no text in column 'text': marked, not predicted" in out
    table = pd.read_csv(saved, keep_default_na=False)
    assert table["id"].tolist() == [1, 2, 3] and table["note"].tolist() == ["", "no text in column 'text'", ""]
    assert list(target.iterdir()) == []  # no half-written file, no temporary one


def test_predict_file_says_how_many_rows_had_no_text(finished, capsys, tmp_path):
    runs, ids = finished
    file = tmp_path / "gaps.csv"
    file.write_text("id,review\n1,good\n2,\n3,\n4,bad\n5,\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "--runs-dir", runs, "predict", ids["full"], "--file", file, "--out",
                             tmp_path / "p.csv")  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        "3 rows have no text in column 'review': marked, not predicted",
        f"2 predictions written to {tmp_path / 'p.csv'}",
    ]
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert table["predicted_label"].tolist()[1:3] == ["", ""] and table["predicted_label"][0] in (
        "negative",
        "positive",
    )


def test_estimate_prints_the_breakdown_and_the_verdict(capsys):
    assert main(["estimate", "quick_demo", "--set", "train.batch_size=32"]) == 0
    out = capsys.readouterr().out
    assert "Peak training memory" in out and "CPU RAM" in out and "activations" in out
    assert "5,472,002 trainable of 22,713,986" in out  # the top 3 of 6 layers and the head (freeze_layers 3)
    assert main(["estimate", "quick_demo", "--set", "train.batch_size=0"]) == 2
    assert "train.batch_size" in capsys.readouterr().err


def test_estimate_probe_and_suggestions(capsys, tiny_model_dir):
    args = ["estimate", "quick_demo", "--set", f"model.name={tiny_model_dir('bert')}",
            "--set", "method.freeze_layers=0", "--set", "data.max_length=32",
            "--set", "train.batch_size=4", "--probe"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Probe: 3 real steps" in out and "measured peak" in out and "process_rss" in out
    assert "the estimate counts that growth" in out  # on a CPU it says what 3 steps cannot show


def test_lr_find_prints_the_suggestion_its_cost_and_writes_the_plot(tiny_model_dir, runs_dir, capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "--runs-dir", runs_dir, "lr-find", "quick_demo", "--steps", "12", "--plot", tmp_path / "curve.html",
        "--json", tmp_path / "curve.json",
        "--set", f"model.name={tiny_model_dir('bert')}",
        "--set", "method.freeze_layers=0", "--set", "data.max_samples=200", "--set", "data.max_length=32",
        "--set", "train.batch_size=8",
    )  # fmt: skip
    assert code == 0, err
    assert "suggested train.learning_rate: " in out and "cost: " in out and "of 12 steps" in out
    assert "<- suggested" in out and (tmp_path / "curve.html").stat().st_size > 100_000  # plotly.js inside
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["command"].startswith("python -m studio --runs-dir") and len(saved["rates"]) == saved["steps"]
    assert f"suggested train.learning_rate: {saved['suggested']:.2g}" in out
    code, _, err = run_cli(capsys, "--runs-dir", runs_dir, "lr-find", "quick_demo", "--methods", "full,dora")
    assert code == EXIT_BAD_INPUT and "unknown method dora" in err


def test_sigterm_stops_a_sweep_and_its_child_runs_cleanly(tiny_model_dir, tmp_path):
    """`timeout`, `kill` and job schedulers end a process with SIGTERM: the sweep stops its runs as Ctrl-C does
    (each evaluates, saves and ends `stopped`) rather than dying and leaving them training as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import yaml

    from studio.registry import Registry

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "version": 3, "name": "sigterm",
        "base": {"data": {"source": "imdb-sample", "max_samples": 240, "max_length": 16},
                 "model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": "lora", "r": 2},
                 "train": {"max_steps": 100000, "batch_size": 4, "eval_strategy": "no"}},
        "axes": {"seed": [1, 2]},
    }))  # fmt: skip
    runs = tmp_path / "runs"
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "sweep", str(grid), "--gpus", "none",
               "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    registry, deadline = Registry(runs), time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # both runs training (their logs have steps)
        training = [r for r in registry.list() if r.status == "running"
                    and '"kind": "log"' in (registry.run_dir(r.id) / "metrics.jsonl").read_text()]  # fmt: skip
        if len(training) == 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None and len(training) == 2, proc.stdout.read() if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    records = registry.list()
    assert sorted(r.status for r in records) == ["stopped", "stopped"], output
    for record in records:
        with pytest.raises(ProcessLookupError):  # no run left training on its own
            os.kill(record.pid, 0)
    assert "0 run, 0 skipped (done before), 0 failed of 2" in output or "stopped" in output


# ---- what the terminal shows ---------------------------------------------------------------------------
LIBRARY_NOISE = ["{'loss'", "{'eval_loss'", "{'train_runtime'", "gemm_4bit_forward", "kernels-community",
                 "is_gradient_checkpointing", "fan_in_fan_out", "Loading weights", "LOAD REPORT", "Warning",
                 "it/s]", "Map:", "warnings.warn"]  # fmt: skip


def test_train_prints_the_studio_lines_and_no_library_noise(tiny_model_dir, tmp_path, capsys):
    """A real `python -m studio train` to a pipe (as CI or `> log.txt` sees it): the studio's phases, one line per
    evaluation and the summary; no Trainer dicts, no bars or carriage returns, no library warnings (GPT-2 with
    LoRA and gradient checkpointing: the Conv1D and deprecation warnings' cases). Then `show` reads it."""
    import subprocess
    import sys
    from pathlib import Path

    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", "quick_demo", "--name", "term",
               "--set", f"model.name={tiny_model_dir('gpt2')}",
               "--set", "method.freeze_layers=0", "--set", "method.name=lora",
               "--set", "train.max_steps=4", "--set", "train.eval_strategy=steps", "--set", "train.eval_steps=2",
               "--set", "train.logging_steps=1", "--set", "train.gradient_checkpointing=true",
               "--set", "data.max_samples=120", "--set", "data.max_length=16"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    out = proc.stdout
    assert "\r" not in out
    for noise in LIBRARY_NOISE:
        assert noise not in out, noise
    lines = out.splitlines()
    assert lines[0].startswith("training ") and "  training" in lines and "  evaluating on the test split" in lines
    assert [line.split(" (")[0] for line in lines if "eval @" in line] == ["  eval @ step 2", "  eval @ step 4"]
    assert lines[-4].startswith("run ") and lines[-4].endswith(" completed") and lines[-1].startswith("  saved in ")
    run_id = lines[-4].split()[1]

    code, shown, err = run_cli(capsys, "--runs-dir", runs, "show", run_id)
    assert code == 0 and err == "" and not shown.lstrip().startswith("{")
    for words in (f"run {run_id}", "metrics", "accuracy", "efficiency", "4 steps", "trainable", "reproducibility",
                  "config hash", "seed", "42", "versions", "torch", f"show {run_id} --json"):  # fmt: skip
        assert words in shown, words
    code, raw, _ = run_cli(capsys, "--runs-dir", runs, "show", run_id, "--json")
    record = json.loads(raw)
    assert code == 0 and record["run"]["id"] == run_id and record["efficiency"]["steps"] == 4
    (runs / run_id / "eval.json").unlink()  # a run without results: its row, and why there is nothing more
    code, shown, _ = run_cli(capsys, "--runs-dir", runs, "show", run_id)
    assert code == 0 and f"run {run_id}" in shown and "no results" in shown and "reproducibility" not in shown


def printed(live: bool, quiet: bool = False) -> str:
    """What a RunPrinter writes for a short run's events (to a string: `live` as on a terminal)."""
    import io

    from studio.console import RunPrinter
    from studio.events import Evaluation, HealthFlag, Note, Progress, Status, TrainLog

    out = io.StringIO()
    printer = RunPrinter(quiet=quiet, live=live, out=out)
    events = [Status("loading model", "loading tiny"), Note("model: 1.0M parameters"), Status("training", "training"),
              Progress(step=0, max_steps=4, epoch=0.0, elapsed=0.0), TrainLog(1, 0.1, {"loss": 0.6931}),
              Progress(step=2, max_steps=4, epoch=0.2, elapsed=1.0, eta=1.0),
              Evaluation({"loss": 0.69, "accuracy": 0.5, "f1_macro": 0.33}, step=2, epoch=0.2),
              HealthFlag("collapsed", "predicts one class", "lower the learning rate"),
              Progress(step=4, max_steps=4, epoch=0.4, elapsed=2.0, eta=0.0),
              Status("evaluating", "evaluating on the test split")]  # fmt: skip
    for event in events:
        printer.event(event)
    printer.close()
    return out.getvalue()


def test_a_terminal_gets_one_progress_line_and_a_pipe_gets_lines():
    piped = printed(live=False)
    assert "\r" not in piped and "step/s" not in piped
    assert piped.splitlines() == ["  loading tiny", "  model: 1.0M parameters", "  training",
                                  "  eval @ step 2 (epoch 0.20): loss 0.6900 accuracy 0.5000 f1_macro 0.3300",
                                  "  warning: collapsed: this run predicts one class: lower the learning rate",
                                  "  evaluating on the test split"]  # fmt: skip
    live = printed(live=True)
    assert "\r" in live and "4/4" in live and "loss 0.6931" in live and "val acc 0.5000" in live
    for line in piped.splitlines():  # the same lines, above the progress line
        assert line in live
    assert live.rindex("4/4") < live.index("  evaluating on the test split")  # the bar ends as training does
    quiet = ["  model: 1.0M parameters", "  warning: collapsed: this run predicts one class: lower the learning rate"]
    assert printed(live=False, quiet=True).splitlines() == quiet


def test_only_the_known_library_noise_is_silenced(caplog):
    """Each known message is dropped by its logger or its category and text; anything else still shows."""
    import logging
    import warnings

    from studio.console import BNB_LOGGER, silence_known_noise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        for message, category in [("`is_gradient_checkpointing` is deprecated and will be removed", FutureWarning),
                                  ("fan_in_fan_out is set to False but the target module is `Conv1D`.", UserWarning),
                                  ("`is_gradient_checkpointing` is deprecated, said as another category", UserWarning),
                                  ("some other deprecation", FutureWarning)]:  # fmt: skip
            warnings.warn(message, category, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`is_gradient_checkpointing` is deprecated, said as another category",
                                                "some other deprecation"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger=BNB_LOGGER):
        logging.getLogger(BNB_LOGGER).warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s", "x")
        logging.getLogger(BNB_LOGGER).warning("another bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["another bitsandbytes warning"]
