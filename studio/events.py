"""What a run tells the world while it trains: one dataclass per kind of event.

A run publishes events on its queue (in-process listeners: the page's job slot, the CLI's printer) and appends
each to its folder's ``metrics.jsonl`` as one JSON object a line, the durable log a reloaded page or another
process reads back (`studio/runlog.py`). The line format is flat, ``{"kind": ..., "time": ..., <fields>}``, and
stays readable by older and newer code: `parse` ignores fields it does not know and keeps extra metrics
(``f1/<label>``, the Trainer's own figures) in the event's `metrics` or `values`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Event:
    """Base of every event: when it happened. Subclasses name their `kind` (the JSON line's "kind")."""

    kind: ClassVar[str] = ""
    time: float = field(default_factory=time.time, kw_only=True)

    def fields(self) -> dict[str, Any]:
        """The event's own fields as the JSON line holds them (flat)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "time"}

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "time": round(self.time, 3), **self.fields()}, default=float)

    @property
    def line(self) -> str:
        """What the run's readable log (log.txt) says of it; '' for events it does not list."""
        return ""


@dataclass
class Status(Event):
    """A phase change: preparing data, loading model, training, evaluating, saving (or launching, for a run
    in another process)."""

    kind: ClassVar[str] = "status"
    status: str
    message: str = ""

    @property
    def line(self) -> str:
        return self.message or self.status


@dataclass
class Note(Event):
    """Something a user should know: data sizes, parameter counts, what a speed profile changed, fallbacks."""

    kind: ClassVar[str] = "note"
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    """Figures that came with the note (the model note's parameter counts)."""

    def fields(self) -> dict[str, Any]:
        return {"message": self.message, **self.values}

    @property
    def line(self) -> str:
        return self.message


@dataclass
class DataStats(Event):
    """The prepared dataset: rows and labels per split, token lengths (`data.dataset_stats`)."""

    kind: ClassVar[str] = "data"
    stats: dict[str, Any]
    label_names: list[str]
    fingerprint: str


@dataclass
class Progress(Event):
    kind: ClassVar[str] = "progress"
    step: int
    max_steps: int
    epoch: float
    elapsed: float
    eta: float | None = None


@dataclass
class TrainLog(Event):
    """One of the Trainer's training logs: loss, learning rate, grad norm (and whatever else it logged)."""

    kind: ClassVar[str] = "log"
    step: int
    epoch: float
    values: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, **self.values}


@dataclass
class Evaluation(Event):
    """Metrics of a validation pass during training (step, epoch), or of the final test (split "test")."""

    kind: ClassVar[str] = "eval"
    metrics: dict[str, Any]
    """accuracy, f1_macro, f1_weighted, loss, f1/<label>, runtime figures ..."""
    step: int | None = None
    epoch: float | None = None
    split: str | None = None
    """"test" for the final test metrics; None for validation during training."""

    def fields(self) -> dict[str, Any]:
        head: dict[str, Any] = {"split": self.split} if self.split else {"step": self.step, "epoch": self.epoch}
        return {**head, **self.metrics}


@dataclass
class HealthFlag(Event):
    """The run is not learning (studio/health.py): it collapsed onto one class or diverged; why, and what to
    change. Raised once, when the evidence is in; the verdict is also recorded in eval.json and the registry."""

    kind: ClassVar[str] = "health"
    flag: str
    """"collapsed" or "diverged"."""
    reason: str
    advice: str = ""
    step: int | None = None

    @property
    def line(self) -> str:
        return f"{self.flag}: this run {self.reason}" + (f": {self.advice}" if self.advice else "")


@dataclass
class Done(Event):
    kind: ClassVar[str] = "done"
    status: str
    message: str = ""
    seconds: float | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "message": self.message}
        return out if self.seconds is None else {**out, "seconds": self.seconds}

    @property
    def line(self) -> str:
        return self.message or self.status


KINDS: dict[str, type[Event]] = {
    c.kind: c for c in (Status, Note, DataStats, Progress, TrainLog, Evaluation, HealthFlag, Done)
}


def parse(obj: dict[str, Any]) -> Event | None:
    """The event a JSON line (already decoded) holds; None for a kind this code does not know."""
    kind = KINDS.get(str(obj.get("kind")))
    if kind is None:
        return None
    rest = {k: v for k, v in obj.items() if k not in ("kind", "time")}
    t = float(obj.get("time") or time.time())
    if kind is Note:
        return Note(str(rest.pop("message", "")), rest, time=t)
    if kind is TrainLog:
        return TrainLog(int(rest.pop("step", 0) or 0), float(rest.pop("epoch", 0.0) or 0.0), rest, time=t)
    if kind is Evaluation:
        split = rest.pop("split", None)
        step, epoch = rest.pop("step", None), rest.pop("epoch", None)
        return Evaluation(rest, step=step, epoch=epoch, split=split, time=t)
    known = {f.name for f in dataclasses.fields(kind)} - {"time"}
    try:
        return kind(**{k: v for k, v in rest.items() if k in known}, time=t)
    except TypeError:  # a line missing a required field (written by hand, or cut off): not an event
        return None
