"""Runs tab: the registry as a table; compare runs' curves and accuracy vs memory; open, export, delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.architectures import names_a_folder
from studio.config import RunConfig
from studio.errors import StudioError
from studio.ui import quality_section
from studio.ui.feedback import clears, guard, message_slot, said_in
from studio.ui.formatting import (
    count,
    file_eval_md,
    megabytes_column,
    number,
    percent,
    results_md,
    run_choices,
    run_summary,
    span,
)
from studio.ui.quality_section import DataQuality
from studio.ui.session import Session, handler

COLUMNS = ["run", "status", "flag", "accuracy", "F1 macro", "model", "method", "dataset", "task", "peak memory",
           "train time", "estimate error", "trainable"]  # fmt: skip
"""What a newcomer compares first comes first: the table scrolls sideways on a narrow page."""
CURVES = {  # label -> (where in the run view, key)
    "validation accuracy": ("evals", "accuracy"),
    "validation macro F1": ("evals", "f1_macro"),
    "validation loss": ("evals", "loss"),
    "training loss": ("train_loss", None),
}


RESUME, MERGE = "Resume", "Merge LoRA/IA3 into the base and save"


@dataclass
class Export:
    """Zip, merge or push the selected run."""

    download: gr.Button
    merge: gr.Button
    zip_file: gr.File
    repo: gr.Textbox
    token: gr.Textbox
    private: gr.Checkbox
    merged: gr.Checkbox
    push: gr.Button
    status: gr.Markdown


@dataclass
class FileEval:
    """Evaluate the selected run on a labelled file (studio/file_eval.py)."""

    file: gr.File
    text_column: gr.Textbox
    label_column: gr.Textbox
    separator: gr.Textbox
    """What splits a cell of several labels; shown for a multi-label run only."""
    run: gr.Button
    result: gr.Markdown


@dataclass
class RunsTab:
    refresh: gr.Button
    table: gr.Dataframe
    compare: gr.Dropdown
    curve: gr.Radio
    overlay: gr.Plot
    pareto: gr.Plot
    selected: gr.Dropdown
    open_btn: gr.Button
    resume: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm_text: gr.Markdown
    confirm: gr.Button
    cancel: gr.Button
    details: gr.Markdown
    config_view: gr.Code
    export: Export
    file_eval: FileEval
    message: gr.Markdown
    """Why Open, Resume, Delete or the download could not (empty after a new try), under the run's buttons."""
    quality: DataQuality
    """Data quality: the selected run's training rows whose label looks wrong (studio/ui/quality_section.py)."""

    @property
    def listed(self) -> list[Any]:
        """What lists the runs: the table and both run pickers (what `refreshed` updates)."""
        return [self.table, self.compare, self.selected]


def build(session: Session) -> RunsTab:
    with gr.Row():
        refresh = gr.Button("↻ Refresh", size="sm", scale=0)
        gr.Markdown("Click a row to select that run below. Runs trained from the CLI show up here too. A "
                    "multi-label run's accuracy is its exact-match share (every label of a text right): compare "
                    "such runs by F1 macro.")  # fmt: skip
    table = gr.Dataframe(
        headers=COLUMNS,
        value=lambda: runs_table(session),
        interactive=False,
        max_height=300,
        label="Runs",
        elem_id="runs-table",
    )
    with gr.Row():
        with gr.Column():
            compare = gr.Dropdown(
                label="Compare runs", multiselect=True, choices=run_choices(session.registry),
                info="Overlay their curves.",
            )  # fmt: skip
            curve = gr.Radio(list(CURVES), value="validation accuracy", label="Curve")
            overlay = gr.Plot(label="Curves", show_label=False)
        pareto = gr.Plot(label="Accuracy vs peak memory (all finished runs)", show_label=False)
    gr.Markdown("### One run")
    with gr.Row():
        # None said outright: a Dropdown left to its default starts at its first choice without the `change` that
        # shows a run's details, and picking that run then changes nothing
        selected = gr.Dropdown(label="Run", choices=run_choices(session.registry), value=None, scale=3,
                               elem_id="run-select")  # fmt: skip
        open_btn = gr.Button("Open in studio", scale=1)
        resume = gr.Button(RESUME, scale=1, elem_id="resume", interactive=False)
        delete = gr.Button("Delete…", variant="stop", scale=1)
    message = message_slot("runs-message")
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        confirm = gr.Button("Yes, delete it and its files", variant="stop")
        cancel = gr.Button("Cancel")
    with gr.Row():
        details = gr.Markdown(elem_id="run-details")
        config_view = gr.Code(language="yaml", label="config.yaml", lines=12, max_lines=30)
    tab = RunsTab(refresh, table, compare, curve, overlay, pareto, selected, open_btn, resume, delete, confirm_row,
                  confirm_text, confirm, cancel, details, config_view, _export(), _file_eval(), message,
                  quality_section.build())  # fmt: skip
    _wire(session, tab)
    return tab


def _export() -> Export:
    with gr.Accordion("Export: download, merge, push to the Hub", open=False):
        with gr.Row():
            download = gr.Button("Zip the adapter / model for download")
            merge = gr.Button(MERGE, elem_id="merge", interactive=False)
        zip_file = gr.File(label="Download", interactive=False)
        with gr.Row():
            repo = gr.Textbox(label="Hub repo id", placeholder="your-name/my-classifier")
            token = gr.Textbox(
                label="Hugging Face token (write)", type="password", placeholder="hf_... or set HF_TOKEN"
            )
            private = gr.Checkbox(label="private", value=True)
            merged = gr.Checkbox(label="push the merged model", value=False)
            push = gr.Button("Push to the Hub")
        status = gr.Markdown()
    return Export(download, merge, zip_file, repo, token, private, merged, push, status)


def _file_eval() -> FileEval:
    with gr.Accordion("Evaluate on a labelled file", open=False):
        gr.Markdown("Metrics of the selected run on any file with texts and labels (CSV, TSV, JSON Lines, JSON, "
                    "Parquet), saved in its folder beside, never over, its own test results.")  # fmt: skip
        with gr.Row():
            file = gr.File(label="Labelled file", file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet", ".gz"],
                           height=100, scale=2)  # fmt: skip
            text_column = gr.Textbox(label="text column", placeholder="detect", scale=1)
            label_column = gr.Textbox(label="label column", placeholder="detect", scale=1)
            separator = gr.Textbox(",", label="label separator", scale=1, visible=False, elem_id="file-eval-separator",
                                   info="this run is multi-label: what splits a cell such as anger|joy")  # fmt: skip
            run = gr.Button("Evaluate", scale=0, min_width=120, elem_id="evaluate-file")
        result = gr.Markdown(elem_id="file-eval-result")
    return FileEval(file, text_column, label_column, separator, run, result)


def _wire(session: Session, tab: RunsTab) -> None:
    tab.refresh.click(handler(refreshed, session, tab), [tab.compare, tab.selected], tab.listed, api_name="runs")
    tab.table.select(pick_row, tab.table, tab.selected)
    gr.on(
        [tab.compare.change, tab.curve.change, tab.refresh.click],
        handler(draw_compare, session),
        [tab.compare, tab.curve],
        [tab.overlay, tab.pareto],
        show_progress="hidden",
    )
    shown = [tab.details, tab.config_view]
    tab.selected.change(**said_in(tab.details, handler(show, session), shown), inputs=tab.selected,
                        show_progress="hidden")  # fmt: skip
    tab.selected.change(handler(separator_for, session), tab.selected, tab.file_eval.separator, show_progress="hidden")
    tab.selected.change(handler(actions_for, session), tab.selected, [tab.resume, tab.export.merge],
                        show_progress="hidden")  # fmt: skip
    said = tab.message  # a failure is said here, under the run's buttons: no "Error" badge over the form or pickers
    e, f = tab.export, tab.file_eval
    for trigger in (tab.open_btn.click, tab.resume.click, tab.delete.click, tab.confirm.click, e.download.click):
        clears(trigger, said)
    opened = [session.base, session.base_preset, *session.form.components]
    tab.open_btn.click(**said_in(said, handler(open_run, session), opened), inputs=tab.selected, show_progress_on=said)
    asked = [tab.confirm_row, tab.confirm_text]
    tab.delete.click(**said_in(said, handler(ask_delete, session), asked), inputs=tab.selected)
    tab.cancel.click(lambda: gr.update(visible=False), None, tab.confirm_row)
    tab.confirm.click(**said_in(said, handler(do_delete, session, tab), [tab.confirm_row, *tab.listed]),
                      inputs=[tab.selected, tab.compare], api_name="delete_run", show_progress_on=said)  # fmt: skip
    f.run.click(**said_in(f.result, handler(evaluate_on_file, session), f.result),
                inputs=[tab.selected, f.file, f.text_column, f.label_column, f.separator],
                api_name="evaluate_file")  # fmt: skip
    e.download.click(**said_in(said, handler(zip_run, session), [e.zip_file, e.status]), inputs=tab.selected)
    quality_section.wire(session, tab.quality, tab.selected)
    e.merge.click(**said_in(e.status, handler(merge_run, session), e.status), inputs=tab.selected)
    e.push.click(**said_in(e.status, handler(push_run, session), e.status),
                 inputs=[tab.selected, e.repo, e.token, e.private, e.merged])  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
def runs_table(session: Session) -> list[list]:
    """One row per run, newest first, under COLUMNS, its numbers as the page says them (80.2%, 605 MB, 10 min 5 s,
    22.7M)."""
    rows = []
    records = session.registry.list()
    for r, memory in zip(records, megabytes_column([r.peak_memory_mb for r in records]), strict=True):
        # The estimate's error is in eval.json, written when a run ends: only finished runs have one.
        summary = session.registry.summary(r.id) if r.accuracy is not None else None
        error = summary.memory.error_pct if summary is not None else None
        rows.append([r.id, r.status, r.flag or "", percent(r.accuracy),
                     number(r.f1_macro) if r.f1_macro is not None else "", _model_name(r.model), r.method,
                     r.dataset, _task(session, r.id), memory, span(r.train_seconds),
                     "" if error is None else f"{error:+.1f}%", count(r.trainable_params)])  # fmt: skip
    return rows


def _model_name(model: str) -> str:
    """A local model folder by its own name (the whole path is in the run's details); catalogue names and Hub ids
    (org/name) as they are."""
    if names_a_folder(model) or "\\" in model:  # (a Windows path)
        return Path(model.replace("\\", "/")).name or model
    return model


def _task(session: Session, run_id: str) -> str:
    """single-label / multi-label once the run has saved its label map; "" before (the data decides it)."""
    if not (session.registry.run_dir(run_id) / "label_map.json").is_file():
        return ""
    return "multi-label" if session.registry.task(run_id) == "multi_label" else "single-label"


def refreshed(session: Session, tab: RunsTab, chosen: list[str] | None, one: str | None) -> dict[Any, Any]:
    """The table and run pickers re-read from the registry; picks of runs that are gone are dropped."""
    choices = run_choices(session.registry)
    ids = {c[1] for c in choices}
    return {
        tab.table: runs_table(session),
        tab.compare: gr.update(choices=choices, value=[c for c in chosen or [] if c in ids]),
        tab.selected: gr.update(choices=choices, value=one if one in ids else None),
    }


def pick_row(evt: gr.SelectData, rows: Any) -> Any:
    """A click on a table row selects its run."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    try:
        return rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]
    except (IndexError, KeyError):
        return gr.skip()


@guard
def draw_compare(session: Session, run_ids: list[str] | None, which: str) -> tuple[Any, Any]:
    """(the `which` curve of each run overlaid, accuracy vs peak memory of every finished run)."""
    from studio import plots, study_plots

    where, key = CURVES[which]
    series = {}
    for run_id in run_ids or []:
        view = session.jobs.view(run_id)
        if where == "evals":
            series[run_id] = [(e["step"], e[key]) for e in view.evals if key in e]
        else:
            series[run_id] = list(view.train_loss)
    overlay = plots.runs_overlay(series, which) if series else plots.empty("pick runs to compare")
    return overlay, study_plots.runs_pareto(session.registry.list(), registry=session.registry)


@guard
def show(session: Session, run_id: str | None) -> tuple[str, str]:
    """(the run's status, folder and results, its config.yaml)."""
    if not run_id:
        return "", ""
    record = session.registry.get(run_id)
    folder = session.registry.run_dir(run_id)
    config_text = (folder / "config.yaml").read_text(encoding="utf-8") if (folder / "config.yaml").is_file() else ""
    head = f"**{record.id}** · {record.status}" + (f" — {record.message}" if record.message else "")
    head += f"  \nfolder: `{folder}`"
    from studio.file_eval import evaluations

    named = evaluations(folder)
    said = [f"`{e.name}`: {e.rows:,} rows of {Path(e.file).name}, {_scored(e.metrics)}" for e in named]
    listed = "\n\n**Evaluations on other files**  \n" + "  \n".join(said) if said else ""
    return head + "\n\n" + results_md(run_summary(session.registry, run_id)) + listed, config_text


def _scored(m: Any) -> str:
    """An evaluation's headline: accuracy and macro F1, or a multi-label one's macro F1, micro F1 and exact match."""
    if m.multi_label:
        return m.headline().removeprefix("test ")  # the engine's one phrase, less the split it names
    return f"accuracy {m.accuracy:.1%}, macro F1 {m.f1_macro:.3f}"


def separator_for(session: Session, run_id: str | None) -> Any:
    """The label separator box, shown when the picked run is multi-label (a single-label file has one label a row)."""
    multi = bool(run_id) and session.registry.task(run_id) == "multi_label"
    return gr.update(visible=multi)


def actions_for(session: Session, run_id: str | None) -> tuple[Any, Any]:
    """(Resume, Merge) for the picked run: each enabled only where it can work, else greyed with the reason on it.
    Resume: an interrupted run (killed, crashed) with a complete checkpoint; Merge: a finished adapter run (LoRA,
    QLoRA, IA3), as a full fine-tune's model is already a plain model."""
    from studio.checkpoints import last_checkpoint

    if not run_id:
        return gr.update(value=RESUME, interactive=False), gr.update(value=MERGE, interactive=False)
    record = session.registry.get(run_id)
    if record.status != "interrupted":
        # short enough for the button (the run's status is in the table beside it)
        resume = gr.update(value="Resume: only interrupted runs", interactive=False)
    elif last_checkpoint(session.registry.run_dir(run_id)) is None:
        resume = gr.update(value="Resume: no checkpoint saved", interactive=False)
    else:
        resume = gr.update(value=RESUME, interactive=True)
    if record.method == "full":
        merge = gr.update(value="Merge: a full fine-tune is already a plain model", interactive=False)
    elif record.status not in ("completed", "stopped"):
        merge = gr.update(value=f"Merge: only a finished run (this one is {record.status})", interactive=False)
    else:
        merge = gr.update(value=MERGE, interactive=True)
    return resume, merge


@guard
def open_run(session: Session, run_id: str | None) -> dict[Any, Any]:
    """The run's config fills the Data / Model / Train forms."""
    if not run_id:
        raise StudioError("pick a run first")
    config = RunConfig.from_yaml(session.registry.run_dir(run_id) / "config.yaml")
    gr.Info(f"Loaded the config of {run_id} into the Data, Model and Train tabs")
    return {session.base: config.to_dict(), session.base_preset: None, **session.form.updates(config)}


@guard
def resume_run(session: Session, run_id: str | None) -> str:
    """Continue an interrupted run (killed, crashed) from its last checkpoint; the Train tab follows it."""
    if not run_id:
        raise StudioError("pick an interrupted run first")
    job = session.jobs.resume(run_id)
    gr.Info(f"Resuming {run_id} from its last checkpoint: watch it in the Train tab")
    return job.key


@guard
def ask_delete(session: Session, run_id: str | None) -> tuple[dict[str, Any], str]:
    """Show the confirmation row, naming the run."""
    if not run_id:
        raise StudioError("pick a run to delete first")
    record = session.registry.get(run_id)
    return gr.update(visible=True), f"Delete **{record.id}** ({record.status}) and its folder? This cannot be undone."


@guard
def do_delete(session: Session, tab: RunsTab, run_id: str | None, chosen: list[str] | None) -> dict[Any, Any]:
    """Delete the run and its folder; the confirmation row hides and the lists drop it."""
    if not run_id:
        raise StudioError("pick a run to delete first")
    session.registry.delete(run_id)
    session.predictors.forget(run_id)
    gr.Info(f"Deleted {run_id}")
    kept = [c for c in chosen or [] if c != run_id]
    return {tab.confirm_row: gr.update(visible=False), **refreshed(session, tab, kept, None)}


@guard
def zip_run(session: Session, run_id: str | None) -> tuple[str, str]:
    """The zip (checked: a fresh process loaded it with plain transformers and predicted the run's test labels)
    and the check's line for the export's status."""
    from studio.export import export_zip

    if not run_id:
        raise StudioError("pick a run first")
    exported = export_zip(session.registry, run_id)
    return str(exported.path), f"Zip {_checked(exported)}"


def _checked(exported: Any) -> str:
    return exported.check.line() if exported.check else "not checked"


@guard
def evaluate_on_file(session: Session, run_id: str | None, path: str | None, text_column: str,
                     label_column: str, separator: str | None = ",") -> str:  # fmt: skip
    """Evaluate the run on the uploaded file: its metrics and where they were saved (Markdown). A multi-label run
    reads each label cell as a list, or a string split on `separator` (a single-label run ignores it)."""
    from studio.file_eval import evaluate_file

    if not run_id:
        raise StudioError("pick a run first")
    if not path:
        raise StudioError("upload a labelled file first")
    result, saved = evaluate_file(session.registry, run_id, path, text_column=text_column.strip() or None,
                                  label_column=label_column.strip() or None, label_separator=_separator(separator),
                                  load_predictor=lambda: session.predictors.get(run_id))  # fmt: skip
    return file_eval_md(result, saved)


def _separator(value: str | None) -> str:
    """The separator as typed; a space stays a space (labels split on blanks), only an empty box means ","."""
    if value is None or value == "":
        return ","
    return value.strip() or value


@guard
def merge_run(session: Session, run_id: str | None) -> str:
    from studio.export import merge_adapter

    if not run_id:
        raise StudioError("pick a run first")
    merged = merge_adapter(session.registry, run_id)
    return f"Merged model saved in `{merged.path}`; {_checked(merged)}"


@guard
def push_run(session: Session, run_id: str | None, repo_id: str, hf_token: str, is_private: bool,
             push_merged: bool) -> str:  # fmt: skip
    from studio.export import push_to_hub

    if not run_id:
        raise StudioError("pick a run first")
    pushed = push_to_hub(
        session.registry, run_id, repo_id.strip(), hf_token.strip() or None, private=is_private, merged=push_merged
    )
    return f"Pushed to [{pushed.url}]({pushed.url}); {_checked(pushed)}"
