"""What a user reads when a run crashes: one line, with a way forward where there is one."""

from __future__ import annotations

import logging
import traceback

from studio.config import RunConfig
from studio.errors import StudioError

log = logging.getLogger(__name__)


def explain_failure(e: BaseException, config: RunConfig, num_labels: int = 2) -> str:
    """One readable line for an unexpected crash, with a way forward where there is one.

    Out of memory: the estimate for this config beside the memory free now (after cleanup freed the run's),
    then the changes the estimate says would fit (`memory_advice.suggestions`, as `--set` overrides), or, where the
    estimate thought it fit (other processes, fragmentation), the usual levers.
    """
    import torch

    if isinstance(e, torch.OutOfMemoryError | MemoryError):
        where = "GPU" if isinstance(e, torch.OutOfMemoryError) else "CPU"
        head = f"out of {where} memory during training"
        items = []
        try:
            from studio import hardware
            from studio.memory import estimate
            from studio.memory_advice import suggestions

            est = estimate(config, num_labels, hardware.detect())
            head += f" (estimated {est.total_mb:,.0f} MB; {est.device.free_mb:,.0f} MB free now)"
            items = suggestions(config, num_labels, est.device)[:3]
        except Exception:  # advice is best effort: the failure itself must still be reported
            log.debug("no estimate for the out-of-memory advice", exc_info=True)
        if items:
            fixes = "; ".join(f"{s.change} (--set {' --set '.join(s.overrides)})" for s in items)
            return f"{head}; any one of these fits: {fixes}"
        t = config.train
        tips = [f"lower train.batch_size (now {t.batch_size}) and raise train.grad_accum"]
        if not t.gradient_checkpointing:
            tips.append("turn on train.gradient_checkpointing")
        if config.method.spec.leaner:
            tips.append(f"use method {config.method.spec.leaner}")
        tips.append(f"shorten data.max_length (now {config.data.max_length})")
        return f"{head}; try: " + "; ".join(tips)
    if isinstance(e, StudioError):
        return str(e)
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return f"{type(e).__name__}: {first} (details in log.txt)"


def without_frames(e: BaseException) -> BaseException:
    """`e` (and the exceptions it chains) with its traceback's frames cleared and dropped. A traceback keeps
    every frame's locals alive, the model and the batch's activations among them, so a failed run would keep
    its GPU memory until a later garbage collection, and an out-of-memory's advice would read the memory free
    before the run's was given back (found by benchmarks/oom_check.py on an H100: 5.9 GB still held)."""
    seen: set[int] = set()
    chained: BaseException | None = e
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        if chained.__traceback__ is not None:
            traceback.clear_frames(chained.__traceback__)
            chained.__traceback__ = None
        chained = chained.__cause__ or chained.__context__
    return e
