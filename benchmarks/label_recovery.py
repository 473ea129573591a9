"""Does fixing the labels the finder ranks give back the accuracy the wrong labels cost? Several seeds per arm.

    python benchmarks/label_recovery.py prepare --work W [--imdb-test FILE]   # the cases' data files
    python benchmarks/label_recovery.py find --work W --case imdb-20           # the finder passes of one case
    python benchmarks/label_recovery.py train --work W --shard 0/4             # a quarter of the trainings
    python benchmarks/label_recovery.py report --work W --out benchmarks/results/label_recovery

The first benchmark (`label_issues_check.py`) showed the finder's ranking works (the top 10% holds >= 50% of the
planted flips) but could not show the accuracy coming back: 5% random flips cost the quick-demo recipe nothing
measurable on 318 test rows in one run per arm. Here:

- cases: IMDb (the quick demo's 2,000 training rows and 318 validation rows, tested on 5,000 reviews of the full
  IMDb test set that are not in the shipped sample, so a point of accuracy is 50 reviews, not 3) and GoEmotions
  (4 emotions x 2,000 single-label comments, tested on the official GoEmotions test split's single-label comments of
  those 4 emotions, 236 of each, 944 in all), each at 5% (the issue's rate) and 20% of the
  training labels flipped at random (seeded); validation and test stay clean;
- finder: the cross-fit mode (3 trainings of the recipe) and the cheap mode (embeddings), scored as before;
- arms, each trained with seeds 42-49 (the data files fixed, so the seed moves only the training): clean labels,
  flipped labels, and corrected copies from the cross-fit ranking written by the studio's own `write_corrected`:
  the 10% lowest-scored rows relabelled to the suggestion or dropped, every row cleanlab flags relabelled or
  dropped (what "apply to the flagged rows" does), and an oracle: exactly the flipped rows dropped;
- recovery = (corrected - flipped) / (clean - flipped), on the mean test accuracy over the seeds.

`find` and `train` write one JSON line per pass or training into W/rows-*.jsonl; `report` merges them. Each step
may run on another machine (the GPU host) or side by side (the `--shard`s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from studio import label_issues as li  # noqa: E402
from studio.config import RunConfig  # noqa: E402

CASES = {"imdb-5": ("imdb", 0.05), "imdb-20": ("imdb", 0.20), "goemotions-5": ("goemotions", 0.05),
         "goemotions-20": ("goemotions", 0.20)}  # fmt: skip
SEEDS = (42, 43, 44, 45, 46, 47, 48, 49)
ARMS = ("clean", "flipped", "relabel-top10", "drop-top10", "drop-flagged", "relabel-flagged", "drop-oracle")
"""drop-oracle: exactly the flipped rows dropped (what dropping could give with a perfect finder)."""
FLIP_SEED = 0
OVERRIDES: list[str] = []
"""--set KEY=VALUE on every training (e.g. a smoke test's train.max_steps=2)."""


def base_config(dataset: str) -> RunConfig:
    from label_issues_check import goemotions_config

    quick = RunConfig.from_yaml(ROOT / "presets" / "quick_demo.yaml")
    return quick if dataset == "imdb" else goemotions_config()


def goemotions_test(folder: Path, names: list[str], exclude: set[str]) -> tuple[list[str], np.ndarray]:
    """The official test split's single-label comments of `names`, as many of each as the rarest has (seeded)."""
    import pandas as pd

    emotions = (folder / "emotions.txt").read_text().split()
    t = pd.read_csv(folder / "test.tsv", sep="\t", header=None, names=["text", "labels", "id"], dtype=str)
    t = t[~t["labels"].str.contains(",") & ~t["text"].isin(exclude)]
    t = t.assign(name=[emotions[int(x)] for x in t["labels"]])
    t = t[t["name"].isin(names)]
    n = int(t["name"].value_counts().min())
    t = t.groupby("name", group_keys=False).sample(n=n, random_state=0).sample(frac=1.0, random_state=0)
    return list(t["text"]), np.asarray([names.index(x) for x in t["name"]])


def prepare(work: Path, imdb_test: Path | None, goemotions: Path | None, test_rows: int) -> None:
    """Each case's folder: train-clean / train-flipped / validation / test parquet files and flipped.json."""
    import pandas as pd
    from label_issues_check import flip

    for case, (dataset, share) in CASES.items():
        folder = work / case
        data = li.training_rows(base_config(dataset))
        names, train = data.label_names, data.splits["train"]
        labels = np.asarray(train["label"], dtype=int)
        noisy, flipped = flip(labels, len(names), share, FLIP_SEED)
        folder.mkdir(parents=True, exist_ok=True)
        texts = list(train["text"])
        li._write_rows(folder / "train-clean.parquet", texts, labels)
        li._write_rows(folder / "train-flipped.parquet", texts, noisy)
        val = data.splits["validation"]
        li._write_rows(folder / "validation.parquet", val["text"], val["label"])
        test = data.splits["test"]
        texts_t, labels_t = list(test["text"]), np.asarray(test["label"], dtype=int)
        if dataset == "imdb" and imdb_test is not None:  # the full test set, less any review the sample holds
            seen = set(pd.read_csv(ROOT / "assets" / "data" / "imdb_sample.csv.gz")["review"])
            full = pd.read_csv(imdb_test)
            full = full[~full["text"].isin(seen)].sample(n=test_rows, random_state=0)
            assert names == ["negative", "positive"], names  # the full set's 0 = rating <= 4, 1 = rating >= 7
            texts_t, labels_t = list(full["text"]), full["label"].to_numpy()
        if dataset == "goemotions" and goemotions is not None:
            texts_t, labels_t = goemotions_test(goemotions, names, set(texts))
        li._write_rows(folder / "test.parquet", texts_t, labels_t)
        (folder / "case.json").write_text(json.dumps({"names": names, "flipped": flipped.tolist(), "share": share,
                                                      "rows": len(labels), "test_rows": len(texts_t)}))  # fmt: skip
        print(case, len(labels), "train rows,", len(flipped), "flipped,", len(texts_t), "test rows", flush=True)


def case_config(work: Path, case: str, which: str) -> RunConfig:
    folder, (dataset, _) = work / case, CASES[case]
    names = json.loads((folder / "case.json").read_text())["names"]
    config = li.fold_config(base_config(dataset), folder / f"train-{which}.parquet", folder / "test.parquet",
                            folder / "validation.parquet", names, 0)  # fmt: skip
    return config.with_overrides([f"name={case}-{which}", *OVERRIDES])


def emit(work: Path, name: str, row: dict) -> None:
    load = [round(x, 2) for x in os.getloadavg()]
    row = {**row, "overrides": OVERRIDES, "load_average": load, "at": time.strftime("%H:%M:%S")}
    with open(work / f"rows-{name}.jsonl", "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
    print(row, flush=True)


def find(work: Path, case: str) -> None:
    from label_issues_check import score

    (work / "environment.json").write_text(json.dumps(environment()))
    flipped = np.asarray(json.loads((work / case / "case.json").read_text())["flipped"])
    t = li.Target(case_config(work, case, "flipped"), f"{case}-flipped", work / case / "finder")
    for mode, k in (("crossfit", 3), ("embeddings", 5)):
        report = li.find(t, mode, k=k)
        emit(work, f"find-{case}", {"case": case, "what": f"finder {mode}", "k": k, "seconds": round(report.seconds, 1),
                                    "parts_seconds": [round(x, 1) for x in report.fold_seconds],
                                    **score(report, flipped)})  # fmt: skip
    copies(work, case)


def copies(work: Path, case: str) -> None:
    """The corrected copies, written once before the train shards run side by side."""
    for arm in ARMS[2:]:
        arm_config(work, case, arm)


def arm_config(work: Path, case: str, arm: str) -> RunConfig:
    if arm in ("clean", "flipped"):
        return case_config(work, case, arm)
    t = li.Target(case_config(work, case, "flipped"), f"{case}-flipped", work / case / "finder")
    report = li.read(t.folder, "crossfit")
    action, rows = arm.split("-")
    chosen = report.ranked[: len(report.ranked) // 10] if rows == "top10" else report.issues
    if rows == "oracle":
        flipped = set(json.loads((work / case / "case.json").read_text())["flipped"])
        chosen = [i for i in report.ranked if i.row in flipped]
    marker = work / case / f"copy-{arm}.txt"  # one corrected copy per arm, shared by its seeds
    if not marker.is_file():
        copy = li.write_corrected(t, report, {i.row: action for i in chosen})
        marker.write_text(str(copy.config))
    return RunConfig.from_yaml(marker.read_text()).with_overrides([f"name={case}-{arm}", *OVERRIDES])


def train(work: Path, shard: int, shards: int, cases: list[str], arms: list[str]) -> None:
    from studio.registry import Registry
    from studio.training import Run

    jobs = [(c, a, s) for c in cases for a in arms for s in SEEDS][shard::shards]
    registry = Registry(work / f"runs-{shard}")
    rows = [json.loads(line) for log in work.glob("rows-train-*.jsonl") for line in log.read_text().splitlines()]
    done = {(r["case"], r["arm"], r["seed"]) for r in rows}
    for case, arm, seed in (j for j in jobs if j not in done):  # an earlier call's trainings are kept
        config = arm_config(work, case, arm).with_overrides([f"seed={seed}"])
        t0 = time.perf_counter()
        result = Run(config, registry).execute()
        s = result.summary
        emit(work, f"train-{shard}", {"case": case, "arm": arm, "seed": seed, "run": result.run_id,
                                      "status": result.status, "seconds": round(time.perf_counter() - t0, 1),
                                      "train_rows": s.data.rows.get("train") if s and s.data else None,
                                      "test_accuracy": s.test.accuracy if s else None,
                                      "test_f1_macro": s.test.f1_macro if s else None})  # fmt: skip


def report(work: Path, out: Path) -> None:
    rows = [json.loads(line) for f in sorted(work.glob("rows-*.jsonl")) for line in f.read_text().splitlines()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    known = work / "environment.json"  # written where the trainings ran (`find`); else this machine's
    summary: dict = {"environment": json.loads(known.read_text()) if known.is_file() else environment()}
    for case in CASES:
        finders = {r["what"]: {k: r[k] for k in ("k", "seconds", "top10_share_of_flipped", "top10_precision",
                                                 "flagged", "flagged_precision", "flagged_recall")}
                   for r in rows if r.get("case") == case and "what" in r}  # fmt: skip
        arms = {}
        for arm in ARMS:
            acc = [r["test_accuracy"] for r in rows if (r.get("case"), r.get("arm")) == (case, arm)
                   and r.get("test_accuracy") is not None]  # fmt: skip
            if acc:
                arms[arm] = {"seeds": len(acc), "accuracy": acc, "mean": statistics.mean(acc),
                             "stdev": statistics.stdev(acc) if len(acc) > 1 else None,
                             "train_rows": next(r["train_rows"] for r in rows
                                                if (r.get("case"), r.get("arm")) == (case, arm))}  # fmt: skip
        for a in arms.values():
            a["stderr"] = (a["stdev"] or 0) / len(a["accuracy"]) ** 0.5
        lost = None
        if "clean" in arms and "flipped" in arms:
            c, f = arms["clean"], arms["flipped"]
            lost = {"points": c["mean"] - f["mean"], "stderr": (c["stderr"] ** 2 + f["stderr"] ** 2) ** 0.5}
            lost["measurable"] = lost["points"] > 2 * lost["stderr"]  # else "back" would divide noise by noise
            for a in arms.values():
                a["recovered"] = (a["mean"] - f["mean"]) / lost["points"] if lost["measurable"] else None
        summary[case] = {"finder": finders, "arms": arms, "lost_to_flips": lost}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table(summary))
    print(table(summary))


def table(summary: dict) -> str:
    """Markdown: per case, the finder passes, then each arm's mean test accuracy +- its standard error."""
    lines = ["| case | finder | top 10% holds (of flipped) | precision in top 10% | flagged | flagged precision |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for case in CASES:
        for what, f in summary[case]["finder"].items():
            lines.append(f"| {case} | {what.removeprefix('finder ')} (k={f['k']}, {f['seconds']:.0f} s) | "
                         f"{f['top10_share_of_flipped']:.0%} | {f['top10_precision']:.0%} | {f['flagged']} | "
                         f"{f['flagged_precision']:.0%} |")  # fmt: skip
    lines += ["", "| case | lost to flips | " + " | ".join(ARMS) + " |", "|---|---|" + "---|" * len(ARMS)]
    for case in CASES:
        cells = []
        for arm in ARMS:
            a = summary[case]["arms"].get(arm)
            if a is None:
                cells.append("")
                continue
            back = f", {a['recovered']:+.0%} back" if a.get("recovered") is not None and arm not in ARMS[:2] else ""
            cells.append(f"{a['mean']:.1%} +- {a['stderr']:.1%} ({a['train_rows']} rows{back})")
        lost = summary[case]["lost_to_flips"]
        cost = "" if lost is None else f"{lost['points']:+.1%} +- {lost['stderr']:.1%}".replace("+-", "±")
        cost += "" if lost is None or lost["measurable"] else " (not measurable)"
        lines.append(f"| {case} | {cost} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import platform

    import torch

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "python": platform.python_version(), "cleanlab": __import__("cleanlab").__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_cores": os.cpu_count(), "seeds": SEEDS, "flip_seed": FLIP_SEED}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("prepare", "find", "copies", "train", "report"))
    ap.add_argument("--work", default=str(ROOT / "build" / "label_recovery"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_recovery"))
    ap.add_argument("--imdb-test", help="the full IMDb test CSV (text,label,...; shared/data/imdb/build_full_imdb.py)")
    ap.add_argument("--goemotions", help="the GoEmotions folder with the official test.tsv and emotions.txt")
    ap.add_argument("--test-rows", type=int, default=5000, help="IMDb test rows")
    ap.add_argument("--case", choices=tuple(CASES))
    ap.add_argument("--shard", default="0/1", help="i/n: every n-th training from the i-th")
    ap.add_argument("--cases", help="train: only these cases (comma-separated)")
    ap.add_argument("--arms", help="train: only these arms (comma-separated), e.g. clean")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE override on every training")
    args = ap.parse_args()
    OVERRIDES.extend(args.set)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.step == "prepare":
        opt = {k: Path(v) if v else None for k, v in (("imdb", args.imdb_test), ("go", args.goemotions))}
        prepare(work, opt["imdb"], opt["go"], args.test_rows)
    elif args.step == "find":
        find(work, args.case)
    elif args.step == "copies":
        copies(work, args.case)
    elif args.step == "train":
        i, n = (int(x) for x in args.shard.split("/"))
        train(work, i, n, args.cases.split(",") if args.cases else list(CASES),
              args.arms.split(",") if args.arms else list(ARMS))  # fmt: skip
    else:
        report(work, Path(args.out))


if __name__ == "__main__":
    main()
