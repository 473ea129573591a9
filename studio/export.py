"""Take a finished run out of the studio: a model card, a zip, a merged model, a Hugging Face Hub repo.

- `studio.model_card.model_card` writes the Hugging Face README.md that every export carries.
- `export_zip` packs the run's model, tokenizer, label map, calibration.json (the temperature), config and
  metrics with that card into
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
from pathlib import Path
from typing import Any

from studio.calibration import CALIBRATION_FILE
from studio.errors import StudioError
from studio.model_card import FinishedRun, base_model_id, card_text, finished_run
from studio.multilabel import THRESHOLDS_FILE
from studio.registry import Registry

EXPORTS_DIR = "exports"
"""Zips go to ``<runs_dir>/exports/`` unless a destination is given."""
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_MERGED_FILES = ("config.json", "tokenizer_config.json", "label_map.json", "README.md")


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
    for name in (CALIBRATION_FILE, THRESHOLDS_FILE):  # the temperature and the thresholds travel with the model
        if (run.dir / name).exists():
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
    entries = _entries(run, card_text(run, None, False), flat=False)
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
    card = card_text(run, None, True)
    tmp = run.dir / f".merged.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)  # safetensors
        _write_folder(tmp, {f.relative_to(tokenizer_dir).as_posix(): f for f in _files(tokenizer_dir, run.dir)})
        _write_folder(tmp, {"label_map.json": run.dir / "label_map.json", "README.md": card.encode("utf-8")})
        for name in (CALIBRATION_FILE, THRESHOLDS_FILE):  # the temperature and thresholds travel with the model
            if (run.dir / name).exists():
                _write_folder(tmp, {name: next(_files(run.dir / name, run.dir))})
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

    from studio import precision
    from studio.architectures import family_for
    from studio.models import load_classifier, load_config, read_task, resolve_source

    cfg = run.config
    tokenizer = AutoTokenizer.from_pretrained(run.dir / "tokenizer")
    source = resolve_source(cfg.model)
    family = family_for(load_config(cfg.model, source).model_type)
    base, _ = load_classifier(cfg, source, run.labels, tokenizer, family, quantize=False, task=read_task(run.dir))
    if torch.cuda.is_available():
        if cfg.method.quantized:  # the dtype the 4-bit layers computed in: what the adapter trained against
            dtype = precision.resolve(cfg.train.precision, precision.Compute.here(), cfg.method).quant_compute_dtype()
        else:
            dtype = next(base.parameters()).dtype
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
    entries = _entries(run, card_text(run, repo_id, merged), flat=True, merged=merged)
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
