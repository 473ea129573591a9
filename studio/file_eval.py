"""A run's model evaluated on any labelled file: `python -m studio evaluate RUN_ID --file F` (the Runs tab too).

The file is read by the data layer (every format training reads: CSV/TSV/JSON Lines/JSON/Parquet, gzipped
text, a folder of split files pooled), its text and label columns found as training finds them (or named),
and its labels matched to the model's by name, or by id when the file holds the integers 0..k-1 of a model
whose names are not integers. A label the model does not know is refused with the list of those it knows, and
nothing is written; so is a file with no usable rows. Rows with an empty text or no label are left out and
counted.

The result is a named evaluation in the run folder, ``evaluations/<name>.json`` (a `FileEvaluation`: the
file, columns, rows, and `SplitMetrics` as the run's own test split has them: accuracy, macro/weighted F1,
confusion matrix, per-class precision/recall/F1/support) beside ``evaluations/<name>.predictions.parquet``
(each row's text, label, prediction and probabilities). The run's own test results (eval.json) are never
touched, and a name already taken gets a suffix (-2, -3, ...) rather than overwriting it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import DataError, StudioError
from studio.results import SplitMetrics

EVALUATIONS_DIR = "evaluations"
"""The run folder's subfolder of named evaluations."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


@dataclass
class FileEvaluation:
    """One named evaluation of a run's model on a labelled file."""

    name: str
    file: str
    text_column: str
    label_column: str
    rows: int
    """Rows evaluated."""
    left_out: int
    """Rows of the file without a text or a label (not evaluated)."""
    metrics: SplitMetrics
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "metrics": self.metrics.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileEvaluation:
        return cls(**{**data, "metrics": SplitMetrics.from_dict(data["metrics"])})


@dataclass
class LabelledRows:
    """The file's usable rows: texts, label ids (the model's), and what was picked and left out."""

    texts: list[str]
    labels: list[Any]
    """Label ids; multi-label: a list of ids per row."""
    text_column: str
    label_column: str
    left_out: int


def read_labelled(path: str | Path, label_names: list[str], text_column: str | None = None,
                  label_column: str | None = None, multi_label: bool = False,
                  label_separator: str = ",") -> LabelledRows:  # fmt: skip
    """The file's texts and label ids for a model with `label_names`; for a `multi_label` model each row's set of
    ids, from a list or a string split on `label_separator`.

    Raises:
        DataError: no such file, a column not found, labels the model does not know, or no usable rows.
    """
    from studio.config import DataConfig
    from studio.data import LABEL_COLUMNS, TEXT_COLUMNS, load_raw, missing

    path = Path(path)
    if not path.exists():
        raise DataError(f"--file: {path} not found")
    frame = _frame(load_raw(DataConfig(source=str(path))))
    columns = [str(c) for c in frame.columns]
    text_col = _pick(columns, text_column, TEXT_COLUMNS, "text", path)
    label_col = _pick(columns, label_column, LABEL_COLUMNS, "label", path)
    texts, values = frame[text_col].tolist(), frame[label_col].tolist()
    usable = [i for i, (t, v) in enumerate(zip(texts, values, strict=True)) if not missing(t) and not missing(v)]
    if not usable:
        raise DataError(f"--file: {path.name} has no row with both a text ('{text_col}') and a label ('{label_col}')")
    if multi_label:
        sets = [_as_list(values[i], label_separator) for i in usable]
        flat = _label_ids([v for row in sets for v in row], label_names, path.name)
        ids, start = [], 0
        for row in sets:
            ids.append(sorted(set(flat[start : start + len(row)])))
            start += len(row)
    else:
        ids = _label_ids([values[i] for i in usable], label_names, path.name)
    return LabelledRows([str(texts[i]) for i in usable], ids, text_col, label_col, len(texts) - len(usable))


def evaluate_file(registry: Any, run_id: str, path: str | Path, *, text_column: str | None = None,
                  label_column: str | None = None, name: str | None = None,
                  load_predictor: Callable[[], Any] | None = None, batch_size: int | None = None,
                  label_separator: str = ",") -> tuple[FileEvaluation, Path]:  # fmt: skip
    """Evaluate run `run_id`'s model on the labelled file and save it as a named evaluation; (it, its JSON path).

    The file and the name are checked before the model loads and before anything is written. `load_predictor`
    gives the run's `inference.Predictor` (the app's cache of loaded models); default: load it here.
    """
    import numpy as np

    from studio import multilabel
    from studio.metrics import full_report
    from studio.models import read_label_map, read_task

    record = registry.get(run_id)  # RunNotFoundError with a hint
    run_dir = registry.run_dir(run_id)
    if not (run_dir / "label_map.json").is_file():
        raise StudioError(f"run {run_id} has no saved model to evaluate (it is {record.status})")
    label_names = read_label_map(run_dir)
    if name is not None and not _NAME.match(name):
        raise StudioError(f"--name: '{name}' must be letters, digits, '.', '_' or '-' (at most 80), starting with "
                          "a letter or digit")  # fmt: skip
    multi = read_task(run_dir) == "multi_label"
    rows = read_labelled(path, label_names, text_column, label_column, multi, label_separator)
    from studio.inference import Predictor, cannot_write_in

    folder = run_dir / EVALUATIONS_DIR
    reason = cannot_write_in(folder if folder.is_dir() else run_dir)  # before the model loads and predicts
    if reason:
        raise StudioError(f"run folder {run_dir} cannot be written ({reason}): the evaluation is saved there; make "
                          "it writable")  # fmt: skip
    if load_predictor is None:
        predictor = Predictor.from_run(registry, run_id)
    else:
        predictor = load_predictor()
    preds = predictor.predict(rows.texts, batch_size=batch_size)
    probs = np.array([[p.probs[n] for n in label_names] for p in preds], dtype=np.float64)
    if multi:
        from studio.tokenization import multi_hot

        cut = predictor.decision_thresholds()
        report = multilabel.full_report(multi_hot(rows.labels, len(label_names)), probs, cut, label_names)
        decided = [[label_names[j] for j in np.flatnonzero(row)] for row in multilabel.decide(probs, cut)]
    else:
        report = full_report(np.array(rows.labels), np.log(np.clip(probs, 1e-12, 1.0)), label_names)
        decided = [[label_names[j]] for j in probs.argmax(axis=1)]
    name = _free_name(folder, name or Path(path).name.split(".")[0])
    result = FileEvaluation(name, str(Path(path).resolve()), rows.text_column, rows.label_column, len(rows.texts),
                            rows.left_out, SplitMetrics.from_dict(report), round(time.time(), 3))  # fmt: skip
    try:
        _write(folder, result, rows, label_names, probs, decided)
    except OSError as e:  # the folder was checked: a full disk, or permissions changed while predicting
        m = result.metrics
        raise StudioError(f"could not save evaluation '{name}' in {folder} ({e.strerror or e}); its scores: "
                          f"accuracy {m.accuracy:.4f}, macro-F1 {m.f1_macro:.4f} on {m.n} rows; free some space and "
                          "evaluate again") from None  # fmt: skip
    return result, folder / f"{name}.json"


def evaluations(run_dir: Path) -> list[FileEvaluation]:
    """The run's named evaluations, oldest first (an unreadable one is skipped: it says nothing reliable)."""
    found = []
    for path in sorted((run_dir / EVALUATIONS_DIR).glob("*.json")):
        try:
            found.append(FileEvaluation.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda e: e.created)


def _frame(raw: Any) -> Any:
    """Every split of what the data layer read, as one pandas table (a folder of split files is pooled)."""
    import pandas as pd

    return pd.concat([split.to_pandas() for split in raw.values()], ignore_index=True)


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if wanted:
        if wanted in columns:
            return wanted
        raise DataError(f"--{what}-column: '{wanted}' not found in {path.name}; it has columns: {', '.join(columns)}")
    from studio.data import find_column

    found = find_column(columns, candidates)
    if found is not None:
        return found
    raise DataError(f"--{what}-column: no {what} column found in {path.name} (looked for {', '.join(candidates)}); "
                    f"it has columns: {', '.join(columns)}; name it with --{what}-column")  # fmt: skip


def _as_list(value: Any, separator: str) -> list[Any]:
    """A multi-label cell as its labels: a list as it is, a string split on `separator`, one value alone."""
    import numpy as np

    from studio.data import missing

    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for v in value if not missing(v)]
    if isinstance(value, str):
        return [v.strip() for v in value.split(separator) if v.strip()]
    return [value]


def _label_ids(values: list[Any], label_names: list[str], file_name: str) -> list[int]:
    """Each value's id among the model's labels: by name, or as an id 0..k-1 when the names are not integers."""
    from collections import Counter

    by_name = {n: i for i, n in enumerate(label_names)}
    ids_allowed = not all(n.lstrip("-").isdigit() for n in label_names)
    out, unknown = [], Counter()
    for value in values:
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
        if text in by_name:
            out.append(by_name[text])
        elif ids_allowed and text.isdigit() and int(text) < len(label_names):
            out.append(int(text))
        else:
            unknown[text] += 1
    if unknown:
        shown = ", ".join(f"'{v}' ({n} rows)" for v, n in unknown.most_common(5))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"--file: {file_name} has labels the model does not know: {shown}{more}; the model knows: "
                        f"{', '.join(label_names)}")  # fmt: skip
    return out


def _free_name(folder: Path, name: str) -> str:
    """`name`, or name-2, name-3, ... when an evaluation of that name exists (none is overwritten)."""
    candidate, n = name, 1
    while (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _write(folder: Path, result: FileEvaluation, rows: LabelledRows, label_names: list[str], probs: Any,
           decided: list[list[str]]) -> None:  # fmt: skip
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    truth = [", ".join(label_names[i] for i in v) if isinstance(v, list) else label_names[v] for v in rows.labels]
    table = pd.DataFrame({"text": rows.texts, "label": truth, "predicted": [", ".join(d) for d in decided]})
    for i, label in enumerate(label_names):
        table[f"prob_{label}"] = probs[:, i].round(6)
    table.to_parquet(folder / f"{result.name}.predictions.parquet", index=False)
    tmp = folder / f".{result.name}.json.tmp"
    tmp.write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    tmp.replace(folder / f"{result.name}.json")  # the JSON last and whole: a listed evaluation is complete
