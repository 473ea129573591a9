"""The Hugging Face Trainer as a run uses it: its arguments from a RunConfig, the callback that turns its hooks
into run events, the length-grouped variant, and which experiment trackers can log.

Imported only when a run executes (it pulls in transformers).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from studio.config import LOWER_IS_BETTER, RunConfig
from studio.distributed import World, any_rank, fsdp_requested, layout
from studio.events import Evaluation, Event, Note, Progress, TrainLog
from studio.losses import loss_for
from studio.metrics import PeakMemory, make_compute_metrics
from studio.precision import resolve_precision
from studio.results import Layout

if TYPE_CHECKING:
    from studio.recipe import ClassifierRecipe

PROGRESS_EVERY_S = 1.0
STOP_SYNC_STEPS = 10
"""Across processes, the ranks agree whether to stop every this many steps (a collective: a GPU sync)."""

LENGTH_BUCKET = 64
"""Length-grouped and compiled batches pad to a multiple of this many tokens: a handful of shapes instead of one per
batch (each new shape costs the allocator fresh blocks, and a compiled model a recompile: grouped batches padded to
8 ran 13% slower and peaked 18% higher on the H100)."""


@dataclass(frozen=True)
class BatchLayout:
    """The batch as it trains: per-device batch x accumulation x processes = the effective batch asked."""

    per_device_batch: int
    grad_accum: int
    processes: int

    @property
    def effective(self) -> int:
        return self.per_device_batch * self.grad_accum * self.processes


def build_trainer(recipe: ClassifierRecipe, run_dir: Path, run_id: str | None) -> tuple[Any, Layout, PeakMemory]:
    """The Trainer for the recipe's model and data, the batch layout it trains with, and its memory sampler."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    config, bundle, world, emit = recipe.trained, recipe.bundle, recipe.world, recipe.emit
    assert bundle is not None and recipe.data is not None
    t = config.train
    precision, note = resolve_precision(t.precision)
    report_to, notes = resolve_report_to(list(t.report_to))
    for n in ([note] if note else []) + notes:
        emit(Note(n))
    per_device, grad_accum, batch_note = layout(t.batch_size, t.grad_accum, world.size)
    batch = BatchLayout(per_device, grad_accum, world.size)
    if world.distributed:
        emit(Note(batch_note or (
            f"{world.size} processes (GPUs) x batch {per_device} x accumulation {grad_accum}: effective batch "
            f"{batch.effective}, as batch_size x grad_accum asks")))  # fmt: skip
    args = training_arguments(config, run_dir / "checkpoints", run_id, precision, batch, report_to)
    if not world.distributed and args.n_gpu > 1:
        _one_gpu(args, emit)
    memory = PeakMemory()
    callbacks: list[Any] = [StudioCallback(emit, recipe.stop_requested, world, memory)]
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    # A classifier's loss is its batch's mean: its forward takes **kwargs but ignores num_items_in_batch. Left
    # to guess from the signature, the Trainer neither divides the loss by the accumulation steps nor leaves it
    # unscaled across processes, and the loss and gradients would scale with accumulation and processes.
    base = bundle.model.get_base_model() if hasattr(bundle.model, "get_base_model") else bundle.model
    base.accepts_loss_kwargs = False
    tokenized = recipe.tokenized
    trainer_class = length_grouped_trainer(tokenized["train"]) if t.length_grouping else Trainer
    trainer = trainer_class(
        model=bundle.model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"] if t.eval_strategy != "no" else None,
        data_collator=DataCollatorWithPadding(
            bundle.tokenizer, pad_to_multiple_of=pad_multiple(t, precision, config.data.max_length)
        ),
        processing_class=bundle.tokenizer,
        compute_metrics=compute_metrics_for(recipe.data),
        compute_loss_func=loss_for(
            t, recipe.data.label_names, recipe.train_counts, recipe.data.multi_label, len(recipe.data.splits["train"])
        ),  # fmt: skip
        callbacks=callbacks,
    )
    fsdp = bool(getattr(trainer, "is_fsdp_enabled", False))  # launched with an FSDP accelerate config
    if fsdp:
        emit(Note(f"FSDP: weights, gradients and optimizer state sharded across {world.size} processes "
                  "(accelerate config); rank 0 gathers the weights to save them"))  # fmt: skip
    # The run's own events carry the logs and the progress (the command line draws them: studio/console.py);
    # with its bar off the Trainer would print each log as a `{'loss': ...}` dict instead.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    kept = Layout(world.size, per_device, grad_accum, batch.effective, fsdp=True if fsdp else None)
    return trainer, kept, memory


def _one_gpu(args: Any, emit: Callable[[Any], None]) -> None:
    """Train on GPU 0 when one process sees several GPUs.

    The Trainer would wrap the model in nn.DataParallel, slower than one GPU for most runs and with a batch n_gpu
    times the one asked. One run trains on one GPU; several GPUs are DDP's (`--gpus N`). TrainingArguments has no
    public switch: Trainer sets the same field for model-parallel models."""
    import torch

    args._n_gpu = 1
    emit(Note(f"{torch.cuda.device_count()} GPUs visible: this run trains on GPU 0; "
              "choose GPUs for this run (--gpus N) to train on several"))  # fmt: skip


def compute_metrics_for(data: Any) -> Callable[[Any], dict[str, float]]:
    """Validation metrics while training: softmax and argmax, or a sigmoid per label at 0.5 (multi-label)."""
    if data.multi_label:
        from studio import multilabel

        return multilabel.make_compute_metrics(data.label_names)
    return make_compute_metrics(data.label_names)


def training_arguments(
    config: RunConfig, output_dir: Path, run_name: str | None, precision: str, batch: BatchLayout,
    report_to: list[str],
) -> Any:  # fmt: skip
    """TrainingArguments for `config`, training in `precision` (fp32 | fp16 | bf16) with `batch`."""
    import torch
    from transformers import TrainingArguments

    t = config.train
    evaluating = t.eval_strategy != "no"
    load_best = t.load_best_at_end and evaluating
    metric = "eval_loss" if t.metric_for_best == "loss" else f"eval_{t.metric_for_best}"
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=batch.per_device_batch,
        per_device_eval_batch_size=t.eval_batch_size or 2 * t.batch_size,
        gradient_accumulation_steps=batch.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        optim=t.optimizer,
        max_grad_norm=t.max_grad_norm,
        label_smoothing_factor=t.label_smoothing,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        **checkpointing_args(t.gradient_checkpointing, config.reentrant_checkpointing),
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        # checkpoints: for load_best only the weights; with checkpoint_steps everything a resume needs (the
        # Trainer writes trainer_state.json last: `checkpoints.last_checkpoint` takes only folders that have it)
        save_strategy="steps" if t.checkpoint_steps else (t.eval_strategy if load_best else "no"),
        save_steps=t.checkpoint_steps or t.eval_steps,
        save_total_limit=2,
        # (FSDP's checkpoints cannot hold the weights alone when the best one is reloaded: they hold it all)
        save_only_model=not t.checkpoint_steps and not (fsdp_requested() and load_best),
        load_best_model_at_end=load_best,
        metric_for_best_model=metric if evaluating else None,
        greater_is_better=t.metric_for_best not in LOWER_IS_BETTER,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to=report_to or "none",
        run_name=run_name,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_persistent_workers=t.dataloader_workers > 0,  # not re-forked for every epoch and evaluation
        # True would check every step's loss for NaN on the host: a GPU sync per step that stalls the queue of
        # kernels (the logged loss is then NaN when it is, which is what a user should see anyway).
        logging_nan_inf_filter=False,
        torch_compile=compile_cached(t.torch_compile),
        # every trainable weight takes part in every step (adapters, heads, the full model): telling DDP
        # saves it a walk of the autograd graph per step (transformers would assume unused ones)
        ddp_find_unused_parameters=False,
        label_names=["labels"],
        disable_tqdm=True,  # its bars (training, every evaluation) nest badly; studio/console.py draws one line
        use_cpu=not torch.cuda.is_available(),
    )
    agree_tf32()
    return args


def agree_tf32() -> None:
    """Make PyTorch's two TF32 switches agree after transformers set one of them.

    With torch_compile and bf16 on an Ampere or later GPU, TrainingArguments turns TF32 on through PyTorch's new
    API only (`torch.backends.fp32_precision = "tf32"`). The legacy getters then refuse to answer ("you have used
    mix of the legacy and new APIs"), and inductor's matmul autotuning (`TORCHINDUCTOR_MAX_AUTOTUNE_GEMM`, compile
    mode max-autotune) calls one: the compile failed on an H200 (benchmarks/results/train_speed/h200_16000x1_mfu).
    Re-stating the same choice through the legacy setter sets both, so every reader sees "tf32"."""
    import torch

    if getattr(torch.backends, "fp32_precision", None) == "tf32":
        torch.set_float32_matmul_precision("high")  # "high" is TF32 for matmuls: what the new API said


def checkpointing_args(on: bool, reentrant: bool = False) -> dict[str, Any]:
    """transformers 5.2x renamed gradient_checkpointing to activation_checkpointing; older 5.x lack the new name.
    `reentrant`: PyTorch's older reentrant checkpoint (what peft and transformers 4 ran by default), named
    explicitly, since the defaults moved (transformers 5: non-reentrant)."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    kwargs = {"use_reentrant": reentrant} if on else None
    return {f"{prefix}_checkpointing": on, f"{prefix}_checkpointing_kwargs": kwargs}


def compile_cached(on: bool) -> bool:
    """With torch.compile, inductor's caches (compiled graphs, autotuning) go under the studio's cache folder
    unless the user's TORCHINDUCTOR_CACHE_DIR says otherwise (`compiled.inductor_dir`): they outlive /tmp's
    cleaning, so only the first run of a model and shape pays the compile (torch's own caches, keyed by graph,
    inputs and versions; nothing written here). Until 2026-12-01 this only set a default, which torch had always
    filled with its /tmp folder by then.

    The model compiles per layer (accelerate's regional compilation: each repeated block is compiled once and
    the rest hit that compile) unless ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION says otherwise. Measured on an
    H200 (bert-base LoRA, batch 128, 16,000 x 3; benchmarks/results/train_speed/h200_16000x3_regional): a cold
    compile cost ~11 s against ~37 s for the whole model at once, at a 3-6% lower steady rate (2,474-2,548
    against 2,633 samples/s), so compiling pays on ~2x shorter runs."""
    if on:
        from studio.compiled import ENV, inductor_dir

        os.environ[ENV] = str(inductor_dir())
        # read by accelerate's TorchDynamoPlugin, which the Trainer builds without a regional argument
        os.environ.setdefault("ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION", "1")
    return on


def pad_multiple(t: Any, precision: str, max_length: int) -> int | None:
    """What batches pad to a multiple of: tensor-core friendly 8 in 16-bit; LENGTH_BUCKET when grouped or compiled
    (a compiled model recompiles for every new shape: buckets leave it a few)."""
    bucketed = t.length_grouping or t.torch_compile
    if bucketed and max_length % LENGTH_BUCKET == 0:  # never past max_length (position limits)
        return LENGTH_BUCKET
    return 8 if precision != "fp32" else None


def length_grouped_trainer(train: Any) -> type:
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


class StudioCallback(TrainerCallback):
    """Turns the Trainer's hooks into run events, samples memory, and honours the stop flag."""

    def __init__(self, emit: Callable[[Event], None], stop_requested: Callable[[], bool], world: World,
                 memory: PeakMemory):  # fmt: skip
        self.emit, self.stop_requested, self.world, self.memory = emit, stop_requested, world, memory
        self._t0 = time.time()
        self._last = 0.0
        self._first = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.time()
        self._first = state.global_step  # a resumed run starts at its checkpoint's step
        self.emit(Progress(step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
                           elapsed=0.0, eta=None))  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):
        self.memory.sample()
        now = time.time()
        if now - self._last >= PROGRESS_EVERY_S or state.global_step >= state.max_steps:
            self._last = now
            elapsed = now - self._t0
            done = state.global_step - self._first  # steps taken here: a resumed run's ETA is from its own pace
            eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
            self.emit(Progress(step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
                               elapsed=round(elapsed, 2), eta=round(eta, 1) if eta is not None else None))  # fmt: skip
        if self._stop_agreed(state.global_step % STOP_SYNC_STEPS == 0 or state.global_step >= state.max_steps):
            control.should_training_stop = True
        return control

    def _stop_agreed(self, sync_point: bool) -> bool:
        """Whether to stop now. One process: when asked. Several: only at sync points, where every rank stops
        if any was asked (stopping one alone would leave the others waiting in their next all-reduce)."""
        if not self.world.distributed:
            return self.stop_requested()
        return sync_point and any_rank(self.world, self.stop_requested())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and not any(k.startswith("eval_") for k in logs) and "train_runtime" not in logs:
            values = {k: v for k, v in logs.items() if k not in ("step", "epoch")}
            self.emit(TrainLog(state.global_step, round(state.epoch or 0.0, 4), values))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics:
            values = {k.removeprefix("eval_"): v for k, v in metrics.items() if k not in ("step", "epoch")}
            self.emit(Evaluation(values, step=state.global_step, epoch=round(state.epoch or 0.0, 4)))
        if self._stop_agreed(sync_point=True):  # every rank evaluates at the same step
            control.should_training_stop = True
