"""Crash and resume: a training process killed with SIGKILL mid-run is shown `interrupted`, and `resume`
continues it from its last complete checkpoint to the metrics of the same run left uninterrupted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_training import events_of, tiny_config

from studio.checkpoints import last_checkpoint
from studio.cli import main
from studio.errors import StudioError
from studio.registry import Registry
from studio.training import Run

ROOT = Path(__file__).resolve().parents[1]

# Trains the config in a process of its own and SIGKILLs that process at the start of micro-batch N: no
# cleanup, no `finally`, as when a laptop's lid closes or the OOM killer strikes.
KILLED_AT = """
import os, signal, sys
from transformers import Trainer
from studio.config import RunConfig
from studio.registry import Registry
from studio.training import Run

real, calls = Trainer.training_step, []

def step(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

Trainer.training_step = step
Run(RunConfig.from_yaml(sys.argv[1]), Registry(sys.argv[2])).execute()
"""


def config_for(tiny_model_dir):
    return tiny_config(tiny_model_dir("bert"), "lora", max_steps=10, checkpoint_steps=3, eval_strategy="steps",
                       eval_steps=3, logging_steps=1)  # fmt: skip


def test_a_killed_run_resumes_to_the_uninterrupted_metrics(tiny_model_dir, tmp_path, capsys):
    config = config_for(tiny_model_dir)
    whole = Run(config, Registry(tmp_path / "whole")).execute()  # the same run, never interrupted
    assert whole.status == "completed", whole.message

    registry = Registry(tmp_path / "runs")
    preset = tmp_path / "run.yaml"
    config.to_yaml(preset)
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, str(preset), str(registry.runs_dir), "8"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    (record,) = registry.list()
    assert record.status == "interrupted"  # its process is gone: shown so, not `running`
    checkpoint = last_checkpoint(registry.run_dir(record.id))
    assert checkpoint is not None and checkpoint.name == "checkpoint-6"

    assert main(["--runs-dir", str(registry.runs_dir), "resume", record.id, "--quiet"]) == 0
    assert f"resuming {record.id} from checkpoint-6" in capsys.readouterr().out
    done = registry.get(record.id)
    assert done.status == "completed" and not (registry.run_dir(record.id) / "checkpoints").exists()
    summary = registry.summary(record.id)
    assert summary.efficiency.steps == 10
    for key in ("accuracy", "f1_macro", "f1_weighted"):
        assert getattr(summary.test, key) == pytest.approx(getattr(whole.summary.test, key), abs=1e-6), key
    runs = ((registry, record.id), (Registry(tmp_path / "whole"), whole.run_id))
    probs = [np.stack(pd.read_parquet(r.run_dir(i) / "predictions.parquet")["probs"].to_numpy()) for r, i in runs]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)
    # the loss of every step after the checkpoint is the uninterrupted run's
    losses = [{e["step"]: e["loss"] for e in events_of(r, i) if e["kind"] == "log" and "loss" in e} for r, i in runs]
    for step in range(7, 11):
        assert losses[0][step] == pytest.approx(losses[1][step], abs=1e-6), step


def test_only_an_interrupted_run_with_a_checkpoint_resumes(tiny_model_dir, tmp_path):
    registry = Registry(tmp_path / "runs")
    finished = Run(tiny_config(tiny_model_dir("bert"), "lora", max_steps=2), registry).execute()
    with pytest.raises(StudioError, match="is completed: only an interrupted run can be resumed"):
        Run.resuming(registry, finished.run_id)
    registry.update(finished.run_id, status="interrupted")  # no checkpoints (checkpoint_steps was not set)
    with pytest.raises(StudioError, match="no complete checkpoint to resume from"):
        Run.resuming(registry, finished.run_id)


def test_a_checkpoint_cut_off_while_written_is_passed_over(tmp_path):
    folder = tmp_path / "run"
    for step, state in ((3, '{"global_step": 3}'), (6, '{"global_st'), (9, None)):  # whole, cut off, unfinished
        ckpt = folder / "checkpoints" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "optimizer.pt").write_bytes(b"x")
        if state is not None:
            (ckpt / "trainer_state.json").write_text(state)
    assert last_checkpoint(folder).name == "checkpoint-3"
    assert json.loads((last_checkpoint(folder) / "trainer_state.json").read_text())["global_step"] == 3
    assert last_checkpoint(tmp_path / "nothing") is None
