"""Calibrated confidence: temperature scaling fitted on the validation split, how well the probabilities match
how often the model is right (ECE, Brier, a reliability diagram's bins), and accuracy against coverage when the
model abstains under a confidence threshold.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the logits by one
number T > 0 fitted to minimise the validation split's negative log-likelihood: T > 1 softens an over-confident
model, T < 1 sharpens an under-confident one, and the argmax (so accuracy, F1, the confusion matrix) never
changes. The temperature travels with the model in the run folder's ``calibration.json`` (`CALIBRATION_FILE`),
which `inference.Predictor` applies and export, merge and push copy.

Multi-label models score each label with a sigmoid: p_j = sigmoid(z_j / T), either one T for every label or one
T_j per label, each fitted to the binary cross-entropy on validation. Which of the two is kept is decided on
validation rows neither was fitted on (2-fold, `choose_multilabel`): per-label temperatures fit the validation
split better by construction, so the fit itself cannot judge them. Their reliability is binary: every (row,
label) probability against whether the label is there (`binary_bins`); the file's ``per_label`` holds the T_j.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import StudioError
from studio.results import Calibration

CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15
"""Equal-width bins over the top-class confidence, (lower, upper] as in Guo et al."""
LOG_T_BOUNDS = (-3.0, 3.0)
"""The fit searches log T in this range (T from 0.05 to 20): wide for any trained classifier, and it keeps a
validation split the model separates perfectly (NLL falling as T -> 0) from driving T to zero."""
COVERAGE_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
"""Confidence thresholds of the accuracy-against-coverage table (a row answers when its confidence >= threshold)."""
UNSURE = "unsure"
"""The answer of a prediction under the confidence threshold (`predict --min-confidence`)."""


def scaled_probs(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) in float64. `temperature` may be an array broadcast over the last axis (a
    temperature per label, for later)."""
    from scipy.special import softmax

    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature minimising the negative log-likelihood of `labels` under softmax(logits / T).

    scipy's bounded scalar search over log T (the NLL is convex in 1/T, so one minimum); no library fits a
    temperature on its own (sklearn's CalibratedClassifierCV wants an estimator, and its "sigmoid" is Platt's).
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("no rows to fit a temperature on")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / math.exp(log_t), axis=-1)[rows, y].mean())

    best = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(math.exp(best.x))


def reliability_bins(probs: Any, labels: Any, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """The non-empty bins of the top-class confidence: lower, upper, count, mean confidence, accuracy."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return []
    confidence, correct = p.max(axis=-1), (p.argmax(axis=-1) == y)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            mean_conf, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
            out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": int(inside.sum()),
                        "confidence": mean_conf, "accuracy": accuracy})  # fmt: skip
    return out


def expected_calibration_error(probs: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """Sum over the bins of (rows in the bin / all rows) x |accuracy - mean confidence| (0 for no rows)."""
    table = reliability_bins(probs, labels, bins)
    n = sum(b["count"] for b in table)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in table)) if n else 0.0


def brier_score(probs: Any, labels: Any) -> float:
    """Multi-class Brier score: mean over rows of sum_k (p_k - [y = k])^2, from 0 (sure and right) to 2."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=-1).mean())


def coverage_curve(probs: Any, labels: Any, thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS) -> list[dict]:
    """Accuracy of the answered rows against the share answered, for each confidence threshold."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    confidence, correct = (p.max(axis=-1), p.argmax(axis=-1) == y) if len(y) else (np.zeros(0), np.zeros(0))
    return _coverage(confidence, correct, thresholds)


def _coverage(confidence: np.ndarray, right: np.ndarray, thresholds: tuple[float, ...]) -> list[dict]:
    """Per threshold: the rows answered (confidence >= it), their share, and the share of those that are `right`."""
    out = []
    for t in thresholds:
        answered = confidence >= t
        n = int(answered.sum())
        out.append({"threshold": t, "answered": n, "coverage": n / len(right) if len(right) else 0.0,
                    "accuracy": float(right[answered].mean()) if n else None})  # fmt: skip
    return out


def calibrate(val_logits: Any, val_labels: Any, test_logits: Any, test_labels: Any) -> Calibration:
    """Fit the temperature on validation; ECE, Brier and reliability bins on test before and after; the
    calibrated test split's accuracy against coverage."""
    t = fit_temperature(val_logits, val_labels)
    before, after = scaled_probs(test_logits), scaled_probs(test_logits, t)
    return Calibration(
        temperature=round(t, 6),
        validation_rows=len(val_labels),
        test_rows=len(test_labels),
        ece_before=round(expected_calibration_error(before, test_labels), 6),
        ece_after=round(expected_calibration_error(after, test_labels), 6),
        brier_before=round(brier_score(before, test_labels), 6),
        brier_after=round(brier_score(after, test_labels), 6),
        bins_before=reliability_bins(before, test_labels),
        bins_after=reliability_bins(after, test_labels),
        coverage=coverage_curve(after, test_labels),
    )


# ---- multi-label ---------------------------------------------------------------------------------------------
def _bce(logits: np.ndarray, y: np.ndarray, temperature: Any) -> np.ndarray:
    """Binary cross-entropy of each label column (mean over rows) at `temperature` (scalar or per label)."""
    from scipy.special import log_expit

    z = logits / temperature
    return -(y * log_expit(z) + (1 - y) * log_expit(-z)).mean(axis=0)


def fit_sigmoid_temperature(logits: Any, y: Any) -> float:
    """One T minimising the mean binary cross-entropy of every (row, label) under sigmoid(z / T)."""
    from scipy.optimize import minimize_scalar

    z, truth = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    best = minimize_scalar(lambda lt: float(_bce(z, truth, math.exp(lt)).mean()), bounds=LOG_T_BOUNDS,
                           method="bounded", options={"xatol": 1e-5})  # fmt: skip
    return float(math.exp(best.x))


def fit_label_temperatures(logits: Any, y: Any) -> np.ndarray:
    """A T_j per label column, each minimising that label's binary cross-entropy."""
    z, truth = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.asarray([fit_sigmoid_temperature(z[:, [j]], truth[:, [j]]) for j in range(z.shape[1])])


def choose_multilabel(logits: Any, y: Any, seed: int = 0) -> tuple[str, dict[str, float]]:
    """("temperature" | "temperature_per_label", the held-out BCE of each): each kind fitted on one half of the
    validation rows and scored on the other, both ways round. Fewer than 40 rows: one temperature."""
    z, truth = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(truth) < 40:
        return "temperature", {}
    order = np.random.default_rng(seed).permutation(len(truth))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    scores = {"temperature": 0.0, "temperature_per_label": 0.0}
    for fit, judge in (halves, halves[::-1]):
        one = fit_sigmoid_temperature(z[fit], truth[fit])
        each = fit_label_temperatures(z[fit], truth[fit])
        scores["temperature"] += float(_bce(z[judge], truth[judge], one).mean()) / 2
        scores["temperature_per_label"] += float(_bce(z[judge], truth[judge], each).mean()) / 2
    return min(scores, key=scores.__getitem__), {k: round(v, 6) for k, v in scores.items()}


def sigmoid_probs(logits: Any, temperature: Any = 1.0) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def binary_bins(probs: Any, y: Any, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Reliability bins over every (row, label) probability: mean probability against the share of positives."""
    p, truth = np.asarray(probs, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    index = np.clip(np.ceil(p * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": int(inside.sum()),
                        "confidence": float(p[inside].mean()), "accuracy": float(truth[inside].mean())})  # fmt: skip
    return out


def _ece(table: list[dict[str, float]]) -> float:
    n = sum(b["count"] for b in table)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in table)) if n else 0.0


def decision_confidence(probs: Any, decided: Any) -> np.ndarray:
    """How sure a multi-label row's answer is: the least probability among its decisions (p for a label given,
    1 - p for one withheld). Under a confidence threshold the whole row is unsure."""
    p = np.asarray(probs, dtype=np.float64)
    return np.where(np.asarray(decided).astype(bool), p, 1 - p).min(axis=-1) if p.size else np.zeros(len(p))


def multilabel_coverage(probs: Any, y: Any, thresholds: Any, levels: tuple[float, ...] = COVERAGE_THRESHOLDS) -> list:
    """Exact-match accuracy of the answered rows against the share answered, per confidence threshold."""
    p, truth = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    decided = (p >= np.asarray(thresholds)).astype(np.int64)
    return _coverage(decision_confidence(p, decided), (decided == truth).all(axis=-1), levels)


def calibrate_multilabel(
    val_logits: Any, val_y: Any, test_logits: Any, test_y: Any, label_names: list[str]
) -> Calibration:
    """One temperature or one per label (whichever predicts held-out validation rows better), fitted on all of
    validation; binary ECE, Brier and reliability bins on test before and after. `coverage` is filled once the
    thresholds are tuned (`multilabel_coverage`)."""
    kind, scores = choose_multilabel(val_logits, val_y)
    one = fit_sigmoid_temperature(val_logits, val_y)
    each = fit_label_temperatures(val_logits, val_y) if kind == "temperature_per_label" else None
    before = sigmoid_probs(test_logits)
    after = sigmoid_probs(test_logits, one if each is None else each)
    truth = np.asarray(test_y, dtype=np.float64)
    bins_before, bins_after = binary_bins(before, truth), binary_bins(after, truth)
    return Calibration(
        temperature=round(one, 6),
        validation_rows=len(val_y),
        test_rows=len(test_y),
        ece_before=round(_ece(bins_before), 6),
        ece_after=round(_ece(bins_after), 6),
        brier_before=round(float(((before - truth) ** 2).mean()), 6),
        brier_after=round(float(((after - truth) ** 2).mean()), 6),
        bins_before=bins_before,
        bins_after=bins_after,
        per_label=None if each is None else {n: round(float(t), 6) for n, t in zip(label_names, each, strict=True)},
        method=kind,
        extra={"heldout_bce": scores} if scores else {},
    )


def temperatures(c: Calibration | dict | None, label_names: list[str]) -> Any:
    """What divides the logits: the per-label array when the calibration has one, else the one temperature."""
    if c is None:
        return None
    per_label = c.get("per_label") if isinstance(c, dict) else c.per_label
    if per_label:
        return np.asarray([float(per_label.get(n, 1.0)) for n in label_names])
    return float(c["temperature"] if isinstance(c, dict) else c.temperature)


def summary_line(c: Calibration) -> str:
    """One line for the log: the temperature and the test figures before -> after."""
    if c.per_label:
        values = sorted(c.per_label.values())
        return (f"calibration: a temperature per label ({values[0]:.2f}-{values[-1]:.2f}; better than one on held-out "
                f"validation rows) fitted on {c.validation_rows} validation rows; test ECE {c.ece_before:.4f} -> "
                f"{c.ece_after:.4f}, Brier {c.brier_before:.4f} -> {c.brier_after:.4f}")  # fmt: skip
    return (f"calibration: temperature {c.temperature:.3f} fitted on {c.validation_rows} validation rows; test ECE "
            f"{c.ece_before:.4f} -> {c.ece_after:.4f}, Brier {c.brier_before:.4f} -> {c.brier_after:.4f}")  # fmt: skip


def file_content(c: Calibration) -> dict[str, Any]:
    """What calibration.json holds: enough to apply the temperature without eval.json."""
    return {"method": c.method, "temperature": c.temperature, "per_label": c.per_label,
            "validation_rows": c.validation_rows}  # fmt: skip


def read_temperature(folder: Path, label_names: list[str] | None = None) -> Any:
    """What divides the logits, from `folder`'s calibration.json: the temperature, or (a multi-label run that
    kept one per label, with `label_names` given) an array of them in label order; None when there is no file (a
    run from before calibration, or one trained without validation rows)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        values = {"temperature": float(data["temperature"])}
        per_label = data.get("per_label") if label_names is not None else None
        if per_label:
            values.update({f"the temperature of '{n}'": float(per_label[n]) for n in label_names})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StudioError(f"{path} holds no temperature ({e}); delete it to predict with raw probabilities") from None
    for what, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise StudioError(f"{path}: {what} {value} is not a positive number; delete the file to predict with "
                              "raw probabilities")  # fmt: skip
    if per_label:
        return np.asarray([values[f"the temperature of '{n}'"] for n in label_names])
    return values["temperature"]


def check_threshold(value: Any, name: str = "--min-confidence") -> float:
    """`value` as a confidence threshold in [0, 1], or a StudioError saying what to give."""
    return in_unit_interval(value, name, "give the lowest top-class probability to answer with, e.g. 0.8 (below "
                                         "it the answer is 'unsure')")  # fmt: skip


def in_unit_interval(value: Any, name: str, what_to_give: str) -> float:
    """`value` as a number in [0, 1], or a StudioError: "`name`: `value` is outside [0, 1]; `what_to_give`"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise StudioError(f"{name}: {value} is outside [0, 1]; {what_to_give}")
    return number
