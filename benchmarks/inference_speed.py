"""Inference speed through the studio's own `Predictor`: single-text latency and batched file scoring.

    python benchmarks/inference_speed.py --out DIR [--model bert-base|minilm-l6] [--texts 4000] [--single 200]

The texts are real IMDb reviews (the shipped sample, drawn with replacement; most are cut at --max-length
256 tokens). The model: `bert-base` is bert-base-uncased's architecture with random weights (speed does not
depend on them), `minilm-l6` the studio's real default; each gets a fresh 2-label head, as a run's has.
Reports, per model and device:

- single-text latency: `Predictor.predict([text])` one text at a time, after 10 warm-up calls: p50 and p95 ms;
- file scoring: `Predictor.predict_file(csv)` (read, tokenize, batch, score, table) over --texts reviews:
  texts/s end to end, after a first 100-row file (its time is reported: it imports the data layer, once a
  process, as the app has at start), and `Predictor.predict(texts)` alone, first and warm;
- on a GPU, where the time goes: tokenizing, padding and the forward passes, each timed alone.

Writes ``inference_speed.csv``, ``inference_speed.md`` and ``environment.json`` to --out. On a GPU run it
from the repo root after `source benchmarks/gpu_env.sh`; on a CPU it measures the quick-demo model as a
laptop would run it (no GPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_speed import workload  # noqa: E402


def predictor_for(model: str, max_length: int, work: Path):
    """A Predictor over `model` with a fresh 2-label head, on the GPU when there is one."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.config import ModelConfig
    from studio.inference import Predictor
    from studio.models import resolve_source

    if model == "bert-base":
        from memory_validation import model_folder

        source = str(model_folder(model, work / "models"))
    else:
        source = resolve_source(ModelConfig(name=model))
    tokenizer = AutoTokenizer.from_pretrained(source)
    net = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).float().eval()
    if torch.cuda.is_available():
        net = net.to("cuda")
    return Predictor(net, tokenizer, ["neg", "pos"], max_length, run_id=f"bench-{model}")


def breakdown(predictor, texts: list[str]) -> dict[str, float]:
    """Where `predict`'s time goes on a GPU, each part timed alone (seconds for all texts): tokenizing, padding,
    the forward passes under autocast (as `predict` runs them), and the same passes with a bf16 copy of the
    model (no per-pass weight casts)."""
    import copy

    import torch

    from studio.inference import GPU_BATCH, GPU_PAD_MULTIPLE

    def timed(fn) -> float:
        fn()  # warm
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return round(time.perf_counter() - t0, 3)

    tok = predictor.tokenizer
    encoded = tok(texts, truncation=True, max_length=predictor.max_length)
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    chunks = [order[s : s + GPU_BATCH] for s in range(0, len(order), GPU_BATCH)]
    batches = [{k: v.cuda() for k, v in predictor._padded(encoded, c, GPU_PAD_MULTIPLE).items()} for c in chunks]

    def forward(model, autocast: bool):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else torch.autocast("cuda", enabled=False)
        with torch.inference_mode(), ctx:
            for b in batches:
                model(**b).logits.float().softmax(-1)

    half = copy.deepcopy(predictor.model).to(torch.bfloat16)
    return {
        "tokenize_s": timed(lambda: tok(texts, truncation=True, max_length=predictor.max_length)),
        "pad_s": timed(lambda: [predictor._padded(encoded, c, GPU_PAD_MULTIPLE, pin=True) for c in chunks]),
        "forward_autocast_s": timed(lambda: forward(predictor.model, True)),
        "forward_bf16_weights_s": timed(lambda: forward(half, False)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="inference-speed-"))
    path = workload(work, args.texts)
    with open(path, encoding="utf-8") as f:
        texts = [r["review"] for r in csv.DictReader(f)]
    predictor = predictor_for(args.model, args.max_length, work)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"

    for text in texts[:10]:  # warm-up: kernels, allocator, tokenizer
        predictor.predict([text])
    latencies = []
    for text in texts[: args.single]:
        t0 = time.perf_counter()
        predictor.predict([text])
        latencies.append(1000 * (time.perf_counter() - t0))
    q = statistics.quantiles(latencies, n=20)
    predictor.predict(texts[:512])  # warm the batched shapes
    t0 = time.perf_counter()
    predictor.predict(texts)
    first = len(texts) / (time.perf_counter() - t0)  # shapes not seen yet: kernels plan for them
    t0 = time.perf_counter()
    predictor.predict(texts)
    batched = len(texts) / (time.perf_counter() - t0)
    small = workload(work, 100)
    t0 = time.perf_counter()
    predictor.predict_file(small, text_column="review")  # first file: imports the data layer (once a process)
    file_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = predictor.predict_file(path, text_column="review")
    file_rate = len(table) / (time.perf_counter() - t0)

    parts = breakdown(predictor, texts) if cuda else {}

    row = {"model": args.model, "device": device, "max_length": args.max_length, "texts": len(texts),
           "single_p50_ms": round(q[9], 2), "single_p95_ms": round(q[18], 2),
           "predict_first_texts_per_s": round(first, 1),
           "predict_texts_per_s": round(batched, 1), "file_texts_per_s": round(file_rate, 1),
           "first_file_100_s": round(file_first_s, 2),
           "threads": torch.get_num_threads(), **parts}  # fmt: skip
    print(json.dumps(row), flush=True)
    env = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    with open(out / "inference_speed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    (out / "inference_speed.md").write_text(
        "| "
        + " | ".join(row)
        + " |\n|"
        + "---|" * len(row)
        + "\n| "
        + " | ".join(str(v) for v in row.values())
        + " |\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
