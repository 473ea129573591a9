"""Predicting with a finished run: labels and probabilities in input order whatever the batching, files in and
tables out, a cache that loads each run once, and the mistakes a run made, read from its saved predictions.

That a reloaded run gives exactly the probabilities it measured is checked after each kind of training in
tests/test_training.py (`assert_reload_reproduces_saved_predictions`).
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from test_training import tiny_config

from studio import inference
from studio.errors import DataError, RunNotFoundError, StudioError
from studio.inference import Predictor, PredictorCache, mistakes
from studio.registry import Registry
from studio.training import Run

TEXTS = [f"{'a truly great ' * (i % 5)}film number {i}{', dull and long' * (i % 3)}" for i in range(30)]
"""Texts of many lengths, so a batch sorted by length differs from the input order."""


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory) -> tuple[Registry, list[str]]:
    """A registry with three finished tiny runs (LoRA, IA3, a full fine-tune), shared by this module's tests."""
    registry = Registry(tmp_path_factory.mktemp("inference") / "runs")
    ids = []
    for method in ("lora", "ia3", "full"):
        result = Run(tiny_config(tiny_model_dir("bert"), method, max_steps=2), registry).execute()
        assert result.status == "completed", result.message
        ids.append(result.run_id)
    return registry, ids


@pytest.fixture(scope="module")
def predictor(finished) -> Predictor:
    registry, ids = finished
    return Predictor.from_run(registry, ids[0])


# ---- predict -------------------------------------------------------------------------------------------
def test_predictions_come_back_in_input_order_whatever_the_batching(predictor, monkeypatch):
    whole = predictor.predict(TEXTS)  # one chunk, one batch
    monkeypatch.setattr(inference, "CPU_CHUNK", 7)  # 5 chunks, each sorted by length on its own
    pieces = predictor.predict(TEXTS, batch_size=3)
    assert [p.text for p in whole] == [p.text for p in pieces] == TEXTS
    names = predictor.label_names
    probs = np.array([[p.probs[n] for n in names] for p in whole])
    np.testing.assert_allclose(np.array([[p.probs[n] for n in names] for p in pieces]), probs, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for p, row in zip(whole, probs, strict=True):
        assert p.label == names[row.argmax()] and p.score == p.probs[p.label] == max(p.probs.values())
    alone = predictor.predict([TEXTS[7]])[0]  # padding in a batch changes no text's probabilities
    np.testing.assert_allclose([alone.probs[n] for n in names], probs[7], atol=1e-5)


def test_predict_takes_one_text_an_empty_list_and_values_that_are_not_text(predictor):
    (one,) = predictor.predict("a fine film")  # a lone string is one text, not its characters
    assert one.text == "a fine film" and set(one.probs) == {"negative", "positive"}
    assert predictor.predict([]) == []
    odd = predictor.predict([None, 3, "ok"])  # a file's missing or numeric cells score as empty texts
    assert [p.text for p in odd] == ["", "", "ok"]
    assert odd[0].probs == pytest.approx(predictor.predict([""])[0].probs, abs=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_predict_pads_each_batch_as_the_tokenizer_would(bert_tokenizer, side):
    tokenizer = copy.deepcopy(bert_tokenizer)
    tokenizer.padding_side = side
    texts = ["short", "a somewhat longer text than that", "the longest text of the three, by a few words"]
    predictor = Predictor(None, tokenizer, ["a", "b"], max_length=8)
    encoded = tokenizer(texts, truncation=True, max_length=8)
    for multiple in (1, 4):
        got = predictor._padded(encoded, [2, 0], multiple)
        want = tokenizer(
            [texts[2], texts[0]], truncation=True, max_length=8, padding=True, pad_to_multiple_of=multiple,
            return_tensors="pt",
        )  # fmt: skip
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_run_of_every_method_loads_and_predicts(finished):
    registry, ids = finished
    for run_id in ids:
        predictor = Predictor.from_run(registry, run_id)
        assert predictor.run_id == run_id and predictor.max_length == 32
        assert predictor.label_names == ["negative", "positive"] and not predictor.model.training
        assert len(predictor.predict(TEXTS[:3])) == 3


# ---- files ---------------------------------------------------------------------------------------------
def test_predict_file_adds_label_and_probabilities(predictor, tmp_path):
    file = tmp_path / "texts.csv"
    pd.DataFrame({"id": [1, 2, 3], "review": ["great film", "awful", None]}).to_csv(file, index=False)
    out = predictor.predict_file(file)
    assert list(out.columns) == ["id", "review", "predicted_label", "score", "prob_negative", "prob_positive", "note"]
    np.testing.assert_allclose(out["prob_negative"][:2] + out["prob_positive"][:2], 1.0, atol=1e-5)
    assert out["id"].tolist() == ["1", "2", "3"]  # the file's own columns and rows, in order, as written (text)
    assert out["note"].tolist() == ["", "", "no text in column 'review'"]  # the row without a text: marked
    (tmp_path / "clean.csv").write_text("text\ngood\nbad\n", encoding="utf-8")
    assert "note" not in predictor.predict_file(tmp_path / "clean.csv").columns  # only when some row has no text
    with pytest.raises(DataError, match="text column 'body' not found.*id, review"):
        predictor.predict_file(file, text_column="body")


def test_predict_file_finds_the_text_column(predictor, tmp_path):
    (tmp_path / "lines.jsonl").write_text('{"sentence": "good"}\n{"sentence": "bad"}\n', encoding="utf-8")
    assert predictor.predict_file(tmp_path / "lines.jsonl")["sentence"].tolist() == ["good", "bad"]
    (tmp_path / "one.csv").write_text("comments_2024\nfine\nawful\n", encoding="utf-8")
    assert len(predictor.predict_file(tmp_path / "one.csv")) == 2  # a file of one column: that column
    (tmp_path / "two.csv").write_text("a,b\nfine,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="text column 'text' not found in two.csv; it has columns: a, b"):
        predictor.predict_file(tmp_path / "two.csv")


def test_rows_without_a_text_are_marked_and_not_scored(predictor, tmp_path, monkeypatch):
    file = tmp_path / "gaps.csv"
    file.write_text('id,text\n1,a fine film\n2,\n3,"   "\n4,dull\n5,\n', encoding="utf-8")
    scored: list[list[str]] = []
    predict = Predictor.predict
    monkeypatch.setattr(
        Predictor, "predict", lambda self, texts, **kw: scored.append(texts) or predict(self, texts, **kw)
    )
    result = predictor.score_file(inference.read_texts(file), min_confidence=0.1)
    assert scored == [["a fine film", "dull"]]  # no model time on the empty rows
    assert (result.predicted, result.no_text, result.text_column) == (2, 3, "text")
    table = result.table
    assert table["id"].tolist() == ["1", "2", "3", "4", "5"]  # as the file writes them
    marked = table["note"] != ""
    assert marked.tolist() == [False, True, True, False, True]
    assert set(table.loc[marked, "note"]) == {"no text in column 'text'"}
    assert (table.loc[marked, ["predicted_label", "top_label"]] == "").all().all()
    assert table.loc[marked, ["score", "prob_negative", "prob_positive"]].isna().all().all()
    assert set(table.loc[~marked, "predicted_label"]) <= {"negative", "positive"}
    written = tmp_path / "out.csv"
    table.to_csv(written, index=False)
    back = pd.read_csv(written, keep_default_na=False)
    assert back["predicted_label"].tolist()[1] == "" and back["score"].tolist()[1] == ""


def test_a_file_with_a_note_column_keeps_it(predictor, tmp_path):
    (tmp_path / "notes.csv").write_text("text,note\ngood,mine\n,also mine\n", encoding="utf-8")
    out = predictor.predict_file(tmp_path / "notes.csv")
    assert out["note"].tolist() == ["mine", "also mine"]
    assert out["prediction_note"].tolist() == ["", "no text in column 'text'"]


def test_a_file_without_any_text_is_refused_before_scoring(tmp_path):
    (tmp_path / "empty.csv").write_text("text,id\n,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.csv has no text in column 'text' on any of its 2 rows.*--text-column"):
        inference.read_texts(tmp_path / "empty.csv")


def test_json_lines_rows_lacking_the_text_key_are_marked(predictor, tmp_path):
    file = tmp_path / "rows.jsonl"
    file.write_text('{"text": "good", "id": 1}\n{"id": 2}\n{"text": "bad", "id": 3}\n', encoding="utf-8")
    out = predictor.predict_file(file)
    assert out["id"].tolist() == [1, 2, 3] and out["note"].tolist() == ["", "no text in column 'text'", ""]


def test_json_lines_whose_first_row_lacks_the_text_key(predictor, tmp_path):
    file = tmp_path / "rows.jsonl"
    file.write_text('{"id": 1}\n{"text": "good", "id": 2}\n{"id": 3, "text": ""}\n', encoding="utf-8")
    out = predictor.predict_file(file)
    assert out["id"].tolist() == [1, 2, 3]
    assert out["note"].tolist() == ["no text in column 'text'", "", "no text in column 'text'"]
    assert out["predicted_label"].tolist()[1] in ("negative", "positive")


def test_predict_file_refuses_a_missing_or_bad_file(predictor, tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        predictor.predict_file(tmp_path / "nope.csv")
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(DataError, match="zero.csv is empty"):
        predictor.predict_file(tmp_path / "zero.csv")


# ---- runs that cannot predict --------------------------------------------------------------------------
def test_predict_with_an_unknown_run(runs_dir):
    with pytest.raises(RunNotFoundError, match="no run 'missing'"):
        Predictor.from_run(Registry(runs_dir), "missing")
    with pytest.raises(RunNotFoundError, match="no run 'missing'"):
        mistakes(Registry(runs_dir), "missing")


def test_a_run_that_saved_no_model_is_refused_with_its_status(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    record = registry.create(tiny_config(tiny_model_dir("bert")))
    registry.update(record.id, status="failed")
    with pytest.raises(StudioError, match=f"run {record.id} has no saved model \\(status: failed\\); pick a finished"):
        Predictor.from_run(registry, record.id)
    with pytest.raises(StudioError, match="saved no predictions \\(status: failed\\); pick a finished run"):
        mistakes(registry, record.id)


# ---- the cache -----------------------------------------------------------------------------------------
@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The run ids `Predictor.from_run` loads (it still loads them)."""
    calls: list[str] = []
    real = Predictor.from_run

    def counting(cls, registry, run_id):
        calls.append(run_id)
        return real(registry, run_id)

    monkeypatch.setattr(Predictor, "from_run", classmethod(counting))
    return calls


def test_the_cache_loads_each_run_once_and_keeps_the_most_recently_used(finished, loads):
    registry, (a, b, c) = finished
    cache = PredictorCache(registry, size=2)
    for nothing in (None, ""):
        with pytest.raises(StudioError, match="pick a run first: choose a completed run in the list"):
            cache.get(nothing)
    first = cache.get(a)
    assert cache.get(a) is first and first.run_id == a and loads == [a]
    cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)  # so b, the least recently used, goes
    assert cache.get(a) is first and loads == [a, b, c]
    cache.get(b)
    assert loads == [a, b, c, b]
    cache.forget(b)
    cache.forget("never-loaded")  # nothing to forget: no error
    cache.get(b)
    assert loads == [a, b, c, b, b]
    with pytest.raises(RunNotFoundError):
        cache.get("missing")


def test_pages_asking_for_one_run_at_once_wait_for_one_load(finished, loads):
    registry, ids = finished
    cache = PredictorCache(registry)
    got: list[Predictor] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(ids[1]))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert loads == [ids[1]] and len(got) == 4 and all(p is got[0] for p in got)


# ---- mistakes ------------------------------------------------------------------------------------------
def test_mistakes_are_the_wrong_predictions_most_confident_first(finished):
    registry, ids = finished
    saved = pd.read_parquet(registry.run_dir(ids[0]) / "predictions.parquet")
    for split in ("test", "validation"):
        rows = saved[saved["split"] == split]
        wrong = rows[rows["label"] != rows["predicted"]]
        assert len(wrong), "a tiny model trained 2 steps gets some wrong"
        table = mistakes(registry, ids[0], split)
        assert list(table.columns) == ["text", "label", "predicted", "confidence", "p_true"]
        assert sorted(table["text"]) == sorted(wrong["text"]) and (table["label"] != table["predicted"]).all()
        assert table["confidence"].is_monotonic_decreasing
        np.testing.assert_allclose(table["confidence"] + table["p_true"], 1.0, atol=2e-4)  # 2 classes, 4 digits
        assert (table["confidence"] >= 0.5).all()  # the predicted label is the most probable one
    top = mistakes(registry, ids[0], "test", limit=2)
    assert top.equals(mistakes(registry, ids[0], "test").head(2))
    none = mistakes(registry, ids[0], "train")  # training texts are not saved: no mistakes to show
    assert none.empty and list(none.columns) == ["text", "label", "predicted", "confidence", "p_true"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".tsv", ".csv"])
def test_predictions_are_written_in_the_format_the_output_names(predictor, tmp_path, suffix):
    (tmp_path / "in.csv").write_text("text\ngood\nbad\n", encoding="utf-8")
    frame = predictor.predict_file(tmp_path / "in.csv")
    inference.save_table(frame, tmp_path / f"out{suffix}")
    from studio.config import DataConfig
    from studio.data import load_raw

    back = load_raw(DataConfig(source=str(tmp_path / f"out{suffix}")))["train"]
    assert back["text"] == ["good", "bad"] and back["predicted_label"] == frame["predicted_label"].tolist()
