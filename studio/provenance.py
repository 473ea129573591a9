"""What it takes to train a run again: config hash, seed, data fingerprint, library versions, device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from studio.config import RunConfig
from studio.results import Reproducibility

if TYPE_CHECKING:
    from studio.speed_plan import Plan

PACKAGES = ("fine-tune-studio", "torch", "transformers", "peft", "datasets", "accelerate", "bitsandbytes")


def reproducibility(
    config: RunConfig, data_fingerprint: str, run_dir: Path | None, plan: Plan | None
) -> Reproducibility:
    import torch

    from studio import __version__

    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["studio"] = __version__
    if torch.cuda.is_available():
        device = {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    else:
        device = {"kind": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:  # pinned (e.g. one run per GPU in a grid)
        device["visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return Reproducibility(
        config_hash=config.config_hash(),
        seed=config.seed,
        data_fingerprint=data_fingerprint,
        versions=versions,
        device=device,
        python=platform.python_version(),
        command=f"python -m studio train {(run_dir or Path('.')) / 'config.yaml'}",
        speed=plan.to_dict() if plan is not None else None,
    )
