"""Measure real peak training memory on a GPU beside the studio's estimate, for a grid of configurations.

    python benchmarks/memory_validation.py --out DIR [--only N,M,...]   # on the GPU
    python benchmarks/memory_validation.py --report                    # today's estimate vs the committed rows

For each case it builds a random-weight model of a real architecture (catalogue dims: bert-base, distilbert,
roberta-base, deberta-v3-base, Qwen2.5-1.5B, Llama-3.2-1B; saved once to a local folder in the checkpoint's
dtype), trains it for 3 steps through the studio's own `Run` on texts long enough that every batch is padded
to max_length, and records the run's measured peak (`torch.cuda.max_memory_allocated` / reserved, NVML
process memory) next to `studio.memory.estimate` for the same config and GPU. Writes
``memory_validation.csv`` (one row per case) and ``environment.json`` (GPU, versions, date) to --out.

Runs on the GPU machine (see shared/gpu/README.md); the 54 cases take under 4 minutes on an H100.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENCODERS = ("bert-base", "distilbert", "roberta-base", "deberta-v3-base")
DECODERS = ("qwen2.5-1.5b", "llama-3.2-1b")
METHODS = ("full", "lora", "qlora", "ia3")


def grid() -> list[dict]:
    """~40 cases: every model x method at one shape, then batch, length, checkpointing and optimizer sweeps."""
    cases = [dict(model=m, method=k, batch=16, seq=256, ckpt=False) for m in ENCODERS + DECODERS for k in METHODS]
    for method in ("full", "lora", "qlora"):
        cases += [dict(model="bert-base", method=method, batch=8, seq=512, ckpt=False),
                  dict(model="bert-base", method=method, batch=64, seq=128, ckpt=False)]  # fmt: skip
    cases += [dict(model="bert-base", method=m, batch=16, seq=256, ckpt=True) for m in ("full", "qlora")]
    cases += [dict(model="qwen2.5-1.5b", method=m, batch=16, seq=256, ckpt=True) for m in ("lora", "qlora")]
    cases += [dict(model="llama-3.2-1b", method="qlora", batch=4, seq=512, ckpt=False),
              dict(model="llama-3.2-1b", method="qlora", batch=32, seq=128, ckpt=False),
              dict(model="deberta-v3-base", method="lora", batch=16, seq=256, ckpt=True),
              dict(model="distilbert", method="lora", batch=64, seq=512, ckpt=False),
              dict(model="bert-base", method="full", batch=16, seq=256, ckpt=False, optimizer="paged_adamw_8bit"),
              dict(model="bert-base", method="full", batch=16, seq=256, ckpt=False, optimizer="adamw_torch_fused"),
              dict(model="bert-base", method="lora", batch=16, seq=256, ckpt=False, placement="attention+ffn"),
              dict(model="qwen2.5-1.5b", method="qlora", batch=16, seq=256, ckpt=False, r=64),
              dict(model="bert-base", method="qlora", batch=16, seq=256, ckpt=False, bits=8),
              dict(model="gpt2-xl", method="lora", batch=8, seq=256, ckpt=False),
              dict(model="gpt2-xl", method="qlora", batch=8, seq=256, ckpt=False),
              dict(model="gemma-3-1b", method="lora", batch=16, seq=256, ckpt=False),
              dict(model="gemma-3-1b", method="qlora", batch=16, seq=256, ckpt=False),
              dict(model="bert-base", method="lora", batch=16, seq=256, ckpt=False, attn="eager"),
              dict(model="llama-3.2-1b", method="full", batch=8, seq=256, ckpt=True),
              dict(model="qwen2.5-1.5b", method="lora", batch=4, seq=1024, ckpt=False),
              dict(model="bert-base", method="lora", batch=16, seq=256, ckpt=False, precision="fp32"),
              dict(model="roberta-base", method="qlora", batch=32, seq=256, ckpt=True),
              dict(model="bert-base", method="full", batch=16, seq=256, ckpt=False, grad_accum=2),
              dict(model="minilm-l6", method="full", batch=32, seq=256, ckpt=False)]  # fmt: skip
    return cases


def model_folder(alias: str, root: Path) -> Path:
    """A local folder with random weights of `alias`'s real architecture and a tokenizer of its kind."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModel

    from studio.architectures import model_choice

    folder = root / alias
    if (folder / "config.json").is_file():
        return folder
    dims = dict(model_choice(alias).dims)
    model_type, dtype = dims.pop("model_type"), dims.pop("dtype", "float32")
    config = AutoConfig.for_model(model_type, **dims)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModel.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    # A stand-in tokenizer whose ids all fall inside the model's vocabulary: GPT-2's byte-level BPE (50,257)
    # for the decoders with larger vocabularies, BERT's WordPiece (30,522) for encoders and smaller ones.
    encoder = alias in ("bert-base", "distilbert", "deberta-v3-base", "minilm-l6")
    kind = "bert-base-uncased" if encoder or config.vocab_size < 50257 else "gpt2"
    for f in (ROOT / "tests" / "assets" / "tokenizers" / kind).iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def data_file(root: Path) -> Path:
    """80 labelled texts, 3 in 4 of ~900 words and the others short: every batch is as long as max_length
    and padded, as real batches are (a padding mask changes what attention keeps)."""
    words = (ROOT / "tests" / "assets" / "tokenizers" / "bert-base-uncased" / "vocab.txt").read_text().split()[2000:]
    rng = random.Random(0)
    path = root / "long_texts.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(80):
            w.writerow([" ".join(rng.choices(words, k=900 if i % 4 else 40)), ["neg", "pos"][i % 2]])
    return path


def config_for(case: dict, folder: Path, data: Path):
    from studio.config import RunConfig

    r = case.get("r", 16)
    method = {"name": case["method"], "r": r, "alpha": 2 * r, "bits": case.get("bits", 4)}
    if case.get("placement"):
        method["placement"] = case["placement"]
    return RunConfig.from_dict({
        "name": "mem",
        "data": {"source": str(data), "splits": "ratio", "max_length": case["seq"]},
        "model": {"name": str(folder), "attn_implementation": case.get("attn")},
        "method": method,
        "train": {"max_steps": 3, "batch_size": case["batch"], "eval_batch_size": case["batch"],
                  "eval_strategy": "no", "gradient_checkpointing": case["ckpt"],
                  "optimizer": case.get("optimizer", "adamw_torch"), "logging_steps": 1, "learning_rate": 1e-4,
                  "precision": case.get("precision", "auto"), "grad_accum": case.get("grad_accum", 1),
                  "speed": "as_set"},  # the case's own settings, not a speed profile's
    })  # fmt: skip


def measured_mb(row: dict) -> float | None:
    """The peak the estimate is checked against: the process's GPU memory as NVML (nvidia-smi) sees it,
    CUDA context and allocator reserve included (what must fit), less what earlier cases left allocated."""
    if not row.get("nvml_peak_mb"):
        return None
    return float(row["nvml_peak_mb"]) - float(row.get("baseline_allocated_mb") or 0.0)


class NvmlPeak:
    """The largest `process_gpu_mb` (this process's GPU memory as nvidia-smi sees it: context + everything torch
    reserved) seen while a case runs, sampled every 20 ms in a thread (NVML has no peak counter of its own)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from studio.hardware import process_gpu_mb

        while not self._stop.wait(0.02):
            self.peak = max(self.peak, process_gpu_mb() or 0.0)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return round(self.peak, 1) or None


RESULTS = ROOT / "benchmarks" / "results" / "memory_validation.csv"


def label(case: dict) -> str:
    extras = [f"{k} {case[k]}" for k in ("optimizer", "placement", "r", "bits", "attn", "precision", "grad_accum")
              if k in case]  # fmt: skip
    ckpt = ", checkpointing" if case["ckpt"] else ""
    head = f"{case['model']} {case['method']}, {case['batch']} x {case['seq']}{ckpt}"
    return head + "".join(f", {x}" for x in extras)


def recompute(path: Path = RESULTS) -> list[dict]:
    """Every measured row of `path` with today's estimate for its config on the GPU it ran on (no GPU needed:
    catalogue dims give the same architecture as the random-weight folders the runs trained)."""
    from studio.hardware import Device
    from studio.memory import estimate

    env = json.loads(path.with_name("memory_validation_environment.json").read_text())
    gpu = Device(kind="cuda", name=env["gpu"], total_mb=env["device_total_mb"], free_mb=env["device_total_mb"] - 1000,
                 count=1)  # fmt: skip
    cases = grid()
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] != "completed":
                continue
            case = cases[int(row["case"])]
            e = estimate(config_for(case, Path(case["model"]), Path("unused.csv")), num_labels=2, device=gpu)
            measured = float(row["measured_mb"])
            out.append({"case": int(row["case"]), "label": label(case), "measured_mb": measured,
                        "estimate_mb": e.total_mb, "error_pct": 100 * (e.total_mb - measured) / measured})  # fmt: skip
    return out


def report(path: Path = RESULTS) -> str:
    """The README's table: estimate vs measured for every case, then median and max absolute error."""
    import statistics

    rows = recompute(path)
    env = json.loads(path.with_name("memory_validation_environment.json").read_text())
    errors = [abs(r["error_pct"]) for r in rows]
    lines = [f"{len(rows)} configurations on an {env['gpu']} (torch {env['torch']}, transformers "
             f"{env['transformers']}, peft {env['peft']}, bitsandbytes {env['bitsandbytes']}, {env['date']}): "
             f"median absolute error **{statistics.median(errors):.1f}%**, max **{max(errors):.1f}%**.", "",
             "| # | configuration | measured MB | estimate MB | error |", "|---|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['case']} | {r['label']} | {r['measured_mb']:,.0f} | {r['estimate_mb']:,.0f} | "
              f"{r['error_pct']:+.1f}% |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="measure (on a GPU) into this folder")
    parser.add_argument("--only", help="comma-separated case numbers")
    parser.add_argument("--report", action="store_true", help="print estimate vs the committed measurements")
    args = parser.parse_args()
    if args.report:
        print(report())
        return 0
    if not args.out:
        parser.error("--out or --report")
    import peft
    import torch
    import transformers

    from studio.hardware import detect, process_gpu_mb
    from studio.memory import estimate
    from studio.registry import Registry
    from studio.training import Run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="memval-"))
    data = data_file(work)
    device = detect()
    try:
        import bitsandbytes

        bnb = bitsandbytes.__version__
    except ImportError:
        bnb = None
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "peft": peft.__version__, "bitsandbytes": bnb,
           "date": time.strftime("%Y-%m-%d"), "device_total_mb": device.total_mb}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    print(env, flush=True)
    cases = grid()
    chosen = [int(i) for i in args.only.split(",")] if args.only else range(len(cases))
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    env["context_mb_at_start"] = process_gpu_mb()  # the CUDA context alone, before any kernel library loads
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    rows = []
    fields = ["case", "model", "method", "bits", "batch", "seq", "ckpt", "optimizer", "placement", "r", "attn",
              "precision", "grad_accum", "status", "measured_mb", "measured_allocated_mb", "measured_reserved_mb",
              "nvml_peak_mb", "nvml_after_mb", "baseline_allocated_mb", "estimate_mb", "error_pct",
              "est_weights", "est_adapters", "est_gradients", "est_optimizer", "est_activations", "est_overhead",
              "trainable_params", "seconds", "error"]  # fmt: skip
    for i in chosen:
        case = cases[i]
        row = {"case": i, **{k: case.get(k, "") for k in fields if k in case}}
        row.setdefault("optimizer", "adamw_torch")
        t0 = time.time()
        try:
            folder = model_folder(case["model"], work / "models")
            config = config_for(case, folder, data)
            e = estimate(config, num_labels=2, device=device)
            row.update(estimate_mb=round(e.total_mb, 1), trainable_params=e.trainable_params,
                       **{f"est_{k}": round(v, 1) for k, v in e.parts.items()})  # fmt: skip
            row["baseline_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)  # leaks of earlier cases
            sampler = NvmlPeak()
            try:
                result = Run(config, Registry(work / "runs")).execute()
            finally:
                row["nvml_peak_mb"] = sampler.stop()
            eff = result.summary.efficiency if result.summary is not None else None  # a typed RunSummary
            row.update(status=result.status, measured_allocated_mb=eff.peak_allocated_mb if eff else None,
                       measured_reserved_mb=eff.peak_reserved_mb if eff else None, nvml_after_mb=process_gpu_mb(),
                       error="" if result.status == "completed" else result.message[:300])  # fmt: skip
            measured = measured_mb(row)
            if measured:
                row.update(measured_mb=round(measured, 1), error_pct=round(100 * (e.total_mb - measured) / measured, 2))
        except Exception as exc:  # keep measuring the other cases; the row says what went wrong
            row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            traceback.print_exc()
        record(rows, row, t0, out / "memory_validation.csv", fields)
    return 0


def record(rows: list[dict], row: dict, t0: float, path: Path, fields: list[str]) -> None:
    """Close a case's row: its seconds, printed; free what the case left; rewrite the CSV (each case, so a
    timeout keeps the rows measured so far)."""
    import torch

    row["seconds"] = round(time.time() - t0, 1)
    rows.append(row)
    print(json.dumps(row), flush=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
