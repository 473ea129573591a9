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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.calibration import CALIBRATION_FILE
from studio.errors import StudioError
from studio.export_check import UNCHECKED_SECTION, ExportCheck, ExportTarget, require_test_predictions, verify_export
from studio.model_card import FinishedRun, base_model_id, card_text, finished_run
from studio.multilabel import THRESHOLDS_FILE
from studio.registry import Registry

EXPORTS_DIR = "exports"
"""Zips go to ``<runs_dir>/exports/`` unless a destination is given."""
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_MERGED_FILES = ("config.json", "tokenizer_config.json", "label_map.json", "README.md")
CHECK_FILE = "export_check.json"
"""A merged folder's record of its check (`ExportCheck`): a merge without one is checked before it is returned."""


@dataclass(frozen=True)
class Exported:
    """A finished export: where it is, and what its check found (None: exported unchecked). Path-like: it opens
    and prints as the zip file or merged folder (a push: its URL)."""

    path: Path | None
    check: ExportCheck | None
    url: str | None = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.url or str(self.path)

    def lines(self) -> list[str]:
        """What the CLI prints: where the export is, then how it was checked."""
        said = self.check.line() if self.check else "not checked (--no-check)"
        return [str(self), said]


def _card_section(check: ExportCheck | None) -> list[str]:
    return check.card_section() if check is not None else UNCHECKED_SECTION


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
def export_zip(registry: Registry, run_id: str, dest_dir: Path | None = None, *, check: bool = True) -> Exported:
    """Zip a finished run: its model (adapter/ or model/), tokenizer/, label map, config, eval.json, README.md.

    Entries sit under ``<run_id>/`` in the run folder's layout (the studio can load the unzipped folder as a
    run). Written to a temporary name, checked, then renamed: the zip is whole and checked, or absent. With
    `check`, the zip is unpacked beside it and a fresh process must predict what the run predicted
    (`export_check`); the card then says how it was checked. A new export replaces an older one of the same run;
    one that fails its check leaves the older one as it was.

    Args:
        dest_dir: the folder for ``<run_id>.zip``; default ``<runs_dir>/exports/``.

    Raises:
        ExportCheckError: the zip does not predict what the run did (which rows and labels, what to do).
    """
    run = finished_run(registry, run_id)
    if check:
        require_test_predictions(run)
    entries = _entries(run, "", flat=False)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else registry.runs_dir / EXPORTS_DIR
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"export folder {dest} cannot be created: {e.strerror}") from None
    target = dest / f"{run_id}.zip"
    tmp = dest / f".{run_id}.zip.tmp-{os.getpid()}"
    try:
        _write_zip(tmp, run_id, {k: v for k, v in entries.items() if k != "README.md"}, "w")
        result = _check_zip(run, tmp, dest) if check else None
        _write_zip(tmp, run_id, {"README.md": card_text(run, None, False, _card_section(result)).encode()}, "a")
        os.replace(tmp, target)
    except OSError as e:
        raise StudioError(f"could not write {target}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(target, result)


def _write_zip(path: Path, run_id: str, entries: dict[str, Path | bytes], mode: str) -> None:
    with zipfile.ZipFile(path, mode) as zf:  # type: ignore[arg-type]
        for name, value in entries.items():
            # safetensors barely compress: store them, deflate the JSON and text
            kind = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            if isinstance(value, bytes):
                zf.writestr(f"{run_id}/{name}", value, compress_type=kind)
            else:
                zf.write(value.resolve(), f"{run_id}/{name}", compress_type=kind)


def _check_zip(run: FinishedRun, zip_path: Path, dest: Path) -> ExportCheck:
    """Unpack the zip as a user would (a hidden folder beside it, removed after) and check what it holds."""
    with tempfile.TemporaryDirectory(prefix=f".{run.id}.check-", dir=dest) as unpacked:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(unpacked)
        return verify_export(ExportTarget(run, Path(unpacked) / run.id, "run", "zip"))


# ---- merge ---------------------------------------------------------------------------------------------
def merge_adapter(registry: Registry, run_id: str, *, check: bool = True) -> Exported:
    """Fold a LoRA / IA3 / QLoRA adapter into its base and save a plain transformers model.

    ``<run_dir>/merged/`` gets the model (safetensors), the tokenizer, label_map.json and a model card, written
    under a temporary name, checked (with `check`: a fresh process loads it with plain transformers and must
    predict what the run predicted; `export_check.json` records what it found) and renamed. An existing complete
    merged/ folder is returned as it is once checked (one from before the check is checked in place first).

    The base is loaded in full precision: fp32 on CPU; on a GPU the dtype the adapter trained against (its
    own load dtype for LoRA/IA3). A QLoRA adapter is merged into the base loaded NOT quantized (the compute
    dtype on a GPU, fp32 on CPU), the standard way to merge QLoRA: merging into 4-bit weights would
    round the update away. The merged model therefore differs from the quantized training-time model by
    the quantization error (predictions nearly always agree; logits are close, not equal): its check allows
    `export_check.QUANTIZED_TOLERANCE`.

    Raises:
        StudioError: the run is unknown, unfinished, a full fine-tune, or merged/ exists but is incomplete.
        ExportCheckError: the merged model does not predict what the run did (nothing is left in merged/).
    """
    run = finished_run(registry, run_id)
    if run.kind == "model":
        raise StudioError(f"run {run_id} is a full fine-tune: its model/ folder is already a plain model")
    if check:
        require_test_predictions(run)
    target = run.dir / "merged"
    if target.exists():
        return _existing_merge(run, target, check)
    model, tokenizer_dir = _merged_model(run), run.dir / "tokenizer"
    tmp = run.dir / f".merged.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)  # safetensors
        del model
        _write_folder(tmp, {f.relative_to(tokenizer_dir).as_posix(): f for f in _files(tokenizer_dir, run.dir)})
        _write_folder(tmp, {"label_map.json": run.dir / "label_map.json"})
        for name in (CALIBRATION_FILE, THRESHOLDS_FILE):  # the temperature and thresholds travel with the model
            if (run.dir / name).exists():
                _write_folder(tmp, {name: next(_files(run.dir / name, run.dir))})
        result = verify_export(ExportTarget(run, tmp, "flat", "merged model", merged=True)) if check else None
        _record_check(run, tmp, result)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "README.md").is_file():  # not a merge that finished first in another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Exported(target, result)


def _record_check(run: FinishedRun, folder: Path, result: ExportCheck | None) -> None:
    """The merged folder's card (with its check section) and, when checked, export_check.json."""
    from studio.registry import write_json_atomic

    (folder / "README.md").write_text(card_text(run, None, True, _card_section(result)), encoding="utf-8")
    if result is not None:
        write_json_atomic(folder / CHECK_FILE, result.to_dict())


def _existing_merge(run: FinishedRun, target: Path, check: bool) -> Exported:
    """An earlier merge: returned as it is when complete and checked; one from before the check is checked now."""
    missing = [n for n in _MERGED_FILES if not (target / n).is_file()]
    if missing or not any(target.glob("*.safetensors")):
        raise StudioError(f"{target} exists but is incomplete (no {', '.join(missing) or 'weights'}); delete it "
                          "and merge again")  # fmt: skip
    if (target / CHECK_FILE).is_file():
        try:
            return Exported(target, ExportCheck.from_dict(json.loads((target / CHECK_FILE).read_text("utf-8"))))
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable record: check again
    if not check:
        return Exported(target, None)
    try:
        result = verify_export(ExportTarget(run, target, "flat", "merged model", merged=True))
    except StudioError as e:
        raise type(e)(f"{e} Delete {target} and merge again.") from None
    _record_check(run, target, result)
    return Exported(target, result)


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
    _unwrap_saved_modules(model)
    merged = model.merge_and_unload()
    merged.eval()
    return merged


def _unwrap_saved_modules(model: Any) -> None:
    """Put each module peft saved whole (the head, `modules_to_save`) in place of its wrapper, as the trained copy.

    merge_and_unload does this itself, except that peft 0.21's IA3 unload fails on a head made of several layers
    (RobertaClassificationHead: "object has no attribute 'weight'"); found by the export check's family x method
    matrix. Done here for every method: the result is what merge_and_unload gives where it works."""
    from peft.utils import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            active = module.active_adapters[0] if module.active_adapters else "default"
            setattr(model.get_submodule(parent) if parent else model, child, module.modules_to_save[active])


# ---- the Hugging Face Hub ------------------------------------------------------------------------------
def push_to_hub(
    registry: Registry,
    run_id: str,
    repo_id: str,
    token: str | None,
    private: bool = True,
    merged: bool = False,
    *,
    check: bool = True,
    api_factory: Callable[..., Any] | None = None,
) -> Exported:
    """Upload a finished run (or, with `merged`, its merged model) to a Hub model repo; its `url` is the repo's.

    The repo (created if missing, private unless `private` is False; an existing repo keeps its visibility)
    gets the Hub's flat layout: weights and tokenizer at the root, label_map.json, config.yaml, eval.json and
    the model card as README.md. The repo id, the token (argument, else HF_TOKEN) and the run are checked, and
    a merge made, before any network call. Files are staged (hard-linked where possible) in a hidden
    ``<runs_dir>/.push-*`` folder that is removed afterwards; with `check`, the staged folder is checked (a fresh
    process loads it as the card says and must predict what the run did) before anything is uploaded.

    Args:
        api_factory: builds the client from ``token=``; default ``huggingface_hub.HfApi`` (tests pass a fake).

    Raises:
        StudioError: bad repo id, no token, unfinished run, or the Hub refused (one line, never the token).
        ExportCheckError: what would be uploaded does not predict what the run did (nothing is uploaded).
    """
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-", ".git")):
        raise StudioError(
            f"repo id '{repo_id}' must look like owner/name (your user or organisation name, a slash, then letters, "
            "digits, '-', '_' or '.'), e.g. alice/imdb-lora"
        )
    token = _token(token)
    run = finished_run(registry, run_id)
    if check:
        require_test_predictions(run)
    if merged:
        merge_adapter(registry, run_id, check=check)
    entries = _entries(run, "", flat=True, merged=merged)
    del entries["README.md"]
    entries.pop(CHECK_FILE, None)  # the merge's own record: the card says how the upload was checked
    if api_factory is None:
        from huggingface_hub import HfApi as api_factory
    with tempfile.TemporaryDirectory(prefix=".push-", dir=registry.runs_dir) as staging:
        _write_folder(Path(staging), entries)
        what = "Hub upload of the merged model" if merged else "Hub upload"
        result = verify_export(ExportTarget(run, Path(staging), "flat", what, merged=merged)) if check else None
        card = card_text(run, repo_id, merged, _card_section(result))
        _write_folder(Path(staging), {"README.md": card.encode("utf-8")})
        url = _upload(api_factory(token=token), run, repo_id, Path(staging), private, merged)
    return Exported(None, result, url)


def _token(token: str | None) -> str:
    token = (token or os.environ.get("HF_TOKEN") or "").strip()
    if not token:
        raise StudioError(
            "a Hugging Face token with write access is needed: paste one (huggingface.co/settings/tokens) or set "
            "HF_TOKEN"
        )
    if any(c.isspace() for c in token):
        raise StudioError("the Hugging Face token contains spaces or line breaks: paste it again, alone")
    return token


def _upload(api: Any, run: FinishedRun, repo_id: str, staging: Path, private: bool, merged: bool) -> str:
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        what = "merged model" if merged else "adapter" if run.kind == "adapter" else "model"
        api.upload_folder(repo_id=repo_id, folder_path=str(staging), repo_type="model",
                          commit_message=f"Fine-Tune Studio run {run.id} ({what})")  # fmt: skip
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
