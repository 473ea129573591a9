"""The learning-rate range test: the curve's bookkeeping, the rule that reads a rate off it, and real sweeps of
tiny models through the recipe (full and LoRA) that leave nothing behind."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from studio import lr_find as lr_find_module
from studio.config import RunConfig
from studio.errors import StudioError
from studio.jobs import Jobs
from studio.lr_find import Curve, lr_find, steepest, suggest, sweep_rates
from studio.methods import METHODS
from studio.registry import Registry


def tiny(model_dir: Path, method: str = "lora") -> RunConfig:
    return RunConfig.from_dict({
        "name": "tiny-lr",
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
        "model": {"name": str(model_dir)},
        "method": {"name": method, "r": 4},
        "train": {"batch_size": 8, "learning_rate": 1e-3},
    })  # fmt: skip


def left_behind() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("studio-lr-find-*"))


# ---- the curve and the rule, on made-up losses ---------------------------------------------------------------
def test_rates_rise_evenly_in_log_scale():
    rates = sweep_rates(1e-7, 1e-1, 7)
    assert rates[0] == pytest.approx(1e-7) and rates[-1] == pytest.approx(1e-1)
    assert [round(math.log10(r)) for r in rates] == [-7, -6, -5, -4, -3, -2, -1]


def test_the_curve_smooths_without_bias_and_stops_when_the_loss_diverges():
    curve = Curve(smoothing=0.9, diverged=4.0)
    assert not curve.add(1e-5, 2.0) and curve.smoothed == [pytest.approx(2.0)]  # corrected: not 0.2
    assert not any(curve.add(1e-4, 1.0) for _ in range(20))
    stops = [curve.add(1e-1, 6.0) for _ in range(15)]
    assert stops[-1] and not stops[0]  # the average climbs past 4x its best within a few steps, not at once
    nan = Curve()
    assert nan.add(1e-3, float("nan")) and math.isnan(nan.smoothed[0]) and math.isnan(nan.losses[0])


def valley(rates: list[float]) -> list[float]:
    """A loss that falls fastest at 1e-4 (a tanh in log10 of the rate) and climbs after 1e-2."""
    out = []
    for r in rates:
        x = math.log10(r)
        out.append(1.0 - 0.5 * math.tanh(2 * (x + 4)) + (max(0.0, x + 2) ** 2) * 3)
    return out


def test_the_suggestion_is_a_tenth_of_the_minimum_and_the_steepest_descent_is_reported():
    rates = sweep_rates(1e-7, 1.0, 100)
    losses = valley(rates)
    minimum = rates[losses.index(min(losses))]
    rate, rule, caveats = suggest(rates, losses)
    assert rule == "min/10" and rate == pytest.approx(minimum / 10) and caveats == []
    assert steepest(rates, losses) == pytest.approx(1e-4, rel=0.25)


def test_without_a_descent_the_suggestion_stays_inside_the_sweep_and_says_it_is_a_guess():
    rates = sweep_rates(1e-3, 1.0, 30)
    rising = [1.0 + i for i in range(30)]  # lowest at the first step: min/10 would fall below the sweep
    rate, rule, caveats = suggest(rates, rising)
    assert rule == "min/10" and rate == rates[0] and "treat the rate as a guess" in caveats[0]
    assert steepest(rates, rising) is None
    with pytest.raises(StudioError, match="no finite loss"):
        suggest(rates[:2], [math.nan, math.nan])


def test_an_early_bump_of_the_average_does_not_drag_the_suggestion_to_the_sweeps_start():
    """SmolLM2 QLoRA on the H200 (issue 20): the still-noisy average rose over the first steps and fell back,
    and the steepest-descent rule picked 2.5e-6 there, where nothing trains; min/10 reads the real minimum."""
    rates = sweep_rates(1e-6, 1.0, 160)
    losses = [0.8 + (0.1 if 8 <= i < 16 else 0.0) - 0.2 * max(0.0, math.log10(r) + 5) / 2.5 for i, r in
              enumerate(rates)]  # fmt: skip
    losses = [v if r < 5e-3 else 0.6 + 20 * (r - 5e-3) for v, r in zip(losses, rates, strict=True)]
    rate, _, _ = suggest(rates, losses)
    assert 1e-4 < rate < 1e-3


def test_each_method_sweeps_its_own_range_adapters_higher():
    assert METHODS["full"].lr_sweep == (1e-7, 1e-1)
    assert all(METHODS[m].lr_sweep[1] > METHODS["full"].lr_sweep[1] for m in ("lora", "qlora", "ia3"))


def test_bad_bounds_and_too_few_steps_are_refused():
    config = RunConfig()
    with pytest.raises(StudioError, match="at most 1"):
        lr_find(config, start=1e-3, end=2.0)
    with pytest.raises(StudioError, match="rise from"):
        lr_find(config, start=1e-2, end=1e-3)
    with pytest.raises(StudioError, match="at least 10 steps"):
        lr_find(config, steps=4)


# ---- real sweeps of tiny models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_sweep_of_a_tiny_model_suggests_a_rate_inside_it_and_leaves_nothing(tiny_model_dir, runs_dir, method):
    before = left_behind()
    result = lr_find(tiny(tiny_model_dir("bert"), method), steps=20, cache_dir=runs_dir / ".cache")
    assert result.method == method and result.planned_steps == 20 and 2 <= result.steps <= 20
    assert (result.start, result.end) == METHODS[method].lr_sweep
    assert len(result.rates) == len(result.losses) == len(result.smoothed) == result.steps
    assert result.rates == sorted(result.rates) and result.rates[0] == pytest.approx(result.start)
    assert result.start <= result.suggested <= result.end and result.rule == "min/10"
    assert result.seconds > 0 and "CPU" in result.device and result.lr_scale == 1.0
    assert any(n.startswith("data: ") for n in result.notes)  # the recipe's own notes come back
    assert set(result.to_dict()) >= {"rates", "losses", "smoothed", "suggested", "rule", "steps", "seconds", "device"}
    names = {t.name for t in result.figure().data}
    assert {"loss (each step)", "smoothed"} <= names and any(n.startswith("suggested") for n in names)
    assert "<- suggested" in result.table()
    assert Registry(runs_dir).list() == [] and left_behind() == before  # no run, no temporary folder


def test_a_diverging_sweep_stops_early(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(lr_find_module, "DIVERGED", 1.0)  # any rise of the smoothed loss counts as diverged
    result = lr_find(tiny(tiny_model_dir("bert"), "full"), steps=40, start=1e-2, end=1.0)
    assert result.stopped_early and result.steps < 40
    assert result.smoothed[-1] > min(result.smoothed)


def test_a_bad_config_fails_with_its_field_and_leaves_nothing():
    before = left_behind()
    with pytest.raises(StudioError, match="model.name"):
        lr_find(RunConfig.from_dict({"model": {"name": "./no/such/folder"}}), steps=10)
    assert left_behind() == before


def test_the_job_slot_holds_the_device_and_caches_the_tokens_where_runs_do(tiny_model_dir, runs_dir):
    jobs = Jobs(Registry(runs_dir))
    result = jobs.lr_find(tiny(tiny_model_dir("bert")), steps=12)
    assert result.steps >= 2 and (runs_dir / ".cache" / "tokenized").is_dir()
    assert jobs._busy_message() is None  # the slot is free again
