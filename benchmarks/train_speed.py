"""Training speed of the seed-000 workload, configuration by configuration, through the studio's own `Run`,
every configuration in its own fresh Python process.

    python benchmarks/train_speed.py --out DIR [--only seed,fast,...] [--train 16000] [--epochs 3]
        [--model bert-base|qwen2.5-1.5b|llama-3.2-1b|FOLDER] [--workload imdb|goemotions] [--set KEY=VALUE ...]

The workload (`imdb`, the default) is seed study 1's: bert-base-uncased's architecture (random weights from its
published config; accuracy is not the point here), binary labels, 16,000 training reviews x 3 epochs +
validation each epoch + test, at IMDb's real token lengths cut at 256: the texts are the shipped IMDb sample's
reviews drawn with replacement (tokenized with BERT's WordPiece: median ~230 tokens, 43% longer than 256),
80/10/10 of 20,000. `--workload goemotions` is the shipped GoEmotions sample instead (its own splits, 43,410 /
5,426 / 5,427 comments; rows with several labels dropped: 36,308 training rows, 28 single labels; `--train N`
caps the training split, stratified: a few thousand keep every label), cut at 128 tokens. `--model` takes
bert-base, the decoders issue 25 names (qwen2.5-1.5b, llama-3.2-1b: random weights from their real configs,
GPT-2's tokenizer as a stand-in) or a local model folder (the tests' tiny models). `--set KEY=VALUE` overrides
every configuration's base (e.g. `train.max_steps=50` for a short look).

How it measures: the parent builds the workload CSV and, in a child process of its own, the random-weight
model folder once; then it starts one fresh process per configuration (this script with `--child NAME`) and
times it from outside, so `wall_seconds` is truly cold end to end: interpreter start, imports, CUDA init,
data preparation, tokenization, model load, training, evaluation, test, saving. Each row records its
process id (`pid`); `import_seconds` is launch to the start of the run (interpreter, studio imports; torch
loads lazily inside the run), `setup_seconds` launch to the first training step. Steady samples/s count
training time only: the loss-log intervals that hold a validation pass or a checkpoint save are left out, and
so is the first one (warm-up, compile). MFU against the GPU's dense bf16 peak, FLOPs counted two stated ways
(benchmarks/flops.py): `mfu_pct` 6 x every parameter x real tokens/s (the older tables' convention), and
`mfu_executed_pct` the matmul FLOPs a step must do (4 per frozen weight, 6 per trained one, attention's s^2).
Ratios (`*_vs_first`) are to the first row of the same invocation (with
`--append`, to the first row of --out's table). Writes ``train_speed.csv``, ``train_speed.md`` (GPU and date
in its header) and ``environment.json`` (GPU, driver, torch/transformers versions, host CPU, date, load
average) to --out.

Each configuration is a list of `--set`-style overrides of the seed preset (`presets/imdb_bert_qlora.yaml`).
The `seed` row is the stock seed recipe as its authors ran it: a baseline is measured as published, and the
study's code (peft's `prepare_model_for_kbit_training` and transformers 4 defaults) checkpointed through
PyTorch's reentrant path, about 11% faster on this workload than the non-reentrant path the studio uses
otherwise; hence `train.checkpointing_reentrant=true` there. `seed-studio-ckpt` is the same recipe with the
studio's non-reentrant checkpointing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gzip
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import flops  # noqa: E402
from memory_validation import model_folder  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, for the MFU column.
PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}

# the preset as it is: QLoRA NF4 + double quant, fp16, checkpointing (reentrant, as the study's code ran it),
# paged 8-bit AdamW, 16 x GA 2
SEED = ["train.checkpointing_reentrant=true"]
# LoRA on a bf16 base with the seed's checkpointing, the stream in 16 bit, fused AdamW, expandable segments
LORA_CKPT = ["method.name=lora", "train.precision=auto", "train.half_activations=true", "train.dataloader_workers=2",
             "train.optimizer=adamw_torch_fused", "train.expandable_segments=true"]
CONFIGS: dict[str, list[str]] = {
    "seed": SEED,
    "seed-studio-ckpt": [],  # the seed recipe with the studio's non-reentrant checkpointing
    # the seed study's QLoRA recipe as decoder QLoRA recipes run it (the QLoRA paper): adapters on every linear
    # layer, bf16 compute; otherwise the seed's (4-bit NF4, reentrant checkpointing, paged 8-bit AdamW, 16 x 2)
    "seed-qlora-decoder": SEED + ["method.placement=all-linear", "train.precision=bf16",
                                  "method.compute_dtype=bfloat16"],
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
                            "method.placement=auto",  # the preset's qv is an adapter placement
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
    # frugal's candidates (issue 25 part 3): the seed's effective batch (32) and learning rate, checkpointing,
    # the stream in 16 bit, expandable segments; a 4-bit base with paged 8-bit AdamW (frugal until 2026-12-01) or
    # LoRA on a bf16 base with fused AdamW, through either checkpointing path
    "frugal-reentrant": ["train.speed=frugal", "train.checkpointing_reentrant=true"],
    "lora-ckpt-b16x2": LORA_CKPT,
    "lora-ckpt-b32": LORA_CKPT + ["train.batch_size=32", "train.grad_accum=1"],
    "lora-ckpt-b32-reentrant": LORA_CKPT + ["train.batch_size=32", "train.grad_accum=1",
                                            "train.checkpointing_reentrant=true"],
    "lora-ckpt-b64": LORA_CKPT + ["train.batch_size=64", "train.grad_accum=1", "train.learning_rate=2.83e-4"],
    # issue 25's levers on top of fast: batches of similar lengths padded to 64-token buckets (4 shapes at 256),
    # then torch.compile over those shapes; "-again" is the same in a new process, inductor's cache warm
    # (hf_trainer.compile_cached keeps it under the studio's cache folder)
    "fast-grouped": ["train.speed=fast", "train.length_grouping=true"],
    "fast-grouped-compile": ["train.speed=fast", "train.length_grouping=true", "train.torch_compile=true"],
    "fast-grouped-compile-again": ["train.speed=fast", "train.length_grouping=true", "train.torch_compile=true"],
    # torch.compile without grouping: batches in the studio's order, padded to the 64-token buckets (at batch 128
    # an IMDb batch nearly always reaches 256, so one training shape); cold cache, then warm in a new process
    "fast-compile": ["train.speed=fast", "train.torch_compile=true"],
    "fast-compile-again": ["train.speed=fast", "train.torch_compile=true"],
    # fast once a compiled run of the same model and shape has trained on this machine: the plan then compiles it
    # too, inductor's cache warm (studio/compiled.py); run it after fast-compile, in one STUDIO_CACHE_DIR
    "fast-after-compile": ["train.speed=fast"],
    # fast with PyTorch's expandable allocator segments: batches of varying length strand less memory
    "fast-expandable": ["train.speed=fast", "train.expandable_segments=true"],
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


def steady_rate(events: list[dict], effective_batch: int, save_steps: int | None = None) -> float | None:
    """Samples/s over training time only: the sum of the steps over the sum of the seconds of the loss-log
    intervals, leaving out the first (warm-up, compile) and every interval that holds a validation pass (an
    `eval` event's time falls inside it: the Trainer logs, then evaluates, then saves, so the save after an
    evaluation falls in the same interval) or a checkpoint save every `save_steps` (saved after the log of a
    multiple of save_steps, so inside the interval that starts there). None when no interval is left."""
    logs = [(e["step"], e["time"]) for e in events if e["kind"] == "log" and "loss" in e and "step" in e]
    evals = [e["time"] for e in events if e["kind"] == "eval" and "split" not in e]  # not the test split's
    steps, seconds = 0, 0.0
    for (s0, t0), (s1, t1) in zip(logs[1:], logs[2:], strict=False):
        if any(t0 < t <= t1 for t in evals):
            continue
        if save_steps and any(k % save_steps == 0 for k in range(max(s0, 1), s1)):
            continue
        steps, seconds = steps + s1 - s0, seconds + t1 - t0
    return steps * effective_batch / seconds if steps > 0 and seconds > 0 else None


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


def real_lengths(texts: list[str], tokenizer_dir: Path, max_length: int, sample: int = 2000) -> list[int]:
    """Real (unpadded) tokens of the first `sample` training texts, truncated at max_length."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return [min(len(ids), max_length) for ids in tok(texts[:sample])["input_ids"]]


def base_shape(folder: Path) -> dict:
    """The base model's shape for FLOP counting (benchmarks/flops.py), built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
    return dataclasses.asdict(flops.shape_of(model))


def row_flops(spec: dict, total: int, trainable: int) -> dict[str, float]:
    """Per real token, both conventions (benchmarks/flops.py): a run's adapters add their own weights to the
    base's matmuls; a full fine-tune trains every matmul weight."""
    base = spec["shape"]
    adapters = trainable if trainable < base["matmul_params"] else 0
    shape = flops.ModelShape(total, base["matmul_params"] + adapters, min(trainable, base["matmul_params"]),
                             base["layers"], base["hidden"])  # fmt: skip
    return {c: flops.flops_per_token(shape, spec["attention_length"], c) for c in ("6N", "executed")}


def workload_texts(args: argparse.Namespace, data: Path | None) -> list[str]:
    """The training texts of the workload, for the mean token count."""
    if args.workload == "goemotions":
        import pandas as pd

        return pd.read_parquet(ROOT / "assets" / "data" / "goemotions" / "train.parquet")["text"].tolist()
    with open(data, encoding="utf-8") as f:
        return [r["review"] for r in csv.DictReader(f)]


def base_overrides(args: argparse.Namespace, data: Path | None, folder: Path) -> list[str]:
    """The seed preset's overrides that make it this invocation's workload (before each configuration's own)."""
    common = [f"model.name={folder}", "data.max_samples=null", f"train.epochs={args.epochs}",
              "train.early_stopping_patience=null"]  # fmt: skip
    if args.workload == "goemotions":  # its own splits; rows with several labels dropped: 28 single labels
        data_part = ["data.source=goemotions", "data.text_column=text", "data.label_column=labels",
                     "data.splits=auto", "data.task=single_label", "data.multi_label=drop",
                     "data.max_length=128"]  # fmt: skip
        data_part += [f"data.max_train_samples={args.train}"] if args.train else []
    else:
        data_part = [f"data.source={data}", "data.text_column=review", "data.label_column=sentiment"]
    return common + data_part + list(args.set or [])


def child_args(args: argparse.Namespace) -> list[str]:
    """The options every child process gets from the parent's command line."""
    out = ["--out", args.out, "--train", str(args.train or 0), "--epochs", str(args.epochs), "--model", args.model,
           "--workload", args.workload, "--profile", str(args.profile)]  # fmt: skip
    for item in args.set or []:
        out += ["--set", item]
    return out


def prepare(args: argparse.Namespace, work: Path) -> int:
    """Child process run once by the parent: the random-weight model folder, the mean token count, and what
    the GPU and libraries are (the parent itself imports no torch and holds no GPU context)."""
    import torch
    import transformers

    spec = json.loads((work / "workload.json").read_text())
    data = Path(spec["data"]) if spec["data"] else None
    local = Path(args.model)
    folder = local.resolve() if (local / "config.json").is_file() else model_folder(args.model, work / "models")
    from studio.config import RunConfig

    base = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        base_overrides(args, data, folder)
    )
    cuda = torch.cuda.is_available()
    lengths = real_lengths(workload_texts(args, data), folder, base.data.max_length)
    spec.update(mean_tokens=statistics.mean(lengths), attention_length=flops.attention_length(lengths),
                shape=base_shape(folder))
    spec.update(folder=str(folder),
                gpu=torch.cuda.get_device_name(0) if cuda else "cpu", torch=torch.__version__,
                transformers=transformers.__version__, cuda=torch.version.cuda)  # fmt: skip
    (work / "workload.json").write_text(json.dumps(spec, indent=2))
    return 0


def child(args: argparse.Namespace, work: Path) -> int:
    """One configuration in this (fresh) process; its row goes to --row-out as JSON."""
    from studio.config import RunConfig
    from studio.registry import Registry
    from studio.training import Run

    spec = json.loads((work / "workload.json").read_text())
    data = Path(spec["data"]) if spec["data"] else None
    base = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        base_overrides(args, data, Path(spec["folder"]))
    )
    name = args.child
    config = base.with_overrides(CONFIGS[name] + [f"name=speed-{name}"])
    registry = Registry(work / f"runs-{name}")  # its own tokenization cache: each pays its own
    started = time.time()
    with profiled(Path(args.out) / f"profile-{name}.txt", args.profile):
        result = Run(config, registry).execute()
    row = {"config": name, "status": result.status, "pid": os.getpid(),
           "import_seconds": round(started - args.launched, 1), "run_seconds": round(time.time() - started, 1),
           "overrides": " ".join(CONFIGS[name])}  # fmt: skip
    if result.status == "completed":
        row.update(completed_row(result, registry, args.launched, spec))
    else:
        row["error"] = (result.message or "")[:300]
    Path(args.row_out).write_text(json.dumps(row))
    return 0


def completed_row(result, registry, launched: float, spec: dict) -> dict:
    """The figures of a completed run: phases, steady rate (training time only), MFU, memory."""
    from studio.config import RunConfig

    s = result.summary.to_dict()["efficiency"]
    run_dir = registry.run_dir(result.run_id)
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = RunConfig.from_yaml(run_dir / "config.yaml")
    rate = steady_rate(events, trained.train.effective_batch_size, trained.train.checkpoint_steps)
    row = phase_seconds(events, launched)
    speed = result.summary.reproducibility.speed or {}
    row["choices"] = "; ".join(f"{c['field'].split('.')[-1]}={c['after']}" for c in speed.get("choices", []))
    tokens, peak = spec["mean_tokens"], next((v for k, v in PEAK_BF16_TFLOPS.items() if k in spec["gpu"]), None)
    row.update(train_seconds=s["train_seconds"], samples_per_s=rate and round(rate, 1),
               tokens_per_s=rate and round(rate * tokens), peak_memory_mb=s.get("peak_device_mb")
               or s["peak_memory_mb"], peak_allocated_mb=s.get("peak_allocated_mb"),
               peak_reserved_mb=s.get("peak_reserved_mb"), trainable_params=s["trainable_params"])  # fmt: skip
    if rate and peak:  # two stated conventions (benchmarks/flops.py): 6N as the older tables, and executed
        per_token = row_flops(spec, s["total_params"], s["trainable_params"])
        row["mfu_pct"] = round(flops.mfu(per_token["6N"], rate * tokens, peak), 2)
        row["mfu_executed_pct"] = round(flops.mfu(per_token["executed"], rate * tokens, peak), 2)
    return row


def environment(spec: dict, args: argparse.Namespace) -> dict:
    """GPU, driver, libraries, host CPU, date: what the table's numbers depend on."""
    from studio.hardware import cpu_name

    driver = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]  # fmt: skip
    return {"gpu": spec["gpu"], "driver": driver, "cuda": spec.get("cuda"), "torch": spec["torch"],
            "transformers": spec["transformers"], "python": platform.python_version(), "host_cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "train": args.train or "36,308 (GoEmotions' train split, single-label rows)",
            "epochs": args.epochs, "model": args.model, "workload": args.workload,
            "mean_tokens": round(spec["mean_tokens"], 1), "overrides": args.set or [],
            "peak_bf16_tflops": next((v for k, v in PEAK_BF16_TFLOPS.items() if k in spec["gpu"]), None),
            "one_process_per_configuration": True}  # fmt: skip


def parent(args: argparse.Namespace) -> int:
    """Build the workload once, then run each configuration in a fresh child process, timed from outside."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    data = workload(work, round(args.train / 0.8)) if args.workload == "imdb" else None
    (work / "workload.json").write_text(json.dumps({"data": str(data) if data else None}))
    script = [sys.executable, str(Path(__file__).resolve())]
    subprocess.run(script + child_args(args) + ["--prepare", "--work", str(work)], check=True)
    spec = json.loads((work / "workload.json").read_text())
    env = environment(spec, args)
    names = args.only.split(",") if args.only else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    rows: list[dict] = _read(out / "train_speed.csv") if args.append else []
    loads = []
    for name in names:
        row_out = work / f"row-{name}.json"
        launched = time.time()
        done = subprocess.run(script + child_args(args) + ["--child", name, "--row-out", str(row_out), "--work",
                                                          str(work), "--launched", repr(launched)])  # fmt: skip
        wall = time.time() - launched
        loads.append(os.getloadavg()[0])
        row = json.loads(row_out.read_text()) if row_out.exists() else {"config": name, "status": "crashed"}
        row = {"config": name, "status": row.pop("status"), "wall_seconds": round(wall, 1), **row}
        if done.returncode:
            row["returncode"] = done.returncode
        rows.append(row)
        print(json.dumps(row), flush=True)
        env["load_average_1min_after_each"] = loads
        (out / "environment.json").write_text(json.dumps(env, indent=2))
        _write(out, rows, env)
    return 0 if all(r["status"] == "completed" for r in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", help="comma-separated configuration names (default: all, in order)")
    parser.add_argument("--train", type=int, help="training rows: imdb 16,000 (the seed study's) unless given; "
                        "goemotions all 36,308 unless given (a stratified cap)")  # fmt: skip
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--model", default="bert-base",
                        help="bert-base, qwen2.5-1.5b, llama-3.2-1b (random weights, real configs) "
                             "or a model folder")  # fmt: skip
    parser.add_argument("--workload", choices=["imdb", "goemotions"], default="imdb",
                        help="imdb: seed study 1's (--train reviews, 256 tokens); goemotions: the shipped sample, "
                             "its own splits, 28 single labels, 128 tokens")  # fmt: skip
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="an override of every configuration's base (e.g. train.max_steps=20); "
                             "repeatable")  # fmt: skip
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile this many optimizer steps of each configuration (after 5) with "
                             "torch.profiler: profile-<config>.txt, the top ops by CPU and by GPU time")  # fmt: skip
    parser.add_argument("--append", action="store_true",
                        help="add the rows to --out's train_speed.csv (ratios stay to its first row): one table "
                             "from several invocations on one machine, e.g. a baseline longer than one "
                             "call")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run this one configuration
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--row-out", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload == "imdb" and not args.train:
        args.train = 16000
    if args.prepare:
        return prepare(args, Path(args.work))
    if args.child:
        return child(args, Path(args.work))
    return parent(args)


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


def _write(out: Path, rows: list[dict], env: dict) -> None:
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
    shown = ["config", "wall_seconds", "wall_seconds_vs_first", "import_seconds", "setup_seconds",
             "train_phase_seconds", "test_seconds", "samples_per_s", "samples_per_s_vs_first", "tokens_per_s",
             "mfu_pct", "mfu_executed_pct", "peak_memory_mb", "peak_memory_mb_vs_first", "peak_allocated_mb", "status",
             "choices"]  # fmt: skip
    header = (f"Training speed on {env['gpu']} (driver {env.get('driver')}), {env['date']}: {env['model']}, "
              f"workload {env['workload']} ({env['train']} training rows x {env['epochs']:g} epochs), "
              f"torch {env['torch']}, transformers {env['transformers']}; every configuration in its own fresh "
              "process, wall seconds cold; ratios to the first row.")  # fmt: skip
    md = [header, "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    md += ["| " + " | ".join("" if r.get(k) is None else str(r[k]) for k in shown) + " |" for r in rows]
    (out / "train_speed.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
