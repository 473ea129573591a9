"""The estimate against the peaks measured on a real GPU (benchmarks/results/memory_validation.csv): today's
estimator must stay within the issue's bounds on every committed row, so it cannot drift from reality."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from bench_modules import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validation():
    return load("memory_validation")


def test_every_case_was_measured(validation):
    rows = validation.recompute()
    assert [r["case"] for r in rows] == list(range(len(validation.grid())))
    models = {validation.grid()[r["case"]]["model"] for r in rows}
    methods = {validation.grid()[r["case"]]["method"] for r in rows}
    assert len(rows) >= 30 and {"bert-base", "distilbert", "roberta-base", "deberta-v3-base"} <= models
    assert {"qwen2.5-1.5b", "llama-3.2-1b"} <= models and methods == {"full", "lora", "qlora", "ia3"}


def test_estimate_is_within_the_bounds_of_the_measured_peaks(validation):
    rows = validation.recompute()
    errors = {r["label"]: abs(r["error_pct"]) for r in rows}
    assert statistics.median(errors.values()) <= 5.0
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 10.0, f"{worst}: {errors[worst]:.1f}% off the measured peak"


def test_the_report_is_a_table_of_every_row(validation):
    text = validation.report()
    assert "median absolute error" in text and text.count("\n| ") == len(validation.grid()) + 1
