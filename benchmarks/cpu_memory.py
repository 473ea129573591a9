"""The memory estimate on a CPU against the training process's measured peak RSS (issue 26, part 3).

    python benchmarks/cpu_memory.py [--out benchmarks/results/cpu_memory] [--only qd,smol]   (~35 min on 2 cores)
    python benchmarks/cpu_memory.py --recompute      (today's estimate against the committed measurements)
    python benchmarks/cpu_memory.py --child CASE --runs DIR     (one case; the parent runs each so)

Each case is a shipped preset or grid point (some with other shapes) trained whole in its own fresh process
through the studio's own `Run`, its RSS sampled every 0.1 s by a thread in that process (the peak, and what it
held at its first training step); the estimate is `studio.memory.estimate` for the same config on this CPU.
Writes cpu_memory.json (every case, with the estimate's parts and the environment) and cpu_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES: dict[str, tuple[str, list[str]]] = {  # each trained whole: the heap's high water creeps up over a run
    "qd": ("quick_demo", []),  # the preset as shipped (lowest 3 layers frozen)
    "qd-f0": ("quick_demo", ["method.freeze_layers=0"]),
    "qd-f0-b32": ("quick_demo", ["method.freeze_layers=0", "train.batch_size=32"]),
    "qd-f0-l256": ("quick_demo", ["method.freeze_layers=0", "data.max_length=256"]),
    "go-ml": ("goemotions_multilabel_cpu", []),
    "smol": ("smollm2_goemotions", []),
    # the Compare tab's default grid on a CPU, point by point (grid:NAME:POINT)
    "qm-full": ("grid:cpu_quick_methods:full", []),
    "qm-lora": ("grid:cpu_quick_methods:lora", []),
}
CALIBRATION = ("qd", "qd-f0", "qd-f0-b32", "qd-f0-l256", "go-ml")
"""The cases studio.memory's CPU constants were fitted on; the rest are held out (measured, never fitted)."""


def config_of(case: str):
    from studio.config import RunConfig
    from studio.presets import resolve

    preset, overrides = CASES[case]
    if preset.startswith("grid:"):
        from studio.sweep import Grid

        _, grid, label = preset.split(":")
        (point,) = [p for p in Grid.from_yaml(grid).points() if label in p.labels.values()]
        return point.config.with_overrides(overrides)
    return RunConfig.from_yaml(resolve(preset)).with_overrides(overrides)


def child(case: str, runs: Path) -> dict:
    """Train the case here, sampling this process's RSS; (peak, at the first step, the run's status and steps)."""
    import psutil

    proc, t0, samples = psutil.Process(), time.time(), []

    def poll() -> None:
        while True:
            samples.append((time.time() - t0, proc.memory_info().rss / 2**20))
            time.sleep(0.1)

    threading.Thread(target=poll, daemon=True).start()
    from studio.registry import Registry
    from studio.training import Run

    result = Run(config_of(case), Registry(runs)).execute()
    events = [json.loads(x) for x in (Registry(runs).run_dir(result.run_id) / "metrics.jsonl").read_text().splitlines()]
    first = next(e["time"] - t0 for e in events if e.get("status") == "training")
    steps = Registry(runs).summary(result.run_id).efficiency.steps
    return {"case": case, "status": result.status, "steps": steps, "peak_rss_mb": round(max(r for _, r in samples)),
            "rss_at_first_step_mb": round(max(r for t, r in samples if t <= first))}  # fmt: skip


def estimated(row: dict) -> dict:
    """`row` (a measured case) with today's estimate for its config on this CPU and its error against the peak."""
    from studio.hardware import detect
    from studio.memory import estimate

    config = config_of(row["case"])
    labels = 28 if CASES[row["case"]][0].startswith("goemotions") else 2
    e = estimate(config, labels, detect())
    total = round(e.total_mb)  # the error of the figure the table shows
    return {**row, "estimate_mb": total, "parts_mb": {k: round(v) for k, v in e.parts.items()},
            "error_pct": round(100 * (total - row["peak_rss_mb"]) / row["peak_rss_mb"], 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu_memory"))
    ap.add_argument("--only")
    ap.add_argument("--child")
    ap.add_argument("--runs")
    ap.add_argument("--recompute", action="store_true", help="today's estimate for the measured cases; no training")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.runs))))
        return 0
    out, rows = Path(args.out), []
    out.mkdir(parents=True, exist_ok=True)
    if args.recompute:  # the measurements and their environment stay as measured
        measured = json.loads((out / "cpu_memory.json").read_text())
        rows = [estimated(row) for row in measured["cases"]]
        write(out, rows, measured["environment"])
        return 0
    for case in args.only.split(",") if args.only else CASES:
        with tempfile.TemporaryDirectory() as runs:
            done = subprocess.run([sys.executable, __file__, "--child", case, "--runs", runs], capture_output=True,
                                  text=True, check=True)  # fmt: skip
        measured = {**json.loads(done.stdout.strip().splitlines()[-1]),
                    "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
        row = estimated(measured)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write(out, rows)
    return 0


def write(out: Path, rows: list[dict], env: dict | None = None) -> None:
    import torch

    from studio.hardware import cpu_name

    env = env or {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
                  "cpu": cpu_name(), "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip
    (out / "cpu_memory.json").write_text(json.dumps({"environment": env, "cases": rows}, indent=2) + "\n")
    lines = [
        "| case | set | preset and overrides | steps | peak RSS | at the first step | estimate | error |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        preset, overrides = CASES[r["case"]]
        fitted = "calibration" if r["case"] in CALIBRATION else "held out"
        lines.append(
            f"| {r['case']} | {fitted} | {preset} {' '.join(overrides)} | {r['steps']} | {r['peak_rss_mb']:,} MB | "
            f"{r['rss_at_first_step_mb']:,} MB | {r['estimate_mb']:,} MB | {r['error_pct']:+.1f}% |"
        )
    (out / "cpu_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
