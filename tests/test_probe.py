"""The probe: a few real steps measured beside the estimate, nothing left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from studio.config import RunConfig
from studio.errors import StudioError
from studio.probe import probe


def test_probe_measures_real_steps_and_leaves_nothing_behind(tiny_model_dir):
    config = RunConfig.from_dict({"model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": "lora", "r": 4},
                                  "data": {"source": "goemotions", "max_length": 32},
                                  "train": {"batch_size": 4}})  # fmt: skip
    before = set(Path(tempfile.gettempdir()).glob("studio-probe-*"))
    result = probe(config, num_labels=5, steps=2)
    assert result.steps == 2 and result.measured_kind == "process_rss" and result.measured_mb > 100
    assert result.estimate.trainable_params > 0 and result.largest_batch and result.largest_batch >= 1
    assert result.error_pct == pytest.approx(100 * (result.estimate.total_mb / result.measured_mb - 1))
    assert set(Path(tempfile.gettempdir()).glob("studio-probe-*")) == before  # its runs folder is gone


def test_probe_of_a_bad_config_says_why():
    with pytest.raises(StudioError, match="model.name"):
        probe(RunConfig.from_dict({"model": {"name": "./no/such/folder"}}))
