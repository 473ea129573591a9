"""Classification metrics (scikit-learn) and efficiency figures of a run."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(labels: np.ndarray, preds: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """Accuracy, macro/weighted F1 and the F1 of each class (keys ``f1/<label>``)."""
    ids = list(range(len(label_names)))
    out = {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, preds, labels=ids, average="weighted", zero_division=0)),
    }
    per_class = f1_score(labels, preds, labels=ids, average=None, zero_division=0)
    out.update({f"f1/{name}": float(v) for name, v in zip(label_names, per_class, strict=True)})
    return out


def make_compute_metrics(label_names: list[str]):
    """The Trainer's compute_metrics for validation during training: the metrics above and what the health
    rules read (studio/health.py): the share of predictions per class (``predicted/<label>``) and the share of
    the most frequent true label (``majority_share``)."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        labels, preds = np.asarray(eval_pred.label_ids), np.argmax(logits, axis=-1)
        return {**classification_metrics(labels, preds, label_names), **prediction_shares(labels, preds, label_names)}

    return compute


def prediction_shares(labels: np.ndarray, preds: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """``predicted/<label>``: the share of predictions on each class; ``majority_share``: the largest share
    of one class among the true labels."""
    k, n = len(label_names), max(len(preds), 1)
    predicted = np.bincount(np.asarray(preds, dtype=np.int64), minlength=k)[:k] / n
    majority = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k).max() / n if len(labels) else 0.0
    return {**{f"predicted/{name}": float(v) for name, v in zip(label_names, predicted, strict=True)},
            "majority_share": float(majority)}  # fmt: skip


def full_report(labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Test-set report: the metrics above, confusion matrix (rows = true) and per-class precision/recall."""
    preds = np.argmax(logits, axis=-1)
    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    return {
        **{k: v for k, v in classification_metrics(labels, preds, label_names).items() if not k.startswith("f1/")},
        "n": int(len(labels)),
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
        },
    }


class PeakMemory:
    """Peak memory of training: CUDA's own counter on a GPU, else the process RSS sampled on each step.

    RSS has no resettable peak counter (ru_maxrss covers the whole process life), hence the sampling.
    """

    def __init__(self) -> None:
        import psutil
        import torch

        self._cuda = torch.cuda.is_available()
        self._proc = psutil.Process(os.getpid())
        self._lock = threading.Lock()
        self.peak_rss = 0
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        self.sample()

    def sample(self) -> None:
        rss = self._proc.memory_info().rss
        with self._lock:
            self.peak_rss = max(self.peak_rss, rss)

    def result(self) -> dict[str, Any]:
        import torch

        self.sample()
        out: dict[str, Any] = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if self._cuda:
            out["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            out["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
            out["peak_memory_mb"], out["peak_memory_kind"] = out["peak_allocated_mb"], "cuda_allocated"
            # what must fit on the device (nvidia-smi's figure): the allocator's reserve plus the CUDA context.
            # NVML counts the context as this process's memory beyond torch's reserve, read once at the end
            # (the context only grows as kernels load); where NVML cannot see the process, the measured constant.
            from studio.hardware import process_gpu_mb
            from studio.memory import CUDA_CONTEXT_MB

            device_mb = process_gpu_mb(torch.cuda.current_device())
            context = CUDA_CONTEXT_MB if device_mb is None else device_mb - torch.cuda.memory_reserved() / 2**20
            out["peak_device_mb"] = round(out["peak_reserved_mb"] + context, 1)
        else:
            out["peak_memory_mb"], out["peak_memory_kind"] = out["peak_rss_mb"], "process_rss"
        return out
