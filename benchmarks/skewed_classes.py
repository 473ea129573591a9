"""Skewed classes, measured: the `skewed_classes` grid's data, its sweep, and the table issue 21 asks for.

    python benchmarks/skewed_classes.py --out benchmarks/results/skewed_classes [--data-only] [--workers 1]

1. Writes the two skewed subsets to build/skewed/ (git-ignored; the grid reads them from there):
   - imdb_1to9.csv: the shipped IMDb sample's first 1,440 negative and 160 positive reviews (9:1);
   - goemotions6/{train,validation,test}.csv: the shipped GoEmotions splits' single-label rows of gratitude,
     anger, sadness, fear, remorse and nervousness, at their own frequencies.
2. Runs `python -m studio sweep skewed_classes` (resumes: finished runs are skipped).
3. Writes DIR/skewed_classes.md and .csv from the runs' eval.json: per dataset and loss, mean over the seeds of
   macro-F1, the rarest class's F1 (its support), accuracy, and calibration (ECE before -> after).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EMOTIONS = ["gratitude", "anger", "sadness", "fear", "remorse", "nervousness"]
BUILD = ROOT / "build" / "skewed"


def write_data() -> None:
    import pandas as pd

    BUILD.mkdir(parents=True, exist_ok=True)
    imdb = pd.read_csv(ROOT / "assets" / "data" / "imdb_sample.csv.gz")
    neg, pos = imdb[imdb["sentiment"] == "negative"].head(1440), imdb[imdb["sentiment"] == "positive"].head(160)
    pd.concat([neg, pos]).rename(columns={"review": "text", "sentiment": "label"}).to_csv(
        BUILD / "imdb_1to9.csv", index=False
    )
    (BUILD / "goemotions6").mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(ROOT / "assets" / "data" / "goemotions" / f"{split}.parquet")
        single = frame[frame["labels"].map(len) == 1].assign(label=lambda f: f["labels"].map(lambda x: x[0]))
        kept = single[single["label"].isin(EMOTIONS)][["text", "label"]]
        kept.to_csv(BUILD / "goemotions6" / f"{split}.csv", index=False)
        print(split, kept["label"].value_counts().to_dict())


def table(out: Path) -> None:
    from studio.registry import Registry
    from studio.sweep import Grid

    registry = Registry(os.environ.get("STUDIO_RUNS_DIR", "runs"))
    grid = Grid.from_yaml("skewed_classes")
    done = {r.config_hash: r for r in registry.list(status="completed")}
    cells: dict[tuple[str, str], list] = {}
    for point in grid.points():
        record = done.get(point.config.config_hash())
        summary = registry.summary(record.id) if record else None
        if summary is not None:
            cells.setdefault((point.labels["dataset"], point.labels["loss"]), []).append(summary)
    rows = []
    for (dataset, loss), summaries in cells.items():
        support = {n: c.support for n, c in summaries[0].test.per_class.items()}
        rarest = min(support, key=support.__getitem__)
        cal = [s.calibration for s in summaries if s.calibration is not None]
        rows.append({
            "dataset": dataset, "loss": loss, "seeds": len(summaries),
            "macro_f1": statistics.mean(s.test.f1_macro for s in summaries),
            "macro_f1_std": statistics.stdev([s.test.f1_macro for s in summaries]) if len(summaries) > 1 else 0.0,
            "rarest": rarest, "rarest_support": support[rarest],
            "rarest_f1": statistics.mean(s.test.per_class[rarest].f1 for s in summaries),
            "accuracy": statistics.mean(s.test.accuracy for s in summaries),
            "ece_before": statistics.mean(c.ece_before for c in cal) if cal else None,
            "ece_after": statistics.mean(c.ece_after for c in cal) if cal else None,
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "skewed_classes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| dataset | loss | seeds | macro-F1 | F1 of the rarest class (test support) | accuracy | ECE before -> "
             "after |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ece = f"{r['ece_before']:.3f} -> {r['ece_after']:.3f}" if r["ece_before"] is not None else "-"
        f1 = f"{r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f}"
        rare = f"{r['rarest_f1']:.3f} ('{r['rarest']}', {r['rarest_support']})"
        lines.append(f"| {r['dataset']} | {r['loss']} | {r['seeds']} | {f1} | {rare} | {r['accuracy']:.3f} | {ece} |")
    (out / "skewed_classes.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/skewed_classes")
    ap.add_argument("--data-only", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    write_data()
    if args.data_only:
        return 0
    sweep = [sys.executable, "-m", "studio", "sweep", "skewed_classes"]
    if args.workers > 1:
        sweep += ["--workers", str(args.workers)]
    code = subprocess.run(sweep, cwd=ROOT).returncode
    table(Path(args.out))
    return code


if __name__ == "__main__":
    sys.exit(main())
