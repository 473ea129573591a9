"""Decoder LLMs at real size on the GPU: one short QLoRA (and LoRA, IA3) training and an eval pass each.

    python benchmarks/decoder_check.py --out DIR [--models qwen2.5-1.5b,...] [--methods qlora,lora,ia3]

For each decoder family at its real size (random weights from the published config: Qwen2.5-1.5B,
Llama-3.2-1B, GPT2-XL, Gemma-3-1B, and SmolLM2-135M's architecture), batch 4 x 256 tokens, it trains
`--steps` steps through the studio's own `Run` (padded batches, as real ones are), evaluates the test split,
and records: status, steady step time (the first step, with its kernel warm-up, left out), eval seconds,
the measured peak (NVML, as in memory_validation.py) beside `studio.memory.estimate`, trainable parameters.
Writes ``decoder_check.csv`` and ``environment.json`` to --out. Runs on a CPU too (slowly; no NVML peak).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_validation import NvmlPeak, data_file, measured_mb, model_folder, record  # noqa: E402

MODELS = ("qwen2.5-1.5b", "llama-3.2-1b", "gpt2-xl", "gemma-3-1b", "smollm2-135m")
FIELDS = ["model", "method", "batch", "seq", "steps", "status", "step_seconds", "eval_seconds", "measured_mb",
          "nvml_peak_mb", "baseline_allocated_mb", "estimate_mb", "error_pct", "trainable_params", "total_params",
          "seconds", "error"]  # fmt: skip


def config_for(model: str, method: str, folder: Path, data: Path, steps: int, batch: int, seq: int):
    from studio.config import RunConfig

    return RunConfig.from_dict({
        "name": f"check-{model}-{method}",
        "data": {"source": str(data), "splits": "ratio", "max_length": seq},
        "model": {"name": str(folder)},
        "method": {"name": method, "r": 16, "alpha": 32},
        "train": {"max_steps": steps, "batch_size": batch, "eval_batch_size": batch, "eval_strategy": "no",
                  "logging_steps": 1, "learning_rate": 1e-4, "speed": "as_set"},  # measure these settings
    })  # fmt: skip


def timings(events: list[dict], steps: int) -> tuple[float | None, float | None]:
    """(steady seconds per step, seconds of the test evaluation) from a run's events."""
    progress = [(e["step"], e["time"]) for e in events if e["kind"] == "progress" and e.get("step", 0) >= 1]
    step = None
    if len(progress) >= 2 and progress[-1][0] > progress[0][0]:
        (s0, t0), (s1, t1) = progress[0], progress[-1]
        step = (t1 - t0) / (s1 - s0)
    phases = {e["status"]: e["time"] for e in events if e["kind"] == "status"}
    evaluation = phases["saving"] - phases["evaluating"] if {"evaluating", "saving"} <= set(phases) else None
    return step, evaluation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default="qlora,lora,ia3")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    import torch
    import transformers

    from studio.hardware import detect
    from studio.memory import estimate
    from studio.registry import Registry
    from studio.training import Run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="decoder-check-"))
    data = data_file(work)
    device = detect()
    cuda = torch.cuda.is_available()
    env = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "transformers": transformers.__version__, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    rows = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            row = {"model": model, "method": method, "batch": args.batch, "seq": args.seq, "steps": args.steps}
            t0 = time.time()
            try:
                folder = model_folder(model, work / "models")
                config = config_for(model, method, folder, data, args.steps, args.batch, args.seq)
                e = estimate(config, num_labels=2, device=device)
                row.update(estimate_mb=round(e.total_mb, 1), trainable_params=e.trainable_params,
                           total_params=e.total_params)  # fmt: skip
                if cuda:
                    row["baseline_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
                sampler = NvmlPeak() if cuda else None
                try:
                    registry = Registry(work / "runs")
                    result = Run(config, registry).execute()
                finally:
                    row["nvml_peak_mb"] = sampler.stop() if sampler else None
                row["status"] = result.status
                if result.status != "completed":
                    row["error"] = (result.message or "")[:300]
                if result.run_id:
                    lines = (registry.run_dir(result.run_id) / "metrics.jsonl").read_text().splitlines()
                    step, evaluation = timings([json.loads(x) for x in lines], args.steps)
                    row.update(step_seconds=step and round(step, 4), eval_seconds=evaluation and round(evaluation, 3))
                measured = measured_mb(row)
                if measured:
                    row.update(measured_mb=round(measured, 1), error_pct=round(100 * (e.total_mb / measured - 1), 2))
            except Exception as exc:  # keep checking the others; the row says what went wrong
                row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
                traceback.print_exc()
            record(rows, row, t0, out / "decoder_check.csv", FIELDS)
    return 0 if all(r["status"] == "completed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
