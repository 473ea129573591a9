"""Whether a run is learning: the rules that flag a run that collapsed onto one class, diverged, or never learned.

A run is judged from what it already tells (its events): the validation evaluations during training (each
carries the share of predictions per class, ``predicted/<label>``, and the share of the most frequent true
label, ``majority_share``: `metrics.make_compute_metrics`) and the training logs (loss, gradient norm).
`HealthMonitor` follows a run's events and answers the first time a rule trips (the run shows it live, and
stops when ``train.stop_on_collapse`` asks); `HealthMonitor.final` gives the verdict recorded in eval.json
and the registry. `flag_from_scores` is the rule for runs recorded before the check existed, from the
headline test scores alone.

Every rule needs real evidence, so that a healthy run is never flagged, and a tiny or short run that has not
learned much yet is not called broken: a collapse takes several evaluations in a row past a minimum number of
steps; a divergence takes non-finite or blown-up figures in consecutive logs. Thresholds are named below.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from studio.events import Evaluation, Event, HealthFlag, TrainLog
from studio.methods import METHODS
from studio.results import Health, RunSummary

COLLAPSE_SHARE = 0.95
"""Predictions count as collapsed when one class (or a few: `COLLAPSE_FEW`) takes at least this share."""
BALANCED_MAX_SHARE = 0.7
"""...while the true labels are balanced-ish: their most frequent class is at most this share (on a skewed
split, predicting the majority is what an untrained model does and is not a sign of a broken run)."""
COLLAPSE_FEW = 8
"""With k >= this many labels, predictions on at most k // COLLAPSE_FEW classes count as collapsed too
(16 labels: 2 classes)."""
COLLAPSE_EVALUATIONS = 3
"""A collapse is flagged after this many validation evaluations in a row have collapsed (one is no evidence:
the quick demo, measured on 2 CPU cores, put 98% of its predictions on 'positive' at its first evaluation,
step 25, and was at 79% and 83% accuracy at steps 50 and 75)..."""
COLLAPSE_MIN_STEPS = 50
"""...the last of them at least this many optimizer steps into training (a short run that still predicts
the majority class has not learned yet; the GoEmotions runs that collapsed were flagged at steps 120-360)."""
LOSS_JUMP_FACTOR = 4.0
"""Diverged: the training loss above this multiple of its first logged value (a classifier starts near
ln(k))..."""
BAD_LOGS = 2
"""...or non-finite, or the gradient norm exploding, in this many consecutive training logs (one bad log
can be a single unlucky batch; under fp16 the loss scaler skips steps whose gradients overflowed)."""
GRAD_EXPLODE_FACTOR = 100.0
"""Diverged: the gradient norm above this multiple of the median of the earlier logs..."""
GRAD_BASELINE_LOGS = 3
"""...once there are at least this many earlier logs to take the median of."""
FLAT_LOSS_TOLERANCE = 0.02
"""A run without validation: collapsed when its training loss stays within this fraction of ln(k) (what a
model that predicts the class priors scores on balanced labels)..."""
FLAT_LOSS_LOGS = 5
"""...over its last this many logs..."""
FLAT_LOSS_MIN_STEPS = 200
"""...the last of them at least this many optimizer steps in."""
CHANCE_Z = 3.0
"""Untrained: test accuracy within this many binomial standard errors of the majority class's share (what
always answering that class scores): on IMDb's 25,000 test reviews, at most 50.9%..."""
CHANCE_MIN_STEPS = 200
"""...after at least this many optimizer steps (a short run has had no time to learn; the suite's tiny runs
train a few dozen). The SmolLM2 QLoRA run of issue 20 at 2.5e-6 scored 50.1% after 704 steps, predicting both
classes, so no other rule saw it."""
SCORES_TOLERANCE = 0.002
"""`flag_from_scores`: how close macro-F1 must be to a single-class predictor's to count as one."""


@dataclass
class EvalPoint:
    """One validation evaluation as the rules read it."""

    step: int
    collapsed_onto: list[str] | None
    """The classes the predictions collapsed onto; None when they did not (or the figures are missing)."""


def collapsed_onto(shares: dict[str, float], majority_share: float | None) -> list[str] | None:
    """The classes that take `COLLAPSE_SHARE` of the predictions (one, or a few of many), when the true
    labels are balanced-ish; None otherwise. `shares`: label -> share of the predictions."""
    if not shares or majority_share is None or majority_share > BALANCED_MAX_SHARE:
        return None
    few = max(1, len(shares) // COLLAPSE_FEW)
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    taken = 0.0
    for i, (_, share) in enumerate(ranked[:few]):
        taken += share
        if taken >= COLLAPSE_SHARE:
            return [name for name, _ in ranked[: i + 1]]
    return None


def collapse_reason(evals: list[EvalPoint]) -> str | None:
    """Collapsed: the last `COLLAPSE_EVALUATIONS` evaluations all collapsed, the last past `COLLAPSE_MIN_STEPS`."""
    last = evals[-COLLAPSE_EVALUATIONS:]
    if len(last) < COLLAPSE_EVALUATIONS or any(e.collapsed_onto is None for e in last):
        return None
    if last[-1].step < COLLAPSE_MIN_STEPS:
        return None
    named = [" and ".join(f"'{c}'" for c in e.collapsed_onto or []) for e in last]
    where = f"after {len(evals)} evaluations (steps {last[0].step}-{last[-1].step})"
    if len(set(named)) == 1:
        return f"predicts only {named[-1]} {where}"
    return f"predicts one class whatever the text (now {named[-1]}; it changed between evaluations) {where}"


def loss_reason(losses: list[tuple[int, float]]) -> str | None:
    """Diverged: the loss non-finite, or above `LOSS_JUMP_FACTOR` x its first value, in `BAD_LOGS` logs in a row."""
    if len(losses) < BAD_LOGS:
        return None
    recent = losses[-BAD_LOGS:]
    if all(not math.isfinite(v) for _, v in recent):
        return f"has a training loss of {recent[-1][1]} (steps {recent[0][0]}-{recent[-1][0]})"
    start = losses[0][1]
    jumped = len(losses) > BAD_LOGS and math.isfinite(start) and start > 0
    if jumped and all(math.isfinite(v) and v > LOSS_JUMP_FACTOR * start for _, v in recent):
        return (f"has a training loss of {recent[-1][1]:.3g} at step {recent[-1][0]}, "
                f"{recent[-1][1] / start:.0f}x its start ({start:.3g})")  # fmt: skip
    return None


def grad_reason(norms: list[tuple[int, float]]) -> str | None:
    """Diverged: the gradient norm non-finite, or above `GRAD_EXPLODE_FACTOR` x the median of the earlier
    logs, in `BAD_LOGS` logs in a row."""
    if len(norms) < BAD_LOGS:
        return None
    recent, earlier = norms[-BAD_LOGS:], [v for _, v in norms[:-BAD_LOGS] if math.isfinite(v)]
    if all(not math.isfinite(v) for _, v in recent):
        return f"has a gradient norm of {recent[-1][1]} (steps {recent[0][0]}-{recent[-1][0]})"
    if len(earlier) >= GRAD_BASELINE_LOGS:
        base = statistics.median(earlier)
        if base > 0 and all(v > GRAD_EXPLODE_FACTOR * base for _, v in recent):
            return (f"has exploding gradients: norm {recent[-1][1]:.3g} at step {recent[-1][0]}, "
                    f"{recent[-1][1] / base:.0f}x its earlier median")  # fmt: skip
    return None


def flat_loss_reason(losses: list[tuple[int, float]], num_labels: int) -> str | None:
    """Collapsed (a run without validation): the loss flat within `FLAT_LOSS_TOLERANCE` of ln(k)."""
    last = losses[-FLAT_LOSS_LOGS:]
    if num_labels < 2 or len(last) < FLAT_LOSS_LOGS or last[-1][0] < FLAT_LOSS_MIN_STEPS:
        return None
    chance = math.log(num_labels)
    if all(math.isfinite(v) and abs(v - chance) <= FLAT_LOSS_TOLERANCE * chance for _, v in last):
        return (f"has a training loss flat at ln({num_labels}) = {chance:.3f}, what predicting the class "
                f"priors scores (steps {last[0][0]}-{last[-1][0]})")  # fmt: skip
    return None


def advice(method: str, learning_rate: float) -> str:
    """What to change: a lower learning rate, the method's usual one (`methods.Method.usual_learning_rate`)
    when the run's is above it."""
    spec = METHODS.get(method)
    label = spec.label if spec else method
    usual = spec.usual_learning_rate if spec else learning_rate / 5
    if learning_rate > usual:
        return f"the learning rate {learning_rate:g} is likely too high for {label} on this model; try {usual:g}"
    return (f"try a lower learning rate ({learning_rate / 5:g}) or more warm-up, and check that the labels match "
            "the texts")  # fmt: skip


@dataclass
class HealthMonitor:
    """Follows one run's events and judges them; `observe` returns the flag the first time a rule trips."""

    label_names: list[str]
    method: str
    learning_rate: float
    multi_label: bool = False
    """A sigmoid per label: no class to collapse onto, and no ln(k) loss to be flat at; divergence still counts,
    and the end's verdict reads ranking quality (`multilabel_chance_reason`)."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)
    flagged: Health | None = None
    """The first flag raised (it stands for the rest of the run)."""

    def observe(self, event: Event) -> Health | None:
        """Take in one event; the flag when this event made a rule trip for the first time, else None."""
        if self.flagged is not None:
            return None
        if isinstance(event, TrainLog):
            self._take_log(event)
        elif isinstance(event, Evaluation) and event.split is None:
            self._take_eval(event)
        else:
            return None
        self.flagged = self._judge()
        return self.flagged

    def _take_log(self, event: TrainLog) -> None:
        for key, series in (("loss", self.losses), ("grad_norm", self.grad_norms)):
            value = event.values.get(key)
            if isinstance(value, (int, float)):
                series.append((event.step, float(value)))

    def _take_eval(self, event: Evaluation) -> None:
        m = event.metrics
        shares = {n: float(m[f"predicted/{n}"]) for n in self.label_names if f"predicted/{n}" in m}
        majority = m.get("majority_share")
        onto = collapsed_onto(shares, float(majority) if majority is not None else None)
        self.evals.append(EvalPoint(int(event.step or 0), onto))

    def _judge(self) -> Health | None:
        step = max([s for s, _ in self.losses[-1:]] + [e.step for e in self.evals[-1:]], default=0)
        tip = advice(self.method, self.learning_rate)
        for reason in (loss_reason(self.losses), grad_reason(self.grad_norms)):
            if reason:
                return Health("diverged", reason, tip, step)
        reason = collapse_reason(self.evals)
        if reason is None and not self.evals and not self.multi_label:
            reason = flat_loss_reason(self.losses, len(self.label_names))
        return Health("collapsed", reason, tip, step) if reason else None

    def final(self, summary: RunSummary | None) -> Health:
        """The verdict recorded on the run: the flag raised while it trained, unless it was a collapse and the
        model the run ended with (a recovery, or the best checkpoint, kept from before the collapse) no longer
        predicts one class on the test split; with no flag, "untrained" when its test scores are at chance."""
        if self.flagged is None:
            steps = max([s for s, _ in self.losses[-1:]] + [e.step for e in self.evals[-1:]], default=0)
            judge = multilabel_chance_reason if self.multi_label else chance_reason
            reason = judge(summary, steps) if summary is not None else None
            if reason:
                return Health("untrained", reason, untrained_advice(self.method, self.learning_rate), steps)
            return Health()
        collapse = self.flagged.flag == "collapsed" and summary is not None and summary.test.confusion_matrix
        if collapse and summary is not None and collapsed_on_test(summary) is None:
            return Health()
        return self.flagged


def collapsed_on_test(summary: RunSummary) -> list[str] | None:
    """The classes the test predictions collapsed onto (from the confusion matrix: columns are predictions)."""
    matrix, names = summary.test.confusion_matrix, summary.label_names
    total = sum(sum(row) for row in matrix)
    if not total or len(names) != len(matrix):
        return None
    shares = {n: sum(row[j] for row in matrix) / total for j, n in enumerate(names)}
    majority = max(sum(row) for row in matrix) / total
    return collapsed_onto(shares, majority)


def chance_reason(summary: RunSummary, steps: int) -> str | None:
    """Untrained: past `CHANCE_MIN_STEPS`, test accuracy within `CHANCE_Z` standard errors of the majority
    class's share of the test split (from the confusion matrix: rows are true labels)."""
    matrix, accuracy = summary.test.confusion_matrix, summary.test.accuracy
    total = sum(sum(row) for row in matrix) if matrix else 0
    if steps < CHANCE_MIN_STEPS or not total or accuracy is None:
        return None
    majority = max(sum(row) for row in matrix) / total
    if accuracy > majority + CHANCE_Z * math.sqrt(majority * (1 - majority) / total):
        return None
    return (f"scores {accuracy:.1%} on the test split after {steps} steps, where always answering the most "
            f"frequent class scores {majority:.1%}: it learned nothing")  # fmt: skip


MULTI_LABEL_CHANCE_AUC = 0.55
"""Untrained (multi-label): test macro ROC-AUC at or under this, where 0.5 is a model that ranks the texts
carrying a label no higher than the others."""


def multilabel_chance_reason(summary: RunSummary, steps: int) -> str | None:
    """Untrained multi-label run: past `CHANCE_MIN_STEPS`, a test macro ROC-AUC of chance."""
    auc = summary.test.extra.get("roc_auc_macro")
    if steps < CHANCE_MIN_STEPS or not isinstance(auc, (int, float)) or not auc <= MULTI_LABEL_CHANCE_AUC:
        return None
    return (f"ranks the test texts at chance after {steps} steps (macro ROC-AUC {auc:.3f}; 0.5 is chance): it "
            "learned nothing")  # fmt: skip


def untrained_advice(method: str, learning_rate: float) -> str:
    """What to change for a run that never moved: a higher rate (the method's usual one) when it is below it."""
    spec = METHODS.get(method)
    label, usual = (spec.label, spec.usual_learning_rate) if spec else (method, learning_rate * 10)
    if learning_rate < usual:
        return (f"the learning rate {learning_rate:g} is likely too low for {label}; try {usual:g}, or run "
                "'Find a learning rate'")  # fmt: skip
    return "check that the labels match the texts, and train for more steps"


def flag_from_scores(accuracy: float | None, f1_macro: float | None, num_labels: int | None) -> str | None:
    """The rule for a run recorded before the check existed, from its test scores alone: "collapsed" when they
    are a single-class predictor's. Predicting class c everywhere gives accuracy p (c's share of the test
    split), F1 2p / (1 + p) for c and 0 for every other class, so macro-F1 = 2p / ((1 + p) k) exactly
    (16 balanced labels: accuracy 0.0625, macro-F1 0.0074). Collapses onto a few classes cannot be told
    from the scores and are not flagged."""
    if accuracy is None or f1_macro is None or not num_labels or num_labels < 2 or accuracy > BALANCED_MAX_SHARE:
        return None
    single = 2 * accuracy / ((1 + accuracy) * num_labels)
    return "collapsed" if abs(f1_macro - single) <= SCORES_TOLERANCE else None


def to_event(health: Health) -> HealthFlag:
    return HealthFlag(health.flag or "", health.reason, health.advice, health.step)
