"""Time the quick demo as a user runs it: `python -m studio train quick_demo` as a whole command, end to end.

    python benchmarks/quick_demo.py --label after --repeats 3 [--set method.freeze_layers=0 ...]
        [--parallel --cores-per-run 2 --first-core 0] [--out benchmarks/results/quick_demo]

Each run is its own process (nothing warm), on a fresh runs folder, with its wall time taken from outside
(process start to exit) and its test accuracy read from the run's eval.json. `--parallel` starts the repeats
at once, each pinned to its own `--cores-per-run` cores (taskset) with that many torch threads: on a many-core
machine this stands in for several idle 2-core machines (they still share memory bandwidth, so it errs slow).
Without it the repeats run one after another on whatever cores the machine has (the 2-core dev machine).
Rows are appended to `<out>/runs.csv`; the CPU, load averages and versions to `<out>/environment.jsonl`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["label", "overrides", "repeat", "cores", "wall_s", "train_s", "test_accuracy", "val_accuracy", "steps",
          "trainable_params", "load_before", "load_after", "cpu", "date"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("--cores-per-run", type=int, default=2)
    parser.add_argument("--first-core", type=int, default=0, help="--parallel: pin the first repeat from this core")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quick_demo")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.parallel:
        n, first = args.cores_per_run, args.first_core
        started = [_start(args, i, cores=list(range(first + i * n, first + (i + 1) * n))) for i in range(args.repeats)]
        rows = [_finish(*s) for s in started]
    else:
        rows = [_finish(*_start(args, i, cores=None)) for i in range(args.repeats)]
    _append(args.out / "runs.csv", rows)
    with (args.out / "environment.jsonl").open("a") as f:
        f.write(json.dumps(_environment(args)) + "\n")
    for row in rows:
        print(json.dumps(row))
    return 0


def _start(args: argparse.Namespace, repeat: int, cores: list[int] | None) -> tuple:
    runs = Path(tempfile.mkdtemp(prefix="quick-demo-"))
    env = {**os.environ, "STUDIO_RUNS_DIR": str(runs), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    sets = [a for o in args.overrides for a in ("--set", o)]
    command = [sys.executable, "-m", "studio", "train", "quick_demo", *sets]
    if cores is not None:
        env["OMP_NUM_THREADS"] = str(len(cores))
        command = ["taskset", "-c", ",".join(map(str, cores)), *command]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return args, repeat, cores, runs, process, t0, load


def _finish(args, repeat, cores, runs, process, t0, load) -> dict:
    output, _ = process.communicate()
    wall = time.perf_counter() - t0
    folders = [p for p in runs.iterdir() if (p / "eval.json").exists()]
    if process.returncode != 0 or not folders:
        raise SystemExit(f"the run failed (exit {process.returncode}):\n{output[-3000:]}")
    result = json.loads((folders[0] / "eval.json").read_text())
    eff = result["efficiency"]
    return {"label": args.label, "overrides": " ".join(args.overrides), "repeat": repeat,
            "cores": ",".join(map(str, cores)) if cores else f"all ({os.cpu_count()})", "wall_s": round(wall, 1),
            "train_s": eff.get("train_seconds"), "test_accuracy": result["test"]["accuracy"],
            "val_accuracy": (result.get("validation") or {}).get("accuracy"), "steps": eff.get("steps"),
            "trainable_params": eff.get("trainable_params"), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2), "cpu": _cpu(),
            "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _environment(args: argparse.Namespace) -> dict:
    import torch
    import transformers

    flags = Path("/proc/cpuinfo").read_text()
    return {"label": args.label, "cpu": _cpu(), "cpus": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "parallel": args.parallel, "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip


def _append(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
