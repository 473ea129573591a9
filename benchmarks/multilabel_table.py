"""The GoEmotions multi-label tables issue 21 asks for, from runs folders' eval.json.

    python benchmarks/multilabel_table.py RUNS_DIR [RUNS_DIR ...] --out benchmarks/results/goemotions_multilabel

Groups the finished multi-label runs by setup (model, method, the training rows when not all of them, and for
MiniLM runs trained before `models.init_output_bias` existed, "head bias at 0") and writes
DIR/headline.md and .csv (test macro-F1, micro-F1, exact match, Hamming loss, macro ROC-AUC and AP: mean ± std over
the seeds; calibration ECE and Brier before -> after, which kind of temperature won, the thresholds' range;
train seconds; the run health flag), DIR/per_label.md and .csv (each label's test F1 per setup, the label's
test support, and the mean tuned threshold) and DIR/runs.md and .csv (one row per run). The paper's BERT-base
(Demszky et al. 2020) reached macro-F1 0.46.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import yaml

PAPER_MACRO_F1 = 0.46


def finished_runs(folders: list[Path]) -> list[tuple[str, dict]]:
    """(setup, eval.json) of every finished multi-label run under the folders."""
    out = []
    for folder in folders:
        for run in sorted(folder.glob("*/eval.json")):
            summary = json.loads(run.read_text(encoding="utf-8"))
            if summary["test"].get("task") != "multi_label":
                continue
            config = yaml.safe_load((run.parent / "config.yaml").read_text(encoding="utf-8"))
            cuts = run.parent / "thresholds.json"  # runs before eval.json kept each label's threshold
            if cuts.is_file():
                per_label_cut = json.loads(cuts.read_text(encoding="utf-8"))["per_label"]
                for label, scores in summary["test"]["per_class"].items():
                    scores.setdefault("threshold", per_label_cut[label])
            model = {"minilm-l6": "MiniLM", "smollm2-135m": "SmolLM2"}.get(
                config["model"]["name"], config["model"]["name"]
            )
            method = {"full": "full", "lora": "LoRA", "qlora": "QLoRA", "ia3": "IA3"}[config["method"]["name"]]
            rows = summary["data"]["rows"]["train"]
            setup = f"{model} {method}" + (f" ({rows:,} train, {config['data']['max_length']} tokens)"
                                           if rows < 40000 else "")  # fmt: skip
            log = (run.parent / "metrics.jsonl").read_text(encoding="utf-8")
            if model == "MiniLM" and "log-odds" not in log:  # trained before heads started at the label priors
                setup += ", head bias at 0"
            out.append((setup, summary))
    return out


def _mean_sd(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _before_after(cals: list[dict], what: str) -> str:
    before, after = (statistics.mean(c[f"{what}_{when}"] for c in cals) for when in ("before", "after"))
    return f"{before:.4f} -> {after:.4f}"


def headline(runs: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    header = ["setup", "seeds", "test macro-F1", "dev macro-F1 (tuned on)", "micro-F1", "exact match", "Hamming",
              "ROC-AUC", "AP",
              "ECE before -> after", "Brier before -> after", "temperature", "thresholds", "train s",
              "flag"]  # fmt: skip
    rows = []
    for setup in dict.fromkeys(s for s, _ in runs):
        group = [r for s, r in runs if s == setup]
        tests = [r["test"] for r in group]
        cals = [r.get("calibration") or {} for r in group]
        thresholds = [c["threshold"] for r in group for c in r["test"]["per_class"].values()]
        kinds = sorted({c.get("method", "-") for c in cals})
        flags = sorted({(r.get("health") or {}).get("flag") or "none" for r in group})
        rows.append([
            setup, str(len(group)), _mean_sd([t["f1_macro"] for t in tests]),
            _mean_sd([r["validation"]["f1_macro"] for r in group if r.get("validation")]),
            _mean_sd([t["f1_micro"] for t in tests]),
            _mean_sd([t["accuracy"] for t in tests]), _mean_sd([t["hamming_loss"] for t in tests]),
            _mean_sd([t["roc_auc_macro"] for t in tests]), _mean_sd([t["ap_macro"] for t in tests]),
            _before_after(cals, "ece"), _before_after(cals, "brier"),
            " / ".join(k.replace("temperature_per_label", "per label").replace("temperature", "one") for k in kinds),
            f"{min(thresholds):.2f}-{max(thresholds):.2f}",
            f"{statistics.mean(r['efficiency']['train_seconds'] for r in group):.0f}", ", ".join(flags),
        ])  # fmt: skip
    return header, rows


def per_label(runs: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    setups = list(dict.fromkeys(s for s, _ in runs))
    labels = list(runs[0][1]["test"]["per_class"])
    header = ["label", "test support", *[f"{s} F1" for s in setups], "threshold (mean)"]
    rows = []
    for label in labels:
        support = runs[0][1]["test"]["per_class"][label]["support"]
        f1s = [statistics.mean(r["test"]["per_class"][label]["f1"] for s, r in runs if s == setup) for setup in setups]
        cut = statistics.mean(r["test"]["per_class"][label]["threshold"] for _, r in runs)
        rows.append([label, str(support), *[f"{f:.3f}" for f in f1s], f"{cut:.2f}"])
    macro = [statistics.mean(r["test"]["f1_macro"] for s, r in runs if s == setup) for setup in setups]
    rows.append(["**macro**", "", *[f"**{m:.3f}**" for m in macro], ""])
    return header, rows


def each_run(runs: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "setup", "seed", "test macro-F1", "micro-F1", "exact match", "ROC-AUC", "dev macro-F1",
              "flag", "train s", "peak memory MB", "device"]  # fmt: skip
    rows = [[r["run_id"], setup, str(r["reproducibility"]["seed"]), f"{r['test']['f1_macro']:.4f}",
             f"{r['test']['f1_micro']:.4f}", f"{r['test']['accuracy']:.4f}", f"{r['test']['roc_auc_macro']:.4f}",
             f"{r['validation']['f1_macro']:.4f}" if r.get("validation") else "",
             (r.get("health") or {}).get("flag") or "", f"{r['efficiency']['train_seconds']:.0f}",
             f"{r['efficiency']['peak_memory_mb']:.0f}", r["reproducibility"]["device"].get("name", "")]
            for setup, r in runs]  # fmt: skip
    return header, rows


def write(out: Path, name: str, header: list[str], rows: list[list[str]]) -> None:
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *[[c.replace("*", "") for c in r] for r in rows]])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="runs folders")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = finished_runs(args.runs)
    if not runs:
        raise SystemExit("no finished multi-label runs in " + ", ".join(map(str, args.runs)))
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out, "headline", *headline(runs))
    write(args.out, "per_label", *per_label(runs))
    write(args.out, "runs", *each_run(runs))
    print((args.out / "headline.md").read_text(encoding="utf-8"))
    print(f"paper (BERT-base): macro-F1 {PAPER_MACRO_F1}")


if __name__ == "__main__":
    main()
