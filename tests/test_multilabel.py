"""Multi-label tasks: the task a config and its data resolve to, label sets through splits and tokenization, the
binary loss, thresholds, metrics, calibration, and a tiny run end to end (train, save, reload, predict, evaluate)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from studio import data, multilabel
from studio.calibration import calibrate_multilabel, choose_multilabel, decision_confidence, read_temperature
from studio.config import DataConfig, RunConfig
from studio.errors import ConfigError, DataError, StudioError
from studio.losses import ClassifierLoss, loss_for, pos_weights
from studio.tokenization import multi_hot

NAMES = ["anger", "joy", "neutral"]


def write_rows(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def sets_of(split) -> list[list[str]]:
    names = split.features["label"].feature.names
    return [[names[i] for i in row] for row in split["label"]]


# ---- config ---------------------------------------------------------------------------------------------------
def test_task_defaults_and_the_settings_that_contradict_it():
    assert DataConfig().task == "auto" and DataConfig().reduce_multi_label is None
    assert DataConfig(task="single_label").reduce_multi_label == "drop"
    assert DataConfig(multi_label="first").reduce_multi_label == "first"
    with pytest.raises(ConfigError, match="data.multi_label: 'drop' makes the data single-label"):
        DataConfig(task="multi_label", multi_label="drop")
    with pytest.raises(ConfigError, match="data.balance"):
        DataConfig(task="multi_label", balance={"num_labels": 2, "num_samples": 10})


def test_formats_1_and_2_read_as_single_label_and_keep_their_hash():
    old = RunConfig.from_dict({"version": 2, "data": {"source": "goemotions", "multi_label": "drop"}})
    assert old.data.task == "single_label" and old.data.multi_label == "drop"
    bare = RunConfig.from_dict({"version": 1, "data": {"source": "goemotions"}})
    assert bare.data.task == "single_label" and bare.data.multi_label == "drop"
    # the same run written in format 3 has the same identity (a grid resumes across the upgrade)
    new = RunConfig.from_dict({"data": {"source": "goemotions", "task": "single_label"}})
    assert new.config_hash() == old.config_hash()
    assert RunConfig.from_dict({"data": {"source": "goemotions"}}).config_hash() != old.config_hash()
    again = RunConfig.from_dict(old.to_dict())  # a saved v2 config reads back the same
    assert again.data.task == "single_label" and again.config_hash() == old.config_hash()


# ---- data -----------------------------------------------------------------------------------------------------
def test_goemotions_is_multi_label_by_default_with_its_official_splits():
    prepared = data.prepare(DataConfig(source="goemotions"), seed=0)
    assert prepared.multi_label and len(prepared.label_names) == 28
    assert prepared.report["rows"] == {"train": 43410, "validation": 5426, "test": 5427}  # the paper's splits
    assert any("16% of the rows carry several labels" in n for n in prepared.report["notes"])
    stats = data.dataset_stats(prepared)
    assert stats["task"] == "multi_label" and 1.1 < stats["labels_per_row"]["train"] < 1.25
    assert sum(len(row) for row in prepared.splits["validation"]["label"]) == sum(
        stats["labels"]["validation"].values()
    )


def test_separator_labels_make_a_multi_label_task_and_carving_spreads_rare_labels(tmp_path):
    rows = [{"text": f"t{i}", "label": ["a", "b", "a,b", "b,c"][i % 4]} for i in range(80)]
    rows += [{"text": f"rare{i}", "label": "a,rare"} for i in range(10)]
    prepared = data.prepare(DataConfig(source=write_rows(tmp_path / "d.csv", rows), label_separator=","), seed=3)
    assert prepared.multi_label and prepared.label_names == ["a", "b", "c", "rare"]
    for name in ("train", "validation", "test"):  # stratified by the rarest label: 'rare' lands in every split
        assert any("rare" in s for s in sets_of(prepared.splits[name]))
    again = data.prepare(DataConfig(source=write_rows(tmp_path / "d.csv", rows), label_separator=","), seed=3)
    assert again.fingerprint == prepared.fingerprint
    single = data.prepare(DataConfig(source=str(tmp_path / "d.csv"), label_separator=",", task="single_label"), seed=3)
    assert not single.multi_label and single.report["dropped_multi_label"] == 50


def test_lists_that_never_hold_two_labels_stay_single_label(tmp_path):
    rows = {"text": [f"t{i}" for i in range(30)], "labels": [[NAMES[i % 3]] for i in range(30)]}
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    assert data.prepare(DataConfig(source=str(tmp_path / "d.parquet")), seed=0).task == "single_label"
    forced = data.prepare(DataConfig(source=str(tmp_path / "d.parquet"), task="multi_label"), seed=0)
    assert forced.multi_label and forced.splits["train"].features["label"].feature.names == NAMES


def test_a_label_only_in_validation_is_refused(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    write_rows(folder / "train.csv", [{"text": f"t{i}", "label": ["a,b", "b"][i % 2]} for i in range(20)])
    write_rows(folder / "validation.csv", [{"text": "v", "label": "a,zebra"}, {"text": "w", "label": "b"}])
    with pytest.raises(DataError, match="'zebra' in validation"):
        data.prepare(DataConfig(source=str(folder), label_separator=","), seed=0)


def test_balance_refuses_multi_label_data(tmp_path):
    rows = [{"text": f"t{i}", "label": ["a", "b", "a,b"][i % 3]} for i in range(30)]
    with pytest.raises(DataError, match="data.balance: .*multi-label"):
        data.prepare(DataConfig(source=write_rows(tmp_path / "d.csv", rows), label_separator=",",
                                balance={"num_labels": 2, "num_samples": 10}), seed=0)  # fmt: skip


def test_tokenized_labels_are_multi_hot_floats(tmp_path, bert_tokenizer):
    rows = [{"text": f"t{i}", "label": ["a", "b", "a,b"][i % 3]} for i in range(30)]
    prepared = data.prepare(DataConfig(source=write_rows(tmp_path / "d.csv", rows), label_separator=","), seed=0)
    tokenized, _ = data.tokenize(prepared, bert_tokenizer, 16, None)
    got = np.asarray(tokenized["train"]["labels"])
    assert tokenized["train"].features["labels"].feature.dtype == "float32" and got.shape == (
        len(prepared.splits["train"]),
        2,
    )
    np.testing.assert_array_equal(got, multi_hot(prepared.splits["train"]["label"], 2))


# ---- loss -----------------------------------------------------------------------------------------------------
def test_binary_loss_matches_torch_and_weighs_positives():
    logits, targets = torch.randn(6, 3), torch.tensor([[1, 0, 1], [0, 1, 0]] * 3, dtype=torch.float32)
    plain = ClassifierLoss(multi_label=True)({"logits": logits}, targets)
    assert plain.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).item())
    weights = [2.0, 1.0, 0.5]
    weighted = ClassifierLoss(weights, multi_label=True)({"logits": logits}, targets)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights))(logits, targets)
    assert weighted.item() == pytest.approx(expected.item())
    focal = ClassifierLoss(gamma=2.0, multi_label=True)({"logits": logits}, targets)
    assert 0 < focal.item() < plain.item()
    # accumulated batches: the Trainer's count is rows x labels
    assert ClassifierLoss(multi_label=True)({"logits": logits}, targets, 36).item() == pytest.approx(plain.item() / 2)


def test_pos_weights_balanced_and_named_and_refused():
    assert pos_weights("balanced", ["a", "b"], {"a": 10, "b": 40}, 50) == [4.0, 0.25]
    assert pos_weights({"b": 3}, ["a", "b"], {"a": 10, "b": 40}, 50) == [1.0, 3.0]
    assert pos_weights("none", ["a"], {"a": 1}, 2) is None
    with pytest.raises(ConfigError, match="'zebra' is not a label"):
        pos_weights({"zebra": 2}, ["a", "b"], {"a": 1, "b": 1}, 2)
    with pytest.raises(ConfigError, match="no row carries 'b'"):
        pos_weights("balanced", ["a", "b"], {"a": 3, "b": 0}, 3)
    train = RunConfig().train
    assert loss_for(train, ["a", "b"], {"a": 1, "b": 1}, multi_label=True, rows=2).multi_label


# ---- thresholds and metrics -----------------------------------------------------------------------------------
def test_thresholds_maximise_each_labels_f1_and_rare_labels_take_the_global_cut():
    rng = np.random.default_rng(0)
    y = np.zeros((400, 3), dtype=int)
    y[:200, 0] = 1
    y[:100, 1] = 1
    y[:3, 2] = 1  # too rare to tune
    probs = np.clip(y * 0.3 + rng.uniform(0, 0.25, y.shape), 0, 1)  # positives 0.3-0.55, negatives 0-0.25
    found = multilabel.tune_thresholds(probs, y, NAMES)
    assert found.tuned == ["anger", "joy"] and found.per_label["neutral"] == found.global_threshold
    assert 0.25 < found.per_label["anger"] <= 0.30 and 0.25 < found.per_label["joy"] <= 0.30
    scores = multilabel.metrics(y, probs, found.array(NAMES), NAMES)
    assert scores["f1/anger"] == scores["f1/joy"] == 1.0
    at_half = multilabel.metrics(y, probs, np.full(3, 0.5), NAMES)
    assert at_half["f1_macro"] < scores["f1_macro"]


def test_metrics_agree_with_scikit_learn_by_hand():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.6], [0.6, 0.3, 0.1], [0.2, 0.1, 0.9]])
    m = multilabel.metrics(y, probs, np.full(3, 0.5), NAMES)
    # predicted: [1,0,1] [0,1,1] [1,0,0] [0,0,1] -> rows 0 and 3 exact; 2 wrong cells of 12
    assert m["accuracy"] == 0.5 and m["hamming_loss"] == pytest.approx(2 / 12)
    assert m["f1_micro"] == pytest.approx(2 * 5 / (2 * 5 + 1 + 1))
    assert m["roc_auc_macro"] == 1.0 and m["ap_macro"] == 1.0  # every label ranks its positives first
    report = multilabel.full_report(y, probs, np.full(3, 0.5), NAMES)
    assert report["per_class"]["joy"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2,
                                          "threshold": 0.5}  # fmt: skip
    assert report["task"] == "multi_label" and report["confusion_matrix"] == []


def test_thresholds_file_round_trip_and_bad_values(tmp_path):
    found = multilabel.Thresholds({"anger": 0.3, "joy": 0.6}, 0.4, ["anger"], 100)
    multilabel.write(tmp_path, found)
    assert multilabel.read(tmp_path, ["anger", "joy"]) == found
    (tmp_path / multilabel.THRESHOLDS_FILE).write_text(json.dumps({"per_label": {"anger": 1.5}}))
    with pytest.raises(StudioError, match="the threshold of 'anger': 1.5 is outside"):
        multilabel.read(tmp_path, ["anger"])
    (tmp_path / multilabel.THRESHOLDS_FILE).write_text(json.dumps({"per_label": {"zebra": 0.5}}))
    with pytest.raises(StudioError, match="labels the model does not have"):
        multilabel.read(tmp_path, ["anger"])
    with pytest.raises(StudioError, match="--threshold: -0.1 is outside"):
        multilabel.check_threshold(-0.1)


# ---- calibration ----------------------------------------------------------------------------------------------
def test_per_label_temperatures_win_only_when_labels_need_different_ones(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=(2000, 2)) < 0.3).astype(int)
    true_logit = np.where(y == 1, 1.0, -1.0) * 2 + rng.normal(0, 1.5, y.shape)
    same = true_logit * 3  # both over-confident by 3
    assert choose_multilabel(same, y)[0] == "temperature"
    mixed = true_logit * np.array([3.0, 0.3])  # one over-, one under-confident
    assert choose_multilabel(mixed, y)[0] == "temperature_per_label"
    result = calibrate_multilabel(mixed[:1000], y[:1000], mixed[1000:], y[1000:], ["a", "b"])
    assert result.method == "temperature_per_label" and result.ece_after < result.ece_before
    # the same kind of score scaled by 3 and by 0.3: the fitted temperatures differ by that factor of 10
    assert result.per_label["a"] / result.per_label["b"] == pytest.approx(10, rel=0.25)
    from studio.calibration import CALIBRATION_FILE, file_content

    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(file_content(result)))
    np.testing.assert_allclose(read_temperature(tmp_path, ["a", "b"]), [result.per_label["a"], result.per_label["b"]])
    assert read_temperature(tmp_path) == result.temperature


def test_decision_confidence_is_the_least_sure_decision():
    probs = np.array([[0.9, 0.2, 0.6]])
    assert decision_confidence(probs, probs >= 0.5)[0] == pytest.approx(0.6)
    assert decision_confidence(probs, probs >= 0.7)[0] == pytest.approx(0.4)


# ---- a run end to end -----------------------------------------------------------------------------------------
def multi_label_rows(n: int = 240) -> list[dict]:
    """Texts whose words say their labels: 'angry' -> anger, 'happy' -> joy, both, or neither (neutral)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        kind = i % 4
        words = [["angry furious"], ["happy glad"], ["angry furious", "happy glad"], ["plain words"]][kind]
        labels = [["anger"], ["joy"], ["anger", "joy"], ["neutral"]][kind]
        filler = " ".join(rng.choice(["the", "a", "film", "day", "it", "was"], 4))
        rows.append({"text": f"{filler} {' '.join(words)} {filler}", "label": "|".join(labels)})
    return rows


def multi_label_config(source: str, model_dir) -> RunConfig:
    """The tiny multi-label run on `multi_label_rows` (a CSV at `source`): full fine-tuning that learns the words."""
    return RunConfig.from_dict({
        "name": "tiny-ml", "data": {"source": source, "label_separator": "|", "max_length": 16},
        "model": {"name": str(model_dir)}, "method": {"name": "full"},
        "train": {"epochs": 6, "batch_size": 16, "learning_rate": 3e-3, "logging_steps": 5,
                  "metric_for_best": "f1_macro", "class_weights": "balanced"},
    })  # fmt: skip


@pytest.fixture
def multi_label_run(tmp_path, tiny_model_dir, runs_dir):
    from studio.registry import Registry
    from studio.training import Run

    source = write_rows(tmp_path / "ml.csv", multi_label_rows())
    config = multi_label_config(source, tiny_model_dir("bert"))
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    return registry, result, source


def test_a_multi_label_run_trains_saves_and_predicts_what_it_measured(multi_label_run, tmp_path):
    from studio.file_eval import evaluate_file
    from studio.inference import Predictor, mistakes

    registry, result, source = multi_label_run
    summary, folder = result.summary, registry.run_dir(result.run_id)
    assert result.message.startswith("test macro-F1")
    assert summary.test.multi_label and summary.test.f1_macro > 0.8  # the words say the labels
    assert set(summary.test.per_class) == {"anger", "joy", "neutral"} and not summary.test.confusion_matrix
    assert summary.calibration is not None and summary.calibration.coverage
    assert (folder / multilabel.THRESHOLDS_FILE).is_file()
    assert json.loads((folder / "label_map.json").read_text())["task"] == "multi_label"
    events = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    live = [e for e in events if e["kind"] == "eval" and e.get("split") is None]
    assert live and {"f1_micro", "roc_auc_macro", "f1/joy"} <= set(live[-1])
    # reload: the same calibrated probabilities and label sets as the run saved
    saved = pd.read_parquet(folder / "predictions.parquet")
    test = saved[saved["split"] == "test"]
    predictor = Predictor.from_run(registry, result.run_id)
    preds = predictor.predict(test["text"].tolist(), batch_size=5)
    got = np.array([[p.probs[n] for n in predictor.label_names] for p in preds])
    np.testing.assert_allclose(got, np.stack(test["probs_calibrated"].to_numpy()), atol=2e-5)
    names = predictor.label_names
    assert [sorted(names.index(x) for x in p.labels) for p in preds] == [list(v) for v in test["predicted"]]
    raw = predictor.predict(test["text"].tolist(), raw=True)
    assert [p.labels for p in raw] == [p.labels for p in preds]  # raw moves the probabilities, not the answers
    both = predictor.predict(["the film angry furious happy glad it"])[0]
    assert set(both.labels) == {"anger", "joy"} and both.answer in ("anger, joy", "joy, anger")
    assert predictor.predict(["x"], label_threshold=1.0)[0].answer == "(none)"
    assert predictor.predict(["angry furious"], min_confidence=1.0)[0].answer == "unsure"
    frame = predictor.predict_file(source)
    assert {"predicted_labels", "label_count", "prob_anger", "prob_joy", "prob_neutral"} <= set(frame.columns)
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("id,text\n1,angry furious\n2,\n3,happy glad\n", encoding="utf-8")
    marked = predictor.predict_file(gaps)  # a row without a text is marked, not scored as an empty text
    assert marked["note"].tolist() == ["", "no text in column 'text'", ""]
    assert marked["predicted_labels"].tolist()[1] == "" and marked["label_count"].isna().tolist() == [
        False,
        True,
        False,
    ]
    assert marked["prob_anger"].isna().tolist() == [False, True, False]
    assert isinstance(mistakes(registry, result.run_id), pd.DataFrame)
    evaluation, path = evaluate_file(registry, result.run_id, source, label_separator="|")
    assert evaluation.metrics.multi_label and evaluation.metrics.f1_macro > 0.8 and path.is_file()
    import zipfile

    from studio.export import export_zip

    # the thresholds travel with the model (tests/test_export_check.py checks they apply as the card says)
    with zipfile.ZipFile(export_zip(registry, result.run_id, check=False)) as exported:
        assert {f"{result.run_id}/{multilabel.THRESHOLDS_FILE}", f"{result.run_id}/calibration.json"} <= set(
            exported.namelist()
        )


def test_an_evaluation_file_with_unknown_labels_in_a_set_is_refused(multi_label_run, tmp_path):
    from studio.file_eval import evaluate_file

    registry, result, _ = multi_label_run
    bad = write_rows(
        tmp_path / "bad.csv", [{"text": "angry", "label": "anger|zebra"}, {"text": "x", "label": "giraffe"}]
    )
    with pytest.raises(DataError, match="labels the model does not know: 'zebra' \\(1 rows\\), 'giraffe'"):
        evaluate_file(registry, result.run_id, bad, label_separator="|")
    assert not (registry.run_dir(result.run_id) / "evaluations").exists()


def test_single_label_data_refuses_a_multi_label_metric(tiny_model_dir, runs_dir):
    from studio.registry import Registry
    from studio.training import Run

    config = RunConfig.from_dict({"data": {"source": "imdb-sample", "max_samples": 60, "max_length": 16},
                                  "model": {"name": str(tiny_model_dir("bert"))},
                                  "train": {"metric_for_best": "roc_auc_macro", "max_steps": 1}})  # fmt: skip
    result = Run(config, Registry(runs_dir)).execute()
    assert result.status == "failed" and "roc_auc_macro is a multi-label metric" in result.message


@pytest.mark.parametrize(("family", "method"), [("llama", "lora"), ("bert", "ia3"), ("bert", "qlora")])
def test_adapters_train_multi_label_and_reload(tmp_path, tiny_model_dir, runs_dir, family, method):
    from studio.inference import Predictor
    from studio.registry import Registry
    from studio.training import Run

    source = write_rows(tmp_path / "ml.csv", multi_label_rows(80))
    config = RunConfig.from_dict({"data": {"source": source, "label_separator": "|", "max_length": 16},
                                  "model": {"name": str(tiny_model_dir(family))}, "method": {"name": method, "r": 4},
                                  "train": {"max_steps": 4, "batch_size": 8}})  # fmt: skip
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    pred = Predictor.from_run(registry, result.run_id).predict(["happy glad"])[0]
    assert pred.labels is not None and set(pred.probs) == {"anger", "joy", "neutral"}
    assert all(0 <= v <= 1 for v in pred.probs.values()) and not math.isclose(sum(pred.probs.values()), 1.0)


def test_a_multi_label_head_starts_at_the_label_priors(tiny_model_dir):
    from studio.models import build_model

    config = RunConfig.from_dict({"model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": "full"}})
    bundle = build_model(config, NAMES, "multi_label", priors=[0.1, 0.5, 0.9])
    np.testing.assert_allclose(bundle.model.classifier.bias.detach().numpy(), [math.log(1 / 9), 0.0, math.log(9)],
                               atol=1e-6)  # fmt: skip
    assert bundle.model.config.problem_type == "multi_label_classification"
    assert any("log-odds" in n for n in bundle.notes)
    lora = RunConfig.from_dict({"model": {"name": str(tiny_model_dir("roberta"))}, "method": {"name": "lora", "r": 2}})
    head = build_model(lora, NAMES, "multi_label", priors=[0.1, 0.5, 0.9]).model.base_model.model.classifier
    bias = head.modules_to_save["default"].out_proj.bias if hasattr(head, "modules_to_save") else head.out_proj.bias
    np.testing.assert_allclose(bias.detach().numpy(), [math.log(1 / 9), 0.0, math.log(9)], atol=1e-6)
    decoder = build_model(RunConfig.from_dict({"model": {"name": str(tiny_model_dir("llama"))}}), NAMES, "multi_label",
                          priors=[0.1, 0.5, 0.9])  # fmt: skip
    assert not any("log-odds" in n for n in decoder.notes)  # its score layer has no bias: left as it is


def test_an_empty_validation_split_skips_thresholds_with_a_note(tiny_model_dir, tmp_path):
    """No validation rows to tune on: every label at 0.5 and a note; the run goes on."""
    from studio.distributed import World
    from studio.events import Note
    from studio.recipe import ClassifierRecipe

    said = []
    recipe = ClassifierRecipe(RunConfig(), emit=said.append, stop_requested=lambda: False, world=World(),
                              cache_dir=tmp_path)  # fmt: skip
    recipe.data = data.PreparedData(None, NAMES, "f", {}, "multi_label")
    found = recipe._tune_thresholds()
    assert found.per_label == dict.fromkeys(NAMES, 0.5)
    assert any(isinstance(e, Note) and "validation split is empty" in e.message for e in said)


def test_the_memory_estimate_counts_a_multi_label_heads_parameters_exactly(tiny_model_dir):
    from studio.memory import estimate
    from studio.models import build_model

    for method in ("full", "lora"):
        config = RunConfig.from_dict({"model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": method}})
        bundle = build_model(config, NAMES, "multi_label", priors=[0.2, 0.3, 0.5])
        assert estimate(config, len(NAMES)).trainable_params == bundle.trainable_params
