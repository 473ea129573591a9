"""The memory estimate on configurations it was never calibrated on (issue 26): a held-out set, each case in its
own fresh process, plus attention's length scaling and the probe ("Measure") beside both.

    python benchmarks/memory_heldout.py --out DIR [--jobs 4] [--only N,M] [--no-probe]   # on the GPU
    python benchmarks/memory_heldout.py --report                                        # recompute, no GPU

`benchmarks/memory_validation.py`'s 54 cases are what the estimate's constants were fitted on (calibration).
This set shares none of their configurations: other shapes (batch 1-256, 64-2048 tokens), every family of the
catalogue (MiniLM and SmolLM2 too) and method, 4- and 8-bit bases, fp32 / bf16 / fp16, eager and sdpa,
checkpointing on and off. The `length` group checks every attention term at 128, 512, 1024 and 2048 tokens
(encoders with learned absolute positions stop at their 512).

How a case is measured: the parent builds each model's random-weight folder once (catalogue dims, as the
calibration did), then starts one child process per case (`--case I`): the child writes its own long-text CSV
(every batch padded to max_length), trains 3 steps through the studio's own `Run`, and records the process's
peak GPU memory as NVML sees it (context + everything torch reserved, sampled every 20 ms), next to
`studio.memory.estimate` for the same config. Memory is per process, so `--jobs` cases run side by side on one
GPU (the parent admits a case only while the running cases' estimates leave room); timings are not recorded.
The probe rows (`--case I --probe`) run `studio.probe.probe` on the case's config in a process of their own.

Goals (issue 26): on the held-out set median |error| <= 3%, max <= 8%, and no case where the estimate said
"fits" (estimate + 128 MB <= 0.95 x free memory: studio.memory.SAFETY_MB, SAFETY_MARGIN) while the measured peak
was larger than what was free, i.e. no case measured above (estimate + 128 MB) / 0.95.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results" / "memory_heldout"


def _c(model: str, method: str, batch: int, seq: int, ckpt: bool = False, group: str = "heldout", **extra) -> dict:
    return dict(model=model, method=method, batch=batch, seq=seq, ckpt=ckpt, group=group, **extra)


def grid() -> list[dict]:
    """The held-out cases (none is a configuration of memory_validation.grid()), the length group, then the later
    held-out sets in the order they were measured (a case's index is its number in every committed rows.jsonl)."""
    cases = [
        _c("minilm-l6", "lora", 128, 64), _c("minilm-l6", "full", 256, 128),
        _c("minilm-l6", "ia3", 8, 512, attn="eager"), _c("minilm-l6", "qlora", 64, 256, bits=8),
        _c("minilm-l6", "full", 128, 512, precision="fp16"),
        _c("bert-base", "full", 1, 512), _c("bert-base", "lora", 32, 384, ckpt=True),
        _c("bert-base", "qlora", 128, 128, precision="fp16"), _c("bert-base", "ia3", 24, 256, precision="fp32"),
        _c("bert-base", "full", 4, 512, precision="fp16"), _c("bert-base", "lora", 2, 512, ckpt=True, attn="eager"),
        _c("bert-base", "full", 32, 256, ckpt=True, optimizer="paged_adamw_8bit"),
        _c("distilbert", "full", 48, 320), _c("distilbert", "qlora", 8, 512, ckpt=True),
        _c("distilbert", "ia3", 256, 64), _c("distilbert", "lora", 32, 128, precision="fp32", attn="eager"),
        _c("distilbert", "qlora", 128, 256, ckpt=True, bits=8),
        _c("roberta-base", "full", 12, 512, ckpt=True), _c("roberta-base", "lora", 96, 96),
        _c("roberta-base", "ia3", 16, 512), _c("roberta-base", "qlora", 32, 256, bits=8),
        _c("roberta-base", "lora", 16, 256, precision="fp32", r=64, placement="attention+ffn"),
        _c("deberta-v3-base", "full", 8, 128), _c("deberta-v3-base", "qlora", 32, 256, ckpt=True),
        _c("deberta-v3-base", "ia3", 16, 384), _c("deberta-v3-base", "lora", 64, 64, attn="eager"),
        _c("smollm2-135m", "full", 16, 512), _c("smollm2-135m", "lora", 64, 256),
        _c("smollm2-135m", "qlora", 8, 2048, ckpt=True), _c("smollm2-135m", "ia3", 32, 1024),
        _c("qwen2.5-1.5b", "lora", 8, 512, ckpt=True), _c("qwen2.5-1.5b", "qlora", 2, 2048),
        _c("qwen2.5-1.5b", "ia3", 16, 128), _c("qwen2.5-1.5b", "qlora", 8, 256, bits=8),
        _c("qwen2.5-1.5b", "full", 1, 512, ckpt=True),
        _c("llama-3.2-1b", "lora", 16, 512, attn="eager"), _c("llama-3.2-1b", "qlora", 64, 64),
        _c("llama-3.2-1b", "ia3", 4, 1024, ckpt=True), _c("llama-3.2-1b", "lora", 1, 2048, precision="fp32"),
        _c("gemma-3-1b", "qlora", 8, 1024), _c("gemma-3-1b", "ia3", 16, 256),
        _c("gemma-3-1b", "full", 4, 256, ckpt=True),
        _c("gpt2-xl", "ia3", 8, 512), _c("gpt2-xl", "qlora", 16, 128, ckpt=True),
        # the two misses of the first outside check (issue 26), kept in the held-out set
        _c("deberta-v3-base", "lora", 16, 512, placement="attention+ffn"), _c("distilbert", "ia3", 96, 128),
    ]  # fmt: skip
    for model, lengths in (("bert-base", (128, 512)), ("roberta-base", (128, 512)), ("distilbert", (128, 512)),
                           ("deberta-v3-base", (128, 512, 1024, 2048)), ("smollm2-135m", (128, 512, 1024, 2048)),
                           ("qwen2.5-1.5b", (128, 512, 1024, 2048))):  # fmt: skip
        cases += [_c(model, "lora", 6, n, group="length") for n in lengths]
    cases += [_c("bert-base", "lora", 6, n, group="length", attn="eager") for n in (128, 512)]
    cases += [_c("deberta-v3-base", "lora", 4, n, group="length", attn="eager") for n in (1024, 2048)]
    return cases + second_set() + third_set() + fourth_set()


def second_set() -> list[dict]:
    """A second held-out set (group heldout2), none of whose configurations the calibration, the first held-out set
    or the length rows has, to judge the estimate after the terms the first set's allocator traces added (it was
    measured before they existed, so it no longer is wholly out of sample), and the 8-bit checkpointing case
    again (group recheck: measured before its fix)."""
    h = "heldout2"
    cases = [
        _c("minilm-l6", "full", 64, 512, group=h), _c("minilm-l6", "lora", 256, 128, ckpt=True, group=h),
        _c("minilm-l6", "ia3", 32, 256, group=h), _c("minilm-l6", "qlora", 16, 512, group=h, attn="eager"),
        _c("bert-base", "full", 8, 384, group=h, attn="eager"), _c("bert-base", "lora", 48, 192, group=h),
        _c("bert-base", "qlora", 24, 512, ckpt=True, bits=8, group=h), _c("bert-base", "ia3", 2, 512, group=h),
        _c("bert-base", "full", 16, 128, precision="fp32", group=h),
        _c("distilbert", "full", 24, 512, ckpt=True, group=h), _c("distilbert", "lora", 192, 64, group=h),
        _c("distilbert", "qlora", 64, 128, bits=8, group=h), _c("distilbert", "ia3", 12, 512, attn="eager", group=h),
        _c("roberta-base", "full", 6, 256, precision="fp16", group=h), _c("roberta-base", "lora", 8, 512, group=h),
        _c("roberta-base", "qlora", 96, 128, ckpt=True, group=h), _c("roberta-base", "ia3", 64, 128, group=h),
        _c("deberta-v3-base", "full", 2, 512, group=h), _c("deberta-v3-base", "lora", 32, 128, group=h),
        _c("deberta-v3-base", "qlora", 8, 768, group=h), _c("deberta-v3-base", "ia3", 48, 96, group=h),
        _c("deberta-v3-base", "lora", 24, 256, ckpt=True, placement="attention+ffn", group=h),
        _c("smollm2-135m", "full", 4, 1024, ckpt=True, group=h), _c("smollm2-135m", "lora", 16, 768, group=h),
        _c("smollm2-135m", "qlora", 32, 512, bits=8, group=h), _c("smollm2-135m", "ia3", 128, 128, group=h),
        _c("smollm2-135m", "lora", 2, 2048, attn="eager", group=h),
        _c("qwen2.5-1.5b", "lora", 3, 1536, group=h), _c("qwen2.5-1.5b", "qlora", 16, 512, ckpt=True, group=h),
        _c("qwen2.5-1.5b", "ia3", 2, 2048, ckpt=True, group=h), _c("qwen2.5-1.5b", "full", 2, 256, group=h),
        _c("llama-3.2-1b", "lora", 4, 256, ckpt=True, group=h), _c("llama-3.2-1b", "qlora", 8, 1024, bits=8, group=h),
        _c("llama-3.2-1b", "ia3", 32, 128, group=h), _c("llama-3.2-1b", "full", 1, 1024, ckpt=True, group=h),
        _c("gemma-3-1b", "lora", 8, 512, group=h), _c("gemma-3-1b", "qlora", 32, 256, ckpt=True, group=h),
        _c("gemma-3-1b", "ia3", 4, 1024, ckpt=True, group=h),
        _c("gpt2-xl", "lora", 4, 512, group=h), _c("gpt2-xl", "full", 1, 256, ckpt=True, group=h),
        _c("gpt2-xl", "qlora", 8, 1024, bits=8, ckpt=True, group=h),
        _c("bert-base", "lora", 1, 64, group=h), _c("roberta-base", "lora", 256, 64, precision="fp16", group=h),
        _c("minilm-l6", "lora", 12, 512, r=64, placement="attention+ffn", precision="fp32", group=h),
    ]  # fmt: skip
    return cases + [_c("distilbert", "qlora", 128, 256, ckpt=True, bits=8, group="recheck")]


def third_set() -> list[dict]:
    """A third held-out set (group heldout3), measured after the second set's misses changed the estimate (the
    reuse of blocks between the backward pass and the optimizer step, DeBERTa's scores under checkpointing, the
    128-MB allowance): no configuration of the calibration, the first two sets or the length rows. More small-batch
    full fine-tunes (where the two phases are of one size) and MiniLM IA3 shapes, where those misses were."""
    h = "heldout3"
    cases = [
        _c("minilm-l6", "full", 16, 384, group=h), _c("minilm-l6", "ia3", 64, 128, group=h),
        _c("minilm-l6", "ia3", 16, 512, group=h),
        _c("minilm-l6", "lora", 32, 256, ckpt=True, precision="fp16", group=h),
        _c("minilm-l6", "qlora", 128, 128, ckpt=True, group=h),
        _c("bert-base", "full", 2, 256, group=h), _c("bert-base", "full", 4, 128, precision="fp32", group=h),
        _c("bert-base", "lora", 96, 256, attn="eager", group=h), _c("bert-base", "qlora", 64, 384, group=h),
        _c("bert-base", "ia3", 128, 64, precision="fp16", group=h),
        _c("distilbert", "full", 3, 512, group=h), _c("distilbert", "full", 64, 256, ckpt=True, group=h),
        _c("distilbert", "lora", 24, 384, precision="fp16", group=h), _c("distilbert", "ia3", 32, 512, group=h),
        _c("distilbert", "qlora", 256, 64, bits=8, group=h),
        _c("roberta-base", "full", 2, 512, attn="eager", group=h),
        _c("roberta-base", "lora", 128, 192, ckpt=True, group=h),
        _c("roberta-base", "qlora", 48, 384, group=h), _c("roberta-base", "ia3", 8, 256, precision="fp32", group=h),
        _c("deberta-v3-base", "full", 4, 256, group=h), _c("deberta-v3-base", "full", 16, 512, ckpt=True, group=h),
        _c("deberta-v3-base", "lora", 12, 384, ckpt=True, group=h),
        _c("deberta-v3-base", "qlora", 16, 128, bits=8, group=h),
        _c("deberta-v3-base", "ia3", 4, 768, ckpt=True, group=h),
        _c("smollm2-135m", "full", 8, 256, group=h), _c("smollm2-135m", "lora", 48, 512, ckpt=True, group=h),
        _c("smollm2-135m", "qlora", 4, 1536, group=h), _c("smollm2-135m", "ia3", 16, 2048, ckpt=True, group=h),
        _c("qwen2.5-1.5b", "lora", 1, 2048, ckpt=True, precision="fp32", group=h),
        _c("qwen2.5-1.5b", "qlora", 4, 1024, bits=8, group=h), _c("qwen2.5-1.5b", "full", 1, 128, group=h),
        _c("qwen2.5-1.5b", "ia3", 8, 512, group=h),
        _c("llama-3.2-1b", "lora", 64, 128, group=h), _c("llama-3.2-1b", "qlora", 2, 2048, ckpt=True, group=h),
        _c("llama-3.2-1b", "full", 2, 512, ckpt=True, group=h),
        _c("llama-3.2-1b", "ia3", 1, 2048, attn="eager", group=h),
        _c("gemma-3-1b", "lora", 32, 128, ckpt=True, group=h), _c("gemma-3-1b", "full", 1, 512, group=h),
        _c("gemma-3-1b", "ia3", 64, 64, group=h),
        _c("gpt2-xl", "lora", 16, 128, ckpt=True, group=h), _c("gpt2-xl", "ia3", 2, 1024, group=h),
        _c("gpt2-xl", "full", 2, 128, group=h),
    ]  # fmt: skip
    return cases


def fourth_set() -> list[dict]:
    """A fourth held-out set (group heldout4), measured once after the third set's allocator trace added IA3's fp32
    backward tensors (and the third showed a DeBERTa checkpointing change wrong, reverted unmeasured): none of its
    configurations was measured before. The final, blind judge of issue 26's goals."""
    h = "heldout4"
    cases = [
        _c("minilm-l6", "full", 8, 256, group=h), _c("minilm-l6", "ia3", 128, 64, group=h),
        _c("minilm-l6", "lora", 64, 384, attn="eager", group=h), _c("minilm-l6", "qlora", 32, 512, bits=8, group=h),
        _c("bert-base", "full", 3, 384, group=h), _c("bert-base", "ia3", 8, 512, attn="eager", group=h),
        _c("bert-base", "lora", 24, 128, precision="fp16", group=h),
        _c("bert-base", "qlora", 12, 256, ckpt=True, group=h),
        _c("distilbert", "full", 8, 256, precision="fp16", group=h), _c("distilbert", "ia3", 64, 256, group=h),
        _c("distilbert", "lora", 4, 512, ckpt=True, group=h), _c("distilbert", "qlora", 32, 384, group=h),
        _c("roberta-base", "full", 1, 256, group=h), _c("roberta-base", "ia3", 32, 384, attn="eager", group=h),
        _c("roberta-base", "lora", 64, 64, ckpt=True, group=h), _c("roberta-base", "full", 24, 128, ckpt=True, group=h),
        _c("deberta-v3-base", "full", 1, 384, group=h), _c("deberta-v3-base", "ia3", 24, 256, group=h),
        _c("deberta-v3-base", "lora", 8, 768, group=h), _c("deberta-v3-base", "qlora", 24, 512, ckpt=True, group=h),
        _c("smollm2-135m", "full", 2, 2048, ckpt=True, group=h), _c("smollm2-135m", "ia3", 64, 256, group=h),
        _c("smollm2-135m", "lora", 8, 1024, precision="fp32", group=h),
        _c("smollm2-135m", "qlora", 64, 256, ckpt=True, bits=8, group=h),
        _c("qwen2.5-1.5b", "lora", 16, 256, attn="eager", group=h), _c("qwen2.5-1.5b", "ia3", 32, 64, group=h),
        _c("qwen2.5-1.5b", "qlora", 1, 2048, ckpt=True, bits=8, group=h),
        _c("llama-3.2-1b", "full", 4, 128, group=h), _c("llama-3.2-1b", "ia3", 16, 512, ckpt=True, group=h),
        _c("llama-3.2-1b", "lora", 2, 1024, group=h), _c("llama-3.2-1b", "qlora", 16, 256, precision="fp16", group=h),
        _c("gemma-3-1b", "full", 2, 256, group=h), _c("gemma-3-1b", "ia3", 8, 512, group=h),
        _c("gemma-3-1b", "qlora", 4, 2048, ckpt=True, group=h),
        _c("gpt2-xl", "full", 1, 512, ckpt=True, group=h), _c("gpt2-xl", "ia3", 4, 256, ckpt=True, group=h),
        _c("gpt2-xl", "lora", 8, 384, group=h),
        _c("bert-base", "lora", 256, 128, group=h), _c("roberta-base", "qlora", 1, 512, group=h),
        _c("minilm-l6", "full", 2, 512, precision="fp32", group=h),
    ]  # fmt: skip
    return cases


PROBED = (1, 6, 13, 17, 23, 27, 30, 36, 40, 44)
"""Cases whose config the probe measures too (one of each family, several methods)."""


def data_file(path: Path, case: dict) -> Path:
    """Texts longer than max_length so every batch is padded to it; 1 row in 4 short (a real padding mask) unless
    the batch is too small to be sure a batch holds a long row."""
    words = (ROOT / "tests" / "assets" / "tokenizers" / "bert-base-uncased" / "vocab.txt").read_text().split()[2000:]
    rng = random.Random(0)
    rows = max(80, math.ceil(3 * case["batch"] / 0.8) + 20)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(rows):
            short = case["batch"] >= 4 and i % 4 == 0
            w.writerow([" ".join(rng.choices(words, k=40 if short else int(1.1 * case["seq"]))), ["neg", "pos"][i % 2]])
    return path


def config_for(case: dict, folder: Path, data: Path):
    import memory_validation

    return memory_validation.config_for(case, folder, data)


def _save_snapshot(snap: dict, folder: Path, case_no: int) -> dict:
    """The allocator history as case{N}.pickle.gz and its peak breakdown as case{N}.md; the peaks for the row."""
    import gzip
    import pickle

    from memory_peak import peak

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"case{case_no}.pickle.gz", "wb") as f:
        pickle.dump(snap, f)
    p = peak(snap)
    (folder / f"case{case_no}.md").write_text(f"# case {case_no}: {label(grid()[case_no])}\n\n" + "\n".join(p.lines()))
    return {"trace_peak_allocated_mb": round(p.allocated_mb, 1), "trace_peak_reserved_mb": round(p.reserved_mb, 1)}


def child(case_no: int, probe: bool, work: Path, out: Path, snapshot: Path | None = None) -> None:
    """One case (or its probe), in this fresh process: appends one JSON row to `out`. `snapshot`: a folder for
    the allocator's history of the run and what its peak holds (`_save_snapshot`)."""
    import torch
    from memory_validation import NvmlPeak, model_folder

    from studio.hardware import detect, process_gpu_mb
    from studio.memory import estimate

    case = grid()[case_no]
    row = {"case": case_no, "probe": probe, **case, "pid": os.getpid()}
    t0 = time.time()
    try:
        folder = model_folder(case["model"], work / "models")
        tmp = Path(tempfile.mkdtemp(prefix=f"case{case_no}-", dir=work))
        config = config_for(case, folder, data_file(tmp / "texts.csv", case))
        e = estimate(config, num_labels=2, device=detect())
        row.update(estimate_mb=round(e.total_mb, 1), trainable_params=e.trainable_params,
                   **{f"est_{k}": round(v, 1) for k, v in e.parts.items()})  # fmt: skip
        if torch.cuda.is_available():
            torch.zeros(1, device="cuda")
            row["context_mb"] = process_gpu_mb()
        if probe:
            from studio.probe import probe as run_probe

            p = run_probe(config, num_labels=2)
            row.update(status="completed", measured_mb=round(p.measured_mb, 1), measured_kind=p.measured_kind)
        else:
            from studio.registry import Registry
            from studio.training import Run

            recording = snapshot is not None and torch.cuda.is_available()
            if recording:  # stacks of every allocation, to say what the peak holds (benchmarks/memory_peak.py)
                torch.cuda.memory._record_memory_history(stacks="python", max_entries=2_000_000)
            sampler = NvmlPeak()
            try:
                result = Run(config, Registry(tmp / "runs")).execute()
            finally:
                row["nvml_peak_mb"] = sampler.stop()
            if recording:
                row.update(_save_snapshot(torch.cuda.memory._snapshot(), snapshot, case_no))
                torch.cuda.memory._record_memory_history(enabled=None)
            eff = result.summary.efficiency if result.summary else None
            row.update(status=result.status, measured_mb=row["nvml_peak_mb"],
                       torch_peak_reserved_mb=getattr(eff, "peak_reserved_mb", None),
                       error="" if result.status == "completed" else (result.message or "")[:300])  # fmt: skip
    except Exception as exc:  # the row says what went wrong; the parent goes on with the other cases
        row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    if row.get("measured_mb") and row.get("estimate_mb"):
        row["error_pct"] = round(100 * (row["estimate_mb"] - row["measured_mb"]) / row["measured_mb"], 2)
    row["seconds"] = round(time.time() - t0, 1)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def parent(args: argparse.Namespace) -> None:
    """Build the model folders, then run the cases (and probes) as child processes, `--jobs` at a time."""
    import torch
    import transformers
    from memory_validation import model_folder

    from studio.hardware import detect

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="heldout-"))
    cases = grid()
    chosen = [int(i) for i in args.only.split(",")] if args.only else list(range(len(cases)))
    for alias in dict.fromkeys(cases[i]["model"] for i in chosen):
        model_folder(alias, work / "models")
    torch.cuda.empty_cache()
    device = detect()
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "date": time.strftime("%Y-%m-%d"),
           "device_total_mb": device.total_mb, "jobs": args.jobs}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    jobs = [(i, False) for i in chosen] + ([] if args.no_probe else [(i, True) for i in PROBED if i in chosen])
    rows = out / "rows.jsonl"
    running: list[tuple[subprocess.Popen, float]] = []
    budget = 0.8 * device.total_mb
    while jobs or running:
        running = [(p, mb) for p, mb in running if p.poll() is None]
        if jobs and len(running) < args.jobs:
            i, probe = jobs[0]
            need = _guess_mb(cases[i], work / "models" / cases[i]["model"])
            if not running or sum(mb for _, mb in running) + need < budget:
                jobs.pop(0)
                cmd = [sys.executable, __file__, "--case", str(i), "--work", str(work), "--rows", str(rows)]
                cmd += ["--snapshot", args.snapshot] if args.snapshot else []
                running.append((subprocess.Popen(cmd + (["--probe"] if probe else [])), need))
                continue
        time.sleep(0.5)
    try:  # recomputing resolves catalogue aliases: minilm-l6 needs its package, which a GPU host may lack
        (out / "report.md").write_text(report(rows))
    except Exception as exc:
        print(f"report: {exc}", flush=True)


def _guess_mb(case: dict, folder: Path) -> float:
    """The estimate for a case (no model folder needed: catalogue dims), to keep side-by-side cases in memory."""
    from studio.hardware import Device
    from studio.memory import estimate

    gpu = Device(kind="cuda", name="NVIDIA H200", total_mb=143771, free_mb=142000, count=1)
    return 1.3 * estimate(config_for(case, folder, Path("unused.csv")), num_labels=2, device=gpu).total_mb


def recompute(rows_path: Path) -> list[dict]:
    """Every measured row with today's estimate for its config on the GPU it ran on (no GPU needed)."""
    from studio.hardware import Device
    from studio.memory import estimate

    env = json.loads(rows_path.with_name("environment.json").read_text())
    gpu = Device(kind="cuda", name=env["gpu"], total_mb=env["device_total_mb"], free_mb=env["device_total_mb"] - 1000,
                 count=1)  # fmt: skip
    cases = grid()
    out = []
    for line in rows_path.read_text().splitlines():
        row = json.loads(line)
        if row.get("status") != "completed" or not row.get("measured_mb"):
            continue
        case = cases[row["case"]]
        e = estimate(config_for(case, Path(case["model"]), Path("unused.csv")), num_labels=2, device=gpu)
        measured = float(row["measured_mb"])
        out.append({**row, "estimate_now_mb": round(e.total_mb, 1),
                    "error_now_pct": round(100 * (e.total_mb - measured) / measured, 2)})  # fmt: skip
    return sorted(out, key=lambda r: (r["probe"], r["case"]))


def label(case: dict) -> str:
    extras = [f"{k} {case[k]}" for k in ("optimizer", "placement", "r", "bits", "attn", "precision") if k in case]
    ckpt = ", checkpointing" if case["ckpt"] else ""
    return f"{case['model']} {case['method']}, {case['batch']} x {case['seq']}{ckpt}" + "".join(
        f", {x}" for x in extras
    )


def summary(rows: list[dict]) -> dict:
    """The goals' figures; "fits" wrong: the run measured more than the free memory the estimate would have called
    enough (estimate + studio.memory.SAFETY_MB, over SAFETY_MARGIN)."""
    from studio.memory import SAFETY_MARGIN, SAFETY_MB

    errors = [r["error_now_pct"] for r in rows]
    if not errors:
        return {"cases": 0}
    over = [r for r in rows if r["measured_mb"] > (r["estimate_now_mb"] + SAFETY_MB) / SAFETY_MARGIN]
    return {
        "cases": len(errors),
        "median_abs": statistics.median(abs(e) for e in errors),
        "max_abs": max(abs(e) for e in errors),
        "worst_under": min(errors),
        "fits_but_exceeded": len(over),
    }


def report(rows_path: Path) -> str:
    """The table: estimate vs measured per case, then the goals' figures per group and the probe's rows."""
    from studio.memory import SAFETY_MARGIN, SAFETY_MB

    rows = recompute(rows_path)
    env = json.loads(rows_path.with_name("environment.json").read_text())
    cases = grid()
    lines = [f"Measured on an {env['gpu']} (torch {env['torch']}, transformers {env['transformers']}, {env['date']}); "
             "each case in its own process.", ""]  # fmt: skip
    for group in dict.fromkeys(r["group"] for r in rows if not r["probe"]):
        s = summary([r for r in rows if not r["probe"] and r["group"] == group])
        if s["cases"]:
            lines += [
                f"**{group}**: {s['cases']} cases, median |error| {s['median_abs']:.1f}%, max {s['max_abs']:.1f}%, "
                f"largest under-estimate {s['worst_under']:+.1f}%, "
                f"measured above (estimate + {SAFETY_MB:.0f} MB) / {SAFETY_MARGIN} "
                f'("fits" wrong): {s["fits_but_exceeded"]}',
                "",
            ]
    lines += ["| # | group | configuration | measured MB | estimate MB | error |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        if not r["probe"]:
            lines.append(
                f"| {r['case']} | {r['group']} | {label(cases[r['case']])} | {r['measured_mb']:,.0f} | "
                f"{r['estimate_now_mb']:,.0f} | {r['error_now_pct']:+.1f}% |"
            )
    runs = {r["case"]: r for r in rows if not r["probe"]}
    probes = [r for r in rows if r["probe"]]
    if probes:
        lines += [
            "",
            'The probe ("Measure", its own process) beside the estimate and the case\'s training run:',
            "",
            "| # | configuration | probe MB | run MB | estimate MB | probe vs run |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for p in probes:
            run = runs.get(p["case"], {}).get("measured_mb")
            vs = f"{100 * (p['measured_mb'] - run) / run:+.1f}%" if run else "n/a"
            lines.append(
                f"| {p['case']} | {label(cases[p['case']])} | {p['measured_mb']:,.0f} | "
                f"{run or 0:,.0f} | {p['estimate_now_mb']:,.0f} | {vs} |"
            )
    failed = [json.loads(x) for x in rows_path.read_text().splitlines() if json.loads(x).get("status") != "completed"]
    if failed:
        lines += ["", "Cases that did not complete:", ""]
        lines += [f"- {f['case']} {label(cases[f['case']])}{' (probe)' if f['probe'] else ''}: {f.get('error')}"
                  for f in failed]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="measure (on a GPU) into this folder")
    parser.add_argument("--only", help="comma-separated case numbers")
    parser.add_argument("--jobs", type=int, default=4, help="cases side by side on the GPU (memory is per process)")
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--snapshot", help="record each case's allocator history; its peak breakdown goes here")
    parser.add_argument("--report", nargs="?", const=str(RESULTS / "rows.jsonl"), help="recompute a rows.jsonl")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        child(args.case, args.probe, Path(args.work), Path(args.rows), Path(args.snapshot) if args.snapshot else None)
    elif args.report:
        print(report(Path(args.report)))
    elif args.out:
        parent(args)
    else:
        parser.error("--out or --report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
