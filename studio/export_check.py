"""Check an export before it is called finished: a fresh process loads it as a user would and must predict what
the run predicted.

`check_exports` writes a job file and runs `studio/export_check_worker.py` with ``sys.executable`` in a new process
(one process for any number of exports), where the studio cannot be imported (`_run_worker`; the worker also refuses
to report if any ``studio`` module got loaded). The worker imports no studio code: it loads each export with plain
transformers (and peft for an adapter) exactly as the model card's "How to use" shows, scores the run's saved test
texts (``predictions.parquet``, up to `CHECK_ROWS` of them) in fp32, applies calibration.json and thresholds.json as
the card's "Calibration" section says, and writes its logits, probabilities and labels. This side compares them with
the run's own saved predictions:

- the labels: the same on every row (a multi-label run: the same label set). A row may differ only where the
  run's own decision was a tie within the tolerance (its two most probable classes closer than twice the
  tolerance, or a label's calibrated probability within the tolerance of its threshold): such rows are counted and
  reported, never hidden;
- the probabilities (raw, and calibrated where the run has a temperature): within `tolerance_for` the run:
  `FP32_TOLERANCE` when both sides computed in fp32; `QUANTIZED_TOLERANCE` when the run's model had a 4/8-bit
  base (QLoRA) and the export is used at full precision (the card's adapter snippet and a merge both load the
  base unquantized); `HALF_TOLERANCE` when the run scored its test split under fp16/bf16 autocast on a GPU;
- the label names the loaded model carries (its config's id2label) equal the run's;
- a merge's classification head, weight by weight, equals the head the run trained (`HEAD_TOLERANCE`): sharper
  than the probabilities where the tolerance is loose (a QLoRA merge).

The classic silent failure this catches: a classification head that was not saved, or was saved under a name the
loader does not map (peft's ``modules_to_save``, ``score`` vs ``classifier``), loads as a fresh random head with
no error; its probabilities then differ from the run's by far more than any tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from studio.errors import StudioError
from studio.model_card import FinishedRun

WORKER = Path(__file__).with_name("export_check_worker.py")
CHECK_ROWS = 2000
"""Test rows a check scores at most (the first ones): enough to catch a lost head or a drifting merge, bounded so a
25,000-row test split does not make an export take minutes on a CPU."""
FP32_TOLERANCE = 1e-4
"""Largest probability difference allowed when the run and the check both computed in fp32. Measured: at most
5.5e-8 over every tiny family x method (benchmarks/results/export_check/tiny.csv); batching and padding differ."""
QUANTIZED_TOLERANCE = 0.15
"""Allowed for a run trained on a 4/8-bit base (QLoRA) whose export is used with the base at full precision: the
difference is the base's quantization error, a property of QLoRA, not of the export. NF4 rounds each weight to one
of 16 levels per 64-weight block. Measured on the tiny models (one step, 6 test rows;
benchmarks/results/export_check/tiny.csv): up to 1.9e-4 for the encoders; for the decoders (hidden size 32: few
weights per block, coarsely quantized) up to 0.047 raw and 0.108 calibrated (gemma3: its temperature < 1 sharpens
the logits, and their error with them). On the real MiniLM-L6 (QLoRA on a 4-bit base, 60 steps, bf16, an H200;
benchmarks/results/export_check/real_cuda_qlora.csv): 0.0056 raw and 0.109 calibrated, 5 of 100 labels differing,
each a near tie of the run's own. 0.15 covers both with a margin. On a trained real model a lost head moves
probabilities by ~0.5; on these tiny models a random head differs by only 3e-4 to 0.27, so a merge's head is also
compared weight by weight (`HEAD_TOLERANCE`) and peft itself refuses an adapter whose saved head its model lacks."""
HALF_TOLERANCE = 0.02
"""Allowed when the run scored its test split under bf16/fp16 autocast on a GPU and the check scores in fp32:
bf16 keeps 8 bits of mantissa (~0.4% per rounding). Measured on the real MiniLM-L6 on an H200
(benchmarks/export_check_gpu.sh, benchmarks/results/export_check/real_cuda.csv): at most 0.00024 raw and 0.0047
calibrated over full fine-tuning, LoRA and IA3, zip and merge; a copy with its head lost 0.46-0.58."""
TIMEOUT_S = 1800
"""The checker process is stopped after this long (a hung load must not hang the export)."""


@dataclass(frozen=True)
class ExportTarget:
    """One export to check: a folder laid out as a user will have it."""

    run: FinishedRun
    folder: Path
    layout: Literal["run", "flat"]
    """run: the zip's layout (model/ or adapter/, tokenizer/); flat: the Hub's and a merge's (all at the root)."""
    what: str
    """What the export is, in the user's words: 'zip', 'merged model', 'Hub upload'."""
    merged: bool = False


@dataclass(frozen=True)
class ExportCheck:
    """What a passed check found (written into the model card, said by the CLI and the UI)."""

    run_id: str
    what: str
    rows: int
    max_prob_diff: float
    """Largest |p_export - p_run| over every row and label (raw probabilities)."""
    max_calibrated_diff: float | None
    """The same for the calibrated probabilities (None: the run has no temperature)."""
    tolerance: float
    tolerance_reason: str
    near_ties: int
    """Rows whose label differs where the run's own decision was within the tolerance of a tie."""
    loaded_with: str
    seconds: float

    @property
    def largest(self) -> float:
        return max(self.max_prob_diff, self.max_calibrated_diff or 0.0)

    def line(self) -> str:
        """One line for the CLI and the UI."""
        ties = f" ({self.near_ties} near-tie rows differ within the tolerance)" if self.near_ties else ""
        return (f"checked: a fresh process loaded the {self.what} with {self.loaded_with} and predicted the run's "
                f"labels on all {self.rows} test rows{ties}; probabilities within {self.largest:.1e} (tolerance "
                f"{self.tolerance:g}, {self.tolerance_reason})")  # fmt: skip

    def card_section(self) -> list[str]:
        """The model card's "Export check" section: how this export was checked and what was found."""
        calibrated = ("" if self.max_calibrated_diff is None else
                      f"; calibrated probabilities (calibration.json applied as *Calibration* says) within "
                      f"{self.max_calibrated_diff:.1e}")  # fmt: skip
        ties = (f" except {self.near_ties} rows where the run's own decision was within the tolerance of a tie"
                if self.near_ties else "")  # fmt: skip
        return [
            f"Before this {self.what} was called finished, a fresh Python process (no Fine-Tune Studio code) loaded "
            f"it with plain {self.loaded_with} as *How to use* shows, scored the run's first {self.rows:,} test "
            "texts in fp32, and its predictions were compared with the run's own:",
            "",
            f"- labels: the same on every row{ties}",
            f"- probabilities: the largest difference {self.max_prob_diff:.1e}{calibrated}",
            f"- tolerance {self.tolerance:g} ({self.tolerance_reason})",
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportCheck:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


UNCHECKED_SECTION = ["This export was not checked: it was made with `--no-check` (or with the check unticked), so no "
                     "fresh process compared its predictions with the run's."]  # fmt: skip


class ExportCheckError(StudioError):
    """An export that does not predict what its run predicted (or does not load): it is not finished."""


def tolerance_for(run: FinishedRun) -> tuple[float, str]:
    """(largest probability difference allowed, why) for an export of `run` checked in fp32."""
    method, train = run.config.method, run.config.train
    if method.quantized:
        return QUANTIZED_TOLERANCE, f"the run's base was {method.bits}-bit; the export loads it in full precision"
    device = run.summary.reproducibility.device or {}
    if device.get("kind") == "cuda" and train.precision != "fp32":
        return HALF_TOLERANCE, "the run scored its test split under 16-bit autocast; the check scores in fp32"
    return FP32_TOLERANCE, "fp32"


def check_exports(targets: list[ExportTarget], rows: int = CHECK_ROWS) -> list[ExportCheck | ExportCheckError]:
    """Check every target in one fresh process; a result per target, in order (an error for one that failed)."""
    if not targets:
        return []
    with tempfile.TemporaryDirectory(prefix="studio-export-check-") as work:
        jobs = [_job(t, Path(work) / f"export-{i}.npz", rows) for i, t in enumerate(targets)]
        job_file = Path(work) / "job.json"
        job_file.write_text(json.dumps({"exports": jobs}), encoding="utf-8")
        started = time.perf_counter()
        _run_worker(job_file)
        seconds = (time.perf_counter() - started) / len(targets)
        return [_compare(t, Path(j["out"]), rows, seconds) for t, j in zip(targets, jobs, strict=True)]


def verify_export(target: ExportTarget, rows: int = CHECK_ROWS) -> ExportCheck:
    """Check one export; raises `ExportCheckError` (which rows and labels differ, what to do) when it fails."""
    (result,) = check_exports([target], rows)
    if isinstance(result, ExportCheckError):
        raise result
    return result


def require_test_predictions(run: FinishedRun) -> None:
    """Refuse (before any work) a run that saved no test predictions to check an export against."""
    import pandas as pd

    path = run.dir / "predictions.parquet"
    if path.is_file() and (pd.read_parquet(path, columns=["split"])["split"] == "test").any():
        return
    raise StudioError(f"run {run.id} saved no test predictions (predictions.parquet) to check the export against; "
                      "export it unchecked from the command line (python -m studio export|merge|push ... "
                      "--no-check), or train it again")  # fmt: skip


def _job(target: ExportTarget, out: Path, rows: int) -> dict[str, Any]:
    base = None
    if target.run.kind == "adapter" and not target.merged:
        from studio.models import resolve_source

        base = resolve_source(target.run.config.model)  # the local folder or Hub id the run trained from
    return {"folder": str(target.folder), "layout": target.layout, "base_model": base,
            "max_length": target.run.config.data.max_length, "out": str(out),
            "texts": str(target.run.dir / "predictions.parquet"), "rows": rows,
            "head_keys": sorted(_trained_head(target.run)) if target.merged else []}  # fmt: skip


def _trained_head(run: FinishedRun) -> dict[str, Any]:
    """The weights an adapter run saved whole beside its adapters (the classification head), by their name in the
    plain model (``classifier.weight``, ``score.weight``, ...)."""
    from safetensors.numpy import load_file

    from studio.adapters import is_adapter_weight

    saved = load_file(str(run.dir / "adapter" / "adapter_model.safetensors"))
    return {k.removeprefix("base_model.model."): v for k, v in saved.items() if not is_adapter_weight(k)}


def _run_worker(job_file: Path) -> None:
    """The worker in a new process that cannot import the studio: run by path from a temporary folder (runpy adds
    no folder to sys.path), with any PYTHONPATH entry that holds the studio left out; other entries (packages
    installed there) stay, as a user's environment keeps them."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    paths = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and not (Path(p) / "studio").is_dir()]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    code = (f"import runpy, sys; sys.argv = [{str(WORKER)!r}, {str(job_file)!r}]; "
            f"runpy.run_path({str(WORKER)!r}, run_name='__main__')")  # fmt: skip
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT_S, cwd=job_file.parent, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ExportCheckError(f"the export check did not finish within {TIMEOUT_S} s; the export is not finished: "
                               "free the machine and export again") from None  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise ExportCheckError(f"the export check's process failed ({tail}); the export is not finished: fix the "
                               "environment (python -c 'import transformers, peft') and export again")  # fmt: skip


def _compare(target: ExportTarget, out: Path, rows: int, seconds: float) -> ExportCheck | ExportCheckError:
    """The worker's output for `target` against the run's saved test predictions."""
    import numpy as np

    run = target.run
    error = out.with_name(out.name + ".error")
    if error.is_file():
        return ExportCheckError(f"the {target.what} of run {run.id} does not load with plain transformers: "
                                f"{error.read_text(encoding='utf-8')}; it is not finished. {_FIX}")  # fmt: skip
    if not out.is_file():
        return ExportCheckError(f"the export check wrote no predictions for the {target.what} of run {run.id}; "
                                f"it is not finished. {_FIX}")  # fmt: skip
    got = dict(np.load(out))
    want = _run_predictions(run, rows)
    tolerance, reason = tolerance_for(run)
    problems = _differences(run, want, got, tolerance, target.merged)
    if problems:
        return ExportCheckError(f"the {target.what} of run {run.id} does not predict what the run predicted on its "
                                f"{len(want['probs'])} test rows: {'; '.join(problems)}. It is not finished. "
                                f"{_FIX}")  # fmt: skip
    raw = float(np.abs(got["probs"] - want["probs"]).max(initial=0.0))
    calibrated = None
    if "probs_calibrated" in want:
        calibrated = float(np.abs(got["probs_calibrated"] - want["probs_calibrated"]).max(initial=0.0))
    ties = int((~_same_labels(run, want, got)).sum())
    loaded = "transformers + peft" if run.kind == "adapter" and not target.merged else "transformers"
    return ExportCheck(run.id, target.what, len(want["probs"]), raw, calibrated, tolerance, reason, ties, loaded,
                       round(seconds, 2))  # fmt: skip


_FIX = ("Likely the classification head was not saved or did not load (compare the weights' names with the "
        "model's); export again, and if it fails again report it with the run id")  # fmt: skip


def _run_predictions(run: FinishedRun, rows: int) -> dict[str, Any]:
    """The run's own test predictions: probs, probs_calibrated (if calibrated), predicted (index or 0/1 matrix)."""
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(run.dir / "predictions.parquet")
    frame = frame[frame["split"] == "test"].head(rows)
    out: dict[str, Any] = {"probs": np.stack(frame["probs"].to_numpy()).astype(np.float64)}
    if "probs_calibrated" in frame:
        out["probs_calibrated"] = np.stack(frame["probs_calibrated"].to_numpy()).astype(np.float64)
    predicted = frame["predicted"].to_numpy()
    if len(frame) and not np.isscalar(predicted[0]):  # multi-label: lists of label ids
        matrix = np.zeros((len(frame), len(run.labels)), dtype=np.int8)
        for i, ids in enumerate(predicted):
            matrix[i, np.asarray(ids, dtype=int)] = 1
        out["predicted"] = matrix
    else:
        out["predicted"] = predicted.astype(int)
    return out


def _same_labels(run: FinishedRun, want: dict[str, Any], got: dict[str, Any]) -> Any:
    """Per row: True where the export's label (set) equals the run's."""
    import numpy as np

    a, b = np.asarray(want["predicted"]), np.asarray(got["predicted"])
    return (a == b).all(axis=1) if a.ndim == 2 else a == b


def _differences(
    run: FinishedRun, want: dict[str, Any], got: dict[str, Any], tolerance: float, merged: bool
) -> list[str]:
    """What makes the export differ from the run, in words (empty: it passes)."""
    import numpy as np

    names = run.labels
    loaded_names = json.loads(str(got["id2label"]))
    if loaded_names != names:
        return [f"its labels are {loaded_names}, the run's {names}"]
    if got["probs"].shape != want["probs"].shape:
        return [f"it scored {got['probs'].shape} probabilities, the run {want['probs'].shape}"]
    problems = _head_differences(run, got) if merged else []
    for column in ("probs", "probs_calibrated"):
        if column not in want:
            continue
        gap = np.abs(got.get(column, np.full_like(want[column], np.nan)) - want[column])
        gap = np.where(np.isnan(gap), np.inf, gap)
        bad = np.argwhere(gap > tolerance)
        if len(bad):
            what = "calibrated probabilities" if column == "probs_calibrated" else "probabilities"
            worst = ", ".join(f"row {r} '{names[c]}' {want[column][r, c]:.4f} -> {got.get(column)[r, c]:.4f}"
                              for r, c in bad[np.argsort(-gap[tuple(bad.T)])][:3])  # fmt: skip
            labels = sorted({names[c] for _, c in bad})
            rows = len(set(bad[:, 0]))
            problems.append(f"{what} differ by up to {gap.max():.2g} (tolerance {tolerance:g}) on {rows} rows, "
                            f"labels {', '.join(labels)} (worst: {worst})")  # fmt: skip
    differ = np.flatnonzero(~_same_labels(run, want, got) & ~_near_tie(run, want, tolerance))
    if len(differ):
        shown = ", ".join(str(r) for r in differ[:10]) + (", ..." if len(differ) > 10 else "")
        problems.append(f"{len(differ)} rows get another label (rows {shown})")
    return problems


HEAD_TOLERANCE = 1e-2
"""Relative difference allowed between a merge's head and the head the run trained: the head is never quantized,
but a merge on a GPU is saved in the compute dtype (bf16: ~0.4% per weight). A lost head is a random one: ~100%."""


def _head_differences(run: FinishedRun, got: dict[str, Any]) -> list[str]:
    """A merge: its classification head must be the one the run trained (exact but for the merge's dtype)."""
    import numpy as np

    wanted = [k.removeprefix("head::") for k in got if k.startswith("head::")]
    trained = _trained_head(run)
    missing = sorted(set(trained) - set(wanted))
    if missing:
        return [f"its classification head lacks {', '.join(missing)} (the run trained and saved them)"]
    worst = {k: float(np.abs(got[f"head::{k}"] - trained[k]).max() / (np.abs(trained[k]).max() or 1.0))
             for k in trained}  # fmt: skip
    moved = {k: v for k, v in worst.items() if v > HEAD_TOLERANCE}
    if moved:
        return [f"its classification head is not the one the run trained ({', '.join(sorted(moved))} differ by up "
                f"to {max(moved.values()):.0%} of their largest weight)"]  # fmt: skip
    return []


def _near_tie(run: FinishedRun, want: dict[str, Any], tolerance: float) -> Any:
    """Per row: True where the run's own decision was within `tolerance` of going the other way."""
    import numpy as np

    if np.asarray(want["predicted"]).ndim == 2:  # multi-label: some label's probability at its threshold
        from studio.multilabel import Thresholds
        from studio.multilabel import read as read_thresholds

        p = want.get("probs_calibrated", want["probs"])
        thresholds = (read_thresholds(run.dir, run.labels) or Thresholds.default(run.labels)).array(run.labels)
        return (np.abs(p - thresholds) <= tolerance).any(axis=1)
    top2 = np.sort(want["probs"], axis=1)[:, -2:] if want["probs"].shape[1] > 1 else want["probs"]
    return (top2[:, -1] - top2[:, 0]) <= 2 * tolerance
