"""Whether a run is learning: the rules on synthetic histories (no training), and tiny runs driven to collapse
or divergence with a huge learning rate (flagged live and on the run, stopped when asked)."""

from __future__ import annotations

import json
import math

import pytest
from test_training import tiny_config

from studio.events import Evaluation, HealthFlag, TrainLog
from studio.health import HealthMonitor, collapsed_onto, flag_from_scores
from studio.registry import Registry
from studio.results import Health, RunSummary
from studio.runlog import LogFollower
from studio.training import Run

NAMES = ["negative", "positive"]


def evaluation(step: int, positive: float, majority: float = 0.5) -> Evaluation:
    """A validation evaluation whose predictions put `positive` of the texts on 'positive'."""
    shares = {"predicted/negative": 1 - positive, "predicted/positive": positive}
    return Evaluation({"accuracy": 0.5, **shares, "majority_share": majority}, step=step, epoch=step / 40)


def monitor(method: str = "lora", learning_rate: float = 1e-3) -> HealthMonitor:
    return HealthMonitor(NAMES, method, learning_rate)


def feed(m: HealthMonitor, events: list) -> list[Health]:
    return [flag for e in events if (flag := m.observe(e)) is not None]


def test_predictions_on_one_class_or_a_few_of_many_count_as_collapsed():
    assert collapsed_onto({"a": 0.97, "b": 0.03}, majority_share=0.5) == ["a"]
    assert collapsed_onto({"a": 0.9, "b": 0.1}, majority_share=0.5) is None
    assert collapsed_onto({"a": 0.97, "b": 0.03}, majority_share=0.9) is None  # skewed labels: no evidence
    many = {f"c{i}": 0.0 for i in range(16)} | {"c3": 0.6, "c7": 0.38, "c9": 0.02}
    assert collapsed_onto(many, majority_share=1 / 16) == ["c3", "c7"]  # 2 of 16 classes
    assert collapsed_onto(many | {"c3": 0.5, "c7": 0.3, "c9": 0.2}, majority_share=1 / 16) is None


def test_a_collapse_takes_three_evaluations_in_a_row_past_the_minimum_steps():
    m = monitor()
    assert feed(m, [evaluation(40, 1.0), evaluation(80, 1.0)]) == []  # two are not enough
    (flag,) = feed(m, [evaluation(120, 0.99)])
    assert flag.flag == "collapsed" and flag.step == 120
    assert flag.reason == "predicts only 'positive' after 3 evaluations (steps 40-120)"
    assert flag.advice == "the learning rate 0.001 is likely too high for LoRA on this model; try 0.0002"
    assert feed(m, [evaluation(160, 1.0)]) == []  # raised once
    assert HealthFlag(flag.flag, flag.reason, flag.advice, flag.step).line.startswith(
        "collapsed: this run predicts only 'positive' after 3 evaluations (steps 40-120): the learning rate 0.001"
    )


@pytest.mark.parametrize(
    "events",
    [
        [evaluation(10, 1.0), evaluation(20, 1.0), evaluation(30, 1.0)],  # a short run still on the majority
        [evaluation(40, 1.0), evaluation(80, 0.6), evaluation(120, 1.0), evaluation(160, 1.0)],  # not in a row
        [evaluation(s, 1.0, majority=0.8) for s in (40, 80, 120, 160)],  # skewed labels
        [evaluation(s, 0.5) for s in (40, 80, 120, 160)],  # spread predictions
        [TrainLog(s, s / 40, {"loss": 0.69 - s / 1000, "grad_norm": 1.0}) for s in range(10, 400, 10)],  # learning
    ],
    ids=["short", "recovered", "skewed", "spread", "loss-falls"],
)
def test_healthy_or_unproven_histories_are_not_flagged(events):
    m = monitor()
    assert feed(m, events) == [] and m.final(None) == Health()


def test_a_non_finite_or_blown_up_loss_diverges_after_two_logs():
    m = monitor("full", 5e-5)
    assert feed(m, [TrainLog(1, 0.0, {"loss": 0.7}), TrainLog(2, 0.0, {"loss": math.nan})]) == []  # one bad log
    (flag,) = feed(m, [TrainLog(3, 0.0, {"loss": math.nan})])
    assert flag.flag == "diverged" and "loss of nan" in flag.reason
    assert flag.advice.startswith("try a lower learning rate (1e-05)")  # already at full FT's usual rate
    m = monitor()
    losses = [0.7, 0.8, 3.5, 9.0]
    flags = feed(m, [TrainLog(i, 0.0, {"loss": v}) for i, v in enumerate(losses)])
    assert [f.flag for f in flags] == ["diverged"] and "13x its start" in flags[0].reason


def test_exploding_gradients_diverge():
    norms = [1.0, 1.2, 0.9, 1.1, 500.0, 900.0]
    flags = feed(monitor(), [TrainLog(i, 0.0, {"grad_norm": v}) for i, v in enumerate(norms)])
    assert [f.flag for f in flags] == ["diverged"] and "exploding gradients" in flags[0].reason


def test_a_loss_flat_at_chance_collapses_a_run_without_validation():
    flat = [TrainLog(s, 0.0, {"loss": math.log(2) + 0.005}) for s in range(20, 260, 20)]
    (flag,) = feed(monitor(), flat)
    assert flag.flag == "collapsed" and "ln(2)" in flag.reason
    assert feed(monitor(), flat[:5]) == []  # too early to tell (step 100)


def test_a_collapse_the_final_model_no_longer_shows_is_not_recorded():
    """The run kept its best checkpoint from before the collapse (load_best_at_end): its test predictions are
    spread, so the verdict on the run is healthy."""
    m = monitor()
    feed(m, [evaluation(s, 1.0) for s in (40, 80, 120)])
    summary = RunSummary.from_dict(_summary([[5, 1], [2, 4]]))
    assert m.flagged is not None and m.final(summary) == Health()
    assert m.final(RunSummary.from_dict(_summary([[6, 0], [6, 0]]))).flag == "collapsed"


def test_a_run_that_scores_at_chance_after_hundreds_of_steps_is_untrained_and_told_to_raise_the_rate():
    """SmolLM2 QLoRA at 2.5e-6 on the H200 (issue 20): 704 steps, 50.1% on IMDb's 25,000 test reviews, both
    classes predicted, so neither a collapse nor a divergence: it learned nothing."""
    m = monitor("qlora", 2.5e-6)
    assert feed(m, [TrainLog(s, 0.0, {"loss": 0.8}) for s in range(20, 720, 20)]) == []
    at_chance = RunSummary.from_dict({**_summary([[6000, 6500], [5975, 6525]]), "test": {
        "accuracy": 0.501, "f1_macro": 0.48, "f1_weighted": 0.48, "n": 25000,
        "confusion_matrix": [[6000, 6500], [5975, 6525]]}})  # fmt: skip
    verdict = m.final(at_chance)
    assert verdict.flag == "untrained" and "50.1%" in verdict.reason and "50.0%" in verdict.reason
    assert "too low for QLoRA; try 0.0002" in verdict.advice
    learned = {"accuracy": 0.88, "f1_macro": 0.88, "f1_weighted": 0.88, "n": 25000,
               "confusion_matrix": [[11000, 1500], [1500, 11000]]}  # fmt: skip
    assert m.final(RunSummary.from_dict({**_summary([[1]]), "test": learned})) == Health()
    short = monitor("qlora", 2.5e-6)
    feed(short, [TrainLog(s, 0.0, {"loss": 0.8}) for s in range(10, 60, 10)])
    assert short.final(at_chance) == Health()  # 50 steps: no time to learn yet, no evidence
    assert Health.from_dict(verdict.to_dict()) == verdict  # eval.json and the registry keep it


def _summary(matrix: list[list[int]]) -> dict:
    return {"test": {"accuracy": 0.5, "f1_macro": 0.3, "f1_weighted": 0.3, "n": 12, "confusion_matrix": matrix},
            "efficiency": {"trainable_params": 1, "total_params": 2, "trainable_percent": 50, "train_seconds": 1,
                           "train_samples_per_second": 1, "total_seconds": 1, "steps": 1, "epochs": 1},
            "data": {"label_names": NAMES}, "reproducibility": {}}  # fmt: skip


def test_a_committed_tiny_run_that_predicts_one_class_is_not_called_broken():
    """The version-1 run folder: 6 steps of a tiny model whose test predictions are all 'negative' (and whose
    evaluations predate the prediction shares). Six steps are no evidence of anything: no flag."""
    from pathlib import Path

    from studio.events import parse

    folder = next((Path(__file__).parent / "assets" / "run_folders" / "v1").iterdir())
    m = monitor()
    events = [parse(json.loads(line)) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert feed(m, [e for e in events if e is not None]) == []
    summary = RunSummary.read(folder / "eval.json")
    assert summary.test.confusion_matrix == [[6, 0], [6, 0]] and m.final(summary) == Health()


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_single_class_scores_are_recognised_after_the_fact(k):
    """The GoEmotions study's collapsed runs: accuracy 1/k and macro-F1 2/(k(k+1)) (0.33, 0.10, 0.0074)."""
    assert flag_from_scores(1 / k, 2 / (k * (k + 1)), k) == "collapsed"
    assert flag_from_scores(1 / k + 0.1, 0.3, k) is None
    assert flag_from_scores(0.2375, 0.153, 16) is None  # low, but several classes predicted
    assert flag_from_scores(0.5, 1 / 3, None) is None  # the label count is unknown


def test_health_round_trips_through_eval_json():
    raw = _summary([[6, 0], [6, 0]])
    assert "health" not in RunSummary.from_dict(raw).to_dict()  # folders from before stay as written
    flagged = Health("collapsed", "predicts only 'negative'", "try 0.0002", 30)
    back = RunSummary.from_dict({**raw, "health": flagged.to_dict()})
    assert back.health == flagged and RunSummary.from_dict(back.to_dict()).health == flagged


# ---- tiny runs -------------------------------------------------------------------------------------------------
def huge_rate(model_dir, learning_rate: float, **train):
    """A tiny model fully fine-tuned for 60 steps at a learning rate 400x (0.02) or 20,000x (1.0) full
    fine-tuning's usual one, validated every 10 steps: at 0.02 it predicts one class at every evaluation, at
    1.0 its loss jumps 11x within 4 steps."""
    return tiny_config(model_dir, "full", learning_rate=learning_rate, max_steps=60, eval_strategy="steps",
                       eval_steps=10, logging_steps=2, load_best_at_end=False, **train)  # fmt: skip


def test_a_tiny_run_that_collapses_is_flagged_live_and_on_the_run(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    result = Run(huge_rate(tiny_model_dir("bert"), 0.02), registry).execute()
    assert result.status == "completed", result.message
    flag = result.summary.health
    assert flag is not None and flag.flag == "collapsed" and "predicts" in flag.reason, flag
    assert flag.advice == "the learning rate 0.02 is likely too high for full fine-tuning on this model; try 5e-05"
    assert result.summary.efficiency.steps == 60  # flagged, not stopped: stop_on_collapse is off
    assert f"collapsed: {flag.reason}" in result.message
    assert registry.get(result.run_id).flag == "collapsed"
    assert registry.summary(result.run_id).health == flag
    view = LogFollower(registry.run_dir(result.run_id) / "metrics.jsonl").refresh()
    assert view.health is not None and view.health.flag == "collapsed"  # the page shows it live
    assert any(line.endswith(f"warning: {view.health.line}") for line in view.log)
    assert "collapsed: this run predicts" in (registry.run_dir(result.run_id) / "log.txt").read_text()


def test_stop_on_collapse_stops_a_diverging_run_which_evaluates_and_saves(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    result = Run(huge_rate(tiny_model_dir("bert"), 1.0, stop_on_collapse=True), registry).execute()
    assert result.status == "stopped", result.message
    health = result.summary.health
    assert health is not None and health.flag == "diverged" and "x its start" in health.reason
    assert result.summary.efficiency.steps < 10 and registry.get(result.run_id).status == "stopped"
    assert registry.get(result.run_id).flag == "diverged"
    assert (registry.run_dir(result.run_id) / "model").is_dir()  # saved what it had
