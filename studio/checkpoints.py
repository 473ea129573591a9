"""A run's resumable checkpoints (train.checkpoint_steps): which one a resume can start from."""

from __future__ import annotations

import json
from pathlib import Path


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run: its trainer_state.json, which the Trainer writes after the
    weights, optimizer, scheduler and random states, is there and whole. A process killed while writing one
    leaves a folder without it (or with a cut-off one), which is passed over."""
    folders = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    for folder in reversed(folders):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (folder / "optimizer.pt").is_file():
            return folder
    return None
