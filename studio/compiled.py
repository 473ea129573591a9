"""Which models and shapes this machine has compiled before: what lets fast compile short runs too.

torch.compile's cost depends on inductor's cache. Compiled per layer (accelerate's regional compilation, what
`hf_trainer.compile_cached` turns on), bert-base LoRA at fast's batch of 128 x 256 tokens on an H200 paid ~11 s
with the cache cold and nothing measurable with it warm, against a steady rate up 24-28%
(benchmarks/results/train_speed/h200_16000x3_regional). A run cannot ask inductor whether its graphs are cached
(the cache is keyed on the traced graphs, known only once traced), so the studio keeps its own record: after a
compiled run has trained, `remember` writes the shape it trained in `<cache_dir>/inductor/compiled.json`, and the
speed plan asks `compiled_before` for the next run. The key holds what changes the traced graphs (the model, the
method and its adapter's shape, the per-device batch, the length bucket, the precision and the memory savers) and
what makes inductor's cache another one (GPU and torch version). A cache emptied by hand only makes the next run
pay the cold compile once.

Written here rather than taken from torch: inductor's own caches answer "is this graph cached" only for a traced
graph, after the tracing this record exists to decide on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from studio.config import RunConfig
from studio.hardware import Device

ENV = "TORCHINDUCTOR_CACHE_DIR"
FILE = "compiled.json"
KEEP = 200
"""Most shapes remembered (the oldest go first): a record, not a second cache."""


def inductor_dir() -> Path:
    """Where inductor's caches go: TORCHINDUCTOR_CACHE_DIR as the user set it, else `<cache_dir>/inductor`, which
    outlives /tmp's cleaning. torch sets the variable itself, to its own /tmp default, as soon as transformers
    imports a model class (torch 2.13, transformers 5.24): a value equal to that default counts as not set."""
    from studio.gguf import cache_dir

    set_to = os.environ.get(ENV)
    if set_to:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # torch is imported when it is set

        if os.path.abspath(set_to) != os.path.abspath(default_cache_dir()):
            return Path(set_to)
    return cache_dir() / "inductor"


def record_path() -> Path:
    return inductor_dir() / FILE


def key(config: RunConfig, device: Device) -> str:
    """What a compiled run's graphs depend on, as a short hash."""
    from importlib.metadata import version

    t, m = config.train, config.method
    parts = {
        "model": config.model.name,
        "method": m.name,
        "r": m.r,
        "placement": m.placement,
        "targets": list(m.target_modules) if m.target_modules else None,
        "batch": t.batch_size,
        "max_length": config.data.max_length,
        "precision": t.precision,
        "half_activations": t.half_activations,
        "checkpointing": [t.gradient_checkpointing, config.reentrant_checkpointing],
        "gpu": device.name,
        "torch": version("torch"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read(path: Path) -> list[str]:
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # none yet, or unreadable: every run compiles cold until one is written again
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def compiled_before(config: RunConfig, device: Device) -> bool:
    return key(config, device) in _read(record_path())


def remember(config: RunConfig, device: Device) -> None:
    """Record that `config` trained compiled on `device` (a failure to write only costs the next run its
    warm start)."""
    path = record_path()
    entry = key(config, device)
    keys = [k for k in _read(path) if k != entry] + [entry]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(keys[-KEEP:]), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass
