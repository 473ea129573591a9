"""How far an export's predictions are from its run's, per family x method: the numbers behind the tolerances of
studio/export_check.py (FP32_TOLERANCE, QUANTIZED_TOLERANCE, HALF_TOLERANCE).

    python benchmarks/export_check.py tiny [--families bert,gpt2] [--methods full,qlora]     # CPU, minutes
    python benchmarks/export_check.py real [--steps 60] [--methods full,lora,qlora,ia3]      # MiniLM; on the GPU host

tiny: every tiny family (tests/tiny.py) x method trained one step (as tests/test_export_check.py does), exported as
a zip and (adapters) merged, every export checked in one fresh process with the tolerances lifted (so each
measured difference is recorded, not judged); then the same merges / full models with the head renamed so the
loader does not map it (the peers' failure: a random head), to show how far a lost head moves the probabilities.
Writes results/export_check/tiny.csv (export, family, method, kind, tolerance the studio would apply, rows, largest
raw / calibrated probability difference, rows whose label differs) and tiny_environment.json.

real: all-MiniLM-L6-v2 (minilm-l6, from its PyPI package) fine-tuned on the IMDb sample for --steps steps with
each method at precision auto (bf16 autocast on a GPU that has it: the case HALF_TOLERANCE covers; QLoRA: a 4-bit
base), exported and checked the same way; writes results/export_check/real_<cpu|cuda>.csv and its environment
JSON. On the GPU host (one command, from the repo root, after `source benchmarks/gpu_env.sh` with MiniLM carried
as benchmarks/quick_demo_gpu_host.sh does):

    python benchmarks/export_check.py real --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
OUT = ROOT / "benchmarks" / "results" / "export_check"
FAMILIES = ["bert", "distilbert", "roberta", "deberta-v2", "gpt2", "qwen2", "llama", "gemma3"]
METHODS = ["full", "lora", "qlora", "ia3"]


from load_sampler import LoadSampler  # noqa: E402 - after the path set-up above


def environment(load: LoadSampler, seconds: float) -> dict:
    import torch
    import transformers

    from studio.hardware import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
            "gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
            "load_average_samples": load.samples, "seconds": round(seconds, 1)}  # fmt: skip


def measured(targets, kinds):
    """Check every target with the tolerances lifted: one row per export with what the check measured."""
    from studio import export_check

    lifted, head = export_check.tolerance_for, export_check.HEAD_TOLERANCE
    export_check.tolerance_for = lambda run: (float("inf"), lifted(run)[1])  # measure, do not judge
    export_check.HEAD_TOLERANCE = float("inf")
    try:
        results = export_check.check_exports(targets)
    finally:
        export_check.tolerance_for, export_check.HEAD_TOLERANCE = lifted, head
    rows = []
    for target, result, kind in zip(targets, results, kinds, strict=True):
        run = target.run
        row = {"export": target.what, "model": Path(run.config.model.name).name, "method": run.config.method.name,
               "kind": kind, "tolerance": lifted(run)[0]}  # fmt: skip
        if isinstance(result, export_check.ExportCheckError):
            row["error"] = str(result)[:300]
        else:
            row.update(rows=result.rows, max_prob_diff=result.max_prob_diff,
                       max_calibrated_diff=result.max_calibrated_diff, labels_differ=result.near_ties)  # fmt: skip
        rows.append(row)
    return rows


def train(registry, model: str, method: str, steps: int, samples: int, max_length: int, lr: float) -> str:
    from studio.config import RunConfig
    from studio.training import Run

    config = RunConfig.from_dict({
        "name": f"xcheck-{method}", "data": {"source": "imdb-sample", "max_samples": samples, "max_length": max_length},
        "model": {"name": model}, "method": {"name": method, "r": 8},
        "train": {"max_steps": steps, "batch_size": 16, "learning_rate": lr, "eval_strategy": "no",
                  "speed": "as_set"},  # the method as named: on a GPU the fast profile turns QLoRA into LoRA
    })  # fmt: skip
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    return result.run_id


def exports_of(registry, run_id: str, unzipped: Path, broken: bool):
    """(targets, kinds): the run's zip and (adapters) merge; with `broken`, also a copy of the merge / full model
    whose head is renamed so the loader does not map it."""
    from test_export_check import break_head, unzip

    from studio import export
    from studio.export_check import ExportTarget
    from studio.model_card import finished_run

    run = finished_run(registry, run_id)
    name = f"{Path(run.config.model.name).name} {run.config.method.name}"
    zipped = unzip(export.export_zip(registry, run_id, unzipped, check=False).path, unzipped)
    targets, kinds = [ExportTarget(run, zipped, "run", f"{name} zip")], ["zip"]
    if run.kind == "adapter":
        merged = export.merge_adapter(registry, run_id, check=False).path
        targets.append(ExportTarget(run, merged, "flat", f"{name} merge", merged=True))
        kinds.append("merge")
    if broken:
        source = targets[-1].folder
        copy = unzipped / f"broken-{run_id}"
        shutil.copytree(source, copy)
        break_head(copy / "model" if run.kind == "model" else copy)
        targets.append(ExportTarget(run, copy, targets[-1].layout, f"{name} head lost", merged=run.kind == "adapter"))
        kinds.append("head lost")
    return targets, kinds


def write(rows: list[dict], env: dict, name: str, out: Path) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}_environment.json").write_text(json.dumps(env, indent=2))
    print(pd.DataFrame(rows).drop(columns=[c for c in ("error",) if c in rows[0]]).to_string())


def tiny(args: argparse.Namespace) -> None:
    from tiny import make_tiny_model

    def plan(work: Path):
        for family in args.families.split(","):
            model = str(make_tiny_model(family, work / "models" / family))
            yield from ((model, method, 1, 64, 16, 2e-2) for method in args.methods.split(","))

    check_exports(plan, "tiny", Path(args.out))


def real(args: argparse.Namespace) -> None:
    import torch

    def plan(work: Path):
        for method in args.methods.split(","):
            yield "minilm-l6", method, args.steps, 1000, 128, 5e-5 if method == "full" else 1e-3

    check_exports(plan, f"real_{'cuda' if torch.cuda.is_available() else 'cpu'}", Path(args.out))


def check_exports(plan, name: str, out: Path) -> None:
    """Train each (model, method, steps, samples, max_length, learning rate) that `plan(work folder)` yields, check
    every export of each run (`exports_of`), and write the table `name` to `out`."""
    from studio.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="export-check-bench-"))
    registry, targets, kinds = Registry(work / "runs"), [], []
    started = time.perf_counter()
    with LoadSampler() as load:
        for model, method, *recipe in plan(work):
            run_id = train(registry, model, method, *recipe)
            t, k = exports_of(registry, run_id, work / "unzipped", broken=method in ("full", "qlora"))
            targets += t
            kinds += k
        rows = measured(targets, kinds)
    write(rows, environment(load, time.perf_counter() - started), name, out)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("tiny")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=tiny)
    p = sub.add_parser("real")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=real)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
