"""A grid on a Ray cluster with a worker killed mid-run: runs completed, duplicated, lost; wall time.

    python benchmarks/ray_sweep.py [--out benchmarks/results/ray_sweep/cpu] [--runs 8] [--repeats 1] [--compare]
    python benchmarks/ray_sweep.py --gpu --out DIR     # on the 2-GPU machine, after `source benchmarks/gpu_env.sh`

CPU (default): a local cluster on this machine (`ray.cluster_utils.Cluster`): a head with no CPU slot (it trains
nothing) and two worker nodes of one CPU slot each, standing in for two GPUs. An N-run grid of tiny runs (a
random bert of tests/tiny.py, LoRA, 12 steps, a checkpoint every 3) goes through `Sweep(..., ray=...)`, the code of
`python -m studio sweep GRID --ray ADDRESS`; once a run has a complete checkpoint, the Ray worker training it
is SIGKILLed (its training process dies with it). Counted from the registry: runs completed, points with more than
one row (duplicated), points without a completed run (lost), runs resumed from a checkpoint (their log.txt).
--compare first runs the same grid with `sweep --workers 2` (two processes on this machine, no Ray) and on Ray
with no kill, for the wall times.

--gpu: the same on two GPUs of one host, the real MiniLM-L6 (`quick_demo` preset, full FT on the shipped IMDb
sample, a checkpoint every 25 steps), 8 seeds:
  1. `sweep --gpus 0,1` on this machine (one process per GPU, `device_slots`), no Ray;
  2. on Ray: two worker nodes, each pinned to one GPU (CUDA_VISIBLE_DEVICES=0 / 1, `num_gpus=1`);
  3. on Ray again with one worker killed mid-run.
Wall time of each, and the counts for 3.

Writes ray_sweep.csv, ray_sweep.md and environment.json (CPU model, torch/ray versions, load average sampled
during the runs, date) to --out. Timings on the shared 2-core machine are noisy: the load average is recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from studio.checkpoints import last_checkpoint  # noqa: E402
from studio.hardware import cpu_name  # noqa: E402
from studio.ray_sweep import RayPlacement  # noqa: E402
from studio.registry import Registry  # noqa: E402
from studio.sweep import Grid, Sweep, device_slots  # noqa: E402


def cpu_grid(model_dir: Path, runs: int) -> Grid:
    base = {"name": "ray-bench", "data": {"source": "imdb-sample", "max_samples": 120, "max_length": 32},
            "model": {"name": str(model_dir)}, "method": {"name": "lora", "r": 4},
            "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no",
                      "logging_steps": 3, "checkpoint_steps": 3}}  # fmt: skip
    return Grid.from_dict({"base": base, "axes": {"seed": list(range(1, runs + 1))}})


def gpu_grid(runs: int) -> Grid:
    grid = Grid.from_dict({"name": "ray-bench-gpu", "base": "quick_demo", "axes": {"seed": list(range(1, runs + 1))}})
    grid.base = grid.base.with_overrides(["train.checkpoint_steps=25"])  # as `sweep --set` does
    return grid


def killer(registry: Registry, killed: list[dict], stop: threading.Event, last: str | None = None) -> None:
    """SIGKILL the Ray worker (the parent of the training process) of the first running run with a complete
    checkpoint, and record which (`last`: a checkpoint that is the run's final one, never killed after: the run is
    ending, so a kill then might land after its end). The benchmark's and tests/test_ray_sweep.py's killer."""
    import psutil

    while not stop.is_set():
        for record in registry.list(status="running"):
            checkpoint = last_checkpoint(registry.run_dir(record.id))
            if checkpoint is None or checkpoint.name == last or record.pid is None:
                continue
            try:
                worker = psutil.Process(record.pid).parent()
                if worker is None or "ray" not in " ".join(worker.cmdline()).lower():
                    continue  # the task's Ray worker only, never a process of ours
            except psutil.Error:
                continue
            killed.append({"run_id": record.id, "checkpoint": checkpoint.name, "child": record.pid, "at": time.time()})
            os.kill(worker.pid, signal.SIGKILL)
            return
        time.sleep(0.2)


def count(grid: Grid, registry: Registry) -> dict:
    records = registry.list()
    hashes = Counter(r.config_hash for r in records)
    completed = {r.config_hash for r in records if r.status == "completed"}
    points = [p.config.config_hash() for p in grid.points()]
    resumed = sum("resuming from checkpoint-" in (registry.run_dir(r.id) / "log.txt").read_text(errors="replace")
                  for r in records if (registry.run_dir(r.id) / "log.txt").is_file())  # fmt: skip
    return {"points": len(points), "rows": len(records), "completed": sum(h in completed for h in points),
            "duplicated": sum(1 for h in points if hashes[h] > 1), "lost": sum(h not in completed for h in points),
            "resumed": resumed}  # fmt: skip


def run_grid(grid: Grid, runs_dir: Path, *, ray: RayPlacement | None = None, slots=None, kill: bool = False) -> dict:
    registry = Registry(runs_dir)
    sweep = Sweep(grid, registry, ray=ray, slots=slots)
    killed: list[dict] = []
    stop = threading.Event()
    thread = threading.Thread(target=killer, args=(registry, killed, stop), daemon=True)
    if kill:
        thread.start()
    from load_sampler import LoadSampler  # beside this script (tests load this file as a module)

    with LoadSampler(every=2.0) as load:
        t0 = time.time()
        state = sweep.execute()
        seconds = time.time() - t0
    stop.set()
    if kill:
        thread.join()
    return {"wall_s": round(seconds, 1), "done": state.done, "failed": state.failed, "killed": len(killed),
            "killed_at_checkpoint": killed[0]["checkpoint"] if killed else "", **count(grid, registry),
            "load_mean": round(statistics.mean(load.samples), 2) if load.samples else None,
            "load_max": round(max(load.samples), 2) if load.samples else None}  # fmt: skip


def start_cluster(gpu_nodes: int = 0, cpu_nodes: int = 2):
    """A local cluster: a head that trains nothing, and worker nodes (each pinned to one GPU in GPU mode)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False})
    if gpu_nodes:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        for gpu in range(gpu_nodes):
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # the node's raylet (and its workers) see this GPU alone
            cluster.add_node(num_cpus=4, num_gpus=1)
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES")
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    else:
        for _ in range(cpu_nodes):
            cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def cpu_mode(args: argparse.Namespace, work: Path) -> list[dict]:
    from tiny import make_tiny_model

    grid = cpu_grid(make_tiny_model("bert", work / "bert"), args.runs)
    rows = []
    if args.compare:  # the same grid without Ray: two processes at a time on this machine (`sweep --workers 2`)
        row = run_grid(grid, work / "local", slots=device_slots("none", 2))
        rows.append({"mode": "sweep --workers 2 (this machine, no Ray)", "repeat": 0, **row})
        saved(args, rows)
    cluster = start_cluster(cpu_nodes=2)
    try:
        if args.compare:
            row = run_grid(grid, work / "ray-whole", ray=RayPlacement(cluster.address))
            rows.append({"mode": "ray, 2 CPU-slot workers", "repeat": 0, **row})
            saved(args, rows)
        for repeat in range(args.repeats):
            row = run_grid(grid, work / f"runs-{repeat}", ray=RayPlacement(cluster.address, max_retries=2), kill=True)
            rows.append({"mode": "ray, 2 CPU-slot workers, one killed", "repeat": repeat, **row})
            saved(args, rows)
    finally:
        cluster.shutdown()
    return rows


def gpu_mode(args: argparse.Namespace, work: Path) -> list[dict]:
    grid = gpu_grid(args.runs)
    rows = [{"mode": "sweep --gpus 0,1 (this machine, no Ray)", "repeat": 0,
             **run_grid(grid, work / "local", slots=device_slots("0,1", 1))}]  # fmt: skip
    saved(args, rows)
    cluster = start_cluster(gpu_nodes=2)
    try:
        for name, kill in (("ray, 2 workers pinned to a GPU each", False), ("ray, the same, one worker killed", True)):
            placement = RayPlacement(cluster.address, max_retries=2)
            rows.append({"mode": name, "repeat": 0, **run_grid(grid, work / name.split(",")[-1].strip(),
                                                             ray=placement, kill=kill)})  # fmt: skip
            saved(args, rows)
    finally:
        cluster.shutdown()
    return rows


def saved(args: argparse.Namespace, rows: list[dict]) -> None:
    """Print the last row and write every row so far (a run cut short by a time limit keeps what it measured)."""
    print(rows[-1], flush=True)
    write(Path(args.out), rows, environment(args))


def environment(args: argparse.Namespace) -> dict:
    import ray
    import torch

    cpu = cpu_name()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "torch": torch.__version__, "ray": ray.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_at_end": os.getloadavg(), "args": vars(args)}  # fmt: skip


def write(out: Path, rows: list[dict], env: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ray_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    lines = ["| mode | runs | completed | duplicated | lost | killed | resumed | wall s | load (mean/max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        cells = [r["mode"], r["points"], r["completed"], r["duplicated"], r["lost"], r["killed"], r["resumed"],
                 r["wall_s"], f"{r['load_mean']}/{r['load_max']}"]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (out / "ray_sweep.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray_sweep" / "cpu"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare", action="store_true",
                        help="CPU: also `sweep --workers 2` (no Ray) and Ray with no kill")  # fmt: skip
    parser.add_argument("--gpu", action="store_true", help="two GPUs: local sweep vs Ray (module docstring)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as work:
        gpu_mode(args, Path(work)) if args.gpu else cpu_mode(args, Path(work))
    print((Path(args.out) / "ray_sweep.md").read_text())


if __name__ == "__main__":
    main()
