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

Where runs go (`slots`): by default one run at a time in this process (the UI's background thread). With
several GPUs, or `workers` > 1, each run is a separate process (`python -m studio train`, `launch.ChildRun`)
pinned to one GPU with CUDA_VISIBLE_DEVICES, one per slot, under the run id the grid chose for it; every
process writes to the same registry (SQLite in WAL mode, one folder per run), so the grid's bookkeeping is
the registry's, as for a single process. A run that fails, even before training, ends with a row that says
why. On a Ray cluster (`ray`: a `ray_sweep.RayPlacement`), each run is a Ray task that starts the same process
on the node Ray picked, and Ray runs it again when its worker dies (`studio.ray_sweep`).
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from studio.config import RunConfig
from studio.errors import ConfigError
from studio.launch import ChildRun
from studio.presets import GRIDS_DIR, resolve
from studio.registry import Registry, RunRecord

if TYPE_CHECKING:
    from studio.ray_sweep import RayPlacement

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
            if isinstance(base, dict) and "version" not in base and "version" in data:
                base = {**base, "version": data["version"]}  # the grid's format is its inline base's
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
def device_slots(gpus: str = "auto", workers: int = 1) -> list[str | None] | None:
    """Where a grid's runs go: None = one at a time in this process; else one entry per concurrent run,
    the CUDA_VISIBLE_DEVICES value of its process (None: not pinned, e.g. on a CPU-only machine).

    gpus: "auto" (every GPU NVML sees), "none", or a comma list of indices ("0,1"). workers: concurrent runs
    per GPU (more than one pays for small models, whose steps leave most of a large GPU idle).
    """
    if workers < 1:
        raise ConfigError("workers", f"must be at least 1 (got {workers})")
    if gpus == "auto":
        from studio.hardware import detect

        device = detect()
        ids = [str(i) for i in range(device.count)] if device.kind == "cuda" else []
    elif gpus in ("", "none"):
        ids = []
    else:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not all(g.isdigit() for g in ids):
            raise ConfigError("gpus", f"takes GPU indices like 0,1 (or auto / none), got {gpus!r}")
    if workers == 1 and (not ids or (gpus == "auto" and len(ids) == 1)):
        return None  # one at a time, nothing to pin: in this process (a named GPU gets a pinned process)
    # Interleaved (0, 1, 0, 1, ...): the first runs of a grid spread over the GPUs before doubling up.
    return [g for _ in range(workers) for g in ids] if ids else [None] * workers


@dataclass
class SweepState:
    total: int
    slots: int = 1
    """Runs that train at once."""
    done: int = 0
    skipped: int = 0
    failed: int = 0
    current: Point | None = None
    """The point started last (one of `running` when several train at once)."""
    running: dict[int, Point] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)
    """point index -> run id (completed earlier, or run now)."""
    seconds: list[float] = field(default_factory=list)
    finished: bool = False

    @property
    def eta(self) -> float | None:
        left = self.total - self.done - self.skipped - self.failed
        return statistics.mean(self.seconds) * left / self.slots if self.seconds else None


class Sweep:
    """Runs a grid's points (in this thread with `execute`, or in the background with `start`): one after
    another in this process, `slots` at a time in separate processes (see `device_slots`), or as tasks on a
    Ray cluster (`ray`, which then decides how many train at once)."""

    def __init__(self, grid: Grid, registry: Registry, on_event: Callable[[str, dict], None] | None = None,
                 slots: list[str | None] | None = None, ray: RayPlacement | None = None):  # fmt: skip
        self.grid, self.registry = grid, registry
        self.points = grid.points()
        self.slots = slots
        self.ray = ray
        self.state = SweepState(total=len(self.points), slots=len(slots) if slots else 1)
        self.on_event = on_event or (lambda kind, data: None)
        self._stop = threading.Event()
        self._run: Any = None
        self._children: dict[int, ChildRun] = {}
        """point index -> its `launch.ChildRun`, while it trains."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweep:
        self._thread = threading.Thread(target=self.execute, name=f"sweep-{self.grid.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._run is not None:
            self._run.stop()
        with self._lock:
            for child in self._children.values():  # each run evaluates and saves what it trained, then exits
                child.stop()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called."""
        return self._stop.is_set()

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
        pending = []
        for point in self.points:
            done_before = completed.get(point.config.config_hash())
            if done_before:  # resume: this exact config already has a completed run
                self.state.skipped += 1
                self.state.run_ids[point.index] = done_before
                self.on_event("skipped", {"point": point.key, "run_id": done_before})
            else:
                pending.append(point)
        if self.ray is not None:
            from studio.ray_sweep import execute

            execute(self, pending, self.ray)
            return
        if self.slots:
            self._execute_in_processes(pending, self.slots)
            return
        for point in pending:
            if self._stop.is_set():
                break
            self.record_start(point)
            t0 = time.time()
            self._run = Run(dataclasses.replace(point.config, description=point.key), self.registry)
            result = self._run.execute()
            self.record_end(point, time.time() - t0, result.status, result.message, result.run_id)

    def record_start(self, point: Point) -> None:
        with self._lock:
            self.state.current = point
            self.state.running[point.index] = point
        self.on_event("start", {"point": point.key, "index": point.index, "total": self.state.total})

    def record_end(self, point: Point, seconds: float, status: str, message: str | None, run_id: str | None) -> None:
        with self._lock:
            self.state.running.pop(point.index, None)
            self.state.seconds.append(seconds)
            if run_id:
                self.state.run_ids[point.index] = run_id
            if status == "failed":
                self.state.failed += 1
            elif status != "stopped" or run_id:  # a run stopped before it had a folder trained nothing
                self.state.done += 1
        self.on_event("end", {"point": point.key, "status": status, "message": message, "run_id": run_id})

    # ---- one process per run -------------------------------------------------------------------------
    def _execute_in_processes(self, pending: list[Point], slots: list[str | None]) -> None:
        free: queue.Queue[str | None] = queue.Queue()
        for slot in slots:
            free.put(slot)
        with ThreadPoolExecutor(len(slots)) as pool:
            for point in pending:
                slot = free.get()  # waits for a run to end
                if self._stop.is_set():
                    break
                pool.submit(self._run_process, point, slot, free)

    def _run_process(self, point: Point, slot: str | None, free: queue.Queue) -> None:
        """Train one point as `python -m studio train` (`launch.ChildRun`, pinned to GPU `slot`), then give the
        slot back."""
        t0 = time.time()
        try:
            child = ChildRun(dataclasses.replace(point.config, description=point.key), self.registry, gpu=slot)
            with self._lock:  # registered before `start` is announced: a stop() then reaches it
                if self._stop.is_set():
                    return
                self._children[point.index] = child.start()
            self.record_start(point)
            result = child.wait()
            assert result is not None
            with self._lock:
                self._children.pop(point.index, None)
            if result.run_id is None:  # stopped while the process was still starting up
                self.record_end(
                    point, time.time() - t0, "stopped", "the grid was stopped before this run trained", None
                )
            else:
                self.record_end(point, time.time() - t0, result.status, result.message, result.run_id)
        except Exception as e:  # noqa: BLE001 - one point's trouble (e.g. a full disk) must not end the grid
            self.record_end(point, time.time() - t0, "failed", f"{type(e).__name__}: {e}", None)
        finally:
            free.put(slot)

    @property
    def current_run(self) -> Any:
        """The in-process `Run` training now, if any (its id appears once data and model are loaded); None
        when runs train in their own processes."""
        run = self._run
        return run if run is not None and self.state.current is not None else None


# ---- aggregation ---------------------------------------------------------------------------------------
def grid_runs(grid: Grid, registry: Registry) -> list[RunRecord]:
    """The registry's runs of the grid's points, any status, newest first (matched by config hash)."""
    hashes = {p.config.config_hash() for p in grid.points()}
    return [r for r in registry.list() if r.config_hash in hashes]


def aggregate(grid: Grid, registry: Registry, over: str = "seed") -> list[dict[str, Any]]:
    """One row per group of points that differ only in `over` (the seed): see `aggregate_runs`.

    Only completed runs of the grid's points count (matched by config hash, so runs from a CLI `train` of
    the same config count too).
    """
    records: dict[str, RunRecord] = {}
    for r in registry.list(status="completed"):
        records.setdefault(r.config_hash, r)  # newest first: the latest completed run of a config
    return aggregate_runs(grid, records, over)


def aggregate_runs(grid: Grid, records: dict[str, RunRecord], over: str = "seed") -> list[dict[str, Any]]:
    """One row per group of points that differ only in `over`: mean, std and n of each metric over the runs
    that learned, the run ids, and the group's `config`. `records`: config hash -> the run of that point.

    A run flagged as not learning (`health_flag`: collapsed, diverged) is left out of the means and counted:
    `runs` is every run of the group, `n` those averaged, `flags` run id -> flag of the others, and `note`
    says it ("mean of 1 of 2 seeds; 1 collapsed"; "" when none was left out).
    """
    groups: dict[tuple, list[RunRecord]] = {}
    labels_of: dict[tuple, dict[str, Any]] = {}
    configs: dict[tuple, RunConfig] = {}
    flags: dict[str, str] = {}
    for point in grid.points():
        record = records.get(point.config.config_hash())
        key_labels = {k: v for k, v in point.labels.items() if k != over}
        key = tuple(key_labels.items())
        labels_of[key] = key_labels
        configs.setdefault(key, point.config)
        groups.setdefault(key, [])
        if record is not None:
            groups[key].append(record)
            flag = health_flag(record, point.config)
            if flag:
                flags[record.id] = flag
    rows = []
    for key, members in groups.items():
        kept = [m for m in members if m.id not in flags]
        left_out = {m.id: flags[m.id] for m in members if m.id in flags}
        row: dict[str, Any] = {**labels_of[key], "n": len(kept), "runs": len(members), "flags": left_out,
                               "note": health_note(len(kept), len(members), list(left_out.values()), over)}  # fmt: skip
        for metric in METRICS:
            values = [getattr(m, metric) for m in kept if getattr(m, metric) is not None]
            row[f"{metric}_mean"] = statistics.mean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else None
        row["run_ids"] = [m.id for m in kept] + list(left_out)  # the runs that learned first (curves take [0])
        row["config"] = configs[key]  # the group's config (its first seed): derived facts such as the rank
        rows.append(row)
    return rows


def health_flag(record: RunRecord, config: RunConfig) -> str | None:
    """The run's flag (collapsed, diverged) or None: as recorded, or for a run recorded before the check
    existed (flag NULL), from its test scores when the config says how many labels it has."""
    from studio.health import flag_from_scores

    if record.flag is not None:
        return record.flag or None
    data = config.data
    k = data.balance.num_labels if data.balance else len(data.label_names) if data.label_names else None
    return flag_from_scores(record.accuracy, record.f1_macro, k)


def health_note(kept: int, runs: int, flags: list[str], over: str = "seed") -> str:
    """ "mean of 1 of 2 seeds; 1 collapsed" when runs were left out of a mean, else ""."""
    if not flags:
        return ""
    counts = ", ".join(f"{flags.count(f)} {f}" for f in dict.fromkeys(flags))
    what = "seeds" if over == "seed" else "runs"
    return f"mean of {kept} of {runs} {what}; {counts}" if kept else f"no mean: {counts} of {runs} {what}"
