"""Data tab: pick a source (shipped sample, Hub id, uploaded file), map its columns, split, balance, inspect."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.datasource import SAMPLES
from studio.ui.context import Context
from studio.ui.feedback import guard
from studio.ui.form import floats, joined

UPLOAD_TYPES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".gz"]
DETECT = ""  # the column dropdowns' "detect it" choice (the config's None)


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    form = ctx.form
    gr.Markdown(
        "Choose the texts and labels to train on: a **shipped sample** (works offline), a **Hugging Face "
        "dataset id** (e.g. `stanfordnlp/imdb`, `google-research-datasets/go_emotions`), or **upload** a "
        "CSV / TSV / JSONL / Parquet file. **Inspect** shows exactly what a run will train on."
    )
    with gr.Row():
        with gr.Column(scale=3):
            source = form.field(
                "data.source",
                gr.Textbox,
                label="Source",
                info="A sample name, a Hub dataset id, or a local file/folder path.",
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
            max_length = form.field(
                "data.max_length", gr.Slider, minimum=16, maximum=4096, step=8, label="Max length (tokens)"
            )
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
            inspect = gr.Button("Inspect data", variant="primary")
        with gr.Column(scale=4):
            summary = gr.Markdown("Press **Inspect data** to load the source.")
            with gr.Row():
                labels_plot = gr.Plot(label="Labels per split", show_label=False)
                lengths_plot = gr.Plot(label="Token lengths", show_label=False)
    preview = gr.Dataframe(label="First rows (raw)", interactive=False, max_height=320, wrap=True, max_chars=160)
    lengths = gr.State([])

    # A new source has new columns: the user's picks reset to "detect" (a loaded preset keeps its own).
    sample.select(lambda name: (name, DETECT, DETECT), sample, [source, text_column, label_column])
    upload.upload(
        guard(lambda path: (str(ctx.keep_upload(path)), DETECT, DETECT)), upload, [source, text_column, label_column]
    )

    @guard
    def run_inspect(base: dict, values: dict) -> tuple:
        from studio import plots
        from studio.dataview import overview

        config = form.read(base, values)
        o = overview(config)
        columns = [("detect", DETECT)] + [(c, c) for c in o.columns]
        return (
            _summary(o, config.data.max_length),
            plots.label_distribution(o.label_counts),
            plots.token_lengths(o.lengths, config.data.max_length)
            if o.lengths
            else plots.empty("token lengths need the model's tokenizer (see the notes)"),
            o.preview,
            o.lengths,
            len(o.label_names),
            o.rows.get("train"),
            gr.update(choices=columns),
            gr.update(choices=columns),
        )

    inputs = {session["base"], *form.components}
    outputs = [summary, labels_plot, lengths_plot, preview, lengths, session["num_labels"], session["train_rows"],
               text_column, label_column]  # fmt: skip

    def inspect_fn(d: dict) -> tuple:
        return run_inspect(d[session["base"]], d)

    inspect.click(inspect_fn, inputs, outputs, api_name="inspect_data")

    def remark(values: list[int], limit: float) -> Any:
        from studio import plots

        return plots.token_lengths(values, int(limit)) if values else gr.skip()

    max_length.release(remark, [lengths, max_length], lengths_plot, show_progress="hidden")
    return {"inspect": inspect, "source": source, "summary": summary, "on_load": (inspect_fn, inputs, outputs)}


def _balance_to_config(on: bool, k: float | None, n: float | None) -> dict | None:
    if not on:
        return None
    return {"num_labels": int(k or 2), "num_samples": int(n or 0)}


def _balance_to_ui(value: dict | None) -> tuple:
    if not value:
        return False, 2, 800
    return True, value["num_labels"], value["num_samples"]


def _summary(o: Any, max_length: int) -> str:
    rows = " / ".join(f"{o.rows[s]:,} {s}" for s in ("train", "validation", "test"))
    names = ", ".join(o.label_names[:20]) + (" ..." if len(o.label_names) > 20 else "")
    lines = [
        f"**{sum(o.rows.values()):,} rows**: {rows}  ",
        f"**{len(o.label_names)} labels**: {names}  ",
        f"text column `{o.text_column}`, label column `{o.label_column}`  ",
    ]
    if o.lengths:
        share = o.truncated_share(max_length)
        median = sorted(o.lengths)[len(o.lengths) // 2]
        lines.append(f"median {median} tokens; **{share:.0%} of texts are longer than {max_length}** and get cut")
    lines += [f"- {note}" for note in o.notes]
    return "\n".join(lines)
