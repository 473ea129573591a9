"""Torch's CPU threads when several processes train at once, as the test suite's pytest-xdist workers do.

    python benchmarks/test_threads.py [--processes 2] [--threads 0,1] [--steps 6] [--repeats 3]
                                      [--out benchmarks/results/test_threads]

Starts `--processes` copies of one worker at once (each trains a MiniLM-shaped BERT, 6 layers x 384, random
weights, batch 16 x 64 tokens, `--steps` AdamW steps) for each thread count (0: torch's default, every core), and
writes ``test_threads.csv`` (one row a repeat: the threads, the slowest process's wall seconds, the median over
repeats) and ``environment.json`` (CPU, cores, torch, date, the load average sampled while it ran). tests/conftest.py
gives each xdist worker cores // workers threads from what this measures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from load_sampler import LoadSampler

WORKER = """
import sys, time, torch
from transformers import BertConfig, BertForSequenceClassification
torch.manual_seed(0)
config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
model = BertForSequenceClassification(config)
x, y = torch.randint(0, 30000, (16, 64)), torch.randint(0, 2, (16,))
opt = torch.optim.AdamW(model.parameters())
t = time.perf_counter()
for _ in range(int(sys.argv[1])):
    model(input_ids=x, labels=y).loss.backward()
    opt.step()
    opt.zero_grad()
print(torch.get_num_threads(), time.perf_counter() - t)
"""


def one_round(processes: int, threads: int, steps: int) -> tuple[int, float]:
    """(threads torch used, the slowest process's seconds of training) with `processes` started at once."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(steps)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(processes)]  # fmt: skip
    outs = [p.communicate()[0].split() for p in procs]
    return int(outs[0][0]), max(float(o[1]) for o in outs)


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", default="0,1", help="thread counts to compare (0: torch's default)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "test_threads")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with LoadSampler() as load:
        for threads in (int(t) for t in args.threads.split(",")):
            walls = []
            for repeat in range(args.repeats):
                used, wall = one_round(args.processes, threads, args.steps)
                walls.append(wall)
                rows.append({"processes": args.processes, "threads": used, "repeat": repeat, "steps": args.steps,
                             "seconds": round(wall, 2)})  # fmt: skip
                print(rows[-1], flush=True)
            for row in rows[-args.repeats :]:
                row["median_seconds"] = round(statistics.median(walls), 2)
    with open(args.out / "test_threads.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import torch

    env = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           **load.summary(), "note": "shared machine: other work ran beside it (see the load)"}  # fmt: skip
    (args.out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")


if __name__ == "__main__":
    main()
