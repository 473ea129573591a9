"""Setup time of a training run: from process start to the Trainer's first step, phase by phase, cold.

    python benchmarks/setup_time.py --out benchmarks/results/setup_time/NAME [--repeats 3] [--train 16000]
                                    [--model bert-base] [--warm-cache] [--warm-process] [--profile]

The workload is benchmarks/train_speed.py's (bert-base's architecture with random weights saved to a folder,
16,000 training + 2,000 validation + 2,000 test IMDb-like reviews at 256 tokens, `train.speed=fast`). Each
repeat is a fresh Python process (`--child`) that runs the studio's own `Run` and stops the moment the recipe
calls `train` (the Trainer's first step): nothing is trained. Every repeat gets a fresh runs folder, so its
tokenization cache is cold, unless --warm-cache (one shared runs folder, filled by an untimed first run: a
second run of the same data and tokenizer).

Phases (seconds, from timestamps around the recipe's calls): imports (process start to `Run.execute`: python,
torch, transformers, studio), prepare (reading the CSV, splits, labels, reports: `data.prepare`), classes,
plan (speed plan with its memory estimate), model (`build_model`: load, head, peft), tokenize
(`data.tokenize` with its cache), stats (`data.dataset_stats`), record (registry row, folder), trainer
(`build_trainer`), tokenize_bg/stats_bg (the same two when they run in the background thread that
overlaps plan and model: not on the critical path), tokens_wait (the main thread waiting for that thread in
`setup_model`), other (the rest: imports inside the phases, notes), total (process start to the first
step), since_execute (total less imports: what train_speed.py's setup_seconds counts, in a process that has
imported torch and studio already; here `imports` also holds torch and datasets, which the instrumenting
imports). Writes ``setup_time.csv`` (one row per repeat),
``setup_time.md`` (medians), ``environment.json`` (CPU, torch, load averages, date) and, with --profile, one
extra profiled repeat's ``profile.txt`` (cProfile, top 150 by cumulative time). On a GPU the same phases
also pay CUDA's initialisation and the model's move to the device (inside model/trainer).
"""

from __future__ import annotations

import time

T_START = time.time()  # before any import of this process: what `imports` counts from (plus python's own start)

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PHASES = ("imports", "prepare", "classes", "plan", "model", "tokenize", "stats", "tokenize_bg", "stats_bg",
          "tokens_wait", "record", "trainer", "other", "total", "since_execute")  # fmt: skip


def child(args: argparse.Namespace) -> None:
    """One timed run in this (fresh) process; prints one JSON line of phase seconds and exits at the first step."""
    marks: dict[str, float] = {}

    def timed(owner, name: str, key: str):
        original = getattr(owner, name)

        def wrapper(*a, **k):
            t = time.time()
            try:
                return original(*a, **k)
            finally:  # work in the background thread (studio/recipe.py: _EarlyTokens) overlaps the others
                where = key if threading.current_thread() is threading.main_thread() else f"{key}_bg"
                marks[where] = marks.get(where, 0.0) + time.time() - t

        setattr(owner, name, wrapper)

    if args.root:  # another checkout's studio (--baseline)
        sys.path.insert(0, args.root)
    import studio
    import studio.data as data
    import studio.recipe as recipe
    import studio.training as training
    from studio.config import RunConfig
    from studio.registry import Registry

    timed(data, "prepare", "prepare")
    timed(data, "tokenize", "tokenize")
    timed(data, "dataset_stats", "stats")
    timed(recipe.ClassifierRecipe, "_weigh_classes", "classes")
    timed(recipe.ClassifierRecipe, "plan_speed", "plan")
    timed(recipe.ClassifierRecipe, "setup_trainer", "trainer")
    timed(training.Run, "_create_record", "record")
    if hasattr(recipe, "_EarlyTokens"):
        timed(recipe._EarlyTokens, "result", "tokens_wait")
        if args.no_overlap:  # as in a multi-process run: tokenized in setup_model, after the model loads
            recipe._EarlyTokens.start = classmethod(lambda cls, *a: None)
    import studio.models as models

    timed(models, "build_model", "model")

    def first_step(self, *a, **k):
        now = time.time()
        row = {k: round(v, 3) for k, v in marks.items()}
        row["total"] = round(now - args.t0, 3)
        row["imports"] = round(marks["execute_at"] - args.t0, 3)
        row.pop("execute_at", None)
        main = (v for k, v in row.items() if k != "total" and not k.endswith("_bg"))
        row["other"] = round(row["total"] - sum(main), 3)
        row["since_execute"] = round(row["total"] - row["imports"], 3)  # what train_speed's setup_seconds counts
        row["tokenize_cache_hit"] = any(getattr(e, "text", "") == "tokenized data loaded from cache" for e in seen)
        print("SETUP " + json.dumps(row), flush=True)
        if args.profile_to:
            profiler.disable()
            _dump(profiler, Path(args.profile_to))
        os._exit(0)

    if args.as_h200:  # the speed plan as on an H200 (LoRA, batch 128, bf16): what the GPU run loads and builds
        import studio.hardware as hardware

        h200 = hardware.Device(kind="cuda", name="NVIDIA H200 (as if)", total_mb=143771, free_mb=143000, count=1)
        hardware.detect = lambda: h200
    spec = json.loads(Path(args.config).read_text())
    config = RunConfig.from_yaml(Path(studio.__file__).parents[1] / "presets" / spec["preset"]).with_overrides(
        spec["overrides"]
    )
    if args.warm_process:  # as the app's second run: one untimed run of the same config first, in this process
        recipe.ClassifierRecipe.train = _stop_warm_up
        training.Run(config, Registry(Path(f"{args.runs}-warm-up"))).execute()  # ends at its first step
        marks.clear()
        args.t0 = time.time()  # the timed run starts here: nothing left to import
    recipe.ClassifierRecipe.train = first_step
    run = training.Run(config, Registry(Path(args.runs)))
    seen: list = []
    emit = run.emit

    def remember(event):
        seen.append(event)
        emit(event)

    run.emit = remember
    marks["execute_at"] = time.time()
    profiler = None
    if args.profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    result = run.execute()
    print("FAILED " + result.status + ": " + result.message, flush=True)
    sys.exit(1)


class _WarmedUp(Exception):
    """Ends the warm-up run at its first step (the run records it as failed; nothing else is kept of it)."""


def _stop_warm_up(self, *a, **k):
    raise _WarmedUp("warm-up done")


def _dump(profiler, path: Path) -> None:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf).sort_stats("cumulative")
    stats.print_stats(150)
    buf.write("\n\nby own (total) time\n")
    stats.sort_stats("tottime").print_stats(30)
    path.write_text(buf.getvalue())


def run_once(config: Path, runs: Path, profile_to: Path | None = None, as_h200: bool = False,
             root: Path | None = None, no_overlap: bool = False, warm_process: bool = False) -> dict:  # fmt: skip
    t0 = time.time()
    cmd = [sys.executable, __file__, "--child", "--config", str(config), "--runs", str(runs), "--t0", repr(t0)]
    cmd += ["--as-h200"] if as_h200 else []
    cmd += ["--warm-process"] if warm_process else []
    cmd += ["--no-overlap"] if no_overlap else []
    cmd += ["--root", str(root)] if root else []
    if profile_to:
        cmd += ["--profile-to", str(profile_to)]
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = next((x for x in out.stdout.splitlines() if x.startswith("SETUP ")), None)
    if line is None:
        raise SystemExit(f"the child run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    row = json.loads(line[6:])
    row["load_1min_before"], row["load_1min_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", type=int, default=16000)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides, e.g. train.speed=as_set")
    parser.add_argument("--warm-cache", action="store_true", help="one runs folder: the tokenization cache is warm")
    parser.add_argument("--profile", action="store_true", help="one more repeat under cProfile: profile.txt")
    parser.add_argument("--as-h200", action="store_true",
                        help="on a CPU machine: plan the speed profile as for an H200 (its estimate, LoRA, batch "
                             "128), so the CPU measures the model and Trainer the GPU run builds")  # fmt: skip
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of the studio (e.g. `git worktree add /tmp/base <commit>`): each "
                             "repeat times it too, just before this one: both see the same load")  # fmt: skip
    parser.add_argument("--serial", action="store_true",
                        help="each repeat also times this code with tokenization after the model load, not in "
                             "the background (code `serial`): what the overlap alone buys")  # fmt: skip
    parser.add_argument("--warm-process", action="store_true",
                        help="each repeat also times a run in a process that has already set up one run of the "
                             "same config (code `warm-process`: the app's second run; its tokenization cache "
                             "still cold): what setup is once the libraries are imported")  # fmt: skip
    parser.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--runs", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 1
    if not args.out:
        parser.error("--out is required")
    from memory_validation import model_folder
    from train_speed import workload

    from studio.config import RunConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="setup-time-"))
    data = workload(work, round(args.train / 0.8))
    folder = model_folder(args.model, work / "models")
    overrides = [f"model.name={folder}", f"data.source={data}", "data.text_column=review",
                 "data.label_column=sentiment", "data.max_samples=null", "train.epochs=3",
                 "train.early_stopping_patience=null", "train.speed=fast", "name=setup-time", *args.set]  # fmt: skip
    RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(overrides)  # refused here if wrong
    # the preset and overrides, not a YAML this code writes: a --baseline checkout builds the config with its own
    # code (an older one refuses keys it does not know, e.g. train.checkpointing_reentrant)
    config_path = work / "config.json"
    config_path.write_text(json.dumps({"preset": "imdb_bert_qlora.yaml", "overrides": overrides}))
    if args.warm_cache:
        run_once(config_path, work / "runs-warm", as_h200=args.as_h200)  # fills the cache: not timed
    rows = []
    codes = [("baseline", args.baseline)] if args.baseline else []
    codes += [("serial", None)] if args.serial else []
    codes += [("warm-process", None)] if args.warm_process else []
    codes += [("this", None)]
    for i in range(args.repeats):
        for code, root in codes:
            runs = work / ("runs-warm" if args.warm_cache else f"runs-{code}-{i}")
            row = {"code": code, "repeat": i, **run_once(config_path, runs, as_h200=args.as_h200, root=root,
                                                         no_overlap=code == "serial",
                                                         warm_process=code == "warm-process")}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.profile:
        runs = work / ("runs-warm" if args.warm_cache else "runs-profile")
        run_once(config_path, runs, out / "profile.txt", args.as_h200)
    _write(out, rows, args)
    return 0


def _write(out: Path, rows: list[dict], args: argparse.Namespace) -> None:
    import torch
    import transformers

    from studio.hardware import cpu_name

    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "setup_time.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    codes = list(dict.fromkeys(r["code"] for r in rows))
    md = ["| phase | " + " | ".join(f"{c}: median s (min-max)" for c in codes) + " |", "|---|" + "---|" * len(codes)]
    for p in PHASES:
        cells = []
        for c in codes:
            values = [r[p] for r in rows if r["code"] == c and r.get(p) is not None]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "")
        if any(cells):
            md.append(f"| {p} | " + " | ".join(cells) + " |")
    loads = [r["load_1min_before"] for r in rows] + [r["load_1min_after"] for r in rows] or [os.getloadavg()[0]]
    cache = "warm (a second run of the same data)" if args.warm_cache else "cold (a fresh runs folder per repeat)"
    warm = " (warm-process: after one untimed run of the same config in that process)" if args.warm_process else ""
    md.append(f"\n{args.repeats} repeats of each, each a fresh process{warm}; tokenization cache {cache}; "
              f"1-min load average {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs.")  # fmt: skip
    (out / "setup_time.md").write_text("\n".join(md) + "\n")
    cpu = cpu_name()
    env = {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train": args.train, "model": args.model,
           "warm_cache": args.warm_cache, "as_h200": args.as_h200, "baseline": str(args.baseline or ""),
           "serial": args.serial, "warm_process": args.warm_process, "extra_overrides": args.set,
           "load_averages": loads}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
