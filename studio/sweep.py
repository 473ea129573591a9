"""Grids of runs: a base config plus axes, expanded into runs with stable ids, run in order, resumable.

A grid preset (``presets/grids/*.yaml``)::

    version: 1
    name: goemotions-grid
    base: {...}                      # a RunConfig (as in a preset), or `base: quick_demo` (a preset name/path)
    axes:
      model.name: [bert-base, qwen2.5-1.5b]        # a config field and its values
      data.balance.num_labels: [2, 4, 8, 16]
      method:                                      # a named axis: each value sets several fields
        lora-attention: {method.name: lora, method.placement: attention}
        ia3: {method.name: ia3}
      seed: [42, 43]

Every combination of the axes is one *point*, in the order the axes are written (the last axis varies
fastest). A point's identity is its config hash, so a grid resumes by skipping points whose config already
has a completed run in the registry, whatever the order or the grid's name. One failed run is recorded as
failed and the grid goes on; `stop()` stops the current run and the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studio.config import RunConfig
from studio.errors import ConfigError
from studio.presets import GRIDS_DIR, resolve
from studio.registry import Registry, RunRecord

METRICS = ("accuracy", "f1_macro", "f1_weighted", "peak_memory_mb", "train_seconds", "trainable_params")


@dataclass(frozen=True)
class Point:
    index: int
    labels: dict[str, Any]
    """axis -> the value's label (a value, or a named variant's name)."""
    config: RunConfig

    @property
    def key(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items())


@dataclass
class Grid:
    name: str
    base: RunConfig
    axes: dict[str, list[tuple[Any, list[str]]]]
    """axis -> [(label, overrides)] in order."""
    description: str = ""

    @classmethod
    def from_yaml(cls, path: str | Path) -> Grid:
        path = resolve(path, GRIDS_DIR, "grid")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError("", f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        return cls.from_dict(data, where=path.name)

    @classmethod
    def from_dict(cls, data: Any, where: str = "grid") -> Grid:
        if not isinstance(data, dict) or "axes" not in data or "base" not in data:
            raise ConfigError("", f"{where}: a grid needs `base` (a config or a preset name) and `axes`")
        unknown = set(data) - {"version", "name", "description", "base", "axes"}
        if unknown:
            raise ConfigError(sorted(unknown)[0], "unknown key; a grid takes: version, name, description, base, axes")
        base = data["base"]
        if isinstance(base, str):
            base = RunConfig.from_yaml(resolve(base))
        else:
            base = RunConfig.from_dict(base)
        name = str(data.get("name") or base.name)
        base = base.with_overrides([f"name={name}"])
        if not isinstance(data["axes"], dict) or not data["axes"]:
            raise ConfigError("axes", "needs at least one axis: a config field and a list of values")
        axes = {str(k): _axis(str(k), v) for k, v in data["axes"].items()}
        grid = cls(name, base, axes, str(data.get("description", "")))
        grid.points()  # every combination must be a valid config: fail now, naming the axis values
        return grid

    def points(self) -> list[Point]:
        out = []
        names = list(self.axes)
        for i, combo in enumerate(itertools.product(*(self.axes[a] for a in names))):
            overrides = [o for _, values in combo for o in values]
            labels = {a: label for a, (label, _) in zip(names, combo, strict=True)}
            try:
                config = self.base.with_overrides(overrides)
            except ConfigError as e:
                raise ConfigError(e.field, f"{str(e).removeprefix(f'{e.field}: ')} (grid point {labels})") from None
            out.append(Point(i, labels, config))
        return out


def _axis(name: str, values: Any) -> list[tuple[Any, list[str]]]:
    if isinstance(values, dict):  # named variants: {label: {path: value, ...}}
        out = []
        for label, sets in values.items():
            if not isinstance(sets, dict) or not sets:
                raise ConfigError(f"axes.{name}.{label}", "a named value needs a mapping of fields to set")
            out.append((str(label), [f"{k}={_dump(v)}" for k, v in sets.items()]))
        return out
    if not isinstance(values, list) or not values:
        raise ConfigError(f"axes.{name}", "needs a non-empty list of values (or a mapping of named variants)")
    return [(v, [f"{name}={_dump(v)}"]) for v in values]


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


# ---- running -------------------------------------------------------------------------------------------
@dataclass
class SweepState:
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    current: Point | None = None
    run_ids: dict[int, str] = field(default_factory=dict)
    """point index -> run id (completed earlier, or run now)."""
    seconds: list[float] = field(default_factory=list)
    finished: bool = False

    @property
    def eta(self) -> float | None:
        left = self.total - self.done - self.skipped - self.failed
        return statistics.mean(self.seconds) * left if self.seconds else None


class Sweep:
    """Runs a grid's points one after another (in this thread with `execute`, or in the background)."""

    def __init__(self, grid: Grid, registry: Registry, on_event: Callable[[str, dict], None] | None = None):
        self.grid, self.registry = grid, registry
        self.points = grid.points()
        self.state = SweepState(total=len(self.points))
        self.on_event = on_event or (lambda kind, data: None)
        self._stop = threading.Event()
        self._run: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sweep:
        self._thread = threading.Thread(target=self.execute, name=f"sweep-{self.grid.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._run is not None:
            self._run.stop()

    def wait(self, timeout: float | None = None) -> SweepState:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def execute(self) -> SweepState:
        try:
            self._execute()
        finally:  # whatever happens, the grid is over: the app's training slot must not stay taken
            self.state.current, self.state.finished = None, True
        return self.state

    def _execute(self) -> None:
        from studio.training import Run

        completed = {r.config_hash: r.id for r in self.registry.list(status="completed")}
        for point in self.points:
            if self._stop.is_set():
                break
            done_before = completed.get(point.config.config_hash())
            if done_before:  # resume: this exact config already has a completed run
                self.state.skipped += 1
                self.state.run_ids[point.index] = done_before
                self.on_event("skipped", {"point": point.key, "run_id": done_before})
                continue
            self.state.current = point
            self.on_event("start", {"point": point.key, "index": point.index, "total": self.state.total})
            t0 = time.time()
            self._run = Run(dataclasses.replace(point.config, description=point.key), self.registry)
            result = self._run.execute()
            self.state.seconds.append(time.time() - t0)
            if result.run_id:
                self.state.run_ids[point.index] = result.run_id
            if result.status == "failed":
                self.state.failed += 1
            else:
                self.state.done += 1
            self.on_event("end", {"point": point.key, "status": result.status, "message": result.message,
                                  "run_id": result.run_id})  # fmt: skip

    @property
    def current_run(self) -> Any:
        """The `Run` training now, if any (its id appears once data and model are loaded)."""
        run = self._run
        return run if run is not None and self.state.current is not None else None


# ---- aggregation ---------------------------------------------------------------------------------------
def aggregate(grid: Grid, registry: Registry, over: str = "seed") -> list[dict[str, Any]]:
    """One row per group of points that differ only in `over` (the seed): mean, std and n of each metric,
    the run ids, and the group's `config`.

    Only completed runs of the grid's points count (matched by config hash, so runs from a CLI `train` of
    the same config count too).
    """
    records: dict[str, RunRecord] = {}
    for r in registry.list(status="completed"):
        records.setdefault(r.config_hash, r)  # newest first: the latest completed run of a config
    groups: dict[tuple, list[RunRecord]] = {}
    labels_of: dict[tuple, dict[str, Any]] = {}
    configs: dict[tuple, RunConfig] = {}
    for point in grid.points():
        record = records.get(point.config.config_hash())
        key_labels = {k: v for k, v in point.labels.items() if k != over}
        key = tuple(key_labels.items())
        labels_of[key] = key_labels
        configs.setdefault(key, point.config)
        groups.setdefault(key, [])
        if record is not None:
            groups[key].append(record)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = {**labels_of[key], "n": len(members)}
        for metric in METRICS:
            values = [getattr(m, metric) for m in members if getattr(m, metric) is not None]
            row[f"{metric}_mean"] = statistics.mean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else None
        row["run_ids"] = [m.id for m in members]
        row["config"] = configs[key]  # the group's config (its first seed): derived facts such as the rank
        rows.append(row)
    return rows
