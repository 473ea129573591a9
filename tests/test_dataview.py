"""The Data tab's overview: the same preparation a run gets, plus token lengths from the model's tokenizer."""

from __future__ import annotations

import pytest

from studio.config import RunConfig
from studio.dataview import overview
from studio.errors import DataError


def config(model: str, **data) -> RunConfig:
    return RunConfig.from_dict({"data": {"source": "imdb-sample", "max_samples": 200, "max_length": 64, **data},
                                "model": {"name": model}})  # fmt: skip


def test_overview_matches_what_a_run_trains_on(tiny_model_dir):
    from studio.data import prepare

    cfg = config(str(tiny_model_dir("bert")))
    o = overview(cfg, preview_rows=5)
    prepared = prepare(cfg.data, cfg.seed)
    assert o.rows == {k: len(v) for k, v in prepared.splits.items()} and sum(o.rows.values()) == 200
    assert (o.text_column, o.label_column, o.columns) == ("review", "sentiment", ["review", "sentiment"])
    assert o.label_names == ["negative", "positive"]
    assert sum(o.label_counts["train"].values()) == o.rows["train"]
    assert len(o.preview) == 5 and list(o.preview.columns) == ["review", "sentiment"]
    assert len(o.lengths) == o.rows["train"] and min(o.lengths) > 2
    assert o.truncated_share(64) == pytest.approx(sum(n > 64 for n in o.lengths) / len(o.lengths))
    assert o.truncated_share(10**6) == 0.0


def test_overview_without_a_tokenizer_still_describes_the_data():
    o = overview(config("someone/not-downloaded-model"))  # offline: the tokenizer cannot be fetched
    assert o.lengths == [] and sum(o.rows.values()) == 200
    assert any("token lengths unavailable" in n for n in o.notes)


def test_overview_of_a_missing_column_names_the_field(tiny_model_dir):
    with pytest.raises(DataError, match="text_column"):
        overview(config(str(tiny_model_dir("bert")), text_column="body"))


def test_overview_without_tokens_loads_no_tokenizer(monkeypatch):
    from studio import dataview

    monkeypatch.setattr(dataview, "tokenizer_for", lambda model: pytest.fail("the tokenizer was loaded"))
    o = overview(config("someone/not-downloaded-model"), tokens=False)
    assert o.lengths == [] and sum(o.rows.values()) == 200 and not any("token" in n for n in o.notes)


def test_is_hub_source_decides_as_the_data_layer_does(tmp_path):
    from studio.config import DataConfig
    from studio.dataview import is_hub_source

    (tmp_path / "here.csv").write_text("text,label\na,b\n", encoding="utf-8")
    assert is_hub_source(DataConfig(source="stanfordnlp/imdb"))
    assert not is_hub_source(DataConfig(source="imdb-sample"))  # a shipped sample
    assert not is_hub_source(DataConfig(source=str(tmp_path / "here.csv")))  # an existing file
    assert not is_hub_source(DataConfig(source="missing.csv"))  # shaped like a file: refused as not found
