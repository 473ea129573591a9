"""Skewed classes: class weights and focal loss (studio/losses.py), checked against the libraries' own forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_training import events_of, tiny_config

from studio.config import RunConfig
from studio.errors import ConfigError
from studio.losses import ClassifierLoss, class_weights, imbalance_note, imbalance_ratio, loss_for
from studio.registry import Registry
from studio.training import Run

NAMES = ["neg", "pos"]


def test_balanced_weights_are_scikit_learns_and_average_one_over_the_training_rows():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    counts = {"neg": 90, "pos": 10}
    weights = class_weights("balanced", NAMES, counts)
    y = np.array([0] * 90 + [1] * 10)
    assert weights == pytest.approx(list(compute_class_weight("balanced", classes=np.array([0, 1]), y=y)))
    assert (90 * weights[0] + 10 * weights[1]) / 100 == pytest.approx(1.0)
    assert class_weights("none", NAMES, counts) is None


def test_named_weights_keep_their_ratio_default_to_one_and_refuse_unknown_labels():
    weights = class_weights({"pos": 4.0}, NAMES, {"neg": 50, "pos": 50})
    assert weights[1] / weights[0] == pytest.approx(4.0) and (weights[0] + weights[1]) / 2 == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"'positive' is not a label of this data; its labels: neg, pos"):
        class_weights({"positive": 2.0}, NAMES, {"neg": 5, "pos": 5})
    with pytest.raises(ConfigError, match="'pos' has no rows"):
        class_weights("balanced", NAMES, {"neg": 5, "pos": 0})


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"class_weights": {"pos": -1.0}}, "train.class_weights: the weight of 'pos' is -1; weights must be > 0"),
        ({"class_weights": {}}, "train.class_weights: is empty"),
        ({"class_weights": "heavy"}, "train.class_weights: Input should be 'none' or 'balanced' (got 'heavy')"),
        ({"focal_gamma": -0.5}, "train.focal_gamma: Input should be greater than or equal to 0"),
        ({"loss": "hinge"}, "train.loss: Input should be 'cross_entropy' or 'focal'"),
    ],
)
def test_bad_loss_settings_are_refused_in_one_line(train, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"train": train})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_loss_is_pytorchs_cross_entropy_weighted_per_example_and_focal_on_top():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    plain = ClassifierLoss()({"logits": logits}, labels)
    assert plain == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
    smoothed = ClassifierLoss(label_smoothing=0.1)({"logits": logits}, labels)
    assert smoothed == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), abs=1e-6)
    weights = [0.5, 2.0, 1.0]
    weighted = ClassifierLoss(weights)({"logits": logits}, labels)
    per_example = F.cross_entropy(logits, labels, reduction="none") * torch.tensor(weights)[labels]
    assert weighted == pytest.approx(per_example.mean().item(), abs=1e-6)
    # focal: (1 - p_true)^gamma x CE, so a confident right answer costs almost nothing and a wrong one nearly CE
    sure = torch.tensor([[6.0, 0.0], [0.0, 6.0]])
    focal, ce = (
        ClassifierLoss(gamma=2.0)({"logits": sure}, torch.tensor([0, 0])),
        F.cross_entropy(sure, torch.tensor([0, 0]), reduction="none"),
    )
    p = torch.softmax(sure, -1)[:, 0]
    assert focal == pytest.approx((((1 - p) ** 2) * ce).mean().item(), abs=1e-6)
    assert ((1 - p[0]) ** 2 * ce[0]) < 1e-4 * ce[0] and ((1 - p[1]) ** 2 * ce[1]) > 0.99 * ce[1]
    # under gradient accumulation the Trainer passes the accumulated batch's example count
    assert ClassifierLoss(weights)({"logits": logits}, labels, num_items_in_batch=16) == pytest.approx(weighted / 2)


def test_the_imbalance_is_told_with_what_to_change_above_three_to_one():
    train = RunConfig().train
    assert imbalance_ratio({"neg": 90, "pos": 10}) == 9.0 and imbalance_ratio({"a": 5, "b": 5}) == 1.0
    note = imbalance_note({"neg": 900, "pos": 100}, train)
    assert note is not None and "9.0:1" in note and "'pos' 100" in note
    assert "class_weights: balanced" in note and "metric_for_best: f1_macro" in note
    assert imbalance_note({"neg": 300, "pos": 100}, train) is None
    set_already = RunConfig.from_dict({"train": {"class_weights": "balanced", "metric_for_best": "f1_macro"}}).train
    assert imbalance_note({"neg": 900, "pos": 100}, set_already).endswith("'pos' 100)")
    assert loss_for(train, NAMES, {"neg": 1, "pos": 1}) is None  # the model's own loss: nothing changes


def test_a_skewed_run_trains_with_balanced_focal_loss_and_says_so(tiny_model_dir, runs_dir, tmp_path):
    rows = ["text,label"] + [f"a fine film number {i},pos" for i in range(90)]
    rows += [f"a dull film number {i},neg" for i in range(10)]
    (tmp_path / "skewed.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(tiny_model_dir("bert"), "full", class_weights="balanced", loss="focal").with_overrides(
        [f"data.source={tmp_path / 'skewed.csv'}", "data.splits=ratio", "data.max_samples=null"]
    )
    registry = Registry(runs_dir)
    run = Run(config, registry)
    result = run.execute()
    assert result.status == "completed", result.message
    notes = [e["message"] for e in events_of(registry, result.run_id) if e.get("kind") == "note"]
    assert any("skewed 9.0:1 in train" in n and "metric_for_best: f1_macro" in n for n in notes)
    assert "class_weights: balanced" not in next(n for n in notes if "skewed" in n)  # it is already set


def test_weights_naming_a_label_the_data_lacks_fail_before_anything_is_written(tiny_model_dir, runs_dir):
    config = tiny_config(tiny_model_dir("bert"), class_weights={"thrilled": 3.0})
    registry = Registry(runs_dir)
    result = Run(config, registry).execute()
    assert result.status == "failed" and result.run_id is None
    assert result.message.startswith("train.class_weights: 'thrilled' is not a label of this data; its labels:")
    assert registry.list() == []


def test_the_data_tab_shows_the_imbalance_and_the_model_tab_reads_class_weights_as_typed():
    from studio.dataview import DataOverview
    from studio.ui.data_tab import summary_md
    from studio.ui.model_tab import weights_to_config, weights_to_ui

    counts = {"train": {"neg": 900, "pos": 100}, "validation": {"neg": 90, "pos": 10}}
    overview = DataOverview([], "text", "label", None, {"train": 1000, "validation": 100, "test": 100}, NAMES, counts)
    md = summary_md(overview, 128, RunConfig().train)
    assert "classes 9.0:1, largest to smallest in train" in md and "**Classes are skewed 9.0:1" in md
    assert "consider train.class_weights: balanced (or loss: focal) and metric_for_best: f1_macro" in md
    assert weights_to_config("Balanced") == "balanced" and weights_to_config("") == "none"
    assert weights_to_config("pos: 3, neg: 1") == {"pos": 3.0, "neg": 1.0}
    assert weights_to_config("pos=3") == "pos=3"  # not a form it reads: the config's check names it
    assert weights_to_ui({"pos": 3.0, "neg": 1.0}) == "pos: 3, neg: 1" and weights_to_ui("none") == "none"
    with pytest.raises(ConfigError, match="train.class_weights: Input should be 'none' or 'balanced'"):
        RunConfig.from_dict({"train": {"class_weights": weights_to_config("pos=3")}})
