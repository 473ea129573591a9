"""One training at a time, independent of any page: the app's job slot.

`Jobs` owns the single training run (one GPU trains one run; a second Start is refused with a message naming
the run that trains): a `Run` in this process, or a `launch.ChildRun` on several GPUs, both used through
`training.TrainingRun`. The run lives in its own thread, not in a web request, so closing
the tab, reloading or a dropped connection changes nothing; a page asks `view()` for what to draw and gets
it from the run's durable ``metrics.jsonl`` (or, in the seconds before the run has a folder, from the
events the run has published so far).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from studio.config import RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.events import Done
from studio.registry import Registry
from studio.runlog import LogFollower, RunView
from studio.training import Run, TrainingRun


@dataclass
class Job:
    """A run started by this process. `key` names it before the run has an id (data and model loading)."""

    key: str
    run: TrainingRun
    """In this process (`training.Run`) or in child processes (`launch.ChildRun`)."""
    started: float = field(default_factory=time.time)
    early: RunView = field(default_factory=RunView)
    """Events seen on the run's queue: the view before the run has a folder and a metrics.jsonl."""
    drainer: threading.Thread | None = None
    """The thread that mirrors the queue into `early` (it ends soon after the run)."""

    @property
    def run_id(self) -> str | None:
        return self.run.id

    def alive(self) -> bool:
        return self.run.is_alive()


class Jobs:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._followers: dict[str, LogFollower] = {}
        self._measuring: str | None = None
        """What a probe or range test holding the slot is doing (said to whoever asks for the device)."""
        self._sweep: Any = None

    # ---- control -------------------------------------------------------------------------------------
    def start(self, config: RunConfig, gpus: int = 1) -> Job:
        """Start training `config` in a background thread, or, on `gpus` > 1 GPUs, in child processes
        (`launch.ChildRun`: torchrun, data-parallel); raise StudioError when one already trains."""
        if gpus > 1:
            from studio.distributed import require_gpus
            from studio.launch import ChildRun

            require_gpus(gpus, "GPUs for this run")
            return self._launch(lambda: ChildRun(config, self.registry, processes=gpus))
        return self._launch(lambda: Run(config, self.registry))

    def resume(self, run_id: str) -> Job:
        """Continue the interrupted run `run_id` from its last checkpoint (`Run.resuming`), as `start` trains."""
        return self._launch(lambda: Run.resuming(self.registry, run_id))

    def _launch(self, make_run: Callable[[], TrainingRun]) -> Job:
        with self._lock:
            self._refuse_if_busy()
            run = make_run()
            job = Job(uuid.uuid4().hex[:12], run)
            self._current = job
            run.start()
            job.drainer = threading.Thread(target=self._drain, args=(job,), name=f"events-{job.key}", daemon=True)
            job.drainer.start()
            return job

    def probe(self, config: RunConfig, num_labels: int = 2) -> Any:
        """Measure a few real training steps of `config` (`studio.probe.probe`), holding the slot meanwhile."""
        from studio.probe import probe

        with self._measure("a memory probe is measuring a few training steps; wait for it (seconds to a minute)"):
            return probe(config, num_labels)

    def lr_find(self, config: RunConfig, steps: int | None = None) -> Any:
        """The learning-rate range test of `config` (`studio.lr_find.lr_find`), holding the slot meanwhile; its
        tokenized splits are cached where runs cache them, so the training that follows reuses them."""
        from studio.lr_find import DEFAULT_STEPS, lr_find

        with self._measure("a learning-rate range test is training ~100 steps; wait for it (a minute or a few)"):
            return lr_find(config, steps=steps or DEFAULT_STEPS, cache_dir=self.registry.runs_dir / ".cache")

    @contextlib.contextmanager
    def _measure(self, what: str) -> Iterator[None]:
        """Hold the slot for a short measurement in the caller's thread (refused while anything trains)."""
        with self._lock:
            self._refuse_if_busy()
            self._measuring = what
        try:
            yield
        finally:
            self._measuring = None

    def start_sweep(self, grid: Any, workers: int = 1) -> Any:
        """Run a grid (`studio.sweep.Sweep`) in the background, holding the slot: one run at a time here, or
        one process per GPU on a machine with several, `workers` per GPU (`studio.sweep.device_slots`); on the
        Ray cluster STUDIO_RAY_ADDRESS names when it is set (`studio.ray_sweep`), joined here."""
        from studio.ray_sweep import RayPlacement, connect
        from studio.sweep import Sweep, device_slots

        ray = RayPlacement.from_env(workers)
        slots = None if ray else device_slots("auto", workers)  # bad input is refused before the slot is taken
        if ray:
            connect(ray)  # an unreachable cluster too; it stays joined while the app runs
        with self._lock:
            self._refuse_if_busy()
            self._sweep = Sweep(grid, self.registry, slots=slots, ray=ray).start()
            return self._sweep

    def sweep(self) -> Any:
        """The grid started last by this process (running or finished), if any."""
        return self._sweep

    def stop_sweep(self) -> str:
        sweep = self._sweep
        if sweep is None or sweep.state.finished:
            raise StudioError("no grid is running")
        sweep.stop()
        return "stopping the grid: the current run evaluates and saves what it trained; start it again to resume"

    def _refuse_if_busy(self) -> None:
        """Called under the lock: the one place that keeps two trainings off one device."""
        busy = self._busy_message()
        if busy:
            raise StudioError(busy)

    def busy(self) -> str | None:
        """Why a Start would be refused now (None: the slot is free)."""
        return self._busy_message()

    def _busy_message(self) -> str | None:
        sweep = self._sweep
        if sweep is not None and not sweep.state.finished:
            s = sweep.state
            return (f"grid {sweep.grid.name} is running (run {s.done + s.skipped + s.failed + 1}/{s.total}); "
                    "it holds the device: stop the grid or wait")  # fmt: skip
        if self._measuring:
            return self._measuring
        job = self._current
        if job is not None and job.alive():
            return (f"a run is already training ({job.run_id or job.run.config.name}); one run trains at a time: "
                    "stop it or wait for it to finish")  # fmt: skip
        for record in self.registry.list(status="running"):  # e.g. the CLI training in another process
            return f"run {record.id} is training in another process (pid {record.pid}); wait for it or stop it there"
        return None

    def stop(self) -> str:
        """Ask the current run to stop; it evaluates and saves what it trained. Raises when nothing trains."""
        job = self._current
        if job is None or not job.alive():
            raise StudioError("nothing is training: there is no run to stop")
        if job.run.stop_requested:
            return "stop already requested: the run is finishing its step, then evaluates and saves"
        job.run.stop()
        return "stopping: the run finishes its step, then evaluates on the test split and saves what it trained"

    def current(self) -> Job | None:
        """The job started last by this process (alive or finished), if any."""
        return self._current

    def active(self) -> Job | None:
        job = self._current
        return job if job is not None and job.alive() else None

    # ---- what a page draws -----------------------------------------------------------------------------
    def run_id(self, ref: str) -> str | None:
        """The run id a job key or run id names (None: this process's job has no run folder yet)."""
        return _run_id(self._current, ref)

    def view(self, ref: str) -> RunView:
        """The view of a job key or a run id: from the run's metrics.jsonl once it has a folder."""
        job = self._current
        run_id = _run_id(job, ref)
        if run_id is None:
            if job.drainer is not None and not job.alive():  # the run ended: its last events are being mirrored
                job.drainer.join(timeout=2.0)
            return job.early
        with self._lock:
            follower = self._followers.get(run_id)
            if follower is None:
                follower = self._followers[run_id] = LogFollower(self.registry.run_dir(run_id) / "metrics.jsonl")
                if len(self._followers) > 32:  # keep memory bounded on a long-lived server
                    self._followers.pop(next(iter(self._followers)))
        view = follower.refresh()
        if not view.finished and view.events and not (job and job.run_id == run_id and job.alive()):
            # The log of a run that is not training here: trust the registry for how it ended.
            try:
                record = self.registry.get(run_id)
            except RunNotFoundError:
                return view
            if record.status not in ("running",):
                view.finished, view.status, view.message = True, record.status, record.message or ""
        return view

    def _drain(self, job: Job) -> None:
        """Mirror the run's queue into `job.early` until the run ends (the queue is read by nobody else)."""
        while True:
            try:
                event = job.run.events.get(timeout=0.5)
            except queue.Empty:
                if not job.alive():
                    return
                continue
            job.early.apply(event)
            if isinstance(event, Done):
                return


def _run_id(job: Job | None, ref: str) -> str | None:
    return job.run_id if job is not None and ref == job.key else ref
