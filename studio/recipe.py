"""The recipe of a classification run: data, model, Trainer, training, evaluation, saving, cleanup.

`ClassifierRecipe` holds what each phase makes as typed attributes (torchtune's recipe shape) and talks to the
outside only through the two callables it is given: `emit(event)` and `stop_requested()`. `training.Run` owns
the thread, the registry row, the run folder and the events, and calls the phases in order:

    setup_data -> plan_speed -> setup_model -> (Run: row and folder) -> setup_trainer -> train -> evaluate
    -> save -> cleanup

Imported only when a run executes (it pulls in transformers).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.config import BNB_OPTIMIZERS, RunConfig
from studio.distributed import World
from studio.events import DataStats, Evaluation, Event, Note
from studio.results import Calibration, DataReport, Efficiency, Layout, MemoryRecord, RunSummary, SplitMetrics

if TYPE_CHECKING:
    from studio.data import PreparedData
    from studio.hardware import Device
    from studio.metrics import PeakMemory
    from studio.models import ModelBundle
    from studio.speed_plan import Plan

STOP_FILE = "STOP"
"""A file of this name in a training run's folder asks it to stop (`training.request_stop` writes it; `Run` looks
for it, cleanup removes it)."""


class ClassifierRecipe:
    """One run's phases and what they make. Each phase needs the ones before it to have run."""

    def __init__(
        self, config: RunConfig, *, emit: Callable[[Event], None], stop_requested: Callable[[], bool],
        world: World, cache_dir: Path,
    ):  # fmt: skip
        self.config = config
        """The config as asked."""
        self.trained = config
        """What trains: `config` after its speed profile (`plan_speed`); the run folder's config.yaml."""
        self.emit, self.stop_requested, self.world = emit, stop_requested, world
        self.cache_dir = cache_dir
        """Where tokenized splits are cached (the runs folder's .cache)."""
        self.data: PreparedData | None = None
        self.train_counts: dict[str, int] = {}
        """Rows of each label in the training split (class weights and the imbalance note read them)."""
        self.plan: Plan | None = None
        self.device: Device | None = None
        """The device the plan was made for (`plan_speed`)."""
        self.bundle: ModelBundle | None = None
        self.tokenized: Any = None
        self.trainer: Any = None
        self.layout: Layout | None = None
        self.memory: PeakMemory | None = None
        self.predictions: dict[str, Any] = {}
        """The Trainer's prediction output per split ("test", and "validation" when the run validates)."""
        self.calibration: Calibration | None = None
        """Temperature scaling fitted in `evaluate` (None when skipped); `save` writes its calibration.json."""
        self.thresholds: Any = None
        """Multi-label: the per-label decision thresholds tuned in `evaluate` (`multilabel.Thresholds`); `save`
        writes its thresholds.json."""
        self._expandable = False
        self._early: _EarlyTokens | None = None
        """The splits tokenizing in the background since `setup_data` (`setup_model` takes them)."""

    @property
    def num_labels(self) -> int:
        return len(self.data.label_names) if self.data is not None else 2

    # ---- data and model --------------------------------------------------------------------------------
    def setup_data(self) -> None:
        from studio import data

        self.data = prepared = data.prepare(self.config.data, self.config.seed)
        counts = {name: len(split) for name, split in prepared.splits.items()}
        names = prepared.label_names
        self.emit(Note(
            f"data: {counts['train']} train / {counts['validation']} validation / {counts['test']} test rows, "
            f"{len(names)} labels ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"))  # fmt: skip
        for note in prepared.report.get("notes", []):
            self.emit(Note(note))
        self._weigh_classes()
        self._early = _EarlyTokens.start(self.config, prepared, self.cache_dir, self.world)

    def _weigh_classes(self) -> None:
        """Count the training split's labels, check `train.class_weights` against them (a ConfigError names an
        unknown label before any model loads), and say when the classes are skewed."""
        from collections import Counter

        from studio.config import MULTI_LABEL_METRICS
        from studio.data import label_ids
        from studio.errors import ConfigError
        from studio.losses import imbalance_note, loss_for

        assert self.data is not None
        names, train = self.data.label_names, self.config.train
        ids = Counter(label_ids(self.data.splits["train"]))
        self.train_counts = {name: ids.get(i, 0) for i, name in enumerate(names)}
        loss_for(train, names, self.train_counts, self.data.multi_label, len(self.data.splits["train"]))
        if not self.data.multi_label and train.metric_for_best in MULTI_LABEL_METRICS:
            said = f"{train.metric_for_best} is a multi-label metric and this data is single-label"
            raise ConfigError("train.metric_for_best", f"{said}; use accuracy, f1_macro or f1_weighted")
        note = imbalance_note(self.train_counts, train)
        if note:
            self.emit(Note(note))

    def plan_speed(self) -> None:
        """The speed profile's plan for this device (studio/speed_plan.py), each choice told as a note."""
        from studio.hardware import detect
        from studio.speed_plan import plan

        assert self.data is not None
        self.device = detect()
        self.plan = result = plan(self.config, self.device, self.num_labels, len(self.data.splits["train"]))
        for line in result.lines():
            self.emit(Note(line if line == result.note else f"speed {result.profile}: {line}"))
        self.trained = result.config
        self._expandable = configure_allocator(self.trained)

    def setup_model(self) -> None:
        """Model bundle and tokenized splits (tokenization needs the model's tokenizer; it is cached)."""
        from transformers import set_seed

        from studio import data
        from studio.models import build_model, require_bitsandbytes

        config, prepared = self.trained, self.data
        assert prepared is not None
        for field_name, what in needs_bitsandbytes(config):
            require_bitsandbytes(field_name, what)
        # The new head (and adapter weights) are initialised from the global RNG: seed it here, or the result
        # depends on what the process did before (the studio's UI process and a fresh CLI process differed).
        set_seed(config.seed)
        rows = len(prepared.splits["train"])
        priors = (
            [self.train_counts.get(n, 0) / max(rows, 1) for n in prepared.label_names] if prepared.multi_label else None
        )
        self.bundle = bundle = build_model(config, prepared.label_names, prepared.task, priors)
        for note in bundle.notes:
            self.emit(Note(note))
        pct = 100 * bundle.trainable_params / max(bundle.total_params, 1)
        counts = {"trainable_params": bundle.trainable_params, "total_params": bundle.total_params}
        self.emit(Note(f"model: {bundle.total_params / 1e6:.1f}M parameters, {bundle.trainable_params / 1e6:.3f}M "
                       f"trainable ({pct:.2f}%)", counts))  # fmt: skip
        early, self._early = self._early, None
        done = early.result() if early is not None else None
        if early is not None and early.made_for != (config.model, config.data.max_length):
            done = None  # the speed plan changed what tokenizes (it does not today): tokenize again
        if done is None:  # not started (several processes) or it failed: here, where a failure reads as usual
            length, cache = config.data.max_length, self.cache_dir
            tokenized, hit = data.tokenize(prepared, bundle.tokenizer, length, cache)
            done = tokenized, hit, data.dataset_stats(prepared, bundle.tokenizer, length, cache)
        self.tokenized, hit, stats = done
        self.emit(Note("tokenized data loaded from cache" if hit else "data tokenized (and cached)"))
        self.emit(DataStats(stats, prepared.label_names, prepared.fingerprint))

    def disk_needed_mb(self) -> float:
        """Disk a run will write: the saved weights (fp32 safetensors: the full model, or the adapter and head)
        plus the two checkpoints the Trainer keeps when it picks the best one, and 50 MB for the tokenizer,
        predictions and logs."""
        assert self.bundle is not None
        config, bundle = self.trained, self.bundle
        params = bundle.total_params if config.method.spec.saves == "model" else bundle.trainable_params
        copies = 3 if config.train.load_best_at_end and config.train.eval_strategy != "no" else 1
        return params * 4 * copies / 2**20 + 50

    # ---- the Trainer -----------------------------------------------------------------------------------
    def setup_trainer(self, run_dir: Path, run_id: str | None) -> None:
        from studio.hf_trainer import build_trainer

        self.trainer, self.layout, self.memory = build_trainer(self, run_dir, run_id)

    def train(self, resume_from: Path | None = None) -> Any:
        """Train (from `resume_from`, a checkpoint folder, when given); the Trainer's TrainOutput."""
        if resume_from is not None:
            self.emit(Note(f"resuming from {resume_from.name} (the last complete checkpoint)"))
        with tokenizers_serial(self.trained.train.dataloader_workers):
            out = self.trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if self.trained.train.torch_compile and self.device is not None:  # inductor's cache now holds this shape:
            from studio import compiled  # the next run compiles warm

            compiled.remember(self.trained, self.device)
        return out

    def evaluate(self, train_out: Any, run_id: str | None, run_dir: Path | None, t0: float) -> RunSummary:
        """Test (and validation) metrics, efficiency, the memory estimate beside the measured peak, provenance."""
        from studio.provenance import reproducibility

        trainer, prepared, bundle, config = self.trainer, self.data, self.bundle, self.trained
        assert prepared is not None and bundle is not None and self.memory is not None
        names = prepared.label_names
        with tokenizers_serial(config.train.dataloader_workers):
            self.predictions["test"] = trainer.predict(self.tokenized["test"], metric_key_prefix="test")
            if config.train.eval_strategy != "no" or prepared.multi_label:  # multi-label tunes thresholds on it
                pred = trainer.predict(self.tokenized["validation"], metric_key_prefix="val")
                self.predictions["validation"] = pred
            self.calibration = self._calibrate()
            if prepared.multi_label:
                self.thresholds = self._tune_thresholds()
            test = self._report("test")
            validation = self._report("validation") if config.train.eval_strategy != "no" else None
        tm = train_out.metrics
        efficiency = Efficiency(
            trainable_params=bundle.trainable_params,
            total_params=bundle.total_params,
            trainable_percent=round(100 * bundle.trainable_params / max(bundle.total_params, 1), 4),
            train_seconds=round(tm.get("train_runtime", 0.0), 2),
            train_samples_per_second=tm.get("train_samples_per_second"),
            total_seconds=round(time.time() - t0, 2),
            steps=trainer.state.global_step,
            epochs=round(trainer.state.epoch or 0.0, 4),
            **self.memory.result(),
        )
        self.emit(Evaluation(test.scalars(), split="test"))
        checkpoint = trainer.state.best_model_checkpoint
        return RunSummary(
            memory=memory_record(config, len(names), efficiency),
            run_id=run_id,
            distributed=self.layout,
            test=test,
            validation=validation,
            best_checkpoint_step=int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None,
            efficiency=efficiency,
            data=DataReport(**_data_report(prepared)),
            reproducibility=reproducibility(config, prepared.fingerprint, run_dir, self.plan),
            calibration=self.calibration,
        )

    def _report(self, split: str) -> SplitMetrics:
        """A split's metrics from its predictions: argmax (single-label), or the tuned thresholds on calibrated
        probabilities (multi-label)."""
        from studio import metrics, multilabel

        assert self.data is not None
        pred, names = self.predictions[split], self.data.label_names
        if not self.data.multi_label:
            return SplitMetrics.from_dict(metrics.full_report(pred.label_ids, pred.predictions, names))
        assert self.thresholds is not None
        probs = self.probabilities(pred.predictions)
        return SplitMetrics.from_dict(
            multilabel.full_report(pred.label_ids, probs, self.thresholds.array(names), names)
        )

    def probabilities(self, logits: Any) -> Any:
        """Calibrated probabilities of `logits` (raw ones when the run is not calibrated): softmax over the
        classes, or a sigmoid per label."""
        from studio.calibration import scaled_probs, sigmoid_probs, temperatures

        assert self.data is not None
        t = temperatures(self.calibration, self.data.label_names)
        if self.data.multi_label:
            return sigmoid_probs(logits, 1.0 if t is None else t)
        return scaled_probs(logits, 1.0 if t is None else t)

    def _tune_thresholds(self) -> Any:
        """Per-label thresholds on the calibrated validation probabilities (studio/multilabel.py); 0.5 for every
        label, with a note, when the validation split is empty."""
        from studio import multilabel
        from studio.calibration import multilabel_coverage

        assert self.data is not None
        names, validation = self.data.label_names, self.predictions.get("validation")
        if validation is None or not len(validation.label_ids):
            self.emit(Note("thresholds not tuned: the validation split is empty (every label is given at 0.5)"))
            return multilabel.Thresholds.default(names)
        found = multilabel.tune_thresholds(self.probabilities(validation.predictions), validation.label_ids, names)
        self.emit(Note(multilabel.summary_line(found), {"thresholds": found.per_label}))
        if self.calibration is not None:
            test = self.predictions["test"]
            probs = self.probabilities(test.predictions)
            self.calibration.coverage = multilabel_coverage(probs, test.label_ids, found.array(names))
        return found

    def _calibrate(self) -> Calibration | None:
        """Temperature scaling fitted on the validation split, judged on test (studio/calibration.py). A run that
        did not validate has its validation split predicted here; an empty one skips calibration with a note."""
        from studio.calibration import calibrate, summary_line

        validation = self.predictions.get("validation")
        if validation is None and len(self.tokenized["validation"]):
            validation = self.trainer.predict(self.tokenized["validation"], metric_key_prefix="calibration")
        if validation is None or not len(validation.label_ids):
            self.emit(Note("calibration skipped: the validation split is empty (predictions stay uncalibrated)"))
            return None
        test = self.predictions["test"]
        if self.data is not None and self.data.multi_label:
            from studio.calibration import calibrate_multilabel

            result = calibrate_multilabel(validation.predictions, validation.label_ids, test.predictions,
                                          test.label_ids, self.data.label_names)  # fmt: skip
        else:
            result = calibrate(validation.predictions, validation.label_ids, test.predictions, test.label_ids)
        self.emit(Note(summary_line(result), {"temperature": result.temperature}))
        return result

    # ---- save and clean up -----------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        """Model (adapter or full weights, safetensors), tokenizer, label map, predictions: each renamed into
        place whole."""
        from studio.registry import write_json_atomic

        trainer, bundle, prepared = self.trainer, self.bundle, self.data
        assert bundle is not None and prepared is not None
        kind = "adapter" if hasattr(trainer.model, "peft_config") else "model"
        fsdp = getattr(trainer, "is_fsdp_enabled", False)
        if fsdp:  # sharded weights: gathering them is a collective every rank joins; the Trainer writes on rank 0
            trainer.save_model(str(run_dir / f".{kind}.tmp"))
        if not self.world.writes:  # rank 0 saves (under DDP every rank holds the same weights)
            return
        for name, writer in ((kind, trainer.model.save_pretrained), ("tokenizer", bundle.tokenizer.save_pretrained)):
            tmp = run_dir / f".{name}.tmp"
            if not (fsdp and name == kind):
                shutil.rmtree(tmp, ignore_errors=True)
                writer(str(tmp))
            tmp.rename(run_dir / name)
        self._save_predictions(run_dir / "predictions.parquet")
        names = prepared.label_names
        write_json_atomic(
            run_dir / "label_map.json",
            {
                "id2label": dict(enumerate(names)),
                "label2id": {n: i for i, n in enumerate(names)},
                "task": prepared.task,
            },
        )
        if self.thresholds is not None:
            from studio import multilabel

            multilabel.write(run_dir, self.thresholds)
        if self.calibration is not None:
            from studio.calibration import CALIBRATION_FILE, file_content

            write_json_atomic(run_dir / CALIBRATION_FILE, file_content(self.calibration))

    def _save_predictions(self, path: Path) -> None:
        """Validation and test predictions with class probabilities (the playground browses the mistakes)."""
        import numpy as np
        import pandas as pd

        from studio.calibration import sigmoid_probs
        from studio.metrics import softmax
        from studio.multilabel import decide

        assert self.data is not None
        frames = []
        multi, names = self.data.multi_label, self.data.label_names
        for split, pred in self.predictions.items():
            logits = np.asarray(pred.predictions, dtype=np.float64)
            probs = sigmoid_probs(logits) if multi else softmax(logits)
            if multi:  # label sets as id lists; decisions as predict makes them (calibrated, tuned thresholds)
                chosen = decide(self.probabilities(logits), self.thresholds.array(names))
                label = [np.flatnonzero(row).tolist() for row in pred.label_ids]
                predicted = [np.flatnonzero(row).tolist() for row in chosen]
            else:
                label, predicted = pred.label_ids.astype(int), probs.argmax(axis=-1)
            frames.append(pd.DataFrame({
                "split": split,
                "text": self.data.splits[split]["text"],
                "label": label,
                "predicted": predicted,
                "probs": list(probs.astype(np.float32)),
                **self._calibrated_column(pred.predictions),
            }))  # fmt: skip
        if frames:
            tmp = path.with_name(f".{path.name}.tmp")
            pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
            tmp.replace(path)

    def _calibrated_column(self, logits: Any) -> dict[str, Any]:
        """``probs_calibrated`` beside the raw ``probs`` (which stay as they were) when the run is calibrated."""
        if self.calibration is None:
            return {}
        import numpy as np

        return {"probs_calibrated": list(self.probabilities(logits).astype(np.float32))}

    def cleanup(self, run_dir: Path | None) -> None:
        """Free memory and drop checkpoints (the final model is saved on its own). Also runs when the model
        failed to load, before the run had a folder."""
        if run_dir is not None and self.world.writes:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            (run_dir / STOP_FILE).unlink(missing_ok=True)
        if self._early is not None:  # the run ended before its model loaded: let the background work finish
            self._early.result()
            self._early = None
        self.trainer = self.bundle = self.tokenized = self.memory = None
        self.predictions = {}
        gc.collect()
        release_device_memory(self._expandable)
        self._expandable = False


_FROZEN = False


def freeze_long_lived() -> None:
    """Once per process, before its run starts: move every object then alive (the imported libraries, some
    600,000 objects) out of the garbage collector's scans (`gc.freeze`). Each full `gc.collect` (the Trainer's at
    train start, `cleanup`'s at the end, Python's own now and then) otherwise walks them all: 0.5-0.7 s each on
    2 CPU cores, over a second of a small run. Collected first, so no garbage is frozen; objects frozen stay
    reference-counted, but a cycle among them that dies later is never freed. So only a process that exists to
    train calls it (the CLI's train and resume, which grids, Ray tasks and multi-GPU runs start), not the app,
    whose Playground models must go when the user loads another."""
    global _FROZEN
    if not _FROZEN:
        gc.collect()
        gc.freeze()
        _FROZEN = True


OVERLAP_MIN_CORES = 4
"""Cores a process needs for `_EarlyTokens` to tokenize beside the plan and model load. On 2 cores shared with
other work (benchmarks/results/setup_time/cpu-as-h200) the overlap measured no gain: the tokenizer's threads
and the main thread's imports take turns on the same cores."""


def _cores() -> int:
    """CPU cores this process may use (macOS has no affinity call: all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class _EarlyTokens:
    """Tokenization and the token-length statistics of a run's splits, in a background thread from the end of
    `setup_data`, while the speed plan and the model load: the Rust tokenizer releases the GIL, so on a machine
    with cores to spare (`OVERLAP_MIN_CORES`) the seconds of tokenizing 20,000 reviews overlap the seconds of
    importing and loading (benchmarks/setup_time.py). The tokenizer is loaded here first (its imports stay in
    this thread); any failure, here or in the thread, leaves the work to `setup_model`, which reports it as it
    always did."""

    def __init__(self, work: Callable[[], tuple[Any, bool, dict]]):
        import threading

        self._out: tuple[Any, bool, dict] | None = None
        self.made_for: tuple[Any, int] | None = None
        """(model config, max_length) it tokenizes for: `setup_model` takes its work only for the same."""
        self._thread = threading.Thread(target=self._run, args=(work,), name="tokenize", daemon=True)

    @classmethod
    def start(cls, config: RunConfig, prepared: PreparedData, cache_dir: Path, world: World) -> _EarlyTokens | None:
        if world.distributed:  # rank 0 fills the cache first (`distributed.main_first`): tokenize in order there
            return None
        if _cores() < OVERLAP_MIN_CORES:  # no core to spare: overlapping only contends
            return None
        try:
            from studio.data import dataset_stats, tokenize
            from studio.models import load_tokenizer, resolve_source

            source = resolve_source(config.model)
            if not Path(source).is_dir():  # a Hub id: no second wait on the network when it cannot be reached
                return None
            tokenizer = load_tokenizer(config.model, source, None)
        except Exception:  # a bad model name or an unreadable tokenizer: build_model says so in its own words
            return None
        max_length = config.data.max_length

        def work() -> tuple[Any, bool, dict]:
            tokenized, hit = tokenize(prepared, tokenizer, max_length, cache_dir)
            return tokenized, hit, dataset_stats(prepared, tokenizer, max_length, cache_dir)

        early = cls(work)
        early.made_for = (config.model, max_length)
        early._thread.start()
        return early

    def _run(self, work: Callable[[], tuple[Any, bool, dict]]) -> None:
        try:
            self._out = work()
        except Exception:  # redone in setup_model, where the error is reported
            self._out = None

    def result(self) -> tuple[Any, bool, dict] | None:
        """(tokenized splits, whether from the cache, data stats) once done; None when it failed."""
        self._thread.join()
        return self._out


def _data_report(prepared: PreparedData) -> dict[str, Any]:
    report = dict(prepared.report)
    known = {k: report.pop(k) for k in ("source", "text_column", "label_column", "rows", "notes") if k in report}
    return {**known, "extra": report, "fingerprint": prepared.fingerprint, "label_names": prepared.label_names}


def memory_record(config: RunConfig, num_labels: int, efficiency: Efficiency) -> MemoryRecord:
    """The estimate the studio shows for this config beside the peak this run measured."""
    from studio.memory import estimate

    try:
        e = estimate(config, num_labels)
    except Exception as err:  # an estimate must never fail a finished run; say why it is missing
        return MemoryRecord(estimate_error=str(err)[:300])
    measured, kind = efficiency.measured_peak()
    return MemoryRecord(
        estimate_mb=round(e.total_mb, 1),
        estimate_parts={k: round(v, 1) for k, v in e.parts.items()},
        measured_mb=measured,
        measured_kind=kind,
        error_pct=round(100 * (e.total_mb - measured) / measured, 2) if measured else None,
        device=e.device.name,
    )


def needs_bitsandbytes(config: RunConfig) -> list[tuple[str, str]]:
    """(field, what) pairs of the config that need bitsandbytes."""
    out = []
    if config.method.quantized:
        out.append(("method.name", f"{config.method.spec.label} ({config.method.bits}-bit)"))
    if config.train.optimizer in BNB_OPTIMIZERS:
        out.append(("train.optimizer", f"the {config.train.optimizer} optimizer"))
    return out


def configure_allocator(config: RunConfig) -> bool:
    """Turn on the CUDA allocator's expandable segments for a run that asks (`train.expandable_segments`),
    before its model loads; True when this run turned them on (cleanup turns them off again, so the process's
    next run allocates as it asks). PyTorch reads the setting at every new segment, so it can change between
    runs of one process; PYTORCH_CUDA_ALLOC_CONF would fix it for the whole process."""
    import torch

    if not (config.train.expandable_segments and torch.cuda.is_available()):
        return False
    _allocator_settings("expandable_segments:True")
    return True


def _allocator_settings(text: str) -> None:
    """torch's allocator settings for this process: through the call torch names since 2.11, where
    `torch.cuda.memory._set_allocator_settings` warns that it is deprecated (a FutureWarning in every GPU run's
    log); both are private, and the older one stays for torch versions without the newer."""
    import torch

    (getattr(torch._C, "_accelerator_setAllocatorSettings", None) or torch.cuda.memory._set_allocator_settings)(text)


def release_device_memory(expandable: bool) -> None:
    """Give the CUDA cache back (and turn off expandable segments this run turned on)."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        if expandable:
            _allocator_settings("expandable_segments:False")


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
