"""The training loss for skewed classes: class weights and focal loss (`train.class_weights`, `train.loss`).

A model's own classification loss is the batch's mean cross-entropy. With `class_weights` or a focal loss the
Trainer gets `compute_loss_func=ClassifierLoss(...)` instead: per example, the cross-entropy (with the run's
label smoothing) times the example's class weight, times (1 - p_t)^gamma for focal loss (Lin et al., "Focal Loss
for Dense Object Detection", 2017; p_t is the model's probability of the true class). PyTorch has weighted
cross-entropy but no focal loss for classification (torchvision's `sigmoid_focal_loss` is the binary,
detection form), so the focal factor is written here; it is one line on top of `F.cross_entropy`.

Weights are relative. `class_weights` resolves them so the average training example weighs 1 (scikit-learn's
"balanced", n / (k x count), already does), so the loss stays on the unweighted loss's scale and the learning
rate, gradient clipping and the health checks (which compare the loss with ln k) mean what they meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from studio.config import TrainConfig
from studio.errors import ConfigError

IMBALANCE_ADVICE_RATIO = 3.0
"""Above this ratio of the largest to the smallest class in train, the studio suggests balanced weights and
macro-F1 as the best-model metric (the issue's threshold: 3:1)."""


def imbalance_ratio(counts: Mapping[str, int]) -> float:
    """The largest class's count over the smallest's (1.0 for balanced data; inf when a class has none)."""
    sizes = list(counts.values())
    if not sizes:
        return 1.0
    return max(sizes) / min(sizes) if min(sizes) > 0 else float("inf")


def imbalance_note(counts: Mapping[str, int], train: TrainConfig) -> str | None:
    """What to say of the training split's imbalance: None below `IMBALANCE_ADVICE_RATIO`."""
    ratio = imbalance_ratio(counts)
    if ratio <= IMBALANCE_ADVICE_RATIO:
        return None
    largest, smallest = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    text = (f"classes are skewed {ratio:.1f}:1 in train ('{largest}' {counts[largest]:,} rows, '{smallest}' "
            f"{counts[smallest]:,})")  # fmt: skip
    tips = []
    if train.class_weights == "none" and train.loss == "cross_entropy":
        tips.append("train.class_weights: balanced (or loss: focal)")
    if train.metric_for_best in ("accuracy", "loss"):
        tips.append("metric_for_best: f1_macro")
    return text + (f"; consider {' and '.join(tips)}" if tips else "")


def class_weights(setting: Any, label_names: list[str], counts: Mapping[str, int]) -> list[float] | None:
    """One weight per label id, scaled so the mean over the training rows is 1; None for `none`.

    Raises:
        ConfigError: a weight names a label the data does not have, or a class has no training rows to weigh.
    """
    if setting == "none":
        return None
    if setting == "balanced":
        empty = [n for n in label_names if not counts.get(n)]
        if empty:
            raise ConfigError("train.class_weights", f"balanced needs every class in train; '{empty[0]}' has no rows")
        raw = [1.0 / counts[n] for n in label_names]
    else:
        unknown = [k for k in setting if k not in label_names]
        if unknown:
            raise ConfigError("train.class_weights", f"'{unknown[0]}' is not a label of this data; its labels: "
                                                     f"{', '.join(label_names)}")  # fmt: skip
        raw = [float(setting.get(n, 1.0)) for n in label_names]
    total = sum(counts.get(n, 0) for n in label_names)
    mean = sum(w * counts.get(n, 0) for w, n in zip(raw, label_names, strict=True)) / total if total else 1.0
    return [w / mean for w in raw]


def pos_weights(setting: Any, label_names: list[str], positives: Mapping[str, int], rows: int) -> list[float] | None:
    """Multi-label: the weight of each label's positive rows in its binary cross-entropy (PyTorch's `pos_weight`);
    balanced = negatives / positives, so a label's positives weigh as much in total as its negatives; a mapping
    gives the weights itself (unnamed labels 1). None for `none`.

    Raises:
        ConfigError: a weight names an unknown label, or balanced meets a label no training row carries.
    """
    if setting == "none":
        return None
    if setting == "balanced":
        empty = [n for n in label_names if not positives.get(n)]
        if empty:
            raise ConfigError(
                "train.class_weights", f"balanced needs every label in train; no row carries '{empty[0]}'"
            )
        return [(rows - positives[n]) / positives[n] for n in label_names]
    unknown = [k for k in setting if k not in label_names]
    if unknown:
        raise ConfigError("train.class_weights", f"'{unknown[0]}' is not a label of this data; its labels: "
                                                 f"{', '.join(label_names)}")  # fmt: skip
    return [float(setting.get(n, 1.0)) for n in label_names]


@dataclass
class ClassifierLoss:
    """The Trainer's `compute_loss_func`: weighted and/or focal cross-entropy over the logits.

    Normalised by the accumulated batch's example count when the Trainer gives it (`num_items_in_batch`: the
    Trainer then neither divides by the accumulation steps nor averages across processes itself), else by the
    batch's size, as the model's own mean loss is."""

    weights: list[float] | None = None
    gamma: float = 0.0
    label_smoothing: float = 0.0
    multi_label: bool = False
    """Binary cross-entropy per label (sigmoid outputs, multi-hot labels); `weights` are then `pos_weight`s."""

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        import torch
        import torch.nn.functional as F

        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        logits = logits.float()
        if self.multi_label:
            return self._binary(logits, labels.float(), num_items_in_batch)
        weight = torch.tensor(self.weights, device=logits.device) if self.weights else None
        ce = F.cross_entropy(logits, labels, reduction="none", label_smoothing=self.label_smoothing)
        per_example = ce
        if self.gamma:
            p_true = torch.softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
            per_example = (1 - p_true).pow(self.gamma) * ce
        if weight is not None:
            per_example = per_example * weight[labels]
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return per_example.sum() / count

    def _binary(self, logits: Any, targets: Any, num_items_in_batch: Any) -> Any:
        """Each label's binary cross-entropy (smoothed targets y(1 - e) + e/2), times (1 - p_t)^gamma for focal
        loss: the mean over every (row, label), as `BCEWithLogitsLoss` averages."""
        import torch
        import torch.nn.functional as F

        smooth = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        weight = torch.tensor(self.weights, device=logits.device) if self.weights else None
        bce = F.binary_cross_entropy_with_logits(logits, smooth, pos_weight=weight, reduction="none")
        if self.gamma:
            p = torch.sigmoid(logits)
            p_true = p * targets + (1 - p) * (1 - targets)
            bce = (1 - p_true).pow(self.gamma) * bce
        # the Trainer counts label entries that are not -100: rows x labels here, so this is the mean over them
        count = num_items_in_batch if num_items_in_batch is not None else targets.numel()
        return bce.sum() / count


def loss_for(
    train: TrainConfig, label_names: list[str], counts: Mapping[str, int], multi_label: bool = False, rows: int = 0
) -> ClassifierLoss | None:
    """The custom loss the config asks for, or None: the model's own (plain cross-entropy, label smoothing by
    the Trainer). Multi-label runs always get this one (binary cross-entropy; `counts` are then each label's
    positive rows among `rows`)."""
    gamma = train.focal_gamma if train.loss == "focal" else 0.0
    if multi_label:
        weights = pos_weights(train.class_weights, label_names, counts, rows)
        return ClassifierLoss(weights, gamma, train.label_smoothing, multi_label=True)
    weights = class_weights(train.class_weights, label_names, counts)
    if weights is None and train.loss == "cross_entropy":
        return None
    return ClassifierLoss(weights, gamma, train.label_smoothing)
