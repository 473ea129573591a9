"""Run events as typed data: each kind writes the flat JSON line it always wrote, and reads back the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.events import DataStats, Done, Evaluation, HealthFlag, Note, Progress, Status, TrainLog, parse

V1 = next((Path(__file__).parent / "assets" / "run_folders" / "v1").iterdir())

EXAMPLES = [
    Status("training", "training", time=1.0),
    Note("model: 1.0M parameters", {"trainable_params": 1090, "total_params": 1012516}, time=2.0),
    DataStats({"rows": {"train": 96}}, ["negative", "positive"], "c13eb94870be30ac", time=3.0),
    Progress(step=3, max_steps=6, epoch=0.5, elapsed=1.25, eta=1.3, time=4.0),
    TrainLog(2, 0.25, {"loss": 0.69, "learning_rate": 0.001, "grad_norm": 0.5}, time=5.0),
    Evaluation({"loss": 0.7, "accuracy": 0.5, "f1/negative": 0.6}, step=3, epoch=0.5, time=6.0),
    Evaluation({"accuracy": 0.5}, split="test", time=7.0),
    HealthFlag(
        "collapsed", "predicts only 'positive' after 3 evaluations (steps 40-120)", "try 0.0002", 120, time=7.5
    ),  # fmt: skip
    Done("completed", "test accuracy 0.5000", 10.0, time=8.0),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_each_kind_round_trips_through_its_json_line(event):
    line = json.loads(event.to_json())
    assert line["kind"] == event.kind and line["time"] == event.time
    assert parse(line) == event


def test_the_lines_keep_their_flat_format():
    assert json.loads(EXAMPLES[1].to_json()) == {"kind": "note", "time": 2.0, "message": "model: 1.0M parameters",
                                                "trainable_params": 1090, "total_params": 1012516}  # fmt: skip
    assert json.loads(EXAMPLES[5].to_json()) == {"kind": "eval", "time": 6.0, "step": 3, "epoch": 0.5, "loss": 0.7,
                                                "accuracy": 0.5, "f1/negative": 0.6}  # fmt: skip
    assert json.loads(EXAMPLES[6].to_json()) == {"kind": "eval", "time": 7.0, "split": "test", "accuracy": 0.5}


def test_unknown_kinds_and_incomplete_lines_are_not_events():
    assert parse({"kind": "telemetry", "time": 1.0, "gpu": 3}) is None
    assert parse({"kind": "progress", "time": 1.0}) is None  # no step: not a progress event
    assert parse({"kind": "status", "time": 1.0, "status": "training", "new_field": 1}) == Status("training", time=1.0)


def test_a_version_1_event_log_parses_line_for_line():
    """metrics.jsonl written before events were typed: every line is an event that writes back the same line
    (the view it reads into is in tests/test_runlog.py)."""
    lines = [json.loads(line) for line in (V1 / "metrics.jsonl").read_text().splitlines()]
    assert all(parse(line) is not None for line in lines)
    assert [json.loads(parse(line).to_json()) for line in lines] == lines  # written back byte for byte in meaning
