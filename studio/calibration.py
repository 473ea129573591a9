"""Calibrated confidence: temperature scaling fitted on the validation split, how well the probabilities match
how often the model is right (ECE, Brier, a reliability diagram's bins), and accuracy against coverage when the
model abstains under a confidence threshold.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the logits by one
number T > 0 fitted to minimise the validation split's negative log-likelihood: T > 1 softens an over-confident
model, T < 1 sharpens an under-confident one, and the argmax (so accuracy, F1, the confusion matrix) never
changes. The temperature travels with the model in the run folder's ``calibration.json`` (`CALIBRATION_FILE`),
which `inference.Predictor` applies and export, merge and push copy. Single-label only: the file's
``per_label`` is reserved for a temperature per label (multi-label), None here.
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
    out = []
    for t in thresholds:
        answered = confidence >= t
        n = int(answered.sum())
        out.append({"threshold": t, "answered": n, "coverage": n / len(y) if len(y) else 0.0,
                    "accuracy": float(correct[answered].mean()) if n else None})  # fmt: skip
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


def summary_line(c: Calibration) -> str:
    """One line for the log: the temperature and the test figures before -> after."""
    return (f"calibration: temperature {c.temperature:.3f} fitted on {c.validation_rows} validation rows; test ECE "
            f"{c.ece_before:.4f} -> {c.ece_after:.4f}, Brier {c.brier_before:.4f} -> {c.brier_after:.4f}")  # fmt: skip


def file_content(c: Calibration) -> dict[str, Any]:
    """What calibration.json holds: enough to apply the temperature without eval.json."""
    return {"method": c.method, "temperature": c.temperature, "per_label": c.per_label,
            "validation_rows": c.validation_rows}  # fmt: skip


def read_temperature(folder: Path) -> float | None:
    """The temperature in `folder`'s calibration.json; None when there is none (a run from before calibration,
    or one trained without validation rows)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (ValueError, KeyError, TypeError) as e:
        raise StudioError(f"{path} holds no temperature ({e}); delete it to predict with raw probabilities") from None
    if not (math.isfinite(value) and value > 0):
        raise StudioError(f"{path}: temperature {value} is not a positive number; delete the file to predict with "
                          "raw probabilities")  # fmt: skip
    return value


def check_threshold(value: Any, name: str = "--min-confidence") -> float:
    """`value` as a confidence threshold in [0, 1], or a StudioError saying what to give."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise StudioError(f"{name}: {value} is outside [0, 1]; give the lowest top-class probability to answer "
                          "with, e.g. 0.8 (below it the answer is 'unsure')")  # fmt: skip
    return number
