"""Grids on a Ray cluster: each run of a grid is a Ray task that asks for a GPU (or 1/workers of one), and Ray
places it on a node that has one free, runs it again when its worker dies, and queues the rest.

The run itself trains as for a local grid: the task starts ``python -m studio train --run-id ID`` through
`launch.ChildRun` (on the node Ray picked, pinned to the GPU Ray gave it), so Stop, logs and the registry's rows
behave as for any run. What this module adds:

- the driver (`execute`, in the process running the grid) reserves each run's id (`Registry.new_id`) and hands it
  to the task, so every attempt of one point trains under one id: a point never has two rows;
- a task that finds its run's row already there is a retry: the worker of an earlier attempt died (node lost,
  process killed), and its training process with it (`ChildRun(die_with_parent=True)`). The run is marked
  `interrupted` and resumed from its last complete checkpoint (`train.checkpoint_steps`) with
  ``python -m studio resume ID``; without one it trains again from the start, in the same folder;
- the runs folder must be the same path on every node (NFS or another shared filesystem), as for multi-node
  runs: the task refuses to train when the driver's reserved folder is not there. Across machines the registry
  should be a server database (STUDIO_REGISTRY_URL), which the driver's environment passes on to the tasks
  (`FORWARDED_ENV`).

Completed points are skipped before anything is submitted (`sweep.Sweep`), as for a local grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.config import RunConfig
from studio.errors import ConfigError, RunNotFoundError, StudioError
from studio.registry import Registry, RunRecord

if TYPE_CHECKING:
    from studio.sweep import Point, Sweep

ADDRESS_ENV = "STUDIO_RAY_ADDRESS"
"""The cluster the app's Compare tab (and `sweep` without --ray) sends grids to, when set."""
FORWARDED_ENV = ("STUDIO_REGISTRY_URL", "STUDIO_CACHE_DIR", "STUDIO_DDP_ON_CPU", "MLFLOW_TRACKING_URI",
                 "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")  # fmt: skip
"""The driver's settings the runs need on every node (set in its environment: passed to Ray's workers)."""
WORKER_DIED = "its Ray worker died (node lost or process killed); Ray runs it again"


@dataclass(frozen=True)
class RayPlacement:
    """Where and how a grid's runs go on a Ray cluster."""

    address: str
    """The head's host:port (`ray start --head` prints it), "auto" (the cluster this machine has joined, or
    RAY_ADDRESS) or "local" (a one-machine cluster started for this grid and stopped after it)."""
    workers: int = 1
    """Runs at a time per GPU: each asks Ray for 1/workers of one. On a cluster without GPUs, per CPU slot."""
    max_retries: int = 3
    """How often Ray runs a run again after its worker died."""

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ConfigError("ray", "needs the cluster's address (host:port of its head), auto or local")
        if self.workers < 1:
            raise ConfigError("workers", f"must be at least 1 (got {self.workers})")
        if self.max_retries < 0:
            raise ConfigError("retries", f"must be 0 or more (got {self.max_retries})")

    @classmethod
    def from_env(cls, workers: int = 1) -> RayPlacement | None:
        """The placement STUDIO_RAY_ADDRESS asks for (None: unset, grids run on this machine)."""
        address = os.environ.get(ADDRESS_ENV, "").strip()
        return cls(address, workers) if address else None


@dataclass(frozen=True)
class RayOutcome:
    """How one run's task ended (its last attempt)."""

    run_id: str | None
    """None: stopped before it trained (nothing kept)."""
    status: str
    message: str
    node: str
    """The host the run ended on."""
    resumed_from: str | None = None
    """The checkpoint it continued from after an earlier attempt's worker died."""
    restarted: bool = False
    """An earlier attempt's worker died before its first checkpoint: it trained again from the start."""


# ---- on a worker ---------------------------------------------------------------------------------------------
def train_point(config: RunConfig, runs_dir: str, run_id: str) -> RayOutcome:
    """The Ray task of one grid point: train it under `run_id` (reserved by the driver) in a child process, or,
    on a retry, take over the run an earlier attempt left (module docstring)."""
    from studio.launch import ChildRun

    host = socket.gethostname()
    folder = Path(runs_dir) / run_id
    if not folder.is_dir():
        raise StudioError(f"the runs folder {runs_dir} is not shared with node {host} (run {run_id}'s folder is "
                          "not there): mount it at the same path on every node of the cluster")  # fmt: skip
    registry = Registry(runs_dir)
    prior = _row(registry, run_id)
    if prior is not None and prior.status in ("completed", "failed", "stopped"):  # it ended; the worker died after
        return RayOutcome(run_id, prior.status, prior.message or "", host)
    resumed_from, restarted = None, False
    if prior is not None:
        resumed_from = _take_over(registry, run_id)
        restarted = resumed_from is None
    elif any(folder.iterdir()):  # an attempt died between writing the folder and the row: start clean
        shutil.rmtree(folder)
        folder.mkdir()
    # The GPU Ray gave this task is in CUDA_VISIBLE_DEVICES already: the child inherits it.
    child = ChildRun(config, registry, run_id=run_id, resume=resumed_from is not None, die_with_parent=True)
    child.start()
    try:
        while child.is_alive():
            child.wait(0.5)
    except KeyboardInterrupt:  # ray.cancel: the grid was stopped while this run was loading
        child.stop()
    result = child.wait()
    assert result is not None
    return RayOutcome(result.run_id, result.status, result.message or "", host, resumed_from, restarted)


def _row(registry: Registry, run_id: str) -> RunRecord | None:
    try:
        return registry.get(run_id)
    except RunNotFoundError:
        return None


def _take_over(registry: Registry, run_id: str) -> str | None:
    """An earlier attempt of this task left run `run_id` `running` or `interrupted`: its worker died, and its
    training process with it. Mark it interrupted; the checkpoint to resume from, or None when it had none (then
    the row and files are removed, the folder kept reserved, and the run trains again from the start)."""
    from studio.checkpoints import last_checkpoint

    registry.update(run_id, status="interrupted", message=WORKER_DIED)
    checkpoint = last_checkpoint(registry.run_dir(run_id))
    if checkpoint is not None:
        return checkpoint.name
    registry.delete(run_id)
    (registry.runs_dir / run_id).mkdir(exist_ok=True)
    return None


# ---- the driver ----------------------------------------------------------------------------------------------
@dataclass
class _Submitted:
    point: Point
    run_id: str
    since: float
    began: bool = False


def connect(placement: RayPlacement) -> bool:
    """Join the cluster (or start the local one); True when this call connected (`ray.shutdown` after)."""
    token = _use_token_if_here()  # before Ray's import, which reads RAY_AUTH_MODE
    try:
        import ray
    except ImportError:
        raise StudioError("grids on a Ray cluster need Ray: pip install 'ray>=2.40,<3'") from None
    if ray.is_initialized():
        return False
    _check_reachable(placement.address)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    options: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"env_vars": env}}
    if placement.address == "local":
        options["include_dashboard"] = False
    try:
        ray.init(address=placement.address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        hint = "" if token or placement.address == "local" else (
            "; if the head has a token (~/.ray/auth_token: Ray enables token authentication when it finds one), "
            "copy it to the same file here or set RAY_AUTH_TOKEN")  # fmt: skip
        raise StudioError(
            f"no Ray cluster at {placement.address} ({reason}): start one with `ray start --head` "
            f"and join nodes with `ray start --address HEAD:PORT`, or use --ray local{hint}"
        ) from None
    return True


def _use_token_if_here() -> bool:
    """Send Ray's authentication token when this machine has one. `ray start --head` turns token authentication on
    by itself when the head has ~/.ray/auth_token (which any local `ray.init()` writes), but `ray.init(address=...)`
    sends the token only with RAY_AUTH_MODE=token, so the connection failed after 20 s of retries ("Could not find
    any running Ray instance"). A cluster without authentication ignores a token (tests/test_ray_sweep.py). Ray
    has no public call for "is a token here", so its three documented places are read here, before Ray's import
    (or its config is read again, as Ray's own `ray.init()` does). An explicit RAY_AUTH_MODE is left as set."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if not os.environ.get("RAY_AUTH_TOKEN") and not (Path(path).is_file() and Path(path).read_text().strip()):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:  # imported already: its cached config read the mode then (as Ray's own ray.init does)
        with contextlib.suppress(ImportError, AttributeError):
            from ray._raylet import Config

            Config.initialize("")
    return True


def _check_reachable(address: str) -> None:
    """Refuse a HOST:PORT nothing answers on at once (Ray itself retries for minutes before it gives up)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise StudioError(f"--ray takes the head's HOST:PORT (as `ray start --head` prints it), auto or local; "
                          f"got {address!r}")  # fmt: skip
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise StudioError(f"no Ray cluster at {address} ({e.strerror or e}): start one with `ray start --head "
                          f"--port {port}` on {host}, or use --ray local") from None  # fmt: skip


def task_options(placement: RayPlacement, resources: dict[str, float]) -> tuple[dict[str, Any], int]:
    """(the Ray options of one run's task, how many runs the cluster trains at once). A run asks for 1/workers of
    a GPU (no CPU slot: the GPUs are what is shared), or on a cluster without GPUs 1/workers of a CPU slot."""
    share = 1 / placement.workers
    gpus = int(resources.get("GPU", 0))
    if gpus:
        options = {"num_gpus": share, "num_cpus": 0}
    else:
        options = {"num_cpus": share}
    slots = (gpus or int(resources.get("CPU", 0))) * placement.workers
    return {**options, "max_retries": placement.max_retries, "retry_exceptions": False}, max(slots, 1)


def execute(sweep: Sweep, pending: list[Point], placement: RayPlacement) -> None:
    """Run `pending` points of `sweep` on the cluster, following them until all ended (or the grid was stopped)."""
    import ray

    connected = connect(placement)
    try:
        options, slots = task_options(placement, ray.cluster_resources())
        sweep.state.slots = slots
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        sweep.on_event("cluster", {"address": placement.address, "nodes": nodes, "slots": slots,
                                   "runs_dir": str(sweep.registry.runs_dir)})  # fmt: skip
        remote = ray.remote(train_point)
        waiting: dict[Any, _Submitted] = {}
        for point in pending:
            if sweep.stopping:
                break
            run_id = sweep.registry.new_id(point.config.name)
            config = dataclasses.replace(point.config, description=point.key)
            ref = remote.options(name=f"studio-train-{run_id}", **options).remote(config, str(sweep.registry.runs_dir),
                                                                                  run_id)  # fmt: skip
            waiting[ref] = _Submitted(point, run_id, time.time())
        _follow(sweep, waiting)
    finally:
        if connected:
            ray.shutdown()


def _follow(sweep: Sweep, waiting: dict[Any, _Submitted]) -> None:
    import ray

    stopping = False
    while waiting:
        ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=1.0)
        for ref in ready:
            _finish(sweep, waiting.pop(ref), ref)
        for sub in waiting.values():
            if not sub.began and _row(sweep.registry, sub.run_id) is not None:  # it trains (data and model loaded)
                sub.began, sub.since = True, time.time()
                sweep.record_start(sub.point)
        if sweep.stopping and not stopping:
            stopping = True
            _stop_all(sweep, waiting)


def _stop_all(sweep: Sweep, waiting: dict[Any, _Submitted]) -> None:
    """Runs training stop as any run stops (the STOP file: they evaluate and save); the others are cancelled (one
    still loading ends its child, keeping nothing)."""
    import ray

    from studio.training import request_stop

    for ref, sub in waiting.items():
        if sub.began:
            with contextlib.suppress(StudioError):  # it has just ended
                request_stop(sweep.registry, sub.run_id)
        else:
            ray.cancel(ref)


def _finish(sweep: Sweep, sub: _Submitted, ref: Any) -> None:
    """Record how a task ended in the sweep's state (`Sweep.record_end`), as a local run's end is."""
    import ray

    if not sub.began:
        sweep.record_start(sub.point)
    seconds = time.time() - sub.since
    try:
        outcome: RayOutcome = ray.get(ref)
    except ray.exceptions.TaskCancelledError:  # queued, or loading (its child ended): nothing kept, unless it had begun
        record = _row(sweep.registry, sub.run_id)
        if record is None:
            sweep.registry.release_id(sub.run_id)
            sweep.record_end(sub.point, seconds, "stopped", "the grid was stopped before this run trained", None)
        else:
            sweep.record_end(sub.point, seconds, record.status, record.message, record.id)
        return
    except ray.exceptions.RayTaskError as e:  # the task's own error (e.g. the runs folder is not shared)
        cause = getattr(e, "cause", None) or e
        run_id = sub.run_id if _row(sweep.registry, sub.run_id) else None
        sweep.record_end(sub.point, seconds, "failed", f"{type(cause).__name__}: {cause}"[:500], run_id)
        return
    except ray.exceptions.RayError as e:  # its worker died more often than Ray retries
        _end_lost(sweep, sub, seconds, e)
        return
    if outcome.resumed_from or outcome.restarted:
        how = f"resumed from {outcome.resumed_from}" if outcome.resumed_from else "no checkpoint: trained again"
        sweep.on_event("retried", {"point": sub.point.key, "run_id": outcome.run_id, "node": outcome.node,
                                   "how": f"its first worker died; {how} on {outcome.node}"})  # fmt: skip
    sweep.record_end(sub.point, seconds, outcome.status, outcome.message, outcome.run_id)


def _end_lost(sweep: Sweep, sub: _Submitted, seconds: float, error: Exception) -> None:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    message = f"its Ray worker died and Ray's retries ran out ({type(error).__name__}: {reason})"
    record = _row(sweep.registry, sub.run_id)
    if record is None:
        sweep.registry.release_id(sub.run_id)
    elif record.status in ("running", "interrupted"):
        sweep.registry.update(sub.run_id, status="interrupted", message=message)
    sweep.record_end(sub.point, seconds, "failed", message, record.id if record else None)
