"""Several GPUs: one run data-parallel (DDP) against one GPU, and a grid one run per GPU against one GPU.

    python benchmarks/multi_gpu.py --out DIR [--parts speed,quality,grid] [--train 16000] [--epochs 2]

Every run goes through the studio's own command line, as a user starts it:

- **speed**: bert-base's architecture (random weights) on IMDb-like reviews at 256 tokens (the workload of
  `train_speed.py`), LoRA r16 on query+value in bf16, fused AdamW, effective batch 128: on one GPU as
  64 x accumulation 2 (`python -m studio train`), on two as 64 per GPU x 1 (`train --gpus 2`): the same
  per-device batch and the same optimizer steps. Reports wall seconds end to end, the training loop's
  samples/s, steady-state samples/s (from the loss log, first interval left out), peak memory per GPU,
  and the ratios.
- **quality**: the real all-MiniLM-L6-v2 (`minilm-l6`) on the shipped IMDb sample, seeds 42 and 43, on one
  GPU and on two: test accuracy and macro F1 of each, so the 1-vs-2-GPU gap can be set beside the gap
  between seeds.
- **grid**: a 4-run grid (the speed workload, 4 seeds, fewer rows) with `sweep --gpus 0` (one GPU, runs one
  after the other in one process) and `sweep --gpus 0,1` (one process per GPU): wall seconds and the ratio.

Writes ``multi_gpu.csv``, ``multi_gpu.md`` and ``environment.json`` to --out. On the GPU machine run it from the
repo root after `source benchmarks/gpu_env.sh`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_validation import model_folder  # noqa: E402
from train_speed import phase_seconds, workload  # noqa: E402

SPEED = ["method.name=lora", "train.precision=bf16", "train.gradient_checkpointing=false",
         "train.optimizer=adamw_torch_fused", "train.batch_size=64", "train.grad_accum=2",
         "train.learning_rate=4e-4", "train.speed=as_set", "train.early_stopping_patience=null"]  # fmt: skip


def studio(runs: Path, args: list[str], gpus: str | None = None) -> tuple[float, str]:
    """Run ``python -m studio`` (pinned to `gpus` with CUDA_VISIBLE_DEVICES when given): wall seconds, output."""
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), *args], env=env, cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    seconds = time.time() - t0
    if out.returncode != 0:
        raise SystemExit(
            f"studio {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return seconds, out.stdout


def newest(runs: Path) -> tuple[dict, list[dict]]:
    """The newest run's eval.json and events."""
    from studio.registry import Registry

    registry = Registry(runs)
    run_id = registry.list()[0].id
    events = [json.loads(line) for line in (registry.run_dir(run_id) / "metrics.jsonl").read_text().splitlines()]
    return registry.summary(run_id).to_dict(), events


def row_of(part: str, setting: str, seconds: float, summary: dict, events: list[dict]) -> dict:
    eff, layout = summary["efficiency"], summary.get("distributed") or {}
    steady = steady_training_rate(events, layout.get("effective_batch", 1))
    phases = phase_seconds(events, events[0]["time"])
    return {"part": part, "setting": setting, "gpus": layout.get("processes", 1),
            "per_device_batch": layout.get("per_device_batch"), "grad_accum": layout.get("grad_accum"),
            "wall_s": round(seconds, 1), "train_s": eff["train_seconds"],
            "train_samples_per_s": round(eff["train_samples_per_second"] or 0, 1),
            "steady_samples_per_s": round(steady, 1) if steady else None,
            "peak_memory_mb_per_gpu": eff.get("peak_memory_mb"), "steps": eff["steps"], **phases,
            "test_accuracy": summary["test"]["accuracy"], "test_f1_macro": summary["test"]["f1_macro"]}  # fmt: skip


def steady_training_rate(events: list[dict], effective_batch: int) -> float | None:
    """Training samples/s over the loss-log intervals after the first (warm-up), leaving out those that hold
    a validation pass: the rate of the training steps themselves."""
    intervals, previous, evaluated = [], None, False
    for e in events:
        if e["kind"] == "eval":
            evaluated = True
        elif e["kind"] == "log" and "loss" in e:
            if previous is not None:
                intervals.append((e["step"] - previous[0], e["time"] - previous[1], evaluated))
            previous, evaluated = (e["step"], e["time"]), False
    kept = [(steps, seconds) for steps, seconds, evaluated in intervals[1:] if not evaluated]
    seconds = sum(t for _, t in kept)
    return sum(n for n, _ in kept) * effective_batch / seconds if seconds else None


def speed(work: Path, args: argparse.Namespace) -> list[dict]:
    data = workload(work, round(args.train / 0.8))
    folder = model_folder("bert-base", work / "models")
    config = base_config(data, folder, args.epochs, SPEED + args.set)
    rows = []
    for gpus in (1, 2):
        runs = work / f"speed-{gpus}"
        extra = ["--gpus", "2"] if gpus == 2 else []
        seconds, _ = studio(runs, ["train", str(config), "--quiet", *extra], gpus="0" if gpus == 1 else None)
        rows.append(row_of("speed", f"bert-base LoRA bf16, {args.train} x {args.epochs} epochs", seconds,
                           *newest(runs)))  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def quality(work: Path, args: argparse.Namespace) -> list[dict]:
    rows = []
    for seed in (42, 43):
        for gpus in (1, 2):
            runs = work / f"quality-{gpus}"
            extra = ["--gpus", "2"] if gpus == 2 else []
            sets = [f"seed={seed}", "train.speed=as_set", "train.batch_size=16", "train.grad_accum=2",
                    "train.epochs=2", "data.max_train_samples=null"]  # fmt: skip
            sets = [a for item in sets for a in ("--set", item)]
            seconds, _ = studio(
                runs, ["train", "quick_demo", "--quiet", *sets, *extra], gpus="0" if gpus == 1 else None
            )
            rows.append(row_of("quality", f"minilm-l6 quick_demo, seed {seed}", seconds, *newest(runs)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def grid(work: Path, args: argparse.Namespace) -> list[dict]:
    data = workload(work, round(args.grid_train / 0.8), seed=1)
    folder = model_folder("bert-base", work / "models")
    config = base_config(data, folder, 1, SPEED + args.set)
    path = work / "grid.yaml"
    base = yaml.safe_load(config.read_text())
    path.write_text(yaml.safe_dump({"version": 1, "name": "multi-gpu-grid", "base": base,
                                    "axes": {"seed": [1, 2, 3, 4]}}))  # fmt: skip
    rows = []
    for gpus in ("0", "0,1"):
        runs = work / f"grid-{gpus.replace(',', '')}"
        seconds, out = studio(runs, ["sweep", str(path), "--gpus", gpus])
        rows.append({"part": "grid", "setting": f"4 runs, bert-base LoRA, {args.grid_train} rows x 1 epoch",
                     "gpus": len(gpus.split(",")), "wall_s": round(seconds, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), out.strip().splitlines()[-1], flush=True)
    return rows


def base_config(data: Path, folder: Path, epochs: float, overrides: list[str]) -> Path:
    from studio.config import RunConfig

    config = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        [f"model.name={folder}", f"data.source={data}", "data.text_column=review", "data.label_column=sentiment",
         "data.max_samples=null", f"train.epochs={epochs}", *overrides]
    )  # fmt: skip
    path = data.with_suffix(".yaml")
    config.to_yaml(path)
    return path


def ratios(rows: list[dict]) -> list[dict]:
    """Each 2-GPU row's speed-up over the 1-GPU row of its part and setting."""
    for row in rows:
        one = next((r for r in rows if r["part"] == row["part"] and r["setting"] == row["setting"]
                    and r["gpus"] == 1), None)  # fmt: skip
        if one and row is not one:
            row["speedup_wall"] = round(one["wall_s"] / row["wall_s"], 2)
            if row.get("train_s"):
                row["speedup_train"] = round(one["train_s"] / row["train_s"], 2)
            if row.get("steady_samples_per_s") and one.get("steady_samples_per_s"):
                row["speedup_steady"] = round(row["steady_samples_per_s"] / one["steady_samples_per_s"], 2)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--parts", default="speed,quality,grid")
    parser.add_argument("--train", type=int, default=16000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--grid-train", type=int, default=8000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the speed and grid config (e.g. a small batch for a CPU smoke test)",
    )
    args = parser.parse_args()
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="multi-gpu-"))
    env = {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
           "torch": torch.__version__, "transformers": transformers.__version__, "date": time.strftime("%Y-%m-%d"),
           "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None,
           "args": vars(args)}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    rows: list[dict] = []
    for part in args.parts.split(","):
        rows += {"speed": speed, "quality": quality, "grid": grid}[part](work, args)
        write(out, ratios(rows))
    return 0


def write(out: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "multi_gpu.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in fields) + " |" for r in rows]
    (out / "multi_gpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
