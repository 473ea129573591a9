"""CPU speed of torch, ONNX fp32 and ONNX int8 (studio/onnx_export.py) for MiniLM-L6 and a bert-base-sized model.

    python benchmarks/onnx_speed.py --out benchmarks/results/onnx_speed [--run RUNS_DIR/RUN_ID] [--repeats 5]

- minilm-l6: a finished quick-demo run (the real pretrained all-MiniLM-L6-v2, fully fine-tuned on the shipped
  IMDb sample; default: the newest completed `*quick-demo*` run in ./runs), copied to a scratch folder (the run's
  own folder is never written), exported with `export_onnx(..., int8=True)`: its checks give the fp32 parity and
  the int8 test accuracy against torch's.
- bert-base: bert-base-uncased's architecture with random weights and a fresh 2-label head (speed does not depend
  on the weights), its graphs built by the same `build_graphs` as `export_onnx`.
- `--models minilm-l6` (or bert-base): measure one of them only.

Each (model, engine) is measured in its own fresh Python process, `--repeats` times, the engines interleaved
(torch, fp32, int8, torch, ...) so that a change in the machine's load hits all alike; the table gives the median
over the repeats. Per process: single-text latency (`predict([text])` one real review at a time, after warm-up:
p50 / p95 ms) and throughput (`predict(texts)` over --texts reviews at the studio's CPU batch, 8 texts a pass, and
for torch-b32 at 32; 3 passes: the median texts/s). A further process per repeat runs all engines in turn, batch by
batch (`--turns`; OMP_WAIT_POLICY=PASSIVE, see IN_ONE_PROCESS).
Texts are the shipped IMDb reviews, cut at max_length 128 tokens (the quick-demo run's), each batch padded to its
longest text by both engines. Threads: the same for both engines: torch's default (one per physical core), which
`OnnxPredictor` gives onnxruntime's intra-op pool. `os.getloadavg()` is recorded around every process: the machine
is shared, and its load is part of the result. Odd repeats run the engines in reverse order (int8, fp32, torch), so
a load that rises or falls during a repeat does not always favour the same engine; the table gives each repeat's
int8 / torch ratio beside the medians.

Writes onnx_speed.csv (every process), onnx_speed.md (the medians) and environment.json to --out.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

ENGINES = ("torch", "torch-b32", "onnx-fp32", "onnx-int8")
"""torch-b32: the torch predictor at 32 texts a forward pass (the studio's CPU batch until 2026-12-02, and a common
choice): the ratios below are also taken against the better of torch's two batches."""
MAX_LENGTH = 128
STOCK_BATCH = 32
IN_ONE_PROCESS = "PASSIVE"
"""OMP_WAIT_POLICY of the process that runs the engines in turn: by default torch's idle OpenMP threads spin on
the cores the next engine needs (measured: ONNX int8 ran at 107 texts/s after torch with ACTIVE, 229 with PASSIVE,
214 with the default; torch itself 79, 72 and 74). Passive, each engine has the cores to itself, as it has in
a process of its own."""


def batch_of(engine: str) -> int:
    """Texts per forward pass: the studio's CPU default (studio.inference.CPU_BATCH), 32 for torch-b32."""
    from studio.inference import CPU_BATCH

    return STOCK_BATCH if engine == "torch-b32" else CPU_BATCH


def reviews(n: int, skip: int = 0) -> list[str]:
    with gzip.open(ROOT / "assets" / "data" / "imdb_sample.csv.gz", "rt", encoding="utf-8") as f:
        rows = [r["review"] for r in csv.DictReader(f)]
    return [rows[(skip + i) % len(rows)] for i in range(n)]


# ---- preparing the models (parent process) ----------------------------------------------------------------
def newest_quick_demo(runs_dir: Path) -> Path:
    from studio.registry import Registry

    done = [r for r in Registry(runs_dir).list("completed") if "quick-demo" in r.id]
    if not done:
        raise SystemExit(f"no completed quick-demo run in {runs_dir}: train one (python -m studio train quick_demo)")
    return runs_dir / done[0].id


def prepare_minilm(run: Path, work: Path, reuse: bool) -> tuple[Path, dict]:
    """A scratch copy of the run (its own registry), exported with int8; returns its folder and the checks."""
    import sqlite3

    from studio.onnx_export import export_onnx
    from studio.registry import Registry

    runs = work / "runs"
    done = runs / run.name / "onnx" / "onnx.json"
    if reuse and done.is_file():  # an earlier invocation's export of the same run
        checks = {c["model"]: {**c, "accuracy_loss": c["accuracy_torch"] - c["accuracy_onnx"]}
                  for c in json.loads(done.read_text())["checks"]}  # fmt: skip
        return runs / run.name, {"export_s": None, "checks": checks, "run": run.name}
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    shutil.copytree(run, runs / run.name, ignore=shutil.ignore_patterns("onnx", "merged", ".*"))
    src = sqlite3.connect(f"file:{run.parent / 'registry.sqlite'}?mode=ro", uri=True)
    dst = sqlite3.connect(runs / "registry.sqlite")
    src.backup(dst)
    dst.execute("DELETE FROM runs WHERE id != ?", (run.name,))
    dst.commit()
    dst.close()
    start = time.perf_counter()
    done = export_onnx(Registry(runs), run.name, int8=True, max_int8_loss=100.0)  # the loss is reported, not judged
    checks = {c.model: {**c.__dict__, "accuracy_loss": c.accuracy_loss} for c in done.checks}
    return runs / run.name, {"export_s": round(time.perf_counter() - start, 1), "checks": checks, "run": run.name}


def prepare_bert_base(work: Path, reuse: bool) -> Path:
    """A run-like folder (model/, tokenizer/, label_map.json, onnx/) of a random bert-base classifier."""
    import torch
    from memory_validation import model_folder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.inference import Predictor
    from studio.onnx_export import META_FILE, build_graphs

    folder = work / "bert-base-run"
    if reuse and (folder / "onnx" / META_FILE).is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    source = model_folder("bert-base", work / "models")
    torch.manual_seed(0)
    net = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, attn_implementation="eager")
    net = net.float().eval()  # eager attention: the graph onnxruntime's optimizer fuses, as export_onnx does
    net.save_pretrained(folder / "model")
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.save_pretrained(folder / "tokenizer")
    labels = {"id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}
    (folder / "label_map.json").write_text(json.dumps(labels))
    onnx = folder / "onnx"
    onnx.mkdir()
    graphs = build_graphs(Predictor(net, tokenizer, ["negative", "positive"], MAX_LENGTH), onnx, int8=True)
    tokenizer.save_pretrained(onnx)
    shutil.copyfile(folder / "label_map.json", onnx / "label_map.json")
    (onnx / META_FILE).write_text(json.dumps({**graphs, "max_length": MAX_LENGTH, "task": "single_label"}))
    return folder


# ---- one measurement (child process) ----------------------------------------------------------------------
def load(folder: Path, engine: str):
    if engine.startswith("torch"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from studio.calibration import read_temperature
        from studio.inference import Predictor
        from studio.models import read_label_map

        labels = read_label_map(folder)
        net = AutoModelForSequenceClassification.from_pretrained(folder / "model").float().eval()
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        return Predictor(net, tokenizer, labels, MAX_LENGTH, temperature=read_temperature(folder, labels))
    from studio.onnx_export import FP32_FILE, INT8_FILE, OnnxPredictor

    return OnnxPredictor.from_folder(folder / "onnx", INT8_FILE if engine == "onnx-int8" else FP32_FILE)


def measure(folder: Path, engine: str, n_single: int, n_texts: int) -> dict:
    import numpy as np

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    predictor = load(folder, engine)
    load_s = time.perf_counter() - start
    singles, batch = reviews(n_single + 5, skip=1000), reviews(n_texts)
    for text in singles[:5]:
        predictor.predict([text])
    predictor.predict(batch[:32], batch_size=batch_of(engine))
    ms = []
    for text in singles[5:]:
        t = time.perf_counter()
        predictor.predict([text])
        ms.append((time.perf_counter() - t) * 1000)
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        predictor.predict(batch, batch_size=batch_of(engine))
        rates.append(len(batch) / (time.perf_counter() - t))
    threads = _threads(engine, predictor)
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "texts_per_s": statistics.median(rates), "load_s": load_s, "threads": threads,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0]}  # fmt: skip


def interleaved(folder: Path, n_texts: int, turns: int) -> dict:
    """The engines loaded in one process and run in turn on the same 32 texts per turn (each at its batch_of; the
    order rotating), `turns` times: each turn's ratios to torch compare passes run seconds apart, under the same
    load."""
    load_before = os.getloadavg()[0]
    predictors = {engine: load(folder, engine) for engine in ENGINES}
    texts = reviews(n_texts)
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    for engine, predictor in predictors.items():
        predictor.predict(batches[0], batch_size=batch_of(engine))
    rates: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    for turn in range(turns):
        batch = batches[turn % len(batches)]
        for engine in ENGINES[turn % len(ENGINES) :] + ENGINES[: turn % len(ENGINES)]:
            t = time.perf_counter()
            predictors[engine].predict(batch, batch_size=batch_of(engine))
            rates[engine].append(len(batch) / (time.perf_counter() - t))
    ratios = {e: [a / b for a, b in zip(rates[e], rates["torch"], strict=True)] for e in ENGINES[1:]}
    return {"turns": turns, **{f"{e}_texts_per_s": statistics.median(rates[e]) for e in ENGINES},
            **{f"{e}_x_torch": ratios[e] for e in ENGINES[1:]},
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0]}  # fmt: skip


def _threads(engine: str, predictor) -> str:
    if engine.startswith("torch"):
        import torch

        return f"torch {torch.get_num_threads()}"
    return f"onnxruntime {predictor.model.get_session_options().intra_op_num_threads} (torch's count)"


# ---- the table --------------------------------------------------------------------------------------------
def run_all(args: argparse.Namespace, folders: dict[str, Path]) -> list[dict]:
    rows = []
    sizes = {"minilm-l6": (args.single, args.texts), "bert-base": (max(10, args.single // 2), max(32, args.texts // 2))}
    for repeat in range(args.repeats):
        for model, folder in folders.items():
            for engine in ENGINES if repeat % 2 == 0 else ENGINES[::-1]:
                n_single, n_texts = sizes[model]
                cmd = [sys.executable, __file__, "--measure", str(folder), engine, str(n_single), str(n_texts)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
                row = {"model": model, "engine": engine, "repeat": repeat, "single_texts": n_single,
                       "batch_texts": n_texts, **json.loads(out.strip().splitlines()[-1])}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
            if args.turns:
                cmd = [sys.executable, __file__, "--interleave", str(folder), str(sizes[model][1]), str(args.turns)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                                     env={**os.environ, "OMP_WAIT_POLICY": IN_ONE_PROCESS}).stdout  # fmt: skip
                row = {"model": model, "engine": "interleaved", "repeat": repeat,
                       **json.loads(out.strip().splitlines()[-1])}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def summary(rows: list[dict], prep: dict, env: dict) -> str:
    med = lambda m, e, k: statistics.median(r[k] for r in rows if r["model"] == m and r["engine"] == e)  # noqa: E731
    lines = ["| model | engine | single-text p50 ms | p95 ms | texts/s | x torch | processes |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for model in dict.fromkeys(r["model"] for r in rows):
        base = med(model, "torch", "texts_per_s")
        for engine in ENGINES:
            rate = med(model, engine, "texts_per_s")
            p50, p95 = med(model, engine, "p50_ms"), med(model, engine, "p95_ms")
            n = sum(1 for r in rows if r["model"] == model and r["engine"] == engine)
            lines.append(f"| {model} | {engine} | {p50:.1f} | {p95:.1f} | {rate:.1f} | {rate / base:.2f} | {n} |")
    for model in dict.fromkeys(r["model"] for r in rows):  # the same repeat's processes ran minutes apart at most
        rate = {
            (r["engine"], r["repeat"]): r["texts_per_s"] for r in rows if r["model"] == model and "texts_per_s" in r
        }
        ratios = [
            rate[("onnx-int8", k)] / rate[("torch", k)] for e, k in rate if e == "torch" and ("onnx-int8", k) in rate
        ]
        lines.append(f"{model}: ONNX int8 / torch texts/s, repeat by repeat: {', '.join(f'{x:.2f}' for x in ratios)} "
                     f"(median {statistics.median(ratios):.2f})")  # fmt: skip
    lines.append(f"texts/s: {STOCK_BATCH} texts a pass for torch-b32, {batch_of('torch')} for the others (the "
                 "studio's CPU batch)")  # fmt: skip
    lines += _interleaved_lines(rows)
    checks = prep["minilm"]["checks"]
    fp32, int8 = checks["fp32"], checks.get("int8", {})
    lines += ["", f"MiniLM-L6 run {prep['minilm']['run']}, its {fp32['texts']} test + probe texts: ONNX fp32 labels "
              f"equal to torch's on {fp32['texts'] - fp32['labels_differ']}/{fp32['texts']}, max probability "
              f"difference {fp32['max_prob_diff']:.2e}; int8 test accuracy {int8.get('accuracy_onnx', 0):.2f}% vs "
              f"torch {int8.get('accuracy_torch', 0):.2f}% (loss {int8.get('accuracy_loss', 0):.2f} points), "
              f"{int8.get('labels_differ')} labels differ.",
              f"Load average (1 min) over the runs: {env['loadavg_min']:.1f} to {env['loadavg_max']:.1f} on "
              f"{env['cpus']} CPUs (a shared machine); each figure the median over its processes (a fresh one "
              "per measurement)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _interleaved_lines(rows: list[dict]) -> list[str]:
    """The in-process, turn-by-turn comparison: median texts/s and the median (interquartile range) of the per-turn
    ratios to torch, over every turn of every repeat."""
    import numpy as np

    inter = [r for r in rows if r["engine"] == "interleaved"]
    if not inter:
        return []
    lines = ["", f"Engines in one process, one batch each in turn (the ratio taken batch by batch, same load; "
             f"OMP_WAIT_POLICY={IN_ONE_PROCESS}):", "",
             "| model | engine | texts/s (median batch) | x torch: median of per-batch ratios (q1-q3) | batches |",
             "|---|---|---|---|---|"]  # fmt: skip
    for model in dict.fromkeys(r["model"] for r in inter):
        mine = [r for r in inter if r["model"] == model]
        for engine in ENGINES:
            rate = statistics.median(r[f"{engine}_texts_per_s"] for r in mine)
            ratios = [x for r in mine for x in r.get(f"{engine}_x_torch", [1.0] * r["turns"])]
            q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
            lines.append(f"| {model} | {engine} | {rate:.1f} | {q2:.2f} ({q1:.2f}-{q3:.2f}) | {len(ratios)} |")
    return lines


def environment(rows: list[dict], args: argparse.Namespace) -> dict:
    import platform

    import onnxruntime
    import torch
    import transformers

    from studio.hardware import cpu_name

    loads = [r[k] for r in rows for k in ("loadavg_before", "loadavg_after")]
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_name(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "repeats": 1 + max(r["repeat"] for r in rows), "max_length": MAX_LENGTH,
            "cpu_flags": _int8_flags(), "loadavg_min": min(loads), "loadavg_max": max(loads),
            "note": "a shared machine (other sessions ran alongside): the CSV has each load average"}  # fmt: skip


def _int8_flags() -> list[str]:
    """The CPU's int8 / bf16 matrix instructions (onnxruntime's int8 kernels use VNNI or AMX where present)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(flags & {"avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/onnx_speed")
    p.add_argument("--run", help="a finished MiniLM quick-demo run folder (default: newest in ./runs)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--single", type=int, default=20, help="single-text calls per process (bert-base: half)")
    p.add_argument("--texts", type=int, default=64, help="texts per throughput pass (bert-base: half)")
    p.add_argument("--work", default="/tmp/onnx_speed_work")
    p.add_argument("--reuse", action="store_true", help="keep the models an earlier invocation left in --work")
    p.add_argument("--summarize", help="write the table from the JSON rows an earlier invocation printed (a log)")
    p.add_argument("--models", default="minilm-l6,bert-base", help="which of minilm-l6,bert-base to measure")
    p.add_argument("--turns", type=int, default=12, help="turns per interleaved process (0: none)")
    p.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--interleave", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.interleave:
        folder, n_texts, turns = args.interleave
        print(json.dumps(interleaved(Path(folder), int(n_texts), int(turns))))
        return
    if args.measure:
        folder, engine, n_single, n_texts = args.measure
        print(json.dumps(measure(Path(folder), engine, int(n_single), int(n_texts))))
        return
    from studio.console import quiet_libraries

    quiet_libraries()
    work, out = Path(args.work), Path(args.out)
    if args.summarize:  # the rows an interrupted invocation printed (one JSON object a line)
        lines = Path(args.summarize).read_text().splitlines()
        rows = [json.loads(ln) for ln in lines if ln.startswith('{"model"')]
        run = Path(args.run) if args.run else newest_quick_demo(ROOT / "runs")
        write(rows, args, prepare_minilm(run, work, reuse=True)[1], out)
        return
    run = Path(args.run) if args.run else newest_quick_demo(ROOT / "runs")
    minilm, prep = prepare_minilm(run, work, args.reuse)
    folders = {"minilm-l6": minilm}
    if "bert-base" in args.models.split(","):
        folders["bert-base"] = prepare_bert_base(work, args.reuse)
    if "minilm-l6" not in args.models.split(","):
        del folders["minilm-l6"]  # its export's checks are still reported
    rows = run_all(args, folders)
    write(rows, args, prep, out)


def write(rows: list[dict], args: argparse.Namespace, prep: dict, out: Path) -> None:
    env = environment(rows, args)
    out.mkdir(parents=True, exist_ok=True)
    inter = [r for r in rows if r["engine"] == "interleaved"]
    rows = [r for r in rows if r["engine"] != "interleaved"]
    with open(out / "onnx_speed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "onnx_speed_interleaved.json").write_text(json.dumps(inter, indent=1))
    (out / "environment.json").write_text(json.dumps({**env, "minilm": prep}, indent=2))
    (out / "onnx_speed.md").write_text(summary(rows + inter, {"minilm": prep}, env))
    print((out / "onnx_speed.md").read_text())


if __name__ == "__main__":
    main()
