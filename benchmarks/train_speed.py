"""Training speed of the seed-000 workload, configuration by configuration, through the studio's own `Run`.

    python benchmarks/train_speed.py --out DIR [--only seed,lora-bf16,...] [--train 16000] [--epochs 3]

The workload is seed study 1's: bert-base-uncased's architecture (random weights from its published config;
accuracy is not the point here), binary labels, 16,000 training reviews x 3 epochs + validation each epoch +
test, at IMDb's real token lengths cut at 256: the texts are the shipped IMDb sample's reviews drawn with
replacement (tokenized with BERT's WordPiece: median ~230 tokens, 43% longer than 256), 80/10/10 of 20,000.

Per configuration: end-to-end wall seconds (load, tokenize, compile, train, evaluate, save), training
seconds, steady-state samples/s and tokens/s (from the run's loss-log timestamps, the first interval left
out: warm-up, compile), model FLOPs utilisation (6 x params x tokens/s against the GPU's dense bf16 peak),
peak device memory, and the ratio of each to the first configuration (the seed recipe) measured in the same
run. Writes ``train_speed.csv``, ``train_speed.md`` and ``environment.json`` to --out. Each configuration is
a list of `--set`-style overrides of the seed preset (`presets/imdb_bert_qlora.yaml`), so the steps between
the seed recipe and the fastest one show what each change buys.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_validation import model_folder  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, for the MFU column.
PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}

SEED = []  # the preset as it is: QLoRA NF4 + double quant, fp16, checkpointing, paged 8-bit AdamW, 16 x GA 2
CONFIGS: dict[str, list[str]] = {
    "seed": SEED,
    "no-checkpointing": ["train.gradient_checkpointing=false"],
    "bf16": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.compute_dtype=bfloat16"],
    "lora-bf16": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.name=lora"],
    "lora-bf16-fused": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.name=lora",
                        "train.optimizer=adamw_torch_fused"],
    "lora-bf16-fused-b64": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.name=lora",
                            "train.optimizer=adamw_torch_fused", "train.batch_size=64", "train.grad_accum=1",
                            "train.learning_rate=4e-4"],  # 2x the batch of 32: lr x 2 (linear scaling)
    "lora-bf16-fused-b128": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.name=lora",
                             "train.optimizer=adamw_torch_fused", "train.batch_size=128", "train.grad_accum=1",
                             "train.learning_rate=8e-4"],
    "full-bf16-fused-b64": ["train.gradient_checkpointing=false", "train.precision=bf16", "method.name=full",
                            "train.optimizer=adamw_torch_fused", "train.batch_size=64", "train.grad_accum=1",
                            "train.learning_rate=4e-5"],
    # one change at a time from the seed recipe: where its time goes
    "seed-adamw": ["train.optimizer=adamw_torch"],
    "seed-bf16": ["train.precision=bf16", "method.compute_dtype=bfloat16"],
    "seed-b32": ["train.batch_size=32", "train.grad_accum=1"],
    "seed-grouped": ["train.length_grouping=true"],
    # the stream in 16 bit (train.half_activations): a larger micro-batch in the seed's memory
    "seed-half": ["train.precision=bf16", "method.compute_dtype=bfloat16", "train.half_activations=true"],
    "half-b32": ["train.precision=bf16", "method.compute_dtype=bfloat16", "train.half_activations=true",
                 "train.batch_size=32", "train.grad_accum=1"],
    "half-b48": ["train.precision=bf16", "method.compute_dtype=bfloat16", "train.half_activations=true",
                 "train.batch_size=48", "train.grad_accum=1", "train.learning_rate=2.45e-4"],
    "half-b64": ["train.precision=bf16", "method.compute_dtype=bfloat16", "train.half_activations=true",
                 "train.batch_size=64", "train.grad_accum=1", "train.learning_rate=2.83e-4"],
    "fast-half": ["train.speed=fast", "train.half_activations=true"],
    "fast": ["train.speed=fast"],  # the studio's profiles, as a user gets them (studio/speed_plan.py)
    "frugal": ["train.speed=frugal"],
}  # fmt: skip


def workload(root: Path, n: int, seed: int = 0) -> Path:
    """n real IMDb reviews (drawn with replacement from the shipped sample) with their labels, as a CSV."""
    with gzip.open(ROOT / "assets" / "data" / "imdb_sample.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(seed)
    path = root / f"imdb_like_{n}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for row in rng.choices(rows, k=n):
            w.writerow([row["review"], row["sentiment"]])
    return path


def steady_rate(events: list[dict], effective_batch: int) -> float | None:
    """Samples/s between the second and the last loss log (the first interval holds warm-up and compile)."""
    logs = [(e["step"], e["time"]) for e in events if e["kind"] == "log" and "loss" in e and "step" in e]
    if len(logs) < 3:
        return None
    (s0, t0), (s1, t1) = logs[1], logs[-1]
    return (s1 - s0) * effective_batch / (t1 - t0) if t1 > t0 else None


@contextlib.contextmanager
def profiled(path: Path, steps: int):
    """torch.profiler over `steps` optimizer steps (after 5 of warm-up) of the run inside, stepped by the
    studio's own step-end callback; writes the top ops by self CPU time and by self device time to `path`.
    The wall times of a profiled run are not comparable with unprofiled ones."""
    if not steps:
        yield
        return
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from studio import hf_trainer

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    prof = profile(activities=activities, schedule=schedule(wait=3, warmup=2, active=steps, repeat=1))
    original = hf_trainer.StudioCallback.on_step_end

    def on_step_end(self, *a, **k):
        prof.step()
        return original(self, *a, **k)

    hf_trainer.StudioCallback.on_step_end = on_step_end
    prof.start()
    try:
        yield
    finally:
        prof.stop()
        hf_trainer.StudioCallback.on_step_end = original
        table = prof.key_averages()
        device_key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        path.write_text(f"{steps} optimizer steps\n\nby self CPU time\n"
                        + table.table(sort_by="self_cpu_time_total", row_limit=30)
                        + f"\n\nby {device_key}\n" + table.table(sort_by=device_key, row_limit=30))  # fmt: skip


def phase_seconds(events: list[dict], t0: float) -> dict[str, float]:
    """Seconds of each phase of the run, from its status events: setup (data, tokenizer, model, tokenization),
    train (with its validation passes), test (the test split's evaluation) and save."""
    at = {e["status"]: e["time"] for e in events if e["kind"] == "status"}
    end = next((e["time"] for e in events if e["kind"] == "done"), None)
    marks = [
        ("setup_seconds", t0, at.get("training")),
        ("train_phase_seconds", at.get("training"), at.get("evaluating")),
        ("test_seconds", at.get("evaluating"), at.get("saving")),
        ("save_seconds", at.get("saving"), end),
    ]
    return {k: round(b - a, 1) for k, a, b in marks if a is not None and b is not None}


def mean_tokens(path: Path, tokenizer_dir: Path, max_length: int, sample: int = 2000) -> float:
    """Mean real (unpadded) tokens per training text, truncated at max_length."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    with open(path, encoding="utf-8") as f:
        texts = [r["review"] for r in csv.DictReader(f)][:sample]
    return statistics.mean(min(len(ids), max_length) for ids in tok(texts)["input_ids"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", help="comma-separated configuration names (default: all, in order)")
    parser.add_argument("--train", type=int, default=16000, help="training reviews (the seed study: 16,000)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile this many optimizer steps of each configuration (after 5) with "
                             "torch.profiler: profile-<config>.txt, the top ops by CPU and by GPU time")  # fmt: skip
    parser.add_argument("--append", action="store_true",
                        help="add the rows to --out's train_speed.csv (ratios stay to its first row): one table "
                             "from several processes on one machine, e.g. a baseline longer than one call")  # fmt: skip
    args = parser.parse_args()
    import torch
    import transformers

    from studio.config import RunConfig
    from studio.registry import Registry
    from studio.training import Run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    total = round(args.train / 0.8)
    data = workload(work, total)
    folder = model_folder(args.model, work / "models")
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    env = {"gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
           "date": time.strftime("%Y-%m-%d"), "train": args.train, "epochs": args.epochs, "model": args.model,
           "peak_bf16_tflops": peak}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    base = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        [f"model.name={folder}", f"data.source={data}", "data.text_column=review", "data.label_column=sentiment",
         "data.max_samples=null", f"train.epochs={args.epochs}", "train.early_stopping_patience=null"]
    )  # fmt: skip
    tokens = mean_tokens(data, folder, base.data.max_length)
    names = args.only.split(",") if args.only else list(CONFIGS)
    rows: list[dict] = _read(out / "train_speed.csv") if args.append else []
    for name in names:
        config = base.with_overrides(CONFIGS[name] + [f"name=speed-{name}"])
        registry = Registry(work / f"runs-{name}")  # its own tokenization cache: each pays its own
        t0 = time.time()
        with profiled(out / f"profile-{name}.txt", args.profile):
            result = Run(config, registry).execute()
        wall = time.time() - t0
        row = {"config": name, "status": result.status, "wall_seconds": round(wall, 1),
               "overrides": " ".join(CONFIGS[name])}  # fmt: skip
        if result.status == "completed":
            s = result.summary.to_dict()["efficiency"]
            lines = (registry.run_dir(result.run_id) / "metrics.jsonl").read_text().splitlines()
            events = [json.loads(x) for x in lines]
            trained = RunConfig.from_yaml(registry.run_dir(result.run_id) / "config.yaml")
            rate = steady_rate(events, trained.train.effective_batch_size)
            row.update(phase_seconds(events, t0))
            speed = result.summary.reproducibility.speed or {}
            row["choices"] = "; ".join(f"{c['field'].split('.')[-1]}={c['after']}" for c in speed.get("choices", []))
            params = s["total_params"]
            row.update(train_seconds=s["train_seconds"], samples_per_s=rate and round(rate, 1),
                       tokens_per_s=rate and round(rate * tokens), peak_memory_mb=s.get("peak_device_mb")
                       or s["peak_memory_mb"], peak_allocated_mb=s.get("peak_allocated_mb"),
                       peak_reserved_mb=s.get("peak_reserved_mb"), trainable_params=s["trainable_params"])  # fmt: skip
            if rate and peak:
                row["mfu_pct"] = round(100 * 6 * params * rate * tokens / (peak * 1e12), 2)
        else:
            row["error"] = (result.message or "")[:300]
        rows.append(row)
        print(json.dumps(row), flush=True)
        _write(out, rows)
    return 0 if all(r["status"] == "completed" for r in rows) else 1


def _read(path: Path) -> list[dict]:
    """Rows of an earlier train_speed.csv, numbers as numbers."""
    if not path.exists():
        return []

    def value(v: str):
        try:
            return float(v) if v else None
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write(out: Path, rows: list[dict]) -> None:
    base = rows[0]
    for r in rows:  # ratios to the first configuration (the seed recipe), measured in this same run
        for key in ("wall_seconds", "samples_per_s", "peak_memory_mb"):
            if r.get(key) and base.get(key):
                r[f"{key}_vs_first"] = round(r[key] / base[key], 2)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "train_speed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    shown = ["config", "wall_seconds", "wall_seconds_vs_first", "setup_seconds", "train_phase_seconds", "test_seconds",
             "samples_per_s", "samples_per_s_vs_first", "tokens_per_s", "mfu_pct", "peak_memory_mb",
             "peak_memory_mb_vs_first", "peak_allocated_mb", "status", "choices"]  # fmt: skip
    md = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    md += ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in shown) + " |" for r in rows]
    (out / "train_speed.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
