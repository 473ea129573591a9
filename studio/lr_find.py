"""The learning-rate range test: a short run whose learning rate rises exponentially, and the rate it suggests.

Leslie Smith's test ("Cyclical Learning Rates for Training Neural Networks", 2017, section 3.3) as fastai's and
PyTorch Lightning's `lr_find` run it: `steps` optimizer steps from `start` to `end`, evenly spaced in log
scale; each step's training loss, smoothed by a bias-corrected exponential moving average (beta 0.98, both
libraries' default); the sweep stops once the smoothed loss passes DIVERGED x its best (4, both libraries'
default) or stops being a number. The suggestion is a tenth of the rate at the smoothed loss's minimum
(fastai's `lr_min`); the rate where the smoothed loss falls fastest before the minimum (Lightning's rule,
fastai's `steep`) is reported beside it as the top of the usable range.

Why min/10 and not the steepest descent (issue 20, benchmarks/results/imdb_peft_real/): on the full IMDb on an
H200, MiniLM-L6 and SmolLM2-135M, the steepest-descent rate trained a full epoch well for full fine-tuning and
IA3 but collapsed 3 of 6 MiniLM LoRA runs onto one class (LoRA on attention+FFN at 4.4e-3, both seeds; rank
64 at 9.7e-4) and left one QLoRA run at 68.6%; on SmolLM2 QLoRA an early bump of the still-noisy average made
the "steepest" point 2.5e-6, where nothing trains. A tenth of the minimum's rate trained all 6 MiniLM setups
x 2 seeds (86.8-90.1%, none flagged) and the 5 SmolLM2 setups it was tried on: the range test sees a few
hundred steps, a run sees thousands, and the rate that wins the short race can collapse the long one.

It trains through the studio's own recipe (studio/recipe.py): the config's data, its speed plan, the model
with its adapters or 4-bit base, the Trainer with the config's optimizer, batch, precision and clipping, so the
rate found is for what would train. Only the schedule differs: a LambdaLR on the optimizer the Trainer builds
(`Trainer.create_optimizer`, so 8-bit and paged optimizers work too) replaces the config's scheduler, and the
loss is logged every step. Nothing reaches the user's runs: no registry row, no run folder; the Trainer's
output folder is temporary and deleted after. Tokenized splits may be cached where a run caches them
(`cache_dir`), so the training that follows starts sooner.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.config import RunConfig
from studio.errors import StudioError
from studio.events import Event, Note, Status

if TYPE_CHECKING:
    from studio.recipe import ClassifierRecipe

DEFAULT_STEPS = 100
"""fastai's and Lightning's default: ~15 steps per decade over the 6 decades of a method's sweep."""
SMOOTHING = 0.98
"""Weight of the past in the moving average of the loss (fastai, Lightning). A batch's loss is noisy; this
average spans ~50 steps, so it lags the raw curve: the minimum and the steepest slope it shows are slightly
to the right of the raw curve's (fastai and Lightning share the bias)."""
DIVERGED = 4.0
"""The sweep stops once the smoothed loss passes this many times its best (fastai, Lightning)."""
SKIP_START = 10
"""The first steps' slope is not trusted: the average has seen few batches (Lightning's skip_begin)."""
MIN_DESCENT_STEPS = 5
"""Fewer steps than this between the trusted start and the minimum: no slope to read (no `steepest`)."""
FLAT = 0.05
"""A smoothed minimum less than 5% under the smoothed loss at the trusted start: the curve says little."""

Rule = Literal["steepest", "min/10"]


@dataclass
class LrFindResult:
    """One range test: the curve, the suggestion and what it cost."""

    model: str
    method: str
    rates: list[float]
    """The learning rate of each step trained, in order (what trained, after the speed profile's batch)."""
    losses: list[float]
    """Each step's training loss (the batch's mean; NaN where it was not a number)."""
    smoothed: list[float]
    """The bias-corrected moving average of `losses` (beta SMOOTHING)."""
    suggested: float
    """The rate to set as `train.learning_rate` (divided by `lr_scale` when the speed profile scales it)."""
    rule: Rule
    """How `suggested` was read off the curve: steepest descent of the smoothed loss, or its minimum's rate / 10."""
    start: float
    end: float
    planned_steps: int
    seconds: float
    """The whole test: data, model, the sweep."""
    device: str
    stopped_early: bool
    """The sweep stopped before `end`: the smoothed loss passed DIVERGED x its best (or was not a number)."""
    steepest: float | None = None
    """Where the smoothed loss fell fastest (the same scale as `suggested`): the top of the usable range, a rate
    that can collapse a whole run (see the module's docstring); None when the curve has no descent to read."""
    lr_scale: float = 1.0
    """The speed profile's factor on `train.learning_rate` (a larger batch on a GPU: the square-root rule); the
    sweep's rates are what trained, so the suggestion is the rate at the curve divided by this."""
    notes: list[str] = field(default_factory=list)
    """What the run said: data, the speed plan, the model."""
    caveats: list[str] = field(default_factory=list)
    """Why the suggestion may need a second look (a flat curve, a rate the speed profile scales)."""

    @property
    def steps(self) -> int:
        """Steps trained (fewer than `planned_steps` when the loss diverged)."""
        return len(self.rates)

    @property
    def suggested_trained(self) -> float:
        """The suggested rate as it trains (on the planned batch): the point marked on the curve."""
        return self.suggested * self.lr_scale

    @property
    def rule_text(self) -> str:
        return RULES[self.rule]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": self.steps}

    def figure(self) -> Any:
        """The curve with the suggested rate marked (plots.lr_find_curve)."""
        from studio import plots

        label = f"suggested {self.suggested_trained:.1e} ({self.rule})"
        return plots.lr_find_curve(self.rates, self.losses, self.smoothed, self.suggested_trained, label)

    def table(self, rows: int = 12) -> str:
        """A few of the curve's points (every n-th step, the suggestion's and the last one) as aligned text."""
        marked = min(range(self.steps), key=lambda i: abs(math.log(self.rates[i] / self.suggested_trained)))
        picks = sorted({*range(0, self.steps, max(1, self.steps // rows)), marked, self.steps - 1})
        lines = [f"  {'step':>4}  {'rate':>9}  {'loss':>8}  {'smoothed':>8}"]
        for i in picks:
            mark = "  <- suggested" if i == marked else ""
            lines.append(f"  {i + 1:>4}  {self.rates[i]:>9.2e}  {self.losses[i]:>8.4f}  {self.smoothed[i]:>8.4f}{mark}")
        return "\n".join(lines)

    def cost(self) -> str:
        """'123 s on CPU (...), 78 of 100 steps (stopped: the loss diverged)'."""
        end = " (stopped early: the loss diverged)" if self.stopped_early else ""
        return f"{self.seconds:.0f} s on {self.device}, {self.steps} of {self.planned_steps} steps{end}"


RULES: dict[str, str] = {
    "steepest": "where the smoothed loss falls fastest (before issue 20: a rate that can collapse a run)",
    "min/10": "a tenth of the rate at the smoothed loss's minimum",
}


def sweep_rates(start: float, end: float, steps: int) -> list[float]:
    """`steps` rates from `start` to `end`, evenly spaced in log scale."""
    if steps < 2:
        return [start]
    ratio = math.log(end / start)
    return [start * math.exp(ratio * i / (steps - 1)) for i in range(steps)]


class Curve:
    """The loss curve as the sweep records it, one step at a time; knows when the loss has diverged."""

    def __init__(self, smoothing: float = SMOOTHING, diverged: float = DIVERGED):
        self.smoothing, self.diverged = smoothing, diverged
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._average = 0.0
        self._best = math.inf

    def add(self, rate: float, loss: float) -> bool:
        """Record one step; True when the sweep should stop (the smoothed loss passed `diverged` x its best)."""
        loss = float(loss)
        self.rates.append(float(rate))
        self.losses.append(loss if math.isfinite(loss) else math.nan)
        if not math.isfinite(loss):
            self.smoothed.append(math.nan)
            return True
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        value = self._average / (1 - self.smoothing ** len(self.losses))  # bias correction: the average starts at 0
        self.smoothed.append(value)
        self._best = min(self._best, value)
        return len(self.losses) > 1 and value > self.diverged * self._best


def suggest(rates: list[float], smoothed: list[float]) -> tuple[float, Rule, list[str]]:
    """(rate, rule, caveats) read off a smoothed loss curve: a tenth of the rate at the smoothed loss's minimum
    (rule "min/10"), never below the sweep's first rate (nothing below it was measured)."""
    values = _finite(smoothed)
    best = int(values.argmin())
    begin = min(SKIP_START, max(0, best - MIN_DESCENT_STEPS))
    caveats = []
    if values[best] > (1 - FLAT) * values[begin]:
        caveats.append(
            f"the smoothed loss fell only {100 * (1 - values[best] / values[begin]):.1f}% before it rose: a weak "
            "signal (few steps where the loss falls, or a tiny random model); treat the rate as a guess"
        )
    return float(max(rates[best] / 10, rates[0])), "min/10", caveats


def steepest(rates: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade between the trusted start (SKIP_START steps
    in) and its minimum: the top of the usable range, not a rate to train a whole run at (see the module's
    docstring); None when that stretch is too short to measure a slope on, or never falls."""
    import numpy as np

    values = _finite(smoothed)
    best = int(values.argmin())
    begin = min(SKIP_START, max(0, best - MIN_DESCENT_STEPS))
    if best - begin < MIN_DESCENT_STEPS:
        return None
    slopes = np.gradient(values[begin : best + 1], np.log10(np.array(rates[begin : best + 1], dtype=float)))
    return float(rates[begin + int(np.argmin(slopes))]) if slopes.min() < 0 else None


def _finite(smoothed: list[float]) -> Any:
    import numpy as np

    values = np.array([v if math.isfinite(v) else np.inf for v in smoothed], dtype=float)
    if not len(values) or not np.isfinite(values).any():
        raise StudioError("the range test recorded no finite loss: the model diverged at once; lower the sweep's start")
    return values


def lr_find(
    config: RunConfig,
    *,
    steps: int = DEFAULT_STEPS,
    start: float | None = None,
    end: float | None = None,
    cache_dir: Path | None = None,
    emit: Callable[[Event], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> LrFindResult:
    """Run the range test for `config` on this device: `steps` steps from `start` to `end` (default: the
    method's `lr_sweep`), the curve and the suggested `train.learning_rate`.

    Args:
        cache_dir: where tokenized splits are cached (a runs folder's .cache); default: a temporary folder.
        emit: receives the run's events (data, plan and model notes, phases) as they happen.
        stop_requested: polled every step; True ends the sweep where it is (the curve so far is used).

    Raises:
        StudioError: bad input (its message names the field), a sweep that could not train (out of memory:
            with the usual advice), or a curve with no finite loss.
    """
    start, end = _bounds(config, start, end)
    if steps < 2 * MIN_DESCENT_STEPS:
        raise StudioError(f"lr-find needs at least {2 * MIN_DESCENT_STEPS} steps to read a slope, not {steps}")
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="studio-lr-find-"))
    notes: list[str] = []

    def collect(event: Event) -> None:
        if isinstance(event, Note):
            notes.append(event.message)
        if emit is not None:
            emit(event)

    recipe = _recipe(_sweep_config(config, steps), collect, stop_requested, cache_dir or work / ".cache")
    try:
        curve = _run(recipe, work, sweep_rates(start, end, steps))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    at_curve, rule, caveats = suggest(curve.rates, curve.smoothed)
    scale = recipe.trained.train.learning_rate / config.train.learning_rate
    # two significant digits (what a person types), kept inside the sweep and train.learning_rate's bound
    suggested = min(max(float(f"{at_curve / scale:.2g}"), curve.rates[0] / scale), curve.rates[-1] / scale, 1.0)
    steep = steepest(curve.rates, curve.smoothed)
    if not math.isclose(scale, 1.0):
        caveats.append(f"the speed profile trains with a larger batch and scales train.learning_rate by x{scale:.2f}: "
                       f"set {suggested:.2g} to train at {at_curve:.2g}")  # fmt: skip
    return LrFindResult(
        model=config.model.name, method=recipe.trained.method.name, rates=curve.rates, losses=curve.losses,
        smoothed=curve.smoothed, suggested=suggested, rule=rule, start=start, end=end, planned_steps=steps,
        steepest=float(f"{steep / scale:.2g}") if steep else None,
        seconds=round(time.time() - t0, 1), device=_device_name(), stopped_early=len(curve.rates) < steps,
        lr_scale=scale, notes=notes, caveats=caveats,
    )  # fmt: skip


def _bounds(config: RunConfig, start: float | None, end: float | None) -> tuple[float, float]:
    default_start, default_end = config.method.spec.lr_sweep
    start, end = start or default_start, end or default_end
    if not 0 < start < end <= 1:
        raise StudioError(f"the sweep must rise from a rate above 0 to one at most 1 (train.learning_rate's "
                          f"bounds): got {start:g} to {end:g}")  # fmt: skip
    return start, end


def _sweep_config(config: RunConfig, steps: int) -> RunConfig:
    """`config` as the sweep trains it: `steps` steps, the loss logged every step, no evaluation, checkpoint or
    tracker (the scheduler and warm-up are replaced by the sweep's own schedule)."""
    return config.with_overrides([
        f"train.max_steps={steps}", "train.logging_steps=1", "train.eval_strategy=no", "train.load_best_at_end=false",
        "train.early_stopping_patience=null", "train.checkpoint_steps=null", "train.report_to=[]",
        "train.warmup_ratio=0", f"name={config.name}-lr-find",
    ])  # fmt: skip


def _recipe(config: RunConfig, emit: Callable[[Event], None], stop: Callable[[], bool] | None,
            cache_dir: Path) -> ClassifierRecipe:  # fmt: skip
    from studio.distributed import World, world
    from studio.recipe import ClassifierRecipe

    if world().distributed:
        raise StudioError("lr-find trains in one process: run it without torchrun or accelerate launch")
    return ClassifierRecipe(config, emit=emit, stop_requested=stop or (lambda: False), world=World(),
                            cache_dir=cache_dir)  # fmt: skip


def _run(recipe: ClassifierRecipe, work: Path, rates: list[float]) -> Curve:
    """The recipe's data, plan and model, then the sweep: the Trainer with the exponential schedule. A crash
    becomes one readable StudioError (an out-of-memory one with the usual advice), as a run's does."""
    from studio.failures import explain_failure, without_frames

    crash: BaseException | None = None
    try:
        recipe.emit(Status("preparing data", f"loading {recipe.config.data.source}"))
        recipe.setup_data()
        recipe.plan_speed()
        recipe.emit(Status("loading model", f"loading {recipe.config.model.name}"))
        recipe.setup_model()
        recipe.setup_trainer(work, None)
        recipe.emit(Status("training", f"sweeping the learning rate from {rates[0]:.0e} to {rates[-1]:.0e}"))
        curve = _sweep(recipe, rates)
    except StudioError:
        raise
    except Exception as e:  # explained after cleanup: the out-of-memory advice reads the memory freed
        crash = without_frames(e)
    finally:
        num_labels = recipe.num_labels
        recipe.cleanup(None)
    if crash is not None:
        reason = explain_failure(crash, recipe.trained, num_labels)
        raise StudioError(f"the learning-rate range test could not train: {reason}") from None
    if not curve.rates:
        raise StudioError("the learning-rate range test was stopped before its first step")
    return curve


def _sweep(recipe: ClassifierRecipe, rates: list[float]) -> Curve:
    """Train with the rate of step i = rates[i]: a LambdaLR on the optimizer the Trainer builds, set before
    `train()` (the Trainer keeps a scheduler it did not create), and a callback that records each step's loss
    and stops the Trainer once the loss diverged."""
    import torch
    from transformers import TrainerCallback

    trainer, curve = recipe.trainer, Curve(SMOOTHING, DIVERGED)
    optimizer = trainer.create_optimizer()
    base = optimizer.param_groups[0]["lr"]  # the LambdaLR multiplies each group's initial rate
    last = len(rates) - 1
    trainer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: rates[min(i, last)] / base)

    class Recorder(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> Any:
            if logs and "loss" in logs and "learning_rate" in logs and curve.add(logs["learning_rate"], logs["loss"]):
                control.should_training_stop = True
            return control

    trainer.add_callback(Recorder())
    recipe.train()
    return curve


def _device_name() -> str:
    import torch

    from studio.hardware import detect

    device = detect()
    if device.kind == "cuda" and torch.cuda.is_available():
        return device.name
    return f"CPU ({device.name}), {torch.get_num_threads()} threads"
