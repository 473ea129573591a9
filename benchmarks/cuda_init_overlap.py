"""Does CUDA's initialisation overlap Python work when it runs in a background thread? (issue 25, setup)

    python benchmarks/cuda_init_overlap.py --out DIR [--repeats 3]

A cold run on an H200 host spent ~2.2 s initialising CUDA (the speed plan's first question to the GPU) and ~3 s
in the GIL-bound imports after torch's (transformers' model classes, the Trainer, peft; setup_time.py's
`other`). Starting the initialisation in a thread saves time only if it releases the GIL. Three cases, each in
its own fresh process (a process initialises CUDA once), `--repeats` times, interleaved:

- `init`:    torch imported, then CUDA initialised and a first tensor put on GPU 0 (the thread's work alone);
- `imports`: torch imported, then what a LoRA run imports after it (the main thread's work alone);
- `both`:    the same two at once, the initialisation in a thread.

Overlap works when `both` takes about max(init, imports), not their sum. Writes cuda_init_overlap.json (every
process) and prints the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("init", "imports", "both")


def _cuda() -> float:
    import torch

    t = time.perf_counter()
    torch.cuda.init()
    torch.cuda.get_device_properties(0)
    torch.empty(1, device="cuda")
    return time.perf_counter() - t


def _imports() -> float:
    t = time.perf_counter()
    import peft  # noqa: F401
    from transformers import BertForSequenceClassification, Trainer  # noqa: F401

    return time.perf_counter() - t


def child(case: str) -> dict:
    import threading

    import torch  # noqa: F401  (both engines need it first; not timed)

    t0 = time.perf_counter()
    out: dict[str, float] = {}
    if case == "init":
        out["init"] = _cuda()
    elif case == "imports":
        out["imports"] = _imports()
    else:
        thread = threading.Thread(target=lambda: out.__setitem__("init", _cuda()))
        thread.start()
        out["imports"] = _imports()
        thread.join()
    out["wall"] = time.perf_counter() - t0
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", choices=CASES)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    rows = []
    for r in range(args.repeats):
        for case in CASES if r % 2 == 0 else CASES[::-1]:
            done = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True)
            line = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else "{}"
            rows.append({"case": case, "repeat": r, **json.loads(line)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda_init_overlap.json").write_text(json.dumps(rows, indent=1))
    for case in CASES:
        walls = [row["wall"] for row in rows if row["case"] == case and "wall" in row]
        if walls:
            print(f"{case}: median wall {statistics.median(walls):.2f} s over {len(walls)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
