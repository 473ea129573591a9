"""What watching a training costs it: the same run with and without the Train tab's polling, alternated.

    python benchmarks/ui_cost.py --out DIR [--model bert-base] [--train 8000] [--epochs 1] [--repeats 2]
           [--set train.speed=fast ...]

The UI never trains: a run trains in a background thread of the app's process (`Jobs.start`, as the Start
button does), and the browser's timer calls the Train tab's tick every TICK_S seconds. That tick re-reads
the run's event log, samples the hardware (NVML, psutil) and, when something new arrived, builds the loss,
metric, learning-rate and hardware figures and serialises them to JSON for the page. This benchmark does the
same work in the same process at the same rate from a thread (`poll`), so its cost lands where the UI's
does; gradio's own HTTP handling, which runs in the same process too, is left out.

Runs alternate without and with polling (`--repeats` of each) on the workload of train_speed.py (IMDb
lengths, bert-base shape, the seed preset with `--set` overrides: the fast profile by default), and the
report gives each run's steady samples/s and training seconds and the slowdown of the polled ones.
Writes ``ui_cost.csv``, ``ui_cost.md`` and ``environment.json`` to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_validation import model_folder  # noqa: E402
from train_speed import steady_rate, workload  # noqa: E402

# The Train tab's timer (studio/ui/train_tab.py, which imports gradio: not on the GPU machine; a test keeps
# these equal to the tab's own).
TICK_S = 2.0
USAGE_SAMPLES = 240
HARDWARE_EVERY = 4


def poll(jobs, key: str, stop: threading.Event, every: float = TICK_S) -> int:
    """The Train tab's tick, every `every` seconds until `stop`: returns how many ticks drew the curves."""
    from studio import plots
    from studio.hardware import monitor_sample, usage

    samples, drawn, draws, last = [], "", 0, None
    while not stop.wait(every):
        samples = (samples + [monitor_sample(usage())])[-USAGE_SAMPLES:]
        if len(samples) % HARDWARE_EVERY == 1:
            plots.usage_history([{**s, "time": s["time"] - samples[0]["time"]} for s in samples]).to_json()
        view = jobs.view(key)
        signature = f"{len(view.train_loss)}/{len(view.evals)}/{len(view.log)}/{view.finished}"
        if signature == drawn or not plots.redraw_due(last, time.time(), view.finished):
            continue
        drawn, draws, t0 = signature, draws + 1, time.perf_counter()
        for fig in plots.live_curves(view):  # then what Gradio does with them after the tab's tick returns
            fig.to_json()
        last = {"at": time.time(), "cost": time.perf_counter() - t0}
    return draws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=None, help="config overrides (default: train.speed=fast)")
    args = parser.parse_args()
    import torch

    from studio.config import RunConfig
    from studio.jobs import Jobs
    from studio.registry import Registry

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ui-cost-"))
    data = workload(work, round(args.train / 0.8))
    folder = model_folder(args.model, work / "models")
    config = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        [f"model.name={folder}", f"data.source={data}", "data.text_column=review", "data.label_column=sentiment",
         "data.max_samples=null", f"train.epochs={args.epochs}", "train.early_stopping_patience=null",
         *(args.set or ["train.speed=fast"])]
    )  # fmt: skip
    registry = Registry(work / "runs")
    jobs = Jobs(registry)
    rows = []
    for i in range(2 * args.repeats):
        polled = i % 2 == 1
        job = jobs.start(config.with_overrides([f"name=ui-{'polled' if polled else 'quiet'}-{i}"]))
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            poller = pool.submit(poll, jobs, job.key, stop) if polled else None
            result = job.run.wait()
            stop.set()
            draws = poller.result() if poller else 0
        lines = (registry.run_dir(result.run_id) / "metrics.jsonl").read_text().splitlines()
        trained = RunConfig.from_yaml(registry.run_dir(result.run_id) / "config.yaml")
        rate = steady_rate([json.loads(x) for x in lines], trained.train.effective_batch_size)
        row = {"run": i, "polled": polled, "status": result.status, "draws": draws,
               "train_seconds": result.summary.efficiency.train_seconds,
               "samples_per_s": rate and round(rate, 1)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    quiet = [r["samples_per_s"] for r in rows if not r["polled"] and r["samples_per_s"]]
    polled_rates = [r["samples_per_s"] for r in rows if r["polled"] and r["samples_per_s"]]
    slowdown = None
    if quiet and polled_rates:
        slowdown = round(100 * (1 - statistics.mean(polled_rates) / statistics.mean(quiet)), 2)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    env = {"device": device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "tick_s": TICK_S,
           "train": args.train, "epochs": args.epochs, "overrides": args.set or ["train.speed=fast"],
           "slowdown_pct": slowdown}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    with open(out / "ui_cost.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    md.append(f"\nSlowdown of the polled runs (steady samples/s): {slowdown}% on {device}.")
    (out / "ui_cost.md").write_text("\n".join(md) + "\n")
    print(f"slowdown {slowdown}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
