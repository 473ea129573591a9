"""Setup-time changes (benchmarks/setup_time.py): the direct tokenizer call gives transformers' ids, and the
background tokenization gives what tokenizing in setup_model gives, or leaves the work to it."""

from __future__ import annotations

import queue

import pytest
from test_training import tiny_config

from studio import distributed
from studio.config import RunConfig
from studio.tokenization import encode_ids

TEXTS = ["A short one.", "", "Émile's café — naïve résumé! " * 40, "tabs\tand\nnew lines", "数字 123 and 😀 " * 30]


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "gpt2", "qwen2", "llama", "gemma3"])
def test_encode_ids_are_transformers_ids(tiny_model_dir, family):
    from studio.models import load_tokenizer

    tokenizer = load_tokenizer(RunConfig().model, str(tiny_model_dir(family)), None)
    for max_length in (16, 300, None):
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False}
        expected = tokenizer(TEXTS, verbose=False, **kwargs)["input_ids"]
        assert encode_ids(tokenizer, TEXTS, max_length) == expected
    before = tokenizer.backend_tokenizer.truncation
    encode_ids(tokenizer, TEXTS, 8)
    assert tokenizer.backend_tokenizer.truncation == before  # the tokenizer's own settings are left alone


def _recipe(config: RunConfig, cache_dir, world=None):
    from studio.recipe import ClassifierRecipe

    events: queue.Queue = queue.Queue()
    return ClassifierRecipe(config, emit=events.put, stop_requested=lambda: False,
                            world=world or distributed.world(), cache_dir=cache_dir)  # fmt: skip


def _columns(tokenized) -> dict:
    return {name: split.to_dict() for name, split in tokenized.items()}


@pytest.fixture
def overlap(monkeypatch):
    """Background tokenization whatever this machine's cores (it needs OVERLAP_MIN_CORES)."""
    from studio import recipe

    monkeypatch.setattr(recipe, "OVERLAP_MIN_CORES", 1)


def test_background_tokenization_gives_the_same_splits(tiny_model_dir, tmp_path, overlap, monkeypatch):
    from studio import recipe as recipe_module

    config = tiny_config(tiny_model_dir("bert"))
    early = _recipe(config, tmp_path / "a")
    early.setup_data()
    assert early._early is not None  # a local model folder: tokenizing started with the data
    early.plan_speed()
    early.setup_model()
    assert early._early is None

    # no background start, as in a multi-process run: tokenized in setup_model. (Dropping a started one instead
    # left its thread writing the same cache entry as setup_model: a CI run failed on their clashing temp files.)
    monkeypatch.setattr(recipe_module, "OVERLAP_MIN_CORES", 10**6)
    serial = _recipe(config, tmp_path / "b")
    serial.setup_data()
    assert serial._early is None
    serial.plan_speed()
    serial.setup_model()
    assert _columns(early.tokenized) == _columns(serial.tokenized)


def test_background_tokenization_is_left_to_setup_model_when_it_cannot_start(tiny_model_dir, tmp_path, overlap,
                                                                            monkeypatch):  # fmt: skip
    from studio import recipe as recipe_module
    from studio.recipe import _EarlyTokens

    config = tiny_config(tiny_model_dir("bert"))
    recipe = _recipe(config, tmp_path)
    recipe.setup_data()
    recipe.cleanup(None)  # a run ending before its model loads waits for the background work
    assert recipe._early is None
    world = distributed.World(rank=0, local_rank=0, size=2)
    assert _EarlyTokens.start(config, recipe.data, tmp_path, world) is None  # several processes: in order
    hub = config.with_overrides(["model.name=someone/no-such-model"])
    assert _EarlyTokens.start(hub, recipe.data, tmp_path, distributed.world()) is None  # no second network wait
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    bad = config.with_overrides([f"model.name={empty}"])
    assert _EarlyTokens.start(bad, recipe.data, tmp_path, distributed.world()) is None
    monkeypatch.setattr(recipe_module, "OVERLAP_MIN_CORES", 10_000)
    assert _EarlyTokens.start(config, recipe.data, tmp_path, distributed.world()) is None  # no core to spare


def test_a_failed_background_tokenization_is_redone_in_setup_model(tiny_model_dir, tmp_path, overlap):
    from studio.recipe import _EarlyTokens

    config = tiny_config(tiny_model_dir("bert"))
    recipe = _recipe(config, tmp_path)
    recipe.setup_data()
    recipe._early.result()

    def fail():
        raise RuntimeError("disk full")

    broken = _EarlyTokens(fail)
    broken.made_for = (config.model, config.data.max_length)
    broken._thread.start()
    recipe._early = broken
    recipe.plan_speed()
    recipe.setup_model()
    assert len(recipe.tokenized["train"]) == len(recipe.data.splits["train"])


def test_token_lengths_are_cached_with_the_data_and_tokenizer(tiny_model_dir, tmp_path, monkeypatch):
    from studio import tokenization
    from studio.models import load_tokenizer

    config = tiny_config(tiny_model_dir("bert"))
    recipe = _recipe(config, tmp_path)
    recipe.setup_data()
    recipe.cleanup(None)
    tokenizer = load_tokenizer(config.model, str(tiny_model_dir("bert")), None)
    uncached = tokenization.dataset_stats(recipe.data, tokenizer, 32)
    first = tokenization.dataset_stats(recipe.data, tokenizer, 32, tmp_path / "cache")
    assert first == uncached
    (entry,) = (tmp_path / "cache" / "lengths").iterdir()

    def no_tokenizing(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tokenization, "token_lengths", no_tokenizing)
    assert tokenization.dataset_stats(recipe.data, tokenizer, 32, tmp_path / "cache") == uncached
    entry.write_text("not json")  # a damaged entry is measured again
    monkeypatch.undo()
    assert tokenization.dataset_stats(recipe.data, tokenizer, 32, tmp_path / "cache") == uncached
    other = load_tokenizer(config.model, str(tiny_model_dir("roberta")), None)
    tokenization.dataset_stats(recipe.data, other, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "lengths").iterdir())) == 2  # another tokenizer: its own entry
