"""A training run: the recipe's phases (studio/recipe.py) in a background thread, its events, its registry row.

`Run` calls the phases of a `ClassifierRecipe` in order and owns everything around them: the thread, the
registry row and run folder (created once data and model are ready, so bad input writes nothing), and the
events (studio/events.py), published on a queue for in-process listeners and appended to the run's
``metrics.jsonl``, the durable log a reloaded page or another process re-reads. `stop()` sets a flag that the
recipe's Trainer callback turns into ``control.should_training_stop``: the run then evaluates and saves what
it has and ends as `stopped`.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from studio import distributed
from studio.config import RunConfig
from studio.errors import StudioError
from studio.events import Done, Event, HealthFlag, Note, Status
from studio.failures import without_frames
from studio.recipe import STOP_FILE
from studio.registry import Registry, RunRecord, write_json_atomic
from studio.results import RunSummary

if TYPE_CHECKING:
    from studio.health import HealthMonitor
    from studio.recipe import ClassifierRecipe
    from studio.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str | None
    """None when the run ended before training began (nothing was written)."""
    status: Literal["completed", "stopped", "failed", "interrupted"]
    """`interrupted`: the process training it died without finishing (a child process: `launch.ChildRun`)."""
    message: str
    summary: RunSummary | None
    """eval.json's content: test/validation metrics, efficiency, reproducibility (None when it has none)."""


@runtime_checkable
class TrainingRun(Protocol):
    """What the app's job slot (`jobs.Jobs`) and a grid need of a training run, whether it trains in this
    process (`Run`) or in child processes (`launch.ChildRun`)."""

    config: RunConfig
    events: queue.Queue[Event]
    """What happens, in order; the last event is `done` (status, message)."""

    @property
    def id(self) -> str | None:
        """The run's id once it has its registry row and folder (None while data and model load)."""
        ...

    @property
    def stop_requested(self) -> bool: ...

    def start(self) -> TrainingRun:
        """Begin training in the background; returns self."""
        ...

    def stop(self) -> None:
        """Ask the run to stop after its current step; it still evaluates and saves what it trained."""
        ...

    def is_alive(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """Wait for the end (at most `timeout` seconds): how the run ended, or None while it trains."""
        ...


class Run:
    """One training run. `start()` trains in a background thread; `execute()` trains in this one."""

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        *,
        resume: tuple[str, Path] | None = None,
        run_id: str | None = None,
    ):
        self.config = config
        self.resume = resume
        """(run id, checkpoint folder) when this continues an interrupted run (`Run.resuming`)."""
        self.assigned_id = run_id
        """The id the run's row and folder get, chosen by the process that launched this one (`train --run-id`,
        `launch.ChildRun`), which shows that row whatever happens: a failure before training records it too.
        None: the registry draws the id, and bad input writes nothing."""
        self.trained: RunConfig = config
        """What trains: `config` after its speed profile (recipe.plan_speed); the run folder's config.yaml."""
        self.registry = registry
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
        self.health: HealthMonitor | None = None
        """Judges the run's events once its labels are known (studio/health.py): flags a run not learning."""
        self.tracker: Tracker | None = None
        """Mirrors the run into MLflow once it has its folder, when MLFLOW_TRACKING_URI is set (studio/tracking.py)."""

    @property
    def id(self) -> str | None:
        return self.record.id if self.record else None

    @classmethod
    def resuming(cls, registry: Registry, run_id: str) -> Run:
        """The run that continues interrupted run `run_id` from its last complete checkpoint, in its own folder
        and row, with the config it trained with; the Trainer restores the weights, optimizer, scheduler,
        random states and the place in the data, so it ends where the uninterrupted run would have. Only rank 0
        of a multi-GPU resume reads the row (the others never open the registry: they follow its folder, and
        end with it if rank 0 refuses)."""
        from studio.checkpoints import last_checkpoint

        if distributed.world().writes:
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
        return cls(config, registry, resume=(run_id, checkpoint))

    def _create_record(self, disk_mb: float | None = None, collective: bool = True) -> None:
        """The run's registry row and folder, after checking the disk has `disk_mb` free. Across processes
        rank 0 creates them and the others learn the row (or rank 0's error) from it through torch.distributed:
        they never open the registry (a server database would see a connection per GPU of the cluster).
        `collective=False` (a crash on one rank, which the others do not share) creates them on rank 0 alone."""
        if self.record is not None:
            return
        record, error = None, None
        if self.world.writes:
            try:
                if disk_mb is not None:
                    self.registry.check_room(disk_mb)
                record = self.registry.get(self._new_record())
            except StudioError as e:
                if not (collective and self.world.distributed):
                    raise
                error = str(e)
        if collective:
            record, error = distributed.broadcast(self.world, (record, error))
        if error:
            raise StudioError(error)
        if record is None:  # a crash on a rank that does not write: nothing to record
            return
        self.record = record
        self.dir = self.registry.run_dir(record.id)
        with self._log_lock:
            pending, self._pending = self._pending, []
            for event in pending:
                self._append(event)
        if self.world.writes:  # rank 0 tracks the run, as it writes its log
            from studio.tracking import tracker_for

            self.tracker = tracker_for(self.trained, record.id, self.dir, self.emit)

    def _record_early_failure(self) -> None:
        """Bad input found before the run had its row, in a run whose launcher chose its id: record it, so the
        launcher's page or grid shows the reason from its row and log, as for any failed run."""
        try:
            self._create_record(collective=False)
        except (StudioError, OSError) as e:  # e.g. the runs folder cannot be written: the launcher records the end
            log.warning("run %s: its failure could not be recorded: %s", self.assigned_id, e)

    def _new_record(self) -> str:
        if self.resume:  # the interrupted run's own row and folder, owned by this process now
            run_id = self.resume[0]
            self.registry.update(run_id, status="running", pid=os.getpid(), host=socket.gethostname(), message="")
            return run_id
        return self.registry.create(self.config, trained=self.trained, run_id=self.assigned_id).id

    # ---- control -------------------------------------------------------------------------------------
    def start(self) -> Run:
        self._thread = threading.Thread(target=self.execute, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step; it still evaluates and saves what it trained."""
        if not self._stop.is_set():
            self._stop.set()
            self.emit(Note("stop requested: finishing the current step, then evaluating and saving"))

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

    def emit(self, event: Event) -> None:
        self.events.put(event)
        with self._log_lock:
            if self.dir is None:
                self._pending.append(event)
            else:
                self._append(event)
        if self.tracker is not None:
            self.tracker.observe(event)
        flagged = self.health.observe(event) if self.health is not None else None
        if flagged is not None:
            from studio.health import to_event

            self.emit(to_event(flagged))
            if self.trained.train.stop_on_collapse and not self._stop.is_set():
                self._stop.set()
                self.emit(Note("train.stop_on_collapse: stopping after this step, then evaluating and saving"))

    def _append(self, event: Event) -> None:
        assert self.dir is not None
        if not self.world.writes:  # rank 0 writes the run's log; the others' events stay on their queue
            return
        write_event(self.dir, event)

    # ---- phases --------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        """Run every phase here; any failure ends the run as `failed` with a readable message."""
        from studio.recipe import ClassifierRecipe

        t0 = time.time()
        recipe = ClassifierRecipe(self.config, emit=self.emit, stop_requested=lambda: self.stop_requested,
                                  world=self.world, cache_dir=self.registry.runs_dir / ".cache")  # fmt: skip
        crash: BaseException | None = None
        outcome: tuple[str, str, RunSummary | None] = ("failed", "", None)
        try:
            outcome = self._phases(recipe, t0)
        except StudioError as e:
            outcome = ("failed", str(e), None)
            if self.assigned_id is not None:
                self._record_early_failure()
        except Exception as e:  # any crash becomes a readable `failed` run; the traceback goes to log.txt
            self._create_record(collective=False)  # a crash is a bug report: keep its folder before training too
            if self.dir is not None and self.world.writes:
                with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
                    f.write(traceback.format_exc())
            else:  # another rank of a multi-GPU run: its own output is where its traceback goes
                traceback.print_exc()
            crash = without_frames(e)
        finally:
            num_labels = recipe.num_labels
            recipe.cleanup(self.dir)
        if crash is not None:  # explained after cleanup: an out-of-memory's advice reads the memory freed
            from studio.failures import explain_failure

            outcome = ("failed", explain_failure(crash, self.trained, num_labels), None)
        return self._finish(*outcome, t0)

    def _phases(self, recipe: ClassifierRecipe, t0: float) -> tuple[str, str, RunSummary | None]:
        not_started = ("stopped", "stopped before training began", None)
        distributed.setup(self.world)
        self.emit(Status("preparing data", f"loading {self.config.data.source}"))
        with distributed.main_first(self.world):  # rank 0 fills the data and tokenization caches first
            recipe.setup_data()
        if distributed.any_rank(self.world, self._stop.is_set()):
            return not_started
        recipe.plan_speed()
        self.trained = recipe.trained
        self.health = _monitor(recipe)
        self.emit(Status("loading model", f"loading {self.config.model.name}"))
        with distributed.main_first(self.world):
            recipe.setup_model()
        if distributed.any_rank(self.world, self._stop.is_set()):
            return not_started
        self._create_record(disk_mb=recipe.disk_needed_mb())  # the disk is checked before anything is written
        assert self.dir is not None
        recipe.setup_trainer(self.dir, self.id)
        self.emit(Status("training", "training"))
        train_out = recipe.train(self.resume[1] if self.resume else None)
        stopped = self._stop.is_set()
        self.emit(Status("evaluating", "evaluating on the test split"))
        summary = recipe.evaluate(train_out, self.id, self.dir, t0)
        self.emit(Status("saving", "saving the model"))
        recipe.save(self.dir)
        summary.health = self.health.final(summary) if self.health is not None else None
        headline, health = summary.test.headline(), summary.health
        if health is not None and health.flag == "untrained":  # judged on the test split: shown as live flags are
            from studio.health import to_event

            self.emit(to_event(health))
        said = f"; {health.flag}: {health.reason}" if health is not None and health.flag else ""
        if stopped:
            return "stopped", f"stopped early; {headline}{said}", summary
        return "completed", f"{headline}{said}", summary

    def _finish(self, status: str, message: str, summary: RunSummary | None, t0: float) -> RunResult:
        done = Done(status, message, round(time.time() - t0, 1))
        if self.record is None:  # ended before training began (bad input, or stopped): nothing was written
            self.emit(done)
            self._result = RunResult(None, status, message, None)  # type: ignore[arg-type]
            return self._result
        assert self.dir is not None
        if not self.world.writes:  # rank 0 records how the run ended
            self.emit(done)
            self._result = RunResult(self.id, status, message, summary)  # type: ignore[arg-type]
            return self._result
        if summary is not None:
            summary.status = status
            write_json_atomic(self.dir / "eval.json", summary.to_dict())  # written last: the run is complete
        self.registry.finish(self.id, status, message, summary)
        if self.tracker is not None:  # results, plots and model to MLflow; a failure there is a warning
            self.emit(Status("tracking", "logging results, plots and model to MLflow"))
            self.tracker.finish(status, summary, self.registry)
            done.time = time.time()  # the log's last line: when the run ended, uploads included
        self.emit(done)
        self._result = RunResult(self.id, status, message, summary)  # type: ignore[arg-type]
        return self._result


def _monitor(recipe: ClassifierRecipe) -> HealthMonitor:
    from studio.health import HealthMonitor

    assert recipe.data is not None
    t = recipe.trained
    return HealthMonitor(list(recipe.data.label_names), t.method.name, t.train.learning_rate,
                         multi_label=recipe.data.multi_label)  # fmt: skip


def write_event(folder: Path, event: Event) -> None:
    """Append `event` to a run folder's metrics.jsonl, and phases, notes and the end to its readable log.txt."""
    with open(folder / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(event.to_json() + "\n")
    if isinstance(event, (Status, Note, HealthFlag, Done)):
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        with open(folder / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{stamp} {event.kind}: {event.line}\n")


def request_stop(registry: Registry, run_id: str) -> str:
    """Ask run `run_id`, training in any process (or several: a multi-GPU run), to stop after its current step:
    a STOP file in its folder, which the run looks for once a second. It evaluates and saves what it trained."""
    record = registry.get(run_id)
    if record.status != "running":
        raise StudioError(f"run {run_id} is {record.status}, not training: nothing to stop")
    (registry.run_dir(run_id) / STOP_FILE).touch()
    return f"stop requested: run {run_id} finishes its step, then evaluates and saves what it trained"
