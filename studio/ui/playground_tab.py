"""Playground: try a finished run on your own text, compare two runs, browse mistakes, label a whole file."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.ui.feedback import guard, said_in
from studio.ui.formatting import UPLOAD_TYPES, clip, run_choices, text_table
from studio.ui.session import Session, handler

EXAMPLES = [
    "An absolute masterpiece: the acting, the score, the ending. I was moved to tears.",
    "Two hours of my life I will never get back. Wooden dialogue and a plot full of holes.",
    "It was fine, I guess. Some good moments, but I had forgotten it by the next day.",
    "Thank you so much, this made my whole week!",
    "I can't believe they cancelled it again, this is so frustrating.",
    "Wow, I did not see that coming at all.",
    "I'm really worried about how this will turn out.",
    "Thank you so much, I love this! Best news all week.",  # several emotions at once: a multi-label run's case
]


@dataclass
class Why:
    button: gr.Button
    label: gr.Dropdown
    """Which label to explain: PREDICTED (the run's answer; a multi-label run's every label given) or any label."""
    shown: gr.HTML
    """The text with its words shaded (studio/explain.py's `to_html`): run A's, and run B's beside it."""
    mistake_button: gr.Button
    mistake_shown: gr.HTML
    """The picked mistake's words: why run A said what it said, and what spoke for the true label."""


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
    """A single-label run's classes (a multi-label run's probabilities too, hidden: the /predict API's first value
    keeps its shape for every run)."""
    label_b: gr.Label
    bars_a: gr.Plot
    """A multi-label run's probability per label with its threshold (hidden for a single-label run)."""
    bars_b: gr.Plot
    split: gr.Radio
    show: gr.Button
    mistakes: gr.Dataframe
    """Run A's mistakes: labels and confidence first, each text cut to a line (`formatting.text_table`)."""
    mistake_texts: gr.State
    """The mistakes' full texts, in the table's order."""
    mistake_text: gr.Textbox
    """The full text of the mistake picked in the table."""
    upload: gr.File
    column: gr.Textbox
    labelled: gr.File
    why: Why | None = None
    """The "Why?" parts: word attributions of the text (A and B side by side) and of a picked mistake."""

    @property
    def pickers(self) -> list[Any]:
        """Run A and run B: what `refreshed` updates."""
        return [self.run_a, self.run_b]


def build(session: Session) -> PlaygroundTab:
    with gr.Row():
        choices = run_choices(session.registry, with_model=True)
        newest = choices[0][1] if choices else None  # run A starts at the newest run, as a Dropdown does
        run_a = gr.Dropdown(label="Run A", choices=choices, value=newest, scale=3, elem_id="run-a")
        # None said outright: left to its default, a Dropdown starts at its first choice, and every prediction
        # would compare the newest run with itself
        run_b = gr.Dropdown(label="Run B (optional, to compare)", choices=choices, value=None, scale=3,
                            elem_id="run-b")  # fmt: skip
        refresh = gr.Button("↻", size="sm", scale=0, min_width=40)
    text = gr.Textbox(label="Text", lines=3, placeholder="Type a review, a comment, any text…", elem_id="play-text")
    gr.Examples([[e] for e in EXAMPLES], inputs=[text], label="Examples (sentiment, then emotion)")
    with gr.Row():
        predict = gr.Button("Predict", variant="primary", elem_id="predict", scale=2)
        why_button = gr.Button("Why?", elem_id="why", scale=1)
        min_confidence = gr.Slider(0, 0.99, value=0, step=0.01, scale=3, elem_id="min-confidence",
                                   label="Answer 'unsure' below this confidence (0 = always answer)",
                                   info="confidence: the top class's probability; for a multi-label run, its least "
                                        "sure label decision (p of a label given, 1 - p of one left out). Calibrated "
                                        "on the run's validation split (Train tab results: coverage)")  # fmt: skip
    verdict = gr.Markdown(elem_id="play-verdict")
    with gr.Row():  # hidden ones take no room: one run fills the row, two share it
        first_label, first_bars = shown_for(session, newest)
        label_a = gr.Label(label=first_label.get("label", "Run A"), num_top_classes=10, elem_id="label-a",
                           visible=first_label["visible"])  # fmt: skip
        bars_a = gr.Plot(first_bars.get("value"), label="Run A: labels", show_label=False,
                         visible=first_bars["visible"], elem_id="bars-a")  # fmt: skip
        label_b = gr.Label(label="Run B", num_top_classes=10, visible=False)
        bars_b = gr.Plot(label="Run B: labels", show_label=False, visible=False, elem_id="bars-b")
    why = _why_parts(session, newest, why_button)
    with gr.Accordion("Mistakes on the validation / test split", open=False):
        with gr.Row():
            split = gr.Radio(["test", "validation"], value="test", label="Split")
            show = gr.Button("Show run A's mistakes")
        gr.Markdown("A multi-label run's mistakes are texts whose label set is not exactly right: *missing* lists "
                    "the true labels it left out, *extra* the labels it gave wrongly; *confidence* is its surest "
                    "wrong decision.")  # fmt: skip
        mistakes_table = gr.Dataframe(interactive=False, wrap=True, max_height=360, elem_id="mistakes")
        mistake_text = gr.Textbox(label="Whole text", placeholder="pick a row to read its whole text here", lines=3,
                                  max_lines=12, interactive=False, elem_id="mistake-text")  # fmt: skip
        why.mistake_button = gr.Button("Why? Run A's words on this text", size="sm", elem_id="why-mistake")
        why.mistake_shown = gr.HTML(elem_id="mistake-why")
    with gr.Accordion("Label a file", open=False):
        gr.Markdown(
            "Upload a CSV / TSV / JSONL / Parquet file with a text column (`text`, `review`, … or the "
            "only column); get it back as CSV with `predicted_label`, `score` and one `prob_<label>` per class. A "
            'multi-label run writes `predicted_labels` (the labels given, joined by ", "; empty when none reached '
            "its threshold) and `label_count` instead of `predicted_label`."
        )
        with gr.Row():
            upload = gr.File(label="File of texts", file_types=UPLOAD_TYPES)
            column = gr.Textbox(label="Text column", placeholder="empty = detect")
            labelled = gr.File(label="Predictions (CSV)", interactive=False)
    tab = PlaygroundTab(run_a, run_b, refresh, text, predict, min_confidence, verdict, label_a, label_b, bars_a, bars_b,
                        split, show, mistakes_table, gr.State([]), mistake_text, upload, column,
                        labelled, why)  # fmt: skip
    _wire(session, tab)
    _wire_why(session, tab)
    return tab


def _why_parts(session: Session, newest: str | None, button: gr.Button) -> Why:
    """The label Why? explains and where the shaded text shows (the mistakes' parts come later)."""
    with gr.Row():
        label = gr.Dropdown(label="Explain which label", choices=why_choices(session, newest), value=PREDICTED,
                            scale=1, elem_id="why-label", allow_custom_value=True)  # fmt: skip
        gr.Markdown("**Why?** shades each word by its share of the label's probability (Integrated Gradients on "
                    "the input embeddings): green for the label, red against it; run B's beside run A's.")  # fmt: skip
    shown = gr.HTML(elem_id="why-html")
    return Why(button, label, shown, None, None)  # type: ignore[arg-type]


def _wire(session: Session, tab: PlaygroundTab) -> None:
    tab.refresh.click(handler(refreshed, session), None, tab.pickers, api_name="playground_runs")
    # `input`: every pick in the page, also of the run A already shows (its value unchanged: no `change`)
    tab.run_a.input(handler(shown_for, session), tab.run_a, [tab.label_a, tab.bars_a], show_progress="hidden")
    inputs = [tab.run_a, tab.run_b, tab.text, tab.min_confidence]
    # A failure is said in the answer line (a toast too), with no "Error" badge over the pickers and answers
    answers = [tab.label_a, tab.label_b, tab.verdict, tab.bars_a, tab.bars_b]
    gr.on([tab.predict.click, tab.text.submit], **said_in(tab.verdict, handler(predict_text, session), answers),
          inputs=inputs, api_name="predict")  # fmt: skip
    tab.show.click(**said_in(tab.verdict, handler(show_mistakes, session), [tab.mistakes, tab.mistake_texts]),
                   inputs=[tab.run_a, tab.split], api_name="mistakes")  # fmt: skip
    tab.mistakes.select(mistake_text, [tab.mistakes, tab.mistake_texts], tab.mistake_text)
    tab.upload.upload(**said_in(tab.verdict, handler(label_file, session), tab.labelled),
                      inputs=[tab.run_a, tab.upload, tab.column, tab.min_confidence],
                      api_name="label_file")  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
def refreshed(session: Session) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both run pickers re-read from the registry (runs that saved a model)."""
    choices = run_choices(session.registry, with_model=True)
    return gr.update(choices=choices), gr.update(choices=choices)


SAME_RUN = "Run B is the same run as Run A, so both answer alike: pick another run in Run B to compare two runs"


@guard
def predict_text(session: Session, a: str | None, b: str | None, value: str,
                 min_confidence: float = 0.0) -> tuple[Any, Any, str, Any, Any]:  # fmt: skip
    """(run A's class probabilities, run B's beside them or hidden when no B is picked, each run's answer, run A's
    and run B's label bars). Run A's probabilities come as they always have (a single-label run's Label; a
    multi-label run's, in the same shape, hidden: `shown_for` picks what shows when the run is picked); a
    multi-label run's bars give each label's probability against its threshold, its answer line the labels given.
    Under `min_confidence` a run answers unsure."""
    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A (train one in the Train tab)")
    if not (value or "").strip():
        raise StudioError("type a text to classify first")
    threshold = min_confidence or None
    first = session.predictors.get(a).predict([value], min_confidence=threshold)[0]
    if not b:
        hidden = gr.update(visible=False)
        said = _with_warnings(session, _verdict([("Run A", first)], threshold), {"Run A": a})
        return first.probs, hidden, said, _bars(first, "Run A"), hidden
    second = session.predictors.get(b).predict([value], min_confidence=threshold)[0]
    shown_b = gr.update(value=second.probs, visible=second.labels is None, label=f"Run B: {b}")
    said = _with_warnings(session, _verdict([("Run A", first), ("Run B", second)], threshold), {"Run A": a, "Run B": b})
    if a == b:
        said = "  \n".join(filter(None, [said, SAME_RUN]))
    return first.probs, shown_b, said, _bars(first, "Run A"), _bars(second, "Run B")


def _with_warnings(session: Session, said: str, runs: dict[str, str]) -> str:
    """The answer line, and a line for each run flagged as not learning (studio/health.py): its answers look like
    any other run's, so the page says they mean little."""
    lines = [said] if said else []
    for name, run_id in runs.items():
        flag = session.registry.get(run_id).flag
        if flag:
            lines.append(f"⚠ {name} did not learn (**{flag}**): its answers mean little; its results in the Runs tab "
                         "say why")  # fmt: skip
    return "  \n".join(lines)


def shown_for(session: Session, a: str | None) -> tuple[Any, Any]:
    """What shows run A's predictions once it is picked: the Label (titled with the run's id) for a single-label
    run, the label bars (empty until the first prediction) for a multi-label one."""
    from studio import plots

    if not a or session.registry.task(a) != "multi_label":
        return gr.update(visible=True, label=f"Run A: {a}" if a else "Run A"), gr.update(visible=False)
    waiting = plots.empty("each label's probability and threshold appear here: type a text and press Predict")
    return gr.update(visible=False), gr.update(value=waiting, visible=True)


def _bars(p: Any, name: str) -> Any:
    """A multi-label prediction's bars (every label's probability and threshold), titled with what it gave; hidden
    for a single-label one."""
    from studio import plots

    if p.labels is None:
        return gr.update(visible=False)
    return gr.update(value=plots.label_probabilities(p.probs, p.thresholds or {}, _bars_title(p, name)), visible=True)


def _bars_title(p: Any, name: str) -> str:
    """Short enough for half the page: the labels given when they are few, else how many (the answer line above
    lists them all)."""
    given, k = len(p.labels or ()), len(p.probs)
    if p.unsure:
        return f"{name}: unsure ({given} of {k} labels would be given)"
    if not given:
        return f"{name}: no label reached its threshold"
    return f"{name}: {p.answer} ({given} of {k} labels)" if given <= 3 else f"{name}: {given} of {k} labels given"


def _answer(p: Any) -> str:
    """A multi-label prediction in words: the labels given, "(none)", or unsure and what it would have given."""
    if p.unsure:
        return f"unsure (it would give {p.label or 'no label'})"
    return p.answer if p.labels else "(none): no label reached its threshold"


def _verdict(predictions: list[tuple[str, Any]], threshold: float | None) -> str:
    """Each run's answer: its label, its labels (a multi-label run's, always said: its Label is hidden), or unsure
    under the confidence threshold ("" for single-label runs without a threshold: the Label says it)."""
    if threshold is None and all(p.labels is None for _, p in predictions):
        return ""
    said = []
    for name, p in predictions:
        if p.unsure:
            sure = "least sure label decision" if p.labels is not None else "top"
            would = f"; it would give {p.label or 'no label'}" if p.labels is not None else ""
            said.append(f"{name}: **unsure** ({sure} {p.score:.0%} < {threshold:.0%}{would})")
        elif p.labels is not None:
            said.append(f"{name}: **{_answer(p)}**")
        else:
            said.append(f"{name}: **{p.label}**")
    return " · ".join(said)


MISTAKE_COLUMNS = ["label", "predicted", "confidence", "p_true", "missing", "extra", "text"]
"""The mistakes table's order: what it got wrong and how sure it was, then the text (cut to a line)."""


@guard
def show_mistakes(session: Session, a: str | None, which: str) -> tuple[Any, list[str]]:
    """(run A's wrong predictions on the `which` split, most confident first: labels and confidence first, 80.2%,
    each text cut to a line; their full texts, for the row picked)."""
    from studio.inference import mistakes

    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A")
    frame = mistakes(session.registry, a, which)
    if frame.empty:
        gr.Info(f"No mistakes on the {which} split")
    return text_table(frame, MISTAKE_COLUMNS, percents=("confidence", "p_true")), list(frame["text"])


def mistake_text(evt: gr.SelectData, rows: Any, texts: list[str]) -> Any:
    """The picked mistake's whole text, titled with what it was and what the run said (the table cuts texts to a
    line). Found by the picked row's own cells, so a table sorted in the page still gives the right text."""
    columns = list(rows.columns) if hasattr(rows, "columns") else MISTAKE_COLUMNS
    picked = dict(zip(columns, evt.row_value or [], strict=False))
    shown = picked.get("text")
    full = next((t for t in texts if clip(t) == shown), shown)
    if not full:
        return gr.skip()
    title = f"{picked.get('label')}, predicted {picked.get('predicted')} ({picked.get('confidence')} sure)"
    return gr.update(value=full, label=f"Whole text · {title}")


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


# ---- why did it say that -------------------------------------------------------------------------------------
PREDICTED = "(predicted)"


def _wire_why(session: Session, tab: PlaygroundTab) -> None:
    why = tab.why
    assert why is not None
    tab.run_a.input(lambda a: gr.update(choices=why_choices(session, a), value=PREDICTED), tab.run_a, why.label,
                    show_progress="hidden")  # fmt: skip
    why.button.click(**said_in(tab.verdict, handler(explain_text, session), why.shown),
                     inputs=[tab.run_a, tab.run_b, tab.text, why.label], api_name="explain")  # fmt: skip
    mistake = said_in(tab.verdict, handler(explain_mistake, session), why.mistake_shown)
    why.mistake_button.click(**mistake, inputs=[tab.run_a, tab.mistake_text, tab.mistakes], api_name="explain_mistake")


def why_choices(session: Session, run_id: str | None) -> list[str]:
    """PREDICTED, then the run's labels (read from its label map: no model loads)."""
    from studio.models import read_label_map

    if not run_id:
        return [PREDICTED]
    try:
        return [PREDICTED, *read_label_map(session.registry.run_dir(run_id))]
    except (OSError, ValueError, KeyError, StudioError):
        return [PREDICTED]


def side_by_side(parts: list[str]) -> str:
    """HTML fragments in columns (one column: as it is)."""
    if len(parts) == 1:
        return parts[0]
    cells = "".join(f'<div style="flex:1 1 0;min-width:18em">{p}</div>' for p in parts)
    return f'<div style="display:flex;gap:1em;flex-wrap:wrap">{cells}</div>'


@guard
def explain_text(session: Session, a: str | None, b: str | None, value: str, label: str | None) -> str:
    """Why run A (and run B, beside it) said what it said about the text: each word shaded by its Integrated
    Gradients score toward the label picked (PREDICTED: each run's own answer)."""
    from studio.explain import Explainer, to_html

    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A (train one in the Train tab)")
    if not (value or "").strip():
        raise StudioError("type a text to explain first")
    wanted = None if not label or label == PREDICTED else label
    columns = []
    for name, run_id in (("Run A", a), ("Run B", b)) if b and b != a else (("Run A", a),):
        explainer = Explainer(session.predictors.get(run_id))
        known = wanted in explainer.predictor.label_names or (wanted and name == "Run A")  # A: refused if unknown
        labels = [wanted] if known else None  # run B without that label: its own answer
        columns.append("".join(to_html(e, f"{name} ({run_id})") for e in explainer.explain_labels(value, labels)))
    return side_by_side(columns)


@guard
def explain_mistake(session: Session, a: str | None, full_text: str, rows: Any) -> str:
    """The picked mistake explained: why run A gave its answer, and what in the text spoke for the true label
    (a multi-label run: each label it gave wrongly or left out, at most four)."""
    from studio.explain import Explainer, to_html

    if not a:
        raise StudioError("pick a run first: choose a finished run in Run A")
    if not (full_text or "").strip():
        raise StudioError("show run A's mistakes and pick one in the table first")
    row = _picked_row(rows, full_text) or {}
    explainer = Explainer(session.predictors.get(a))
    names = explainer.predictor.label_names
    if "missing" in row:  # multi-label: the labels it got wrong
        labels = [n for n in [*_names(row.get("extra")), *_names(row.get("missing"))] if n in names][:4] or None
    else:
        labels = [n for n in (row.get("predicted"), row.get("label")) if n in names] or None
    explanations = explainer.explain_labels(full_text, labels)
    return side_by_side([to_html(e, _mistake_title(e.label, row)) for e in explanations])


def _mistake_title(label: str, row: dict[str, Any]) -> str:
    if label in _names(row.get("extra")):
        return f"{label}: given wrongly"
    if label in _names(row.get("missing")):
        return f"{label}: left out"
    if label == row.get("label"):
        return "the true label"
    return "Run A's answer"


def _names(cell: Any) -> list[str]:
    return [n.strip() for n in str(cell or "").split(",") if n.strip()]


def _picked_row(rows: Any, full_text: str) -> dict[str, Any] | None:
    """The mistakes table's row of this text (its cell holds the text cut to a line), None when not found."""
    if rows is None or not hasattr(rows, "columns") or "text" not in rows.columns:
        return None
    shown = clip(full_text)
    for record in rows.to_dict("records"):
        if record.get("text") == shown:
            return record
    return None
