"""Data tab: pick a source (shipped sample, Hub id, uploaded file), map its columns, split, balance, inspect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.datasource import SAMPLES
from studio.ui.feedback import guard
from studio.ui.form import ConfigForm, floats, joined
from studio.ui.formatting import UPLOAD_TYPES
from studio.ui.session import Session, handler

DETECT = ""  # the column dropdowns' "detect it" choice (the config's None)
KEEP = "keep"  # data.multi_label's "keep every label" choice (the config's None: a radio cannot hold None)
TASKS = [("auto: from the data", "auto"), ("single-label", "single_label"), ("multi-label", "multi_label")]
SEVERAL = [("keep every label", KEEP), ("drop such rows", "drop"), ("keep the first label", "first")]


@dataclass
class DataTab:
    source: gr.Textbox
    sample: gr.Dropdown
    upload: gr.File
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    task: gr.Radio
    several: gr.Radio
    """data.multi_label: what rows with several labels become."""
    max_length: gr.Slider
    inspect: gr.Button
    summary: gr.Markdown
    labels_plot: gr.Plot
    lengths_plot: gr.Plot
    preview: gr.Dataframe
    lengths: gr.State
    """Token lengths of the inspected texts: the histogram redraws from them when max length moves."""
    inputs: set[Any]
    """What inspecting reads: the base config and the Data tab's fields (the model's come from the base)."""

    def outputs(self, session: Session) -> list[Any]:
        """What inspecting shows, in the order of its endpoint's results."""
        return [self.summary, self.labels_plot, self.lengths_plot, self.preview, self.lengths, session.num_labels,
                session.train_rows, self.text_column, self.label_column]  # fmt: skip


def build(session: Session) -> DataTab:
    gr.Markdown(
        "Choose the texts and labels to train on: a **shipped sample** (works offline), a **Hugging Face "
        "dataset id** (e.g. `stanfordnlp/imdb`, `google-research-datasets/go_emotions`), or **upload** a "
        "CSV / TSV / JSONL / Parquet file. **Inspect** shows exactly what a run will train on."
    )
    with gr.Row():
        with gr.Column(scale=3):
            source, sample, upload, text_column, label_column, max_length = _source_and_columns(session.form)
            task, several = _task(session.form)
            _splits_and_balance(session.form)
            inspect = gr.Button("Inspect data", variant="primary")
        with gr.Column(scale=4):
            summary = gr.Markdown("Press **Inspect data** to load the source.")
            with gr.Row():
                labels_plot = gr.Plot(label="Labels per split", show_label=False)
                lengths_plot = gr.Plot(label="Token lengths", show_label=False)
    preview = gr.Dataframe(label="First rows (raw)", interactive=False, max_height=320, wrap=True, max_chars=160)
    tab = DataTab(
        source=source, sample=sample, upload=upload, text_column=text_column, label_column=label_column, task=task,
        several=several, max_length=max_length, inspect=inspect, summary=summary, labels_plot=labels_plot,
        lengths_plot=lengths_plot, preview=preview, lengths=gr.State([]),
        inputs={session.base, *session.form.components},
    )  # fmt: skip
    _wire(session, tab)
    return tab


def _source_and_columns(form: ConfigForm) -> tuple[Any, ...]:
    source = form.field(
        "data.source", gr.Textbox, label="Source", info="A sample name, a Hub dataset id, or a local file/folder path."
    )
    with gr.Row():
        sample = gr.Dropdown(
            choices=[(f"{s.name}: {s.description}", s.name) for s in SAMPLES.values()],
            value=None,
            label="Shipped samples",
            info="Sets the source.",
            scale=2,
        )
        form.field("data.hub_config", gr.Textbox, label="Hub config", scale=1)
    upload = gr.File(label="Upload a data file", file_types=UPLOAD_TYPES, height=110)
    with gr.Row():
        column_kwargs = dict(choices=[("detect", DETECT)], allow_custom_value=True, to_ui=lambda v: v or DETECT)
        text_column = form.field("data.text_column", gr.Dropdown, label="Text column", **column_kwargs)
        label_column = form.field("data.label_column", gr.Dropdown, label="Label column", **column_kwargs)
    max_length = form.field("data.max_length", gr.Slider, minimum=16, maximum=4096, step=8, label="Max length (tokens)")
    return source, sample, upload, text_column, label_column, max_length


def _task(form: ConfigForm) -> tuple[Any, Any]:
    """One label per text or a set of them: the task, what rows with several labels become, and the separator
    that splits a label cell into several. In sight, beside the columns: it decides what the model learns."""
    with gr.Row():
        task = form.field("data.task", gr.Radio, choices=TASKS, label="Task", elem_id="data-task",
                          info="single-label: one class per text; multi-label: any number of labels per text, each "
                               "a yes/no; auto: multi-label when some rows carry several labels")  # fmt: skip
        several = form.field(
            "data.multi_label", gr.Radio, choices=SEVERAL, label="Rows with several labels", elem_id="data-several",
            to_config=lambda v: None if v in (KEEP, None, "") else v, to_ui=lambda v: v or KEEP,
            info="keep every label: a multi-label task; drop them or keep their first label: single-label",
        )  # fmt: skip
        form.field("data.label_separator", gr.Textbox, label="Label separator", placeholder="none", max_lines=1,
                   info="splits a label cell such as anger|joy into its labels (lists need none)")  # fmt: skip
    return task, several


def _splits_and_balance(form: ConfigForm) -> None:
    with gr.Accordion("Splits, sampling and balanced subsets", open=False):
        with gr.Row():
            form.field("data.splits", gr.Radio)
            form.field(
                "data.split_ratios",
                gr.Textbox,
                to_config=floats,
                to_ui=joined,
                label="split ratios (train, validation, test)",
            )
        with gr.Row():
            form.field("data.max_samples", gr.Number, minimum=10)
            form.field("data.max_train_samples", gr.Number, minimum=2)
        with gr.Row():
            balanced = gr.Checkbox(label="Balanced subset", info="k labels x n samples in total.")
            k = gr.Number(label="labels (k)", value=2, precision=0, minimum=2)
            n = gr.Number(label="samples in total (n)", value=800, precision=0, minimum=2)
        form.bind("data.balance", balanced, k, n, to_config=_balance_to_config, to_ui=_balance_to_ui)


def _wire(session: Session, tab: DataTab) -> None:
    # A new source has new columns: the user's picks reset to "detect" (a loaded preset keeps its own).
    columns = [tab.source, tab.text_column, tab.label_column]
    tab.sample.select(lambda name: (name, DETECT, DETECT), tab.sample, columns)
    tab.upload.upload(guard(lambda path: use_upload(session, path)), tab.upload, columns)
    tab.inspect.click(handler(inspect_data, session, tab), tab.inputs, tab.outputs(session), api_name="inspect_data")
    tab.max_length.release(remark, [tab.lengths, tab.max_length], tab.lengths_plot, show_progress="hidden")
    # The two settings must agree (multi-label keeps every label; drop or first make it single-label): a click on
    # one moves the other (`input`: only a person's clicks, so the two never set each other off in a loop).
    tab.task.input(several_for, [tab.task, tab.several], tab.several, show_progress="hidden")
    tab.several.input(task_for, [tab.several, tab.task], tab.task, show_progress="hidden")


# ---- handlers --------------------------------------------------------------------------------------------------
def use_upload(session: Session, path: str) -> tuple[str, str, str]:
    """An uploaded file becomes the source (kept in the runs folder); its columns are detected afresh."""
    return str(session.keep_upload(path)), DETECT, DETECT


@guard
def inspect_data(session: Session, tab: DataTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """Load the source as a run would: summary, label and token-length plots, first rows, the column choices."""
    from studio import plots
    from studio.dataview import overview

    config = session.read(values)
    o = overview(config)
    columns = [("detect", DETECT)] + [(c, c) for c in o.columns]
    lengths = (
        plots.token_lengths(o.lengths, config.data.max_length)
        if o.lengths
        else plots.empty("token lengths need the model's tokenizer (see the notes)")
    )
    return {
        tab.summary: summary_md(o, config.data.max_length, config.train, config.data.task),
        tab.labels_plot: plots.label_distribution(o.label_counts, o.multi_label),
        tab.lengths_plot: lengths,
        tab.preview: o.preview,
        tab.lengths: o.lengths,
        session.num_labels: len(o.label_names),
        session.train_rows: o.rows.get("train"),
        tab.text_column: gr.update(choices=columns),
        tab.label_column: gr.update(choices=columns),
    }


def several_for(task: str, several: str) -> Any:
    """What rows with several labels become once the task is picked: every label kept under multi-label; dropped
    (not "kept", which single-label would silently drop) under single-label; as they were under auto."""
    if task == "multi_label" and several != KEEP:
        return KEEP
    if task == "single_label" and several == KEEP:
        return "drop"
    return gr.skip()


def task_for(several: str, task: str) -> Any:
    """The task once rows with several labels are decided: drop or first make it single-label; keeping every
    label under single-label hands the choice back to the data (auto)."""
    if several in ("drop", "first") and task == "multi_label":
        return "single_label"
    if several == KEEP and task == "single_label":
        return "auto"
    return gr.skip()


def remark(values: list[int], limit: float) -> Any:
    """The token-length histogram with the max-length mark moved (from the lengths already measured)."""
    from studio import plots

    return plots.token_lengths(values, int(limit)) if values else gr.skip()


# ---- formatting ------------------------------------------------------------------------------------------------
def summary_md(o: Any, max_length: int, train: Any = None, task: str = "auto") -> str:
    """Rows per split, the task in plain words (what `task` auto decided), labels, columns, the labels' imbalance
    (and what to change above 3:1, given the config's `train` section), how many texts get cut, and the notes."""
    from studio.losses import imbalance_note, imbalance_ratio

    rows = " / ".join(f"{o.rows[s]:,} {s}" for s in ("train", "validation", "test"))
    names = ", ".join(o.label_names[:20]) + (" ..." if len(o.label_names) > 20 else "")
    lines = [
        f"**{sum(o.rows.values()):,} rows**: {rows}  ",
        task_line(o, task),
        f"**{len(o.label_names)} labels**: {names}  ",
        f"text column `{o.text_column}`, label column `{o.label_column}`  ",
    ]
    counts = o.label_counts.get("train") or {}
    if len(counts) > 1:
        what = "labels" if o.multi_label else "classes"
        lines.append(f"{what} {imbalance_ratio(counts):.1f}:1, largest to smallest in train"
                     + (" (rows carrying each label)" if o.multi_label else "") + "  ")  # fmt: skip
        note = imbalance_note(counts, train) if train is not None else None
        if note:
            lines.append(f"**{note[0].upper() + note[1:]}**  ")
    if o.lengths:
        share = o.truncated_share(max_length)
        median = sorted(o.lengths)[len(o.lengths) // 2]
        lines.append(f"median {median} tokens; **{share:.0%} of texts are longer than {max_length}** and get cut")
    lines += [f"- {note}" for note in o.notes]
    return "\n".join(lines)


def task_line(o: Any, task: str) -> str:
    """What the model will learn, in plain words, and why (what auto saw, or the setting)."""
    why = "auto" if task == "auto" else "as set"
    if o.multi_label:
        per_row = o.labels_per_row.get("train")
        mean = f" ({per_row:.2f} labels per text in train)" if per_row else ""
        seen = "some rows carry several labels, so " if task == "auto" else ""
        return (f"**Multi-label task** ({why}): {seen}each text gets every label whose probability reaches its "
                f"threshold, from none to all{mean}. For one label per text, set *Rows with several labels* to drop "
                "or keep the first.  ")  # fmt: skip
    if o.made_single:
        seen = f"{o.made_single:,} rows carried several labels and were made single-label (see the notes)"
    else:
        seen = "no row carries several labels" if task == "auto" else "one label per text"
    return f"**Single-label task** ({why}): each text gets exactly one class; {seen}.  "


def _balance_to_config(on: bool, k: float | None, n: float | None) -> dict | None:
    if not on:
        return None
    return {"num_labels": int(k or 2), "num_samples": int(n or 0)}


def _balance_to_ui(value: dict | None) -> tuple:
    if not value:
        return False, 2, 800
    return True, value["num_labels"], value["num_samples"]
