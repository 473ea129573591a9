"""The Gradio studio: one module per tab; each builds components and calls the engine, nothing more.

`build_app(runs_dir)` makes the Blocks; `launch_options()` reads the hosting settings from the environment
(login, theme, CSS). Heavy libraries (torch, transformers, datasets) are imported by the handlers that need
them, so the page is up in seconds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

CSS = """
.studio-progress { display:flex; flex-direction:column; gap:4px; font-size:0.9rem; }
.studio-bar { height:12px; border-radius:6px; background:var(--neutral-200); overflow:hidden; }
.studio-bar > div { height:100%; background:var(--color-accent); transition:width 0.6s ease; }
#run-status p { font-size:1.05rem; }
/* Gradio stacks its toasts at the top right, over the Train tab's Start and Stop: the very buttons an error
   message talks about. Bottom right covers no control of the studio's. */
.toast-wrap { top:auto !important; bottom:var(--size-4) !important; }
"""


def build_app(runs_dir: str | Path, preset: str | Path | None = None, grids_dir: str | Path | None = None) -> Any:
    """The studio over `runs_dir`; the form starts from `preset` (a presets/ name or a YAML path); the Compare
    tab lists the grids of `grids_dir` (default presets/grids/)."""
    import gradio as gr

    from studio.ui import compare_tab, data_tab, model_tab, playground_tab, runs_tab, train_tab
    from studio.ui.context import Context
    from studio.ui.feedback import import_engine_libraries

    for name, value in (
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),  # transformers' weight loading/saving bars follow this one
        ("TRANSFORMERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(name, value)
    ctx = Context.create(runs_dir, preset, Path(grids_dir) if grids_dir else None)
    # Import the engine's heavy libraries while the page loads, so the first click does not wait for them.
    threading.Thread(target=import_engine_libraries, name="warm-imports", daemon=True).start()
    with gr.Blocks(title="Fine-Tune Studio") as app:
        gr.Markdown(
            "# Fine-Tune Studio\nFine-tune a text classifier with full fine-tuning, LoRA, QLoRA or IA3. "
            "The defaults train **MiniLM-L6 on the shipped IMDb sample**: press *Start training* in the "
            "**Train** tab for a real sentiment model in a few minutes, even on a laptop CPU."
        )
        session = {
            "base": gr.State(ctx.form.initial),  # the preset or run config the form edits
            "preset_name": gr.State(ctx.preset_name),
            "num_labels": gr.State(2),
            "train_rows": gr.State(None),  # known once the Data tab has inspected the source
        }
        with gr.Tabs():
            with gr.Tab("1 · Data", id="data"):
                data = data_tab.build(ctx, session)
            session["source"] = data["source"]
            with gr.Tab("2 · Model & method", id="model"):
                model = model_tab.build(ctx, session)
            with gr.Tab("3 · Train", id="train"):
                train = train_tab.build(ctx, session)
            with gr.Tab("4 · Runs", id="runs") as runs_page:
                runs = runs_tab.build(ctx, session)
            with gr.Tab("5 · Playground", id="playground") as playground_page:
                play = playground_tab.build(ctx, session)
            with gr.Tab("6 · Compare (grids)", id="compare") as compare_page:
                compare = compare_tab.build(ctx, session)

        app.load(train["attach"], None, [train["ref"], train["seen"]])
        resume_btn, resume_run = runs["resume"]  # the Train tab follows the resumed run
        resume_btn.click(resume_run, runs["selected"], train["ref"], api_name="resume")
        app.load(*data["on_load"], show_progress="hidden")
        app.load(
            model["estimate"],
            {session["base"], session["num_labels"], session["train_rows"], *ctx.form.components},
            model["estimate_outputs"],
            show_progress="hidden",
        )
        runs_page.select(
            runs["refreshed"], [runs["compare"], runs["selected"]], [runs["table"], runs["compare"], runs["selected"]]
        )
        playground_page.select(play["refreshed"], None, [play["run_a"], play["run_b"]])
        compare_page.select(*compare["show"], show_progress="hidden")
    app.studio = ctx  # for tests and scripts: the engine objects behind this app
    return app


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
