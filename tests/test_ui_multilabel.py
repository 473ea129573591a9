"""The UI's handlers with multi-label runs: each tab says what a label set is, shows its figures, and leaves
single-label runs as they were. Handlers are called as functions (tests/test_ui_handlers.py's pattern); the runs are
tiny models trained once for the module (a multi-label one whose words say their labels, and a single-label one to
mix with it), or results written straight into a registry where no model is needed."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from test_multilabel import multi_label_config, multi_label_rows, write_rows
from test_ui_handlers import built, page_values, running_run, tiny_config, write_events

from studio.config import MetricName, RunConfig
from studio.inference import Prediction
from studio.registry import Registry
from studio.results import Calibration, RunSummary
from studio.ui import compare_tab, data_tab, model_tab, playground_tab, runs_tab, train_tab
from studio.ui.formatting import results_md, run_choices

NAMES = ["anger", "joy", "neutral"]
BOTH = "the film angry furious happy glad it"
"""A text the tiny multi-label run gives both anger and joy (its words say them, amid its training filler)."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> tuple[Path, str, str, str]:
    """(runs folder, a multi-label run, a single-label run, the multi-label data file), trained once."""
    from studio.training import Run

    root = tmp_path_factory.mktemp("ui-multilabel")
    source = write_rows(root / "emotions.csv", multi_label_rows())
    registry = Registry(root / "runs")
    multi = multi_label_config(source, tiny_model_dir("bert"))
    single = tiny_config(tiny_model_dir("bert")).with_overrides(["train.max_steps=4", "train.eval_strategy=no"])
    ids = []
    for config in (multi, single):
        result = Run(config, registry).execute()
        assert result.status == "completed", result.message
        ids.append(result.run_id)
    return root / "runs", ids[0], ids[1], source


# ---- Data tab ----------------------------------------------------------------------------------------------------
def test_the_data_tab_says_in_plain_words_what_auto_decided(runs_dir, tiny_model_dir, tmp_path):
    session, data = built(runs_dir, data_tab)
    source = write_rows(tmp_path / "emotions.csv", multi_label_rows(80))
    config = tiny_config(tiny_model_dir("bert"), source=source, label_separator="|", max_samples=None)
    out = data_tab.inspect_data(session, data, page_values(session, config))
    md = out[data.summary]
    assert "**Multi-label task** (auto): some rows carry several labels, so each text gets every label" in md
    assert "(1.25 labels per text in train)" in md  # a quarter of the rows carry both anger and joy
    assert "labels 2.1:1, largest to smallest in train (rows carrying each label)" in md  # 33 anger, 16 neutral
    assert "Rows carrying each label" in str(out[data.labels_plot].layout.title.text)
    train_bars = next(t for t in out[data.labels_plot].data if t.name == "train")
    counts = dict(zip(train_bars.x, train_bars.y, strict=True))
    assert counts == {"anger": 33, "joy": 31, "neutral": 16} and sum(counts.values()) == 64 * 1.25  # once per label
    assert out[session.num_labels] == 3
    # rows with several labels dropped: a single-label task, and the page says why
    dropped = page_values(session, config.with_overrides(["data.multi_label=drop"]))
    md = data_tab.inspect_data(session, data, dropped)[data.summary]
    assert "**Single-label task** (auto): each text gets exactly one class; 20 rows carried several labels" in md
    imdb = page_values(session, tiny_config(tiny_model_dir("bert")))
    md = data_tab.inspect_data(session, data, imdb)[data.summary]
    assert "**Single-label task** (auto): each text gets exactly one class; no row carries several labels" in md
    bad = {**page_values(session, config), data.task: "multi_label", data.several: "drop"}  # as the page sends them
    said = data_tab.inspect_data(session, data, bad)[data.summary]  # where the summary was, the fields in sight
    assert session.form.words("data.multi_label: 'drop' makes the data single-label, but data.task is") in said


def test_the_task_and_rows_with_several_labels_stay_in_step(runs_dir):
    session, data = built(runs_dir, data_tab)
    assert data_tab.several_for("multi_label", "drop") == data_tab.KEEP  # multi-label keeps every label
    assert data_tab.several_for("single_label", data_tab.KEEP) == "drop"  # what single-label does with them
    assert data_tab.several_for("auto", "first") == gr.skip()
    assert data_tab.task_for("first", "multi_label") == "single_label"
    assert data_tab.task_for(data_tab.KEEP, "single_label") == "auto"
    # the form holds "keep every label" as the config's None, and reads every combination back as it was
    for task, several in (("auto", None), ("multi_label", None), ("single_label", "drop"), ("auto", "first")):
        config = RunConfig.from_dict({"data": {"task": task, "multi_label": several}})
        values = session.form.values(config)
        assert values[data.several] == (several or data_tab.KEEP) and values[data.task] == task
        assert session.form.read(config.to_dict(), values) == config
    separator = session.form.component("data.label_separator")
    assert session.form.read(None, {**session.form.values(RunConfig()), separator: "|"}).data.label_separator == "|"


# ---- Model tab ---------------------------------------------------------------------------------------------------
def test_the_best_model_metric_offers_what_the_config_allows(runs_dir):
    session, _ = built(runs_dir, model_tab)
    dropdown = session.form.component("train.metric_for_best")
    offered = [c[1] for c in dropdown.choices]
    assert offered == list(typing.get_args(MetricName))
    assert {"f1_micro", "hamming_loss", "roc_auc_macro", "ap_macro"} <= set(offered)


# ---- Train tab ---------------------------------------------------------------------------------------------------
def test_the_live_view_of_a_multi_label_run(runs_dir):
    session, train = built(runs_dir, train_tab)
    run_id = running_run(session.registry)
    write_events(session.registry, run_id, {
        "kind": "eval", "split": "validation", "step": 3, "accuracy": 0.31, "f1_macro": 0.42, "f1_micro": 0.55,
        "f1_weighted": 0.5, "hamming_loss": 0.08, "roc_auc_macro": 0.81, "ap_macro": 0.47, "loss": 0.2,
        "f1/joy": 0.61, "f1/anger": 0.23,
    })  # fmt: skip
    out = train_tab.tick(session, train, run_id, "", [], None)
    md = out[train.results]
    assert "### Validation at step 3: macro F1 0.420 · micro F1 0.550 · exact match 31.00%" in md
    assert "each label given at probability 0.5 while training" in md and "| joy | 0.610 |" in md
    names = [t.name for t in out[train.metric_plot].data]
    assert {"exact match", "micro F1", "macro F1", "F1 joy"} <= set(names) and "accuracy" not in names


def test_the_results_of_a_multi_label_run(trained):
    runs, multi, _, _ = trained
    session, train = built(runs, train_tab)
    out = train_tab.tick(session, train, multi, "", [], None)
    md = out[train.results]
    assert md.startswith("### Test macro F1 ") and " · micro F1 " in md and " · exact match " in md
    said = ("Hamming loss", "ROC-AUC", "average precision", "No confusion matrix: a text may carry several",
            "a text gets every label whose probability reaches that label's threshold (tuned on validation",
            "| label | precision | recall | F1 | support | threshold |", "| joy |",
            "on test, over every (text, label) probability: ECE", "least sure label decision reaches")  # fmt: skip
    assert [words for words in said if words not in md] == []
    assert "### Test accuracy" not in md and "| class |" not in md
    scores, reliability = train_tab.result_plots(session, multi, out[train.seen])
    assert sorted(scores.data[0].y) == NAMES and "F1 per label" in scores.layout.title.text  # the matrix's place
    assert reliability.layout.xaxis.title.text == "mean probability of a (text, label)" and len(reliability.data) == 3
    assert reliability.layout.yaxis.title.text == "share that carry the label"


def test_calibration_with_a_temperature_per_label_is_said_so(trained):
    runs, multi, _, _ = trained
    summary = Registry(runs).summary(multi)
    assert summary is not None and summary.test.multi_label
    each = Calibration(1.0, validation_rows=24, test_rows=24, ece_before=0.1, ece_after=0.05, brier_before=0.2,
                       brier_after=0.18, per_label={"anger": 0.8, "joy": 1.6, "neutral": 1.1},
                       method="temperature_per_label")  # fmt: skip
    md = results_md(RunSummary.from_dict({**summary.to_dict(), "calibration": each.to_dict()}))
    assert "a temperature per label (0.80-1.60; it predicted held-out validation texts better than one)" in md
    one = Calibration(1.25, validation_rows=24, test_rows=24, ece_before=0.1, ece_after=0.05)
    md = results_md(RunSummary.from_dict({**summary.to_dict(), "calibration": one.to_dict()}))
    assert "one temperature 1.25 for every label" in md and "ECE 0.100 → 0.050" in md


def test_a_multi_label_summary_keeps_each_labels_threshold(trained):
    runs, multi, single, _ = trained
    registry = Registry(runs)
    test = registry.summary(multi).test
    thresholds = json.loads((registry.run_dir(multi) / "thresholds.json").read_text())["per_label"]
    assert {n: c.threshold for n, c in test.per_class.items()} == pytest.approx(thresholds)
    assert test.to_dict()["per_class"]["joy"]["threshold"] == pytest.approx(thresholds["joy"])
    assert "threshold" not in registry.summary(single).test.to_dict()["per_class"]["positive"]  # unchanged


# ---- Playground --------------------------------------------------------------------------------------------------
def test_the_playground_shows_a_label_set_with_its_thresholds(trained):
    runs, multi, _, _ = trained
    session, play = built(runs, playground_tab)
    label, hidden_b, said, bars, bars_b = playground_tab.predict_text(session, multi, None, BOTH)
    assert said in ("Run A: **anger, joy**", "Run A: **joy, anger**")  # every label above its threshold
    assert set(label) == set(NAMES)  # the Label's value as for any run: /predict keeps its shape
    assert bars["visible"] is True and hidden_b["visible"] is False and bars_b["visible"] is False
    shown_label, shown_bars = playground_tab.shown_for(session, multi)  # picking the run: the bars, not the Label
    assert shown_label["visible"] is False and shown_bars["visible"] is True and shown_bars["value"].layout.annotations
    figure = bars["value"]
    assert figure.layout.title.text in ("Run A: anger, joy (2 of 3 labels)", "Run A: joy, anger (2 of 3 labels)")
    given, left_out, ticks, _ = figure.data
    assert set(given.y) == {"anger", "joy"} and list(left_out.y) == ["neutral"]
    assert ticks.name == "threshold" and list(ticks.y) == list(figure.layout.yaxis.categoryarray)
    thresholds = json.loads((session.registry.run_dir(multi) / "thresholds.json").read_text())["per_label"]
    assert dict(zip(ticks.y, ticks.x, strict=True)) == pytest.approx(thresholds)
    unsure = playground_tab.predict_text(session, multi, None, BOTH, 0.99)
    assert unsure[2].startswith("Run A: **unsure** (least sure label decision ") and "< 99%; it would give" in unsure[2]
    assert unsure[3]["value"].layout.title.text == "Run A: unsure (2 of 3 labels would be given)"


def test_the_playground_warns_of_a_run_that_did_not_learn(trained):
    runs, multi, single, _ = trained
    session, play = built(runs, playground_tab)
    session.registry.update(multi, flag="untrained")
    try:
        said = playground_tab.predict_text(session, single, multi, BOTH)[2]
    finally:
        session.registry.update(multi, flag="")  # the module's other tests use the run
    lines = said.split("  \n")
    assert lines[0].startswith("Run A: **") and lines[1].startswith("⚠ Run B did not learn (**untrained**)")
    assert "⚠" not in playground_tab.predict_text(session, single, multi, BOTH)[2]


def test_the_playground_answers_none_in_words():
    probs, cuts = {"anger": 0.2, "joy": 0.1}, {"anger": 0.5, "joy": 0.4}
    none = Prediction("x", "", 0.5, probs, labels=(), thresholds=cuts)
    assert playground_tab._verdict([("Run A", none)], None) == "Run A: **(none): no label reached its threshold**"
    single = Prediction("x", "positive", 0.9, {"positive": 0.9, "negative": 0.1})
    assert playground_tab._verdict([("Run A", single)], None) == ""  # a single-label run alone: its Label says it
    both = playground_tab._verdict([("Run A", single), ("Run B", none)], None)
    assert both == "Run A: **positive** · Run B: **(none): no label reached its threshold**"


def test_a_b_mixes_single_and_multi_label_runs(trained):
    runs, multi, single, _ = trained
    session, play = built(runs, playground_tab)
    label_a, label_b, said, bars_a, bars_b = playground_tab.predict_text(session, single, multi, "happy glad")
    assert set(label_a) == {"negative", "positive"}
    assert bars_a["visible"] is False and label_b["visible"] is False and bars_b["visible"] is True
    assert said.startswith("Run A: **") and " · Run B: **" in said
    assert bars_b["value"].layout.title.text.startswith("Run B: ")
    again = playground_tab.predict_text(session, multi, single, "happy glad")  # the other way round
    assert set(again[0]) == set(NAMES) and again[3]["visible"] is True and again[1]["visible"] is True


def test_mistakes_and_file_labelling_of_a_multi_label_run(trained, tmp_path):
    runs, multi, _, _ = trained
    session, play = built(runs, playground_tab)
    frame, texts = playground_tab.show_mistakes(session, multi, "test")
    assert list(frame.columns) == ["label", "predicted", "confidence", "missing", "extra", "text"]  # labels first
    assert len(texts) == len(frame) and frame["confidence"].iloc[0].endswith("%")
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nthe film angry furious happy glad it\nthe a plain words film it\n")
    out = pd.read_csv(playground_tab.label_file(session, multi, str(texts), "", 0.0))
    assert {"predicted_labels", "label_count", "prob_anger", "prob_joy", "prob_neutral"} <= set(out.columns)
    assert "predicted_label" not in out.columns and out["label_count"].iloc[0] == 2


# ---- Runs tab ----------------------------------------------------------------------------------------------------
def test_the_runs_tab_names_a_multi_label_run_by_its_macro_f1(trained):
    runs, multi, single, _ = trained
    session, tab = built(runs, runs_tab)
    table = {row[0]: dict(zip(runs_tab.COLUMNS, row, strict=True)) for row in runs_tab.runs_table(session)}
    assert table[multi]["task"] == "multi-label" and table[single]["task"] == "single-label"
    live = session.registry.create(RunConfig(name="loading")).id  # no label map yet: the data has not decided
    try:
        assert dict(zip(runs_tab.COLUMNS, runs_tab.runs_table(session)[0], strict=True))["task"] == ""
    finally:
        session.registry.update(live, status="failed")  # a failed run may be deleted: the others' list as it was
        session.registry.delete(live)
    labels = dict((v, k) for k, v in run_choices(session.registry, with_model=True))
    f1 = session.registry.get(multi).f1_macro
    assert labels[multi].endswith(f" · completed · macro-F1 {f1:.3f}") and labels[single].endswith("%")
    details, _ = runs_tab.show(session, multi)
    assert "### Test macro F1" in details and "No confusion matrix" in details
    assert runs_tab.separator_for(session, multi)["visible"] is True  # shown for a multi-label run only
    assert runs_tab.separator_for(session, single)["visible"] is False
    assert runs_tab.separator_for(session, None)["visible"] is False
    _, pareto = runs_tab.draw_compare(session, [multi], "validation macro F1")
    assert pareto.layout.yaxis.title.text == "accuracy (multi-label: macro F1)"  # beside a single-label run
    scored = [t for t in pareto.data if t.hovertext and any(multi in h for h in t.hovertext)]
    assert scored and "scored by: macro F1 (multi-label)" in next(h for h in scored[0].hovertext if multi in h)


def test_evaluating_a_multi_label_run_on_a_file_takes_a_separator(trained, tmp_path):
    runs, multi, _, source = trained
    session, tab = built(runs, runs_tab)
    md = runs_tab.evaluate_on_file(session, multi, source, "", "", "|")
    assert "**macro F1 " in md and "micro F1" in md and "exact match" in md and "Hamming loss" in md
    assert "| label | precision | recall | F1 | support | threshold |" in md and "No confusion matrix" in md
    details, _ = runs_tab.show(session, multi)
    assert "Evaluations on other files" in details and "rows of emotions.csv, macro-F1 " in details
    assert "exact match" in details
    commas = tmp_path / "commas.csv"
    pd.read_csv(source).assign(label=lambda f: f["label"].str.replace("|", ",")).to_csv(commas, index=False)
    assert "**commas**" in runs_tab.evaluate_on_file(session, multi, str(commas), "", "", "")  # empty: ","
    with pytest.raises(gr.Error, match="labels the model does not know: 'anger\\|joy'"):
        runs_tab.evaluate_on_file(session, multi, source, "", "", ",")  # the wrong separator: one unknown label


def test_results_written_without_thresholds_take_them_from_the_thresholds_file(tmp_path):
    from studio import multilabel
    from studio.ui.formatting import run_summary

    registry = Registry(tmp_path / "runs")
    run_id = finished(registry, RunConfig(), "multi_label", accuracy=0.3, f1=0.6)  # eval.json without thresholds
    assert "| anger | 0.600 | 0.600 | 0.600 | 8 | n/a |" in results_md(registry.summary(run_id))
    multilabel.write(registry.run_dir(run_id), multilabel.Thresholds({"anger": 0.3, "joy": 0.45, "neutral": 0.6}))
    md = results_md(run_summary(registry, run_id))
    assert "| anger | 0.600 | 0.600 | 0.600 | 8 | 0.30 |" in md and "(tuned on validation, 0.30-0.60)" in md


# ---- Compare tab and reports -------------------------------------------------------------------------------------
def finished(registry: Registry, config: RunConfig, task: str, accuracy: float, f1: float) -> str:
    """A completed run of `config` with results but no model (what a study's figures read)."""
    run_id = registry.create(config).id
    folder = registry.run_dir(run_id)
    per_class = {n: {"precision": f1, "recall": f1, "f1": f1, "support": 8} for n in NAMES}
    test = {"accuracy": accuracy, "f1_macro": f1, "f1_weighted": f1, "n": 24, "per_class": per_class,
            **({"task": "multi_label", "f1_micro": f1} if task == "multi_label" else {})}  # fmt: skip
    summary = {"test": test, "efficiency": {"trainable_params": 10, "total_params": 100, "trainable_percent": 10.0,
               "train_seconds": 5.0, "train_samples_per_second": 1.0, "total_seconds": 6.0, "steps": 3, "epochs": 1.0,
               "peak_memory_mb": 300.0}, "data": {"label_names": NAMES}, "reproducibility": {}}  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(summary))
    (folder / "label_map.json").write_text(json.dumps({"id2label": dict(enumerate(NAMES)), "task": task}))
    write_events(registry, run_id, {"kind": "eval", "step": 3, "epoch": 1.0, "accuracy": accuracy, "f1_macro": f1})
    registry.update(run_id, status="completed", accuracy=accuracy, f1_macro=f1, peak_memory_mb=300.0,
                    train_seconds=5.0, trainable_params=10)  # fmt: skip
    return run_id


def a_grid(folder: Path, task: str) -> str:
    import yaml

    base = {"name": "ml-study", "data": {"source": "goemotions", "task": task}, "model": {"name": "minilm-l6"}}
    grids = folder / "grids"
    grids.mkdir(exist_ok=True)
    axes = {"method.name": ["full", "lora"], "seed": [1, 2]}
    (grids / f"{task}.yaml").write_text(yaml.safe_dump({"name": f"{task}-study", "base": base, "axes": axes}))
    return task


@pytest.mark.parametrize("task", ["multi_label", "single_label"])
def test_a_study_is_scored_by_macro_f1_when_its_runs_are_multi_label(tmp_path, task):
    from studio import study_plots
    from studio.report import write_report

    name = a_grid(tmp_path, task)
    with gr.Blocks():
        from studio.ui.session import Session

        session = Session.create(tmp_path / "runs", grids_dir=tmp_path / "grids")
        tab = compare_tab.build(session)
    grid = compare_tab.load_grid(session, name)
    for point in grid.points():  # exact match far under macro F1, as multi-label runs have it
        f1 = 0.7 if point.config.method.name == "full" else 0.6
        finished(session.registry, point.config, task, accuracy=0.3, f1=f1)
    out = compare_tab.show_study(session, tab, name)
    methods = out[tab.figures[compare_tab.STUDY_PLOTS.index("methods")]]["value"]
    table = out[tab.table]
    multi = task == "multi_label"
    assert methods.layout.title.text.startswith("Macro F1 by method" if multi else "Accuracy by method")
    assert ("macro F1" if multi else "accuracy") in table["headers"]
    assert sorted(row[table["headers"].index("± std") - 1] for row in table["value"]) == (
        ["0.600", "0.700"] if multi else ["30.0%", "30.0%"])  # fmt: skip
    pareto = out[tab.figures[compare_tab.STUDY_PLOTS.index("pareto_memory")]]["value"]
    assert pareto.layout.title.text == ("Macro F1 vs peak memory" if multi else "Accuracy vs peak memory")
    rows = [{"x": 1, "y": 2, "f1_macro_mean": 0.6, "accuracy_mean": 0.3, "n": 1}]
    heatmap = study_plots.accuracy_heatmap(rows, "x", "y", metric="f1_macro")  # a heatmap of multi-label runs
    assert heatmap.layout.title.text == "macro F1 (mean over seeds)" and heatmap.data[0].z[0][0] == 0.6
    page = Path(write_report(session.registry, tmp_path / "report", grid=grid, images=False)["html"]).read_text()
    assert ("<h2>Macro F1 vs peak memory</h2>" in page) == multi
    assert ("<h2>Accuracy vs peak memory</h2>" in page) != multi and ("scored by macro F1" in page) == multi
