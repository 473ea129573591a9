"""The label-issue finder (studio/label_issues.py): the ranking on synthetic probabilities, both modes end to end on
a tiny model with planted flips, the corrected copy, the CLI, and bad inputs in words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio import label_issues as li
from studio.cli import main
from studio.config import RunConfig
from studio.registry import Registry

POS = ["good", "great", "lovely", "wonderful", "superb", "fine"]
NEG = ["bad", "awful", "poor", "terrible", "dull", "boring"]
FILL = ["the", "film", "was", "a", "movie", "it", "plot", "actors"]


def planted(path, n: int = 120, flips: int = 6, seed: int = 0) -> set[str]:
    """A CSV of texts whose words say their class, with `flips` labels flipped; returns the flipped texts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = [*rng.choice(POS if i % 2 else NEG, 4), *rng.choice(FILL, 4)]
        rng.shuffle(words)
        rows.append((" ".join(words), "positive" if i % 2 else "negative"))
    frame = pd.DataFrame(rows, columns=["text", "label"])
    flipped = rng.choice(n, flips, replace=False)
    frame.loc[flipped, "label"] = frame.loc[flipped, "label"].map({"positive": "negative", "negative": "positive"})
    frame.to_csv(path, index=False)
    return set(frame.loc[flipped, "text"])


def config_for(source, model_dir, **data) -> RunConfig:
    return RunConfig.from_dict({
        "name": "tiny-li", "data": {"source": str(source), "max_length": 16, **data},
        "model": {"name": str(model_dir)}, "method": {"name": "full"},
        "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "eval_strategy": "no", "speed": "as_set",
                  "logging_steps": 2},
    })  # fmt: skip


@pytest.fixture
def planted_target(tmp_path, tiny_model_dir):
    flipped = planted(tmp_path / "planted.csv")
    config = config_for(tmp_path / "planted.csv", tiny_model_dir("bert"))
    return li.Target(config, "tiny-li", tmp_path / "runs" / li.FOLDER / "tiny-li"), flipped


# ---- the ranking ---------------------------------------------------------------------------------------
def test_rank_puts_confidently_contradicted_labels_first():
    rng = np.random.default_rng(0)
    truth = np.arange(300) % 3
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), truth] = 0.9
    probs += rng.uniform(0, 0.05, probs.shape)
    given = truth.copy()
    flipped = [5, 50, 100, 150, 299]
    given[flipped] = (truth[flipped] + 1) % 3
    ranked = li.rank([f"t{i}" for i in range(300)], given, probs, ["a", "b", "c"])
    assert {i.row for i in ranked[:5]} == set(flipped)
    assert {i.row for i in ranked if i.flagged} == set(flipped)
    top = ranked[0]
    assert top.suggested == "abc"[truth[top.row]] and top.given == "abc"[given[top.row]]
    assert top.score == pytest.approx(probs[top.row, given[top.row]] / probs[top.row].sum())
    assert [i.score for i in ranked] == sorted(i.score for i in ranked)


def test_rank_refuses_probabilities_of_another_shape():
    with pytest.raises(li.LabelIssueError, match="do not match 3 rows x 2 classes"):
        li.rank(["a", "b", "c"], np.array([0, 1, 0]), np.ones((3, 3)), ["x", "y"])


@pytest.mark.parametrize(("labels", "k", "said"), [
    ([0, 1] * 10, 1, "k must be at least 2"),
    ([0] * 10 + [1] * 2, 3, "k=3 is more than the 2 training row\\(s\\) of class 'y'.*use k=2"),
    ([0] * 10, 2, "single class"),
])  # fmt: skip
def test_check_k_says_what_is_wrong(labels, k, said):
    with pytest.raises(li.LabelIssueError, match=said):
        li.check_k(np.array(labels), ["x", "y"], k)


# ---- end to end ----------------------------------------------------------------------------------------
def test_embeddings_mode_finds_planted_flips_and_writes_a_corrected_copy(planted_target):
    target, flipped = planted_target
    report = li.find(target, "embeddings", k=3)
    in_train = [i for i in report.ranked if i.text in flipped]
    assert in_train, "some planted flips are in the training split"
    top = report.ranked[: max(len(in_train), len(report.ranked) // 10)]
    assert sum(i.text in flipped for i in top) >= len(in_train) / 2  # the tiny random encoder still finds them
    assert {i.text for i in report.issues} & flipped
    assert report.mode == "embeddings" and report.k == 3 and len(report.fold_seconds) == 2
    again = li.read(target.folder, "embeddings")
    assert again is not None and again.ranked == report.ranked and again.encoder == report.encoder
    meta = json.loads((target.folder / "issues-embeddings.json").read_text())
    assert meta["rows"] == len(report.ranked) and meta["flagged"] == len(report.issues)

    source = target.config.data.source
    before = Path(source).read_bytes()
    first, second = report.issues[0], report.ranked[-1]
    copy = li.write_corrected(target, report, {first.row: "relabel", second.row: "drop"})
    assert Path(source).read_bytes() == before, "the user's data is never touched"
    assert copy.folder.parent == target.folder and (copy.dropped, copy.relabelled) == (1, 1)
    data = li.training_rows(RunConfig.from_yaml(copy.config))
    assert len(data.splits["train"]) == len(report.ranked) - 1
    texts = list(data.splits["train"]["text"])
    assert second.text not in texts
    label = data.splits["train"]["label"][texts.index(first.text)]
    assert data.label_names[label] == first.suggested != first.given
    assert {k: len(v) for k, v in data.splits.items()} == copy.rows


def test_crossfit_mode_trains_k_runs_of_the_recipe(planted_target):
    target, _ = planted_target
    report = li.find(target, "crossfit", k=2)
    assert len(report.fold_runs) == 2 and len(report.fold_seconds) == 2
    folds = Registry(target.folder / "folds")
    for run_id in report.fold_runs:
        record = folds.get(run_id)
        assert record.status == "completed"
        held = pd.read_parquet(folds.run_dir(run_id) / "predictions.parquet").query("split == 'test'")
        assert 0 < len(held) < len(report.ranked)
        assert not (folds.run_dir(run_id) / "model").exists(), "the folds' weights are not kept"
    assert sorted(i.row for i in report.ranked) == list(range(len(report.ranked)))
    assert Registry(target.folder.parent.parent).list() == [], "the fold runs stay out of the runs list"


def test_decisions_from_flagged_rows_or_a_threshold(planted_target):
    report = li.LabelIssueReport("embeddings", 3, 1.0, "x", ["a", "b"], [
        li.LabelIssue(0, "t0", "a", "b", 0.1, True), li.LabelIssue(1, "t1", "a", "a", 0.3, False),
        li.LabelIssue(2, "t2", "b", "b", 0.9, False)])  # fmt: skip
    assert li.decisions_from(report, "drop") == {0: "drop"}
    assert li.decisions_from(report, "relabel", 0.5) == {0: "relabel", 1: "relabel"}
    with pytest.raises(li.LabelIssueError, match="threshold must be a label quality in \\[0, 1\\]"):
        li.decisions_from(report, "drop", 5)
    with pytest.raises(li.LabelIssueError, match="unknown action\\(s\\) flip"):
        li.write_corrected(planted_target[0], report, {0: "flip"})


# ---- the CLI and bad inputs ----------------------------------------------------------------------------
def test_cli_finds_and_applies(tmp_path, tiny_model_dir, capsys):
    planted(tmp_path / "planted.csv")
    preset = tmp_path / "planted.yaml"
    config_for(tmp_path / "planted.csv", tiny_model_dir("bert")).to_yaml(preset)
    runs = tmp_path / "runs"
    code = main(["--runs-dir", str(runs), "label-issues", str(preset), "--k", "3", "--out", str(tmp_path / "i.csv"),
                 "--apply", "drop", "--show", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "training rows flagged (embeddings, k=3" in out and "corrected copy (" in out
    assert len(pd.read_csv(tmp_path / "i.csv")) == 96
    copies = list((runs / li.FOLDER / "tiny-li").glob("corrected-*/config.yaml"))
    assert len(copies) == 1 and f"python -m studio train {copies[0]}" in out


def cli_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_cli_bad_inputs_in_words(tmp_path, tiny_model_dir, capsys):
    runs = str(tmp_path / "runs")
    planted(tmp_path / "planted.csv", n=20)
    preset = tmp_path / "p.yaml"
    config_for(tmp_path / "planted.csv", tiny_model_dir("bert")).to_yaml(preset)
    said = cli_error(capsys, "--runs-dir", runs, "label-issues", str(preset), "--k", "50")
    assert "k=50 is more than the" in said and "use k=" in said
    said = cli_error(capsys, "--runs-dir", runs, "label-issues", "no-such-thing")
    assert "'no-such-thing' is neither a run in" in said
    said = cli_error(capsys, "--runs-dir", runs, "label-issues", str(preset), "--threshold", "0.2")
    assert "--threshold picks the rows --apply changes" in said
    gone = tmp_path / "gone.yaml"
    config_for(tmp_path / "missing.csv", tiny_model_dir("bert")).to_yaml(gone)
    said = cli_error(capsys, "--runs-dir", runs, "label-issues", str(gone))
    assert "training data cannot be read" in said and "missing.csv" in said


def test_multi_label_data_is_refused(tmp_path, tiny_model_dir):
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["a,b", "a", "b", "b,a"] * 5}).to_csv(
        tmp_path / "m.csv", index=False)  # fmt: skip
    config = config_for(tmp_path / "m.csv", tiny_model_dir("bert"), label_separator=",")
    with pytest.raises(li.LabelIssueError, match="multi-label.*data.multi_label: drop"):
        li.training_rows(config)


def test_a_run_without_training_data_is_refused(tmp_path, tiny_model_dir):
    runs = tmp_path / "runs"
    registry = Registry(runs)
    planted(tmp_path / "d.csv", n=20)
    record = registry.create(config_for(tmp_path / "d.csv", tiny_model_dir("bert")))
    (registry.run_dir(record.id) / "config.yaml").unlink(missing_ok=True)
    with pytest.raises(li.LabelIssueError, match="has no config.yaml"):
        li.target(record.id, runs)
    config_for(tmp_path / "d.csv", tiny_model_dir("bert")).to_yaml(registry.run_dir(record.id) / "config.yaml")
    (tmp_path / "d.csv").unlink()
    target = li.target(record.id, runs)
    assert target.folder == registry.run_dir(record.id) / li.FOLDER
    with pytest.raises(li.LabelIssueError, match="training data cannot be read.*d.csv"):
        li.find(target)
    with pytest.raises(li.LabelIssueError, match="encoder 'run' needs a fully fine-tuned run"):
        li.encoder_source(target, "run")


def test_the_run_encoder_is_a_full_fine_tunes_own_model(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "config.json").write_text("{}")
    target = li.Target(config_for(tmp_path / "d.csv", tiny_model_dir("bert")), "r", run_dir / li.FOLDER, run_dir)
    assert li.encoder_source(target, "run") == str(run_dir / "model")
    assert li.encoder_source(target, "base") == str(tiny_model_dir("bert"))
    with pytest.raises(li.LabelIssueError, match="encoder must be 'base' or 'run'"):
        li.encoder_source(target, "other")
