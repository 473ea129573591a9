"""A training run: the HF Trainer in a background thread, talking to the outside through events.

`Run` has clear phases (setup data -> setup model -> train -> evaluate -> save -> cleanup). It publishes
`Event`s on a queue for in-process listeners and appends each to the run's ``metrics.jsonl``, the durable
log a reloaded page or another process re-reads. `stop()` sets a flag that a TrainerCallback turns into
``control.should_training_stop``: the run then evaluates and saves what it has and ends as `stopped`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from studio import distributed
from studio.config import BNB_OPTIMIZERS, RunConfig
from studio.errors import StudioError
from studio.registry import Registry, RunRecord, write_json_atomic

log = logging.getLogger(__name__)

STOP_FILE = "STOP"
"""A file of this name in a training run's folder asks it to stop (`request_stop`)."""

EventKind = Literal["status", "progress", "log", "eval", "note", "data", "done"]


@dataclass
class Event:
    kind: EventKind
    data: dict[str, Any]
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "time": round(self.time, 3), **self.data}, default=float)


@dataclass
class RunResult:
    run_id: str | None
    """None when the run ended before training began (nothing was written)."""
    status: Literal["completed", "stopped", "failed"]
    message: str
    summary: dict[str, Any]
    """eval.json's content: test/validation metrics, efficiency, reproducibility."""


class Run:
    """One training run. `start()` trains in a background thread; `execute()` trains in this one."""

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        *,
        progress_bar: bool = False,
        resume: tuple[str, Path] | None = None,
    ):
        self.config = config
        self.resume = resume
        """(run id, checkpoint folder) when this continues an interrupted run (`Run.resuming`)."""
        self.trained: RunConfig = config
        """What trains: `config` after its speed profile (phases.plan_speed); the run folder's config.yaml."""
        self.registry = registry
        self.progress_bar = progress_bar
        self.events: queue.Queue[Event] = queue.Queue()
        # The run gets its folder and registry row once data and model are ready: bad input (a missing
        # column, an unknown model) fails before anything is written. Earlier events wait in _pending.
        self.record: RunRecord | None = None
        self.dir: Path | None = None
        self._pending: list[Event] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self._log_lock = threading.Lock()
        self.world = distributed.world()
        """This process's rank among a multi-GPU run's processes (one process: rank 0 of 1)."""
        self._stop_file_checked = 0.0

    @property
    def id(self) -> str | None:
        return self.record.id if self.record else None

    @classmethod
    def resuming(cls, registry: Registry, run_id: str, *, progress_bar: bool = False) -> Run:
        """The run that continues interrupted run `run_id` from its last complete checkpoint, in its own folder
        and row, with the config it trained with; the Trainer restores the weights, optimizer, scheduler,
        random states and the place in the data, so it ends where the uninterrupted run would have."""
        from studio.phases import last_checkpoint

        record = registry.get(run_id)
        if record.status != "interrupted":
            raise StudioError(f"run {run_id} is {record.status}: only an interrupted run can be resumed")
        checkpoint = last_checkpoint(registry.run_dir(run_id))
        if checkpoint is None:
            raise StudioError(
                f"run {run_id} has no complete checkpoint to resume from (it trained without "
                "train.checkpoint_steps, or was stopped before its first one): train it again"
            )
        config = RunConfig.from_yaml(registry.run_dir(run_id) / "config.yaml")
        return cls(config, registry, progress_bar=progress_bar, resume=(run_id, checkpoint))

    def _create_record(self, disk_mb: float | None = None, collective: bool = True) -> None:
        """The run's registry row and folder, after checking the disk has `disk_mb` free. Across processes
        rank 0 creates them and the others learn the id (or rank 0's error) from it; `collective=False` (a
        crash on one rank, which the others do not share) creates them on rank 0 alone."""
        if self.record is not None:
            return
        run_id, error = None, None
        if self.world.writes:
            try:
                if disk_mb is not None:
                    self.registry.check_room(disk_mb)
                run_id = self._new_record()
            except StudioError as e:
                if not (collective and self.world.distributed):
                    raise
                error = str(e)
        if collective:
            run_id, error = distributed.broadcast(self.world, (run_id, error))
        if error:
            raise StudioError(error)
        if run_id is None:  # a crash on a rank that does not write: nothing to record
            return
        self.record = self.registry.get(run_id)
        self.dir = self.registry.run_dir(run_id)
        with self._log_lock:
            pending, self._pending = self._pending, []
            for event in pending:
                self._append(event)

    def _new_record(self) -> str:
        if self.resume:  # the interrupted run's own row and folder, owned by this process now
            run_id = self.resume[0]
            self.registry.update(run_id, status="running", pid=os.getpid(), host=socket.gethostname(), message="")
            return run_id
        return self.registry.create(self.config, trained=self.trained).id

    # ---- control -------------------------------------------------------------------------------------
    def start(self) -> Run:
        self._thread = threading.Thread(target=self.execute, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step; it still evaluates and saves what it trained."""
        if not self._stop.is_set():
            self._stop.set()
            self.emit("note", message="stop requested: finishing the current step, then evaluating and saving")

    @property
    def stop_requested(self) -> bool:
        """Whether `stop()` was called here, or a STOP file was left in the run's folder (`request_stop`: the
        UI or `python -m studio stop` for a run in another process; looked for at most once a second)."""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if self.dir is not None and now - self._stop_file_checked >= 1.0:
            self._stop_file_checked = now
            if (self.dir / STOP_FILE).exists():
                self.stop()
        return self._stop.is_set()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunResult | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._result

    def emit(self, kind: EventKind, **data: Any) -> None:
        event = Event(kind, data)
        self.events.put(event)
        with self._log_lock:
            if self.dir is None:
                self._pending.append(event)
            else:
                self._append(event)

    def _append(self, event: Event) -> None:
        assert self.dir is not None
        if not self.world.writes:  # rank 0 writes the run's log; the others' events stay on their queue
            return
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(event.to_json() + "\n")
        if event.kind in ("status", "note", "done"):
            line = event.data.get("message") or event.data.get("status", "")
            stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
            with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
                f.write(f"{stamp} {event.kind}: {line}\n")

    # ---- phases --------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        """Run every phase here; any failure ends the run as `failed` with a readable message."""
        t0 = time.time()
        state: dict[str, Any] = {}
        crash: BaseException | None = None
        outcome: tuple[str, str, dict[str, Any]] = ("failed", "", {})
        try:
            outcome = self._phases(state, t0)
        except StudioError as e:
            outcome = ("failed", str(e), {})
        except Exception as e:  # any crash becomes a readable `failed` run; the traceback goes to log.txt
            self._create_record(collective=False)  # a crash is a bug report: keep its folder before training too
            if self.dir is not None and self.world.writes:
                with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc())
            else:  # another rank of a multi-GPU run: its own output is where its traceback goes
                traceback.print_exc()
            crash = _without_frames(e)
        finally:
            num_labels = len(state["data"].label_names) if "data" in state else 2
            if state:
                from studio.phases import cleanup

                cleanup(self, state)
        if crash is not None:  # explained after cleanup: an out-of-memory's advice reads the memory freed
            from studio.phases import explain_failure

            outcome = ("failed", explain_failure(crash, self.trained, num_labels), {})
        return self._finish(*outcome, t0)

    def _phases(self, state: dict[str, Any], t0: float) -> tuple[str, str, dict[str, Any]]:
        from studio import phases

        not_started = ("stopped", "stopped before training began", {})
        distributed.setup(self.world)
        self.emit("status", status="preparing data", message=f"loading {self.config.data.source}")
        with distributed.main_first(self.world):  # rank 0 fills the data and tokenization caches first
            state["data"] = phases.setup_data(self, self.config)
        if distributed.any_rank(self.world, self._stop.is_set()):
            return not_started
        state["plan"] = phases.plan_speed(self, self.config, state["data"])
        self.trained = state["plan"].config
        state["allocator"] = phases.configure_allocator(self.trained)
        self.emit("status", status="loading model", message=f"loading {self.config.model.name}")
        with distributed.main_first(self.world):
            state["bundle"], state["tokenized"] = phases.setup_model(self, self.trained, state["data"])
        if distributed.any_rank(self.world, self._stop.is_set()):
            return not_started
        # the disk is checked before anything is written
        self._create_record(disk_mb=phases.disk_needed_mb(self.trained, state["bundle"]))
        state["trainer"] = phases.build_trainer(self, self.trained, state)
        checkpoint = str(self.resume[1]) if self.resume else None
        if checkpoint:
            self.emit("note", message=f"resuming from {self.resume[1].name} (the last complete checkpoint)")
        self.emit("status", status="training", message="training")
        with phases.tokenizers_serial(self.trained.train.dataloader_workers):
            train_out = state["trainer"].train(resume_from_checkpoint=checkpoint)
            stopped = self._stop.is_set()
            self.emit("status", status="evaluating", message="evaluating on the test split")
            summary = phases.evaluate(self, self.trained, state, train_out, t0)
        self.emit("status", status="saving", message="saving the model")
        phases.save(self, state)
        accuracy = summary["test"]["accuracy"]
        if stopped:
            return "stopped", f"stopped early; test accuracy {accuracy:.4f}", summary
        return "completed", f"test accuracy {accuracy:.4f}", summary

    def _finish(self, status: str, message: str, summary: dict[str, Any], t0: float) -> RunResult:
        if self.record is None:  # ended before training began (bad input, or stopped): nothing was written
            self.emit("done", status=status, message=message, seconds=round(time.time() - t0, 1))
            self._result = RunResult(None, status, message, {})  # type: ignore[arg-type]
            return self._result
        assert self.dir is not None
        if not self.world.writes:  # rank 0 records how the run ended
            self.emit("done", status=status, message=message, seconds=round(time.time() - t0, 1))
            self._result = RunResult(self.id, status, message, summary)  # type: ignore[arg-type]
            return self._result
        if summary:
            summary["status"] = status
            write_json_atomic(self.dir / "eval.json", summary)  # written last: the run is complete
        test = summary.get("test", {})
        eff = summary.get("efficiency", {})
        self.registry.update(
            self.id,
            status=status,
            message=message,
            finished=time.time(),
            accuracy=test.get("accuracy"),
            f1_macro=test.get("f1_macro"),
            f1_weighted=test.get("f1_weighted"),
            peak_memory_mb=eff.get("peak_memory_mb"),
            train_seconds=eff.get("train_seconds"),
            trainable_params=eff.get("trainable_params"),
            total_params=eff.get("total_params"),
        )
        self.emit("done", status=status, message=message, seconds=round(time.time() - t0, 1))
        self._result = RunResult(self.id, status, message, summary)  # type: ignore[arg-type]
        return self._result


def needs_bitsandbytes(config: RunConfig) -> list[tuple[str, str]]:
    """(field, what) pairs of the config that need bitsandbytes."""
    out = []
    if config.method.quantized:
        out.append(("method.name", f"{config.method.spec.label} ({config.method.bits}-bit)"))
    if config.train.optimizer in BNB_OPTIMIZERS:
        out.append(("train.optimizer", f"the {config.train.optimizer} optimizer"))
    return out


def _without_frames(e: BaseException) -> BaseException:
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


def request_stop(registry: Registry, run_id: str) -> str:
    """Ask run `run_id`, training in any process (or several: a multi-GPU run), to stop after its current step:
    a STOP file in its folder, which the run looks for once a second. It evaluates and saves what it trained."""
    record = registry.get(run_id)
    if record.status != "running":
        raise StudioError(f"run {run_id} is {record.status}, not training: nothing to stop")
    (registry.run_dir(run_id) / STOP_FILE).touch()
    return f"stop requested: run {run_id} finishes its step, then evaluates and saves what it trained"
