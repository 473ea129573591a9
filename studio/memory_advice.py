"""What to change when a config does not fit: single changes that fit, the least costly first.

`suggestions` re-estimates the config with one change at a time (a smaller batch with gradient accumulation
keeping the effective batch, gradient checkpointing, an 8-bit optimizer, QLoRA, a shorter max length) and keeps
the ones that fit, smallest first; when no single change is enough, a combination.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from studio.config import RunConfig
from studio.errors import StudioError
from studio.hardware import Device, detect
from studio.memory import estimate
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


def format_suggestions(items: list[Suggestion]) -> str:
    if not items:
        return ""
    lines = ["It does not fit; any one of these would:"]
    lines += [f"  - {s.change}: ~{s.total_mb / 1024:.2f} GB  (--set {' --set '.join(s.overrides)})" for s in items]
    return "\n".join(lines)
