"""eval.json as typed results: every version the studio wrote reads back, and writes back what it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.results import RESULTS_VERSION, RunSummary, SplitMetrics

V1 = next((Path(__file__).parent / "assets" / "run_folders" / "v1").iterdir())
"""A run folder written before results were typed (version 1: no "version" key), kept as it was written."""


def test_a_version_1_run_folder_loads_by_attribute():
    summary = RunSummary.read(V1 / "eval.json")
    assert summary.version == 1  # the version it was written in
    assert summary.test.accuracy == 0.5 and summary.test.n == 12 and summary.test.confusion_matrix == [[6, 0], [6, 0]]
    assert summary.test.per_class["negative"].recall == 1.0 and summary.test.per_class["positive"].support == 6
    assert summary.validation is not None and summary.validation.f1_macro == pytest.approx(1 / 3)
    assert summary.efficiency.trainable_params == 1090 and summary.efficiency.measured_peak() == (679.9, "process_rss")
    assert summary.memory.estimate_mb == 605.6 and summary.memory.error_pct == -10.93
    assert summary.distributed is not None and summary.distributed.effective_batch == 16
    assert summary.label_names == ["negative", "positive"] and summary.data.rows == {"train": 96, "validation": 12,
                                                                                     "test": 12}  # fmt: skip
    assert summary.data.extra["dropped_empty_text"] == 0  # counts the class does not name are kept
    assert summary.reproducibility.speed == {"profile": "fast", "note": "speed fast: on a CPU the settings train as "
                                             "given", "choices": []}  # fmt: skip
    assert summary.status == "completed" and summary.best_checkpoint_step == 3


def test_writing_back_keeps_every_key_and_value_of_version_1():
    raw = json.loads((V1 / "eval.json").read_text())
    written = RunSummary.from_dict(raw).to_dict()
    assert written.pop("version") == RESULTS_VERSION
    assert written == raw and list(written) == list(raw)  # the same keys, in the same order
    assert RunSummary.from_dict(written) == RunSummary.from_dict(raw)


def test_keys_from_a_newer_studio_survive_a_round_trip():
    raw = json.loads((V1 / "eval.json").read_text())
    raw.update(version=RESULTS_VERSION + 1, conformal={"alpha": 0.1})
    raw["test"]["ece"] = 0.04
    back = RunSummary.from_dict(raw).to_dict()
    assert back["conformal"] == {"alpha": 0.1} and back["test"]["ece"] == 0.04


def test_calibration_round_trips_and_older_folders_have_none():
    assert RunSummary.read(V1 / "eval.json").calibration is None
    assert "calibration" not in RunSummary.read(V1 / "eval.json").to_dict()  # not written when there is none
    raw = json.loads((V1 / "eval.json").read_text())
    bins = [{"lower": 0.6, "upper": 2 / 3, "count": 3, "confidence": 0.65, "accuracy": 2 / 3}]
    coverage = [{"threshold": 0.9, "answered": 0, "coverage": 0.0, "accuracy": None}]
    raw["calibration"] = {"temperature": 1.7, "validation_rows": 12, "test_rows": 12, "ece_before": 0.2,
                          "ece_after": 0.1, "brier_before": 0.5, "brier_after": 0.4, "bins_before": bins,
                          "bins_after": bins, "coverage": coverage, "method": "temperature", "later": 1}  # fmt: skip
    summary = RunSummary.from_dict(raw)
    c = summary.calibration
    assert c is not None and c.temperature == 1.7 and c.coverage[0]["accuracy"] is None and c.per_label is None
    assert c.extra == {"later": 1}  # a key from a newer studio survives
    back = summary.to_dict()
    assert back["calibration"] == raw["calibration"] and RunSummary.from_dict(back).calibration == c


def test_a_run_without_validation_and_without_an_estimate():
    raw = json.loads((V1 / "eval.json").read_text())
    raw.update(validation={}, memory={"estimate_error": "no such model"}, distributed=None)
    summary = RunSummary.from_dict(raw)
    assert summary.validation is None and summary.distributed is None
    assert summary.memory.estimate_error == "no such model" and summary.memory.error_pct is None
    back = summary.to_dict()
    assert back["validation"] == {} and back["memory"] == {"estimate_error": "no such model"}


def test_split_metrics_scalars():
    metrics = SplitMetrics(accuracy=0.9, f1_macro=0.8, f1_weighted=0.85, n=10)
    assert metrics.scalars() == {"accuracy": 0.9, "f1_macro": 0.8, "f1_weighted": 0.85}
