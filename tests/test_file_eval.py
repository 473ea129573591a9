"""Evaluate a finished run on any labelled file (studio/file_eval.py, `python -m studio evaluate`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_training import tiny_config

from studio.cli import main
from studio.errors import DataError
from studio.file_eval import EVALUATIONS_DIR, evaluate_file, evaluations, read_labelled
from studio.registry import Registry
from studio.training import Run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A tiny run on the IMDb sample (labels negative / positive), trained once for the module's tests."""
    runs = tmp_path_factory.mktemp("runs")
    registry = Registry(runs)
    result = Run(tiny_config(tiny_model_dir("bert"), "full", max_steps=4, eval_strategy="no"), registry).execute()
    assert result.status == "completed", result.message
    return registry, result.run_id


def write(path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_a_labelled_file_is_evaluated_and_saved_beside_the_runs_own_results(trained, tmp_path, capsys):
    registry, run_id = trained
    eval_json = (registry.run_dir(run_id) / "eval.json").read_text()
    rows = [{"review": f"a {'good' if i % 2 else 'bad'} film {i}", "sentiment": "positive" if i % 2 else "negative"}
            for i in range(30)] + [{"review": "", "sentiment": "positive"}]  # fmt: skip
    path = write(tmp_path / "holdout.csv", rows)
    result, saved = evaluate_file(registry, run_id, path)
    assert (result.name, result.text_column, result.label_column, result.rows, result.left_out) == (
        "holdout", "review", "sentiment", 30, 1)  # fmt: skip
    m = result.metrics
    assert m.n == 30 and sum(map(sum, m.confusion_matrix)) == 30 and set(m.per_class) == {"negative", "positive"}
    assert 0.0 <= m.accuracy <= 1.0 and m.per_class["positive"].support == 15
    table = pd.read_parquet(saved.with_name("holdout.predictions.parquet"))
    assert list(table.columns) == ["text", "label", "predicted", "prob_negative", "prob_positive"]
    assert (table["predicted"] == table["label"]).mean() == pytest.approx(m.accuracy)
    assert (registry.run_dir(run_id) / "eval.json").read_text() == eval_json  # the run's own test results stay
    again, _ = evaluate_file(registry, run_id, path)
    assert again.name == "holdout-2" and [e.name for e in evaluations(registry.run_dir(run_id))][-2:] == [
        "holdout", "holdout-2"]  # fmt: skip
    assert main(["--runs-dir", str(registry.runs_dir), "show", run_id, "--json"]) == 0  # the raw record
    shown = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in shown["evaluations"]} >= {"holdout", "holdout-2"}


def test_the_cli_prints_the_report_and_integer_labels_map_to_the_models_ids(trained, tmp_path, capsys):
    registry, run_id = trained
    path = write(tmp_path / "ids.csv", [{"text": f"film {i}", "label": i % 2} for i in range(12)])
    code = main(["--runs-dir", str(registry.runs_dir), "evaluate", run_id, "--file", path, "--name", "by-id"])
    out = capsys.readouterr().out
    assert code == 0 and "by-id: 12 rows of ids.csv" in out and "macro-F1" in out and "confusion matrix" in out
    saved = json.loads((registry.run_dir(run_id) / EVALUATIONS_DIR / "by-id.json").read_text())
    assert saved["metrics"]["per_class"]["positive"]["support"] == 6  # 1 -> positive, the model's id 1


@pytest.mark.parametrize(
    ("rows", "args", "message"),
    [
        (
            [{"text": "fine", "label": "positive"}, {"text": "meh", "label": "mixed"}],
            [],
            "--file: bad.csv has labels the model does not know: 'mixed' (1 rows); the model knows: negative, positive",
        ),
        (
            [{"text": "fine", "label": "positive"}],
            ["--label-column", "stars"],
            "--label-column: 'stars' not found in bad.csv; it has columns: text, label",
        ),
        ([{"body": "fine", "label": "positive"}], [], "--text-column: no text column found in bad.csv"),
        ([{"text": "", "label": "positive"}, {"text": "x", "label": None}], [], "--file: bad.csv has no row with both"),
        ([{"text": "fine", "label": "positive"}], ["--name", "../escape"], "--name: '../escape' must be letters"),
    ],
)
def test_bad_evaluation_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys, rows, args, message):
    registry, run_id = trained
    before = sorted(p.name for p in (registry.run_dir(run_id)).rglob("*"))
    path = write(tmp_path / "bad.csv", rows)
    code = main(["--runs-dir", str(registry.runs_dir), "evaluate", run_id, "--file", path, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {message}") and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in (registry.run_dir(run_id)).rglob("*")) == before


def test_a_missing_file_or_run_is_named(trained, tmp_path, capsys):
    registry, run_id = trained
    with pytest.raises(DataError, match="--file: .*nope.csv not found"):
        read_labelled(tmp_path / "nope.csv", ["negative", "positive"])
    assert main(["--runs-dir", str(registry.runs_dir), "evaluate", "no-such-run", "--file", "x.csv"]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_a_run_folder_that_cannot_be_written_is_refused_before_the_model_loads(trained, tmp_path, monkeypatch):
    from studio import inference
    from studio.errors import StudioError

    registry, run_id = trained
    path = write(tmp_path / "holdout.csv", [{"text": "fine", "label": "positive"}])
    monkeypatch.setattr(inference, "cannot_write_in", lambda folder: "Permission denied")
    with pytest.raises(StudioError, match=f"run folder {registry.run_dir(run_id)} cannot be written"):
        evaluate_file(registry, run_id, path, load_predictor=lambda: pytest.fail("the model was loaded"))


def test_an_evaluation_that_cannot_be_saved_keeps_its_scores_in_the_error(trained, tmp_path, monkeypatch, capsys):
    import errno

    from studio import file_eval

    registry, run_id = trained
    path = write(tmp_path / "late.csv", [{"text": f"film {i}", "label": "positive"} for i in range(4)])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_eval, "_write", full_disk)
    code = main(["--runs-dir", str(registry.runs_dir), "evaluate", run_id, "--file", path])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: could not save evaluation 'late' in ")
    assert "(No space left on device); its scores: accuracy " in err and "on 4 rows" in err
