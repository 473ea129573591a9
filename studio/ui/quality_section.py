"""Runs tab, "Data quality": the selected run's training rows whose label is likely wrong (studio/label_issues.py);
mark each keep / relabel / drop, write a corrected copy of the data, open it in the studio to train on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.ui.feedback import guard, said_in
from studio.ui.formatting import clip, span, text_table
from studio.ui.session import Session, handler

ISSUE_COLUMNS = ["row", "action", "given", "suggested", "score", "text"]
"""The issues table's order: the row, what will happen to it, its label and the suggestion, then its text."""
LISTED = 500
"""At most this many flagged rows are listed (the CSV in the run folder has every row)."""


@dataclass
class DataQuality:
    """Find the selected run's label issues and act on them."""

    mode: gr.Radio
    k: gr.Number
    find: gr.Button
    status: gr.Markdown
    """What was found (or why not), where the report is."""
    table: gr.Dataframe
    text: gr.Textbox
    """The whole text of the row picked in the table."""
    action: gr.Radio
    mark: gr.Button
    mark_all: gr.Button
    write: gr.Button
    written: gr.Markdown
    open_copy: gr.Button
    report: gr.State
    """The `label_issues.LabelIssueReport` listed (None before one is found)."""
    decisions: gr.State
    """row -> keep | relabel | drop; a row not in it is kept."""
    picked: gr.State
    """The row picked in the table (None before a pick)."""
    copy_config: gr.State
    """The corrected copy's config.yaml, once written."""


def build() -> DataQuality:
    with gr.Accordion("Data quality: training rows whose label looks wrong", open=False):
        gr.Markdown("Every training row of the selected run gets an out-of-sample probability, and confident "
                    "learning (cleanlab) lists the rows whose given label those probabilities do not support. "
                    "**embeddings**: the base model's frozen states and a cross-validated logistic regression "
                    "(one forward pass over the rows: about a tenth of a training's time); **crossfit**: k trainings "
                    "of the run's recipe, each predicting the rows it did not see (on a CPU, about k-1 times a run's "
                    "time; better probabilities). A low score is a doubtful label. Nothing changes your data: marked "
                    "rows go into a new copy.\n\n**Read before you mark.** The list also holds hard rows whose "
                    "label is right: in our tests, relabelling or dropping every listed row *lowered* test accuracy "
                    "by 2-10 points, and so did the 10% lowest-scored rows; mark the rows you can see are wrong "
                    "(benchmarks/results/label_recovery).")  # fmt: skip
        with gr.Row():
            mode = gr.Radio(["embeddings", "crossfit"], value="embeddings", label="How", scale=2)
            k = gr.Number(5, label="folds (k)", precision=0, scale=1)
            find = gr.Button("Find label issues", variant="primary", scale=1, elem_id="find-label-issues")
        status = gr.Markdown(elem_id="label-issues-status")
        table = gr.Dataframe(interactive=False, wrap=True, max_height=360, elem_id="label-issues")
        text = gr.Textbox(label="Whole text", placeholder="pick a row to read its whole text and mark it", lines=3,
                          max_lines=12, interactive=False, elem_id="label-issue-text")  # fmt: skip
        with gr.Row():
            action = gr.Radio(["keep", "relabel", "drop"], value="relabel", label="Action", scale=2)
            mark = gr.Button("Mark the picked row", scale=1, elem_id="mark-label-issue")
            mark_all = gr.Button("Mark every listed row", scale=1)
        with gr.Row():
            write = gr.Button("Write the corrected copy", scale=1, elem_id="write-corrected")
            open_copy = gr.Button("Open it in the studio (Data tab source)", scale=1, interactive=False)
        written = gr.Markdown(elem_id="corrected-copy")
    return DataQuality(mode, k, find, status, table, text, action, mark, mark_all, write, written, open_copy,
                       gr.State(None), gr.State({}), gr.State(None), gr.State(None))  # fmt: skip


def wire(session: Session, q: DataQuality, selected: gr.Dropdown) -> None:
    found = [q.table, q.report, q.decisions, q.status]
    q.find.click(**said_in(q.status, handler(find_issues, session), found), inputs=[selected, q.mode, q.k],
                 api_name="label_issues", show_progress_on=q.status)  # fmt: skip
    selected.change(handler(saved_issues, session), [selected, q.mode], found, show_progress="hidden")
    q.table.select(pick_issue, [q.table, q.report], [q.picked, q.text])
    marked = [q.table, q.decisions, q.status]
    q.mark.click(**said_in(q.status, mark_row, marked), inputs=[q.report, q.decisions, q.picked, q.action],
                 api_name="mark_label_issue")  # fmt: skip
    q.mark_all.click(**said_in(q.status, mark_listed, marked), inputs=[q.report, q.decisions, q.action],
                     api_name="mark_label_issues")  # fmt: skip
    q.write.click(**said_in(q.written, handler(write_copy, session), [q.written, q.copy_config, q.open_copy]),
                  inputs=[selected, q.report, q.decisions], api_name="write_corrected")  # fmt: skip
    opened = [session.base, session.base_preset, *session.form.components]
    q.open_copy.click(**said_in(q.written, handler(open_copy, session), opened), inputs=q.copy_config)


# ---- handlers --------------------------------------------------------------------------------------------------
def issues_table(report: Any, decisions: dict[int, str]) -> Any:
    """The flagged rows (most suspicious first, at most LISTED) with each one's action, texts cut to a line."""
    import pandas as pd

    rows = report.issues[:LISTED] if report is not None else []
    frame = pd.DataFrame(
        [[i.row, decisions.get(i.row, "keep"), i.given, i.suggested, round(i.score, 3), i.text] for i in rows],
        columns=ISSUE_COLUMNS,
    )
    return text_table(frame, ISSUE_COLUMNS)


def report_md(report: Any) -> str:
    """One paragraph: what was found, how, at what cost, where."""
    how = f"{report.k} trainings of the run's recipe" if report.mode == "crossfit" else (
        f"{Path(report.encoder).name}'s frozen states + a {report.k}-fold logistic regression")  # fmt: skip
    listed = f" (the first {LISTED} listed)" if len(report.issues) > LISTED else ""
    return (f"**{len(report.issues)} of {len(report.ranked)} training rows** look mislabelled{listed}: {how}, "
            f"{span(report.seconds)}. Every row, scored: `{report.folder}/issues-{report.mode}.csv`.")  # fmt: skip


@guard
def find_issues(session: Session, run_id: str | None, mode: str, k: float | None) -> tuple[Any, Any, dict, str]:
    """Run the finder on the selected run's training rows (written into its folder)."""
    from studio import label_issues as li

    if not run_id:
        raise StudioError("pick a run first: choose one in Run above")
    if mode == "crossfit" and session.jobs.busy():
        raise StudioError(f"crossfit trains {int(k or 5)} runs, and the training slot is busy "
                          f"({session.jobs.busy()}); wait for it, or use embeddings")  # fmt: skip
    report = li.find(li.target(run_id, session.runs_dir), mode, k=int(k or 5))
    return issues_table(report, {}), report, {}, report_md(report)


@guard
def saved_issues(session: Session, run_id: str | None, mode: str) -> tuple[Any, Any, dict, str]:
    """The report the selected run already has (of the chosen mode, else the other), or an empty table."""
    from studio import label_issues as li

    folder = session.registry.run_dir(run_id) / li.FOLDER if run_id else None
    report = next((r for m in (mode, *li.MODES) if folder and (r := li.read(folder, m)) is not None), None)
    return issues_table(report, {}), report, {}, report_md(report) if report else ""


def pick_issue(evt: gr.SelectData, rows: Any, report: Any) -> tuple[Any, Any]:
    """The picked row (by its own `row` cell, so a table sorted in the page still picks right) and its whole text."""
    columns = list(rows.columns) if hasattr(rows, "columns") else ISSUE_COLUMNS
    picked = dict(zip(columns, evt.row_value or [], strict=False))
    if report is None or picked.get("row") in (None, ""):
        return gr.skip(), gr.skip()
    row = int(picked["row"])
    issue = next((i for i in report.ranked if i.row == row), None)
    if issue is None:
        return gr.skip(), gr.skip()
    title = f"row {row}: given {issue.given}, suggested {issue.suggested} (score {issue.score:.3f})"
    return row, gr.update(value=issue.text, label=f"Whole text · {title}")


@guard
def mark_row(report: Any, decisions: dict, picked: int | None, action: str) -> tuple[Any, dict, str]:
    """Set the picked row's action."""
    if report is None:
        raise StudioError("find the label issues first")
    if picked is None:
        raise StudioError("pick a row in the table first")
    decisions = {**decisions, int(picked): action}
    return issues_table(report, decisions), decisions, _counts(decisions)


@guard
def mark_listed(report: Any, decisions: dict, action: str) -> tuple[Any, dict, str]:
    """Set every listed row's action."""
    if report is None:
        raise StudioError("find the label issues first")
    decisions = {**decisions, **{i.row: action for i in report.issues[:LISTED]}}
    return issues_table(report, decisions), decisions, _counts(decisions)


def _counts(decisions: dict) -> str:
    said = [f"{sum(a == x for a in decisions.values())} to {x}" for x in ("relabel", "drop")]
    return f"Marked: {', '.join(said)}; every other row is kept. **Write the corrected copy** to apply them."


@guard
def write_copy(session: Session, run_id: str | None, report: Any, decisions: dict) -> tuple[str, str, Any]:
    """The corrected copy beside the run's report; the user's data is untouched."""
    from studio import label_issues as li

    if report is None or not run_id:
        raise StudioError("find the label issues of a run first")
    if not any(a != "keep" for a in decisions.values()):
        raise StudioError("no row is marked relabel or drop: the copy would equal the data; mark rows first")
    copy = li.write_corrected(li.target(run_id, session.runs_dir), report, decisions)
    md = (f"Corrected copy ({copy.dropped} dropped, {copy.relabelled} relabelled; rows "
          f"{', '.join(f'{k} {v:,}' for k, v in copy.rows.items())}): `{copy.folder}`  \n"
          f"Train on it: **Open it in the studio**, or `python -m studio train {copy.config}`")  # fmt: skip
    return md, str(copy.config), gr.update(interactive=True)


@guard
def open_copy(session: Session, config_path: str | None) -> dict[Any, Any]:
    """The corrected copy's config (the run's recipe on the copy) fills the forms; its folder is the Data source."""
    from studio.config import RunConfig

    if not config_path:
        raise StudioError("write the corrected copy first")
    config = RunConfig.from_yaml(config_path)
    gr.Info(f"The Data tab's source is now the corrected copy: {clip(config.data.source, 80)}")
    return {session.base: config.to_dict(), session.base_preset: None, **session.form.updates(config)}
