"""Settings that fit: what to change when a config does not fit, and a probe that measures a few real steps.

`suggestions` re-estimates the config with one change at a time (gradient checkpointing, a smaller batch
with gradient accumulation keeping the effective batch, an 8-bit optimizer, QLoRA, a shorter max length)
and keeps the ones that fit, smallest first. `probe` trains 3 steps of the config on this device with its
longest possible batch (texts padded to max_length) in a throw-away runs folder and reports the measured
peak beside the estimate, so a user can trust the number before a long run.
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
from studio.hardware import Device, detect
from studio.memory import MemoryEstimate, estimate
from studio.methods import METHODS


@dataclass(frozen=True)
class Suggestion:
    change: str
    """What to change, in words."""
    overrides: list[str]
    """The same as `--set` overrides (also what the UI applies)."""
    total_mb: float


def suggestions(config: RunConfig, num_labels: int = 2, device: Device | None = None) -> list[Suggestion]:
    """Single changes that make `config` fit `device`, the least costly first; [] when it fits already.

    The order: the largest micro-batch that fits with accumulation (the same training, only slower steps),
    gradient checkpointing (~30% slower), the 8-bit optimizer, the 4-bit base, the longest max length that
    fits (texts are cut). Of the batches and the lengths only the largest that fits is offered: batch 1 x
    accumulation 128 fits too, but nobody should train like that when 16 x 8 does."""
    device = device or detect()
    if estimate(config, num_labels, device).fits:
        return []
    t, m = config.train, config.method
    candidates: list[tuple[str, list[str]]] = []
    for batch in (t.batch_size // 2, t.batch_size // 4, t.batch_size // 8, 1):
        if 1 <= batch < t.batch_size:
            accum = t.grad_accum * math.ceil(t.batch_size / batch)
            candidates.append((f"batch {batch} x grad accumulation {accum} (same effective batch)",
                               [f"train.batch_size={batch}", f"train.grad_accum={accum}"]))  # fmt: skip
    if not t.gradient_checkpointing:
        candidates.append(("turn on gradient checkpointing (~30% slower)", ["train.gradient_checkpointing=true"]))
    if t.optimizer in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit"):
        candidates.append(("8-bit paged AdamW (bitsandbytes)", ["train.optimizer=paged_adamw_8bit"]))
    if m.spec.leaner:  # at its leanest: a 4-bit base
        leaner = METHODS[m.spec.leaner]
        candidates.append((f"{leaner.label}: {leaner.summary}", [f"method.name={leaner.name}", "method.bits=4"]))
    length = config.data.max_length
    while length > 64:
        length //= 2
        candidates.append((f"max length {length} tokens (longer texts are cut)", [f"data.max_length={length}"]))
    out, combined, changes, best = [], [], [], estimate(config, num_labels, device).total_mb
    for change, overrides in candidates:
        try:
            e = estimate(config.with_overrides(overrides), num_labels, device)
        except StudioError:
            continue
        family = overrides[0].split("=")[0]  # one batch size, one max length: the first (largest) that fits
        if e.fits and not any(o.overrides[0].split("=")[0] == family for o in out):
            out.append(Suggestion(change, overrides, e.total_mb))
    if not out:  # no single change is enough: combine them, in the order above, keeping those that help
        for change, overrides in candidates:
            keys = {o.split("=")[0] for o in overrides}
            trial = [o for o in combined if o.split("=")[0] not in keys] + overrides
            try:
                e = estimate(config.with_overrides(trial), num_labels, device)
            except StudioError:
                continue
            if e.total_mb < best:
                combined, best = trial, e.total_mb
                changes = [c for c in changes if not c.startswith(change.split(" ")[0])] + [change]
            if e.fits:
                out.append(Suggestion(" + ".join(changes), combined, e.total_mb))
                break
    return out


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
    from studio.metrics import estimated_peak
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
            "train.report_to=[]", f"train.eval_batch_size={config.train.batch_size}", "name=probe",
        ])  # fmt: skip
        t0 = time.time()
        result = Run(probe_config, Registry(work / "runs")).execute()
        if result.status != "completed":
            raise StudioError(f"the probe could not train: {result.message}")
        peak, kind = estimated_peak(result.summary["efficiency"])
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


def format_suggestions(items: list[Suggestion]) -> str:
    if not items:
        return ""
    lines = ["It does not fit; any one of these would:"]
    lines += [f"  - {s.change}: ~{s.total_mb / 1024:.2f} GB  (--set {' --set '.join(s.overrides)})" for s in items]
    return "\n".join(lines)
