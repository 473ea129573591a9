"""What each of issue 27's last ONNX int8 levers gives, batch by batch in one process (2026-12-02).

    python benchmarks/onnx_levers.py --out benchmarks/results/onnx_speed [--work /tmp/onnx_speed_work] [--turns 12]

Run benchmarks/onnx_speed.py first: it leaves the MiniLM-L6 quick-demo run and the bert-base-sized model in
--work. From each model's torch weights the int8 graph is rebuilt here step by step, with the studio's own
functions (studio/onnx_export.py):

- `before`: fused (optimize_graph) and quantized (quantize_int8): the export until 2026-12-01;
- `first-token`: + first_token_only (the last layer after its attention on token 0 alone): what export_onnx
  makes now;
- `fast-gelu`: + BiasGelu (exact, erf) replaced by onnxruntime's FastGelu (tanh) in the int8 graph: measured and
  not kept (`fast_gelu` below).

Each is scored at 32 texts a pass (the studio's CPU batch until then) and at 8 (studio.inference.CPU_BATCH now),
beside torch at 32 and 8. Every turn runs all of them on the same 32 IMDb reviews (128 tokens), the order
rotating, so each ratio compares passes seconds apart under the same load (the machine is shared); the table gives
the median (q1-q3) of the per-turn ratios to torch at 32 and at 8. Also the largest probability difference of
each variant against `before` on those texts: what the two graph rewrites change. Writes onnx_levers.md and
onnx_levers.json to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GRAPHS = ("before", "first-token", "fast-gelu")
BATCHES = (32, 8)


def build_variants(folder: Path, out: Path) -> None:
    """before.int8.onnx, first-token.int8.onnx and fast-gelu.int8.onnx (with the export's other files) in `out`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.inference import Predictor
    from studio.onnx_export import (
        FP32_FILE,
        export_graph,
        first_token_only,
        optimize_graph,
        optimizer_settings,
        quantize_int8,
    )

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder / "onnx", out, ignore=shutil.ignore_patterns("*.onnx"))
    net = AutoModelForSequenceClassification.from_pretrained(folder / "model", attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    predictor = Predictor(net.float().eval(), tokenizer, list(net.config.id2label.values()), 128)
    export_graph(predictor, out / FP32_FILE, fusable=True)
    optimize_graph(out / FP32_FILE, optimizer_settings(net.config))
    quantize_int8(out / FP32_FILE, out / "before.int8.onnx")
    assert first_token_only(out / FP32_FILE)
    quantize_int8(out / FP32_FILE, out / "first-token.int8.onnx")
    shutil.copyfile(out / "first-token.int8.onnx", out / "fast-gelu.int8.onnx")
    assert fast_gelu(out / "fast-gelu.int8.onnx")


def fast_gelu(path: Path) -> int:
    """BiasGelu -> FastGelu (same inputs: x, bias) in the graph at `path`; returns the count replaced."""
    import onnx

    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "BiasGelu"]
    for node in nodes:
        node.op_type = "FastGelu"
    onnx.save(model, str(path))
    return len(nodes)


def measure(folder: Path, variants: Path, turns: int) -> dict:
    import numpy as np
    from onnx_speed import load, reviews

    from studio.onnx_export import OnnxPredictor

    engines = {"torch": load(folder, "torch")}
    engines |= {g: OnnxPredictor.from_folder(variants, f"{g}.int8.onnx") for g in GRAPHS}
    cells = [(e, b) for e in engines for b in BATCHES]
    texts = reviews(32 * turns)
    for engine, batch in cells:
        engines[engine].predict(texts[:32], batch_size=batch)
    rates: dict[tuple[str, int], list[float]] = {c: [] for c in cells}
    for turn in range(turns):
        chunk = texts[32 * turn : 32 * turn + 32]
        for engine, batch in cells[turn % len(cells) :] + cells[: turn % len(cells)]:
            t = time.perf_counter()
            engines[engine].predict(chunk, batch_size=batch)
            rates[(engine, batch)].append(len(chunk) / (time.perf_counter() - t))
    names = engines["torch"].label_names
    probs = {g: np.array([[p.probs[n] for n in names] for p in engines[g].predict(texts[:64])]) for g in GRAPHS}
    rows = []
    for engine, batch in cells:
        row = {"engine": engine if engine == "torch" else f"int8 {engine}", "batch": batch,
               "texts_per_s": float(np.median(rates[(engine, batch)]))}  # fmt: skip
        for ref in BATCHES:
            ratios = np.array(rates[(engine, batch)]) / np.array(rates[("torch", ref)])
            row[f"x_torch{ref}"] = [float(q) for q in np.percentile(ratios, [25, 50, 75])]
        if engine in probs:
            row["max_prob_diff_vs_before"] = float(np.abs(probs[engine] - probs["before"]).max())
        rows.append(row)
    return {"turns": turns, "rows": rows}


def table(results: dict[str, dict]) -> str:
    fmt = lambda q: f"{q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})"  # noqa: E731
    lines = ["| model | engine | texts a pass | texts/s (median turn) | x torch at 32 | x torch at 8 | "
             "max prob. diff vs before |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for model, result in results.items():
        for r in result["rows"]:
            diff = f"{r['max_prob_diff_vs_before']:.1e}" if "max_prob_diff_vs_before" in r else ""
            lines.append(f"| {model} | {r['engine']} | {r['batch']} | {r['texts_per_s']:.1f} | "
                         f"{fmt(r['x_torch32'])} | {fmt(r['x_torch8'])} | {diff} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    import os

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/onnx_speed")
    p.add_argument("--work", default="/tmp/onnx_speed_work")
    p.add_argument("--turns", type=int, default=12)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads would spin on onnxruntime's cores
    from studio.console import quiet_libraries

    quiet_libraries()
    work = Path(args.work)
    runs = sorted((work / "runs").glob("*quick-demo*"))
    folders = {"minilm-l6": runs[-1], "bert-base": work / "bert-base-run"}
    results, load = {}, [os.getloadavg()[0]]
    for model, folder in folders.items():
        build_variants(folder, work / "levers" / model)
        results[model] = measure(folder, work / "levers" / model, args.turns)
        load.append(os.getloadavg()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    note = (f"\n{args.turns} turns of 32 texts per model; load average (1 min) {min(load):.1f} to {max(load):.1f} on "
            f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")  # fmt: skip
    (out / "onnx_levers.md").write_text(table(results) + note)
    (out / "onnx_levers.json").write_text(json.dumps({"load": load, **results}, indent=1))
    print(table(results) + note)


if __name__ == "__main__":
    main()
