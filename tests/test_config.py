"""The config tree: validation with messages naming the field, YAML round trips, overrides, hashing."""

from __future__ import annotations

import pytest

from studio.config import CONFIG_VERSION, RunConfig, TrainConfig, field_help
from studio.errors import ConfigError


def error_of(data) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data)
    return info.value


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    config = RunConfig.from_dict(
        {"name": "x", "train": {"learning_rate": 3e-5}, "data": {"balance": {"num_labels": 4}}}
    )
    path = tmp_path / "c.yaml"
    config.to_yaml(path, header="a header\nsecond line")
    assert path.read_text().startswith("# a header\n# second line\n")
    again = RunConfig.from_yaml(path)
    assert again == config
    assert again.data.balance.num_labels == 4 and again.data.balance.per_label == 200


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"bogus": 1}, "bogus", ["unknown key", "data", "train"]),
        ({"train": {"batchsize": 8}}, "train.batchsize", ["unknown key", "batch_size"]),
        ({"data": {"balance": {"labelz": 2}}}, "data.balance.labelz", ["unknown key", "num_labels"]),
        ({"train": {"batch_size": 0}}, "train.batch_size", ["greater than or equal to 1"]),
        ({"train": {"batch_size": "sixteen"}}, "train.batch_size", ["valid integer"]),
        ({"train": {"learning_rate": -1e-4}}, "train.learning_rate", ["greater than 0"]),
        ({"method": {"r": 0}}, "method.r", ["greater than or equal to 1"]),
        ({"method": {"name": "qlorax"}}, "method.name", ["'full'", "'lora'", "'qlora'", "'ia3'"]),
        ({"train": {"optimizer": "adam"}}, "train.optimizer", ["paged_adamw_8bit"]),
        ({"data": {"split_ratios": [0.5, 0.2, 0.2]}}, "data.split_ratios", ["sum to 1"]),
        ({"data": {"split_ratios": [0.9, 0.1]}}, "data.split_ratios", ["3 values"]),
        ({"data": {"split_ratios": [1.0, 0.0, 0.0]}}, "data.split_ratios", ["> 0"]),
        ({"data": {"balance": {"num_labels": 4, "num_samples": 3}}}, "data.balance.num_samples", ["at least"]),
        ({"data": {"balance": {"num_labels": 2, "labels": ["joy"]}}}, "data.balance.labels", ["1 labels"]),
        ({"data": {"balance": {"labels": ["joy", "joy"]}}}, "data.balance.labels", ["twice"]),
        ({"data": {"balance": {}, "max_samples": 100}}, "data.max_samples", ["balance"]),
        ({"method": {"placement": "custom"}}, "method.target_modules", ["non-empty"]),
        ({"method": {"target_modules": ["query"]}}, "method.placement", ["custom"]),
        ({"method": {"name": "full", "placement": "qv"}}, "method.placement", ["full fine-tuning"]),
        ({"train": {"eval_strategy": "steps"}}, "train.eval_steps", ["required"]),
        ({"train": {"eval_strategy": "no", "early_stopping_patience": 2}}, "train.early_stopping_patience", ["needs"]),
        ({"name": "has space"}, "name", ["pattern"]),
        ({"version": CONFIG_VERSION + 1, "new_section": {}}, "version", ["newer", "upgrade"]),
        ({"data": {"max_length": 4}}, "data.max_length", ["greater than or equal to 8"]),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(data, field, words):
    err = error_of(data)
    assert err.field == field
    assert str(err).startswith(f"{field}:")
    for word in words:
        assert word in str(err)


def test_yaml_numbers_without_a_dot_still_parse():
    # YAML 1.1 reads 2e-4 as a string; the config coerces it instead of rejecting a common preset spelling.
    assert RunConfig.from_dict({"train": {"learning_rate": "2e-4"}}).train.learning_rate == pytest.approx(2e-4)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        RunConfig.from_yaml(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_yaml(listing)


def test_overrides_parse_values_and_reach_nested_sections():
    config = RunConfig().with_overrides(
        ["train.epochs=1", "train.learning_rate=2e-4", "method.name=ia3", "data.balance.num_labels=4", "seed=7"]
    )
    assert config.train.epochs == 1 and config.train.learning_rate == pytest.approx(2e-4)
    assert config.method.name == "ia3" and config.method.resolved_placement() == "attention+ffn"
    assert config.data.balance.num_labels == 4 and config.seed == 7
    with pytest.raises(ConfigError, match="section.field=value"):
        RunConfig().with_overrides(["train.epochs"])
    with pytest.raises(ConfigError, match="train.nope"):
        RunConfig().with_overrides(["train.nope=1"])


def test_config_hash_tracks_what_is_trained_only():
    base = RunConfig()
    assert base.config_hash() == RunConfig.from_dict({"name": "other", "description": "words"}).config_hash()
    assert base.config_hash() != base.with_overrides(["train.learning_rate=1e-5"]).config_hash()
    # a field added later keeps earlier runs' identity at its neutral value (a grid resumes across the upgrade)
    assert base.config_hash() == base.with_overrides(["train.stop_on_collapse=false"]).config_hash()
    assert base.config_hash() != base.with_overrides(["train.stop_on_collapse=true"]).config_hash()


def test_derived_values():
    assert TrainConfig(batch_size=16, grad_accum=2).effective_batch_size == 32
    assert RunConfig().method.resolved_placement() == "qv"
    assert RunConfig.from_dict({"method": {"name": "qlora"}}).method.quantized
    assert "Per-device" in field_help(TrainConfig, "batch_size")


def test_override_words_that_yaml_reads_as_booleans():
    config = RunConfig().with_overrides(["train.eval_strategy=no", "train.gradient_checkpointing=yes"])
    assert config.train.eval_strategy == "no" and config.train.gradient_checkpointing is True
    assert RunConfig().with_overrides(["method.double_quant=off"]).method.double_quant is False


def test_broken_yaml_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntrain:\n  learning_rate: 1e-4\n   epochs: 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML at line 4, column 10: mapping values"):
        RunConfig.from_yaml(path)
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"at line 2, column 1: .*flow sequence that starts at line 1, column 7"):
        RunConfig.from_yaml(path)
