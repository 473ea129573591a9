"""Reading a run's durable event log (``metrics.jsonl``) into what a page shows: progress, curves, log.

The log is the source of truth for a run's curves, so a page that was closed, reloaded or lost its
connection re-attaches by reading it again; a run trained by the CLI in another process shows the same
way. `LogFollower` reads only the bytes appended since its last call, so following a live run every
second or two costs next to nothing however long the run is.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.events import DataStats, Done, Evaluation, Event, HealthFlag, Note, Progress, Status, TrainLog, parse

ETA_MIN_STEPS = 5
"""Steps measured (after the first) before the page shows an ETA."""


@dataclass
class RunView:
    """Everything a page shows of one run, built by applying its events in order."""

    status: str = "waiting"
    """The latest phase: preparing data, loading model, training, evaluating, saving, or the final status."""
    message: str = ""
    finished: bool = False
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    elapsed: float = 0.0
    eta: float | None = None
    """Seconds left at the rate measured over the recent steps, evaluations included (`measured_eta`); None until
    ETA_MIN_STEPS steps after the first were measured (the first step carries the warm-up)."""
    marks: list[tuple[int, float]] = field(default_factory=list, repr=False)
    """(step, elapsed) of each progress event since training began: what the ETA is measured from."""
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    grad_norm: list[tuple[int, float]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    """Validation evaluations during training: step, epoch, loss, accuracy, f1_macro, f1/<label>, ..."""
    test: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """The `data` event: split stats, label names, fingerprint."""
    log: list[str] = field(default_factory=list)
    """Human-readable lines: phases, notes, evaluations, health warnings, the end."""
    health: HealthFlag | None = None
    """The run is not learning (collapsed, diverged): why and what to change (studio/health.py)."""
    started: float | None = None
    events: int = 0

    def apply(self, event: Event) -> None:
        t = event.time
        self.events += 1
        self.started = self.started or t
        if isinstance(event, Status):
            self.status = event.status or self.status
            self._line(t, event.message or self.status)
        elif isinstance(event, Note):
            self._line(t, event.message)
        elif isinstance(event, Progress):
            self.step = int(event.step or 0)
            self.max_steps = int(event.max_steps or self.max_steps)
            self.epoch = float(event.epoch or 0.0)
            self.elapsed = float(event.elapsed or 0.0)
            if self.step <= 0 or (self.marks and self.elapsed < self.marks[-1][1]):  # training (re)began
                self.marks.clear()
            if self.step > 0:
                self.marks.append((self.step, self.elapsed))
            self.eta = measured_eta(self.marks, self.max_steps)
        elif isinstance(event, TrainLog):
            for key, series in (("loss", self.train_loss), ("learning_rate", self.learning_rate),
                                ("grad_norm", self.grad_norm)):  # fmt: skip
                if isinstance(event.values.get(key), (int, float)):
                    series.append((event.step, float(event.values[key])))
        elif isinstance(event, Evaluation):
            if event.split == "test":
                self.test = dict(event.metrics)
                self._line(t, "test: " + _metric_line(self.test))
            else:
                where = {"step": event.step, "epoch": event.epoch}
                values = {**{k: v for k, v in where.items() if v is not None}, **event.metrics}
                self.evals.append(values)
                self._line(t, f"evaluation at step {event.step}: " + _metric_line(values))
        elif isinstance(event, HealthFlag):
            self.health = event
            self._line(t, "warning: " + event.line)
        elif isinstance(event, DataStats):
            self.data = {"stats": event.stats, "label_names": event.label_names, "fingerprint": event.fingerprint}
        elif isinstance(event, Done):
            self.finished = True
            self.status = event.status or "done"
            self.message = event.message
            self._line(t, f"{self.status}: {self.message}")

    def _line(self, t: float, text: str) -> None:
        if text:
            self.log.append(f"{time.strftime('%H:%M:%S', time.localtime(t))}  {text}")

    @property
    def fraction(self) -> float:
        return min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0

    def latest_eval(self) -> dict[str, Any]:
        return self.evals[-1] if self.evals else {}


def measured_eta(marks: list[tuple[int, float]], max_steps: int) -> float | None:
    """Seconds left for `max_steps` at the rate of the recent steps: from the mark halfway through the time
    measured so far to the last one (wall time, so the evaluations in it count). None until ETA_MIN_STEPS steps
    after the first mark: the first step's time is the warm-up, not the rate."""
    if not marks or marks[-1][0] - marks[0][0] < ETA_MIN_STEPS:
        return None
    step, elapsed = marks[-1]
    middle = (marks[0][1] + elapsed) / 2
    start = max((m for m in marks if m[1] <= middle and step - m[0] >= ETA_MIN_STEPS), key=lambda m: m[0])
    rate = (elapsed - start[1]) / (step - start[0])
    return round(rate * max(max_steps - step, 0), 1)


def _metric_line(values: dict[str, Any]) -> str:
    parts = [f"{k} {values[k]:.4f}" for k in ("accuracy", "f1_macro", "f1_weighted", "loss") if k in values]
    return ", ".join(parts) or "(no metrics)"


def view_of(events: list[Event]) -> RunView:
    view = RunView()
    for event in events:
        view.apply(event)
    return view


class LogFollower:
    """Follows one ``metrics.jsonl``: each `refresh()` applies only the lines appended since the last one.

    A line being written while we read (no newline yet) is left for the next refresh. Thread-safe: several
    pages may follow the same run through one follower.
    """

    def __init__(self, path: Path):
        self.path = path
        self.view = RunView()
        self._offset = 0
        self._lock = threading.Lock()

    def refresh(self) -> RunView:
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
            except FileNotFoundError:
                return self.view
            end = chunk.rfind(b"\n") + 1
            for raw in chunk[:end].splitlines():
                try:
                    obj = json.loads(raw)
                except ValueError:  # a damaged line (disk full, killed mid-write) must not hide the rest
                    continue
                event = parse(obj) if isinstance(obj, dict) else None
                if event is not None:
                    self.view.apply(event)
            self._offset += end
            return self.view
