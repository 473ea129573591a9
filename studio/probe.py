"""The probe: trains a few real steps of a config on this device and measures the peak beside the estimate.

It trains 3 steps with the longest possible batch (texts padded to max_length) in a throw-away runs folder, so a
user can trust the number before a long run.
"""

from __future__ import annotations

import csv
import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from studio.config import RunConfig
from studio.errors import StudioError
from studio.hardware import detect
from studio.memory import MemoryEstimate, estimate

CPU_RUN_GROWTH = (
    "a whole run's RSS grows past its first steps as the heap fragments (3-16% more from 12 steps to the end, "
    "measured): the estimate counts that growth, the probe's steps do not show it"
)
"""What a probe on a CPU cannot see, said beside its figure by the page and the CLI (benchmarks/results/cpu_memory)."""


@dataclass(frozen=True)
class ProbeResult:
    measured_mb: float
    measured_kind: str
    """cuda_device (torch's peak reserve + the CUDA context: what the estimate counts) or process_rss (CPU)."""
    estimate: MemoryEstimate
    seconds: float
    steps: int
    largest_batch: int | None
    """The estimate's largest batch, rescaled by measured / estimated."""

    @property
    def error_pct(self) -> float:
        return 100 * (self.estimate.total_mb - self.measured_mb) / self.measured_mb


def probe(config: RunConfig, num_labels: int = 2, steps: int = 3) -> ProbeResult:
    """Train `steps` steps of `config` on this device with full-length batches; measure the peak.

    Nothing is added to the user's runs: the probe trains in a temporary runs folder, deleted after.

    Raises:
        StudioError: the config cannot be built or the probe run failed (its message says why, e.g. OOM).
    """
    from studio.registry import Registry
    from studio.training import Run

    device = detect()
    est = estimate(config, num_labels, device)
    work = Path(tempfile.mkdtemp(prefix="studio-probe-"))
    try:
        # enough rows for `steps` full batches, and for a stratified 80/10/10 split of num_labels classes
        rows = max(math.ceil(config.train.batch_size * config.train.grad_accum * steps / 0.8) + 1, 20 * num_labels)
        data = _long_texts(work / "probe.csv", rows, num_labels, config.data.max_length)
        probe_config = config.with_overrides([
            f"data.source={data}", "data.splits=ratio", "data.split_ratios=[0.8, 0.1, 0.1]", "data.balance=null",
            "data.max_samples=null", "data.max_train_samples=null", "data.text_column=text", "data.label_column=label",
            f"train.max_steps={steps}", "train.eval_strategy=no", "train.early_stopping_patience=null",
            "train.report_to=[]", "train.mlflow=off", f"train.eval_batch_size={config.train.batch_size}", "name=probe",
        ])  # fmt: skip
        t0 = time.time()
        result = Run(probe_config, Registry(work / "runs")).execute()
        if result.status != "completed":
            raise StudioError(f"the probe could not train: {result.message}")
        assert result.summary is not None  # a completed run has its results
        peak, kind = result.summary.efficiency.measured_peak()
        measured, kind = float(peak), str(kind)  # a completed run always measured its peak
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = measured / est.total_mb if est.total_mb else 1.0
    largest = None
    if est.largest_batch:  # the estimate's largest batch, corrected by how far off it was here
        largest = max(1, int(est.largest_batch / ratio)) if measured <= device.free_mb else None
    return ProbeResult(measured, kind, est, time.time() - t0, steps, largest)


def _long_texts(path: Path, rows: int, num_labels: int, max_length: int) -> Path:
    """Texts of ~2 x max_length words, so every batch is padded to max_length: the longest batch."""
    words = [f"w{i}" for i in range(5000)] + ["the", "film", "was", "good", "bad", "and", "very"]
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(rows):
            w.writerow([" ".join(rng.choices(words, k=2 * max_length)), f"class{i % num_labels}"])
    return path
