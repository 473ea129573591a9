"""Where an ONNX model's time goes: onnxruntime's own profiler, operator by operator, for the exports onnx_speed.py
measures (run that first: it leaves the models in --work).

    python benchmarks/onnx_profile.py --out benchmarks/results/onnx_speed [--work /tmp/onnx_speed_work]

One batch of 32 IMDb reviews at 128 tokens (the throughput benchmark's shape), run --runs times through a session
made as `OnnxPredictor` makes it (`studio.onnx_export.inference_session`) with `enable_profiling`; each node's time
is its minimum over the runs after the first (the machine is shared: the minimum is the least disturbed), summed by
operator type. Also lists the operators of the graph the session runs (its optimized graph), so a fusion that is
or is not there shows. Writes onnx_profile.md and onnx_profile.json to --out.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def profile(graph: Path, tokenizer_dir: Path, runs: int) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx_speed import MAX_LENGTH, reviews
    from transformers import AutoTokenizer

    from studio.onnx_export import DISABLED_OPTIMIZERS, inference_session

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    encoded = tokenizer(reviews(32), truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np")
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        as_served = inference_session(graph, optimized_to=optimized)
        ran_ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
        options = ort.SessionOptions()  # inference_session's settings, with the profiler on
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = as_served.get_session_options().intra_op_num_threads
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(DISABLED_OPTIMIZERS))  # fmt: skip
        feed = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
        walls = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            walls.append(time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"] / 1000)
            op_of[e["name"]] = e["args"]["op_name"]
    by_op: dict[str, float] = collections.Counter()
    for node, ms in per_node.items():
        by_op[op_of[node]] += min(ms[1:] or ms)
    total = sum(by_op.values())
    return {"graph": graph.name, "shape": list(feed["input_ids"].shape), "runs": runs, "total_ms": total,
            "wall_ms_min": min(walls[1:]) * 1000, "threads": options.intra_op_num_threads,
            "ops": {op: {"ms": ms, "share": ms / total, "nodes": sum(1 for n in op_of.values() if n == op)}
                    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "session_graph_ops": dict(ran_ops), "loadavg": os.getloadavg()[0]}  # fmt: skip


def table(results: dict[str, dict]) -> str:
    lines = []
    for name, r in results.items():
        lines += [f"### {name}: {r['total_ms']:.0f} ms for a {r['shape'][0]} x {r['shape'][1]} batch (sum of per-node "
                  f"minima over {r['runs'] - 1} runs; {r['threads']} threads; load average {r['loadavg']:.1f})", "",
                  "| operator | nodes | share | ms |", "|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {op} | {v['nodes']} | {v['share'] * 100:.1f}% | {v['ms']:.1f} |"
            for op, v in r["ops"].items()
            if v["share"] > 0.002
        ]
        fused = [f"{op} {n}" for op, n in r["session_graph_ops"].items() if op not in ("Constant", "Shape", "Gather")]
        lines += ["", f"The session's graph: {', '.join(fused)}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/onnx_speed")
    p.add_argument("--work", default="/tmp/onnx_speed_work", help="onnx_speed.py's --work (the models it made)")
    p.add_argument("--runs", type=int, default=8)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work)
    minilm = sorted((work / "runs").glob("*/onnx"))
    folders = {"minilm-l6": minilm[0] if minilm else None, "bert-base": work / "bert-base-run" / "onnx"}
    results = {}
    for model, folder in folders.items():
        if folder is None or not (folder / "model.int8.onnx").is_file():
            print(f"{model}: no export in {work} (run benchmarks/onnx_speed.py first)")
            continue
        for graph in ("model.int8.onnx", "model.onnx"):
            results[f"{model} {graph}"] = profile(folder / graph, folder, args.runs)
            print(f"{model} {graph}: {results[f'{model} {graph}']['total_ms']:.0f} ms", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_profile.json").write_text(json.dumps(results, indent=2))
    (out / "onnx_profile.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
