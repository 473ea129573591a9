"""What each phase of a `Run` does: data, model, Trainer, evaluation, saving, cleanup.

Imported only when a run executes (it pulls in transformers).

Kept apart from `training.Run` (the thread, events and registry bookkeeping) so that each phase is a small
function of (run, config, state) that can be read and tested on its own.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import importlib.util
import logging
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from studio.config import RunConfig
from studio.distributed import any_rank, fsdp_requested, layout
from studio.errors import StudioError
from studio.metrics import PeakMemory, estimated_peak, full_report, make_compute_metrics
from studio.training import STOP_FILE

if TYPE_CHECKING:
    from studio.training import Run

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
STOP_SYNC_STEPS = 10
"""Across processes, the ranks agree whether to stop every this many steps (a collective: a GPU sync)."""


# ---- data and model ------------------------------------------------------------------------------------
def setup_data(run: Run, config: RunConfig) -> Any:
    from studio import data

    prepared = data.prepare(config.data, config.seed)
    counts = {name: len(split) for name, split in prepared.splits.items()}
    run.emit(
        "note",
        message=f"data: {counts['train']} train / {counts['validation']} validation / {counts['test']} test rows, "
        f"{len(prepared.label_names)} labels ({', '.join(prepared.label_names[:8])}"
        f"{', ...' if len(prepared.label_names) > 8 else ''})",
    )
    for note in prepared.report.get("notes", []):
        run.emit("note", message=note)
    return prepared


def plan_speed(run: Run, config: RunConfig, prepared: Any) -> Any:
    """The speed profile's plan for this device (studio/speed.py), each choice told as a note."""
    from studio.hardware import detect
    from studio.speed import plan

    result = plan(config, detect(), len(prepared.label_names), len(prepared.splits["train"]))
    for line in result.lines():
        run.emit("note", message=line if line == result.note else f"speed {result.profile}: {line}")
    return result


def configure_allocator(config: RunConfig) -> bool:
    """Turn on the CUDA allocator's expandable segments for a run that asks (`train.expandable_segments`),
    before its model loads; True when this run turned them on (cleanup turns them off again, so the process's
    next run allocates as it asks). PyTorch reads the setting at every new segment, so it can change between
    runs of one process; PYTORCH_CUDA_ALLOC_CONF would fix it for the whole process."""
    import torch

    if not (config.train.expandable_segments and torch.cuda.is_available()):
        return False
    torch.cuda.memory._set_allocator_settings("expandable_segments:True")
    return True


def setup_model(run: Run, config: RunConfig, prepared: Any) -> tuple[Any, Any]:
    """Model bundle and tokenized splits (tokenization needs the model's tokenizer; it is cached)."""
    from transformers import set_seed

    from studio import data
    from studio.models import build_model, require_bitsandbytes
    from studio.training import needs_bitsandbytes

    for field_name, what in needs_bitsandbytes(config):
        require_bitsandbytes(field_name, what)
    # The new head (and adapter weights) are initialised from the global RNG: seed it here, or the result
    # depends on what the process did before (the studio's UI process and a fresh CLI process differed).
    set_seed(config.seed)
    bundle = build_model(config, prepared.label_names)
    pct = 100 * bundle.trainable_params / max(bundle.total_params, 1)
    run.emit(
        "note",
        message=f"model: {bundle.total_params / 1e6:.1f}M parameters, {bundle.trainable_params / 1e6:.3f}M "
        f"trainable ({pct:.2f}%)",
        trainable_params=bundle.trainable_params,
        total_params=bundle.total_params,
    )
    cache_dir = run.registry.runs_dir / ".cache"
    tokenized, hit = data.tokenize(prepared, bundle.tokenizer, config.data.max_length, cache_dir)
    run.emit("note", message="tokenized data loaded from cache" if hit else "data tokenized (and cached)")
    stats = data.dataset_stats(prepared, bundle.tokenizer, config.data.max_length)
    run.emit("data", stats=stats, label_names=prepared.label_names, fingerprint=prepared.fingerprint)
    return bundle, tokenized


def disk_needed_mb(config: RunConfig, bundle: Any) -> float:
    """Disk a run will write: the saved weights (fp32 safetensors: the full model, or the adapter and head)
    plus the two checkpoints the Trainer keeps when it picks the best one, and 50 MB for the tokenizer,
    predictions and logs."""
    params = bundle.total_params if config.method.spec.saves == "model" else bundle.trainable_params
    copies = 3 if config.train.load_best_at_end and config.train.eval_strategy != "no" else 1
    return params * 4 * copies / 2**20 + 50


# ---- the Trainer ---------------------------------------------------------------------------------------
def resolve_precision(requested: str) -> tuple[str, str | None]:
    """(fp32 | fp16 | bf16, note): what this process's device supports, closest to what was asked
    (`precision.resolve`)."""
    from studio import precision

    resolved = precision.resolve(requested, precision.Compute.here())
    return resolved.mode, resolved.note


def resolve_report_to(wanted: list[str]) -> tuple[list[str], list[str]]:
    """Trackers that can actually log; the others are dropped with a note (local logs always exist)."""
    ok, notes = [], []
    for name in wanted:
        if name == "tensorboard" and not (
            importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
        ):
            notes.append("tensorboard is not installed (pip install tensorboard): logging locally only")
            continue
        if name == "wandb":
            reason = _wandb_unusable()
            if reason:
                notes.append(f"Weights & Biases unavailable ({reason}): logging locally only")
                continue
        ok.append(name)
    return ok, notes


def _wandb_unusable() -> str | None:
    if importlib.util.find_spec("wandb") is None:
        return "pip install wandb"
    try:
        import wandb

        if not wandb.api.api_key:
            return "not logged in: run `wandb login` or set WANDB_API_KEY"
    except Exception as e:  # wandb raises many kinds of errors when misconfigured
        return f"{type(e).__name__}: {e}"
    return None


def build_trainer(run: Run, config: RunConfig, state: dict[str, Any]) -> Any:
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

    t = config.train
    bundle, tokenized, prepared = state["bundle"], state["tokenized"], state["data"]
    precision, note = resolve_precision(t.precision)
    report_to, notes = resolve_report_to(list(t.report_to))
    for n in ([note] if note else []) + notes:
        run.emit("note", message=n)
    evaluating = t.eval_strategy != "no"
    load_best = t.load_best_at_end and evaluating
    batch_size, grad_accum, batch_note = layout(t.batch_size, t.grad_accum, run.world.size)
    effective = batch_size * grad_accum * run.world.size
    state["layout"] = {"processes": run.world.size, "per_device_batch": batch_size, "grad_accum": grad_accum,
                       "effective_batch": effective}  # fmt: skip
    if run.world.distributed:
        run.emit("note", message=batch_note or (
            f"{run.world.size} processes (GPUs) x batch {batch_size} x accumulation {grad_accum}: effective batch "
            f"{effective}, as batch_size x grad_accum asks"))  # fmt: skip
    metric = "eval_loss" if t.metric_for_best == "loss" else f"eval_{t.metric_for_best}"
    args = TrainingArguments(
        output_dir=str(run.dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=t.eval_batch_size or 2 * t.batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        optim=t.optimizer,
        max_grad_norm=t.max_grad_norm,
        label_smoothing_factor=t.label_smoothing,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        **_checkpointing_args(t.gradient_checkpointing),
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        # checkpoints: for load_best only the weights; with checkpoint_steps everything a resume needs (the
        # Trainer writes trainer_state.json last: `last_checkpoint` takes only folders that have it)
        save_strategy="steps" if t.checkpoint_steps else (t.eval_strategy if load_best else "no"),
        save_steps=t.checkpoint_steps or t.eval_steps,
        save_total_limit=2,
        # (FSDP's checkpoints cannot hold the weights alone when the best one is reloaded: they hold it all)
        save_only_model=not t.checkpoint_steps and not (fsdp_requested() and load_best),
        load_best_model_at_end=load_best,
        metric_for_best_model=metric if evaluating else None,
        greater_is_better=t.metric_for_best != "loss",
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=report_to or "none",
        run_name=run.id,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_persistent_workers=t.dataloader_workers > 0,  # not re-forked for every epoch and evaluation
        # True would check every step's loss for NaN on the host: a GPU sync per step that stalls the queue of
        # kernels (the logged loss is then NaN when it is, which is what a user should see anyway).
        logging_nan_inf_filter=False,
        torch_compile=t.torch_compile,
        # every trainable weight takes part in every step (adapters, heads, the full model): telling DDP
        # saves it a walk of the autograd graph per step (transformers would assume unused ones)
        ddp_find_unused_parameters=False,
        label_names=["labels"],
        disable_tqdm=not run.progress_bar,
        use_cpu=not torch.cuda.is_available(),
    )
    if not run.world.distributed and args.n_gpu > 1:
        # One process sees several GPUs: the Trainer would wrap the model in nn.DataParallel, slower than one
        # GPU for most runs and with a batch n_gpu times the one asked. One run trains on one GPU; several
        # GPUs are DDP's (`--gpus N`). TrainingArguments has no public switch: Trainer sets the same field for
        # model-parallel models.
        args._n_gpu = 1
        run.emit("note", message=f"{torch.cuda.device_count()} GPUs visible: this run trains on GPU 0; "
                 "choose GPUs for this run (--gpus N) to train on several")  # fmt: skip
    callbacks: list[Any] = [StudioCallback(run, state)]
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    # A classifier's loss is its batch's mean: its forward takes **kwargs but ignores num_items_in_batch. Left
    # to guess from the signature, the Trainer neither divides the loss by the accumulation steps nor leaves it
    # unscaled across processes: the logged training loss read 2x with grad_accum 2 or on 2 GPUs (and the
    # evaluation loss 2x on 2 GPUs), and the gradients were 2x, clipped at half the norm asked.
    base = bundle.model.get_base_model() if hasattr(bundle.model, "get_base_model") else bundle.model
    base.accepts_loss_kwargs = False
    trainer_class = _length_grouped_trainer(tokenized["train"]) if t.length_grouping else Trainer
    trainer = trainer_class(
        model=bundle.model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"] if evaluating else None,
        data_collator=DataCollatorWithPadding(
            bundle.tokenizer, pad_to_multiple_of=_pad_multiple(t, precision, config.data.max_length)
        ),
        processing_class=bundle.tokenizer,
        compute_metrics=make_compute_metrics(prepared.label_names),
        callbacks=callbacks,
    )
    if getattr(trainer, "is_fsdp_enabled", False):  # launched with an FSDP accelerate config
        state["layout"]["fsdp"] = True
        run.emit("note", message=f"FSDP: weights, gradients and optimizer state sharded across {run.world.size} "
                 "processes (accelerate config); rank 0 gathers the weights to save them")  # fmt: skip
    if not run.progress_bar:  # the run's own events carry the logs; don't also print them
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


LENGTH_BUCKET = 64
"""Length-grouped batches pad to a multiple of this many tokens: a handful of shapes instead of one per batch
(each new shape costs the allocator fresh blocks: grouped batches padded to 8 ran 13% slower and peaked 18%
higher on the H100)."""


def _pad_multiple(t: Any, precision: str, max_length: int) -> int | None:
    """What batches pad to a multiple of: tensor-core friendly 8 in 16-bit, LENGTH_BUCKET when grouped."""
    if t.length_grouping and max_length % LENGTH_BUCKET == 0:  # never past max_length (position limits)
        return LENGTH_BUCKET
    return 8 if precision != "fp32" else None


def _length_grouped_trainer(train: Any) -> type:
    """A Trainer whose training batches hold texts of similar length (transformers' LengthGroupedSampler:
    shuffled groups of 50 batches, sorted by length within each), from lengths read off the tokenized column.

    Written here rather than the Trainer's own `group_by_length` strategy because that one also reorders
    evaluation and prediction batches (predictions would no longer line up with the rows the studio saves)
    and, without a lengths column, first measures every row in Python.
    """
    import pyarrow.compute as pc
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = pc.list_value_length(train.with_format("arrow")["input_ids"]).to_pylist()

    class LengthGroupedTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths)  # fmt: skip

    return LengthGroupedTrainer


def _checkpointing_args(on: bool) -> dict[str, Any]:
    """transformers 5.2x renamed gradient_checkpointing to activation_checkpointing; older 5.x lack the new name."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    return {f"{prefix}_checkpointing": on, f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if on else None}


class StudioCallback(TrainerCallback):
    """Turns the Trainer's hooks into run events, samples memory, and honours the stop flag."""

    def __init__(self, run: Run, state: dict[str, Any]):
        self.run = run
        self.memory = PeakMemory()
        state["memory"] = self.memory
        self._t0 = time.time()
        self._last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.time()
        self.run.emit("progress", step=0, max_steps=state.max_steps, epoch=0.0, elapsed=0.0, eta=None)

    def on_step_end(self, args, state, control, **kwargs):
        self.memory.sample()
        now = time.time()
        if now - self._last >= PROGRESS_EVERY_S or state.global_step >= state.max_steps:
            self._last = now
            elapsed = now - self._t0
            eta = elapsed / state.global_step * (state.max_steps - state.global_step) if state.global_step else None
            self.run.emit(
                "progress",
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=round(state.epoch or 0.0, 4),
                elapsed=round(elapsed, 2),
                eta=round(eta, 1) if eta is not None else None,
            )
        if self._stop_agreed(state.global_step % STOP_SYNC_STEPS == 0 or state.global_step >= state.max_steps):
            control.should_training_stop = True
        return control

    def _stop_agreed(self, sync_point: bool) -> bool:
        """Whether to stop now. One process: when asked. Several: only at sync points, where every rank stops
        if any was asked (stopping one alone would leave the others waiting in their next all-reduce)."""
        world = self.run.world
        if not world.distributed:
            return self.run.stop_requested
        return sync_point and any_rank(world, self.run.stop_requested)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and not any(k.startswith("eval_") for k in logs) and "train_runtime" not in logs:
            values = {k: v for k, v in logs.items() if k not in ("step", "epoch")}
            self.run.emit("log", step=state.global_step, epoch=round(state.epoch or 0.0, 4), **values)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics:
            values = {k.removeprefix("eval_"): v for k, v in metrics.items() if k not in ("step", "epoch")}
            self.run.emit("eval", step=state.global_step, epoch=round(state.epoch or 0.0, 4), **values)
        if self._stop_agreed(sync_point=True):  # every rank evaluates at the same step
            control.should_training_stop = True


# ---- evaluate, save, clean up --------------------------------------------------------------------------
def evaluate(run: Run, config: RunConfig, state: dict[str, Any], train_out: Any, t0: float) -> dict[str, Any]:
    trainer, tokenized, prepared, bundle = state["trainer"], state["tokenized"], state["data"], state["bundle"]
    names = prepared.label_names
    test_pred = trainer.predict(tokenized["test"], metric_key_prefix="test")
    test = full_report(test_pred.label_ids, test_pred.predictions, names)
    state["predictions"] = {"test": test_pred}
    validation = {}
    if config.train.eval_strategy != "no":
        val_pred = trainer.predict(tokenized["validation"], metric_key_prefix="val")
        validation = full_report(val_pred.label_ids, val_pred.predictions, names)
        state["predictions"]["validation"] = val_pred
    tm = train_out.metrics
    efficiency = {
        "trainable_params": bundle.trainable_params,
        "total_params": bundle.total_params,
        "trainable_percent": round(100 * bundle.trainable_params / max(bundle.total_params, 1), 4),
        "train_seconds": round(tm.get("train_runtime", 0.0), 2),
        "train_samples_per_second": tm.get("train_samples_per_second"),
        "total_seconds": round(time.time() - t0, 2),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        **state["memory"].result(),
    }
    run.emit("eval", split="test", **{k: v for k, v in test.items() if isinstance(v, float)})
    memory = _memory_record(config, len(names), efficiency)
    return {
        "memory": memory,
        "run_id": run.id,
        "distributed": state.get("layout"),
        "test": test,
        "validation": validation,
        "best_checkpoint_step": _best_step(trainer),
        "efficiency": efficiency,
        "data": {**prepared.report, "fingerprint": prepared.fingerprint, "label_names": names},
        "reproducibility": {
            **reproducibility(config, prepared.fingerprint, run.dir),
            "speed": state["plan"].to_dict() if "plan" in state else None,
        },
    }


def _memory_record(config: RunConfig, num_labels: int, efficiency: dict[str, Any]) -> dict[str, Any]:
    """The estimate the studio shows for this config beside the peak this run measured."""
    from studio.memory import estimate

    try:
        e = estimate(config, num_labels)
    except Exception as err:  # an estimate must never fail a finished run; say why it is missing
        return {"estimate_error": str(err)[:300]}
    measured, kind = estimated_peak(efficiency)
    return {
        "estimate_mb": round(e.total_mb, 1),
        "estimate_parts": {k: round(v, 1) for k, v in e.parts.items()},
        "measured_mb": measured,
        "measured_kind": kind,
        "error_pct": round(100 * (e.total_mb - measured) / measured, 2) if measured else None,
        "device": e.device.name,
    }


def _best_step(trainer: Any) -> int | None:
    ckpt = trainer.state.best_model_checkpoint
    return int(ckpt.rsplit("-", 1)[-1]) if ckpt else None


def reproducibility(config: RunConfig, data_fingerprint: str, run_dir: Path) -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in ("fine-tune-studio", "torch", "transformers", "peft", "datasets", "accelerate", "bitsandbytes"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    from studio import __version__

    versions["studio"] = __version__
    if torch.cuda.is_available():
        device = {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    else:
        device = {"kind": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:  # pinned (e.g. one run per GPU in a grid)
        device["visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return {
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "data_fingerprint": data_fingerprint,
        "versions": versions,
        "device": device,
        "python": platform.python_version(),
        "command": f"python -m studio train {run_dir / 'config.yaml'}",
    }


def save(run: Run, state: dict[str, Any]) -> None:
    """Model (adapter or full weights, safetensors), tokenizer, label map: each renamed into place whole."""
    from studio.registry import write_json_atomic

    trainer, bundle, names = state["trainer"], state["bundle"], state["data"].label_names
    kind = "adapter" if hasattr(trainer.model, "peft_config") else "model"
    fsdp = getattr(trainer, "is_fsdp_enabled", False)
    if fsdp:  # sharded weights: gathering them is a collective every rank joins; the Trainer writes on rank 0
        trainer.save_model(str(run.dir / f".{kind}.tmp"))
    if not run.world.writes:  # rank 0 saves (under DDP every rank holds the same weights)
        return
    for name, writer in ((kind, trainer.model.save_pretrained), ("tokenizer", bundle.tokenizer.save_pretrained)):
        tmp = run.dir / f".{name}.tmp"
        if not (fsdp and name == kind):
            shutil.rmtree(tmp, ignore_errors=True)
            writer(str(tmp))
        tmp.rename(run.dir / name)
    _save_predictions(run.dir / "predictions.parquet", state)
    write_json_atomic(
        run.dir / "label_map.json",
        {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}},
    )


def _save_predictions(path: Path, state: dict[str, Any]) -> None:
    """Validation and test predictions with class probabilities (the playground browses the mistakes)."""
    import numpy as np
    import pandas as pd

    from studio.metrics import softmax

    frames = []
    for split, pred in state.get("predictions", {}).items():
        probs = softmax(np.asarray(pred.predictions, dtype=np.float64))
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "text": state["data"].splits[split]["text"],
                    "label": pred.label_ids.astype(int),
                    "predicted": probs.argmax(axis=-1),
                    "probs": list(probs.astype(np.float32)),
                }
            )
        )
    if frames:
        tmp = path.with_name(f".{path.name}.tmp")
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
        tmp.replace(path)


@contextlib.contextmanager
def tokenizers_serial(workers: int) -> Iterator[None]:
    """TOKENIZERS_PARALLELISM=false while dataloader workers may fork (training and evaluation), unless the user
    set it. The Rust tokenizer warns in every forked worker when its thread pool was used before the fork, and
    turns it off there; said beforehand, it stays quiet. Outside these phases tokenization (the data setup, the
    playground) keeps every core: one call for 4,000 reviews took 0.43 s on 16 cores, 1.6 s on one."""
    if workers == 0 or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run: its trainer_state.json, which the Trainer writes after the
    weights, optimizer, scheduler and random states, is there and whole. A process killed while writing one
    leaves a folder without it (or with a cut-off one), which is passed over."""
    import json

    folders = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    for folder in reversed(folders):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (folder / "optimizer.pt").is_file():
            return folder
    return None


def cleanup(run: Run, state: dict[str, Any]) -> None:
    """Free memory and drop checkpoints (the final model is saved on its own). Also runs when the model failed
    to load, before the run had a folder (found by tests/test_bad_inputs.py: the thread died instead)."""
    if run.dir is not None and run.world.writes:
        shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
        (run.dir / STOP_FILE).unlink(missing_ok=True)
    expandable = state.get("allocator", False)
    state.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            if expandable:
                torch.cuda.memory._set_allocator_settings("expandable_segments:False")
    except ImportError:
        pass


def explain_failure(e: BaseException, config: RunConfig, num_labels: int = 2) -> str:
    """One readable line for an unexpected crash, with a way forward where there is one.

    Out of memory: the estimate for this config beside the memory free now (after cleanup freed the run's),
    then the changes the estimate says would fit (`fit.suggestions`, as `--set` overrides), or, where the
    estimate thought it fit (other processes, fragmentation), the usual levers.
    """
    import torch

    if isinstance(e, torch.OutOfMemoryError | MemoryError):
        where = "GPU" if isinstance(e, torch.OutOfMemoryError) else "CPU"
        head = f"out of {where} memory during training"
        items = []
        try:
            from studio import hardware
            from studio.fit import suggestions
            from studio.memory import estimate

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
