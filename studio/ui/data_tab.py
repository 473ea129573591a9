"""Data tab: pick a source (shipped sample, Hub id, uploaded file), map its columns, split, balance, inspect."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.datasource import SAMPLES
from studio.errors import StudioError
from studio.ui.feedback import guard, said_in
from studio.ui.form import ConfigForm, floats, joined
from studio.ui.formatting import UPLOAD_TYPES, text_table
from studio.ui.session import Session, handler

DETECT = ""  # the column dropdowns' "detect it" choice (the config's None)
KEEP = "keep"  # data.multi_label's "keep every label" choice (the config's None: a radio cannot hold None)
TASKS = [("auto: from the data", "auto"), ("single-label", "single_label"), ("multi-label", "multi_label")]
SEVERAL = [("keep every label", KEEP), ("drop such rows", "drop"), ("keep the first label", "first")]
HEADER = [("auto: detect", "auto"), ("names the columns", "yes"), ("is data (no header)", "no")]
SPLITS = ("train", "validation", "test")
WARNINGS = ("repeated texts", "leakage", "differ only by case")
"""Notes that ask the user for a decision (the engine's words): listed first in the summary, marked."""


@dataclass
class SplitSlot:
    """A separate validation or test file (`data.validation_source` / `data.test_source`): its path, an upload
    button that fills it in, and its own columns (empty: the training data's names, else detected)."""

    role: str
    source: gr.Textbox
    upload: gr.UploadButton
    text_column: gr.Textbox
    label_column: gr.Textbox


@dataclass
class DataTab:
    source: gr.Textbox
    sample: gr.Dropdown
    upload: gr.File
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    validation: SplitSlot
    test: SplitSlot
    label_file: gr.Textbox
    """data.label_file: one label per line beside a .txt of texts; its upload button fills it in."""
    label_file_upload: gr.UploadButton
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
    folds: dict[Any, tuple[str, ...]]
    """Each folded section (an Accordion) -> the config paths of its fields: a failed Inspect opens those it names."""
    inputs: set[Any]
    """What inspecting reads: the base config and the Data tab's fields (the model's come from the base)."""
    rows: gr.State
    """Rows per split of the inspected data ({} until inspected, or after the source changed): the Train tab's
    summary beside Start shows them."""
    shown: gr.State
    """The source the summary, plots and rows are of: a typed source is read again only when it differs."""
    pending: gr.State
    """A new source was read (`source_changed`): the full Inspect follows (`inspect_new`)."""

    def new_outputs(self, session: Session) -> list[Any]:
        """What reading a new source clears or fills (`source_changed`)."""
        return [self.summary, self.labels_plot, self.lengths_plot, self.preview, self.lengths, self.rows,
                session.num_labels, session.train_rows, self.text_column, self.label_column, self.shown,
                self.pending, self.upload]  # fmt: skip

    def outputs(self, session: Session) -> list[Any]:
        """What inspecting shows, in the order of its endpoint's results."""
        return [self.summary, self.labels_plot, self.lengths_plot, self.preview, self.lengths, session.num_labels,
                session.train_rows, self.text_column, self.label_column, *self.folds, self.rows]  # fmt: skip


def build(session: Session) -> DataTab:
    gr.Markdown(
        "Choose the texts and labels to train on: a **shipped sample** (works offline), a **Hugging Face "
        "dataset id** (e.g. `stanfordnlp/imdb`, `google-research-datasets/go_emotions`), or **upload** a "
        "CSV / TSV / JSONL / JSON / Parquet / TXT file. **Inspect** shows exactly what a run will train on."
    )
    form = session.form
    with gr.Row():
        with gr.Column(scale=3):
            source, sample, upload, text_column, label_column = _source_and_columns(form)
            max_length = form.field("data.max_length", gr.Slider, minimum=16, maximum=4096, step=8,
                                    label="Max length (tokens)")  # fmt: skip
            task, several = _task(form)
            validation, test, separate = _separate_files(form)  # folded below, beside the splits
            label_file, label_file_upload, formats = _format_and_cleaning(form)
            splits = _splits_and_balance(form)
            inspect = gr.Button("Inspect data", variant="primary")
        with gr.Column(scale=4):
            summary = gr.Markdown("Press **Inspect data** to load the source.", elem_id="data-summary")
            with gr.Row():
                labels_plot = gr.Plot(label="Labels per split", show_label=False, elem_id="data-labels-plot")
                lengths_plot = gr.Plot(label="Token lengths", show_label=False, elem_id="data-lengths-plot")
    preview = gr.Dataframe(
        label="First rows (raw)", interactive=False, max_height=320, wrap=True, max_chars=160, elem_id="data-preview"
    )
    tab = DataTab(
        source=source, sample=sample, upload=upload, text_column=text_column, label_column=label_column,
        validation=validation, test=test, label_file=label_file, label_file_upload=label_file_upload, task=task,
        several=several, max_length=max_length, inspect=inspect, summary=summary, labels_plot=labels_plot,
        lengths_plot=lengths_plot, preview=preview, lengths=gr.State([]), folds=dict([separate, formats, splits]),
        inputs={session.base, *session.form.components}, rows=gr.State({}),
        shown=gr.State(session.form.initial["data"]["source"]), pending=gr.State(False),
    )  # fmt: skip
    _wire(session, tab)
    return tab


def _source_and_columns(form: ConfigForm) -> tuple[Any, ...]:
    source = form.field(
        "data.source", gr.Textbox, label="Source", elem_id="data-source",
        info="A sample name, a Hub dataset id, or a local file/folder path: the training data (and its validation "
             "and test splits, when it has them).",
    )  # fmt: skip
    with gr.Row():
        sample = gr.Dropdown(
            choices=[(f"{s.name}: {s.description}", s.name) for s in SAMPLES.values()],
            value=sample_of(form.initial["data"]["source"]),
            label="Shipped samples",
            info="Sets the source.",
            elem_id="data-sample",
            scale=2,
        )
        form.field("data.hub_config", gr.Textbox, label="Hub config", scale=1)
    upload = gr.File(label="Upload a data file", file_types=UPLOAD_TYPES, height=110, elem_id="data-upload")
    with gr.Row():
        column_kwargs = dict(choices=[("detect", DETECT)], allow_custom_value=True, to_ui=lambda v: v or DETECT)
        text_column = form.field("data.text_column", gr.Dropdown, label="Text column", **column_kwargs)
        label_column = form.field("data.label_column", gr.Dropdown, label="Label column", **column_kwargs)
    return source, sample, upload, text_column, label_column


def _separate_files(form: ConfigForm) -> tuple[SplitSlot, SplitSlot, tuple[Any, tuple[str, ...]]]:
    """Optional validation and test files beside the source, each with its own columns; folded away: most
    sources are one file."""
    start = len(form.bindings)
    with gr.Accordion("Separate validation / test files", open=False, elem_id="separate-files") as fold:
        gr.Markdown("Empty: carved from the training data by the split ratios. A file given here is used whole, "
                    "as it is (never sampled).")  # fmt: skip
        slots = _split_slot(form, "validation"), _split_slot(form, "test")
    return *slots, (fold, _paths_since(form, start))


def _paths_since(form: ConfigForm, start: int) -> tuple[str, ...]:
    """The config paths bound since the form had `start` bindings (those of one folded section)."""
    return tuple(b.path for b in form.bindings[start:])


def _split_slot(form: ConfigForm, role: str) -> SplitSlot:
    with gr.Row():
        source = gr.Textbox(label=f"{role.capitalize()} file", max_lines=1, scale=4, elem_id=f"{role}-source",
                            placeholder="empty: carved from the training data",
                            info="A file or folder path, or a Hub dataset id; or upload one")  # fmt: skip
        upload = gr.UploadButton("Upload", file_types=UPLOAD_TYPES, size="sm", scale=1, min_width=90,
                                 elem_id=f"{role}-upload", elem_classes="studio-upload")  # fmt: skip
    with gr.Row():
        text_column = gr.Textbox(label="its text column", max_lines=1, placeholder="as in train, else detected")
        label_column = gr.Textbox(label="its label column", max_lines=1, placeholder="as in train, else detected")
    form.bind(f"data.{role}_source", source, text_column, label_column, to_config=_slot_to_config,
              to_ui=_slot_to_ui, merge=_slot_merge)  # fmt: skip
    return SplitSlot(role, source, upload, text_column, label_column)


def _format_and_cleaning(form: ConfigForm) -> tuple[Any, Any, tuple[Any, tuple[str, ...]]]:
    """How a CSV/TXT file is read (header, delimiter, a parallel label file) and what is cleaned (label case,
    repeated and leaked texts): folded away, the defaults detect and keep."""
    start = len(form.bindings)
    with gr.Accordion("File format and cleaning", open=False, elem_id="format-and-cleaning") as fold:
        with gr.Row():
            form.field("data.header", gr.Dropdown, choices=HEADER, label="First line", scale=2,
                       to_config=lambda v: {"yes": True, "no": False}.get(v),
                       to_ui=lambda v: "auto" if v is None else "yes" if v else "no",
                       info="of a CSV/TSV/TXT file. auto: a header in .csv/.tsv, in .txt when it names a column; "
                            "without one the columns are text, label (or column_1, ...)")  # fmt: skip
            form.field("data.delimiter", gr.Textbox, label="Delimiter", max_lines=1, placeholder="detect", scale=1,
                       to_config=_delimiter_to_config, to_ui=_delimiter_to_ui,
                       info="empty: detected (, ; tab |); type tab for a tab")  # fmt: skip
        with gr.Row():
            label_file = form.field("data.label_file", gr.Textbox, label="Label file", max_lines=1, scale=4,
                                    placeholder="none", elem_id="label-file",
                                    info="one label per line, beside a .txt source of one text per line")  # fmt: skip
            upload = gr.UploadButton("Upload", file_types=[".txt"], size="sm", scale=1, min_width=90,
                                     elem_id="label-file-upload", elem_classes="studio-upload")  # fmt: skip
        with gr.Row():
            form.field("data.merge_label_case", gr.Checkbox, label="Merge labels that differ only by case",
                       info="Pos and pos become one class, spelled as its most common form")  # fmt: skip
            form.field("data.drop_duplicates", gr.Checkbox, label="Drop repeated and leaked texts",
                       info="repeats within a split, and validation/test rows whose text is also in train")  # fmt: skip
    return label_file, upload, (fold, _paths_since(form, start))


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


def _splits_and_balance(form: ConfigForm) -> tuple[Any, tuple[str, ...]]:
    start = len(form.bindings)
    with gr.Accordion("Splits, sampling and balanced subsets", open=False) as fold:
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
    return fold, _paths_since(form, start)


def _wire(session: Session, tab: DataTab) -> None:
    # A new source has new columns: the user's picks reset to "detect" (a loaded preset keeps its own). Choosing
    # one (a sample, an upload, a typed path on Enter or on leaving the box) reads it at once: what belonged to the
    # old source goes, the column pickers get the new header, then the full Inspect follows.
    columns = [tab.source, tab.text_column, tab.label_column]
    read = dict(fn=handler(source_changed, session, tab), inputs={tab.shown, *tab.inputs},
                outputs=tab.new_outputs(session), show_progress_on=[tab.summary], api_visibility="private")  # fmt: skip
    follow = dict(fn=handler(inspect_new, session, tab), inputs={tab.pending, *tab.inputs},
                  outputs=tab.outputs(session), api_visibility="private",
                  show_progress_on=[tab.summary, tab.labels_plot, tab.lengths_plot, tab.preview])  # fmt: skip
    tab.sample.select(lambda name: (name, DETECT, DETECT), tab.sample, columns).then(**read).then(**follow)
    # An upload that fails is said where the summary goes (and a toast): no "Error" badge over the column pickers
    uploaded = guard(lambda path: use_upload(session, path))
    tab.upload.upload(**said_in(tab.summary, uploaded, columns), inputs=tab.upload).success(**read).then(**follow)
    for typed in (tab.source.submit, tab.source.blur):
        typed(**read).then(**follow)
    tab.source.change(sample_of, tab.source, tab.sample, show_progress="hidden")  # a preset or run loaded too
    for slot in (tab.validation, tab.test):
        slot.upload.upload(**said_in(tab.summary, uploaded, [slot.source, slot.text_column, slot.label_column]),
                           inputs=slot.upload)  # fmt: skip
    tab.label_file_upload.upload(**said_in(tab.summary, guard(lambda path: str(session.keep_upload(path))),
                                           tab.label_file), inputs=tab.label_file_upload)  # fmt: skip
    # The loading animation stays off the column pickers (outputs too: their choices): they stay free to change.
    tab.inspect.click(handler(inspect_data, session, tab), tab.inputs, tab.outputs(session), api_name="inspect_data",
                      show_progress_on=[tab.summary, tab.labels_plot, tab.lengths_plot, tab.preview])  # fmt: skip
    tab.max_length.release(remark, [tab.lengths, tab.max_length], tab.lengths_plot, show_progress="hidden")
    # The two settings must agree (multi-label keeps every label; drop or first make it single-label): a click on
    # one moves the other (`input`: only a person's clicks, so the two never set each other off in a loop).
    tab.task.input(several_for, [tab.task, tab.several], tab.several, show_progress="hidden")
    tab.several.input(task_for, [tab.several, tab.task], tab.task, show_progress="hidden")


# ---- handlers --------------------------------------------------------------------------------------------------
def use_upload(session: Session, path: str) -> tuple[str, str, str]:
    """An uploaded file becomes the source (kept in the runs folder); its columns are detected afresh."""
    return str(session.keep_upload(path)), DETECT, DETECT


def sample_of(source: str | None) -> str | None:
    """The shipped sample the source names (the samples dropdown shows it), else None."""
    return source if source in SAMPLES else None


def source_changed(session: Session, tab: DataTab, values: dict[Any, Any]) -> Any:
    """A source just chosen: what belonged to the old one goes (summary, plots, rows, counts, column picks) and
    its header and first rows come in, quickly (no tokenizing); `pending` asks the full Inspect to follow. The
    same source as shown: nothing (leaving the box unchanged). Unreadable: the message in the summary's place."""
    from studio import plots
    from studio.datasource import preview

    source = str(values[session.form.component("data.source")] or "").strip()
    if not source or source == values[tab.shown]:
        return {tab.pending: False}
    cleared = {tab.labels_plot: plots.empty("inspecting the new source ..."), tab.lengths_plot: plots.empty(""),
               tab.lengths: [], tab.rows: {}, session.num_labels: 2, session.train_rows: None, tab.shown: source,
               tab.text_column: DETECT, tab.label_column: DETECT}  # fmt: skip
    if Path(source).parent != session.uploads_dir:  # a sample or typed path: the upload box lets go of its file
        cleared[tab.upload] = None
    try:
        data = dataclasses.replace(session.read(values).data, text_column=None, label_column=None,
                                   validation_source=None, test_source=None)  # fmt: skip
        first = preview(data, 20)
    except StudioError as e:
        return {**cleared, tab.summary: failed_md(str(e)), tab.preview: None, tab.pending: False,
                tab.labels_plot: plots.empty("no data: see the message")}  # fmt: skip
    names = [str(c) for c in first.columns]
    choices = [("detect", DETECT)] + [(c, c) for c in names]
    return {**cleared, tab.preview: first, tab.pending: True,
            tab.summary: f"**{_file_name(source)}**: columns {', '.join(f'`{c}`' for c in names)}. Inspecting "
                         "(rows, labels, token lengths) ...",
            tab.text_column: gr.update(value=DETECT, choices=choices),
            tab.label_column: gr.update(value=DETECT, choices=choices)}  # fmt: skip


def inspect_new(session: Session, tab: DataTab, values: dict[Any, Any]) -> Any:
    """The full Inspect after `source_changed` read a new source (nothing when it did not)."""
    if not values.get(tab.pending):
        return gr.skip()
    return inspect_data(session, tab, values)


@guard
def inspect_data(session: Session, tab: DataTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """Load the source as a run would: summary, label and token-length plots, first rows, the column choices.
    Data that cannot be read is said in the summary, in the CLI's words (fields by their labels), and the plots
    and rows are cleared: the fields it names stay in sight, free to change (a folded section that holds one
    opens)."""
    from studio import plots
    from studio.dataview import overview

    try:
        config = session.read(values)
        o = overview(config)
    except StudioError as e:
        named = [fold for fold, paths in tab.folds.items() if any(p in str(e) for p in paths)]
        return {tab.summary: failed_md(session.form.words(str(e)), [fold.label for fold in named]),
                tab.labels_plot: plots.empty("no data: see the message"), tab.lengths_plot: plots.empty(""),
                tab.preview: None, tab.lengths: [], tab.rows: {},
                **{fold: gr.update(open=True) for fold in named}}  # fmt: skip
    columns = [("detect", DETECT)] + [(c, c) for c in o.columns]
    lengths = (
        plots.token_lengths(o.lengths, config.data.max_length)
        if o.lengths
        else plots.empty("token lengths need the model's tokenizer (see the notes)")
    )
    summary = summary_md(o, config.data.max_length, config.train, config.data.task, config.data)
    return {
        tab.summary: summary,
        tab.labels_plot: plots.label_distribution(o.label_counts, o.multi_label),
        tab.lengths_plot: lengths,
        tab.preview: text_table(o.preview, [o.label_column, o.text_column]),  # labels first, texts cut to a line
        tab.lengths: o.lengths,
        session.num_labels: len(o.label_names),
        session.train_rows: o.rows.get("train"),
        tab.rows: dict(o.rows),
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
def summary_md(o: Any, max_length: int, train: Any = None, task: str = "auto", data: Any = None) -> str:
    """Rows per split, the task in plain words (what `task` auto decided), labels, columns, the labels' imbalance
    (and what to change above 3:1, given the config's `train` section), how many texts get cut, where each split
    came from with its repeated and leaked texts (`data`: the config's data section, see `splits_table`), and the
    notes."""
    from studio.losses import imbalance_note, imbalance_ratio

    rows = " / ".join(f"{o.rows[s]:,} {s}" for s in SPLITS)
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
    return "\n".join([*lines, "", splits_table(o, data), "", *notes_md(o.notes)])


def splits_table(o: Any, data: Any = None) -> str:
    """A row per split: its rows, where they came from, texts repeated in it, and (validation, test) its texts
    that are also in train. A count that needs a decision is marked; one that `data.drop_duplicates` dropped says
    so. The data's files are named by their names: the full paths are in the fields on the left."""
    dropped = bool(data and data.drop_duplicates)
    files = [] if data is None else [data.source, *(s.source for s in (data.validation_source, data.test_source) if s)]

    def count(n: int | None) -> str:
        if n is None:
            return ""
        return f"{n:,} (dropped)" if n and dropped else f"⚠ **{n:,}**" if n else "0"

    lines = ["| split | rows | from | repeated texts | texts also in train |", "|---|--:|---|--:|--:|"]
    for s in SPLITS:
        origin = _without_count(o.origins.get(s, ""))
        for file in files:
            origin = origin.replace(file, _file_name(file))
        origin = origin.replace("|", "\\|")
        leaked = "—" if s == "train" else count(o.leaked.get(s))
        lines.append(f"| {s} | {o.rows.get(s, 0):,} | {origin} | {count(o.duplicates.get(s))} | {leaked} |")
    return "\n".join(lines)


def _without_count(origin: str) -> str:
    """'held.csv (data.test_source, 40 rows)' -> 'held.csv (data.test_source)': the table has a rows column."""
    return re.sub(r", [\d,]+ rows\)$", ")", re.sub(r" \([\d,]+ rows\)$", "", origin))


def _file_name(source: str) -> str:
    """A local file's name, without the digest an upload's copy carries (a Hub id or relative path as it is)."""
    path = Path(source)
    return re.sub(r"^[0-9a-f]{10}-", "", path.name) if path.is_absolute() else source


def notes_md(notes: list[str]) -> list[str]:
    """The notes as a list, those that ask for a decision first and marked (repeated or leaked texts still in
    the data, label spellings that differ only by case)."""
    if not notes:
        return []
    warn = [n for n in notes if any(w in n for w in WARNINGS) and "dropped (data.drop_duplicates)" not in n]
    return ["**Notes**", "", *(f"- ⚠ {n}" for n in warn), *(f"- {n}" for n in notes if n not in warn)]


def failed_md(message: str, sections: list[str] | None = None) -> str:
    """What a failed Inspect shows where the summary was: the message (the CLI's words; `*`, backticks and `<`
    kept as written, not read as Markdown or HTML) and the way on (`sections`: the folded ones it opened)."""
    where = " and ".join(f"**{s}**" for s in sections or [])
    where = f" (under {where}, opened)" if where else ""
    message = re.sub(r"([*`<])", r"\\\1", message)
    return (f"### ⚠ This data cannot be used yet\n\n{message}\n\nChange what the message names on the left{where} "
            "and press **Inspect data** again.")  # fmt: skip


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


def _slot_to_config(source: str | None, text_column: str | None, label_column: str | None) -> dict | None:
    """A separate file's fields -> `data.validation_source` / `test_source`: None (carve it) when no file is given."""
    source = (source or "").strip()
    if not source:
        return None
    return {"source": source, "text_column": (text_column or "").strip() or None,
            "label_column": (label_column or "").strip() or None}  # fmt: skip


def _slot_to_ui(value: dict | str | None) -> tuple[str, str, str]:
    if isinstance(value, str):  # a preset's short form: the file alone
        value = {"source": value}
    value = value or {}
    return value.get("source") or "", value.get("text_column") or "", value.get("label_column") or ""


def _slot_merge(base: dict | str | None, value: dict | None) -> dict | None:
    """The parts of a separate file the page does not show (`split`, `hub_config`, `label_file`) stay as the base
    has them while the file does: another file is another dataset, whose split or label file they are not."""
    if isinstance(base, str):
        base = {"source": base}
    if value is None or not base or base.get("source") != value["source"]:
        return value
    return {**base, **value}


def _delimiter_to_config(value: str | None) -> str | None:
    """'' -> None (detect); 'tab' or '\\t' -> a tab (a browser's text box cannot hold one); 'space' -> ' '."""
    if value is None or value == "":
        return None
    word = value.strip().lower()
    return {"tab": "\t", "\\t": "\t", "space": " ", "": value}.get(word, value.strip())


def _delimiter_to_ui(value: str | None) -> str:
    return {None: "", "\t": "tab", " ": "space"}.get(value, value or "")
