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


@dataclass
class DataTab:
    source: gr.Textbox
    sample: gr.Dropdown
    upload: gr.File
    text_column: gr.Dropdown
    label_column: gr.Dropdown
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
            _splits_and_balance(session.form)
            inspect = gr.Button("Inspect data", variant="primary")
        with gr.Column(scale=4):
            summary = gr.Markdown("Press **Inspect data** to load the source.")
            with gr.Row():
                labels_plot = gr.Plot(label="Labels per split", show_label=False)
                lengths_plot = gr.Plot(label="Token lengths", show_label=False)
    preview = gr.Dataframe(label="First rows (raw)", interactive=False, max_height=320, wrap=True, max_chars=160)
    tab = DataTab(
        source=source, sample=sample, upload=upload, text_column=text_column, label_column=label_column,
        max_length=max_length, inspect=inspect, summary=summary, labels_plot=labels_plot, lengths_plot=lengths_plot,
        preview=preview, lengths=gr.State([]), inputs={session.base, *session.form.components},
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
            form.field("data.multi_label", gr.Radio)
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
        tab.summary: summary_md(o, config.data.max_length, config.train),
        tab.labels_plot: plots.label_distribution(o.label_counts),
        tab.lengths_plot: lengths,
        tab.preview: o.preview,
        tab.lengths: o.lengths,
        session.num_labels: len(o.label_names),
        session.train_rows: o.rows.get("train"),
        tab.text_column: gr.update(choices=columns),
        tab.label_column: gr.update(choices=columns),
    }


def remark(values: list[int], limit: float) -> Any:
    """The token-length histogram with the max-length mark moved (from the lengths already measured)."""
    from studio import plots

    return plots.token_lengths(values, int(limit)) if values else gr.skip()


# ---- formatting ------------------------------------------------------------------------------------------------
def summary_md(o: Any, max_length: int, train: Any = None) -> str:
    """Rows per split, labels, columns, the classes' imbalance (and what to change above 3:1, given the config's
    `train` section), how many texts get cut, and the data's notes."""
    from studio.losses import imbalance_note, imbalance_ratio

    rows = " / ".join(f"{o.rows[s]:,} {s}" for s in ("train", "validation", "test"))
    names = ", ".join(o.label_names[:20]) + (" ..." if len(o.label_names) > 20 else "")
    lines = [
        f"**{sum(o.rows.values()):,} rows**: {rows}  ",
        f"**{len(o.label_names)} labels**: {names}  ",
        f"text column `{o.text_column}`, label column `{o.label_column}`  ",
    ]
    counts = o.label_counts.get("train") or {}
    if len(counts) > 1:
        lines.append(f"classes {imbalance_ratio(counts):.1f}:1, largest to smallest in train  ")
        note = imbalance_note(counts, train) if train is not None else None
        if note:
            lines.append(f"**{note[0].upper() + note[1:]}**  ")
    if o.lengths:
        share = o.truncated_share(max_length)
        median = sorted(o.lengths)[len(o.lengths) // 2]
        lines.append(f"median {median} tokens; **{share:.0%} of texts are longer than {max_length}** and get cut")
    lines += [f"- {note}" for note in o.notes]
    return "\n".join(lines)


def _balance_to_config(on: bool, k: float | None, n: float | None) -> dict | None:
    if not on:
        return None
    return {"num_labels": int(k or 2), "num_samples": int(n or 0)}


def _balance_to_ui(value: dict | None) -> tuple:
    if not value:
        return False, 2, 800
    return True, value["num_labels"], value["num_samples"]
