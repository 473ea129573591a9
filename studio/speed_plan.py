"""Speed profiles: what `train.speed` fast and frugal make of a config on a device, and why.

`plan(config, device, num_labels, train_rows)` returns the config that trains and each choice made, as
(field, before, after, why) lines that the UI shows before a run starts and the run's log and eval.json
record. `as_set` changes nothing, and neither does any profile on a CPU: the choices are about GPU kernels
and GPU memory (bf16 autocast is ~20x slower than fp32 on CPUs without native bf16, see studio/precision.py).

The rules come from measurements on an H100 (benchmarks/train_speed.py: bert-base, IMDb's token lengths,
through the studio's own Run; README, "Training speed"):

- a 16-bit base instead of QLoRA's 4-bit one when it fits: 4-bit layers are dequantised in every forward and
  backward, 2-5x the step time of LoRA on a bf16 base at batch 4 (benchmarks/results/decoder_check.csv);
- no gradient checkpointing when the activations fit: checkpointing cost 1.8x;
- the largest batch up to FAST_BATCH that fits: at batch 16 the GPU waits on Python between kernels
  (347 samples/s at 16 x 2 against 864 at 64 x 1, LoRA bf16 fused); the effective batch never shrinks, and
  when it grows the learning rate follows the square-root rule for Adam (Malladi et al. 2022, "On the SDEs
  and scaling rules for adaptive gradient algorithms"), stated as a choice;
- fused AdamW (one kernel for all parameters): +10%;
- for adapter methods, the frozen base and the hidden states in bf16 (`train.half_activations`): no cast of
  every weight in every pass; 1,692 against 1,592 samples/s at batch 128;
- torch.compile (per layer: hf_trainer.compile_cached) only when the run is long enough to pay its compile time
  back (COMPILE_MIN_TOKENS cold; COMPILE_WARM_MIN_TOKENS where this GPU compiled the model and shape before, its
  cache warm: studio/compiled.py), over batches padded to 64-token buckets so it compiles a few shapes
  (hf_trainer.pad_multiple);
- expandable allocator segments: without them batches of varying length strand cached blocks, and fast at batch
  128 on IMDb's lengths peaked at 12,066 MB instead of 11,160 at the same speed (1,979 and 1,887 against 1,967
  samples/s, each order once; benchmarks/results/train_speed/h200_16000x1_expandable). The memory estimate is
  calibrated on batches of one length, so this is also what keeps fast's batch choice honest on real texts.

Not chosen (yet): length-grouped batches (`train.length_grouping`). They pad less, but every batch then has
another shape, and on the H100 the seed recipe trained 13% slower with them and peaked 18% higher (the
allocator keeps blocks of each shape); fast at batch 128 measured 8% slower, and on an H200 fast grouped into
64-token buckets ran 896 against 1,324 samples/s (benchmarks/results/train_speed/h200_16000x1_levers).

Frugal keeps the seed study's memory savers (4-bit base, checkpointing, paged 8-bit AdamW) and drops fp16's
loss scaler (bf16 needs none). The seed recipe's time is a fixed cost per micro-batch (the GPU was idle 91%
of it: ~2,150 kernel launches per micro-batch), so frugal's levers are a larger micro-batch in the same memory
(the residual stream and frozen weights in 16 bit, `train.half_activations`: under QLoRA they were fp32; and
expandable allocator segments make room for FRUGAL_BATCH rows), PyTorch's reentrant checkpoint (faster than the
other path at about the same peak), and, where a 16-bit base costs at most FRUGAL_SLACK more memory than the
4-bit one (encoders, whose embeddings stay 16-bit either way), no 4-bit layers at all. Measured on an H200 against
the stock seed recipe, each row its own process: benchmarks/results/train_speed/README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from studio import precision
from studio.config import RunConfig
from studio.hardware import Device
from studio.methods import METHODS

FAST_BATCH = 128
"""The per-device batch fast grows to (bert-base at 256 tokens: past it samples/s barely rise, memory does)."""
MIN_STEPS_PER_EPOCH = 50
"""Fast never grows the batch so far that an epoch has fewer optimizer steps than this (small datasets)."""
MIN_OPTIMIZER_STEPS = 250
"""... nor so far that the whole run has fewer optimizer steps than this. Short runs need their steps: the quick
demo (2,000 rows, 1 epoch, batch 16: 125 steps) grown to batch 32 (62 steps, learning rate x1.41) scored 77.3% +-
0.5 against 80.3% +- 0.2 as written, and a 4-emotion GoEmotions run (1,600 rows: 100 -> 50 steps) 64.0% +- 1.7
against 71.7% +- 1.1 (8 seeds each on an H200; benchmarks/results/label_recovery/fast_profile). The seed
workload (16,000 rows x 3 epochs: 1,500 steps at 32) still grows to FAST_BATCH (375 steps)."""
FRUGAL_BATCH = 32
"""Frugal's micro-batch: with the stream in 16 bit, 32 rows peaked at the seed recipe's 16 x fp32 (H100)."""
FRUGAL_SLACK = 0.10
"""How much more memory than the 4-bit recipe frugal lets LoRA on a 16-bit base take: 4-bit layers are dequantised
in every pass, so a 16-bit base trains faster when its weights are a small part of the peak. Measured on an H200
(benchmarks/results/train_speed/h200_frugal_8000x1: bert-base, IMDb at 256 tokens, 32-row micro-batches, both
checkpointed through the reentrant path, each its own process): 419 against 270 samples/s at 1,612 against
1,464 MB (+10%; estimated 1,670 and 1,540, +8.4%), where the stock seed recipe ran 126 samples/s at 1,624 MB. A
decoder's weights are most of its peak (Qwen2.5-1.5B: +58% estimated, Llama-3.2-1B +43%), so it keeps the 4-bit
base."""
COMPILE_MIN_TOKENS = 50e6
"""Training tokens (rows x epochs x max_length) from which fast compiles a model and shape this machine has not
compiled before: twice the break-even measured for bert-base LoRA at batch 128 on an H200, compiled per layer
(benchmarks/results/train_speed/h200_16000x3_regional, 16,000 x 3, each row its own process): the steady rate
rose 1,995 -> 2,474-2,548 samples/s, and compiling with inductor's cache cold cost ~11 s, so it pays from ~25M
tokens. (The whole model compiled at once, before: +32% steady but ~37 s cold, break-even ~56M tokens.) Only
bert-base was measured: hence the factor of two."""
COMPILE_WARM_MIN_TOKENS = 10e6
"""... and from which it compiles one it has (`studio.compiled`: inductor's cache warm). The same measurement:
warm, the seed workload (12.3M tokens) took 42.5 s end to end against fast's 50.7 s uncompiled, the compile's
tracing and loading hidden in the faster steps; 10M is a margin under that one measured point, not a fitted
break-even."""
FAST_OPTIMIZERS = {"adamw_torch", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit"}
FAST_WORKERS = 2
"""Dataloader workers: the collator pads in Python; two workers keep the next batches ready."""


@dataclass(frozen=True)
class Choice:
    field: str
    before: Any
    after: Any
    why: str

    def text(self) -> str:
        return f"{self.field}: {self.before} -> {self.after} ({self.why})"


@dataclass(frozen=True)
class Plan:
    profile: str
    config: RunConfig
    """What trains: the asked config with the choices applied and `train.speed: as_set` (rerunnable as is)."""
    choices: tuple[Choice, ...]
    note: str
    """One line on what the profile did (or why it changed nothing)."""

    def lines(self) -> list[str]:
        return [self.note] + [c.text() for c in self.choices]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "note": self.note,
                "choices": [{"field": c.field, "before": c.before, "after": c.after, "why": c.why}
                            for c in self.choices]}  # fmt: skip


def plan(config: RunConfig, device: Device, num_labels: int, train_rows: int) -> Plan:
    """The config that trains for `config.train.speed` on `device` (see the module docstring)."""
    profile = config.train.speed
    if profile == "as_set":
        return Plan(profile, config, (), "speed as_set: every setting as given")
    if device.kind != "cuda":
        return Plan(profile, _settle(config, {}), (), f"speed {profile}: on a CPU the settings train as given")
    if profile == "fast":
        return _fast(config, device, num_labels, train_rows)
    return _frugal(config, device, num_labels)


def guess_train_rows(config: RunConfig) -> int:
    """Training rows before the data is loaded (the UI before its Data tab inspected the source, the CLI's
    estimate): what the data settings cap it at, else the seed study's 16,000. Only fast's batch cap for small
    datasets and its compile rule use the number."""
    d = config.data
    if d.balance is not None:
        return int(d.balance.num_samples * 0.8)
    return d.max_train_samples or int((d.max_samples or 20_000) * 0.8)


def planned_estimate(
    config: RunConfig, num_labels: int, device: Device | None = None, train_rows: int | None = None
) -> tuple[Any, Plan]:
    """(memory estimate of what would train, the plan): what the UI, `estimate` and `sweep --dry-run` show."""
    from studio.hardware import detect
    from studio.memory import estimate

    device = device or detect()
    p = plan(config, device, num_labels, train_rows or guess_train_rows(config))
    return estimate(p.config, num_labels, device), p


# ---- fast ----------------------------------------------------------------------------------------------
def _fast(config: RunConfig, device: Device, num_labels: int, train_rows: int) -> Plan:
    from studio.memory import estimate

    t, m = config.train, config.method
    changes: dict[str, tuple[Any, str]] = {}
    compute = precision.Compute.of(device)
    if precision.resolve(t.precision, compute).mode != precision.resolve("auto", compute).mode:
        changes["train.precision"] = ("auto", "bf16 autocast on GPUs that have it (no loss scaler), else fp16")
    if m.spec.unquantized_variant:
        changes["method.name"] = (m.spec.unquantized_variant, "the 16-bit base fits; 4-bit layers are dequantised "
                                                              "in every pass, 2-5x the step time")  # fmt: skip
    if t.optimizer in FAST_OPTIMIZERS:
        changes["train.optimizer"] = ("adamw_torch_fused", "one fused kernel for every parameter")
    if t.dataloader_workers < FAST_WORKERS:
        changes["train.dataloader_workers"] = (FAST_WORKERS, "batches are padded while the GPU trains")
    if m.adapter is not None and not t.half_activations:
        changes["train.half_activations"] = (True, "frozen weights and hidden states in bf16: no per-pass casts")
    if not t.expandable_segments:
        changes["train.expandable_segments"] = (True, "batches of varying length strand no memory: a 7.5% lower "
                                                      "peak at the same speed (H200)")  # fmt: skip

    asked = t.effective_batch_size
    samples = t.max_steps * asked if t.max_steps else train_rows * t.epochs
    by_rows = 2 ** int(math.log2(max(1, min(train_rows // MIN_STEPS_PER_EPOCH, samples // MIN_OPTIMIZER_STEPS))))
    target = max(asked, min(FAST_BATCH, by_rows))
    found = _first_fit(config, changes, asked, target, num_labels, device)
    if found is None:  # not even batch 1 fits: train as asked, and let the estimate's warning speak
        return Plan("fast", _settle(config, {}), (), "speed fast: nothing faster fits this GPU; settings as given")
    fitted, batch, grad_accum = found
    new_effective = batch * grad_accum
    if new_effective != asked:
        _scale_learning_rate(fitted, t.learning_rate, asked, new_effective, fitted.get("method.name", (m.name,))[0])
        logging = max(1, round(t.logging_steps * asked / new_effective))
        if logging != t.logging_steps:
            fitted["train.logging_steps"] = (logging, "the loss is logged as often per sample as asked")
        if t.eval_steps:
            fitted["train.eval_steps"] = (max(1, round(t.eval_steps * asked / new_effective)),
                                          "evaluations come as often per sample as asked")  # fmt: skip
    epochs_tokens = (t.max_steps * new_effective if t.max_steps else train_rows * t.epochs) * config.data.max_length
    settled = _settle(config, fitted)
    why_compile = None if t.torch_compile else _compile_reason(settled, device, epochs_tokens)
    if why_compile:
        fitted["train.torch_compile"] = (True, why_compile)
        settled = _settle(config, fitted)
    mb = estimate(settled, num_labels, device).total_mb
    note = f"speed fast: estimated {mb:,.0f} MB of this GPU's {device.free_mb:,.0f} MB free"
    return Plan("fast", settled, _choices(config, fitted), note)


def _compile_reason(settled: RunConfig, device: Device, tokens: float) -> str | None:
    """Why fast compiles this run (None: it does not): long enough to pay a cold compile back, or long enough for
    a warm one where this machine compiled the same model and shape before."""
    from studio.compiled import compiled_before

    if tokens >= COMPILE_MIN_TOKENS:
        return f"{tokens / 1e6:.0f}M training tokens pay back compiling"
    if tokens >= COMPILE_WARM_MIN_TOKENS and compiled_before(settled, device):
        return (f"this GPU compiled this model and shape before (inductor's cache is warm): {tokens / 1e6:.0f}M "
                "training tokens pay it back")  # fmt: skip
    return None


def _scale_learning_rate(fitted: dict[str, tuple[Any, str]], rate: float, asked: int, effective: int,
                         method: str) -> None:  # fmt: skip
    """The square-root rule for Adam on the larger effective batch, never above the method's safe rate
    (`methods.Method.safe_learning_rate`, measured with the range test) unless the rate asked is already."""
    factor = math.sqrt(effective / asked)
    why = f"effective batch {asked} -> {effective}: x{factor:.2f}, the square-root rule for Adam"
    scaled, safe = rate * factor, METHODS[method].safe_learning_rate
    if safe is not None and scaled > max(rate, safe):
        scaled = max(rate, safe)
        why += f", capped at {scaled:.2g}, the highest rate the range test found safe for {method}"
    if not math.isclose(scaled, rate):
        fitted["train.learning_rate"] = (float(f"{scaled:.3g}"), why)


def _first_fit(
    config: RunConfig, changes: dict[str, tuple[Any, str]], asked: int, target: int, num_labels: int, device: Device
) -> tuple[dict[str, tuple[Any, str]], int, int] | None:
    """The first of fast's trials that the estimate fits, as (changes, batch, grad_accum), in the order of
    preference: a 16-bit base over dropping checkpointing over a big batch; None when none fits."""
    from studio.memory import estimate

    t = config.train
    for keep_quantized in (False, True) if config.method.quantized else (False,):
        for checkpointing in (False, True):
            for batch in _halvings(target):
                grad_accum = max(1, math.ceil(asked / batch))
                trial = dict(changes)
                if keep_quantized:
                    trial.pop("method.name", None)
                _batch_changes(trial, t, batch, grad_accum, checkpointing)
                if estimate(_settle(config, trial), num_labels, device).fits:
                    return trial, batch, grad_accum
    return None


def _batch_changes(trial: dict, t: Any, batch: int, grad_accum: int, checkpointing: bool) -> None:
    if batch != t.batch_size:
        trial["train.batch_size"] = (batch, "the largest batch up to "
                                            f"{FAST_BATCH} that fits: fewer, fuller steps")  # fmt: skip
    if grad_accum != t.grad_accum:
        trial["train.grad_accum"] = (grad_accum, "the effective batch comes from the batch itself")
    if checkpointing != t.gradient_checkpointing:
        trial["train.gradient_checkpointing"] = (
            checkpointing,
            "the activations fit: no recomputation" if not checkpointing else "needed to fit",
        )


def _halvings(start: int) -> list[int]:
    out, b = [], start
    while b >= 1:
        out.append(b)
        b //= 2
    return out


# ---- frugal --------------------------------------------------------------------------------------------
def _frugal(config: RunConfig, device: Device, num_labels: int) -> Plan:
    import importlib.util

    from studio.memory import estimate

    bnb = importlib.util.find_spec("bitsandbytes") is not None
    changes = _frugal_savers(config, bnb)
    settled = _settle(config, changes)
    mb = estimate(settled, num_labels, device).total_mb
    sixteen = _frugal_sixteen_bit(config, changes, bnb)
    base = ""  # which base, and the other's estimate, when both were weighed
    if sixteen is not None:
        settled16 = _settle(config, sixteen)
        mb16 = estimate(settled16, num_labels, device).total_mb
        if mb16 <= (1 + FRUGAL_SLACK) * mb:
            base = f"; a 16-bit base, within {FRUGAL_SLACK:.0%} of a 4-bit one's {mb:,.0f} MB and faster"
            changes, settled, mb = sixteen, settled16, mb16
        else:
            base = f"; a 4-bit base: a 16-bit one would take {mb16:,.0f} MB"
    note = (
        f"speed frugal: estimated {mb:,.0f} MB"
        + base
        + ("" if bnb else " (bitsandbytes missing: no 4-bit, no 8-bit AdamW)")
    )
    return Plan("frugal", settled, _choices(config, changes), note)


def _frugal_savers(config: RunConfig, bnb: bool) -> dict[str, tuple[Any, str]]:
    """The seed study's memory savers (a 4-bit base, checkpointing, paged 8-bit AdamW) and what makes them
    faster in the same memory: the stream in 16 bit, a larger micro-batch, the reentrant checkpoint."""
    t, m = config.train, config.method
    changes: dict[str, tuple[Any, str]] = {}
    if m.spec.quantized_variant and bnb:
        changes["method.name"] = (m.spec.quantized_variant, "the frozen base in 4-bit NF4")
    if t.precision != "auto":
        changes["train.precision"] = ("auto", "bf16 autocast where the GPU has it: no fp16 loss scaler")
    if m.quantized or "method.name" in changes:
        if m.compute_dtype == "float16":
            changes["method.compute_dtype"] = ("auto", "4-bit matmuls in the autocast dtype")
        if not m.double_quant:
            changes["method.double_quant"] = (True, "quantization constants quantized too: ~0.4 bit/param less")
    if not t.gradient_checkpointing:
        changes["train.gradient_checkpointing"] = (True, "each layer keeps only its input")
    if not t.checkpointing_reentrant:
        changes["train.checkpointing_reentrant"] = (True, "PyTorch's reentrant checkpoint: 9-15% faster than the "
                                                          "other path, peak within 3% (H200)")  # fmt: skip
    if bnb and t.optimizer not in ("paged_adamw_8bit",):
        changes["train.optimizer"] = ("paged_adamw_8bit", "8-bit states, paged to CPU RAM under pressure")
    if not t.half_activations:
        changes["train.half_activations"] = (True, "hidden states and frozen weights in 16 bit, not fp32")
    if not t.expandable_segments:
        changes["train.expandable_segments"] = (True, "memory of varying batch shapes reused, not stranded")
    # The micro-batch: FRUGAL_BATCH rows, fewer only for a smaller effective batch. The 4-bit path costs a
    # fixed time per micro-batch, so accumulation of small ones is what made the seed recipe slow.
    micro = min(FRUGAL_BATCH, t.effective_batch_size)
    if micro != t.batch_size:
        grad_accum = math.ceil(t.effective_batch_size / micro)
        changes["train.batch_size"] = (micro, f"{micro} texts a micro-batch: half-size activations make room")
        if grad_accum != t.grad_accum:
            changes["train.grad_accum"] = (grad_accum, "the effective batch kept by accumulation")
    if t.dataloader_workers < FAST_WORKERS:
        changes["train.dataloader_workers"] = (FAST_WORKERS, "batches are padded while the GPU trains")
    return changes


def _frugal_sixteen_bit(
    config: RunConfig, savers: dict[str, tuple[Any, str]], bnb: bool
) -> dict[str, tuple[Any, str]] | None:
    """Frugal's savers with the adapters on a 16-bit base and fused AdamW (FRUGAL_SLACK); None when the
    method has no 16-bit base or no 4-bit one is to be had."""
    m = config.method
    if m.adapter is None or not bnb or not (m.quantized or "method.name" in savers):
        return None
    trial = {k: v for k, v in savers.items() if k not in ("method.name", "method.compute_dtype", "method.double_quant")}
    why = f"within {FRUGAL_SLACK:.0%} of a 4-bit base's memory, and 4-bit layers are dequantised in every pass"
    if m.quantized:
        trial["method.name"] = (m.spec.unquantized_variant, "a 16-bit base " + why)
    if config.train.optimizer in FAST_OPTIMIZERS:
        trial["train.optimizer"] = ("adamw_torch_fused", "one fused kernel: the adapters' AdamW states are small")
    else:
        trial.pop("train.optimizer", None)
    return trial


# ---- helpers -------------------------------------------------------------------------------------------
def _settle(config: RunConfig, changes: dict[str, tuple[Any, str]]) -> RunConfig:
    """`config` with the changes applied and speed as_set (the result trains exactly as it reads)."""
    data = config.to_dict()
    for key, (value, _why) in list(changes.items()) + [("train.speed", ("as_set", ""))]:
        section, name = key.split(".")
        data[section][name] = value
    return RunConfig.from_dict(data)


def _choices(config: RunConfig, changes: dict[str, tuple[Any, str]]) -> tuple[Choice, ...]:
    data = config.to_dict()
    out = []
    for key, (value, why) in changes.items():
        section, name = key.split(".")
        if data[section][name] != value:
            out.append(Choice(key, data[section][name], value, why))
    return tuple(out)
