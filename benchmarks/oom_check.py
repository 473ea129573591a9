"""A real CUDA out-of-memory error through the studio's own Run, and what follows it (issue 9).

    python benchmarks/oom_check.py --out DIR

On a GPU, another tenant is simulated by one tensor that takes all but HEADROOM_MB of the free memory. Then:
1. a bert-base LoRA run at batch 128 (~12 GB) is started: it must end `failed` with a message that names the
   out-of-memory error, the estimate beside the memory free, and the changes that would fit as --set overrides;
2. the memory the failed run held must be given back (allocated memory back to the hog's alone);
3. the first suggested change is applied and that run must complete, with the hog still in place.
Writes oom_check.json to --out; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_validation import model_folder  # noqa: E402
from train_speed import workload  # noqa: E402

HEADROOM_MB = 6000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch

    from studio.config import RunConfig
    from studio.registry import Registry
    from studio.training import Run

    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oom-check-"))
    folder = model_folder("bert-base", work / "models")
    base = RunConfig.from_yaml(ROOT / "presets" / "imdb_bert_qlora.yaml").with_overrides(
        [f"model.name={folder}", f"data.source={workload(work, 2000)}", "data.text_column=review",
         "data.label_column=sentiment", "data.max_samples=null", "train.epochs=1", "train.speed=as_set",
         "train.early_stopping_patience=null", "method.name=lora", "train.gradient_checkpointing=false",
         "train.optimizer=adamw_torch", "train.precision=bf16", "train.batch_size=128", "train.grad_accum=1"]
    )  # fmt: skip
    free, _total = torch.cuda.mem_get_info()
    hog = torch.empty(free - HEADROOM_MB * 2**20, dtype=torch.uint8, device="cuda")
    hog_mb = torch.cuda.memory_allocated() / 2**20  # `hog` stays referenced to the end: the other tenant
    registry = Registry(work / "runs")
    failed = Run(base.with_overrides(["name=oom"]), registry).execute()
    left_mb = torch.cuda.memory_allocated() / 2**20 - hog_mb
    first = failed.message.split("(--set", 1)[-1].split(")")[0] if "(--set" in failed.message else ""
    first_overrides = re.findall(r"(\S+=\S+)", first)
    retry = None
    if first_overrides:
        retry = Run(base.with_overrides(first_overrides + ["name=after-oom"]), registry).execute()
    checks = {
        "failed": failed.status == "failed",
        "names the out-of-memory error": "out of GPU memory" in failed.message,
        "gives the estimate and the free memory": "estimated" in failed.message and "free now" in failed.message,
        "suggests --set overrides": bool(first_overrides),
        "memory given back (< 64 MB left)": left_mb < 64,
        "the first suggestion trains": retry is not None and retry.status == "completed",
    }
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "hog_mb": round(hog_mb),
        "headroom_mb": HEADROOM_MB,
        "message": failed.message,
        "left_allocated_mb": round(left_mb, 1),
        "retry_overrides": first_overrides,
        "retry_status": retry.status if retry else None,
        "retry_message": retry.message if retry else None,
        "checks": checks,
    }
    (out / "oom_check.json").write_text(json.dumps(result, indent=2))
    del hog
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
