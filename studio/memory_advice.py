"""What to change when a config does not fit: single changes that fit, the fastest to train first.

`suggestions` re-estimates the config with one change at a time (the largest batch that fits with gradient
accumulation keeping the effective batch, gradient checkpointing, an 8-bit optimizer, QLoRA, a shorter max
length) and keeps the ones that fit, in that order (the expected speed of the training they give); when no single
change is enough, a combination. The CLI prints them as `--set` overrides, the UI as Apply buttons.
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
    """Single changes that make `config` fit `device`, the fastest to train first; [] when it fits already.

    The order (expected speed): the largest micro-batch that fits with accumulation (the same training, only
    more micro-batches a step), gradient checkpointing (~30% slower), the 8-bit optimizer, the 4-bit base, the
    longest max length that fits (texts are cut). Of the batches and the lengths only the largest that fits is
    offered: batch 1 x accumulation 4096 fits too, but nobody should train like that when 128 x 32 does."""
    device = device or detect()
    e = estimate(config, num_labels, device)
    if e.fits:
        return []
    t, m = config.train, config.method
    candidates: list[tuple[str, list[str]]] = []
    for batch in _smaller_batches(t.batch_size, t.effective_batch_size, e.largest_batch):
        accum = math.ceil(t.effective_batch_size / batch)
        candidates.append((f"batch {batch} x grad accumulation {accum} (the same effective batch, {batch * accum})",
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
    out, combined, changes, best = [], [], [], e.total_mb
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


def _smaller_batches(batch: int, effective: int, largest: int | None) -> list[int]:
    """Micro-batches below `batch` to try, the largest first: the three largest divisors of the effective batch
    up to `largest` (the estimate's largest batch that fits), so that accumulation keeps the effective batch
    exactly (246 fits, 4096 asked: 128 x 32), or `largest` itself when no divisor is above half of it; then
    halvings of `batch`, down to 1. The first that fits with its accumulation is offered."""
    tries = []
    if largest and 1 <= largest < batch:  # with accumulation a batch may need a little more: the next ones too
        divisors = [b for b in range(largest, 0, -1) if effective % b == 0][:3]
        tries += [largest] if not divisors or divisors[0] <= largest // 2 else divisors
    tries += [b for b in (batch // 2, batch // 4, batch // 8, 1) if 1 <= b < batch]
    return sorted(set(tries), reverse=True)


def format_suggestions(items: list[Suggestion]) -> str:
    if not items:
        return ""
    lines = ["It does not fit; any one of these would:"]
    lines += [f"  - {s.change}: ~{s.total_mb / 1024:.2f} GB  (--set {' --set '.join(s.overrides)})" for s in items]
    return "\n".join(lines)
