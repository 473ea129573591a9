"""Training runs end to end on tiny models: round trip, QLoRA on CPU, early stopping, stop, failures."""

from __future__ import annotations

import json
import queue
import time
import weakref

import numpy as np
import pandas as pd
import pytest

from studio import inference
from studio.config import RunConfig
from studio.events import TrainLog
from studio.inference import Predictor
from studio.registry import Registry
from studio.results import Health
from studio.training import Run


def tiny_config(model_dir, method="lora", **train) -> RunConfig:
    return RunConfig.from_dict(
        {
            "name": f"tiny-{method}",
            "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
            "model": {"name": str(model_dir)},
            "method": {"name": method, "r": 4},
            "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2, **train},
        }
    )


def events_of(registry: Registry, run_id: str) -> list[dict]:
    lines = (registry.run_dir(run_id) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_reload_reproduces_saved_predictions(registry: Registry, run_id: str) -> Predictor:
    """Reload the saved model and check it gives exactly the probabilities the run measured on test: the raw
    ones, and the calibrated ones (what `predict` returns by default) where the run fitted a temperature."""
    saved = pd.read_parquet(registry.run_dir(run_id) / "predictions.parquet")
    test = saved[saved["split"] == "test"]
    predictor = Predictor.from_run(registry, run_id)
    preds = predictor.predict(test["text"].tolist(), batch_size=7, raw=True)  # other batching than training used
    got = np.array([[p.probs[n] for n in predictor.label_names] for p in preds])
    np.testing.assert_allclose(got, np.stack(test["probs"].to_numpy()), atol=2e-5)
    if "probs_calibrated" in test:
        calibrated = predictor.predict(test["text"].tolist(), batch_size=7)
        got_calibrated = np.array([[p.probs[n] for n in predictor.label_names] for p in calibrated])
        np.testing.assert_allclose(got_calibrated, np.stack(test["probs_calibrated"].to_numpy()), atol=2e-5)
    summary = registry.summary(run_id)
    assert summary.test.accuracy == pytest.approx((got.argmax(1) == test["label"].to_numpy()).mean())
    return predictor


def test_train_evaluate_save_reload_predict_round_trip(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    result = Run(tiny_config(tiny_model_dir("bert")), registry).execute()
    assert result.status == "completed", result.message
    folder = registry.run_dir(result.run_id)
    for name in ("config.yaml", "adapter/adapter_model.safetensors", "tokenizer", "label_map.json", "eval.json",
                 "metrics.jsonl", "log.txt", "predictions.parquet"):  # fmt: skip
        assert (folder / name).exists(), name
    assert not (folder / "checkpoints").exists() and not list(folder.glob(".*tmp"))
    summary = result.summary
    assert summary.test.n == 24 and len(summary.test.confusion_matrix) == 2
    assert summary.efficiency.trainable_params < summary.efficiency.total_params
    assert summary.efficiency.peak_memory_mb > 0 and summary.efficiency.steps == 12
    memory = summary.memory  # the estimate the studio shows, beside the peak this run measured
    assert memory.measured_mb == summary.efficiency.peak_memory_mb and memory.estimate_mb > 0
    assert memory.error_pct == pytest.approx(100 * (memory.estimate_mb / memory.measured_mb - 1), abs=0.1)
    repro = summary.reproducibility
    assert repro.config_hash == RunConfig.from_yaml(folder / "config.yaml").config_hash()
    assert repro.data_fingerprint and repro.versions["transformers"] and "studio train" in repro.command
    record = registry.get(result.run_id)
    assert record.status == "completed" and record.accuracy == summary.test.accuracy
    assert summary.health == Health() and record.flag == ""  # checked, and not flagged
    assert registry.summary(result.run_id) == summary  # eval.json reads back to the same typed results
    kinds = [e["kind"] for e in events_of(registry, result.run_id)]
    assert {"status", "progress", "log", "eval", "data", "note"} <= set(kinds) and kinds[-1] == "done"
    predictor = assert_reload_reproduces_saved_predictions(registry, result.run_id)
    assert predictor.label_names == ["negative", "positive"]


def test_qlora_4bit_with_paged_8bit_adamw_trains_on_cpu(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), "qlora", optimizer="paged_adamw_8bit", max_steps=4)
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    losses = [e["loss"] for e in events_of(registry, result.run_id) if e["kind"] == "log" and "loss" in e]
    assert losses and all(np.isfinite(losses))
    assert_reload_reproduces_saved_predictions(registry, result.run_id)


def test_deberta_qlora_trains_under_bf16_autocast(tiny_model_dir, runs_dir):
    # DeBERTa fills masked scores with finfo(query.dtype).min: an fp32 query (4-bit layers return fp32) with
    # bf16 scores overflowed ("cannot be converted to type c10::BFloat16"), as on the GPU's default bf16.
    config = tiny_config(tiny_model_dir("deberta-v2"), "qlora", precision="bf16", max_steps=2)
    result = Run(config, Registry(runs_dir)).execute()
    assert result.status == "completed", result.message


def test_full_fine_tune_saves_the_whole_model(tiny_model_dir, runs_dir, monkeypatch):
    registry = Registry(runs_dir)
    result = Run(tiny_config(tiny_model_dir("distilbert"), "full", max_steps=3), registry).execute()
    assert result.status == "completed", result.message
    assert (registry.run_dir(result.run_id) / "model" / "model.safetensors").is_file()
    # 24 test texts in chunks of 5, each sorted by length on its own: predictions must still come back in order
    monkeypatch.setattr(inference, "CPU_CHUNK", 5)
    assert_reload_reproduces_saved_predictions(registry, result.run_id)


def test_early_stopping_stops(tiny_model_dir, runs_dir):
    # A learning rate this small cannot move the accuracy: after `patience` evaluations without
    # improvement the run must stop instead of running all 60 steps.
    config = tiny_config(tiny_model_dir("bert"), learning_rate=1e-12, max_steps=60, eval_strategy="steps",
                         eval_steps=2, early_stopping_patience=2)  # fmt: skip
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert result.status == "completed"
    evals = [e for e in events_of(registry, result.run_id) if e["kind"] == "eval" and "split" not in e]
    assert len(evals) == 3 and result.summary.efficiency.steps == 6


def test_stop_mid_run_keeps_a_loadable_stopped_run(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    run = Run(tiny_config(tiny_model_dir("bert"), max_steps=500, logging_steps=1), registry).start()
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            event = run.events.get(timeout=1)
        except queue.Empty:
            continue
        if isinstance(event, TrainLog) and event.step >= 2:
            break
    run.stop()
    result = run.wait(timeout=120)
    assert result is not None and result.status == "stopped", result
    assert result.summary.efficiency.steps < 500
    assert registry.get(result.run_id).status == "stopped"
    assert_reload_reproduces_saved_predictions(registry, result.run_id)


def test_bad_data_fails_before_anything_is_written(tiny_model_dir, runs_dir):
    config = tiny_config(tiny_model_dir("bert")).with_overrides(["data.text_column=body"])
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert result.status == "failed" and result.run_id is None
    assert result.message.startswith("data.text_column:") and "'body' not found" in result.message
    assert "review, sentiment" in result.message
    leftovers = [p.name for p in runs_dir.iterdir() if not p.name.startswith(("registry", "."))]
    assert registry.list() == [] and leftovers == []


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("oom", ["out of GPU memory", "train.batch_size", "gradient_checkpointing", "qlora", "data.max_length"]),
        ("memory", ["out of CPU memory", "train.batch_size"]),
        ("crash", ["RuntimeError: boom", "log.txt"]),
    ],
)
def test_a_crash_becomes_a_readable_failed_run(tiny_model_dir, runs_dir, monkeypatch, error, words):
    import torch

    from studio import hf_trainer

    def explode(*args, **kwargs):
        raise {"oom": torch.OutOfMemoryError("CUDA out of memory"), "memory": MemoryError(),
               "crash": RuntimeError("boom")}[error]  # fmt: skip

    monkeypatch.setattr(hf_trainer, "build_trainer", explode)
    registry = Registry(runs_dir)
    result = Run(tiny_config(tiny_model_dir("bert")), registry).execute()
    assert result.status == "failed"
    for word in words:
        assert word in result.message
    assert registry.get(result.run_id).status == "failed"
    assert "Traceback" in (registry.run_dir(result.run_id) / "log.txt").read_text()


def test_cpu_precision_and_trackers_fall_back_with_notes(monkeypatch):
    import importlib.util

    from studio.hf_trainer import resolve_report_to
    from studio.precision import resolve_precision

    assert resolve_precision("fp16") == ("fp32", "fp16 mixed precision needs a CUDA GPU: training in fp32 on the CPU")
    assert resolve_precision("auto") == ("fp32", None)
    from studio import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)  # e.g. AVX2: bf16 emulated, ~20x slower
    precision, note = resolve_precision("bf16")
    assert precision == "fp32" and "no native bf16" in note
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)  # AVX512-BF16 / AMX: as asked
    assert resolve_precision("bf16") == ("bf16", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("wandb", "tensorboard",
                        "tensorboardX") else real(n, *a))  # fmt: skip
    kept, notes = resolve_report_to(["tensorboard", "wandb"])
    assert kept == [] and "pip install tensorboard" in notes[0] and "pip install wandb" in notes[1]


def test_same_config_same_result_whatever_the_process_did_before(tiny_model_dir, runs_dir):
    """The head's initialisation is seeded: the RNG state left by earlier work must not change a run."""
    import torch

    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), max_steps=3)
    first = Run(config, registry).execute()
    torch.rand(12345)  # what a UI process does between two runs: anything that draws random numbers
    second = Run(config, registry).execute()
    a, b = (pd.read_parquet(registry.run_dir(r.run_id) / "predictions.parquet") for r in (first, second))
    np.testing.assert_array_equal(np.stack(a["probs"].to_numpy()), np.stack(b["probs"].to_numpy()))


def test_a_checkpoint_stored_in_fp16_trains_in_fp32(tmp_path, runs_dir):
    # Hub checkpoints are often saved in fp16; trained as stored, AdamW underflows and the loss turns NaN.
    import torch
    from safetensors.torch import load_file, save_file
    from tiny import make_tiny_model

    folder = make_tiny_model("bert", tmp_path / "fp16")
    weights = folder / "model.safetensors"
    save_file({k: v.half() for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    registry = Registry(runs_dir)
    result = Run(tiny_config(folder, "full", max_steps=4), registry).execute()
    assert result.status == "completed", result.message
    losses = [e["loss"] for e in events_of(registry, result.run_id) if e["kind"] == "log" and "loss" in e]
    assert losses and all(np.isfinite(losses))
    from studio.models import build_model

    assert build_model(tiny_config(folder, "full"), ["a", "b"]).model.dtype == torch.float32


def test_out_of_memory_mid_training_fails_with_the_estimate_and_a_fix_then_the_next_run_trains(
    tiny_model_dir, runs_dir, monkeypatch
):
    """An OOM injected at the second training step: the run ends failed, its message gives the estimate and
    changes the estimate says fit (as --set overrides); nothing is left held, and the next run completes."""
    import torch
    from transformers import Trainer

    from studio import failures, hardware
    from studio.hardware import Device
    from studio.memory import SAFETY_MARGIN, SAFETY_MB, estimate

    config = tiny_config(tiny_model_dir("bert"), "full", max_steps=4, batch_size=16)
    need = estimate(config, 2, hardware.detect()).total_mb
    need_at_2 = estimate(config.with_overrides(["train.batch_size=2"]), 2, hardware.detect()).total_mb
    free = ((need + need_at_2) / 2 + SAFETY_MB) / SAFETY_MARGIN  # batch 16 does not fit, a smaller one does
    small = Device("cpu", "small", free, free, 0)
    monkeypatch.setattr(hardware, "detect", lambda: small)
    real_step, calls, models = Trainer.training_step, [], []

    def step(self, model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            models.append(weakref.ref(model))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, model, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", step)
    real_explain, freed = failures.explain_failure, []

    def explain(*args, **kwargs):  # the advice reads the memory free: the run's tensors must be gone by then
        freed.append(models[0]() is None)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(failures, "explain_failure", explain)
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert freed == [True], "the failed run's model outlived cleanup (a traceback frame kept it)"
    assert result.status == "failed" and registry.get(result.run_id).status == "failed"
    assert "out of GPU memory during training (estimated" in result.message
    assert "any one of these fits:" in result.message and "--set train." in result.message
    monkeypatch.setattr(Trainer, "training_step", real_step)
    monkeypatch.undo()
    again = Run(config, registry).execute()
    assert again.status == "completed", again.message


def test_a_full_or_unwritable_runs_directory_is_refused_before_training(tiny_model_dir, runs_dir, monkeypatch):
    import os
    from collections import namedtuple

    from studio import registry as registry_module

    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), "full", max_steps=1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(registry_module.shutil, "disk_usage", lambda path: usage(10 * 2**20, 9 * 2**20, 2**20))
    result = Run(config, registry).execute()
    assert result.status == "failed" and result.run_id is None  # nothing was written
    assert "has 1 MB free; this run needs about" in result.message and "--runs-dir" in result.message
    monkeypatch.undo()
    (runs_dir / f".write-test-{os.getpid()}").mkdir()  # where the write probe goes: the write fails
    result = Run(config, registry).execute()
    assert result.status == "failed" and result.run_id is None
    assert "cannot be written" in result.message and "--runs-dir" in result.message
    assert registry.list() == []


def test_no_secret_reaches_the_run_folder(tiny_model_dir, runs_dir, monkeypatch):
    """Tokens in the environment (Hub, W&B, a Space's login) appear in no file a run writes."""
    secrets = {"HF_TOKEN": "hf_SECRETsecret0001", "WANDB_API_KEY": "wandbSECRET0002",
               "STUDIO_PASSWORD": "passwordSECRET0003", "HUGGING_FACE_HUB_TOKEN": "hf_SECRETsecret0004"}  # fmt: skip
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    registry = Registry(runs_dir)
    result = Run(tiny_config(tiny_model_dir("bert"), "lora", max_steps=2), registry).execute()
    assert result.status == "completed", result.message
    files = [p for p in runs_dir.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        assert not any(v.encode() in data for v in secrets.values()), path


def test_tokenizer_parallelism_is_off_only_while_dataloader_workers_may_fork(monkeypatch):
    import os

    from studio.recipe import tokenizers_serial

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    with tokenizers_serial(2):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # quiet and safe in the forked workers
    assert "TOKENIZERS_PARALLELISM" not in os.environ  # the playground and the data setup use every core again
    with tokenizers_serial(0):
        assert "TOKENIZERS_PARALLELISM" not in os.environ  # no workers, no fork
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the user's choice stands
    with tokenizers_serial(2):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
