"""Verified exports: a fresh process (no studio import) loads each export with plain transformers (+ peft) and must
predict what the run predicted. Every family x method on tiny models, and the peers' classic failure (a head lost or
mis-named on export) must be caught.

Each fresh checker process costs seconds of imports, so the tests share them: the matrix checks every export in one
process, the tampered exports share another."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio import export
from studio.config import RunConfig
from studio.errors import StudioError
from studio.export_check import (
    FP32_TOLERANCE,
    QUANTIZED_TOLERANCE,
    ExportCheck,
    ExportCheckError,
    ExportTarget,
    check_exports,
)
from studio.model_card import finished_run
from studio.registry import Registry
from studio.training import Run

FAMILIES = ["bert", "distilbert", "roberta", "deberta-v2", "gpt2", "qwen2", "llama", "gemma3"]
METHODS = ["full", "lora", "qlora", "ia3"]


def tiny_run(registry: Registry, model_dir: Path, method: str, **data) -> str:
    """A tiny run trained one step (a large rate: the weights and head move far from the base)."""
    config = RunConfig.from_dict({
        "name": f"check-{method}",
        "data": {"source": "imdb-sample", "max_samples": 64, "max_length": 16, **data},
        "model": {"name": str(model_dir)},
        "method": {"name": method, "r": 4},
        "train": {"max_steps": 1, "batch_size": 8, "learning_rate": 2e-2, "eval_strategy": "no"},
    })  # fmt: skip
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    return result.run_id


def unzip(path: Path, into: Path) -> Path:
    with zipfile.ZipFile(path) as zf:
        zf.extractall(into)
    return into / Path(path).stem


def break_head(folder: Path, rename: str = "lost_head") -> None:
    """The peers' failure (peft #1070, transformers #26160): the head saved under a name the loader does not map, so
    it loads as a fresh random head with no error. Files are replaced, never written through (exports hard-link the
    run's own files)."""
    from safetensors.torch import load_file, save_file

    for path in sorted(folder.rglob("*.safetensors")):
        tensors = load_file(path)
        renamed = {k.replace("classifier", rename).replace("score", rename): v for k, v in tensors.items()}
        assert renamed != tensors, f"{path} holds no head to break"
        path.unlink()
        save_file(renamed, path, metadata={"format": "pt"})


# ---- every family x method ------------------------------------------------------------------------------------
def test_every_family_and_method_exports_what_it_predicted(tiny_model_dir, tmp_path):
    """Each family x method: its zip (adapter + tokenizer, or the full model) and, for adapters, its merged model,
    all checked by one fresh process; every one must give the run's labels, probabilities within the tolerance."""
    registry = Registry(tmp_path / "runs")
    targets = []
    for family in FAMILIES:
        for method in METHODS:
            run = finished_run(registry, tiny_run(registry, tiny_model_dir(family), method))
            zipped = export.export_zip(registry, run.id, tmp_path / "zips", check=False)
            targets.append(
                ExportTarget(run, unzip(zipped.path, tmp_path / "unzipped"), "run", f"{family} {method} zip")
            )
            if method != "full":
                merged = export.merge_adapter(registry, run.id, check=False)
                targets.append(ExportTarget(run, merged.path, "flat", f"{family} {method} merge", merged=True))
    results = check_exports(targets)
    failed = [f"{t.what}: {r}" for t, r in zip(targets, results, strict=True) if isinstance(r, ExportCheckError)]
    assert not failed, "\n".join(failed)
    measured = pd.DataFrame([{"export": t.what, "rows": r.rows, "max_prob_diff": r.max_prob_diff,
                              "tolerance": r.tolerance} for t, r in zip(targets, results, strict=True)])  # fmt: skip
    exact = measured[measured["tolerance"] == FP32_TOLERANCE]
    assert (exact["max_prob_diff"] < 1e-5).all(), exact  # fp32 on both sides: far inside 1e-4
    quantized = measured[measured["tolerance"] == QUANTIZED_TOLERANCE]
    # the 4-bit base's quantization error is real (the export is not the training-time model) and inside 0.15: up
    # to ~0.05 raw, ~0.11 calibrated for the tiny decoders (benchmarks/results/export_check/tiny.csv)
    assert len(quantized) == 2 * len(FAMILIES) and (quantized["max_prob_diff"] > 1e-6).all()
    assert (measured["rows"] > 0).all()


# ---- the exports themselves: checked before they are finished -------------------------------------------------
@pytest.fixture(scope="module")
def bert_runs(tiny_model_dir, tmp_path_factory):
    """(registry, get): get(method) trains one tiny bert run of that method on first use."""
    registry = Registry(tmp_path_factory.mktemp("check") / "runs")
    ids: dict[str, str] = {}

    def get(method: str) -> str:
        if method not in ids:
            ids[method] = tiny_run(registry, tiny_model_dir("bert"), method)
        return ids[method]

    return registry, get


def test_a_zip_whose_head_is_lost_is_refused_and_leaves_nothing(bert_runs, tmp_path, monkeypatch):
    registry, get = bert_runs
    run_id = get("lora")
    real = export.verify_export

    def with_head_lost(target, *args, **kwargs):
        break_head(target.folder)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(export, "verify_export", with_head_lost)
    with pytest.raises(ExportCheckError) as info:
        export.export_zip(registry, run_id, tmp_path / "out")
    message = str(info.value)
    # peft 0.21 refuses to load an adapter whose saved head its model lacks (older ones loaded a random head,
    # which the probabilities would catch): either way the zip is refused, saying why and what to do
    assert f"the zip of run {run_id} does not" in message and "not finished" in message
    assert "classifier.weight" in message or "probabilities differ by up to" in message
    assert "classification head" in message
    assert not list((tmp_path / "out").iterdir()), "no zip, no temporary zip, no unpacked folder is left"
    # the run's own files (hard-linked into the export) are untouched: the run still predicts as it did
    adapter = registry.run_dir(run_id) / "adapter" / "adapter_model.safetensors"
    from safetensors import safe_open

    with safe_open(adapter, "np") as f:
        assert any("classifier" in k for k in f.keys())  # noqa: SIM118


def test_cli_export_reports_the_check_and_the_card_records_it(bert_runs, capsys):
    from studio.cli import main

    registry, get = bert_runs
    run_id = get("full")
    assert main(["--runs-dir", str(registry.runs_dir), "export", run_id]) == 0
    out, err = capsys.readouterr()
    zip_path = Path(out.strip())
    assert zip_path == registry.runs_dir / "exports" / f"{run_id}.zip"
    assert "checked: a fresh process loaded the zip with transformers and predicted the run's labels on all" in err
    with zipfile.ZipFile(zip_path) as zf:
        card = zf.read(f"{run_id}/README.md").decode()
        assert sum(n.endswith("README.md") for n in zf.namelist()) == 1
    section = card.split("## Export check\n\n")[1].split("\n## ")[0]
    rows = len(pd.read_parquet(registry.run_dir(run_id) / "predictions.parquet").query("split == 'test'"))
    assert f"scored the run's first {rows} test texts in fp32" in section
    assert "- labels: the same on every row" in section and "- probabilities: the largest difference" in section
    assert "tolerance 0.0001 (fp32)" in section
    assert card.index("## How to use") < card.index("## Export check") < card.index("## Reproducibility")


def test_a_qlora_merge_is_checked_at_the_stated_tolerance_and_a_broken_one_is_not_kept(bert_runs, monkeypatch):
    registry, get = bert_runs
    run_id = get("qlora")
    real = export.verify_export
    monkeypatch.setattr(export, "verify_export", lambda t, *a, **k: (break_head(t.folder), real(t, *a, **k))[1])
    with pytest.raises(ExportCheckError, match="the merged model of run .* does not predict") as info:
        export.merge_adapter(registry, run_id)
    assert "its classification head is not the one the run trained (classifier.bias, classifier.weight" in str(
        info.value
    )  # the sharp test: on a tiny model a random head's probabilities may stay within QLoRA's tolerance
    run_dir = registry.run_dir(run_id)
    assert not (run_dir / "merged").exists() and not list(run_dir.glob(".merged*")), "no half-finished merge is kept"
    monkeypatch.setattr(export, "verify_export", real)
    merged = export.merge_adapter(registry, run_id)
    check = merged.check
    assert (
        isinstance(check, ExportCheck) and check.tolerance == QUANTIZED_TOLERANCE and "4-bit" in check.tolerance_reason
    )
    assert 0 < check.max_prob_diff < QUANTIZED_TOLERANCE  # the base's quantization error: real, and small
    assert json.loads((merged.path / export.CHECK_FILE).read_text())["max_prob_diff"] == check.max_prob_diff
    assert "tolerance 0.15 (the run's base was 4-bit" in (merged.path / "README.md").read_text()
    assert export.merge_adapter(registry, run_id).check == check  # an existing merge: its record, not a new check


def test_push_uploads_nothing_when_the_check_fails(bert_runs, monkeypatch):
    from test_export import FakeHfApi

    registry, get = bert_runs
    run_id = get("ia3")
    real = export.verify_export
    monkeypatch.setattr(
        export, "verify_export", lambda t, *a, **k: (break_head(t.folder, "score_x"), real(t, *a, **k))[1]
    )
    FakeHfApi.instances = []
    with pytest.raises(ExportCheckError, match=r"the Hub upload of run \S+ does not (load|predict)"):
        export.push_to_hub(registry, run_id, "alice/imdb-ia3", "hf_x", api_factory=FakeHfApi)
    assert not FakeHfApi.instances, "no client was even made: nothing left the machine"
    assert not list(registry.runs_dir.glob(".push-*"))


def test_runs_without_test_predictions_are_refused_unless_unchecked(bert_runs, tmp_path):
    registry, get = bert_runs
    run_id = get("lora")
    saved = registry.run_dir(run_id) / "predictions.parquet"
    kept = tmp_path / "predictions.parquet"
    shutil.move(saved, kept)
    try:
        with pytest.raises(StudioError, match=f"run {run_id} saved no test predictions .*--no-check"):
            export.export_zip(registry, run_id, tmp_path / "out")
        unchecked = export.export_zip(registry, run_id, tmp_path / "out", check=False)
        assert unchecked.check is None and unchecked.lines()[1] == "not checked (--no-check)"
        with zipfile.ZipFile(unchecked.path) as zf:
            assert "This export was not checked" in zf.read(f"{run_id}/README.md").decode()
    finally:
        shutil.move(kept, saved)


# ---- what the check catches: thresholds, temperatures and heads as the card says ------------------------------
def multi_label_csv(path: Path, n: int = 96) -> str:
    """Texts whose words say their labels: 'angry' -> anger, 'happy' -> joy, both, or neither (neutral)."""
    kinds = [
        ("angry furious", "anger"),
        ("happy glad", "joy"),
        ("angry happy", "anger|joy"),
        ("plain words", "neutral"),
    ]
    rows = [{"text": f"the film {i} was {kinds[i % 4][0]} today", "label": kinds[i % 4][1]} for i in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_the_check_applies_thresholds_and_temperatures_as_the_card_says(tiny_model_dir, tmp_path):
    """One fresh process checks five copies of exports: a multi-label zip as made (passes), the same with its
    thresholds or temperatures changed, and a full fine-tune whose head is saved as `score` where bert loads
    `classifier` (transformers #26160): each of those three is caught, saying how."""
    registry = Registry(tmp_path / "runs")
    source = multi_label_csv(tmp_path / "ml.csv")
    ml = finished_run(registry, tiny_run(registry, tiny_model_dir("bert"), "lora", source=source,
                                         label_separator="|", max_samples=None))  # fmt: skip
    assert (
        ml.summary.test.multi_label
        and (ml.dir / "thresholds.json").is_file()
        and (ml.dir / "calibration.json").is_file()
    )
    zipped = export.export_zip(registry, ml.id, tmp_path / "zips", check=False).path
    copies = {name: unzip(zipped, tmp_path / name) for name in ("as_made", "thresholds", "temperature")}
    saved = pd.read_parquet(ml.dir / "predictions.parquet").query("split == 'test'")
    gave_labels = any(len(p) for p in saved["predicted"])
    thresholds = json.loads((copies["thresholds"] / "thresholds.json").read_text())
    cut = 1.0 if gave_labels else 0.0  # the opposite of what the run decided: every row's label set changes
    thresholds.update(per_label={n: cut for n in thresholds["per_label"]}, global_threshold=cut)
    (copies["thresholds"] / "thresholds.json").write_text(json.dumps(thresholds))
    calibration = json.loads((copies["temperature"] / "calibration.json").read_text())
    calibration["temperature"] *= 3
    calibration["per_label"] = {n: t * 3 for n, t in (calibration.get("per_label") or {}).items()} or None
    (copies["temperature"] / "calibration.json").write_text(json.dumps(calibration))
    full = finished_run(registry, tiny_run(registry, tiny_model_dir("bert"), "full"))
    renamed = unzip(export.export_zip(registry, full.id, tmp_path / "zips", check=False).path, tmp_path / "renamed")
    break_head(renamed / "model", rename="score")
    targets = [ExportTarget(ml, folder, "run", name) for name, folder in copies.items()]
    targets.append(ExportTarget(full, renamed, "run", "zip"))
    as_made, moved_thresholds, moved_temperature, head = check_exports(targets)
    assert isinstance(as_made, ExportCheck) and as_made.max_calibrated_diff is not None
    assert as_made.max_calibrated_diff < FP32_TOLERANCE and as_made.rows == len(saved)
    assert isinstance(moved_thresholds, ExportCheckError) and "rows get another label" in str(moved_thresholds)
    assert "probabilities differ" not in str(moved_thresholds)  # the probabilities are the run's; the cut is not
    assert isinstance(moved_temperature, ExportCheckError)
    assert "calibrated probabilities differ by up to" in str(moved_temperature)
    assert "; probabilities differ" not in str(moved_temperature)  # raw ones agree: only the temperature moved
    assert isinstance(head, ExportCheckError) and "probabilities differ by up to" in str(head)
    assert np.isfinite(as_made.max_prob_diff)
