"""Playground: try a finished run on your own text, compare two runs, browse mistakes, label a whole file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.ui.context import Context
from studio.ui.feedback import guard
from studio.ui.runs_tab import run_choices

EXAMPLES = [
    "An absolute masterpiece: the acting, the score, the ending. I was moved to tears.",
    "Two hours of my life I will never get back. Wooden dialogue and a plot full of holes.",
    "It was fine, I guess. Some good moments, but I had forgotten it by the next day.",
    "Thank you so much, this made my whole week!",
    "I can't believe they cancelled it again, this is so frustrating.",
    "Wow, I did not see that coming at all.",
    "I'm really worried about how this will turn out.",
]
UPLOAD_TYPES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".gz"]


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    with gr.Row():
        run_a = gr.Dropdown(label="Run A", choices=run_choices(ctx, with_model=True), scale=3, elem_id="run-a")
        run_b = gr.Dropdown(label="Run B (optional, to compare)", choices=run_choices(ctx, with_model=True), scale=3)
        refresh = gr.Button("↻", size="sm", scale=0, min_width=40)
    text = gr.Textbox(label="Text", lines=3, placeholder="Type a review, a comment, any text…", elem_id="play-text")
    gr.Examples([[e] for e in EXAMPLES], inputs=[text], label="Examples (sentiment, then emotion)")
    predict = gr.Button("Predict", variant="primary", elem_id="predict")
    with gr.Row():
        label_a = gr.Label(label="Run A", num_top_classes=10, elem_id="label-a")
        label_b = gr.Label(label="Run B", num_top_classes=10, visible=False)
    with gr.Accordion("Mistakes on the validation / test split", open=False):
        with gr.Row():
            split = gr.Radio(["test", "validation"], value="test", label="Split")
            show = gr.Button("Show run A's mistakes")
        mistakes_table = gr.Dataframe(interactive=False, wrap=True, max_height=360)
    with gr.Accordion("Label a file", open=False):
        gr.Markdown(
            "Upload a CSV / TSV / JSONL / Parquet file with a text column (`text`, `review`, … or the "
            "only column); get it back as CSV with `predicted_label`, `score` and one `prob_<label>` per class."
        )
        with gr.Row():
            upload = gr.File(label="File of texts", file_types=UPLOAD_TYPES)
            column = gr.Textbox(label="Text column", placeholder="empty = detect")
            labelled = gr.File(label="Predictions (CSV)", interactive=False)

    def refreshed() -> tuple:
        choices = run_choices(ctx, with_model=True)
        return gr.update(choices=choices), gr.update(choices=choices)

    refresh.click(refreshed, None, [run_a, run_b], api_name="playground_runs")

    @guard
    def predict_text(a: str | None, b: str | None, value: str) -> tuple:
        if not a:
            raise StudioError("pick a run first: choose a finished run in Run A (train one in the Train tab)")
        if not (value or "").strip():
            raise StudioError("type a text to classify first")
        first = ctx.predictors.get(a).predict([value])[0]
        if not b:
            return first.probs, gr.update(visible=False)
        second = ctx.predictors.get(b).predict([value])[0]
        return first.probs, gr.update(value=second.probs, visible=True, label=f"Run B: {b}")

    gr.on([predict.click, text.submit], predict_text, [run_a, run_b, text], [label_a, label_b], api_name="predict")

    @guard
    def show_mistakes(a: str | None, which: str) -> Any:
        from studio.inference import mistakes

        if not a:
            raise StudioError("pick a run first: choose a finished run in Run A")
        frame = mistakes(ctx.registry, a, which)
        if frame.empty:
            gr.Info(f"No mistakes on the {which} split")
        return frame

    show.click(show_mistakes, [run_a, split], mistakes_table, api_name="mistakes")

    @guard
    def label_file(a: str | None, path: str | None, text_column: str) -> str:
        if not a:
            raise StudioError("pick a run first: choose a finished run in Run A")
        if not path:
            raise StudioError("upload a file of texts first")
        frame = ctx.predictors.get(a).predict_file(path, text_column=text_column.strip() or None)
        out = Path(tempfile.mkdtemp(prefix="studio-predictions-")) / f"{Path(path).name.split('.')[0]}-predictions.csv"
        frame.to_csv(out, index=False)
        return str(out)

    upload.upload(label_file, [run_a, upload, column], labelled, api_name="label_file")
    return {"run_a": run_a, "run_b": run_b, "refreshed": refreshed}
