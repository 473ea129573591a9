"""Multi-label classification: a sigmoid per label, a decision threshold per label, and the metrics of label sets.

A multi-label model scores each label on its own (sigmoid of its logit; the loss is binary cross-entropy,
`losses.ClassifierLoss`). A text gets every label whose probability reaches that label's threshold. 0.5 is
rarely the best cut for a rare label, so after training each label's threshold is tuned on the validation split
to maximise that label's F1 (`tune_thresholds`); a label with fewer than `MIN_POSITIVES` validation rows has too
few to tune on and takes the global threshold, the one cut that maximises micro-F1 over every label. The
thresholds apply to calibrated probabilities and travel with the model in ``thresholds.json``
(`THRESHOLDS_FILE`), which predict, the playground, file scoring, merge and export read.

scikit-learn computes the metrics; the threshold search is a vectorised grid here (scikit-learn 1.5's
TunedThresholdClassifierCV wants an estimator to refit, and tunes one binary threshold).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.calibration import in_unit_interval, sigmoid_probs
from studio.errors import StudioError

THRESHOLDS_FILE = "thresholds.json"
DEFAULT_THRESHOLD = 0.5
"""The cut while training (live metrics) and for a run without tuned thresholds."""
MIN_POSITIVES = 5
"""A label needs this many positive validation rows to get its own threshold; rarer ones take the global one."""
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
"""Candidate thresholds: 0.01 .. 0.99."""


@dataclass
class Thresholds:
    """Decision thresholds of a multi-label model: one per label (on calibrated probabilities)."""

    per_label: dict[str, float]
    global_threshold: float = DEFAULT_THRESHOLD
    """The micro-F1 cut; what labels too rare to tune take."""
    tuned: list[str] = field(default_factory=list)
    """The labels whose threshold was tuned on their own (the others took the global one)."""
    validation_rows: int = 0
    min_positives: int = MIN_POSITIVES

    def array(self, label_names: list[str]) -> np.ndarray:
        return np.asarray([self.per_label.get(n, self.global_threshold) for n in label_names], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def default(cls, label_names: list[str]) -> Thresholds:
        return cls({n: DEFAULT_THRESHOLD for n in label_names})


def _f1_table(probs: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) of every label at every grid threshold: arrays of shape (len(grid), k)."""
    tp, fp, fn = (np.zeros((len(grid), y.shape[1])) for _ in range(3))
    positive = y.astype(bool)
    for g, t in enumerate(grid):  # one pass per threshold keeps memory at one (n, k) mask
        predicted = probs >= t
        tp[g] = (predicted & positive).sum(axis=0)
        fp[g] = (predicted & ~positive).sum(axis=0)
        fn[g] = (~predicted & positive).sum(axis=0)
    return tp, fp, fn


def tune_thresholds(probs: Any, y: Any, label_names: list[str], min_positives: int = MIN_POSITIVES) -> Thresholds:
    """Each label's F1-maximising threshold on `probs` (validation, calibrated) against the multi-hot `y`.

    Ties (a plateau of equal F1) take the middle of the plateau: the cut furthest from both edges of what the
    validation rows allow."""
    p, truth = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if len(truth) == 0:
        return Thresholds.default(label_names)
    tp, fp, fn = _f1_table(p, truth, GRID)
    micro = 2 * tp.sum(1) / np.maximum(2 * tp.sum(1) + fp.sum(1) + fn.sum(1), 1)
    global_t = float(_plateau_middle(micro))
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    positives = truth.sum(axis=0)
    per_label, tuned = {}, []
    for j, name in enumerate(label_names):
        if positives[j] >= min_positives:
            per_label[name] = float(_plateau_middle(f1[:, j]))
            tuned.append(name)
        else:
            per_label[name] = global_t
    return Thresholds(per_label, global_t, tuned, int(len(truth)), min_positives)


def _plateau_middle(scores: np.ndarray) -> float:
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(GRID[best[len(best) // 2]])


def decide(probs: Any, thresholds: np.ndarray) -> np.ndarray:
    """The 0/1 label matrix: each probability against its label's threshold."""
    return (np.asarray(probs, dtype=np.float64) >= thresholds).astype(np.int64)


def metrics(y: Any, probs: Any, thresholds: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """Micro / macro / weighted F1, subset accuracy (``accuracy``: the share of rows whose label set is exactly
    right), Hamming loss, and macro ROC-AUC and average precision (over the labels that have both positive and
    negative rows), plus each label's F1 (``f1/<label>``)."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    truth, p = np.asarray(y, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    pred = decide(p, thresholds)
    out = {
        "accuracy": float(accuracy_score(truth, pred)),
        "f1_micro": float(f1_score(truth, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(truth, pred, average="weighted", zero_division=0)),
        "hamming_loss": float(hamming_loss(truth, pred)),
        **_ranking_scores(truth, p),
    }
    per_label = f1_score(truth, pred, average=None, zero_division=0)
    out.update({f"f1/{name}": float(v) for name, v in zip(label_names, per_label, strict=True)})
    return out


def _ranking_scores(truth: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Macro ROC-AUC and average precision over the labels with both classes present (None-free: NaN if none)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    both = [j for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < len(truth)]
    if not both:
        return {"roc_auc_macro": math.nan, "ap_macro": math.nan}
    return {
        "roc_auc_macro": float(np.mean([roc_auc_score(truth[:, j], p[:, j]) for j in both])),
        "ap_macro": float(np.mean([average_precision_score(truth[:, j], p[:, j]) for j in both])),
    }


def full_report(y: Any, probs: Any, thresholds: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """A split's report (the single-label `metrics.full_report`'s shape): the metrics above, the row count, and
    per label precision / recall / F1 / support / threshold. No confusion matrix: labels are not exclusive."""
    from sklearn.metrics import precision_recall_fscore_support

    truth = np.asarray(y, dtype=np.int64)
    pred = decide(probs, thresholds)
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    scores = {k: v for k, v in metrics(truth, probs, thresholds, label_names).items() if not k.startswith("f1/")}
    per_class = {
        name: {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "support": int(support[j]),
            "threshold": float(thresholds[j]),
        }  # fmt: skip
        for j, name in enumerate(label_names)
    }
    return {**scores, "task": "multi_label", "n": int(len(truth)), "confusion_matrix": [], "per_class": per_class}


def make_compute_metrics(label_names: list[str]):
    """The Trainer's compute_metrics for a multi-label run: `metrics` at the default threshold (0.5)."""
    cut = np.full(len(label_names), DEFAULT_THRESHOLD)

    def compute(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return metrics(np.asarray(eval_pred.label_ids), sigmoid_probs(logits), cut, label_names)

    return compute


# ---- the file that travels with the model --------------------------------------------------------------------
def write(folder: Path, thresholds: Thresholds) -> None:
    from studio.registry import write_json_atomic

    write_json_atomic(Path(folder) / THRESHOLDS_FILE, thresholds.to_dict())


def read(folder: Path, label_names: list[str]) -> Thresholds | None:
    """The thresholds in `folder`'s thresholds.json (None when there is none), every value checked."""
    path = Path(folder) / THRESHOLDS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = Thresholds(**{k: v for k, v in data.items() if k in Thresholds.__dataclass_fields__})
        values = {**found.per_label, "global_threshold": found.global_threshold}
        for name, value in values.items():
            check_threshold(value, f"{path.name}: the threshold of '{name}'")
    except (ValueError, TypeError, AttributeError) as e:
        raise StudioError(f"{path} is not a thresholds file ({e}); delete it to predict at 0.5") from None
    unknown = sorted(set(found.per_label) - set(label_names))
    if unknown:
        raise StudioError(f"{path}: thresholds for labels the model does not have ({', '.join(unknown[:5])}); "
                          "delete the file to predict at 0.5")  # fmt: skip
    return found


def check_threshold(value: Any, name: str = "--threshold") -> float:
    """`value` as a decision threshold in [0, 1], or a StudioError saying what to give."""
    return in_unit_interval(value, name, "a label is given when its probability reaches its threshold, e.g. 0.5")


def summary_line(t: Thresholds) -> str:
    values = sorted(t.per_label.values())
    return (f"thresholds tuned on {t.validation_rows} validation rows: {len(t.tuned)} of {len(t.per_label)} labels "
            f"on their own (the rest, under {t.min_positives} positives, at the micro-F1 cut {t.global_threshold:.2f});"
            f" range {values[0]:.2f}-{values[-1]:.2f}")  # fmt: skip
