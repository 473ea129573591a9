"""A run's event log read back into what a page shows: each event's effect on the view, and a follower that
reads only the complete lines appended since its last look, whoever wrote them and however many pages follow."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from test_training import tiny_config

from studio.events import DataStats, Done, Evaluation, HealthFlag, Note, Progress, Status, TrainLog, parse
from studio.registry import Registry
from studio.runlog import LogFollower, RunView, view_of
from studio.training import Run

V1 = next((Path(__file__).parent / "assets" / "run_folders" / "v1").iterdir())
"""A run folder written before events were typed, kept as it was written."""


def at(t: float, text: str) -> str:
    """A log line as the view writes it: the local time of the event, two spaces, the text."""
    return f"{time.strftime('%H:%M:%S', time.localtime(t))}  {text}"


def test_each_kind_of_event_changes_its_part_of_the_view():
    view = view_of([
        Status("preparing data", "preparing data", time=100.0),
        DataStats({"rows": {"train": 96}}, ["negative", "positive"], "c13eb94870be30ac", time=101.0),
        Note("model: 1.0M parameters", {"trainable_params": 1090}, time=102.0),
        Status("training", time=103.0),  # no message: the phase is the line
        Progress(step=4, max_steps=8, epoch=0.5, elapsed=2.0, eta=2.0, time=104.0),
        TrainLog(4, 0.5, {"loss": 0.69, "learning_rate": 1e-3, "grad_norm": 0.5}, time=104.5),
        TrainLog(6, 0.75, {"loss": 0.6, "grad_norm": None}, time=105.0),  # only the figures it holds are drawn
        Evaluation({"loss": 0.7, "accuracy": 0.5, "f1/negative": 0.6}, step=4, epoch=0.5, time=105.5),
        Status("", "still training", time=106.0),  # no phase: the phase stays, the message is logged
        Progress(step=8, max_steps=0, epoch=1.0, elapsed=4.0, time=107.0),  # max_steps 0: the known one stays
        Evaluation({"accuracy": 0.75, "f1_macro": 0.7}, split="test", time=108.0),
        Done("", "test accuracy 0.7500", 10.0, time=109.0),  # no status: done
    ])  # fmt: skip
    assert view.events == 12 and view.started == 100.0
    assert view.data == {"stats": {"rows": {"train": 96}}, "label_names": ["negative", "positive"],
                         "fingerprint": "c13eb94870be30ac"}  # fmt: skip
    assert (view.step, view.max_steps, view.epoch, view.elapsed, view.eta) == (8, 8, 1.0, 4.0, None)
    assert view.train_loss == [(4, 0.69), (6, 0.6)]
    assert view.learning_rate == [(4, 1e-3)] and view.grad_norm == [(4, 0.5)]
    assert view.evals == [{"step": 4, "epoch": 0.5, "loss": 0.7, "accuracy": 0.5, "f1/negative": 0.6}]
    assert view.test == {"accuracy": 0.75, "f1_macro": 0.7}
    assert view.finished and (view.status, view.message) == ("done", "test accuracy 0.7500")
    assert view.log == [
        at(100.0, "preparing data"),
        at(102.0, "model: 1.0M parameters"),
        at(103.0, "training"),
        at(105.5, "evaluation at step 4: accuracy 0.5000, loss 0.7000"),
        at(106.0, "still training"),
        at(108.0, "test: accuracy 0.7500, f1_macro 0.7000"),
        at(109.0, "done: test accuracy 0.7500"),
    ]


def test_a_health_flag_is_kept_and_logged_as_a_warning():
    flag = HealthFlag("diverged", "has a training loss of nan (steps 8-10)", "try 0.0002", 10, time=5.0)
    view = view_of([Status("training", time=4.0), flag])
    assert view.health == flag and view.log[-1] == at(5.0, "warning: " + flag.line)
    assert view_of([Status("training", time=4.0)]).health is None


def test_progress_fraction_and_the_latest_evaluation():
    view = RunView()
    assert view.status == "waiting" and view.fraction == 0.0 and view.latest_eval() == {}
    view.apply(Progress(step=3, max_steps=12, epoch=0.25, elapsed=1.0, time=1.0))
    assert view.fraction == 0.25
    view.apply(Progress(step=13, max_steps=12, epoch=1.0, elapsed=5.0, time=2.0))  # the Trainer's last step + 1
    assert view.fraction == 1.0
    view.apply(Evaluation({"accuracy": 0.5}, step=6, time=3.0))
    view.apply(Evaluation({}, step=12, time=4.0))  # no metrics: still an evaluation, and the line says so
    assert view.latest_eval() == {"step": 12} and view.log[-1].endswith("evaluation at step 12: (no metrics)")


def test_follower_reads_only_complete_new_lines_and_skips_damaged_ones(tmp_path):
    path = tmp_path / "metrics.jsonl"
    follower = LogFollower(path)
    assert follower.refresh().events == 0  # no file yet: an empty view, no error
    lines = [
        {"kind": "status", "time": 1.0, "status": "training", "message": "training"},
        {"kind": "progress", "time": 2.0, "step": 5, "max_steps": 10, "epoch": 0.5, "elapsed": 4.0, "eta": 4.0},
        {"kind": "log", "time": 2.5, "step": 5, "epoch": 0.5, "loss": 0.69, "learning_rate": 1e-4},
    ]
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\n" + '{"kind": "eval", "step"')
    view = follower.refresh()
    assert (view.status, view.step, view.fraction, view.train_loss) == ("training", 5, 0.5, [(5, 0.69)])
    assert view.evals == []  # the half-written line waits
    with open(path, "a") as f:
        f.write(': 5, "accuracy": 0.75, "loss": 0.6}\nnot json\n')
        f.write(json.dumps({"kind": "eval", "split": "test", "time": 3.0, "accuracy": 0.7}) + "\n")
        f.write(json.dumps({"kind": "done", "time": 4.0, "status": "completed", "message": "test accuracy 0.7"}) + "\n")
    view = follower.refresh()
    assert view.evals == [{"step": 5, "accuracy": 0.75, "loss": 0.6}]
    assert view.test == {"accuracy": 0.7} and view.finished and view.status == "completed"
    assert view.events == 6 and any("test accuracy 0.7" in line for line in view.log)
    lines = [line for line in path.read_text().splitlines() if line.startswith("{") and line.endswith("}")]
    assert view_of([parse(json.loads(line)) for line in lines]).evals == view.evals


def test_lines_that_are_json_but_no_event_are_passed_over(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = ["[1, 2]", "3", '"status"', "null", json.dumps({"kind": "telemetry", "time": 1.0, "gpu": 3}),
             json.dumps({"kind": "progress", "time": 1.0}),  # a progress without its step: not an event
             json.dumps({"kind": "status", "time": 2.0, "status": "training"})]  # fmt: skip
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")  # a log copied through Windows keeps its lines
    view = LogFollower(path).refresh()
    assert view.events == 1 and view.status == "training"


def test_pages_following_one_log_together_see_each_event_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.touch()
    follower = LogFollower(path)
    steps = 400
    written = threading.Event()

    def write() -> None:
        with open(path, "a") as f:
            for step in range(1, steps + 1):
                f.write(json.dumps({"kind": "log", "time": 1.0, "step": step, "epoch": 0.0, "loss": 1.0 / step}))
                f.write("\n")
                f.flush()
        written.set()

    def follow() -> None:
        while not written.is_set():
            follower.refresh()
        follower.refresh()

    threads = [*(threading.Thread(target=follow) for _ in range(4)), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    view = follower.refresh()
    assert view.events == steps and [s for s, _ in view.train_loss] == list(range(1, steps + 1))


def test_a_finished_runs_log_reads_into_its_results(tiny_model_dir, runs_dir):
    """The writer and the reader agree: a run's own metrics.jsonl gives the page its steps, curves and results."""
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), max_steps=4, logging_steps=1, eval_strategy="steps", eval_steps=2)
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    path = registry.run_dir(result.run_id) / "metrics.jsonl"
    view = LogFollower(path).refresh()
    summary = result.summary
    assert view.finished and view.status == "completed" and view.message == result.message
    assert view.step == view.max_steps == summary.efficiency.steps == 4 and view.fraction == 1.0
    assert [s for s, _ in view.train_loss] == [1, 2, 3, 4] and len(view.learning_rate) == 4
    assert [e["step"] for e in view.evals] == [2, 4] and "f1/positive" in view.evals[0]
    assert view.test["accuracy"] == pytest.approx(summary.test.accuracy)
    assert view.data["label_names"] == summary.label_names == ["negative", "positive"]
    assert view.data["fingerprint"] == summary.reproducibility.data_fingerprint
    events = [parse(json.loads(line)) for line in path.read_text().splitlines()]
    assert None not in events and view_of(events) == view  # read at once or followed: the same view


def test_a_version_1_event_log_reads_into_the_whole_run():
    """metrics.jsonl written before events were typed: the view holds the whole run."""
    view = LogFollower(V1 / "metrics.jsonl").refresh()
    assert view.finished and view.status == "completed" and view.step == 6 and view.max_steps == 6
    assert len(view.evals) == 2 and view.test["accuracy"] == 0.5 and view.train_loss
    assert view.data["label_names"] == ["negative", "positive"]


def test_the_eta_is_the_recent_measured_rate_with_evaluations_and_none_before_a_few_steps():
    view = RunView()
    view.apply(Progress(step=0, max_steps=100, epoch=0.0, elapsed=0.0, eta=None, time=1.0))
    view.apply(Progress(step=1, max_steps=100, epoch=0.0, elapsed=30.0, eta=2970.0, time=2.0))  # the warm-up step
    assert view.eta is None  # the event's whole-run average (50 minutes) is not shown
    for step in range(2, 6):
        view.apply(Progress(step=step, max_steps=100, epoch=0.0, elapsed=30.0 + (step - 1), time=3.0))
    assert view.eta is None  # 4 steps after the first: not yet
    view.apply(Progress(step=6, max_steps=100, epoch=0.1, elapsed=35.0, time=4.0))
    assert view.eta == 94.0  # 1 s a step, the slow first step left out
    # an evaluation of 20 s between steps 20 and 21: in the recent window, so the rate carries it
    for step in range(7, 41):
        view.apply(Progress(step=step, max_steps=100, epoch=0.4, elapsed=35.0 + (step - 6) + (20 if step > 20 else 0),
                            time=5.0))  # fmt: skip
    assert view.eta == 120.0  # steps 20-40 (the later half of the time): 40 s for 20 steps, 60 steps left
    view.apply(Progress(step=0, max_steps=100, epoch=0.0, elapsed=0.0, time=6.0))  # a resumed run begins again
    assert view.eta is None and view.marks == []
