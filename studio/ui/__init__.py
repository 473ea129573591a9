"""The Gradio studio: one module per tab; each builds components and calls the engine, nothing more.

`build_app(runs_dir)` makes the Blocks; `launch_options()` reads the hosting settings from the environment
(login, theme, CSS). Heavy libraries (torch, transformers, datasets) are imported by the handlers that need
them, so the page is up in seconds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # gradio's import takes seconds: `launch_options` alone does without it
    import gradio as gr

    from studio.ui.compare_tab import CompareTab
    from studio.ui.data_tab import DataTab
    from studio.ui.model_tab import ModelTab
    from studio.ui.playground_tab import PlaygroundTab
    from studio.ui.runs_tab import RunsTab
    from studio.ui.session import Session, StudioApp
    from studio.ui.train_tab import TrainTab

CSS = """
.studio-progress { display:flex; flex-direction:column; gap:4px; font-size:0.9rem; }
.studio-bar { height:12px; border-radius:6px; background:var(--neutral-200); overflow:hidden; }
.studio-bar > div { height:100%; background:var(--color-accent); transition:width 0.6s ease; }
#run-status p { font-size:1.05rem; }
/* Results tables (a multi-label run's has six columns, and a row per label) in their column without wrapping a
   number or a header mid-word */
#run-results table, #run-details table, #file-eval-result table { font-size:0.85rem; display:block; overflow-x:auto; }
#run-results :is(th, td), #run-details :is(th, td), #file-eval-result :is(th, td) { padding:3px 6px !important; }
#run-results :is(th, td), #run-details :is(th, td), #file-eval-result :is(th, td) { white-space:nowrap; }
/* The Data tab's table of splits: headers on one line; an upload button beside its path box, at the box's height */
#data-summary table { font-size:0.85rem; }
#data-summary th { white-space:nowrap; }
#data-summary :is(th, td) { padding:3px 6px !important; }
.studio-upload { align-self:flex-end; flex-grow:0 !important; margin-bottom:var(--size-2); }
/* Gradio stacks its toasts at the top right, over the Train tab's Start and Stop: the very buttons an error
   message talks about. Bottom right covers no control of the studio's. */
.toast-wrap { top:auto !important; bottom:var(--size-4) !important; }
/* A failed action says why by its buttons (feedback.py) and outlines the fields it names until the next message */
.studio-message p { color:var(--color-red-600, #dc2626); font-weight:600; margin:0; }
.studio-flagged { box-shadow:inset 0 0 0 2px var(--color-red-500, #ef4444) !important; }
.studio-flagged :is(input, textarea, .wrap) { border-color:var(--color-red-500, #ef4444) !important; }
"""


INTRO = (
    "# Fine-Tune Studio\nFine-tune a text classifier with full fine-tuning, LoRA, QLoRA or IA3. "
    "The defaults train **MiniLM-L6 on the shipped IMDb sample**: press *Start training* in the "
    "**Train** tab for a real sentiment model in about 3 minutes on a 2-core CPU (longer when the machine is busy)."
)


@dataclass
class Page:
    """The tabs of one app as built, and the tab pages whose opening refreshes them."""

    data: DataTab
    model: ModelTab
    train: TrainTab
    runs: RunsTab
    playground: PlaygroundTab
    compare: CompareTab
    runs_page: gr.Tab
    playground_page: gr.Tab
    compare_page: gr.Tab
    train_page: gr.Tab | None = None


def build_app(runs_dir: str | Path, preset: str | Path | None = None, grids_dir: str | Path | None = None) -> StudioApp:
    """The studio over `runs_dir`; the form starts from `preset` (a presets/ name or a YAML path); the Compare
    tab lists the grids of `grids_dir` (default presets/grids/). `app.studio` is its Session."""
    import gradio as gr

    from studio.ui import compare_tab, data_tab, model_tab, playground_tab, runs_tab, train_tab
    from studio.ui.feedback import import_engine_libraries
    from studio.ui.session import Session, StudioApp

    for name, value in (
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),  # transformers' weight loading/saving bars follow this one
        ("TRANSFORMERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(name, value)
    # Import the engine's heavy libraries while the page loads, so the first click does not wait for them.
    threading.Thread(target=import_engine_libraries, name="warm-imports", daemon=True).start()
    with StudioApp(title="Fine-Tune Studio") as app:
        gr.Markdown(INTRO)
        app.studio = session = Session.create(runs_dir, preset, Path(grids_dir) if grids_dir else None)
        with gr.Tabs():
            with gr.Tab("1 · Data", id="data"):
                data = data_tab.build(session)
            with gr.Tab("2 · Model & method", id="model"):
                model = model_tab.build(session)
            with gr.Tab("3 · Train", id="train") as train_page:
                train = train_tab.build(session)
            with gr.Tab("4 · Runs", id="runs") as runs_page:
                runs = runs_tab.build(session)
            with gr.Tab("5 · Playground", id="playground") as playground_page:
                play = playground_tab.build(session)
            with gr.Tab("6 · Compare (grids)", id="compare") as compare_page:
                compare = compare_tab.build(session)
        _wire_page(app, session, Page(data, model, train, runs, play, compare, runs_page, playground_page,
                                      compare_page, train_page))  # fmt: skip
    return app


def _wire_page(app: StudioApp, session: Session, page: Page) -> None:
    """What crosses tabs: page load (re-attach to the run, inspect the data, estimate memory), Resume (the Train
    tab follows the resumed run), and the tabs that re-read the registry when opened."""
    from studio.ui import compare_tab, data_tab, model_tab, playground_tab, runs_tab, train_tab
    from studio.ui.feedback import said_in
    from studio.ui.session import handler

    train, runs = page.train, page.runs
    app.load(handler(train_tab.attach, session), None, [train.ref, train.seen]).then(
        handler(train_tab.controls, session, train), None, [train.start, train.stop], api_visibility="private"
    )
    if page.train_page is not None:  # what Start will train, each time the tab opens
        page.train_page.select(handler(train_tab.start_plan, session, train, page.data.rows),
                               {session.base, session.num_labels, page.data.rows, train.gpus, *session.form.components},
                               train.plan, show_progress="hidden", api_visibility="private")  # fmt: skip
    runs.resume.click(**said_in(runs.message, handler(runs_tab.resume_run, session), train.ref), inputs=runs.selected,
                      api_name="resume")  # fmt: skip
    # Named as clients have known this endpoint (the click that inspects is /inspect_data).
    app.load(handler(data_tab.inspect_data, session, page.data), page.data.inputs, page.data.outputs(session),
             show_progress="hidden", api_name="inspect_fn")  # fmt: skip
    app.load(
        handler(model_tab.estimate, session),
        {session.base, session.num_labels, session.train_rows, *session.form.components},
        page.model.estimate_outputs,
        show_progress="hidden",
    )
    # Max length, shown on both tabs (kept in step): moved on the Model tab, the Data tab's histogram follows.
    page.model.max_length.release(data_tab.remark, [page.data.lengths, page.model.max_length], page.data.lengths_plot,
                                  show_progress="hidden")  # fmt: skip
    page.runs_page.select(handler(runs_tab.refreshed, session, runs), [runs.compare, runs.selected], runs.listed)
    page.playground_page.select(handler(playground_tab.refreshed, session), None, page.playground.pickers)
    compare = page.compare
    page.compare_page.select(handler(compare_tab.show_study, session, compare), compare.grid, compare.study,
                             show_progress="hidden")  # fmt: skip


MAX_UPLOAD_MB = 500
"""Largest file a page may upload (data or a preset); STUDIO_MAX_UPLOAD_MB changes it. IMDb's 50k reviews
are ~130 MB as CSV."""


def launch_options(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `launch()`: CSS, and a login when STUDIO_USERNAME and STUDIO_PASSWORD are set.

    Host and port come from Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them).
    """
    env = os.environ if environ is None else environ
    limit = env.get("STUDIO_MAX_UPLOAD_MB", str(MAX_UPLOAD_MB))
    if not limit.isdigit() or int(limit) < 1:
        raise SystemExit(f"STUDIO_MAX_UPLOAD_MB must be a whole number of megabytes (1 or more), not {limit!r}")
    # Gradio refuses a larger upload before it is written anywhere, with a message in the page.
    options: dict[str, Any] = {"css": CSS, "max_file_size": f"{int(limit)}mb"}
    user, password = env.get("STUDIO_USERNAME"), env.get("STUDIO_PASSWORD")
    if bool(user) != bool(password):
        raise SystemExit("set both STUDIO_USERNAME and STUDIO_PASSWORD to require a login, or neither")
    if user:
        options["auth"] = (user, password)
        options["auth_message"] = "Fine-Tune Studio: log in with the account the host configured."
    return options
