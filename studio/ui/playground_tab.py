"""Playground: try a finished run on your own text, compare two runs, browse mistakes, label a whole file."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.ui.feedback import guard
from studio.ui.formatting import UPLOAD_TYPES, run_choices
from studio.ui.session import Session, handler

EXAMPLES = [
    "An absolute masterpiece: the acting, the score, the ending. I was moved to tears.",
    "Two hours of my life I will never get back. Wooden dialogue and a plot full of holes.",
    "It was fine, I guess. Some good moments, but I had forgotten it by the next day.",
    "Thank you so much, this made my whole week!",
    "I can't believe they cancelled it again, this is so frustrating.",
    "Wow, I did not see that coming at all.",
    "I'm really worried about how this will turn out.",
]


@dataclass
class PlaygroundTab:
    run_a: gr.Dropdown
    run_b: gr.Dropdown
    refresh: gr.Button
    text: gr.Textbox
    predict: gr.Button
    min_confidence: gr.Slider
    verdict: gr.Markdown
    label_a: gr.Label
    label_b: gr.Label
    split: gr.Radio
    show: gr.Button
    mistakes: gr.Dataframe
    upload: gr.File
    column: gr.Textbox
    labelled: gr.File

    @property
    def pickers(self) -> list[Any]:
        """Run A and run B: what `refreshed` updates."""
        return [self.run_a, self.run_b]


def build(session: Session) -> PlaygroundTab:
    with gr.Row():
        choices = run_choices(session.registry, with_model=True)
        run_a = gr.Dropdown(label="Run A", choices=choices, scale=3, elem_id="run-a")
        run_b = gr.Dropdown(label="Run B (optional, to compare)", choices=choices, scale=3)
        refresh = gr.Button("↻", size="sm", scale=0, min_width=40)
    text = gr.Textbox(label="Text", lines=3, placeholder="Type a review, a comment, any text…", elem_id="play-text")
    gr.Examples([[e] for e in EXAMPLES], inputs=[text], label="Examples (sentiment, then emotion)")
    with gr.Row():
        predict = gr.Button("Predict", variant="primary", elem_id="predict", scale=2)
        min_confidence = gr.Slider(0, 0.99, value=0, step=0.01, scale=3, elem_id="min-confidence",
                                   label="Answer 'unsure' below this confidence (0 = always answer)",
                                   info="probabilities are calibrated on the run's validation split (Train tab "
                                        "results: accuracy against coverage)")  # fmt: skip
    verdict = gr.Markdown(elem_id="play-verdict")
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
    tab = PlaygroundTab(run_a, run_b, refresh, text, predict, min_confidence, verdict, label_a, label_b, split, show,
                        mistakes_table, upload, column, labelled)  # fmt: skip
    _wire(session, tab)
    return tab


def _wire(session: Session, tab: PlaygroundTab) -> None:
    tab.refresh.click(handler(refreshed, session), None, tab.pickers, api_name="playground_runs")
    inputs = [tab.run_a, tab.run_b, tab.text, tab.min_confidence]
    gr.on([tab.predict.click, tab.text.submit], handler(predict_text, session), inputs,
          [tab.label_a, tab.label_b, tab.verdict], api_name="predict")  # fmt: skip
    tab.show.click(handler(show_mistakes, session), [tab.run_a, tab.split], tab.mistakes, api_name="mistakes")
    tab.upload.upload(handler(label_file, session), [tab.run_a, tab.upload, tab.column, tab.min_confidence],
                      tab.labelled, api_name="label_file")  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
def refreshed(session: Session) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both run pickers re-read from the registry (runs that saved a model)."""
    choices = run_choices(session.registry, with_model=True)
    return gr.update(choices=choices), gr.update(choices=choices)


@guard
def predict_text(session: Session, a: str | None, b: str | None, value: str,
                 min_confidence: float = 0.0) -> tuple[Any, dict[str, Any], str]:  # fmt: skip
    """(run A's class probabilities, run B's shown beside them or B's label hidden when no B is picked, and
    which run is unsure: its top probability under `min_confidence`)."""
    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A (train one in the Train tab)")
    if not (value or "").strip():
        raise StudioError("type a text to classify first")
    threshold = min_confidence or None
    first = session.predictors.get(a).predict([value], min_confidence=threshold)[0]
    if not b:
        return first.probs, gr.update(visible=False), _verdict([("Run A", first)], threshold)
    second = session.predictors.get(b).predict([value], min_confidence=threshold)[0]
    shown_b = gr.update(value=second.probs, visible=True, label=f"Run B: {b}")
    return first.probs, shown_b, _verdict([("Run A", first), ("Run B", second)], threshold)


def _verdict(predictions: list[tuple[str, Any]], threshold: float | None) -> str:
    """Each run's answer under the confidence threshold: its label, or unsure ("" without a threshold)."""
    if threshold is None:
        return ""
    said = [f"{name}: **unsure** (top {p.score:.0%} < {threshold:.0%})" if p.unsure else f"{name}: **{p.label}**"
            for name, p in predictions]  # fmt: skip
    return " · ".join(said)


@guard
def show_mistakes(session: Session, a: str | None, which: str) -> Any:
    """Run A's wrong predictions on the `which` split, most confident first."""
    from studio.inference import mistakes

    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A")
    frame = mistakes(session.registry, a, which)
    if frame.empty:
        gr.Info(f"No mistakes on the {which} split")
    return frame


@guard
def label_file(session: Session, a: str | None, path: str | None, text_column: str,
               min_confidence: float = 0.0) -> str:  # fmt: skip
    """Run A's predictions for every text of an uploaded file, as a CSV to download."""
    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A")
    if not path:
        raise StudioError("upload a file of texts first")
    frame = session.predictors.get(a).predict_file(path, text_column=text_column.strip() or None,
                                                   min_confidence=min_confidence or None)  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="studio-predictions-")) / f"{Path(path).name.split('.')[0]}-predictions.csv"
    frame.to_csv(out, index=False)
    return str(out)
