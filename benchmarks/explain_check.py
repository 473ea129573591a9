"""Are the "Why?" word scores right, and fast enough? (studio/explain.py)

    python benchmarks/explain_check.py deletion [--run RUN_ID] [--runs-dir runs] [--texts 120]
    python benchmarks/explain_check.py speed [--device cpu|cuda] [--steps 32] [--batch 32] [--repeats 5]

deletion: on the quick demo's real MiniLM run (the newest `*-quick-demo-*` run with a model; its test split), each
text is explained toward its predicted label (Integrated Gradients, N_STEPS, pad baseline), then its k most
positively attributed words are deleted, and, separately, k words drawn at random among the scored ones (seeded:
numpy default_rng(SEED + text index)); the drop in the predicted label's calibrated probability is compared, for
k = 1, 3, 5. Writes results/explain/deletion.csv (one row per text, k and kind) and deletion_summary.json (mean
drops, the share of texts where the top-k drop beats the random one, completeness |delta| quantiles, seconds per
text, environment: CPU, torch, load average sampled during the run, date).

speed: seconds per `Explainer.explain` of 128-token texts (test reviews cut at the run's max length, 128), median
over --repeats passes of 5 texts after a warm-up, for each (n_steps, internal batch size) asked; on a CPU with
torch's threads set to 2 (the 2-core target: <= 2 s; `cpu_seconds_median` is the process's CPU time per text, both
threads together: on a shared, busy machine the wall time grows with the load, the CPU time much less; on 2 idle
cores the wall time would be about half of it), on `--device cuda` the model moved to the GPU (target
<= 100 ms on an H200). Prints one JSON line per setting and writes results/explain/speed_<device>.json. Without
the run (a GPU machine that lacks the runs folder), all-MiniLM-L6-v2 with a fresh 2-label head is used: the
time does not depend on the weights; the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "explain"
SEED = 24
KS = (1, 3, 5)


from load_sampler import LoadSampler  # noqa: E402 - after the path set-up above


def environment(device: str) -> dict:
    import torch

    from studio.hardware import cpu_name

    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu_name(), "cores": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
           "device": device}  # fmt: skip
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    import captum
    import transformers

    env["captum"], env["transformers"] = captum.__version__, transformers.__version__
    return env


def newest_quick_demo(runs_dir: Path) -> str | None:
    from studio.registry import Registry

    registry = Registry(runs_dir)
    for record in registry.list():  # newest first
        if "quick-demo" in record.id and (registry.run_dir(record.id) / "label_map.json").is_file():
            return record.id
    return None


def test_texts(runs_dir: Path, run_id: str) -> list[str]:
    import pandas as pd

    from studio.registry import Registry

    frame = pd.read_parquet(Registry(runs_dir).run_dir(run_id) / "predictions.parquet")
    return frame[frame["split"] == "test"]["text"].tolist()


def without(text: str, words: list) -> str:
    """The text with these words' spans removed (and the spaces around them closed up)."""
    out, at = [], 0
    for w in sorted(words, key=lambda w: w.start):
        out.append(text[at : w.start])
        at = w.end
    out.append(text[at:])
    return " ".join("".join(out).split())


def deletion(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from studio.explain import Explainer
    from studio.inference import Predictor
    from studio.registry import Registry

    torch.set_num_threads(2)
    run_id = args.run or newest_quick_demo(Path(args.runs_dir))
    if run_id is None:
        sys.exit(f"no quick-demo run with a model in {args.runs_dir}: train one (python -m studio train quick_demo)")
    predictor = Predictor.from_run(Registry(args.runs_dir), run_id)
    explainer = Explainer(predictor, n_steps=args.steps)
    texts = test_texts(Path(args.runs_dir), run_id)[: args.texts]
    rows, deltas, seconds = [], [], []
    with LoadSampler() as load:
        for i, text in enumerate(texts):
            started = time.perf_counter()
            e = explainer.explain(text)
            seconds.append(time.perf_counter() - started)
            deltas.append(abs(e.delta))
            rng = np.random.default_rng(SEED + i)
            ranked = sorted(e.words, key=lambda w: -w.score)  # most for the predicted label first
            for k in KS:
                if len(e.words) < k:
                    continue
                picks = {"top": ranked[:k], "random": [e.words[j] for j in rng.choice(len(e.words), k, replace=False)]}
                for kind, words in picks.items():
                    rows.append({"text_id": i, "k": k, "kind": kind, "label": e.label, "p_before": e.probability,
                                 "removed": " | ".join(w.word for w in words), "edited": without(text, words),
                                 "n_words": len(e.words), "delta": e.delta})  # fmt: skip
            if i % 20 == 0:
                print(f"{i + 1}/{len(texts)} texts, {statistics.median(seconds):.2f} s each", flush=True)
        after = predictor.predict([r["edited"] for r in rows])
    for r, p in zip(rows, after, strict=True):
        r["p_after"] = p.probs[r["label"]]
        r["drop"] = r["p_before"] - r["p_after"]
    frame = pd.DataFrame(rows).drop(columns=["edited"])
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / "deletion.csv", index=False, float_format="%.6f")
    summary = summarise(frame, run_id, len(texts), deltas, seconds, args)
    summary["environment"] = environment("cpu") | load.summary()
    (OUT / "deletion_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["by_k"], indent=2))


def summarise(frame, run_id: str, n: int, deltas: list[float], seconds: list[float], args) -> dict:
    import numpy as np

    by_k = {}
    for k in KS:
        top = frame[(frame.k == k) & (frame.kind == "top")].set_index("text_id")["drop"]
        rand = frame[(frame.k == k) & (frame.kind == "random")].set_index("text_id")["drop"]
        by_k[str(k)] = {"texts": int(len(top)), "mean_drop_top": round(float(top.mean()), 4),
                        "mean_drop_random": round(float(rand.mean()), 4),
                        "median_drop_top": round(float(top.median()), 4),
                        "median_drop_random": round(float(rand.median()), 4),
                        "share_top_beats_random": round(float((top > rand.loc[top.index]).mean()), 4)}  # fmt: skip
    return {"run_id": run_id, "texts": n, "split": "test", "n_steps": args.steps, "seed": SEED,
            "baseline": "pad-token embeddings, special tokens kept", "target": "the predicted label",
            "deleted": "the k words of highest score toward the predicted label vs k random scored words",
            "abs_delta_median": float(np.median(deltas)), "abs_delta_p95": float(np.quantile(deltas, 0.95)),
            "abs_delta_max": float(np.max(deltas)), "seconds_per_text_median": round(statistics.median(seconds), 3),
            "by_k": by_k}  # fmt: skip


def speed_predictor(args: argparse.Namespace):
    """(the quick-demo run's predictor, or MiniLM with a fresh head; which one)."""
    from studio.inference import Predictor
    from studio.registry import Registry

    run_id = args.run or (newest_quick_demo(Path(args.runs_dir)) if Path(args.runs_dir).is_dir() else None)
    if run_id:
        return Predictor.from_run(Registry(args.runs_dir), run_id), f"run {run_id}"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.config import ModelConfig
    from studio.models import resolve_source

    source = resolve_source(ModelConfig(name="minilm-l6"))
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).eval()
    return Predictor(model, AutoTokenizer.from_pretrained(source), ["negative", "positive"], 128), "minilm-l6 fresh"


def long_texts(predictor, runs_dir: str, run: str | None, n: int = 5) -> list[str]:
    """n texts of at least 128 tokens: the run's test reviews, or the shipped IMDb sample's."""
    if run:
        texts = test_texts(Path(runs_dir), run)
    else:
        from studio.config import DataConfig
        from studio.data import load_raw

        split = next(iter(load_raw(DataConfig(source="imdb-sample")).values()))
        frame = split.to_pandas()  # the raw sample: its own column names (review, sentiment)
        texts = [str(t) for t in frame["text" if "text" in frame else "review"].head(200)]
    return [t for t in texts if len(predictor.tokenizer(t)["input_ids"]) >= 128][:n]


def speed(args: argparse.Namespace) -> None:
    import torch

    from studio.explain import Explainer

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    predictor, what = speed_predictor(args)
    predictor.model.to(args.device)
    run = what.removeprefix("run ") if what.startswith("run ") else None
    texts = long_texts(predictor, args.runs_dir, run)
    results = []
    for steps in args.steps_list:
        for batch in args.batch_list:
            explainer = Explainer(predictor, n_steps=steps, internal_batch_size=batch)
            explainer.explain(texts[0])  # warm-up
            with LoadSampler(every=2.0) as load:
                per_text, cpu, deltas = [], [], []
                for _ in range(args.repeats):
                    for text in texts:
                        if args.device == "cuda":
                            torch.cuda.synchronize()
                        started, cpu_started = time.perf_counter(), time.process_time()
                        e = explainer.explain(text)
                        per_text.append(time.perf_counter() - started)
                        cpu.append(time.process_time() - cpu_started)
                        deltas.append(abs(e.delta))
            result = {"device": args.device, "threads": torch.get_num_threads(), "model": what, "tokens": e.tokens,
                      "n_steps": steps,
                      "internal_batch_size": batch, "texts": len(texts), "repeats": args.repeats,
                      "seconds_median": round(statistics.median(per_text), 4),
                      "seconds_p90": round(sorted(per_text)[int(0.9 * (len(per_text) - 1))], 4),
                      "cpu_seconds_median": round(statistics.median(cpu), 4),
                      "abs_delta_median": round(statistics.median(deltas), 6)} | load.summary()  # fmt: skip
            print(json.dumps(result), flush=True)
            results.append(result)
    OUT.mkdir(parents=True, exist_ok=True)
    out = {"results": results, "environment": environment(args.device)}
    (OUT / f"speed_{args.device}{args.tag}.json").write_text(json.dumps(out, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["deletion", "speed"])
    parser.add_argument("--runs-dir", default=str(ROOT / "runs"))
    parser.add_argument("--run", help="run id (default: the newest quick-demo run)")
    parser.add_argument("--texts", type=int, default=120, help="deletion: test texts (default 120)")
    parser.add_argument("--steps", type=int, default=32, help="deletion: integration steps")
    parser.add_argument("--steps-list", type=int, nargs="+", default=[32], help="speed: n_steps to time")
    parser.add_argument("--batch-list", type=int, nargs="+", default=[32], help="speed: internal batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="speed: passes over the 5 texts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="speed on a CPU: torch threads (default 2)")
    parser.add_argument("--tag", default="", help="speed: suffix of the result file (speed_<device><tag>.json)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    deletion(args) if args.what == "deletion" else speed(args)


if __name__ == "__main__":
    main()
