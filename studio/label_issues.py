"""Which training rows carry a wrong label: out-of-sample probabilities for every training row, then confident
learning (cleanlab) ranks the rows whose given label the other rows do not support.

Two ways to get the probabilities (`mode`):

- ``crossfit``: k runs of the same recipe (`training.Run` with the run's config), each trained on k-1 folds of the
  training rows and predicting the held-out fold as its test split; k trainings' cost.
- ``embeddings``: the mean-pooled last hidden states of a frozen encoder (the base model, or a full fine-tune's own
  weights) and a logistic regression cross-validated over k folds (scikit-learn ``cross_val_predict``); one pass of
  the encoder over the rows, minutes instead of k trainings.

Then ``cleanlab.rank.get_label_quality_scores`` gives every row a score (self-confidence: the probability of its
given label, low = suspicious) and ``cleanlab.filter.find_label_issues`` flags the rows it judges mislabelled; the
suggestion is the class the probabilities prefer. A report is written as ``issues-<mode>.csv`` (every training row,
most suspicious first) and ``issues-<mode>.json`` (the report without the rows) into the run's folder
(``<run>/label_issues/``) or, for a preset, ``<runs>/label_issues/<name>-<data fingerprint>/``: never beside the
user's data. `write_corrected` writes a corrected copy of the data (a folder of train/validation/test CSVs and a
config.yaml that trains on it); the original is never touched.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from studio.config import RunConfig
from studio.errors import DataError, StudioError

Mode = Literal["crossfit", "embeddings"]
Action = Literal["keep", "relabel", "drop"]
MODES: tuple[str, ...] = ("embeddings", "crossfit")
ACTIONS: tuple[str, ...] = ("keep", "relabel", "drop")
FOLDER = "label_issues"


class LabelIssueError(StudioError):
    """The label-issue finder cannot run on this input (multi-label data, too few rows per class, no run data)."""


@dataclass
class LabelIssue:
    """One training row as the finder judged it."""

    row: int
    """Its position in the run's training split (0-based)."""
    text: str
    given: str
    suggested: str
    """The class the out-of-sample probabilities prefer (the given one when they agree)."""
    score: float
    """Label quality in [0, 1] (cleanlab self-confidence: the out-of-sample probability of the given label); low =
    likely wrong."""
    flagged: bool
    """cleanlab.filter.find_label_issues marks it as mislabelled."""


@dataclass
class LabelIssueReport:
    """What the finder found on one run's (or preset's) training rows."""

    mode: str
    k: int
    seconds: float
    """Wall time of the whole search (data, probabilities, ranking)."""
    source: str
    """The run id or preset it was run on."""
    label_names: list[str]
    ranked: list[LabelIssue]
    """Every training row, most suspicious (lowest score) first."""
    encoder: str = ""
    """embeddings: the model whose hidden states were pooled."""
    fold_runs: list[str] = field(default_factory=list)
    """crossfit: the run ids of the k trainings (in `folder`/folds)."""
    fold_seconds: list[float] = field(default_factory=list)
    """crossfit: each training's wall time; embeddings: [encoding, cross-validated regression]."""
    folder: str = ""
    """Where the report is written."""
    load_average: list[float] = field(default_factory=list)
    """os.getloadavg() at the end (the machine may be shared)."""

    @property
    def issues(self) -> list[LabelIssue]:
        """The rows cleanlab flags, most suspicious first."""
        return [i for i in self.ranked if i.flagged]

    def to_dict(self, rows: bool = False) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not rows:
            d.pop("ranked")
        d["rows"], d["flagged"] = len(self.ranked), len(self.issues)
        return d

    def frame(self) -> Any:
        """The ranked rows as a pandas DataFrame (row, text, given, suggested, score, flagged)."""
        import pandas as pd

        columns = [f.name for f in dataclasses.fields(LabelIssue)]
        return pd.DataFrame([dataclasses.astuple(i) for i in self.ranked], columns=columns)


# ---- inputs --------------------------------------------------------------------------------------------
@dataclass
class Target:
    """What to search: a config, its name in words, where to write, and the run it came from (if any)."""

    config: RunConfig
    source: str
    folder: Path
    run_dir: Path | None = None


def target(name: str, runs_dir: str | Path) -> Target:
    """A run id (its config.yaml; the report goes in its folder) or a preset name/file (the report goes in a
    dataset-level folder under the runs folder)."""
    from studio.presets import resolve
    from studio.registry import Registry

    runs_dir = Path(runs_dir)
    run_dir = runs_dir / name
    if run_dir.is_dir() and Registry(runs_dir).exists:
        Registry(runs_dir).get(name)  # a folder without a row is refused in words
        if not (run_dir / "config.yaml").is_file():
            raise LabelIssueError(f"run {name} has no config.yaml: it never got as far as its training data; "
                                  "pick a run that trained")  # fmt: skip
        return Target(RunConfig.from_yaml(run_dir / "config.yaml"), name, run_dir / FOLDER, run_dir)
    try:
        config = RunConfig.from_yaml(resolve(name))
    except StudioError as e:
        raise LabelIssueError(f"'{name}' is neither a run in {runs_dir} nor a preset ({e})") from None
    return Target(config, name, runs_dir / FOLDER / config.name)


def training_rows(config: RunConfig) -> Any:
    """The run's data as it trains on it (`data.prepare`), refused in words when the finder cannot use it."""
    from studio.data import prepare

    try:
        data = prepare(config.data, config.seed)
    except DataError as e:
        raise LabelIssueError(f"the training data cannot be read, so there are no rows to check: {e}") from None
    if data.multi_label:
        raise LabelIssueError("this data is multi-label (rows carry several labels); the finder checks single-label "
                              "data: set data.multi_label: drop (or first), or data.task: single_label")  # fmt: skip
    return data


def check_k(labels: np.ndarray, names: list[str], k: int) -> None:
    """k folds need k >= 2 and at least k rows of every class (each fold sees every class)."""
    if k < 2:
        raise LabelIssueError(f"k must be at least 2 (got {k}): each row is predicted by a model that did not see it")
    counts = np.bincount(labels, minlength=len(names))
    present = counts[counts > 0]
    if len(present) < 2:
        raise LabelIssueError("the training rows hold a single class: there is nothing to confuse a label with")
    if present.min() < k:
        rarest = names[int(np.flatnonzero(counts == present.min())[0])]
        raise LabelIssueError(
            f"k={k} is more than the {present.min()} training row(s) of class '{rarest}': every fold needs every "
            f"class; use k={max(2, int(present.min()))} or fewer, or more data"
        )


# ---- ranking -------------------------------------------------------------------------------------------
def rank(texts: list[str], labels: np.ndarray, probs: np.ndarray, names: list[str]) -> list[LabelIssue]:
    """Every row scored by cleanlab (self-confidence) and flagged by confident learning, lowest score first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels, probs = np.asarray(labels, dtype=int), np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(labels), len(names)):
        raise LabelIssueError(f"probabilities of shape {probs.shape} do not match {len(labels)} rows x "
                              f"{len(names)} classes")  # fmt: skip
    probs = probs / probs.sum(axis=1, keepdims=True)
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    # n_jobs=1: cleanlab's default forks a multiprocessing pool, and a fork of a process with other threads (the
    # app's server, a run's workers, a test runner's) can deadlock on a lock one of them held: seen under
    # pytest-xdist, the forked worker waited forever. One process is fast enough for the rows a run trains on.
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    suggested = probs.argmax(axis=1)
    order = np.argsort(scores, kind="stable")
    return [LabelIssue(int(i), str(texts[i]), names[labels[i]], names[suggested[i]], float(scores[i]),
                       bool(flagged[i])) for i in order]  # fmt: skip


# ---- probabilities: embeddings -----------------------------------------------------------------------
def encoder_source(t: Target, encoder: str) -> str:
    """base: the config's base model; run: a full fine-tune's own weights (an adapter run has none of its own)."""
    from studio.models import resolve_source

    if encoder == "run":
        if t.run_dir is None or not (t.run_dir / "model" / "config.json").is_file():
            raise LabelIssueError("encoder 'run' needs a fully fine-tuned run (its model folder); use encoder "
                                  "'base' for a preset or an adapter run")  # fmt: skip
        return str(t.run_dir / "model")
    if encoder != "base":
        raise LabelIssueError(f"encoder must be 'base' or 'run', not '{encoder}'")
    return resolve_source(t.config.model)


def embed(texts: list[str], source: str, max_length: int, batch_size: int = 32) -> np.ndarray:
    """Mean-pooled last hidden states (padding excluded) of the encoder in `source`, one row per text."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(source).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)  # fmt: skip
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
    return out


def regression_probs(features: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities (k stratified folds) of a logistic regression on the L2-normalised states, its
    regularisation chosen inside each fold by a 3-fold log-loss search (no look at which labels are wrong).

    On the 5%-flipped quick-demo rows, standardised states with a fixed C=0.1 put 38% of the flips in the top 10%;
    normalised states with C chosen this way, 50% (benchmarks/results/label_issues)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    counts = np.bincount(labels)
    rarest_in_fit = counts[counts > 0].min() * (k - 1) // k  # the rarest class's rows in one fold's training part
    search = LogisticRegressionCV(Cs=[0.1, 0.3, 1.0, 3.0, 10.0], cv=3 if rarest_in_fit >= 3 else 2,
                                  scoring="neg_log_loss", max_iter=3000)  # fmt: skip
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(make_pipeline(Normalizer(), search), features, labels, cv=folds, method="predict_proba")


# ---- probabilities: cross-fitting ----------------------------------------------------------------------
def fold_config(config: RunConfig, train: Path, held: Path, validation: Path | None, names: list[str],
                fold: int) -> RunConfig:  # fmt: skip
    """The run's recipe on k-1 folds, predicting the held-out fold as its test split (files used whole, in order)."""
    return _reading(config, f"{config.name}-fold{fold}", train, label_names=names, max_train_samples=None,
                    validation_source=None if validation is None else {"source": str(validation)},
                    test_source={"source": str(held)})  # fmt: skip


def _reading(config: RunConfig, name: str, source: Path, **data: Any) -> RunConfig:
    """`config`'s recipe renamed `name`, reading `source`'s text/label columns as they are (single-label, auto
    splits, no sampling or reshaping), with `data`'s other settings."""
    d = config.to_dict()
    d["name"] = name[:64]
    d["data"] = {
        **d["data"], "source": str(source), "text_column": "text", "label_column": "label", "hub_config": None,
        "label_separator": None, "task": "single_label", "multi_label": None, "splits": "auto", "max_samples": None,
        "balance": None, "header": None, "delimiter": None, "label_file": None, "merge_label_case": False,
        "drop_duplicates": False, **data,
    }  # fmt: skip
    return RunConfig.from_dict(d)


def _write_rows(path: Path, texts: list[str], labels: np.ndarray) -> Path:
    import pandas as pd

    pd.DataFrame({"text": list(texts), "label": np.asarray(labels, dtype=np.int64)}).to_parquet(path, index=False)
    return path


def crossfit_probs(config: RunConfig, data: Any, k: int, folder: Path,
                   progress: Callable[[str], None]) -> tuple[np.ndarray, list[str], list[float]]:  # fmt: skip
    """k trainings of the run's recipe, each predicting its held-out fold: (probabilities, run ids, seconds)."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from studio.registry import Registry
    from studio.training import Run

    train, names = data.splits["train"], data.label_names
    texts, labels = list(train["text"]), np.asarray(train["label"], dtype=int)
    work = folder / "folds"
    work.mkdir(parents=True, exist_ok=True)
    val = data.splits["validation"]
    validation = _write_rows(work / "validation.parquet", val["text"], val["label"]) if len(val) else None
    registry, probs = Registry(work), np.zeros((len(texts), len(names)))
    ids, seconds = [], []
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed).split(texts, labels)
    for i, (fit, held) in enumerate(folds):
        progress(f"fold {i + 1}/{k}: training on {len(fit)} rows, predicting {len(held)}")
        fit_path = _write_rows(work / f"train-{i}.parquet", [texts[j] for j in fit], labels[fit])
        held_path = _write_rows(work / f"held-{i}.parquet", [texts[j] for j in held], labels[held])
        t0 = time.perf_counter()
        result = Run(fold_config(config, fit_path, held_path, validation, names, i), registry).execute()
        seconds.append(time.perf_counter() - t0)
        if result.status != "completed" or result.run_id is None:
            raise LabelIssueError(f"fold {i + 1}/{k}'s training ended {result.status}: {result.message}")
        run_dir = registry.run_dir(result.run_id)
        pred = pd.read_parquet(run_dir / "predictions.parquet")
        probs[held] = np.stack(pred[pred["split"] == "test"]["probs"].to_numpy())
        ids.append(result.run_id)
        for heavy in ("model", "adapter"):  # the predictions are what is needed; the weights are 90 MB a fold
            shutil.rmtree(run_dir / heavy, ignore_errors=True)
    return probs, ids, seconds


# ---- the finder ----------------------------------------------------------------------------------------
def find(t: Target, mode: str = "embeddings", k: int = 5, encoder: str = "base",
         progress: Callable[[str], None] = lambda _: None) -> LabelIssueReport:  # fmt: skip
    """Rank `t`'s training rows by how likely their label is wrong, and write the report into `t.folder`."""
    import os

    if mode not in MODES:
        raise LabelIssueError(f"mode must be one of {', '.join(MODES)}, not '{mode}'")
    t0 = time.perf_counter()
    progress("reading the training rows")
    data = training_rows(t.config)
    train, names = data.splits["train"], data.label_names
    texts, labels = list(train["text"]), np.asarray(train["label"], dtype=int)
    check_k(labels, names, k)
    if mode == "crossfit":
        probs, ids, parts = crossfit_probs(t.config, data, k, t.folder, progress)
        used = ""
    else:
        used = encoder_source(t, encoder)
        progress(f"encoding {len(texts)} rows with {Path(used).name}")
        t1 = time.perf_counter()
        features = embed(texts, used, t.config.data.max_length)
        t2 = time.perf_counter()
        progress(f"fitting a logistic regression over {k} folds")
        probs, ids = regression_probs(features, labels, k, t.config.seed), []
        parts = [t2 - t1, time.perf_counter() - t2]
    report = LabelIssueReport(mode, k, 0.0, t.source, list(names), rank(texts, labels, probs, names),
                              encoder=used and (encoder if encoder == "run" else t.config.model.name),
                              fold_runs=ids, fold_seconds=parts, folder=str(t.folder))  # fmt: skip
    report.seconds = time.perf_counter() - t0
    report.load_average = [round(x, 2) for x in os.getloadavg()]
    write(report, t.folder)
    return report


def write(report: LabelIssueReport, folder: Path) -> tuple[Path, Path]:
    """issues-<mode>.csv (every row, most suspicious first) and issues-<mode>.json (the rest), each atomically."""
    from studio.registry import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"issues-{report.mode}.csv"
    tmp = csv.with_name(f".{csv.name}.tmp")
    report.frame().to_csv(tmp, index=False)
    tmp.replace(csv)
    meta = folder / f"issues-{report.mode}.json"
    write_json_atomic(meta, report.to_dict())
    return csv, meta


def read(folder: str | Path, mode: str) -> LabelIssueReport | None:
    """The report written by `find` in `folder` (None when there is none)."""
    import pandas as pd

    folder = Path(folder)
    meta, csv = folder / f"issues-{mode}.json", folder / f"issues-{mode}.csv"
    if not (meta.is_file() and csv.is_file()):
        return None
    d = json.loads(meta.read_text(encoding="utf-8"))
    frame = pd.read_csv(csv, keep_default_na=False, dtype={"text": str, "given": str, "suggested": str})
    ranked = [LabelIssue(int(r.row), r.text, r.given, r.suggested, float(r.score), bool(r.flagged))
              for r in frame.itertuples(index=False)]  # fmt: skip
    known = {f.name for f in dataclasses.fields(LabelIssueReport)} - {"ranked"}
    return LabelIssueReport(**{key: v for key, v in d.items() if key in known}, ranked=ranked)


# ---- the corrected copy --------------------------------------------------------------------------------
def decisions_from(report: LabelIssueReport, apply: str, threshold: float | None = None) -> dict[int, str]:
    """`apply` (drop | relabel) to the flagged rows, or with `threshold` to every row scoring under it."""
    if apply not in ("drop", "relabel"):
        raise LabelIssueError(f"apply must be 'drop' or 'relabel', not '{apply}'")
    if threshold is not None and not 0 <= threshold <= 1:
        raise LabelIssueError(f"threshold must be a label quality in [0, 1], got {threshold}")
    chosen = [i for i in report.ranked if (i.score < threshold if threshold is not None else i.flagged)]
    return {i.row: apply for i in chosen}


@dataclass
class CorrectedCopy:
    """A corrected copy of a run's data: `folder` holds train/validation/test CSVs, `config` trains on them."""

    folder: Path
    config: Path
    dropped: int
    relabelled: int
    rows: dict[str, int]


def write_corrected(t: Target, report: LabelIssueReport, decisions: dict[int, str]) -> CorrectedCopy:
    """Apply keep/relabel/drop to the training rows and write the splits (validation and test as the run had
    them) as a new folder under `t.folder`; the user's data is never touched."""
    import pandas as pd

    bad = sorted({a for a in decisions.values() if a not in ACTIONS})
    if bad:
        raise LabelIssueError(f"unknown action(s) {', '.join(bad)}; each row is keep, relabel or drop")
    data = training_rows(t.config)
    names = data.label_names
    if names != report.label_names or len(data.splits["train"]) != len(report.ranked):
        raise LabelIssueError("the data changed since the report was made (its classes or row count differ); "
                              "find the label issues again")  # fmt: skip
    suggestion = {i.row: i.suggested for i in report.ranked}
    stamp, n = time.strftime("corrected-%Y%m%d-%H%M%S"), 1
    folder = t.folder / stamp
    while folder.exists():  # two copies in one second
        n, folder = n + 1, t.folder / f"{stamp}-{n + 1}"
    folder.mkdir(parents=True)
    frames, dropped, relabelled = {}, 0, 0
    for split in ("train", "validation", "test"):
        rows = data.splits[split]
        texts, labels = list(rows["text"]), [names[x] for x in rows["label"]]
        if split == "train":
            keep = [j for j in range(len(texts)) if decisions.get(j) != "drop"]
            dropped = len(texts) - len(keep)
            for j, action in decisions.items():
                if action == "relabel" and labels[j] != suggestion[j]:
                    labels[j], relabelled = suggestion[j], relabelled + 1
            texts, labels = [texts[j] for j in keep], [labels[j] for j in keep]
        frames[split] = pd.DataFrame({"text": texts, "label": labels})
        frames[split].to_csv(folder / f"{split}.csv", index=False)
    config_path = folder / "config.yaml"
    header = f"{t.source}'s recipe on its corrected data ({dropped} dropped, {relabelled} relabelled)"
    corrected_config(t.config, folder, names).to_yaml(config_path, header=header)
    return CorrectedCopy(folder, config_path, dropped, relabelled, {k: len(v) for k, v in frames.items()})


def corrected_config(config: RunConfig, folder: Path, names: list[str]) -> RunConfig:
    """The run's recipe reading the corrected folder's own splits, as they are (classes in the run's order)."""
    return _reading(config, f"{config.name}-corrected", folder, validation_source=None, test_source=None,
                    label_names=None if all(n.isdigit() for n in names) else names)  # fmt: skip
