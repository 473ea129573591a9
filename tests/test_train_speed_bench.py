"""benchmarks/train_speed.py: the steady rate counts training time only (not the validation passes and saves
between epochs), every configuration runs in its own process, and each of its configurations is a valid
override of the seed preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_modules import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load("train_speed")


def logs(*pairs):
    return [{"kind": "log", "step": s, "time": t, "loss": 0.5} for s, t in pairs]


def evaluation(t, **extra):
    return {"kind": "eval", "time": t, "loss": 0.4, "accuracy": 0.8, **extra}


def test_one_epoch_leaves_out_only_the_first_interval(bench):
    # 5 steps a second after a slow first interval (warm-up): batch 32 -> 160 samples/s
    events = logs((1, 0.0), (5, 3.0), (10, 4.0), (15, 5.0), (20, 6.0))
    assert bench.steady_rate(events, 32) == pytest.approx(160)


def test_evaluations_and_saves_between_epochs_are_not_training_time(bench):
    # 3 epochs of 10 steps, logged every 5; after each epoch a validation pass of 4 s (and the best-model save
    # after it), then the next log: the intervals that hold them are left out, not averaged in
    events = [{"kind": "status", "status": "training", "time": -1.0}]
    events += logs((1, 0.0), (5, 1.0), (10, 2.0)) + [evaluation(6.0)]
    events += logs((15, 7.5), (20, 8.5)) + [evaluation(12.5)]
    events += logs((25, 14.0), (30, 15.0)) + [evaluation(19.0)]
    events += [evaluation(21.0, split="test"), {"kind": "status", "status": "saving", "time": 21.5}]
    # kept: 5->10, 15->20, 25->30: 15 steps in 3 s
    assert bench.steady_rate(events, 32) == pytest.approx(15 * 32 / 3)
    assert bench.steady_rate(events, 32) > 1.5 * (30 - 5) * 32 / (15.0 - 1.0)  # what counting them all gave


def test_an_evaluation_between_two_logs_leaves_its_interval_out(bench):
    events = logs((1, 0.0), (4, 1.0), (8, 2.0), (12, 3.0)) + [evaluation(3.5)] + logs((16, 9.0), (20, 10.0))
    assert bench.steady_rate(events, 8) == pytest.approx(12 * 8 / 3)  # 4->8, 8->12, 16->20


def test_checkpoint_saves_without_an_evaluation_are_left_out_too(bench):
    # a resumable checkpoint every 10 steps (after the log at step 10 and 20): 3 s each
    events = logs((1, 0.0), (5, 1.0), (10, 2.0), (15, 6.0), (20, 7.0), (25, 11.0), (30, 12.0))
    assert bench.steady_rate(events, 32, save_steps=10) == pytest.approx(10 * 32 / 2)  # 5->10, 25->30...
    assert bench.steady_rate(events, 32) < bench.steady_rate(events, 32, save_steps=10)


def test_too_few_logs_give_no_rate(bench):
    assert bench.steady_rate(logs((1, 0.0), (5, 1.0)), 32) is None
    assert bench.steady_rate(logs((1, 0.0), (5, 1.0), (10, 2.0)) + [evaluation(1.5)], 32) is None


def test_every_configuration_is_a_valid_override_and_the_seed_is_the_stock_recipe(bench, tmp_path):
    from studio.config import RunConfig

    base = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml")
    for overrides in bench.CONFIGS.values():
        base.with_overrides(overrides)  # raises on a typo
    seed = base.with_overrides(bench.CONFIGS["seed"])
    assert seed.train.checkpointing_reentrant and seed.train.gradient_checkpointing
    assert seed.method.name == "qlora" and seed.train.optimizer == "paged_adamw_8bit"
    assert base.with_overrides(bench.CONFIGS["seed-studio-ckpt"]) == base


@pytest.mark.slow
def test_the_harness_runs_each_configuration_in_its_own_process(bench, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--out", str(out), "--train", "40",
               "--epochs", "1", "--model", str(tiny_model_dir("bert")), "--only", "lora-bf16,lora-bf16-fused",
               "--set", "train.max_steps=4", "--set", "train.logging_steps=1", "--set", "data.max_length=32",
               "--set", "train.eval_strategy=no"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = bench._read(out / "train_speed.csv")
    assert [r["config"] for r in rows] == ["lora-bf16", "lora-bf16-fused"]
    assert all(r["status"] == "completed" for r in rows)
    pids = {r["pid"] for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    for r in rows:  # timed from outside: the whole process, more than the run inside it
        assert r["wall_seconds"] >= r["run_seconds"] > 0 and r["samples_per_s"] > 0
    env = json.loads((out / "environment.json").read_text())
    assert env["gpu"] == "cpu" and env["torch"] and env["date"] and env["one_process_per_configuration"]
    assert (out / "train_speed.md").read_text().startswith(f"Training speed on cpu (driver None), {env['date']}")


def test_row_flops_counts_adapters_on_top_of_the_base_and_a_full_fine_tune_once(bench):
    spec = {"shape": {"total_params": 110, "matmul_params": 85, "trainable_matmul_params": 85, "layers": 2,
                      "hidden": 4}, "attention_length": 10.0}  # fmt: skip
    attention = 12 * 2 * 10.0 * 4
    lora = bench.row_flops(spec, total=111, trainable=1)  # 1 adapter weight beside the 85 frozen ones
    assert lora["executed"] == 4 * 86 + 2 * 1 + attention and lora["6N"] == 6 * 111
    full = bench.row_flops(spec, total=110, trainable=110)  # embeddings train too, but do no matmul
    assert full["executed"] == 6 * 85 + attention
