"""A finished run's results (its folder's ``eval.json``), as typed data read by attribute everywhere.

`RunSummary.from_dict` reads every version the studio has written; `to_dict` writes the current one.
Version 1 (before the field existed) had no "version" key and an empty dict for a run without validation.
A key this code does not know is kept (`extra`) and written back, so an older studio reading a newer run
folder loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

RESULTS_VERSION = 2
"""Version of eval.json this code writes. 1: no "version" key."""

T = TypeVar("T")
MULTI_LABEL_SCALARS = ("f1_micro", "hamming_loss", "roc_auc_macro", "ap_macro")


def _from_dict(cls: type[T], values: dict[str, Any] | None, /, **nested: Any) -> T:
    """`cls` from the keys of `values` it has as fields; the others go to its `extra` field (if it has one).
    `nested` gives fields already converted (nested dataclasses)."""
    data = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    if "extra" in names:
        known["extra"] = {k: v for k, v in data.items() if k not in names}
    return cls(**{**known, **nested})


def _to_dict(obj: Any, skip_none: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "extra":
            out.update(value)
        elif not (f.name in skip_none and value is None):
            out[f.name] = value
    return out


@dataclass
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int
    threshold: float | None = None
    """Multi-label: the label's decision threshold the scores were taken at (None for single-label classes)."""

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, skip_none=("threshold",))


@dataclass
class SplitMetrics:
    """Metrics of one split (`metrics.full_report`): confusion matrix rows are the true labels."""

    accuracy: float
    f1_macro: float
    f1_weighted: float
    n: int
    confusion_matrix: list[list[int]] = field(default_factory=list)
    per_class: dict[str, ClassScores] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitMetrics:
        per_class = {name: _from_dict(ClassScores, v) for name, v in (data.get("per_class") or {}).items()}
        return _from_dict(cls, data, per_class=per_class)

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["per_class"] = {name: v.to_dict() for name, v in self.per_class.items()}
        return out

    @property
    def multi_label(self) -> bool:
        return self.extra.get("task") == "multi_label"

    def scalars(self) -> dict[str, float]:
        """The headline figures (what the test `eval` event carries); multi-label adds its own
        (`MULTI_LABEL_SCALARS`; `accuracy` is then the exact-match share)."""
        out = {"accuracy": self.accuracy, "f1_macro": self.f1_macro, "f1_weighted": self.f1_weighted}
        out.update({k: self.extra[k] for k in MULTI_LABEL_SCALARS if k in self.extra})
        return out

    def headline(self) -> str:
        """One phrase of the figure a user reads first: accuracy, or macro-F1 for a multi-label task."""
        if self.multi_label:
            return (f"test macro-F1 {self.f1_macro:.4f} (micro-F1 {self.extra.get('f1_micro', float('nan')):.4f}, "
                    f"exact match {self.accuracy:.4f})")  # fmt: skip
        return f"test accuracy {self.accuracy:.4f}"


@dataclass
class Efficiency:
    """What the run cost: parameters, time, steps, measured peak memory (`metrics.PeakMemory`)."""

    trainable_params: int
    total_params: int
    trainable_percent: float
    train_seconds: float
    train_samples_per_second: float | None
    total_seconds: float
    steps: int
    epochs: float
    peak_rss_mb: float | None = None
    peak_memory_mb: float | None = None
    peak_memory_kind: str | None = None
    """"cuda_allocated" on a GPU, "process_rss" on a CPU."""
    peak_allocated_mb: float | None = None
    peak_reserved_mb: float | None = None
    peak_device_mb: float | None = None
    """What must fit on the GPU: the allocator's reserve plus the CUDA context (nvidia-smi's figure)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def measured_peak(self) -> tuple[float | None, str | None]:
        """(MB, kind) of the peak in the terms the memory estimate counts: the device figure on a GPU, else the
        peak the run reported (process RSS on a CPU)."""
        if self.peak_device_mb:
            return float(self.peak_device_mb), "cuda_device"
        return (float(self.peak_memory_mb) if self.peak_memory_mb else None), self.peak_memory_kind

    def to_dict(self) -> dict[str, Any]:
        gpu_only = ("peak_allocated_mb", "peak_reserved_mb", "peak_device_mb")
        return _to_dict(self, skip_none=gpu_only)


@dataclass
class MemoryRecord:
    """The estimate the studio shows for this config beside the peak the run measured."""

    estimate_mb: float | None = None
    estimate_parts: dict[str, float] = field(default_factory=dict)
    measured_mb: float | None = None
    measured_kind: str | None = None
    error_pct: float | None = None
    """(estimate - measured) / measured, in percent: positive when the estimate was above the peak."""
    device: str | None = None
    estimate_error: str | None = None
    """Why there is no estimate (an estimate never fails a finished run)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.estimate_error is not None and self.estimate_mb is None:
            return {"estimate_error": self.estimate_error, **self.extra}
        return _to_dict(self, skip_none=("estimate_error",))


@dataclass
class Layout:
    """How the batch was laid out over processes: effective batch = processes x per-device batch x accumulation."""

    processes: int
    per_device_batch: int
    grad_accum: int
    effective_batch: int
    fsdp: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, skip_none=("fsdp",))


@dataclass
class DataReport:
    """The prepared data (`data.PreparedData.report`) with its fingerprint and label names."""

    label_names: list[str]
    fingerprint: str = ""
    source: str = ""
    text_column: str | None = None
    label_column: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Row counts of what was dropped, and any later keys."""

    def to_dict(self) -> dict[str, Any]:
        head = {k: getattr(self, k) for k in ("source", "text_column", "label_column")}
        return {**head, **self.extra, "rows": self.rows, "notes": self.notes, "fingerprint": self.fingerprint,
                "label_names": self.label_names}  # fmt: skip


@dataclass
class Reproducibility:
    """What it takes to train the same run again: config hash, seed, data fingerprint, versions, device."""

    config_hash: str = ""
    seed: int | None = None
    data_fingerprint: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    python: str = ""
    command: str = ""
    speed: dict[str, Any] | None = None
    """The speed profile's plan (`speed_plan.Plan.to_dict`): profile, note, each choice."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


HealthFlagName = Literal["collapsed", "diverged", "untrained"]
"""collapsed: the run predicts one class (or a few) whatever the input; diverged: its loss went NaN/inf or
blew up, or its gradients exploded; untrained: after hundreds of steps it scores no better on the test split
than always answering the most frequent class. The rules are in studio/health.py."""


@dataclass(frozen=True)
class Health:
    """Whether a run learned: a flag (None: nothing wrong was seen), why, and what to change."""

    flag: HealthFlagName | None = None
    reason: str = ""
    """What was seen: "predicts only 'positive' at 3 evaluations in a row (steps 40-120)"."""
    advice: str = ""
    """What to change: "the learning rate 1e-3 is likely too high for LoRA on this model; try 2e-4"."""
    step: int | None = None
    """The optimizer step at which the flag was raised (None after the fact)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Health | None:
        if not isinstance(data, dict):
            return None
        flag = data.get("flag")
        return cls(flag if flag in get_args(HealthFlagName) else None, str(data.get("reason") or ""),
                   str(data.get("advice") or ""), data.get("step"))  # fmt: skip


@dataclass
class Calibration:
    """Temperature scaling fitted after training (studio/calibration.py): probabilities = softmax(logits / T).

    One temperature for a single-label classifier, fitted on the validation split; the figures before / after
    are on the test split. `per_label` is reserved for a temperature per label (multi-label), None here. The
    argmax, and so every raw test metric, is the same at any temperature."""

    temperature: float
    validation_rows: int = 0
    test_rows: int = 0
    ece_before: float | None = None
    """Expected calibration error: 15 equal-width bins over the top-class confidence (studio/calibration.py)."""
    ece_after: float | None = None
    brier_before: float | None = None
    """Multi-class Brier score: the mean over rows of sum_k (p_k - y_k)^2 (twice sklearn's binary figure)."""
    brier_after: float | None = None
    bins_before: list[dict[str, float]] = field(default_factory=list)
    """The reliability diagram's bins (lower, upper, count, confidence, accuracy), raw probabilities; empty bins
    are left out."""
    bins_after: list[dict[str, float]] = field(default_factory=list)
    coverage: list[dict[str, float | None]] = field(default_factory=list)
    """Calibrated test accuracy against coverage: threshold, answered (rows), coverage (share), accuracy (of the
    answered rows; None when none is)."""
    per_label: dict[str, float] | None = None
    method: str = "temperature"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, skip_none=("per_label",))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration | None:
        if not isinstance(data, dict) or "temperature" not in data:
            return None
        return _from_dict(cls, data)


@dataclass
class RunSummary:
    """A finished run's eval.json: written last, so a folder that has it is complete."""

    test: SplitMetrics
    efficiency: Efficiency
    data: DataReport
    reproducibility: Reproducibility
    memory: MemoryRecord = field(default_factory=MemoryRecord)
    run_id: str | None = None
    status: str | None = None
    validation: SplitMetrics | None = None
    """None when the run trained without validation."""
    best_checkpoint_step: int | None = None
    distributed: Layout | None = None
    health: Health | None = None
    """Whether the run learned (studio/health.py); None in folders written before the check existed."""
    calibration: Calibration | None = None
    """Temperature scaling and its test figures; None in older folders and when it was skipped (no validation)."""
    version: int = RESULTS_VERSION
    """The version this summary was written in (read from eval.json; to_dict always writes the current one)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return self.data.label_names

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        version = int(data.get("version", 1))
        if version > RESULTS_VERSION:  # written by a newer studio: read what this one knows
            version = RESULTS_VERSION
        validation = data.get("validation") or None  # v1 wrote {} for none
        layout = data.get("distributed")
        return _from_dict(
            cls,
            data,
            version=version,
            test=SplitMetrics.from_dict(data["test"]),
            validation=SplitMetrics.from_dict(validation) if validation else None,
            efficiency=_from_dict(Efficiency, data.get("efficiency")),
            memory=_from_dict(MemoryRecord, data.get("memory")),
            distributed=_from_dict(Layout, layout) if layout else None,
            health=Health.from_dict(data.get("health")),
            calibration=Calibration.from_dict(data.get("calibration")),
            data=_from_dict(DataReport, data.get("data") or {"label_names": []}),
            reproducibility=_from_dict(Reproducibility, data.get("reproducibility")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RESULTS_VERSION,
            "memory": self.memory.to_dict(),
            "run_id": self.run_id,
            "distributed": self.distributed.to_dict() if self.distributed else None,
            "test": self.test.to_dict(),
            "validation": self.validation.to_dict() if self.validation else {},
            "best_checkpoint_step": self.best_checkpoint_step,
            "efficiency": self.efficiency.to_dict(),
            "data": self.data.to_dict(),
            "reproducibility": self.reproducibility.to_dict(),
            "status": self.status,
            **({"health": self.health.to_dict()} if self.health is not None else {}),
            **({"calibration": self.calibration.to_dict()} if self.calibration is not None else {}),
            **self.extra,
        }

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
