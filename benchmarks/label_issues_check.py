"""Does the label-issue finder find planted wrong labels, and does fixing them give back the accuracy they cost?

    python benchmarks/label_issues_check.py [--out benchmarks/results/label_issues] [--work build/label_issues]
        [--steps cheap,crossfit,retrain,run-encoder,repeats] [--repeats 3] [--crossfit-k 3]

1. IMDb (the quick-demo recipe: MiniLM-L6, 2,000 training rows, 1 epoch, 128 tokens): 5% of the training rows'
   labels flipped at random (seed 0); validation and test stay clean (given as separate files, so every run is
   judged on the same test rows). GoEmotions: 4 emotions x 2,000 single-label comments (balance), 5% of train
   flipped to another of the 4, the same recipe.
2. The cheap mode (`embeddings`: the base MiniLM's mean-pooled states + a 5-fold logistic regression) on both,
   once each, IMDb `--repeats` times in all (median cost); the cross-fit mode (`--crossfit-k` trainings) once, on
   IMDb; the cheap mode again on the flipped run's own fine-tuned encoder (`--encoder run`).
   Scored: the share of the flipped rows in the finder's top 10% (the check: >= 50%), precision and recall of
   the rows cleanlab flags.
3. Retraining on IMDb: the recipe on the flipped labels and on the corrected copy (the 10% lowest-scored rows of
   the cross-fit pass dropped), once each, test accuracy on the same clean test rows. The clean-label figure is
   the quick-demo preset's own (the same training, validation and test rows).

Writes DIR/label_issues.json (summary + environment) and DIR/label_issues.csv (one line per finder pass and per
training); both rewritten after each step and kept across calls, so the steps can run one at a time on a busy
machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from studio import label_issues as li  # noqa: E402
from studio.config import RunConfig  # noqa: E402
from studio.hardware import cpu_name  # noqa: E402

FLIP_SHARE, FLIP_SEED = 0.05, 0


def flip(labels: np.ndarray, classes: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the labels with `share` of the rows, drawn at random, moved to another class at random; those rows)."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=round(share * len(labels)), replace=False))
    noisy = labels.copy()
    for j in flipped:
        noisy[j] = rng.choice([c for c in range(classes) if c != labels[j]])
    return noisy, flipped


def flipped_dataset(config: RunConfig, work: Path) -> tuple[RunConfig, RunConfig, np.ndarray]:
    """(config on clean labels, config on 5%-flipped labels, the flipped rows), both reading the same files."""
    data = li.training_rows(config)
    names, train = data.label_names, data.splits["train"]
    labels = np.asarray(train["label"], dtype=int)
    noisy, flipped = flip(labels, len(names), FLIP_SHARE, FLIP_SEED)
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("validation", "test"):
        rows = data.splits[split]
        files[split] = li._write_rows(work / f"{split}.parquet", rows["text"], rows["label"])
    texts = list(train["text"])
    clean = li._write_rows(work / "train-clean.parquet", texts, labels)
    dirty = li._write_rows(work / "train-flipped.parquet", texts, noisy)

    def cfg(path: Path, name: str) -> RunConfig:
        c = li.fold_config(config, path, files["test"], files["validation"], names, 0)
        return c.with_overrides([f"name={name}"])

    return cfg(clean, f"{config.name}-clean"), cfg(dirty, f"{config.name}-flipped"), flipped


def score(report: li.LabelIssueReport, flipped: np.ndarray) -> dict:
    planted = set(flipped.tolist())
    top = [i.row for i in report.ranked[: len(report.ranked) // 10]]
    flagged = {i.row for i in report.issues}
    hits = len(planted & flagged)
    return {
        "rows": len(report.ranked), "flipped": len(planted), "top10_rows": len(top),
        "top10_share_of_flipped": len(planted & set(top)) / len(planted),
        "top10_precision": len(planted & set(top)) / len(top),
        "flagged": len(flagged), "flagged_precision": hits / len(flagged) if flagged else None,
        "flagged_recall": hits / len(planted),
    }  # fmt: skip


def train(config: RunConfig, runs: Path) -> dict:
    from studio.registry import Registry
    from studio.training import Run

    t0 = time.perf_counter()
    result = Run(config, Registry(runs)).execute()
    seconds = time.perf_counter() - t0
    s = result.summary
    return {"run": result.run_id, "status": result.status, "seconds": round(seconds, 1),
            "test_accuracy": s.test.accuracy if s else None, "test_f1_macro": s.test.f1_macro if s else None,
            "train_rows": s.data.rows.get("train") if s and s.data else None,
            "load_average": os.getloadavg()}  # fmt: skip


def environment() -> dict:
    import torch

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_name(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cleanlab": __import__("cleanlab").__version__, "sklearn": __import__("sklearn").__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": "a shared 2-core machine (other work ran beside this): load average recorded per step"}  # fmt: skip


class Results:
    def __init__(self, out: Path):
        """Results of earlier calls in `out` are kept (a step at a time on a busy machine)."""
        self.out, self.rows, self.summary = out, [], {"environment": environment()}
        out.mkdir(parents=True, exist_ok=True)
        if (out / "label_issues.json").is_file():
            self.summary = {**json.loads((out / "label_issues.json").read_text()), "environment": environment()}
            with open(out / "label_issues.csv") as f:
                self.rows = [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def add(self, row: dict) -> None:
        self.rows.append({**row, "load_average": [round(x, 2) for x in os.getloadavg()]})
        self.save()

    def save(self) -> None:
        (self.out / "label_issues.json").write_text(json.dumps(self.summary, indent=2, default=str) + "\n")
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.out / "label_issues.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def finder(res: Results, dataset: str, target: li.Target, flipped: np.ndarray, what: str, k: int, repeats: int,
           encoder: str = "base") -> li.LabelIssueReport | None:  # fmt: skip
    mode, report = what.split("-")[0], None
    done = sum(1 for x in res.rows if x.get("dataset") == dataset and x.get("what") == f"finder {what}")
    for r in range(done, done + repeats):
        report = li.find(target, mode, k=k, encoder=encoder, progress=lambda m: print(f"  {dataset} {what}: {m}",
                                                                                      flush=True))  # fmt: skip
        s = score(report, flipped)
        res.add({"dataset": dataset, "what": f"finder {what}", "k": k, "repeat": r, "seconds": round(report.seconds, 1),
                 "parts_seconds": [round(x, 1) for x in report.fold_seconds], **s})  # fmt: skip
        print(f"{dataset} {what} k={k}: {s} in {report.seconds:.0f} s", flush=True)
    summarize(res)
    return report


def summarize(res: Results) -> None:
    """Per dataset and finder pass: the median cost over its repeats and its scores (the same every repeat)."""
    passes = dict.fromkeys((x["dataset"], x["what"]) for x in res.rows if str(x["what"]).startswith("finder "))
    for dataset, what in passes:
        runs = [x for x in res.rows if (x["dataset"], x["what"]) == (dataset, what)]
        last = runs[-1]
        res.summary.setdefault(dataset, {})[what.removeprefix("finder ")] = {
            "k": last["k"], "repeats": len(runs), "median_seconds": statistics.median(x["seconds"] for x in runs),
            "median_parts_seconds": [statistics.median(x["parts_seconds"][i] for x in runs)
                                     for i in range(len(last["parts_seconds"]))],
            **{key: last[key] for key in ("rows", "flipped", "top10_rows", "top10_share_of_flipped", "top10_precision",
                                          "flagged", "flagged_precision", "flagged_recall")},
            "load_average_per_repeat": [x["load_average"] for x in runs],
            "check_top10_has_half_of_flipped": last["top10_share_of_flipped"] >= 0.5,
        }  # fmt: skip
    res.save()


def goemotions_config() -> RunConfig:
    return RunConfig.from_yaml(ROOT / "presets" / "quick_demo.yaml").with_overrides([
        "name=goemotions4", "data.source=goemotions", "data.multi_label=drop", "data.max_train_samples=null",
        "data.balance={num_labels: 4, num_samples: 2000}", "data.splits=ratio",
    ])  # fmt: skip


STEPS = ("cheap", "crossfit", "retrain", "run-encoder", "repeats")
"""retrain-flipped / retrain-corrected: one of retrain's two trainings (to run them side by side)."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_issues"))
    ap.add_argument("--work", default=str(ROOT / "build" / "label_issues"))
    ap.add_argument("--steps", default=",".join(STEPS), help=f"which of {', '.join(STEPS)} (results kept across calls)")
    ap.add_argument("--repeats", type=int, default=3, help="passes of the cheap mode on IMDb in all (median cost)")
    ap.add_argument("--crossfit-k", type=int, default=3)
    args = ap.parse_args()
    steps, res, work = args.steps.split(","), Results(Path(args.out)), Path(args.work)
    quick = RunConfig.from_yaml(ROOT / "presets" / "quick_demo.yaml")
    clean, dirty, flipped = flipped_dataset(quick, work / "imdb")
    imdb = li.Target(dirty, "imdb-flipped", work / "imdb" / "finder")
    if "cheap" in steps:
        finder(res, "imdb", imdb, flipped, "embeddings", 5, 1)
        _, go_dirty, go_flipped = flipped_dataset(goemotions_config(), work / "goemotions")
        go = li.Target(go_dirty, "goemotions-flipped", work / "goemotions" / "finder")
        finder(res, "goemotions", go, go_flipped, "embeddings", 5, 1)
    if "crossfit" in steps:
        finder(res, "imdb", imdb, flipped, "crossfit", args.crossfit_k, 1)
    if "retrain" in steps or "retrain-flipped" in steps or "retrain-corrected" in steps:
        retrain(res, imdb, dirty, work, [x.removeprefix("retrain-") for x in steps if x.startswith("retrain-")])
    if "run-encoder" in steps:  # the cheap mode on the flipped run's own fine-tuned encoder
        run_id = res.summary["imdb"]["retrain"]["5% flipped"]["run"]
        finder(res, "imdb", li.target(run_id, work / "runs"), flipped, "embeddings-run", 5, 1, encoder="run")
    summarize(res)
    if "repeats" in steps:
        done = sum(1 for x in res.rows if x.get("what") == "finder embeddings" and x.get("dataset") == "imdb")
        finder(res, "imdb", imdb, flipped, "embeddings", 5, max(0, args.repeats - done))


def retrain(res: Results, imdb: li.Target, dirty: RunConfig, work: Path, only: list[str]) -> None:
    """The recipe on the flipped labels, and on the corrected copy: the 10% lowest-scored rows of the best pass
    (cross-fit when it ran, else the cheap mode) dropped. Clean labels: the quick-demo runs (same rows, same test)."""
    trained = {}
    if not only or "flipped" in only:
        trained["5% flipped"] = dirty
    if not only or "corrected" in only:
        best = li.read(imdb.folder, "crossfit") or li.read(imdb.folder, "embeddings")
        copy = li.write_corrected(imdb, best, {i.row: "drop" for i in best.ranked[: len(best.ranked) // 10]})
        trained[f"corrected (10% lowest of {best.mode} dropped)"] = RunConfig.from_yaml(copy.config)
    for what, config in trained.items():
        row = train(config, work / "runs")
        res.add({"dataset": "imdb", "what": f"train: {what}", **row})
        res.summary.setdefault("imdb", {}).setdefault("retrain", {})[what] = row
        res.save()
        print(what, row, flush=True)


if __name__ == "__main__":
    main()
