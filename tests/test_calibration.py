"""Calibrated confidence (studio/calibration.py): the temperature fit on synthetic logits, ECE and Brier on
inputs checked by hand, accuracy against coverage, thresholds refused outside [0, 1], and one tiny run whose
eval.json carries its calibration, whose Predictor applies the temperature (raw on request), and whose export
and merge carry calibration.json."""

from __future__ import annotations

import json
import math
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss
from test_training import tiny_config

from studio import calibration
from studio.calibration import (
    CALIBRATION_FILE,
    brier_score,
    check_threshold,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    scaled_probs,
)
from studio.cli import EXIT_BAD_INPUT, main
from studio.errors import StudioError
from studio.events import Note
from studio.inference import Predictor
from studio.recipe import ClassifierRecipe
from studio.registry import Registry
from studio.training import Run


def _synthetic(n: int, k: int, seed: int, sharpen: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(true logits); the model's logits are the true ones times `sharpen` (> 1: an
    over-confident classifier, whose best temperature is `sharpen`)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1.5, size=(n, k))
    p = scaled_probs(true)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return true * sharpen, labels


# ---- the fit and the figures ---------------------------------------------------------------------------
def test_an_over_confident_classifier_gets_a_temperature_above_1_and_a_lower_held_out_ece():
    fit_logits, fit_labels = _synthetic(4000, 3, seed=1, sharpen=3.0)
    held_logits, held_labels = _synthetic(4000, 3, seed=2, sharpen=3.0)
    t = fit_temperature(fit_logits, fit_labels)
    assert 2.5 < t < 3.5  # the truth is 3
    before = expected_calibration_error(scaled_probs(held_logits), held_labels)
    after = expected_calibration_error(scaled_probs(held_logits, t), held_labels)
    assert after < before / 3 and after < 0.03
    assert brier_score(scaled_probs(held_logits, t), held_labels) < brier_score(scaled_probs(held_logits), held_labels)
    under_logits, under_labels = _synthetic(4000, 3, seed=3, sharpen=0.5)  # under-confident: T < 1
    assert 0.4 < fit_temperature(under_logits, under_labels) < 0.6


def test_the_temperature_never_changes_the_predicted_label():
    logits, _ = _synthetic(500, 5, seed=4, sharpen=2.0)
    for t in (0.05, 0.5, 2.0, 20.0):
        assert (scaled_probs(logits, t).argmax(-1) == logits.argmax(-1)).all()


def test_ece_and_brier_on_inputs_checked_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.3, 0.7], [0.96, 0.04], [0.02, 0.98]])
    labels = np.array([0, 0, 0, 1, 0, 0])
    # bins of 1/15: 0.9 -> (0.867, 0.933], 0.8 -> (0.733, 0.8], 0.55 -> (0.533, 0.6], 0.7 -> (0.667, 0.733],
    # 0.96 and 0.98 -> (0.933, 1] together: mean confidence 0.97, accuracy 1/2
    bins = reliability_bins(probs, labels)
    assert [b["count"] for b in bins] == [1, 1, 1, 1, 2]
    assert bins[-1]["confidence"] == pytest.approx(0.97) and bins[-1]["accuracy"] == 0.5
    want = (0.1 + 0.8 + 0.45 + 0.3 + 2 * 0.47) / 6
    assert expected_calibration_error(probs, labels) == pytest.approx(want)
    rows = [0.01 + 0.01, 0.64 + 0.64, 0.2025 + 0.2025, 0.09 + 0.09, 0.0016 + 0.0016, 0.9604 + 0.9604]
    assert brier_score(probs, labels) == pytest.approx(sum(rows) / 6)
    assert brier_score(probs, labels) == pytest.approx(2 * brier_score_loss(labels, probs[:, 1]))  # binary: twice
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0)) == 0.0 and brier_score(np.zeros((0, 2)), []) == 0


def test_accuracy_against_coverage():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    rows = {r["threshold"]: r for r in coverage_curve(probs, labels, (0.0, 0.6, 0.75, 0.85, 0.95))}
    assert rows[0.0] == {"threshold": 0.0, "answered": 4, "coverage": 1.0, "accuracy": 0.75}
    assert rows[0.6]["answered"] == 3 and rows[0.6]["accuracy"] == pytest.approx(2 / 3)
    assert rows[0.75]["answered"] == 2 and rows[0.75]["accuracy"] == 0.5
    assert rows[0.85] == {"threshold": 0.85, "answered": 1, "coverage": 0.25, "accuracy": 1.0}
    assert rows[0.95]["answered"] == 0 and rows[0.95]["accuracy"] is None


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, "abc", None])
def test_thresholds_outside_0_1_are_refused(value):
    with pytest.raises(StudioError, match=r"outside \[0, 1\]"):
        check_threshold(value)


def test_thresholds_inside_0_1_are_taken():
    assert [check_threshold(v) for v in (0, 1, "0.8")] == [0.0, 1.0, 0.8]


def test_an_empty_validation_split_skips_calibration_with_a_note():
    notes = []
    recipe = ClassifierRecipe.__new__(ClassifierRecipe)  # only what _calibrate reads
    recipe.emit, recipe.tokenized = notes.append, {"validation": []}
    recipe.predictions = {"test": SimpleNamespace(predictions=np.zeros((3, 2)), label_ids=np.zeros(3, dtype=int))}
    assert recipe._calibrate() is None
    assert len(notes) == 1 and isinstance(notes[0], Note) and "calibration skipped" in notes[0].message


def test_a_bad_calibration_file_is_refused(tmp_path):
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(StudioError, match="not a positive number"):
        calibration.read_temperature(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{}")
    with pytest.raises(StudioError, match="holds no temperature"):
        calibration.read_temperature(tmp_path)
    assert calibration.read_temperature(tmp_path / "elsewhere") is None


# ---- a tiny run end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated_run(tiny_model_dir, tmp_path_factory) -> tuple[Registry, str]:
    registry = Registry(tmp_path_factory.mktemp("calibration") / "runs")
    result = Run(tiny_config(tiny_model_dir("bert"), max_steps=4), registry).execute()
    assert result.status == "completed", result.message
    return registry, result.run_id


def test_a_run_records_its_calibration_and_keeps_raw_metrics(calibrated_run):
    registry, run_id = calibrated_run
    folder, summary = registry.run_dir(run_id), registry.summary(run_id)
    c = summary.calibration
    assert c is not None and c.temperature > 0 and c.validation_rows == summary.data.rows["validation"]
    assert c.test_rows == summary.test.n and sum(b["count"] for b in c.bins_after) == summary.test.n
    assert c.coverage[0]["threshold"] == 0.0 and c.coverage[0]["accuracy"] == pytest.approx(summary.test.accuracy)
    assert json.loads((folder / "eval.json").read_text())["calibration"]["temperature"] == c.temperature
    assert json.loads((folder / CALIBRATION_FILE).read_text())["temperature"] == c.temperature
    saved = pd.read_parquet(folder / "predictions.parquet")
    test = saved[saved["split"] == "test"]
    raw, scaled = np.stack(test["probs"].to_numpy()), np.stack(test["probs_calibrated"].to_numpy())
    np.testing.assert_allclose(scaled, scaled_probs(np.log(raw), c.temperature), atol=1e-5)
    assert (raw.argmax(1) == test["predicted"].to_numpy()).all()  # the raw column and the metrics stay raw
    assert summary.test.accuracy == pytest.approx((raw.argmax(1) == test["label"].to_numpy()).mean())
    notes = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert any(n.get("message", "").startswith("calibration: temperature") for n in notes)


def test_the_predictor_applies_the_temperature_and_gives_raw_on_request(calibrated_run):
    registry, run_id = calibrated_run
    predictor = Predictor.from_run(registry, run_id)
    t = registry.summary(run_id).calibration.temperature
    assert predictor.temperature == t
    texts = ["a fine film", "a dull film", "it was fine, I suppose"]
    raw = np.array([[p.probs[n] for n in predictor.label_names] for p in predictor.predict(texts, raw=True)])
    calibrated = predictor.predict(texts)
    got = np.array([[p.probs[n] for n in predictor.label_names] for p in calibrated])
    np.testing.assert_allclose(got, scaled_probs(np.log(raw), t), atol=1e-5)
    assert not any(p.unsure for p in calibrated) and [p.answer for p in calibrated] == [p.label for p in calibrated]
    unsure = predictor.predict(texts, min_confidence=1.0)  # nothing is that sure
    assert all(p.unsure and p.answer == "unsure" for p in unsure)
    with pytest.raises(StudioError, match="outside"):
        predictor.predict(texts, min_confidence=2)


def test_file_scoring_and_the_cli_abstain_under_the_threshold(calibrated_run, capsys, tmp_path):
    registry, run_id = calibrated_run
    file = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["good", "bad", "fine"]}).to_csv(file, index=False)
    runs = str(registry.runs_dir)
    assert main(["--runs-dir", runs, "predict", run_id, "--file", str(file), "--min-confidence", "1"]) == 0
    out = pd.read_csv(tmp_path / "texts.predictions.csv")
    assert (out["predicted_label"] == "unsure").all() and set(out["top_label"]) <= {"negative", "positive"}
    assert main(["--runs-dir", runs, "predict", run_id, "a film", "--min-confidence", "0", "--raw"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split("\t")[0] in ("negative", "positive")
    (tmp_path / "texts.predictions.csv").unlink()
    for bad in ("1.5", "-0.2", "nan"):
        code = main(["--runs-dir", runs, "predict", run_id, "--file", str(file), "--min-confidence", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == EXIT_BAD_INPUT and len(err) == 1 and "--min-confidence" in err[0] and "[0, 1]" in err[0]
        assert not (tmp_path / "texts.predictions.csv").exists()  # nothing written


def test_export_and_merge_carry_the_temperature(calibrated_run):
    from studio.export import export_zip, merge_adapter
    from studio.model_card import model_card

    registry, run_id = calibrated_run
    with zipfile.ZipFile(export_zip(registry, run_id, check=False)) as zf:
        saved = json.loads(zf.read(f"{run_id}/{CALIBRATION_FILE}"))
        assert "## Calibration" in zf.read(f"{run_id}/README.md").decode()
    assert saved["temperature"] == registry.summary(run_id).calibration.temperature and saved["per_label"] is None
    merged = merge_adapter(registry, run_id, check=False).path
    assert json.loads((merged / CALIBRATION_FILE).read_text()) == saved
    assert "T = " in model_card(registry, run_id)


def test_the_reliability_diagram_draws_both_curves(calibrated_run):
    from studio import plots

    registry, run_id = calibrated_run
    c = registry.summary(run_id).calibration
    fig = plots.reliability_diagram(c)
    assert [t.name for t in fig.data] == ["perfect", "raw", f"T = {c.temperature:.2f}"]
    assert len(fig.data[2].x) == len(c.bins_after) and "ECE" in fig.layout.title.text
    assert "No calibration" in plots.reliability_diagram(None).layout.annotations[0].text


def test_the_abstain_answer_never_reads_as_a_label_of_the_model():
    from studio.inference import Prediction

    plain = Prediction("t", "positive", 0.55, {"negative": 0.45, "positive": 0.55}, unsure=True)
    clash = Prediction("t", "sure", 0.55, {"sure": 0.55, "unsure": 0.45}, unsure=True)
    assert plain.answer == "unsure" and clash.answer == "(unsure)"
    assert Prediction("t", "unsure", 0.9, {"sure": 0.1, "unsure": 0.9}).answer == "unsure"  # the model's own label
