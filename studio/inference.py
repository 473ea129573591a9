"""Predict with a finished run: label and class probabilities for texts or a file, batched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.calibration import UNSURE, check_threshold, read_temperature, sigmoid_probs
from studio.config import RunConfig
from studio.errors import DataError, StudioError
from studio.registry import Registry

GPU_BATCH = 256
CPU_BATCH = 8
"""Texts per forward pass on a CPU. On 2 cores (2026-12-02, IMDb reviews at 128 tokens): MiniLM-L6 in torch scored
78 texts/s at 8 against 54 at 32 (a batch's activations stay in cache), bert-base 11.6 against 12.1; onnxruntime's
int8 graph 245 against 178 and 45 against 38 (benchmarks/results/onnx_speed)."""
GPU_CHUNK = 1024
"""Texts tokenized per call on a GPU; the next chunk is tokenized while the GPU scores this one."""
CPU_CHUNK = 8192
"""Texts tokenized per call on a CPU (bounds the token lists a large file holds at once)."""
GPU_PAD_MULTIPLE = 64
"""Batches on a GPU are padded to a multiple of this many tokens: at most max_length / 64 shapes per batch size,
each of which the attention kernels plan once (cuDNN's SDPA builds a plan per new shape)."""


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str
    """The predicted class; multi-label: the labels given, joined by ", " ("" when none reached its threshold)."""
    score: float
    """Probability of the predicted label; multi-label: how sure the answer is, the least probability among its
    decisions (p for a label given, 1 - p for one withheld)."""
    probs: dict[str, float]
    unsure: bool = False
    """The score is under the confidence threshold asked for (`min_confidence`)."""
    labels: tuple[str, ...] | None = None
    """Multi-label: every label whose probability reached its threshold; None for a single-label model."""
    thresholds: dict[str, float] | None = None
    """Multi-label: each label's threshold, on the scale of `probs` (raw or calibrated)."""

    @property
    def answer(self) -> str:
        """The label(s), or "unsure" under the threshold ("(unsure)" for a model with a label named "unsure")."""
        if not self.unsure:
            return self.label if self.labels is None or self.labels else "(none)"
        return f"({UNSURE})" if UNSURE in self.probs else UNSURE


def _autocast(cuda: bool) -> Any:
    """bf16 autocast on a GPU that has bf16 (as the Trainer's evaluation runs), else nothing."""
    import contextlib

    import torch

    if cuda and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Predictor:
    """A run's model in eval mode. Load once, then call `predict` as often as needed (thread-safe).

    Probabilities are calibrated: softmax(logits / temperature), the temperature the run fitted on its validation
    split (its calibration.json; None: a run without one, whose probabilities are the raw ones). A multi-label
    model (`task`) scores sigmoid(logit / T) per label (T one number or one per label) and gives every label whose
    probability reaches its threshold (`thresholds`, tuned on validation: thresholds.json; 0.5 without one).
    Thresholds are set on the calibrated scale; with `raw` they are moved to the raw one, so the labels given never
    change, only the probabilities shown."""

    def __init__(
        self, model: Any, tokenizer: Any, label_names: list[str], max_length: int, run_id: str = "",
        temperature: Any = None, task: str = "single_label", thresholds: Any = None,
    ):  # fmt: skip
        self.model, self.tokenizer = model, tokenizer
        self.label_names, self.max_length, self.run_id = label_names, max_length, run_id
        self.temperature, self.task = temperature, task
        self.thresholds = thresholds
        """Multi-label: `multilabel.Thresholds` (None: 0.5 for every label)."""

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"

    @classmethod
    def from_run(cls, registry: Registry, run_id: str) -> Predictor:
        from studio import multilabel
        from studio.models import load_for_inference, read_label_map, read_task

        record = registry.get(run_id)  # raises RunNotFoundError with a hint
        run_dir = registry.run_dir(run_id)
        if not (run_dir / "label_map.json").is_file():
            raise StudioError(f"run {run_id} has no saved model (status: {record.status}); pick a finished run")
        config = RunConfig.from_yaml(run_dir / "config.yaml")
        labels, task = read_label_map(run_dir), read_task(run_dir)
        temperature = read_temperature(run_dir, labels)  # bad files are refused before the model loads
        thresholds = multilabel.read(run_dir, labels) if task == "multi_label" else None
        model, tokenizer = load_for_inference(run_dir, config, labels)
        return cls(model, tokenizer, labels, config.data.max_length, run_id, temperature, task, thresholds)

    def decision_thresholds(self, raw: bool = False, override: float | None = None) -> Any:
        """Multi-label: each label's threshold (numpy, label order) on the scale of the probabilities returned:
        the tuned ones (or `override` for every label), moved to the raw scale under `raw`: p_cal >= t exactly
        when sigmoid(z) >= sigmoid(T logit(t))."""
        import numpy as np

        from studio import multilabel

        names = self.label_names
        t = np.full(len(names), override) if override is not None else (
            (self.thresholds or multilabel.Thresholds.default(names)).array(names))  # fmt: skip
        if not raw or self.temperature is None:
            return t
        with np.errstate(divide="ignore"):
            logit = np.log(t) - np.log1p(-t)
        return sigmoid_probs(logit * np.asarray(self.temperature))

    def predict(
        self, texts: list[str], batch_size: int | None = None, *, raw: bool = False,
        min_confidence: float | None = None, label_threshold: float | None = None,
    ) -> list[Prediction]:  # fmt: skip
        """Predictions in input order: calibrated probabilities (`raw`: the model's own softmax or sigmoids), each
        marked `unsure` when its score is under `min_confidence` (a threshold in [0, 1]). Multi-label:
        `label_threshold` replaces every label's tuned threshold (in [0, 1], on the calibrated scale).

        Texts are tokenized a chunk at a time (one tokenizer call per chunk: the Rust tokenizer spreads a call
        over the cores, and a call per batch took 3.7x as long on the H100's host), each chunk sorted by token
        count so each batch carries little padding, padded batch by batch (`_padded`), and scored without
        waiting for the GPU: the probabilities stay on the device until the last batch, one synchronisation
        rather than one per batch. On a GPU the next chunk is tokenized on a helper thread while the GPU scores
        this one (the tokenizer releases the GIL), GPU_CHUNK texts at a time; tokenizing and the forward passes
        took about as long each for bert-base on the H100, so overlapping them is most of the throughput. The
        passes run under bf16 autocast where the GPU has bf16 (as the Trainer's evaluation does), GPU_BATCH
        texts at a time, padded to a multiple of GPU_PAD_MULTIPLE tokens (few shapes for the attention kernels
        to plan). On a CPU the model and the tokenizer would share the same cores, so a chunk (CPU_CHUNK) is
        tokenized only after the last one is scored, and scored in fp32 (bf16 is emulated on most CPUs),
        CPU_BATCH at a time, which keeps one batch's activations small.
        """
        threshold = check_threshold(min_confidence) if min_confidence is not None else None
        if label_threshold is not None:
            from studio.multilabel import check_threshold as check_label_threshold

            label_threshold = check_label_threshold(label_threshold)
        if isinstance(texts, str):
            texts = [texts]
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        order, probs = self._score(texts, batch_size, None if raw else self.temperature)
        by_row: list[Any] = [None] * len(texts)
        for i, p in zip(order, probs, strict=True):
            by_row[i] = p
        if self.multi_label:
            return self._label_sets(texts, by_row, self.decision_thresholds(raw, label_threshold), threshold)
        out = []
        for text, p in zip(texts, by_row, strict=True):
            best = max(range(len(p)), key=p.__getitem__)
            unsure = threshold is not None and p[best] < threshold
            probs_of = dict(zip(self.label_names, p, strict=True))
            out.append(Prediction(text, self.label_names[best], p[best], probs_of, unsure))
        return out

    def _label_sets(self, texts: list[str], rows: list[Any], cut: Any, min_confidence: float | None) -> list:
        """Multi-label predictions: the labels at or above their threshold, scored by `decision_confidence`."""
        import numpy as np

        from studio.calibration import decision_confidence

        p = np.asarray(rows, dtype=np.float64)
        decided = p >= cut
        confidence = decision_confidence(p, decided)
        cuts = {n: float(c) for n, c in zip(self.label_names, cut, strict=True)}
        out = []
        for text, row, given, score in zip(texts, rows, decided, confidence, strict=True):
            labels = tuple(sorted((n for n, g in zip(self.label_names, given, strict=True) if g),
                                  key=lambda n: -row[self.label_names.index(n)]))  # fmt: skip
            unsure = min_confidence is not None and score < min_confidence
            probs_of = dict(zip(self.label_names, row, strict=True))
            out.append(Prediction(text, ", ".join(labels), float(score), probs_of, unsure, labels, cuts))
        return out

    def _score(
        self, texts: list[str], batch_size: int | None, temperature: float | None = None
    ) -> tuple[list[int], list[list[float]]]:
        """(row order, class probabilities in that order) of every text, chunk by chunk (see `predict`)."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        device = next(self.model.parameters()).device
        cuda = device.type == "cuda"
        batch_size = batch_size or (GPU_BATCH if cuda else CPU_BATCH)
        chunk = max(GPU_CHUNK, batch_size) if cuda else CPU_CHUNK

        def tokenize(start: int) -> Any:
            return self.tokenizer(texts[start : start + chunk], truncation=True, max_length=self.max_length)

        order: list[int] = []
        scored: list[Any] = []
        with ThreadPoolExecutor(1) as helper, torch.inference_mode(), _autocast(cuda):
            pending = helper.submit(tokenize, 0)
            for start in range(0, len(texts), chunk):
                encoded = pending.result()
                more = start + chunk < len(texts)
                if more and cuda:  # tokenize the next chunk while the GPU scores this one
                    pending = helper.submit(tokenize, start + chunk)
                order.extend(start + i for i in self._score_chunk(encoded, batch_size, device, scored, temperature))
                if more and not cuda:  # after this chunk: on a CPU both would share the cores
                    pending = helper.submit(tokenize, start + chunk)
        return order, torch.cat(scored).cpu().tolist()

    def _score_chunk(
        self, encoded: Any, batch_size: int, device: Any, scored: list[Any], temperature: float | None = None
    ) -> list[int]:
        """Score one tokenized chunk, shortest texts first (little padding per batch); appends each batch's
        probabilities (left on the device; softmax(logits / temperature) when one is given) to `scored` and
        returns the chunk's rows in that order."""
        import torch

        cuda = device.type == "cuda"
        lengths = [len(ids) for ids in encoded["input_ids"]]
        ranked = sorted(range(len(lengths)), key=lengths.__getitem__)
        for first in range(0, len(ranked), batch_size):
            rows = ranked[first : first + batch_size]
            batch = self._padded(encoded, rows, GPU_PAD_MULTIPLE if cuda else 1, pin=cuda)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            logits = self.model(**batch).logits.float()
            if temperature is not None:
                logits = logits / torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
            scored.append(torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1))
        return ranked

    def _padded(self, encoded: Any, idx: list[int], multiple: int, pin: bool = False) -> dict[str, Any]:
        """Rows `idx` of the tokenizer's unpadded output as padded tensors (in pinned memory with `pin`: the
        copy to the GPU then need not wait).

        By hand because `tokenizer.pad` converts its Python lists feature by feature: 0.78 s against 0.03 s
        for 4,000 reviews at 256 tokens (2 cores). Pads as the tokenizer would: its pad id, mask 0, its pad
        token type, on its padding side.
        """
        import numpy as np
        import torch

        ids = encoded["input_ids"]
        width = max(len(ids[i]) for i in idx)
        width = -(-width // multiple) * multiple
        fill = {"input_ids": self.tokenizer.pad_token_id or 0, "token_type_ids": self.tokenizer.pad_token_type_id}
        left = self.tokenizer.padding_side == "left"
        out = {}
        for key in encoded:
            rows = encoded[key]
            array = np.full((len(idx), width), fill.get(key, 0), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(rows[i])
                if left:
                    array[r, width - n :] = rows[i]
                else:
                    array[r, :n] = rows[i]
            tensor = torch.from_numpy(array)
            out[key] = tensor.pin_memory() if pin else tensor
        return out

    def predict_file(
        self, path: str | Path, text_column: str | None = None, batch_size: int | None = None, *, raw: bool = False,
        min_confidence: float | None = None, label_threshold: float | None = None,
    ) -> Any:  # fmt: skip
        """A table (pandas) of the file's rows plus `predicted_label`, `score` and one `prob_<label>` per class
        (calibrated unless `raw`). With `min_confidence`, `predicted_label` is "unsure" under the threshold and
        `top_label` keeps the most probable label. Multi-label: `predicted_labels` (the set, joined by ", ";
        "unsure" under `min_confidence`) and `label_count` instead of `predicted_label`, `top_label` the set.
        Rows without a text (empty, missing) are not scored: their prediction columns are empty and a `note`
        column says why (`score_file`).

        The file is read by the data layer, so it takes the same formats and gives the same errors.
        """
        if min_confidence is not None:
            check_threshold(min_confidence)  # before the file is read
        if label_threshold is not None:
            from studio.multilabel import check_threshold as check_label_threshold

            check_label_threshold(label_threshold)
        texts = read_texts(path, text_column)
        return self.score_file(texts, batch_size, raw=raw, min_confidence=min_confidence,
                               label_threshold=label_threshold).table  # fmt: skip

    def score_file(
        self, source: TextFile, batch_size: int | None = None, *, raw: bool = False,
        min_confidence: float | None = None, label_threshold: float | None = None,
    ) -> FilePredictions:  # fmt: skip
        """`predict_file` on a file already read (`read_texts`: before the model loads). Only the rows with a text
        are scored; the others keep empty prediction columns and a note (column `note`, or `prediction_note` when
        the file has a `note` column of its own), added only when some row has no text."""
        frame, at = source.frame.copy(deep=False), source.rows  # the file's table stays as read
        preds = self.predict(source.texts, batch_size=batch_size, raw=raw, min_confidence=min_confidence,
                             label_threshold=label_threshold)  # fmt: skip

        def spread(values: list[Any], empty: Any) -> list[Any]:  # one value per row of the file, `empty` if unscored
            out = [empty] * len(frame)
            for i, v in zip(at, values, strict=True):
                out[i] = v
            return out

        if self.multi_label:  # the label set, joined by ", " (empty when no label reached its threshold)
            import pandas as pd

            frame["predicted_labels"] = spread([p.answer if p.unsure else p.label for p in preds], "")
            frame["label_count"] = pd.array(spread([len(p.labels or ()) for p in preds], None), dtype="Int64")
        else:
            frame["predicted_label"] = spread([p.answer for p in preds], "")
        if min_confidence is not None:
            frame["top_label"] = spread([p.label for p in preds], "")
        frame["score"] = spread([round(p.score, 6) for p in preds], float("nan"))
        for name in self.label_names:
            frame[f"prob_{name}"] = spread([round(p.probs[name], 6) for p in preds], float("nan"))
        if source.no_text:
            note = "note" if "note" not in frame.columns else "prediction_note"
            frame[note] = spread([""] * len(at), f"no text in column '{source.column}'")
        return FilePredictions(frame, source.column, len(at), source.no_text)


@dataclass
class TextFile:
    """A file of texts to predict, read (`read_texts`) before any model loads."""

    path: Path
    frame: Any
    """pandas DataFrame: every row and column of the file."""
    column: str
    """The column holding the texts."""
    rows: list[int]
    """Positions of the rows that have a text, in file order."""
    texts: list[str]
    """Their texts."""

    @property
    def no_text(self) -> int:
        """Rows whose text is missing or empty: marked in the output, not predicted."""
        return len(self.frame) - len(self.rows)


@dataclass
class FilePredictions:
    """A scored file: the table to write, and what was and was not predicted."""

    table: Any
    """pandas DataFrame: the file's rows and columns plus the predictions (see `Predictor.predict_file`)."""
    text_column: str
    predicted: int
    no_text: int
    """Rows without a text: their prediction columns are empty and their note says so."""


def read_texts(path: str | Path, text_column: str | None = None) -> TextFile:
    """The texts of a file to predict, found as `predict_file` finds them: `text_column`, else the first of the
    usual text column names, else the only column.

    Raises:
        DataError: no such file, the file cannot be read, no such column, or no row has a text.
    """
    from studio.config import DataConfig
    from studio.data import TEXT_COLUMNS, load_raw, missing

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    # rows lacking the text (a JSON line without the key) come as None, to be marked rather than refused
    frame = next(iter(load_raw(DataConfig(source=str(path), text_column=text_column), check_columns=False).values()))
    frame = frame.to_pandas()
    columns = list(map(str, frame.columns))
    column = text_column or next((c for c in TEXT_COLUMNS if c in columns), columns[0] if len(columns) == 1 else "text")
    if column not in columns:
        raise DataError(f"text column '{column}' not found in {path.name}; it has columns: {', '.join(columns)}")
    values = frame[column].tolist()
    rows = [i for i, v in enumerate(values) if not missing(v)]
    if not rows:
        raise DataError(f"{path.name} has no text in column '{column}' on any of its {len(values)} rows; name the "
                        "column that holds the texts (--text-column)")  # fmt: skip
    return TextFile(path, frame, column, rows, [str(values[i]) for i in rows])


# ---- where predictions go ------------------------------------------------------------------------------
PREDICTIONS_SUFFIX = ".predictions.csv"


def output_path(file: str | Path, out: str | Path | None = None) -> Path:
    """Where the predictions of `file` go, checked before any work: `out` (the CLI's --out), or beside the file
    as <file without its suffix>.predictions.csv. The folder must exist and take a new file, the path must not be
    a folder or the input itself, and an existing file there must be writable (it is replaced).

    Raises:
        DataError: `file` does not exist. StudioError: the output path cannot be written, saying what to do.
    """
    file = Path(file)
    if not file.is_file():
        raise DataError(f"file not found: {file}")
    default = Path(str(file.with_suffix("")) + PREDICTIONS_SUFFIX)
    path = Path(out).expanduser() if out is not None else default
    what = "--out" if out is not None else f"the predictions file {path} (beside the input)"
    fix = "pick another with --out FILE" if out is None else "pick another file"
    if path.is_dir() or (out is not None and str(out).endswith(("/", os.sep))):
        raise StudioError(f"--out: {path} is a folder; name a file in it, e.g. --out {path / default.name}")
    if path.exists() and path.resolve() == file.resolve():
        raise StudioError(f"--out: {path} is the input file; write the predictions to another file")
    folder = path.parent
    if not folder.exists():
        raise StudioError(f"{what}: folder {folder} does not exist; create it (mkdir -p {folder}) or {fix}")
    if not folder.is_dir():
        raise StudioError(f"{what}: {folder} is a file, not a folder; {fix}")
    reason = cannot_write_in(folder)
    if reason:
        raise StudioError(f"{what}: cannot write in folder {folder} ({reason}); {fix} in a folder you can write")
    if path.exists() and not os.access(path, os.W_OK):
        raise StudioError(f"{what}: {path} exists and is read-only; {fix}, or make it writable")
    return path


def cannot_write_in(folder: Path) -> str | None:
    """Why a new file cannot be created in `folder` (None: it can): a file is made there and removed."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".studio-write-test-"):
            return None
    except OSError as e:
        return e.strerror or str(e)


@dataclass(frozen=True)
class SavedTable:
    """Where a table was written: the path asked for, or a fallback when that failed (`failed`: why)."""

    path: Path
    failed: str | None = None


def save_table(frame: Any, path: Path, fallbacks: tuple[Path, ...] = ()) -> SavedTable:
    """Write `frame` to `path` in the format its suffix names (`write_frame`), through a temporary file in its
    folder renamed into place (never a half file). Should that fail (a full disk, permissions changed since
    `output_path` checked), the work is not lost: it goes to a new file in the first of `fallbacks` (folders)
    that takes it.

    Raises:
        StudioError: nowhere could be written, naming the path and why.
    """
    import tempfile

    try:
        _write_atomically(frame, path)
        return SavedTable(path)
    except OSError as e:
        reason = e.strerror or str(e)
    for folder in fallbacks:
        try:
            handle, name = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=path.suffix or ".csv", dir=folder)
            os.close(handle)
            try:
                write_frame(frame, Path(name))
            except OSError:
                Path(name).unlink(missing_ok=True)
                raise
            return SavedTable(Path(name), reason)
        except OSError:
            continue
    tried = ", ".join(str(f) for f in fallbacks) or "no other folder"
    raise StudioError(f"could not write {path} ({reason}), nor a file in {tried}; free some space or pick "
                      "another --out")  # fmt: skip


def write_frame(frame: Any, path: Path) -> None:
    """A table in the format `path`'s suffix names: .parquet, .jsonl, .json (records), .tsv; else CSV."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(path, orient="records", lines=suffix == ".jsonl", force_ascii=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")


def _write_atomically(frame: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")  # the suffix names the format
    try:
        write_frame(frame, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class PredictorCache:
    """The last few runs' predictors, loaded once each (loading a model takes seconds; predicting, ms).

    Thread-safe: two pages asking for the same run wait for one load.
    """

    def __init__(self, registry: Registry, size: int = 3):
        import threading

        self.registry, self.size = registry, size
        self._items: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str | None) -> Predictor:
        if not run_id:
            raise StudioError("pick a run first: choose a completed run in the list")
        with self._lock:
            if run_id in self._items:
                self._items[run_id] = self._items.pop(run_id)  # most recently used last
                return self._items[run_id]
            predictor = Predictor.from_run(self.registry, run_id)
            self._items[run_id] = predictor
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))
            return predictor

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._items.pop(run_id, None)


def mistakes(registry: Registry, run_id: str, split: str = "test", limit: int = 200) -> Any:
    """The `split` texts the run got wrong, most confident mistakes first (pandas DataFrame).

    Columns: text, label (true), predicted, confidence (probability of the predicted label), p_true.
    Read from the run's saved predictions, so no model is loaded.
    """
    import numpy as np
    import pandas as pd

    from studio.models import read_label_map

    path = registry.run_dir(run_id) / "predictions.parquet"
    if not path.is_file():
        status = registry.get(run_id).status
        raise StudioError(f"run {run_id} saved no predictions (status: {status}); pick a finished run")
    names = read_label_map(registry.run_dir(run_id))
    frame = pd.read_parquet(path)
    if len(frame) and not np.isscalar(frame["label"].iloc[0]):
        return _label_set_mistakes(frame[frame["split"] == split], names, limit)
    frame = frame[(frame["split"] == split) & (frame["label"] != frame["predicted"])]
    probs = np.stack(frame["probs"].to_numpy()) if len(frame) else np.zeros((0, len(names)))
    rows = np.arange(len(frame))
    out = pd.DataFrame({
        "text": frame["text"].to_numpy(),
        "label": [names[i] for i in frame["label"]],
        "predicted": [names[i] for i in frame["predicted"]],
        "confidence": probs[rows, frame["predicted"].to_numpy()].round(4),
        "p_true": probs[rows, frame["label"].to_numpy()].round(4),
    })  # fmt: skip
    return out.sort_values("confidence", ascending=False, kind="stable").head(limit).reset_index(drop=True)


def _label_set_mistakes(frame: Any, names: list[str], limit: int) -> Any:
    """Multi-label rows whose predicted set differs from the true one: label (true set), predicted, missing (true
    labels not given), extra (labels given wrongly), confidence (the surest wrong decision's probability: p of an
    extra label, 1 - p of a missing one; calibrated where the run was). Surest mistakes first."""
    import pandas as pd

    column = "probs_calibrated" if "probs_calibrated" in frame else "probs"
    rows = []
    for text, true, given, probs in zip(frame["text"], frame["label"], frame["predicted"], frame[column], strict=True):
        true, given = {int(i) for i in true}, {int(i) for i in given}
        if true == given:
            continue
        missing, extra = sorted(true - given), sorted(given - true)
        sure = [float(probs[i]) for i in extra] + [1 - float(probs[i]) for i in missing]
        rows.append({"text": text, "label": ", ".join(names[i] for i in sorted(true)),
                     "predicted": ", ".join(names[i] for i in sorted(given)) or "(none)",
                     "missing": ", ".join(names[i] for i in missing), "extra": ", ".join(names[i] for i in extra),
                     "confidence": round(max(sure), 4)})  # fmt: skip
    out = pd.DataFrame(rows, columns=["text", "label", "predicted", "missing", "extra", "confidence"])
    return out.sort_values("confidence", ascending=False, kind="stable").head(limit).reset_index(drop=True)
