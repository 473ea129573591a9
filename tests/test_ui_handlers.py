"""The UI's handlers called as functions: a Session, a tab's components, plain values; no page, no server.

A tab's components are made in a `gr.Blocks` that is never launched (handlers key their results by them); the
runs they show are written straight into a temporary registry, so no test here trains but the learning-rate
range test's (a tiny model, a dozen steps).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from studio.config import RunConfig
from studio.hardware import Device
from studio.presets import PRESETS_DIR
from studio.registry import Registry
from studio.results import (
    Calibration,
    DataReport,
    Efficiency,
    Health,
    MemoryRecord,
    Reproducibility,
    RunSummary,
    SplitMetrics,
)
from studio.ui import compare_tab, data_tab, model_tab, runs_tab, train_tab
from studio.ui.formatting import (
    clip,
    count,
    duration,
    gigabytes,
    megabytes,
    megabytes_column,
    percent,
    results_md,
    run_choices,
    run_name,
    span,
    text_table,
)
from studio.ui.session import Session

LABELS = ["negative", "positive"]


def built(runs_dir: Path, *tabs: Any, preset: Path | None = None) -> tuple:
    """(a Session, then each tab module's built components), made in a Blocks nobody launches."""
    with gr.Blocks():
        session = Session.create(runs_dir, preset)
        return (session, *(tab.build(session) for tab in tabs))


def page_values(session: Session, config: RunConfig) -> dict[Any, Any]:
    """What a page whose form shows `config` sends (form fields and the page's state)."""
    return {**session.form.values(config), session.base: config.to_dict(), session.base_preset: None,
            session.num_labels: 2, session.train_rows: None}  # fmt: skip


def tiny_config(model_dir: Path, **data: Any) -> RunConfig:
    return RunConfig.from_dict({
        "name": "tiny-ui",
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32, **data},
        "model": {"name": str(model_dir)},
        "method": {"name": "lora", "r": 4},
    })  # fmt: skip


def write_events(registry: Registry, run_id: str, *events: dict[str, Any]) -> None:
    """Append events to the run's metrics.jsonl, as a training run writes them."""
    with open(registry.run_dir(run_id) / "metrics.jsonl", "a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps({"time": time.time(), **event}) + "\n")


def running_run(registry: Registry) -> str:
    """A run that trains (its row is this live process's) and has logged 3 steps and one evaluation."""
    run_id = registry.create(RunConfig(name="live")).id
    write_events(
        registry,
        run_id,
        {"kind": "status", "status": "training", "message": "training"},
        {"kind": "progress", "step": 3, "max_steps": 10, "epoch": 0.3, "elapsed": 12.0, "eta": 28.0},
        *({"kind": "log", "step": s, "loss": 0.7 - s / 100, "learning_rate": 1e-3} for s in (1, 2, 3)),
        {"kind": "eval", "split": "validation", "step": 2, "accuracy": 0.75, "f1_macro": 0.7, "loss": 0.6,
         "f1/negative": 0.72, "f1/positive": 0.68},
    )  # fmt: skip
    return run_id


def a_summary(**memory) -> RunSummary:
    """Results as a finished run writes them (eval.json)."""
    test = {"accuracy": 0.8, "f1_macro": 0.79, "f1_weighted": 0.8, "n": 24, "confusion_matrix": [[10, 2], [3, 9]],
            "per_class": {n: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 12} for n in LABELS}}  # fmt: skip
    efficiency = Efficiency(trainable_params=1_000, total_params=100_000, trainable_percent=1.0, train_seconds=10.0,
                            train_samples_per_second=19.2, total_seconds=12.0, steps=10, epochs=1.0,
                            peak_memory_mb=500.0, peak_memory_kind="process_rss")  # fmt: skip
    return RunSummary(test=SplitMetrics.from_dict(test), efficiency=efficiency, data=DataReport(list(LABELS)),
                      reproducibility=Reproducibility(), memory=MemoryRecord(**memory), status="completed")  # fmt: skip


def finish(registry: Registry, run_id: str) -> None:
    """End the run: its test results in eval.json, `done` in the log, `completed` in the registry."""
    (registry.run_dir(run_id) / "eval.json").write_text(json.dumps(a_summary().to_dict()))
    (registry.run_dir(run_id) / "label_map.json").write_text(json.dumps(LABELS))
    write_events(registry, run_id, {"kind": "done", "status": "completed", "message": "trained 10 steps"})
    registry.update(run_id, status="completed", accuracy=0.8)


# ---- Train tab ---------------------------------------------------------------------------------------------------
def test_tick_with_no_run_only_samples_the_hardware(runs_dir):
    session, train = built(runs_dir, train_tab)
    first = train_tab.tick(session, train, None, "", [], None)
    assert set(first) == {train.usage, train.usage_plot, train.start, train.stop} and len(first[train.usage]) == 1
    second = train_tab.tick(session, train, None, "", first[train.usage], None)
    assert set(second) == {train.usage, train.start, train.stop}  # the hardware plot waits HARDWARE_EVERY ticks
    assert all(fig is not None for fig in train_tab.result_plots(session, None, ""))  # placeholder figures


def test_tick_follows_a_running_run_and_redraws_only_what_changed(runs_dir):
    session, train = built(runs_dir, train_tab)
    run_id = running_run(session.registry)
    out = train_tab.tick(session, train, run_id, "", [], None)
    assert run_id in out[train.status] and "training" in out[train.status]
    assert "step 3 / 10" in out[train.progress] and "ETA measured after 5 steps" in out[train.progress]
    assert {train.loss_plot, train.metric_plot, train.lr_plot, train.log, train.redrawn} <= set(out)
    results = out[train.results]
    assert "Validation at step 2: accuracy 75.00%" in results and "| positive | 0.680 |" in results
    # Nothing new: status and progress only, the curves are not redrawn.
    again = train_tab.tick(session, train, run_id, out[train.seen], out[train.usage], out[train.redrawn])
    assert train.status in again and not {train.loss_plot, train.log, train.seen} & set(again)
    # A new log line while the last redraw was expensive: the log follows, the curves wait their turn.
    write_events(session.registry, run_id, {"kind": "log", "step": 4, "loss": 0.5})
    busy = {"at": time.time(), "cost": 60.0}
    later = train_tab.tick(session, train, run_id, out[train.seen], out[train.usage], busy)
    assert train.log in later and not {train.loss_plot, train.seen} & set(later)


def test_tick_shows_a_finished_run_with_its_test_results(runs_dir):
    session, train = built(runs_dir, train_tab)
    run_id = running_run(session.registry)
    finish(session.registry, run_id)
    out = train_tab.tick(session, train, run_id, "", [], None)
    assert "completed — trained 10 steps" in out[train.status]
    assert "### Test accuracy 80.00%" in out[train.results] and "24 test texts" in out[train.results]
    figure, reliability = train_tab.result_plots(session, run_id, out[train.seen])
    assert list(figure.data[0].x) == LABELS and figure.data[0].text[0][0].startswith("10<br>")
    assert "No calibration" in str(reliability.layout)  # this summary has none: the diagram says so
    assert train_tab.attach(session) == (run_id, "")  # a fresh page shows the newest run


def test_a_run_that_is_not_learning_is_said_live_and_in_its_results(runs_dir):
    session, train = built(runs_dir, train_tab)
    run_id = running_run(session.registry)
    advice = "the learning rate 0.001 is likely too high for LoRA on this model; try 0.0002"
    reason = "predicts only 'positive' after 3 evaluations (steps 40-120)"
    write_events(session.registry, run_id, {"kind": "health", "flag": "collapsed", "step": 120, "reason": reason,
                                            "advice": advice})  # fmt: skip
    status = train_tab.tick(session, train, run_id, "", [], None)[train.status]
    assert "**collapsed**: this run predicts only 'positive' after 3 evaluations" in status and "try 0.0002" in status
    summary = a_summary()
    summary.health = Health("collapsed", "predicts only 'positive'", "try 0.0002", 120)
    assert "⚠ **collapsed**: this run predicts only 'positive'. Try 0.0002." in results_md(summary)
    assert "⚠" not in results_md(a_summary())


def test_tick_of_a_run_that_cannot_exist_says_so(runs_dir):
    session, train = built(runs_dir, train_tab)
    out = train_tab.tick(session, train, "../elsewhere", "drawn", [], None)
    assert out[train.status] == "That run no longer exists." and out[train.ref] is None and out[train.seen] == ""


def test_start_without_a_dataset_is_refused_with_a_message(runs_dir, monkeypatch):
    """A failed Start says why in the message slot under the buttons and leaves every other output as it was (no
    "Error" badge over them); Stop with nothing running is a notice, not an error."""
    said = []
    monkeypatch.setattr(gr, "Warning", lambda message, **_: said.append(("warning", message)))
    monkeypatch.setattr(gr, "Info", lambda message, **_: said.append(("info", message)))
    session, _, train = built(runs_dir, data_tab, train_tab)
    values = {**page_values(session, RunConfig()), session.form.component("data.source"): " ", train.gpus: 1}
    out = train_tab.start_run(session, train, values)
    assert list(out) == [train.message] and "choose a dataset first" in out[train.message]
    assert said == [("warning", out[train.message].removeprefix("⚠️ "))]  # the same line as a toast
    assert train_tab.stop_run(session, train) == gr.skip()  # nothing to update: no message, no badge
    assert said[-1] == ("info", "Nothing is training: there is no run to stop")


def test_a_bad_field_is_said_in_the_pages_words_and_outlined(runs_dir, monkeypatch):
    """A config error names the field by its label (not `train.learning_rate`) and carries the field's path, which
    outlines that field (and only it) until the next message."""
    from studio.ui.feedback import FLAGGED, mark_fields, named_fields

    monkeypatch.setattr(gr, "Warning", lambda message, **_: None)
    session, _, model, train = built(runs_dir, data_tab, model_tab, train_tab)
    rate = session.form.component("train.learning_rate")
    values = {**page_values(session, RunConfig()), rate: -1, train.gpus: 1}
    out = train_tab.start_run(session, train, values)
    assert list(out) == [train.message]
    assert out[train.message].startswith("⚠️ Learning rate: Input should be greater than 0 (got -1)")
    assert "train.learning_rate" not in out[train.message].split("<!--")[0]
    assert named_fields(out[train.message]) == ["train.learning_rate"]
    marked = mark_fields(session, session.form.components, out[train.message])
    assert [c for c, u in marked.items() if FLAGGED in u["elem_classes"]] == [rate]
    assert all(FLAGGED not in u["elem_classes"] for u in mark_fields(session, session.form.components, "").values())
    assert session.form.words("data.balance.num_samples: must be") == "Balanced subset (num samples): must be"


def test_start_with_data_inspect_refuses_leaves_no_run_folder_or_row(runs_dir, tiny_model_dir, tmp_path):
    """The page's Start on a file Inspect refuses: the run fails with the CLI's words before it has a folder."""
    session, _, train = built(runs_dir, data_tab, train_tab)
    bad = tmp_path / "bad.csv"
    bad.write_text("body,stars\nfine film,5\n")
    values = {**page_values(session, tiny_config(tiny_model_dir("bert"), source=str(bad))), train.gpus: 1}
    key, *_ = train_tab.start_run(session, train, values)
    session.jobs.current().run.wait(120)
    view = session.jobs.view(key)
    assert view.finished and view.status == "failed" and "no text column found" in view.message
    assert session.registry.list() == []
    assert not [p for p in session.runs_dir.iterdir() if p.is_dir() and p.name not in (".cache", "uploads")]


def test_start_and_stop_are_enabled_by_the_state_of_the_slot(runs_dir):
    """Nothing trains: Start on, Stop off. A run training (here in another process's row: the registry says
    running): Start off, and the summary beside Start says why; Stop stays off, as this app cannot stop it."""
    session, data, train = built(runs_dir, data_tab, train_tab)
    idle = train_tab.controls(session, train)
    assert (idle[train.start]["interactive"], idle[train.stop]["interactive"]) == (True, False)
    run_id = running_run(session.registry)
    busy = train_tab.tick(session, train, run_id, "", [], None)  # a re-attached page gets the same state
    assert (busy[train.start]["interactive"], busy[train.stop]["interactive"]) == (False, False)
    plan = train_tab.start_plan(session, train, data.rows, {**page_values(session, RunConfig()), train.gpus: 1})
    assert plan.startswith(f"**Start is off**: run {run_id} is training in another process")


def test_the_summary_beside_start_says_what_it_will_train(runs_dir, tiny_model_dir):
    """Rows per split, model, method, trainable parameters, peak memory, steps; the time once a finished run of
    the same model, method, max length and batch on this machine measured a step, not before."""
    session, data, train = built(runs_dir, data_tab, train_tab)
    config = tiny_config(tiny_model_dir("bert"))
    values = {**page_values(session, config), train.gpus: 1, data.rows: {"train": 192, "validation": 24, "test": 24}}
    plan = train_tab.start_plan(session, train, data.rows, values)
    assert f"**Start trains** `{config.model.name}` · lora on `imdb-sample`" in plan
    assert "rows: 192 train / 24 validation / 24 test" in plan and "trainable parameters of" in plan
    assert "peak memory ≈ " in plan and "36 steps of 16" in plan and "time: measured after the first steps" in plan
    assert "rows: counted by **Inspect data**" in train_tab.start_plan(session, train, data.rows,
                                                                      {**values, data.rows: {}})  # fmt: skip
    run_id = session.registry.create(config).id  # a finished run of the same: 10 steps in 10 s, 2 s around them
    finish(session.registry, run_id)
    session.registry.update(run_id, train_seconds=10.0)
    plan = train_tab.start_plan(session, train, data.rows, values)
    assert f"time ≈ **0m38s** (1.0 s a step in run `{run_id}` on this machine" in plan
    other = tiny_config(tiny_model_dir("bert"), max_length=64)  # another max length: not the same pace
    assert "measured after the first steps" in train_tab.start_plan(
        session, train, data.rows, {**values, **session.form.values(other)}
    )
    bad = {**values, session.form.component("data.max_length"): -1}
    assert "⚠ Start would stop at this: data.max_length" in train_tab.start_plan(session, train, data.rows, bad)


# ---- Data and Model tabs -----------------------------------------------------------------------------------------
def test_inspect_with_a_missing_column_gives_the_readable_error(runs_dir, tiny_model_dir):
    """A failed Inspect says why where the summary was; the plots and rows of the data shown before are cleared,
    and the column pickers (which the message asks to change) are left as they are."""
    session, data = built(runs_dir, data_tab)
    config = tiny_config(tiny_model_dir("bert"), text_column="body")
    out = data_tab.inspect_data(session, data, page_values(session, config))
    assert "text column 'body' not found; the data has columns: review, sentiment" in out[data.summary]
    assert out[data.summary].startswith("### ⚠ This data cannot be used yet") and "Inspect data** again" in out[
        data.summary]  # fmt: skip
    assert out[data.preview] is None and out[data.lengths] == [] and data.labels_plot in out
    assert not {data.text_column, data.label_column, session.num_labels, session.train_rows, *data.folds} & set(out)


def test_inspect_shows_the_data_and_tells_the_other_tabs(runs_dir, tiny_model_dir):
    session, data = built(runs_dir, data_tab)
    out = data_tab.inspect_data(session, data, page_values(session, tiny_config(tiny_model_dir("bert"))))
    assert "240 rows" in out[data.summary] and "longer than 32" in out[data.summary]
    assert out[session.num_labels] == 2 and out[session.train_rows] == 192  # for the memory estimate
    assert ("review", "review") in out[data.text_column]["choices"]
    assert "| train | 192 | imdb-sample | 0 | — |" in out[data.summary]  # one file: its rows less the carved ones
    assert "| test | 24 | carved from imdb-sample | 0 | 0 |" in out[data.summary]
    preview = out[data.preview]  # the label first, each review cut to a line
    assert list(preview.columns) == ["sentiment", "review"] and preview["review"].str.len().max() <= 120


def test_the_separate_files_and_file_settings_round_trip_into_the_config(runs_dir, tmp_path):
    """The validation and test slots (a path, its own columns) and the file-format fields make the config's
    data.validation_source / test_source, header, delimiter, label_file, merge_label_case and drop_duplicates;
    a config shown in the form reads back the same, and an upload fills a slot with its columns reset."""
    from studio.config import SplitSource

    session, data = built(runs_dir, data_tab)
    field = session.form.component
    values = {**page_values(session, RunConfig()), data.test.source: " held.csv ", data.test.label_column: "stars",
              data.validation.text_column: "content", field("data.header"): "no", field("data.delimiter"): "tab",
              field("data.label_file"): "labels.txt", field("data.merge_label_case"): True,
              field("data.drop_duplicates"): True}  # fmt: skip
    config = session.read(values)
    assert config.data.test_source == SplitSource(source="held.csv", label_column="stars")
    assert config.data.validation_source is None  # no file: a column alone does not make one
    assert (config.data.header, config.data.delimiter, config.data.label_file) == (False, "\t", "labels.txt")
    assert config.data.merge_label_case and config.data.drop_duplicates
    shown = session.form.values(config)
    assert (shown[data.test.source], shown[data.test.label_column], shown[field("data.delimiter")]) == (
        "held.csv", "stars", "tab")  # fmt: skip
    assert session.read({**page_values(session, config), **shown}) == config
    assert session.read({**values, field("data.delimiter"): "", field("data.header"): "auto"}).data.delimiter is None
    # A preset's parts the page does not show (the split of a folder) stay while its file does, not for another
    preset = RunConfig.from_dict({"data": {"validation_source": {"source": "dev", "split": "validation_matched"}}})
    page = page_values(session, preset)
    assert session.read(page).data.validation_source.split == "validation_matched"
    assert session.read({**page, data.validation.source: "other.csv"}).data.validation_source.split is None
    upload = tmp_path / "held.csv"
    upload.write_text("text,label\na,pos\n")
    kept, text_column, label_column = data_tab.use_upload(session, str(upload))
    assert Path(kept).parent == session.uploads_dir and (text_column, label_column) == ("", "")
    assert data_tab._file_name(kept) == "held.csv"  # what the table of splits calls it


def test_choosing_a_source_clears_the_old_data_and_fills_the_columns(runs_dir, tiny_model_dir, tmp_path):
    """An upload (or a sample, or a typed path) replaces what belonged to the old source at once: the summary,
    plots, rows, counts and column picks; the new header fills the column pickers and the full Inspect follows.
    The same source again (leaving the box unchanged) reads nothing; an unreadable one says so in place."""
    session, data = built(runs_dir, data_tab)
    upload = tmp_path / "tickets.csv"
    upload.write_text("text,label\n" + "".join(f"ticket {i} is about things,{'billing' if i % 2 else 'tech'}\n"
                                                for i in range(40)))  # fmt: skip
    kept, *_ = data_tab.use_upload(session, str(upload))
    field = session.form.component
    values = {
        **page_values(session, tiny_config(tiny_model_dir("bert"))),
        data.shown: "imdb-sample",
        data.pending: False,
        field("data.source"): kept,
    }  # the old source's columns still picked
    out = data_tab.source_changed(session, data, values)
    assert out[data.summary].startswith("**tickets.csv**: columns `text`, `label`. Inspecting")
    assert out[data.rows] == {} and out[data.lengths] == [] and out[session.train_rows] is None
    assert list(out[data.preview].columns) == ["text", "label"] and len(out[data.preview]) == 20
    assert out[data.text_column]["value"] == data_tab.DETECT and ("label", "label") in out[data.label_column]["choices"]
    assert out[data.shown] == kept and out[data.pending] is True and data.upload not in out  # the upload stays
    assert data_tab.source_changed(session, data, {**values, data.shown: kept}) == {data.pending: False}
    values |= {data.pending: True, field("data.text_column"): "", field("data.label_column"): ""}
    full = data_tab.inspect_new(session, data, values)
    assert "40 rows" in full[data.summary] and full[data.rows]["train"] == 32
    assert data_tab.inspect_new(session, data, {**values, data.pending: False}) == gr.skip()
    missing = data_tab.source_changed(session, data, {**values, field("data.source"): str(tmp_path / "gone.csv")})
    assert "This data cannot be used yet" in missing[data.summary] and "file not found" in missing[data.summary]
    assert missing[data.pending] is False and missing[data.preview] is None and missing[data.upload] is None
    assert (data_tab.sample_of("imdb-sample"), data_tab.sample_of(kept)) == ("imdb-sample", None)


def test_inspect_says_where_each_split_came_from_and_what_leaked(runs_dir, tiny_model_dir, tmp_path):
    """Separate validation and test files: the summary's table gives each split's rows, origin, repeated texts and
    texts also in train; the leakage is listed first among the notes, marked."""
    import pandas as pd

    texts = [f"review {i} was {'good' if i % 2 else 'bad'}" for i in range(60)]
    pd.DataFrame({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(60)]}).to_csv(
        tmp_path / "train.csv", index=False)  # fmt: skip
    held = [*texts[:3], "a new one", "a new one", *(f"held {i}" for i in range(7))]  # 3 leaked, 1 repeated
    pd.DataFrame({"review": held, "label": ["neg", "pos"] * 6}).to_csv(tmp_path / "held.csv", index=False)
    pd.DataFrame({"text": [f"dev {i}" for i in range(6)], "label": ["neg", "pos"] * 3}).to_csv(
        tmp_path / "dev.csv", index=False)  # fmt: skip
    session, data = built(runs_dir, data_tab)
    config = tiny_config(tiny_model_dir("bert"), source=str(tmp_path / "train.csv"), max_samples=None)
    values = {**page_values(session, config), data.test.source: str(tmp_path / "held.csv"),
              data.test.text_column: "review", data.validation.source: str(tmp_path / "dev.csv")}  # fmt: skip
    md = data_tab.inspect_data(session, data, values)[data.summary]
    assert "**78 rows**: 60 train / 6 validation / 12 test" in md
    assert "| test | 12 | held.csv (data.test_source) | ⚠ **1** | ⚠ **3** |" in md, md  # a file by its name
    assert "| validation | 6 | dev.csv (data.validation_source) | 0 | 0 |" in md
    notes = md[md.index("**Notes**") :].splitlines()
    assert notes[2].startswith("- ⚠ ") and "- ⚠ 3 test rows have a text that is also in train (leakage" in md
    # dropped: said in the table, no longer a warning
    dropped = data_tab.inspect_data(session, data, {**values, session.form.component("data.drop_duplicates"): True})
    assert "| 1 (dropped) | 3 (dropped) |" in dropped[data.summary] and "⚠" not in dropped[data.summary]


def test_an_intake_error_in_the_page_has_the_clis_words(runs_dir, tiny_model_dir, tmp_path, capsys):
    """A JSON array of numbers as the source: Inspect (and Start) say what `studio train` says, word for word."""
    from studio.cli import main

    source = tmp_path / "rows.json"
    source.write_text("[1, 2, 3]")
    assert main(["--runs-dir", str(tmp_path / "cli"), "train", "quick_demo", "--quiet", "--set",
                 f"data.source={source}"]) == 2  # fmt: skip
    said = capsys.readouterr().err.strip().removeprefix("error: ")
    assert "rows.json is a JSON array of numbers" in said
    session, data = built(runs_dir, data_tab)
    out = data_tab.inspect_data(session, data, page_values(session, tiny_config(tiny_model_dir("bert"),
                                                                                source=str(source))))  # fmt: skip
    assert session.form.words(said) in out[data.summary]  # the CLI's words, a field by its label
    # a message naming a field in a folded section opens that section (and no other)
    values = {**page_values(session, tiny_config(tiny_model_dir("bert"))), data.test.source: "held-out.csv"}
    out = data_tab.inspect_data(session, data, values)
    assert "Test file: file not found: held-out.csv" in out[data.summary]  # data.test_source, by its label
    assert "(under **Separate validation / test files**, opened)" in out[data.summary]
    separate = next(fold for fold, paths in data.folds.items() if "data.test_source" in paths)
    assert out[separate]["open"] is True and set(data.folds) & set(out) == {separate}


def test_estimate_follows_the_form_and_says_a_bad_value_in_place(runs_dir, tiny_model_dir):
    session = built(runs_dir)[0]
    config = tiny_config(tiny_model_dir("bert"))
    device, _, text, advice = model_tab.estimate(session, page_values(session, config))
    assert advice == []  # it fits: nothing to apply
    assert "CPU only" in device and "GB estimated" in text and "**Adapters on:** attention.self.query" in text
    bigger = model_tab.estimate(session, page_values(session, config.with_overrides(["train.batch_size=512"])))[2]
    assert float(bigger.split(" GB")[0].split()[-1]) > float(text.split(" GB")[0].split()[-1])
    bad = page_values(session, config)
    bad[session.base] = {**bad[session.base], "train": {**bad[session.base]["train"], "learning_rate": 0}}
    # no form here shows the field: its path is the only name it has (a page says "Learning rate")
    assert model_tab.estimate(session, bad)[2].startswith("⚠️ train.learning_rate: Input should be greater than 0")


SMALL = Device(kind="cuda", name="small GPU", total_mb=4096, free_mb=2500, count=1)


def over_budget(monkeypatch: pytest.MonkeyPatch, tiny_model_dir) -> RunConfig:
    """The estimate on a 2.4 GB GPU, of batch 4096 (a typo for 64, say): far over it."""
    monkeypatch.setattr("studio.hardware.detect", lambda: SMALL)
    return tiny_config(tiny_model_dir("bert")).with_overrides(
        ["train.batch_size=4096", "data.max_length=512", "train.speed=as_set"]
    )


def test_advice_ranks_the_largest_fitting_batch_first_and_apply_sets_the_form(runs_dir, tiny_model_dir, monkeypatch):
    session, data, model = built(runs_dir, data_tab, model_tab)
    config = over_budget(monkeypatch, tiny_model_dir)
    _, _, text, advice = model_tab.estimate(session, page_values(session, config))
    assert "does NOT fit" in text and "the fastest training first" in text and "--set" not in text
    first = advice[0]  # the largest batch that fits, with the accumulation that keeps 4096: not batch 1
    assert first["overrides"][0].startswith("train.batch_size=") and "effective batch, 4096" in first["change"]
    batch, accum = (int(o.split("=")[1]) for o in first["overrides"])
    assert batch > 1 and batch * accum == 4096
    largest = int(text.split("**Largest batch that fits:** ")[1].split()[0])
    assert batch <= largest
    buttons = model_tab.show_advice(advice)
    assert buttons[0]["visible"] and buttons[0]["value"].startswith(f"Apply: batch {batch} x grad accumulation {accum}")
    assert [b["visible"] for b in buttons[len(advice) :]] == [False] * (model_tab.ADVICE_BUTTONS - len(advice))
    out = model_tab.apply_advice(session, model, 0, advice)  # Apply: the form's batch and accumulation
    form = session.form
    assert out == {form.component("train.batch_size"): batch, form.component("train.grad_accum"): accum}
    applied = session.read({**page_values(session, config), **out})
    assert (applied.train.batch_size, applied.train.grad_accum) == (batch, accum)
    assert model_tab.estimate(session, page_values(session, applied))[3] == []  # and now it fits
    checkpointing = {"change": "turn on gradient checkpointing", "overrides": ["train.gradient_checkpointing=true"],
                     "total_mb": 900.0}  # a field under Advanced: it opens  # fmt: skip
    opened = model_tab.apply_advice(session, model, 0, [checkpointing])
    assert opened[form.component("train.gradient_checkpointing")] is True and opened[model.advanced]["open"] is True
    gone = model_tab.apply_advice(session, model, 3, [])  # said by the preset buttons, not raised over the form
    assert list(gone) == [model.message] and "this suggestion is gone" in gone[model.message]


def test_an_over_budget_figure_stays_within_its_axis_and_says_by_how_much(runs_dir, tiny_model_dir, monkeypatch):
    session = built(runs_dir, model_tab)[0]
    config = over_budget(monkeypatch, tiny_model_dir)
    _, fig, text, _ = model_tab.estimate(session, page_values(session, config))
    end = fig.layout.xaxis.range[1]
    line = fig.layout.shapes[0].x0  # the device's memory
    assert line < end <= 2 * line  # the line is not squeezed against the axis' start
    notes = [a.text for a in fig.layout.annotations]
    total = next(t for t in notes if t.startswith("total"))
    assert "over by" in total and total.endswith("▸")  # cut at the axis' end, and says so
    assert next(a for a in fig.layout.annotations if a.text == total).x <= end
    assert "available: 2.4 GB" in notes


def test_the_max_length_is_one_field_on_both_tabs(runs_dir, tiny_model_dir):
    """Max length sits beside the estimate and on the Data tab: both show the config's value, the Model tab's
    reads back, and Inspect (the Data tab's inputs) still says the share cut at the chosen length."""
    session, data, model = built(runs_dir, data_tab, model_tab)
    assert model.max_length is not data.max_length and model.advanced.open is False
    config = tiny_config(tiny_model_dir("bert"), max_length=16)
    values = page_values(session, config)
    assert values[model.max_length] == values[data.max_length] == 16
    moved = {**values, model.max_length: 64, data.max_length: 64}  # kept in step by the page
    assert session.read(moved).data.max_length == 64
    out = data_tab.inspect_data(session, data, {c: v for c, v in moved.items() if c in data.inputs})
    assert "of texts are longer than 64**" in out[data.summary]


def test_measured_against_the_estimate_is_said_in_words():
    assert model_tab.error_words(12.4) == (
        "The estimate was 12% above what the run measured: it errs on the safe side."
    )
    assert model_tab.error_words(-8).startswith("The estimate was 8% below what the run measured: leave")
    assert "within 1%" in model_tab.error_words(0.3)


def test_the_method_shows_its_own_settings(runs_dir):
    session, model = built(runs_dir, model_tab)
    a = model.adapter
    visible = {name: {c: u["visible"] for c, u in model_tab.show_for(a, name).items()} for name in ("full", "qlora")}
    assert visible["full"] == {a.quantization: False, a.adapter: False, a.rank: False, a.alpha: False, a.dropout: False}
    assert all(visible["qlora"].values())


def test_cli_command_and_presets_from_the_page(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda message, **_: None)
    session, _, model, _ = built(runs_dir, data_tab, model_tab, train_tab)  # the whole form
    values = page_values(session, RunConfig.from_yaml(PRESETS_DIR / "quick_demo.yaml").with_overrides(["seed=7"]))
    values[session.base_preset] = "quick_demo"
    command = model_tab.cli_command(session, model, values)[model.presets.command]
    assert command["value"] == "python -m studio train quick_demo \\\n    --set seed=7"
    loaded = model_tab.load_named(session, model, "quick_demo")
    assert loaded[session.base_preset] == "quick_demo" and loaded[session.form.component("seed")]["value"] == 42
    assert model_tab.load_named(session, model, None) == {model.message: "⚠️ pick a preset in the list first"}
    # A broken preset file: the message only (no field loses its value), by its own name, with the line
    broken = tmp_path / "gradio-cache-0123456789abcdef" / "mine.yaml"
    broken.parent.mkdir()
    broken.write_text("name: x\ntrain:\n  learning_rate: 1e-4\n   epochs: 2\n")
    out = model_tab.load_file(session, model, str(broken))
    assert list(out) == [model.message] and str(broken.parent) not in out[model.message]
    assert out[model.message].startswith("⚠️ mine.yaml is not valid YAML at line 4, column 10")
    broken.write_text("train:\n  learning_rate: -1\n")  # YAML, but a bad value: its field is outlined
    out = model_tab.load_file(session, model, str(broken))
    assert out[model.message].startswith("⚠️ Learning rate: Input should be greater than 0")
    assert "train.learning_rate" in out[model.message]  # the marker mark_fields reads, not shown


def test_find_a_learning_rate_shows_the_curve_and_apply_sets_the_field(runs_dir, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda message, **_: None)
    session, model = built(runs_dir, model_tab)
    lr = model.lr_finder
    config = tiny_config(tiny_model_dir("bert")).with_overrides(["train.batch_size=8"])
    out = model_tab.find_learning_rate(session, model, page_values(session, config))
    assert out[lr.result]["visible"] is True and out[lr.plot].data and "Suggested learning rate" in out[lr.text]
    suggested = out[lr.suggested]
    assert 1e-6 <= suggested <= 1.0  # inside LoRA's sweep
    assert model_tab.apply_rate(model, suggested) == (suggested, "")
    assert "find a learning rate first" in model_tab.apply_rate(model, None)[model.message]
    assert session.registry.list() == []  # the test trained no run


# ---- Runs tab and shared formatting ----------------------------------------------------------------------------
def test_run_choices_name_the_runs_and_keep_those_that_can_predict(runs_dir):
    registry = Registry(runs_dir)
    done = registry.create(RunConfig(name="done")).id
    finish(registry, done)
    failed = registry.create(RunConfig(name="broken")).id
    registry.update(failed, status="failed", message="bad data")
    assert run_choices(registry) == [(f"{failed} · failed", failed), (f"{done} · completed · 80.0%", done)]
    assert run_choices(registry, with_model=True) == [(f"{done} · completed · 80.0%", done)]


def test_refreshing_and_deleting_keep_the_pickers_true_to_the_registry(runs_dir):
    session, runs = built(runs_dir, runs_tab)
    kept, gone = (session.registry.create(RunConfig(name=n)).id for n in ("kept", "gone"))
    for run_id in (kept, gone):
        finish(session.registry, run_id)
    out = runs_tab.do_delete(session, runs, gone, [kept, gone])
    assert out[runs.confirm_row]["visible"] is False and [row[0] for row in out[runs.table]] == [kept]
    assert out[runs.compare]["value"] == [kept] and out[runs.selected]["value"] is None
    assert not session.registry.run_dir(gone).exists()
    with pytest.raises(gr.Error, match="pick a run first"):
        runs_tab.open_run(session, None)
    details, config_text = runs_tab.show(session, kept)
    assert "Test accuracy 80.00%" in details and "name: kept" in config_text


def test_the_runs_tab_evaluates_a_run_on_a_labelled_file_and_lists_it(runs_dir, tiny_model_dir, tmp_path):
    from studio.training import Run

    session, runs = built(runs_dir, runs_tab)
    config = tiny_config(tiny_model_dir("bert")).with_overrides(["train.max_steps=2", "train.eval_strategy=no"])
    run_id = Run(config, session.registry).execute().run_id
    path = tmp_path / "reviews.csv"
    path.write_text(
        "review,sentiment\n" + "".join(f"film {i},{'positive' if i % 2 else 'negative'}\n" for i in range(8))
    )
    with pytest.raises(gr.Error, match="upload a labelled file first"):
        runs_tab.evaluate_on_file(session, run_id, None, "", "")
    md = runs_tab.evaluate_on_file(session, run_id, str(path), "", "")
    assert "**reviews**: 8 rows of `reviews.csv`" in md and "| positive |" in md and "saved:" in md
    details, _ = runs_tab.show(session, run_id)
    assert "Evaluations on other files" in details and "`reviews`: 8 rows of reviews.csv" in details
    path.write_text("review,sentiment\nfine,so-so\n")
    with pytest.raises(gr.Error, match="labels the model does not know: 'so-so'"):
        runs_tab.evaluate_on_file(session, run_id, str(path), "", "")
    # the playground answers 'unsure' under its confidence slider (a tiny model is never 99% sure)
    from studio.ui import playground_tab

    same = playground_tab.predict_text(session, run_id, run_id, "a film", 0.0)[2]  # A/B of one run: said so
    assert same.endswith(playground_tab.SAME_RUN) and "pick another run in Run B" in same
    assert playground_tab.shown_for(session, run_id)[0]["label"] == f"Run A: {run_id}"  # Run A's panel names it
    label, _, said, bars, _ = playground_tab.predict_text(session, run_id, None, "a film", 0.0)
    assert set(label) == {"negative", "positive"} and said == ""  # the Label's value, as /predict has always sent it
    assert bars["visible"] is False  # a single-label run: its classes in the Label, no label bars
    assert [u["visible"] for u in playground_tab.shown_for(session, run_id)] == [True, False]
    unsure = playground_tab.predict_text(session, run_id, None, "a film", 0.99)[2]
    assert unsure.startswith("Run A: **unsure** (top ") and unsure.endswith("< 99%)")
    assert model_tab.weights_to_config("{positive: -1}") == {"positive": -1}  # a mapping as a preset writes it


def test_results_say_the_calibration_and_what_a_confidence_threshold_buys():
    import dataclasses

    from studio import plots

    coverage = [{"threshold": t, "answered": n, "coverage": n / 24, "accuracy": a}
                for t, n, a in ((0.0, 24, 0.8), (0.5, 24, 0.8), (0.7, 18, 0.889), (0.9, 6, 1.0))]  # fmt: skip
    bins = [{"lower": 0.9, "upper": 0.9667, "count": 24, "confidence": 0.95, "accuracy": 0.8}]
    calibration = Calibration(1.8, validation_rows=30, test_rows=24, ece_before=0.15, ece_after=0.04,
                              brier_before=0.31, brier_after=0.27, bins_before=bins, bins_after=bins,
                              coverage=coverage)  # fmt: skip
    md = results_md(dataclasses.replace(a_summary(), calibration=calibration))
    assert "**Calibrated confidence:** temperature 1.80, fitted on 30 validation texts" in md
    assert "ECE 0.150 → 0.040, Brier 0.310 → 0.270" in md
    assert "0.7: 75% of texts at 88.9% accuracy; 0.9: 25% of texts at 100.0% accuracy" in md
    assert "Calibrated" not in results_md(a_summary())  # no calibration recorded: nothing said
    assert len(plots.reliability_diagram(calibration).data) >= 3  # the diagonal, before, after


def test_the_compare_tab_waits_for_a_grid(runs_dir):
    session, compare = built(runs_dir, compare_tab)
    idle = compare_tab.watch(session, compare, None, "")  # no grid ran: nothing to redraw, Run on and Stop off
    assert idle == {compare.start: gr.update(interactive=True), compare.stop: gr.update(interactive=False)}
    with pytest.raises(gr.Error, match="pick a grid first"):
        compare_tab.list_points(session, None)


def test_the_compare_tab_sends_grids_to_the_ray_cluster_named_by_the_environment(runs_dir, monkeypatch, tmp_path):
    import shutil

    from studio import ray_sweep
    from studio.presets import GRIDS_DIR

    grids = tmp_path / "grids"
    grids.mkdir()
    shutil.copy(GRIDS_DIR / "cpu_quick_methods.yaml", grids)
    session = Session.create(runs_dir, grids_dir=grids)
    monkeypatch.setenv("STUDIO_RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there: said, nothing started
    with pytest.raises(gr.Error, match="no Ray cluster at 127.0.0.1:1"):
        compare_tab.start_grid(session, "cpu_quick_methods", 2)
    assert session.jobs.sweep() is None and session.jobs.busy() is None

    placed, said = [], []
    monkeypatch.setattr(ray_sweep, "connect", lambda placement: False)
    monkeypatch.setattr(ray_sweep, "execute", lambda sweep, pending, placement: placed.append((placement, pending)))
    monkeypatch.setattr(gr, "Info", said.append)
    monkeypatch.setenv("STUDIO_RAY_ADDRESS", "head:6379")
    assert compare_tab.start_grid(session, "cpu_quick_methods", 2) == "starting ..."
    sweep = session.jobs.sweep()
    sweep.wait(30)
    assert said == ["Grid cpu-quick-methods: 2 runs, on the Ray cluster at head:6379"]
    ((placement, pending),) = placed
    assert (placement.address, placement.workers, len(pending)) == ("head:6379", 2, 2)
    assert "on Ray at head:6379" in compare_tab._progress_line(sweep)


def test_shared_formatting():
    assert (duration(59.9), duration(725), duration(3720)) == ("0m59s", "12m05s", "1h02m")
    assert gigabytes(1536) == "1.50 GB"
    memory = {"estimate_mb": 1000, "measured_mb": 1100, "error_pct": 10.0, "measured_kind": "cuda"}
    assert results_md(None) == ""
    assert "**Memory estimate** 1,000 MB vs measured 1,100 MB (+10.0%, cuda)" in results_md(a_summary(**memory))


# ---- Tables, Compare's empty state, what the buttons allow (issue 23: 6, 9, 10) --------------------------------------
def test_every_table_says_numbers_the_same_way():
    assert (percent(0.8019), span(605), span(45.2), span(3725), count(22713986), megabytes(604.4)) == (
        "80.2%", "10 min 5 s", "45 s", "1 h 2 min", "22.7M", "604 MB")  # fmt: skip
    assert (percent(None), span(None), count(None), megabytes(None), megabytes(20480)) == ("", "", "", "", "20.0 GB")
    # a column in one unit: never "1,740 MB" beside "2.1 GB"
    assert megabytes_column([1740, 2150, None]) == ["1.7 GB", "2.1 GB", ""]
    assert megabytes_column([604.4, 1740]) == ["604 MB", "1,740 MB"]
    long = "word " * 100
    assert len(clip(long)) == 120 and clip(long).endswith("…") and clip("short\ntext") == "short text"
    import pandas as pd

    frame = pd.DataFrame({"text": [long], "label": ["positive"], "confidence": [0.93456]})
    shown = text_table(frame, ["label", "confidence"], percents=("confidence",))
    assert list(shown.columns) == ["label", "confidence", "text"] and shown.iloc[0].tolist()[:2] == [
        "positive",
        "93.5%",
    ]
    assert frame["text"].iloc[0] == long  # the frame given stays whole


def test_the_runs_table_formats_its_numbers(runs_dir):
    session, _ = built(runs_dir, runs_tab)
    run_id = session.registry.create(RunConfig(name="done")).id
    finish(session.registry, run_id)
    session.registry.update(run_id, f1_macro=0.79123, peak_memory_mb=604.5, train_seconds=605.0,
                            trainable_params=22713986)  # fmt: skip
    row = dict(zip(runs_tab.COLUMNS, runs_tab.runs_table(session)[0], strict=True))
    assert (row["accuracy"], row["F1 macro"], row["peak memory"], row["train time"], row["trainable"]) == (
        "80.0%", "0.791", "604 MB", "10 min 5 s", "22.7M")  # fmt: skip
    # what a newcomer compares comes before what describes the run: the table scrolls sideways past ~6 columns
    assert runs_tab.COLUMNS[:5] == ["run", "status", "flag", "accuracy", "F1 macro"]


def test_the_runs_table_names_a_local_model_by_its_folder(runs_dir, tmp_path):
    session, _ = built(runs_dir, runs_tab)
    folder = tmp_path / "models" / "my-bert"
    for name, shown in [(str(folder), "my-bert"), ("./models/my-bert/", "my-bert"), ("minilm-l6", "minilm-l6"),
                        ("org/some-model", "org/some-model")]:  # fmt: skip
        run_id = session.registry.create(RunConfig.from_dict({"model": {"name": name}})).id
        rows = {row[0]: dict(zip(runs_tab.COLUMNS, row, strict=True)) for row in runs_tab.runs_table(session)}
        assert rows[run_id]["model"] == shown


def a_run_with_predictions(registry: Registry) -> tuple[str, str]:
    """A finished run whose saved predictions hold two wrong test texts, one of them long; (run id, long text)."""
    import pandas as pd

    run_id = registry.create(RunConfig(name="wrong")).id
    finish(registry, run_id)
    long = "An opening line that goes on. " * 10 + "The end says what it meant."
    frame = pd.DataFrame({"split": ["test"] * 3, "text": ["short one", long, "right"], "label": [0, 1, 1],
                          "predicted": [1, 0, 1], "probs": [[0.4, 0.6], [0.9, 0.1], [0.2, 0.8]]})  # fmt: skip
    frame.to_parquet(registry.run_dir(run_id) / "predictions.parquet")
    label_map = {"id2label": dict(enumerate(LABELS))}
    (registry.run_dir(run_id) / "label_map.json").write_text(json.dumps(label_map))
    return run_id, long


def test_mistakes_show_labels_first_texts_cut_and_the_picked_text_whole(runs_dir):
    from studio.ui import playground_tab

    session, play = built(runs_dir, playground_tab)
    run_id, long = a_run_with_predictions(session.registry)
    table, texts = playground_tab.show_mistakes(session, run_id, "test")
    assert list(table.columns) == ["label", "predicted", "confidence", "p_true", "text"]
    assert table.iloc[0].tolist()[:4] == ["positive", "negative", "90.0%", "10.0%"]  # most confident first
    assert table["text"].iloc[0].endswith("…") and len(table["text"].iloc[0]) == 120 and texts[0] == long
    row = table.iloc[0].tolist()
    picked = playground_tab.mistake_text(gr.SelectData(None, {"index": [0, 0], "value": row[0], "row_value": row}),
                                         table, texts)  # fmt: skip
    assert picked["value"] == long and picked["label"] == "Whole text · positive, predicted negative (90.0% sure)"


def test_resume_and_merge_are_offered_only_where_they_work(runs_dir):
    session, runs = built(runs_dir, runs_tab)
    registry = session.registry
    full = registry.create(RunConfig.from_dict({"name": "full", "method": {"name": "full"}})).id
    finish(registry, full)
    resume, merge = runs_tab.actions_for(session, full)
    assert resume["interactive"] is False and resume["value"] == "Resume: only interrupted runs"
    assert merge["interactive"] is False and "a full fine-tune is already a plain model" in merge["value"]
    lora = registry.create(RunConfig.from_dict({"name": "lora", "method": {"name": "lora"}})).id
    registry.update(lora, status="interrupted")
    resume, merge = runs_tab.actions_for(session, lora)
    assert resume["interactive"] is False and "no checkpoint saved" in resume["value"]
    assert merge["interactive"] is False and "only a finished run" in merge["value"]
    checkpoint = registry.run_dir(lora) / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "optimizer.pt").write_bytes(b"")
    assert runs_tab.actions_for(session, lora)[0] == gr.update(value=runs_tab.RESUME, interactive=True)
    finish(registry, lora)
    assert runs_tab.actions_for(session, lora)[1] == gr.update(value=runs_tab.MERGE, interactive=True)
    assert all(u["interactive"] is False for u in runs_tab.actions_for(session, None))


def test_the_compare_tab_starts_small_on_a_cpu_and_says_what_to_do_before_any_run(runs_dir, tmp_path, monkeypatch):
    import shutil

    from studio import hardware
    from studio.presets import GRIDS_DIR

    grids = tmp_path / "grids"
    grids.mkdir()
    for name in ("cpu_quick_methods", "goemotions_grid"):
        shutil.copy(GRIDS_DIR / f"{name}.yaml", grids)
    monkeypatch.setattr(hardware, "detect", lambda: hardware.Device("cpu", "CPU", 8000, 4000, 0))
    assert compare_tab.default_grid(["goemotions_grid", "cpu_quick_methods"]) == "cpu_quick_methods"
    assert compare_tab.default_grid(["goemotions_grid"]) == "goemotions_grid"
    with gr.Blocks():
        session = Session.create(runs_dir, grids_dir=grids)
        tab = compare_tab.build(session)
    assert tab.grid.value == "cpu_quick_methods"
    out = compare_tab.show_study(session, tab, "goemotions_grid")
    assert all(out[plot]["visible"] is False for plot in [*tab.figures, tab.table, tab.report])
    note = out[tab.empty_note]["value"]
    assert note.startswith("**Nothing to compare yet.**") and "120 runs" in note and "cpu_quick_methods" in note
    first = compare_tab.load_grid(session, "goemotions_grid").points()[0]
    assert run_name(first.labels) == "bert-base · 2 labels · 800 samples · seed 42"  # not model.name=bert-base, ...
    _, rows = compare_tab.list_points(session, "cpu_quick_methods")
    assert [row[1] for row in rows] == ["full", "lora"]  # not method=full
    assert run_name({"method.name": "lora", "method.r": 8, "seed": 42}) == "lora · r=8 · seed 42"
    grid = compare_tab.load_grid(session, "cpu_quick_methods")
    for point in grid.points():  # finished runs: the study shows, only the figures its axes make
        run_id = session.registry.create(point.config).id
        finish(session.registry, run_id)
        session.registry.update(run_id, peak_memory_mb=600.0, train_seconds=125.0)
    out = compare_tab.show_study(session, tab, "cpu_quick_methods")
    assert out[tab.empty_note]["visible"] is False and out[tab.table]["visible"] is True
    shown = {key: out[plot]["visible"] for plot, key in zip(tab.figures, compare_tab.STUDY_PLOTS, strict=True)}
    assert shown["heatmap"] is False and shown["pareto_memory"] is True  # no label-count axis: no empty heatmap
    table = out[tab.table]
    assert table["headers"][:1] == ["method"] and table["value"][0][-4:] == ["80.0%", "0.0 pt", "600 MB", "2 min 5 s"]


def test_said_in_turns_a_failure_into_its_slot_only_and_a_success_into_a_dict(monkeypatch):
    """`said_in` (handlers that do not take their tab): a failure updates only the slot (no "Error" badge on the
    other outputs), a success its outputs in order and an empty slot; a slot that is one of the outputs stays so."""
    from studio.errors import StudioError
    from studio.ui.feedback import guard, said_in

    monkeypatch.setattr(gr, "Warning", lambda message, **_: None)
    with gr.Blocks():
        slot, a, b = gr.Markdown(), gr.Textbox(), gr.Textbox()

    @guard
    def pick(run: str | None) -> tuple[str, str]:
        if not run:
            raise StudioError("pick a run first")
        return run, run.upper()

    event = said_in(slot, pick, [a, b])
    assert event["outputs"] == [a, b, slot]
    assert event["fn"](None) == {slot: "⚠️ pick a run first"}
    assert event["fn"]("x") == {a: "x", b: "X", slot: ""}
    answer = said_in(a, pick, [a, b])  # the answer line is the slot
    assert answer["outputs"] == [a, b] and answer["fn"](None) == {a: "⚠️ pick a run first"}
